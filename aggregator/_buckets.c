/* The accumulator's passes over every bucket entry and its table of rows, in C (aggregator/extract.py's flush,
 * aggregator/aggregate.py's merges): numpy's general tools (searchsorted, add.at, unique) cost several times more
 * here, since they know nothing of how the entries are laid out.
 *
 * columns(layouts, keys, bounds, starts, out): out[i] is the column of keys[i] among the lower bounds of layout
 *   layouts[i], bounds[starts[l]:starts[l + 1]] (non-decreasing; a repeated bound's first column), or -1. The
 *   entries of one histogram come in increasing order of key, so each search starts where the last one ended.
 * add_at(target, positions, values): target[positions[i]] += values[i], repeated positions adding up, all of
 *   them non-negative; True, or False with the target unchanged when a sum would pass INT64_MAX.
 * take_rows(out, source, starts, sizes): rows of source copied end to end into out.
 * add_rows(target, target_starts, source, source_starts, sizes): whole rows of source added to rows of target, as
 *   add_at adds values (see add_rows).
 * add_entries(target, row_offset, row, entry_row, entry_column, values): sparse entries added into dense rows.
 * found, put: a hash table from int64 keys to int64 values, kept in two arrays (see found).
 * factorize(keys, out): the distinct keys, and the index of each key among them (see factorize).
 * Every argument is a C-contiguous array of int64 (out and target writable), but add_at's positions may be int32. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A C-contiguous buffer of signed integers (writable if asked), its length and item size (4 or 8). */
static int integers(PyObject *object, Py_buffer *view, int writable, Py_ssize_t *n, Py_ssize_t *size) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (*format == '=' || *format == '<' || *format == '@') format++;
    if (!strchr("ilq", *format) || format[1] || (view->itemsize != 4 && view->itemsize != 8)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "arrays of int32 or int64 expected");
        return -1;
    }
    *n = view->len / view->itemsize, *size = view->itemsize;
    return 0;
}

/* The buffers of `count` objects, each of int64 unless `narrow` allows int32 at its place; released on failure. */
static int buffers(PyObject **objects, Py_buffer *views, Py_ssize_t *lengths, int count, int writable, int narrow) {
    for (int i = 0; i < count; i++) {
        Py_ssize_t size;
        if (integers(objects[i], &views[i], writable & (1 << i), &lengths[i], &size) < 0 ||
            (size != 8 && !(narrow & (1 << i)))) {
            if (!PyErr_Occurred()) {
                PyBuffer_Release(&views[i]);
                PyErr_SetString(PyExc_TypeError, "arrays of int64 expected");
            }
            while (i--) PyBuffer_Release(&views[i]);
            return -1;
        }
    }
    return 0;
}

static void release(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++) PyBuffer_Release(&views[i]);
}

/* NULL, with the buffers released and the error set: arguments the function cannot take. */
static PyObject *refused(Py_buffer *views, int count, PyObject *error, const char *message) {
    release(views, count);
    PyErr_SetString(error, message);
    return NULL;
}

/* A function's arguments, `count` arrays, as buffers (see buffers). */
static int arrays(PyObject *args, Py_buffer *views, Py_ssize_t *lengths, int count, int writable, int narrow) {
    if (PyTuple_GET_SIZE(args) != count) {
        PyErr_Format(PyExc_TypeError, "%d arrays expected", count);
        return -1;
    }
    return buffers(&PyTuple_GET_ITEM(args, 0), views, lengths, count, writable, narrow);
}

/* The first index in [lo, hi) whose bound is at least `key` (hi when none is): a doubling step from lo, then
 * halving, so that a key just after the last one costs a step or two. */
static Py_ssize_t lower_bound(const int64_t *bounds, Py_ssize_t lo, Py_ssize_t hi, int64_t key) {
    Py_ssize_t step = 1;
    while (lo + step < hi && bounds[lo + step] < key) {
        lo += step;
        step *= 2;
    }
    if (hi > lo + step + 1) hi = lo + step + 1;
    while (lo < hi) {
        Py_ssize_t middle = lo + (hi - lo) / 2;
        if (bounds[middle] < key)
            lo = middle + 1;
        else
            hi = middle;
    }
    return lo;
}

