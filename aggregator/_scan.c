/* The histograms, scalars and simple measurements of a ping read from its bytes, before the rest is parsed
 * (aggregator/scan.py says why).
 *
 * scan(line, plain, keyed, scalars, keyed_scalars, simple, simple_nested, labels) returns None, or
 * (rest, names, keys, counts, known_rows, known_values, nonnumeric, slow, raw):
 * - rest: the line with each container the job reads replaced by its number: payload.histograms,
 *   payload.keyedHistograms, the same in each payload.childPayloads[i] and in payload.processes.content and .gpu,
 *   the scalars and keyedScalars of payload.processes.parent, .content and .gpu, and the simpleMeasurements of
 *   the payload and of each child payload.
 * - names: the histogram, scalar and measurement names and labels, as str.
 * - keys, counts: int64, the buckets of every histogram read in full.
 * - known_rows: int64 x 4 per histogram whose metric the accumulator has cached: metric, sum, first and end entry
 *   of its buckets in keys and counts.
 * - known_values: int64 x 2 per value whose metric it has cached: metric, value (a count histogram's is its sum;
 *   true and false are 1 and 0).
 * - nonnumeric: how many strings stood under names the accumulator counts them for.
 * - slow: per container, in the ping's order, what takes the accumulator's general path: each histogram as the
 *   tuple (name, label, histogram_type, sum, bucket_count, range low, range high, first entry, end entry), each
 *   value as (name, label, kind of value, value, start, end). name and label index names (label -1 in a plain
 *   container, and for a measurement that is not in an object); a value's kind is enum value, its value that of
 *   an INT, TRUE or FALSE, start and end where its text stands in the line. A histogram or value of another shape
 *   than the scanner reads is RAW: histogram_type or kind RAW, its text from first (start) to end, parsed by the
 *   caller. It is slow when the accumulator has no metric cached for it, or when its keyed histogram or keyed
 *   scalar has more than `labels` labels (the accumulator bounds them). Excluded metrics are left out.
 * - raw: int64 pairs, where the text of each RAW histogram or value starts and ends.
 * - plain, keyed: the accumulator's caches per process (parent, content, gpu): plain[p] maps a histogram's name
 *   to its code, keyed[p] a keyed histogram's name to such a map of its labels, or to None when it is excluded.
 *   A code is metric << 1, plus 1 for a count histogram's; it stands only for a histogram of the same kind.
 * - scalars, keyed_scalars: the accumulator's caches of scalar codes per process, as plain and keyed: a code is
 *   a metric (>= 0), NAMED (a name whose strings are counted, no metric yet) or SKIP (a name the job excludes).
 * - simple, simple_nested: the same of simple measurements: a value's name -> code, an object's name -> {its
 *   value's name: code}.
 * None means: not a ping this can vouch for; it is then parsed whole, unchanged. That is any container that is
 * not an object (or childPayloads not an array of objects, processes or one of its processes not an object), a
 * key of those objects written with an escape or repeated, or bytes it cannot scan. A histogram is read in full
 * when it is an object of exactly bucket_count, histogram_type, sum, range [low, high] and values, each once, with
 * plain non-negative decimal integers of at most 18 digits and values' keys strictly increasing; a value, when it
 * is a string of printable ASCII without escapes, a number or a literal. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum role {
    OTHER, ROOT, PAYLOAD, CHILD, CONTAINER, PROCESSES, PROCESS, PARENT_PROCESS,
    PLAIN, KEYED, LABELS, SCALARS, KEYED_SCALARS, SCALAR_LABELS, SIMPLE, SIMPLE_NESTED
};
/* INT: plain, non-negative, at most 18 digits; RAW: a value of another shape, its text left to the parser */
enum value { RAW = -1, INT, TRUE, FALSE, STRING, NUMBER, NULL_VALUE };

