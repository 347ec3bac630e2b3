/* The histograms of a ping read from its bytes, before the rest is parsed (aggregator/scan.py says why).
 *
 * scan(line) returns None, or (rest, names, containers, rows, keys, counts):
 * - rest: the line with each histogram container the job reads replaced by its number: payload.histograms,
 *   payload.keyedHistograms, the same in each payload.childPayloads[i] and in payload.processes.content and .gpu.
 * - names: the histogram names and labels, as str.
 * - containers: int64 pairs, the rows of container c are rows[containers[2c]:containers[2c + 1]].
 * - rows: int64 x ROW per histogram, in the order of the line: name, label (-1 in a plain container),
 *   histogram_type, sum, bucket_count, range low, range high, first and end entry of its buckets.
 * - keys, counts: int64, the buckets of every histogram.
 * None means: not a ping this can vouch for; it is then parsed whole, unchanged. That is any container that is
 * not an object (or childPayloads not an array of objects, processes or one of content and gpu not an object),
 * a key of those objects written with an escape or repeated, a histogram that is not an object of exactly
 * bucket_count, histogram_type, sum, range [low, high] and values, each once, with plain non-negative decimal
 * integers of at most 18 digits and values' keys strictly increasing, or bytes it cannot scan. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum role { OTHER, ROOT, PAYLOAD, CHILDREN, CONTAINER, PROCESSES, PLAIN, KEYED, LABELS };

#define ROW 9
#define MAX_DEPTH 64
#define MAX_DIGITS 18 /* every number of at most 18 digits fits an int64 */
#define BAIL -1
#define NO_MEMORY -2

typedef struct {
    int64_t *data;
    Py_ssize_t n, cap;
} ints;

typedef struct {
    const char *p, *end, *copied;
    char *out;
    Py_ssize_t out_n, out_cap;
    ints containers, rows, keys, counts;
    PyObject *names;
    int depth;
} scanner;

static int push(ints *a, int64_t v) {
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? 2 * a->cap : 1024;
        int64_t *d = PyMem_Realloc(a->data, (size_t)cap * sizeof(int64_t));
        if (!d) return NO_MEMORY;
        a->data = d;
        a->cap = cap;
    }
    a->data[a->n++] = v;
    return 0;
}

static int emit(scanner *s, const char *data, Py_ssize_t n) {
    if (s->out_n + n > s->out_cap) {
        Py_ssize_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap < s->out_n + n) cap *= 2;
        char *o = PyMem_Realloc(s->out, (size_t)cap);
        if (!o) return NO_MEMORY;
        s->out = o;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_n, data, (size_t)n);
    s->out_n += n;
    return 0;
}

static inline void ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static inline int at(scanner *s, char c) {
    ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* After an opening quote: to the closing one. *plain (when asked for): no backslash and no control character. */
static int string(scanner *s, int *plain) {
    const char *start = s->p;
    for (;;) {
        const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
        if (!q) return BAIL;
        const char *b = q;
        while (b > start && b[-1] == '\\') b--;
        s->p = q + 1;
        if (((q - b) & 1) == 0) break;
    }
    if (!plain) return 0;
    *plain = 1;
    for (const char *c = start; c < s->p - 1; c++)
        if (*c == '\\' || (unsigned char)*c < 0x20) {
            *plain = 0;
            break;
        }
    return 0;
}

/* Bytes that end a number or a literal (1), and those that matter inside a skipped container (2). */
static unsigned char kind[256];

static void init_kinds(void) {
    for (const char *c = ",}] \n\r\t"; *c; c++) kind[(unsigned char)*c] |= 1;
    for (const char *c = "\"{}[]"; *c; c++) kind[(unsigned char)*c] |= 2;
}

/* A value nothing here reads: balanced brackets, strings skipped; the JSON parser checks the rest. */
static int skip(scanner *s) {
    ws(s);
    if (s->p >= s->end) return BAIL;
    const unsigned char *p = (const unsigned char *)s->p, *end = (const unsigned char *)s->end;
    if (*p != '{' && *p != '[' && *p != '"') { /* a number or a literal */
        while (p < end && !(kind[*p] & 1)) p++;
        s->p = (const char *)p;
        return 0;
    }
    int level = 0;
    do {
        while (p < end && !(kind[*p] & 2)) p++;
        if (p >= end) return BAIL;
        unsigned char c = *p++;
        if (c == '"') {
            s->p = (const char *)p;
            if (string(s, NULL) < 0) return BAIL;
            p = (const unsigned char *)s->p;
        } else if (c == '{' || c == '[') {
            level++;
        } else if (--level < 0) {
            return BAIL;
        }
    } while (level > 0);
    s->p = (const char *)p;
    return 0;
}

/* A plain non-negative decimal integer: no sign, no leading zero, no fraction or exponent, at most MAX_DIGITS. */
static int digits(scanner *s, int64_t *value) {
    const char *start = s->p;
    int64_t v = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        v = v * 10 + (*s->p++ - '0');
        if (s->p - start > MAX_DIGITS) return BAIL;
    }
    Py_ssize_t n = s->p - start;
    if (n == 0 || (n > 1 && *start == '0')) return BAIL;
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')) return BAIL;
    *value = v;
    return 0;
}