static PyObject *columns(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[5]; /* layouts, keys, bounds, starts, out */
    Py_ssize_t n[5];
    if (arrays(args, views, n, 5, 1 << 4, 0) < 0) return NULL;
    const int64_t *layout = views[0].buf, *key = views[1].buf, *bound = views[2].buf, *start = views[3].buf;
    int64_t *column = views[4].buf;
    if (n[0] != n[1] || n[4] != n[1])
        return refused(views, 5, PyExc_ValueError, "layouts, keys and out differ in length");
    for (Py_ssize_t i = 0; i < n[1]; i++)
        if (layout[i] < 0 || layout[i] + 1 >= n[3] || start[layout[i]] < 0 || start[layout[i]] > start[layout[i] + 1] ||
            start[layout[i] + 1] > n[2])
            return refused(views, 5, PyExc_ValueError, "a layout outside the table");
    Py_BEGIN_ALLOW_THREADS
    int64_t last_layout = -1, last_key = 0;
    Py_ssize_t last = 0;
    for (Py_ssize_t i = 0; i < n[1]; i++) {
        Py_ssize_t lo = start[layout[i]], hi = start[layout[i] + 1];
        if (layout[i] == last_layout && key[i] > last_key) lo = last; /* further on in the same bounds */
        last = lower_bound(bound, lo, hi, key[i]);
        column[i] = last < hi && bound[last] == key[i] ? last - start[layout[i]] : -1;
        last_layout = layout[i], last_key = key[i];
    }
    Py_END_ALLOW_THREADS
    release(views, 5);
    Py_RETURN_NONE;
}

/* Whether cell + value can be added: both non-negative, and their sum not past INT64_MAX. The adds below check each
 * one so, and undo what they added when one cannot be. */
static inline int addable(int64_t cell, int64_t value) { return value >= 0 && cell >= 0 && value <= INT64_MAX - cell; }

/* cell += value for each (cell, value), all of them non-negative, unless a sum would pass INT64_MAX: then the
 * cells are left as they were and 0 is returned. */
#define ADD_AT(position)                                                                                             \
    for (Py_ssize_t i = 0; i < n; i++) {                                                                             \
        int64_t *to = cell + position[i];                                                                            \
        if (!addable(*to, value[i])) {                                                                               \
            while (i--) cell[position[i]] -= value[i];                                                               \
            return 0;                                                                                                \
        }                                                                                                            \
        *to += value[i];                                                                                             \
    }                                                                                                                \
    return 1;

static int add_wide(int64_t *cell, const int64_t *position, const int64_t *value, Py_ssize_t n) { ADD_AT(position) }

static int add_narrow(int64_t *cell, const int32_t *position, const int64_t *value, Py_ssize_t n) { ADD_AT(position) }

static PyObject *add_at(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[3]; /* target, positions, values */
    Py_ssize_t n[3];
    if (arrays(args, views, n, 3, 1 << 0, 1 << 1) < 0) return NULL;
    const int64_t *position64 = views[1].buf;
    const int32_t *position32 = views[1].buf;
    int wide = views[1].itemsize == 8;
    int bad = n[1] != n[2];
    for (Py_ssize_t i = 0; i < n[1] && !bad; i++) {
        int64_t at = wide ? position64[i] : position32[i];
        bad = at < 0 || at >= n[0];
    }
    if (bad) return refused(views, 3, PyExc_IndexError, "a position outside the target, or not one per value");
    int added;
    Py_BEGIN_ALLOW_THREADS
    added = wide ? add_wide(views[0].buf, position64, views[2].buf, n[1])
                 : add_narrow(views[0].buf, position32, views[2].buf, n[1]);
    Py_END_ALLOW_THREADS
    release(views, 3);
    return PyBool_FromLong(added);
}