#define ROW 10
#define ENTRY 7
#define SLOW -1
#define SKIP -2
#define NONNUMERIC -3
#define NAMED -1 /* a scalar code */
#define PROCESSES_READ 3 /* parent (the payload), content (childPayloads, processes.content), gpu */
#define MAX_DEPTH 64
#define MAX_DIGITS 18 /* every number of at most 18 digits fits an int64 */
#define BAIL -1
#define NO_MEMORY -2

typedef struct {
    int64_t *data;
    Py_ssize_t n, cap;
} ints;

typedef struct {
    const char *line, *p, *end, *copied;
    char *out;
    Py_ssize_t out_n, out_cap;
    ints containers, rows, keys, counts, entries, raw;
    PyObject *names;
    int depth;
    int process; /* of the container being read: an index of the caches */
    PyObject *plain[PROCESSES_READ], *keyed[PROCESSES_READ], *scalars[PROCESSES_READ], *keyed_scalars[PROCESSES_READ];
    PyObject *simple[PROCESSES_READ], *simple_nested[PROCESSES_READ];
    Py_ssize_t labels;
} scanner;

static int grow(ints *a) {
    Py_ssize_t cap = a->cap ? 2 * a->cap : 1024;
    int64_t *d = PyMem_Realloc(a->data, (size_t)cap * sizeof(int64_t));
    if (!d) return NO_MEMORY;
    a->data = d;
    a->cap = cap;
    return 0;
}

static inline int push(ints *a, int64_t v) {
    if (a->n == a->cap && grow(a) < 0) return NO_MEMORY;
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

/* The names of earlier pings, as the str objects made for them, found by a hash of their bytes: most names come
 * again in every ping, and each would otherwise be decoded, hashed by Python and freed each time. Plain ASCII names
 * of at most KEPT_LENGTH bytes are kept, up to KEPT_NAMES of them: a few MiB at most, whatever the pings hold. */
#define KEPT_NAMES (1 << 15)
#define KEPT_LENGTH 128
static struct {
    uint64_t hash;
    PyObject *name;
} kept[2 * KEPT_NAMES];
static Py_ssize_t kept_names;

static uint64_t hash_of(const char *k, Py_ssize_t n) { /* FNV-1a */
    uint64_t h = 14695981039346656037ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return h;
}

/* A new reference to the str of the name k[:n] (kept, or made, and kept when there is room); NULL if not UTF-8. */
static PyObject *name_of(const char *k, Py_ssize_t n, uint64_t hash) {
    if (n > KEPT_LENGTH) return PyUnicode_DecodeUTF8(k, n, NULL);
    size_t mask = 2 * KEPT_NAMES - 1, i = hash & mask;
    for (; kept[i].name; i = (i + 1) & mask) {
        PyObject *name = kept[i].name;
        if (kept[i].hash == hash && PyUnicode_GET_LENGTH(name) == n && memcmp(PyUnicode_DATA(name), k, (size_t)n) == 0)
            return Py_NewRef(name);
    }
    PyObject *name = PyUnicode_DecodeUTF8(k, n, NULL);
    if (name && kept_names < KEPT_NAMES && PyUnicode_IS_ASCII(name)) {
        kept[i].hash = hash, kept[i].name = Py_NewRef(name);
        kept_names++;
    }
    return name;
}

static int add_name(scanner *s, const char *k, Py_ssize_t n, uint64_t hash, int64_t *index) {
    PyObject *name = name_of(k, n, hash);
    if (!name) {
        PyErr_Clear();
        return BAIL;
    }
    *index = PyList_GET_SIZE(s->names);
    int r = PyList_Append(s->names, name);
    Py_DECREF(name);
    return r < 0 ? NO_MEMORY : 0;
}

/* The metric the accumulator cached for a histogram with these fields under `key` in `cache`: its code, or for a
 * metric without a definition a dict of codes by the layout the ping gives it, (histogram_type, bucket_count, low,
 * high). */
static int64_t known(PyObject *cache, PyObject *key, const int64_t *field) {
    if (cache == NULL) return SLOW;
    if (cache == Py_None) return SKIP;
    PyObject *code = PyDict_GetItemWithError(cache, key); /* borrowed */
    if (code && PyDict_CheckExact(code)) {
        PyObject *layout = Py_BuildValue("(LLLL)", (long long)field[0], (long long)field[2], (long long)field[3],
                                         (long long)field[4]);
        code = layout ? PyDict_GetItemWithError(code, layout) : NULL;
        Py_XDECREF(layout);
    }
    long long c = code ? PyLong_AsLongLong(code) : -1;
    if (c < 0) {
        PyErr_Clear();
        return SLOW;
    }
    return (c & 1) == (field[0] == 4) ? (int64_t)(c >> 1) : SLOW;
}

/* The fields of a histogram object of exactly the expected shape: histogram_type, sum, bucket_count, low, high. */
static int histogram_fields(scanner *s, int64_t *field) {
    int seen = 0;
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
    return seen == 31 ? 0 : BAIL;
}

/* A value of another shape than the scanner reads: skipped, and its text's start and end kept for the parser. */
static int raw(scanner *s, const char *start, int64_t *from, int64_t *to) {
    s->p = start;
    if (skip(s) < 0) return BAIL;
    *from = start - s->line, *to = s->p - s->line;
    return push(&s->raw, *from) < 0 || push(&s->raw, *to) < 0 ? NO_MEMORY : 0;
}

/* One histogram: a row. `cache` maps its key (name, or label) to its code. A value of any other shape is a RAW
 * row, its text read by the parser: one odd histogram sends only itself down the general path, not its ping. */
static int histogram(scanner *s, int64_t name, int64_t label, PyObject *cache) {
    int64_t field[5] = {0};
    ws(s);
    const char *start = s->p;
    int64_t first = s->keys.n, end, metric = SLOW;
    int r = histogram_fields(s, field);
    if (r == NO_MEMORY) return r;
    if (r < 0) {
        s->keys.n = s->counts.n = first;
        memset(field, 0, sizeof field);
        field[0] = RAW;
        if ((r = raw(s, start, &first, &end)) < 0) return r;
    } else {
        end = s->keys.n;
        metric = known(cache, PyList_GET_ITEM(s->names, label < 0 ? name : label), field);
    }
    int64_t row[ROW] = {name, label, field[0], field[1], field[2], field[3], field[4], first, end, metric};
    for (int i = 0; i < ROW; i++)
        if (push(&s->rows, row[i]) < 0) return NO_MEMORY;
    return 0;
}

/* A literal, and the byte after it ends it. */
static int literal(scanner *s, const char *word, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, word, (size_t)n) != 0) return BAIL;
    s->p += n;
    return s->p == s->end || (kind[(unsigned char)*s->p] & 1) ? 0 : BAIL;
}