static int number(scanner *s, int64_t *value) {
    ws(s);
    return digits(s, value);
}

/* A key (at its opening quote, after white space) and its colon: its bytes in *key, *n. */
static int key(scanner *s, const char **k, Py_ssize_t *n) {
    int plain;
    if (!at(s, '"')) return BAIL;
    *k = s->p;
    if (string(s, &plain) < 0 || !plain) return BAIL;
    *n = s->p - 1 - *k;
    return at(s, ':') ? 0 : BAIL;
}

/* After a member: a comma (1: another member follows) or the closing bracket (0). */
static int next(scanner *s, char close) {
    if (at(s, ',')) return 1;
    if (at(s, close)) return 0;
    return BAIL;
}

#define IS(k, n, literal) ((n) == (Py_ssize_t)(sizeof literal - 1) && memcmp(k, literal, sizeof literal - 1) == 0)

static int values(scanner *s) {
    if (!at(s, '{')) return BAIL;
    if (at(s, '}')) return 0;
    int64_t previous = -1, k, count;
    for (;;) {
        if (!at(s, '"') || digits(s, &k) < 0 || s->p >= s->end || *s->p++ != '"' || k <= previous || !at(s, ':'))
            return BAIL;
        previous = k;
        if (number(s, &count) < 0) return BAIL;
        if (push(&s->keys, k) < 0 || push(&s->counts, count) < 0) return NO_MEMORY;
        int r = next(s, '}');
        if (r <= 0) return r;
    }
}

static PyObject *decoded(const char *k, Py_ssize_t n) { return PyUnicode_DecodeUTF8(k, n, NULL); }

static int add_name(scanner *s, const char *k, Py_ssize_t n, int64_t *index) {
    PyObject *name = decoded(k, n);
    if (!name) {
        PyErr_Clear();
        return BAIL;
    }
    *index = PyList_GET_SIZE(s->names);
    int r = PyList_Append(s->names, name);
    Py_DECREF(name);
    return r < 0 ? NO_MEMORY : 0;
}

/* One histogram object: a row. */
static int histogram(scanner *s, int64_t name, int64_t label) {
    int64_t field[5] = {0}; /* histogram_type, sum, bucket_count, low, high */
    int seen = 0;
    int64_t first = s->keys.n;
    if (!at(s, '{')) return BAIL;
    if (at(s, '}')) return BAIL;
    for (;;) {
        const char *k;
        Py_ssize_t n;
        if (key(s, &k, &n) < 0) return BAIL;
        int bit, r = 0;
        if (IS(k, n, "histogram_type")) {
            bit = 1, r = number(s, &field[0]);
        } else if (IS(k, n, "sum")) {
            bit = 2, r = number(s, &field[1]);
        } else if (IS(k, n, "bucket_count")) {
            bit = 4, r = number(s, &field[2]);
        } else if (IS(k, n, "range")) {
            bit = 8;
            if (!at(s, '[') || number(s, &field[3]) < 0 || !at(s, ',') || number(s, &field[4]) < 0 || !at(s, ']'))
                return BAIL;
        } else if (IS(k, n, "values")) {
            bit = 16, r = values(s);
        } else {
            return BAIL;
        }
        if (r < 0) return r;
        if (seen & bit) return BAIL;
        seen |= bit;
        r = next(s, '}');
        if (r < 0) return BAIL;
        if (r == 0) break;
    }
    if (seen != 31) return BAIL;
    int64_t row[ROW] = {name, label, field[0], field[1], field[2], field[3], field[4], first, s->keys.n};
    for (int i = 0; i < ROW; i++)
        if (push(&s->rows, row[i]) < 0) return NO_MEMORY;
    return 0;
}