/* take_rows(out, source, starts, sizes): the rows of source (sizes[r] values from starts[r]) copied into out, one
 * after another: a shard's or a selection's buckets, a copy per row rather than an index per value. */
static PyObject *take_rows(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[4]; /* out, source, starts, sizes */
    Py_ssize_t n[4], total = 0;
    if (arrays(args, views, n, 4, 1 << 0, 0) < 0) return NULL;
    const int64_t *starts = views[2].buf, *sizes = views[3].buf;
    int bad = n[2] != n[3];
    for (Py_ssize_t r = 0; r < n[3] && !bad; r++) {
        bad = sizes[r] < 0 || starts[r] < 0 || starts[r] > n[1] - sizes[r];
        total += sizes[r];
    }
    if (bad || total != n[0])
        return refused(views, 4, PyExc_IndexError, "a row outside the source, or out not the rows' length");
    int64_t *out = views[0].buf;
    const int64_t *source = views[1].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < n[3]; out += sizes[r], r++) memcpy(out, source + starts[r], (size_t)sizes[r] * 8);
    Py_END_ALLOW_THREADS
    release(views, 4);
    Py_RETURN_NONE;
}

/* add_rows(target, target_starts, source, source_starts, sizes) -> bool: for each row r, the sizes[r] values of
 * source from source_starts[r] added to those of target from target_starts[r], all of them non-negative; False,
 * with the target as it was, when a sum would pass INT64_MAX. A merge adds whole rows: no index per value. */
static int add_blocks(int64_t *target, const int64_t *to, const int64_t *source, const int64_t *from,
                      const int64_t *sizes, Py_ssize_t rows) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        int64_t *cell = target + to[r];
        const int64_t *value = source + from[r];
        for (int64_t j = 0; j < sizes[r]; j++) {
            if (!addable(cell[j], value[j])) {
                while (j--) cell[j] -= value[j];
                while (r--)
                    for (j = 0; j < sizes[r]; j++) target[to[r] + j] -= source[from[r] + j];
                return 0;
            }
            cell[j] += value[j];
        }
    }
    return 1;
}

static PyObject *add_rows(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[5]; /* target, target_starts, source, source_starts, sizes */
    Py_ssize_t n[5];
    if (arrays(args, views, n, 5, 1 << 0, 0) < 0) return NULL;
    const int64_t *to = views[1].buf, *from = views[3].buf, *sizes = views[4].buf;
    int bad = n[1] != n[4] || n[3] != n[4];
    for (Py_ssize_t r = 0; r < n[4] && !bad; r++)
        bad = sizes[r] < 0 || to[r] < 0 || from[r] < 0 || to[r] > n[0] - sizes[r] || from[r] > n[2] - sizes[r];
    if (bad) return refused(views, 5, PyExc_IndexError, "a row outside the target or the source, or a start per size");
    int added;
    Py_BEGIN_ALLOW_THREADS
    added = add_blocks(views[0].buf, to, views[2].buf, from, sizes, n[4]);
    Py_END_ALLOW_THREADS
    release(views, 5);
    return PyBool_FromLong(added);
}

/* add_entries(target, row_offset, row, entry_row, entry_column, values) -> bool: each entry's value added at
 * target[row_offset[r] + entry_column[e]], r = row[entry_row[e]], unless r is -1 (a row the target has not);
 * entry_row and entry_column are int32, the values non-negative. False, with the target as it was, when a sum would
 * pass INT64_MAX. Sparse cells (aggregator/clients.py) added into dense rows in one pass, with no array per entry. */