/* A JSON number: an INT's value in *value, any other (a NUMBER) left to the parser, unless beyond a double. */
static int json_number(scanner *s, int *what, int64_t *value) {
    const char *p = s->p, *start = p;
    int plain = 1;
    if (*p == '-') p++, plain = 0;
    if (p < s->end && *p == '0') {
        p++;
    } else if (p < s->end && *p >= '1' && *p <= '9') {
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    } else {
        return BAIL;
    }
    if (p < s->end && *p == '.') {
        plain = 0;
        if (++p >= s->end || *p < '0' || *p > '9') return BAIL;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        plain = 0;
        if (++p < s->end && (*p == '+' || *p == '-')) p++;
        if (p >= s->end || *p < '0' || *p > '9') return BAIL;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < s->end && !(kind[(unsigned char)*p] & 1)) return BAIL;
    Py_ssize_t n = p - start;
    s->p = p;
    if (plain && n <= MAX_DIGITS) {
        int64_t v = 0;
        for (const char *d = start; d < p; d++) v = v * 10 + (*d - '0');
        *what = INT, *value = v;
        return 0;
    }
    char text[64];
    if (n >= (Py_ssize_t)sizeof text) return BAIL;
    memcpy(text, start, (size_t)n);
    text[n] = 0;
    double d = PyOS_string_to_double(text, NULL, NULL);
    if ((d == -1.0 && PyErr_Occurred()) || isinf(d)) { /* the parser refuses a number it reads as infinite */
        PyErr_Clear();
        return BAIL;
    }
    *what = NUMBER;
    return 0;
}