typedef struct {
    const char *k;
    Py_ssize_t n;
} slice;

static int compare(const void *a, const void *b) {
    const slice *x = a, *y = b;
    Py_ssize_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->k, y->k, (size_t)n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* The keys of an object are distinct (a repeated one would be read where it first stood, with its last value). */
static int distinct(slice *keys, Py_ssize_t n) {
    qsort(keys, (size_t)n, sizeof(slice), compare);
    for (Py_ssize_t i = 1; i < n; i++)
        if (compare(&keys[i - 1], &keys[i]) == 0) return BAIL;
    return 0;
}

static int object(scanner *s, enum role role);

/* {name: histogram} (PLAIN), {label: histogram} (LABELS) or {name: {label: histogram}} (KEYED). */
static int histograms(scanner *s, enum role role, int64_t keyed_name) {
    if (!at(s, '{')) return BAIL;
    if (at(s, '}')) return 0;
    slice *seen = NULL;
    Py_ssize_t n_seen = 0, cap = 0;
    int r;
    for (;;) {
        const char *k;
        Py_ssize_t n;
        int64_t index;
        if ((r = key(s, &k, &n)) < 0) break;
        if (n_seen == cap) {
            cap = cap ? 2 * cap : 64;
            slice *grown = PyMem_Realloc(seen, (size_t)cap * sizeof(slice));
            if (!grown) {
                r = NO_MEMORY;
                break;
            }
            seen = grown;
        }
        seen[n_seen++] = (slice){k, n};
        if ((r = add_name(s, k, n, &index)) < 0) break;
        if (role == PLAIN) {
            r = histogram(s, index, -1);
        } else if (role == LABELS) {
            r = histogram(s, keyed_name, index);
        } else {
            r = histograms(s, LABELS, index);
        }
        if (r < 0) break;
        if ((r = next(s, '}')) <= 0) break;
    }
    if (r == 0) r = distinct(seen, n_seen);
    PyMem_Free(seen);
    return r;
}

/* A container of histograms, replaced in `rest` by its number. */
static int container(scanner *s, enum role role) {
    ws(s);
    const char *start = s->p;
    int64_t number = s->containers.n / 2;
    if (push(&s->containers, s->rows.n / ROW) < 0) return NO_MEMORY;
    int r = histograms(s, role, -1);
    if (r < 0) return r;
    if (push(&s->containers, s->rows.n / ROW) < 0) return NO_MEMORY;
    char text[24];
    int n = snprintf(text, sizeof text, "%lld", (long long)number);
    if (emit(s, s->copied, start - s->copied) < 0 || emit(s, text, n) < 0) return NO_MEMORY;
    s->copied = s->p;
    return 0;
}

static int array_of_containers(scanner *s) {
    if (!at(s, '[')) return BAIL;
    if (at(s, ']')) return 0;
    for (;;) {
        int r = object(s, CONTAINER);
        if (r < 0) return r;
        if ((r = next(s, ']')) <= 0) return r;
    }
}

#define EMIT(text) emit(s, text, (Py_ssize_t)(sizeof text - 1))

/* ping.environment, of which only system.os is read: replaced in `rest` by {"system": {"os": ...}}, each "system"
 * and "os" kept as often and in the order they stand (the parser keeps the last), so that the parser skips the
 * rest (the add-ons, the settings). A value that is not an object is kept as it is. */
static int environment(scanner *s) {
    ws(s);
    if (s->p >= s->end || *s->p != '{') return skip(s);
    if (emit(s, s->copied, s->p - s->copied) < 0 || EMIT("{") < 0) return NO_MEMORY;
    s->p++;
    int systems = 0;
    if (!at(s, '}')) {
        for (;;) {
            const char *k;
            Py_ssize_t n;
            if (key(s, &k, &n) < 0) return BAIL;
            ws(s);
            const char *value = s->p;
            if (!IS(k, n, "system")) {
                if (skip(s) < 0) return BAIL;
            } else if (s->p < s->end && *s->p == '{') {
                if ((systems++ && EMIT(",") < 0) || EMIT("\"system\":{") < 0) return NO_MEMORY;
                s->p++;
                int oses = 0;
                if (!at(s, '}')) {
                    for (;;) {
                        if (key(s, &k, &n) < 0) return BAIL;
                        ws(s);
                        value = s->p;
                        if (skip(s) < 0) return BAIL;
                        if (IS(k, n, "os") && (((oses++ && EMIT(",") < 0) || EMIT("\"os\":") < 0 ||
                                                emit(s, value, s->p - value) < 0)))
                            return NO_MEMORY;
                        int r = next(s, '}');
                        if (r < 0) return BAIL;
                        if (r == 0) break;
                    }
                }
                if (EMIT("}") < 0) return NO_MEMORY;
            } else {
                if (skip(s) < 0) return BAIL;
                if ((systems++ && EMIT(",") < 0) || EMIT("\"system\":") < 0 || emit(s, value, s->p - value) < 0)
                    return NO_MEMORY;
            }
            int r = next(s, '}');
            if (r < 0) return BAIL;
            if (r == 0) break;
        }
    }
    if (EMIT("}") < 0) return NO_MEMORY;
    s->copied = s->p;
    return 0;
}

static int member(scanner *s, enum role role, const char *k, Py_ssize_t n) {
    switch (role) {
    case ROOT:
        if (IS(k, n, "payload")) return object(s, PAYLOAD);
        if (IS(k, n, "environment")) return environment(s);
        return skip(s);
    case PAYLOAD:
        if (IS(k, n, "childPayloads")) return array_of_containers(s);
        if (IS(k, n, "processes")) return object(s, PROCESSES);
        return member(s, CONTAINER, k, n);
    case CONTAINER:
        if (IS(k, n, "histograms")) return container(s, PLAIN);
        if (IS(k, n, "keyedHistograms")) return container(s, KEYED);
        return skip(s);
    case PROCESSES:
        if (IS(k, n, "content") || IS(k, n, "gpu")) return object(s, CONTAINER);
        return skip(s);
    default:
        return skip(s);
    }
}

static int object(scanner *s, enum role role) {
    if (++s->depth > MAX_DEPTH) return BAIL;
    if (!at(s, '{')) return BAIL;
    if (!at(s, '}')) {
        for (;;) {
            const char *k;
            Py_ssize_t n;
            if (key(s, &k, &n) < 0) return BAIL;
            int r = member(s, role, k, n);
            if (r < 0) return r;
            if ((r = next(s, '}')) < 0) return BAIL;
            if (r == 0) break;
        }
    }
    s->depth--;
    return 0;
}

static PyObject *as_bytes(ints *a) {
    return PyBytes_FromStringAndSize((const char *)a->data, a->n * (Py_ssize_t)sizeof(int64_t));
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    scanner s = {0};
    s.p = s.copied = view.buf;
    s.end = s.p + view.len;
    s.names = PyList_New(0);
    PyObject *result = NULL;
    int r = s.names ? object(&s, ROOT) : NO_MEMORY;
    if (r == NO_MEMORY || (r == 0 && emit(&s, s.copied, s.end - s.copied) < 0)) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
    } else if (r < 0 || s.containers.n == 0) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(y#ONNNN)", s.out, s.out_n, s.names, as_bytes(&s.containers), as_bytes(&s.rows),
                               as_bytes(&s.keys), as_bytes(&s.counts));
    }
    Py_XDECREF(s.names);
    PyMem_Free(s.out);
    PyMem_Free(s.containers.data);
    PyMem_Free(s.rows.data);
    PyMem_Free(s.keys.data);
    PyMem_Free(s.counts.data);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "scan(line) -> (rest, names, containers, rows, keys, counts), or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_scan", "The histograms of a ping read from its bytes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) {
    init_kinds();
    return PyModule_Create(&definition);
}