static PyObject *add_entries(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[6]; /* target, row_offset, row, entry_row, entry_column, values */
    Py_ssize_t n[6];
    if (arrays(args, views, n, 6, 1 << 0, 1 << 3 | 1 << 4) < 0) return NULL;
    if (views[3].itemsize != 4 || views[4].itemsize != 4)
        return refused(views, 6, PyExc_TypeError, "entry_row and entry_column: int32");
    int64_t *target = views[0].buf;
    const int64_t *offset = views[1].buf, *row = views[2].buf, *value = views[5].buf;
    const int32_t *entry_row = views[3].buf, *entry_column = views[4].buf;
    int bad = n[3] != n[5] || n[4] != n[5];
    for (Py_ssize_t r = 0; r < n[2] && !bad; r++) bad = row[r] < -1 || row[r] + 1 >= n[1];
    for (Py_ssize_t e = 0; e < n[5] && !bad; e++) {
        bad = entry_row[e] < 0 || entry_row[e] >= n[2];
        int64_t r = bad ? -1 : row[entry_row[e]];
        bad = bad || (r >= 0 && (entry_column[e] < 0 || offset[r] + entry_column[e] >= n[0]));
    }
    if (bad) return refused(views, 6, PyExc_IndexError, "an entry outside its row, or a row outside the target");
    int added = 1;
    Py_ssize_t e = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; e < n[5]; e++) {
        int64_t r = row[entry_row[e]];
        if (r < 0) continue;
        int64_t *cell = target + offset[r] + entry_column[e];
        if (!addable(*cell, value[e])) {
            added = 0;
            break;
        }
        *cell += value[e];
    }
    while (!added && e--)
        if (row[entry_row[e]] >= 0) target[offset[row[entry_row[e]]] + entry_column[e]] -= value[e];
    Py_END_ALLOW_THREADS
    release(views, 6);
    return PyBool_FromLong(added);
}