/* A scalar's value: a string of printable ASCII without escapes, a number or a literal. */
static int scalar_value(scanner *s, int *what, int64_t *value) {
    ws(s);
    if (s->p >= s->end) return BAIL;
    *value = 0;
    switch (*s->p) {
    case '"':
        for (s->p++; s->p < s->end; s->p++) {
            unsigned char b = (unsigned char)*s->p;
            if (b == '"') {
                s->p++;
                *what = STRING;
                return 0;
            }
            if (b < 0x20 || b > 0x7e || b == '\\') return BAIL;
        }
        return BAIL;
    case 't':
        *what = TRUE, *value = 1;
        return literal(s, "true", 4);
    case 'f':
        *what = FALSE;
        return literal(s, "false", 5);
    case 'n':
        *what = NULL_VALUE;
        return literal(s, "null", 4);
    default:
        return json_number(s, what, value);
    }
}

/* The metric the accumulator cached for a scalar value of this kind under `key` in `cache`. */
static int64_t known_value(PyObject *cache, PyObject *key, int what) {
    if (cache == NULL) return SLOW;
    if (cache == Py_None) return SKIP;
    PyObject *code = PyDict_GetItemWithError(cache, key); /* borrowed */
    long long c = code ? PyLong_AsLongLong(code) : SLOW - 10;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return SLOW;
    }
    if (c == SKIP) return SKIP;
    if (what == RAW) return SLOW;
    if (what == STRING && (c >= 0 || c == NAMED)) return NONNUMERIC;
    return c >= 0 && (what == INT || what == TRUE || what == FALSE) ? (int64_t)c : SLOW;
}

/* One scalar value: an entry. `cache` maps its key (name, or label) to its code. */
static int scalar(scanner *s, int64_t name, int64_t label, PyObject *cache) {
    int what;
    int64_t value;
    ws(s);
    const char *start = s->p;
    int64_t from = start - s->line, to;
    if (scalar_value(s, &what, &value) < 0) {
        what = RAW, value = 0;
        int r = raw(s, start, &from, &to);
        if (r < 0) return r;
    }
    to = s->p - s->line;
    int64_t metric = known_value(cache, PyList_GET_ITEM(s->names, label < 0 ? name : label), what);
    int64_t entry[ENTRY] = {name, label, what, value, from, to, metric};
    for (int i = 0; i < ENTRY; i++)
        if (push(&s->entries, entry[i]) < 0) return NO_MEMORY;
    return 0;
}

typedef struct {
    const char *k;
    Py_ssize_t n;
    uint64_t hash;
} slice;

static int same(const slice *x, const slice *y) {
    return x->hash == y->hash && x->n == y->n && memcmp(x->k, y->k, (size_t)x->n) == 0;
}

/* The keys of an object are distinct (a repeated one would be read where it first stood, with its last value):
 * each key's index in a table by its hash, which a repeated key finds taken by its equal. */
static int distinct(slice *keys, Py_ssize_t n) {
    Py_ssize_t size = 64, local[64];
    while (size < 2 * n) size *= 2;
    Py_ssize_t *table = size == 64 ? local : PyMem_Malloc((size_t)size * sizeof *table);
    if (!table) return NO_MEMORY;
    for (Py_ssize_t i = 0; i < size; i++) table[i] = -1;
    size_t mask = (size_t)size - 1;
    int r = 0;
    for (Py_ssize_t i = 0; i < n && r == 0; i++) {
        size_t at = keys[i].hash & mask;
        for (; table[at] >= 0 && r == 0; at = (at + 1) & mask)
            if (same(&keys[table[at]], &keys[i])) r = BAIL;
        table[at] = i;
    }
    if (table != local) PyMem_Free(table);
    return r;
}

static int object(scanner *s, enum role role);

static int histograms(scanner *s, enum role role, int64_t keyed_name, PyObject *cache);

/* A simple measurement: a value, or an object of them (one level of nesting: SIMPLE_MEASURES_<NAME>_<SUB>). */
static int simple(scanner *s, int64_t name) {
    ws(s);
    if (s->p >= s->end || *s->p != '{') return scalar(s, name, -1, s->simple[s->process]);
    PyObject *nested = PyDict_GetItemWithError(s->simple_nested[s->process], PyList_GET_ITEM(s->names, name));
    if (!nested) PyErr_Clear();
    return histograms(s, SIMPLE_NESTED, name, nested);
}

/* {name: histogram} (PLAIN), {label: histogram} (LABELS) or {name: {label: histogram}} (KEYED), and the same
 * of scalar values (SCALARS, SCALAR_LABELS, KEYED_SCALARS) and of simple measurements (SIMPLE, SIMPLE_NESTED);
 * `cache`: of the labels of `keyed_name`. */
static int histograms(scanner *s, enum role role, int64_t keyed_name, PyObject *cache) {
    if (!at(s, '{')) return BAIL;
    if (at(s, '}')) return 0;
    ints *table = role == PLAIN || role == KEYED || role == LABELS ? &s->rows : &s->entries;
    Py_ssize_t width = table == &s->rows ? ROW : ENTRY, first = table->n;
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
        seen[n_seen] = (slice){k, n, hash_of(k, n)};
        if ((r = add_name(s, k, n, seen[n_seen++].hash, &index)) < 0) break;
        if (role == PLAIN) {
            r = histogram(s, index, -1, s->plain[s->process]);
        } else if (role == LABELS) {
            r = histogram(s, keyed_name, index, cache);
        } else if (role == SCALARS) {
            r = scalar(s, index, -1, s->scalars[s->process]);
        } else if (role == SCALAR_LABELS || role == SIMPLE_NESTED) {
            r = scalar(s, keyed_name, index, cache);
        } else if (role == SIMPLE) {
            r = simple(s, index);
        } else {
            PyObject *labels = NULL, *keyed = role == KEYED ? s->keyed[s->process] : s->keyed_scalars[s->process];
            if (keyed && !(labels = PyDict_GetItemWithError(keyed, PyList_GET_ITEM(s->names, index))))
                PyErr_Clear();
            r = histograms(s, role == KEYED ? LABELS : SCALAR_LABELS, index, labels);
        }
        if (r < 0) break;
        if ((r = next(s, '}')) <= 0) break;
    }
    if (r == 0) r = distinct(seen, n_seen);
    PyMem_Free(seen);
    if (r == 0 && (role == LABELS || role == SCALAR_LABELS) && n_seen > s->labels && cache != Py_None)
        for (Py_ssize_t i = first + width - 1; i < table->n; i += width) table->data[i] = SLOW; /* it bounds them */
    return r;
}

/* A container of histograms or scalars, replaced in `rest` by its number. */
static int container(scanner *s, enum role role) {
    ws(s);
    const char *start = s->p;
    int64_t number = s->containers.n / 3;
    int scalars = role != PLAIN && role != KEYED;
    ints *table = scalars ? &s->entries : &s->rows;
    Py_ssize_t width = scalars ? ENTRY : ROW;
    if (push(&s->containers, scalars) < 0 || push(&s->containers, table->n / width) < 0) return NO_MEMORY;
    int r = histograms(s, role, -1, NULL);
    if (r < 0) return r;
    if (push(&s->containers, table->n / width) < 0) return NO_MEMORY;
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
        int r = object(s, CHILD);
        if (r < 0) return r;
        if ((r = next(s, ']')) <= 0) return r;
    }
}

/* A value read as the containers of process `process`. */
static int of_process(scanner *s, int process, int (*read)(scanner *, enum role), enum role role) {
    int outer = s->process;
    s->process = process;
    int r = read(s, role);
    s->process = outer;
    return r;
}