/* A key's first slot in a table of mask + 1 slots (Fibonacci hashing: the codes' low bits are dense). */
static inline size_t home(int64_t key, size_t mask) { return ((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> 20 & mask; }

/* A table of int64 keys (-1: an empty slot) and their int64 values, both of a power of two slots, that Python
 * keeps as two arrays: found(keys, values, wanted, out) puts each wanted key's value in out (-1 for a key not in
 * the table) and returns how many were not; put(keys, values, new_keys, new_values) adds keys not in the table,
 * which must keep an empty slot. A key is at its hash's slot or the first empty one after it. */
static Py_ssize_t slot_of(const int64_t *keys, Py_ssize_t slots, int64_t key) {
    size_t mask = (size_t)slots - 1, at = home(key, mask);
    while (keys[at] != key && keys[at] != -1) at = (at + 1) & mask;
    return (Py_ssize_t)at;
}

/* What is wrong with a table's arrays and the keys and values given with it, or NULL. */
static const char *wrong_table(const Py_ssize_t *n) {
    if (n[0] != n[1] || n[0] < 1 || (n[0] & (n[0] - 1))) return "keys and values: the same power of two slots";
    return n[2] != n[3] ? "as many values as keys" : NULL;
}

static PyObject *found(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[4]; /* keys, values, wanted, out */
    Py_ssize_t n[4], missing = 0;
    if (arrays(args, views, n, 4, 1 << 3, 0) < 0) return NULL;
    if (wrong_table(n)) return refused(views, 4, PyExc_ValueError, wrong_table(n));
    const int64_t *keys = views[0].buf, *values = views[1].buf, *wanted = views[2].buf;
    int64_t *out = views[3].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n[2]; i++) {
        Py_ssize_t at = slot_of(keys, n[0], wanted[i]);
        out[i] = keys[at] == -1 ? -1 : values[at];
        missing += out[i] == -1;
    }
    Py_END_ALLOW_THREADS
    release(views, 4);
    return PyLong_FromSsize_t(missing);
}

static PyObject *put(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[4]; /* keys, values, new keys, new values */
    Py_ssize_t n[4], used = 0;
    if (arrays(args, views, n, 4, 1 << 0 | 1 << 1, 0) < 0) return NULL;
    if (wrong_table(n)) return refused(views, 4, PyExc_ValueError, wrong_table(n));
    int64_t *keys = views[0].buf, *values = views[1].buf;
    const int64_t *new_keys = views[2].buf, *new_values = views[3].buf;
    for (Py_ssize_t i = 0; i < n[0]; i++) used += keys[i] != -1;
    int bad = used + n[2] >= n[0];
    for (Py_ssize_t i = 0; i < n[2] && !bad; i++) bad = new_keys[i] == -1;
    if (bad) return refused(views, 4, PyExc_ValueError, "no room for the new keys, or a key of -1");
    for (Py_ssize_t i = 0; i < n[2]; i++) {
        Py_ssize_t at = slot_of(keys, n[0], new_keys[i]);
        keys[at] = new_keys[i], values[at] = new_values[i];
    }
    release(views, 4);
    Py_RETURN_NONE;
}

/* factorize(keys, out) -> the distinct keys in the order they first come, as int64 bytes; out[i] is the index of
 * keys[i] among them. numpy's unique sorts every key for this; a hash table of the distinct ones is linear in the
 * keys. The table has room for every key, at most 3/4 full, from the start, so it never grows: a table grown by
 * doubling took two thirds more time for the client level's keys, moving each distinct key about twice more. Its
 * slots are calloc'ed: only the pages the distinct keys land on are touched, so a few keys many times over cost
 * a few pages. */
static PyObject *factorize(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer views[2]; /* keys, out */
    Py_ssize_t n[2], count = 0, slots = 1024;
    if (arrays(args, views, n, 2, 1 << 1, 0) < 0) return NULL;
    if (n[0] != n[1]) return refused(views, 2, PyExc_ValueError, "keys and out differ in length");
    while (4 * n[0] > 3 * slots) slots *= 2;
    const int64_t *key = views[0].buf;
    int64_t *out = views[1].buf, *distinct, *keys;
    Py_ssize_t *index; /* 1 + the key's index among the distinct ones; 0: an empty slot */
    int failed;
    Py_BEGIN_ALLOW_THREADS /* raw allocations only, as in every loop here: the worker's event loop goes on */
    distinct = PyMem_RawMalloc((size_t)(n[0] ? n[0] : 1) * sizeof *distinct);
    keys = PyMem_RawMalloc((size_t)slots * sizeof *keys);
    index = PyMem_RawCalloc((size_t)slots, sizeof *index);
    failed = !distinct || !keys || !index;
    size_t mask = (size_t)slots - 1;
    for (Py_ssize_t i = 0; i < n[0] && !failed; i++) {
        size_t at = home(key[i], mask);
        while (index[at] && keys[at] != key[i]) at = (at + 1) & mask;
        if (!index[at]) distinct[count] = key[i], keys[at] = key[i], index[at] = ++count;
        out[i] = index[at] - 1;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = failed ? PyErr_NoMemory() : PyBytes_FromStringAndSize((const char *)distinct, count * 8);
    PyMem_RawFree(distinct);
    PyMem_RawFree(keys);
    PyMem_RawFree(index);
    release(views, 2);
    return result;
}

static PyMethodDef methods[] = {
    {"columns", columns, METH_VARARGS, "columns(layouts, keys, bounds, starts, out): each key's column, or -1"},
    {"add_at", add_at, METH_VARARGS, "add_at(target, positions, values) -> whether it added them (no overflow)"},
    {"take_rows", take_rows, METH_VARARGS, "take_rows(out, source, starts, sizes): rows of source, end to end"},
    {"add_rows", add_rows, METH_VARARGS, "add_rows(target, target_starts, source, source_starts, sizes) -> added"},
    {"add_entries", add_entries, METH_VARARGS,
     "add_entries(target, row_offset, row, entry_row, entry_column, values) -> whether it added them"},
    {"found", found, METH_VARARGS, "found(keys, values, wanted, out) -> how many wanted keys the table has not"},
    {"put", put, METH_VARARGS, "put(keys, values, new_keys, new_values): new keys into the table"},
    {"factorize", factorize, METH_VARARGS, "factorize(keys, out) -> the distinct keys, first come first; out: indexes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_buckets", "The accumulator's passes over bucket entries and its table of rows.", -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__buckets(void) { return PyModule_Create(&definition); }