static int children(scanner *s, enum role role) {
    (void)role;
    return array_of_containers(s);
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

/* Once per object, each key that is read: a repeated one would be read where it first stood, with its last value. */
static int once(unsigned *seen, unsigned bit) {
    if (*seen & bit) return BAIL;
    *seen |= bit;
    return 0;
}

#define READ(bit, call) (once(seen, 1u << (bit)) < 0 ? BAIL : (call))

static int member(scanner *s, enum role role, const char *k, Py_ssize_t n, unsigned *seen) {
    switch (role) {
    case ROOT:
        if (IS(k, n, "payload")) return READ(0, of_process(s, 0, object, PAYLOAD));
        if (IS(k, n, "environment")) return environment(s);
        return skip(s);
    case PAYLOAD:
        if (IS(k, n, "childPayloads")) return READ(1, of_process(s, 1, children, CONTAINER));
        if (IS(k, n, "processes")) return READ(2, object(s, PROCESSES));
        return member(s, CHILD, k, n, seen);
    case CHILD: /* the payload, or one of its childPayloads */
        if (IS(k, n, "simpleMeasurements")) return READ(7, container(s, SIMPLE));
        return member(s, CONTAINER, k, n, seen);
    case PROCESS:
        if (IS(k, n, "scalars")) return READ(5, container(s, SCALARS));
        if (IS(k, n, "keyedScalars")) return READ(6, container(s, KEYED_SCALARS));
        return member(s, CONTAINER, k, n, seen);
    case CONTAINER:
        if (IS(k, n, "histograms")) return READ(3, container(s, PLAIN));
        if (IS(k, n, "keyedHistograms")) return READ(4, container(s, KEYED));
        return skip(s);
    case PARENT_PROCESS: /* its histograms are not the job's */
        if (IS(k, n, "scalars")) return READ(5, container(s, SCALARS));
        if (IS(k, n, "keyedScalars")) return READ(6, container(s, KEYED_SCALARS));
        return skip(s);
    case PROCESSES:
        if (IS(k, n, "parent")) return READ(0, of_process(s, 0, object, PARENT_PROCESS));
        if (IS(k, n, "content")) return READ(1, of_process(s, 1, object, PROCESS));
        if (IS(k, n, "gpu")) return READ(2, of_process(s, 2, object, PROCESS));
        return skip(s);
    default:
        return skip(s);
    }
}

static int object(scanner *s, enum role role) {
    if (++s->depth > MAX_DEPTH) return BAIL;
    if (!at(s, '{')) return BAIL;
    unsigned seen = 0;
    if (!at(s, '}')) {
        for (;;) {
            const char *k;
            Py_ssize_t n;
            if (key(s, &k, &n) < 0) return BAIL;
            int r = member(s, role, k, n, &seen);
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

static int caches(PyObject *tuple, PyObject **out) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != PROCESSES_READ) {
        PyErr_SetString(PyExc_TypeError, "caches: a tuple of a dict per process");
        return -1;
    }
    for (int i = 0; i < PROCESSES_READ; i++) {
        out[i] = PyTuple_GET_ITEM(tuple, i);
        if (!PyDict_Check(out[i])) {
            PyErr_SetString(PyExc_TypeError, "caches: a tuple of a dict per process");
            return -1;
        }
    }
    return 0;
}

static PyObject *tuple_of(const int64_t *values, Py_ssize_t n) {
    PyObject *tuple = PyTuple_New(n);
    for (Py_ssize_t i = 0; tuple && i < n; i++) {
        PyObject *value = PyLong_FromLongLong(values[i]);
        if (!value) Py_CLEAR(tuple);
        else PyTuple_SET_ITEM(tuple, i, value);
    }
    return tuple;
}

/* The ping's rows and entries as the accumulator takes them: the histograms of metrics it knows (metric, sum,
 * first and end entry of its buckets) and the values of metrics it knows (metric, value; a count histogram's value
 * is its sum) as arrays; how many strings stood under names it counts them for; and per container, a list of the
 * others for its general path (a row without its metric, an entry's first six fields), in the ping's order. The
 * rows and entries of excluded metrics are left out. */
typedef struct {
    ints rows, values;
    Py_ssize_t nonnumeric;
    PyObject *slow;
} sorted_out;

static int sort_out(scanner *s, sorted_out *out) {
    Py_ssize_t containers = s->containers.n / 3;
    if (!(out->slow = PyList_New(containers))) return NO_MEMORY;
    for (Py_ssize_t c = 0; c < containers; c++) {
        PyObject *slow = PyList_New(0);
        if (!slow) return NO_MEMORY;
        PyList_SET_ITEM(out->slow, c, slow);
        int entries = s->containers.data[3 * c] != 0;
        for (int64_t i = s->containers.data[3 * c + 1]; i < s->containers.data[3 * c + 2]; i++) {
            const int64_t *item = entries ? s->entries.data + i * ENTRY : s->rows.data + i * ROW;
            int64_t metric = item[entries ? ENTRY - 1 : ROW - 1], value = item[3]; /* an entry's value, a row's sum */
            int r = 0;
            if (metric >= 0 && (entries || item[2] == 4)) {
                r = push(&out->values, metric) < 0 || push(&out->values, value) < 0 ? NO_MEMORY : 0;
            } else if (metric >= 0) {
                int64_t known[4] = {metric, item[3], item[7], item[8]};
                for (int k = 0; k < 4 && r == 0; k++) r = push(&out->rows, known[k]);
            } else if (metric == NONNUMERIC) {
                out->nonnumeric++;
            } else if (metric == SLOW) {
                PyObject *tuple = tuple_of(item, entries ? ENTRY - 1 : ROW - 1);
                r = !tuple || PyList_Append(slow, tuple) < 0 ? NO_MEMORY : 0;
                Py_XDECREF(tuple);
            }
            if (r < 0) return NO_MEMORY;
        }
    }
    return 0;
}

static PyObject *scan(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    PyObject *plain, *keyed, *scalars, *keyed_scalars, *simple, *simple_nested;
    scanner s = {0};
    if (!PyArg_ParseTuple(args, "y*OOOOOOn", &view, &plain, &keyed, &scalars, &keyed_scalars, &simple, &simple_nested,
                          &s.labels))
        return NULL;
    if (caches(plain, s.plain) < 0 || caches(keyed, s.keyed) < 0 || caches(scalars, s.scalars) < 0 ||
        caches(keyed_scalars, s.keyed_scalars) < 0 || caches(simple, s.simple) < 0 ||
        caches(simple_nested, s.simple_nested) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    s.line = s.p = s.copied = view.buf;
    s.end = s.p + view.len;
    s.names = PyList_New(0);
    PyObject *result = NULL;
    sorted_out out = {0};
    int r = s.names ? object(&s, ROOT) : NO_MEMORY;
    if (r == 0 && s.containers.n) r = emit(&s, s.copied, s.end - s.copied) < 0 ? NO_MEMORY : sort_out(&s, &out);
    if (r == NO_MEMORY) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
    } else if (r < 0 || s.containers.n == 0) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(y#ONNNNnON)", s.out, s.out_n, s.names, as_bytes(&s.keys), as_bytes(&s.counts),
                               as_bytes(&out.rows), as_bytes(&out.values), out.nonnumeric, out.slow,
                               as_bytes(&s.raw));
    }
    Py_XDECREF(s.names);
    Py_XDECREF(out.slow);
    PyMem_Free(out.rows.data);
    PyMem_Free(out.values.data);
    PyMem_Free(s.out);
    PyMem_Free(s.containers.data);
    PyMem_Free(s.rows.data);
    PyMem_Free(s.keys.data);
    PyMem_Free(s.counts.data);
    PyMem_Free(s.entries.data);
    PyMem_Free(s.raw.data);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(line, plain, keyed, scalars, keyed_scalars, labels) -> (rest, names, containers, rows, keys, counts, "
     "entries), or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_scan", "The histograms and scalars of a ping read from its bytes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) {
    init_kinds();
    return PyModule_Create(&definition);
}
