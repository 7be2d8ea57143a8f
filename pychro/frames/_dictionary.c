/*
 * pychro.frames._dictionary: a text column as a dictionary (its distinct values, and an index per row), for the
 * Parquet export (pychro/frames/dictionary.py).
 *
 * Parquet's writer, handed plain strings for a dictionary-encoded column, hashes every value itself (and compares
 * each for the page statistics); handed an Arrow dictionary array it writes the dictionary as it is and the
 * indices straight into the pages. The file is the same when the dictionary holds the values in the order they
 * first appear, which is the order this builds.
 *
 *   encode(offsets, data, validity, first, n, indices, limit) -> (count, dict_offsets, dict_data) | None
 *       rows first..first+n-1 of an Arrow string (or binary) array with int32 offsets: offsets[first..first+n],
 *       data, and validity (None: no nulls; else a bitmap whose bit i is row first+i: Python passes one that
 *       starts at the first row). indices (writable, n int32) gets each row's index into the dictionary (0 for a
 *       null row); the dictionary comes back as Arrow offsets (count + 1 int32) and data (bytes). None when the
 *       dictionary would take more than `limit` bytes as a Parquet PLAIN page (4 + length per value): the column
 *       is then left plain.
 *
 * Releases the GIL. Every read is checked (offsets inside their buffer, each value inside data) and every store
 * (indices, the dictionary's own buffers, grown as needed). Errors raised: ValueError for arguments that break these rules (a
 * value outside data, offsets going back), MemoryError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t *slots;    /* open addressing: 0 = empty, else dictionary index + 1 */
    size_t mask;        /* slots - 1, a power of two minus one */
    uint64_t *hashes;   /* per dictionary value */
    int32_t *offsets;   /* per dictionary value + 1, into data */
    uint8_t *data;
    size_t count, capacity, data_size, data_capacity, page_bytes;  /* capacity: values hashes and offsets hold */
} Dict;

static void dict_free(Dict *d) {
    free(d->slots);
    free(d->hashes);
    free(d->offsets);
    free(d->data);
}

/* the first min(len, 8) bytes of p, zero-padded; one load where 8 bytes are inside the data (room: bytes from p
 * to the data's end) */
static inline uint64_t head_of(const uint8_t *p, size_t len, size_t room) {
    uint64_t w = 0;
    if (room >= 8) {
        memcpy(&w, p, 8);
        return len >= 8 ? w : w & (((uint64_t)1 << (8 * len)) - 1);
    }
    if (len)
        memcpy(&w, p, len < 8 ? len : 8);
    return w;
}

/* a value's hash from its head, length and the bytes past the head. For values of up to 8 bytes it is a
 * one-to-one function of (head, length): equal hashes and lengths mean equal values, no bytes compared. */
static inline uint64_t hash_value(uint64_t head, const uint8_t *p, size_t len) {
    uint64_t h = (head ^ ((uint64_t)len * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
    for (size_t k = 8; k < len; k += 8) {
        uint64_t w = 0;
        memcpy(&w, p + k, len - k < 8 ? len - k : 8);
        h = (h ^ (h >> 31) ^ w) * 0x94D049BB133111EBull;
    }
    return h ^ (h >> 29);
}

/* twice the slots, every value placed again (its hash kept): the table stays at most half full */
static int dict_grow_slots(Dict *d) {
    size_t n = (d->mask + 1) * 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t k = 0; k < d->count; k++) {
        size_t at = (size_t)d->hashes[k] & (n - 1);
        while (slots[at])
            at = (at + 1) & (n - 1);
        slots[at] = (uint32_t)(k + 1);
    }
    free(d->slots);
    d->slots = slots;
    d->mask = n - 1;
    return 0;
}

/* room for one more value (hashes, offsets) and `more` bytes of data */
static int dict_reserve(Dict *d, size_t more) {
    if (d->count + 1 > d->capacity) {
        size_t n = d->capacity ? 2 * d->capacity : 64;
        uint64_t *hashes = realloc(d->hashes, n * sizeof *hashes);
        if (hashes == NULL)
            return -1;
        d->hashes = hashes;
        int32_t *offsets = realloc(d->offsets, (n + 1) * sizeof *offsets);
        if (offsets == NULL)
            return -1;
        d->offsets = offsets;
        d->capacity = n;
    }
    if (d->data_size + more > d->data_capacity) {
        size_t n = d->data_capacity ? d->data_capacity : 256;
        while (n < d->data_size + more)
            n *= 2;
        uint8_t *data = realloc(d->data, n);
        if (data == NULL)
            return -1;
        d->data = data;
        d->data_capacity = n;
    }
    return 0;
}

enum { FOUND, ADDED, FULL, NO_MEMORY };

/* the index of value p[0..len) in d (added when new), in *index */
/* the index of value p[0..len) in d (added when new), in *index; room: bytes from p to the data's end */
static int dict_find(Dict *d, const uint8_t *p, size_t len, size_t room, size_t limit, int32_t *index) {
    uint64_t h = hash_value(head_of(p, len, room), p, len);
    size_t at = (size_t)h & d->mask;
    for (uint32_t k; (k = d->slots[at]) != 0; at = (at + 1) & d->mask) {
        size_t e = k - 1;
        size_t start = (size_t)d->offsets[e], size = (size_t)d->offsets[e + 1] - start;
        if (d->hashes[e] == h && size == len && (len <= 8 || memcmp(d->data + start + 8, p + 8, len - 8) == 0)) {
            *index = (int32_t)e;
            return FOUND;
        }
    }
    if (d->page_bytes + 4 + len > limit)
        return FULL;
    if (dict_reserve(d, len))
        return NO_MEMORY;
    if (len)
        memcpy(d->data + d->data_size, p, len);
    d->hashes[d->count] = h;
    d->data_size += len;
    d->offsets[d->count + 1] = (int32_t)d->data_size;
    d->slots[at] = (uint32_t)(d->count + 1);
    *index = (int32_t)d->count++;
    d->page_bytes += 4 + len;
    if (2 * d->count > d->mask && dict_grow_slots(d))
        return NO_MEMORY;
    return ADDED;
}

enum { OK = 0, BAD_OFFSETS = 1 };

static int encode_rows(Dict *d, const int32_t *offsets, const uint8_t *data, size_t data_len,
                       const uint8_t *validity, Py_ssize_t n, int32_t *out, size_t limit, int *status) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (validity != NULL && !((validity[i >> 3] >> (i & 7)) & 1)) {
            out[i] = 0;
            continue;
        }
        int32_t s = offsets[i], e = offsets[i + 1];
        if (s < 0 || e < s || (size_t)e > data_len) {
            *status = BAD_OFFSETS;
            return -1;
        }
        int got = dict_find(d, data + s, (size_t)(e - s), data_len - (size_t)s, limit, &out[i]);
        if (got == FULL || got == NO_MEMORY)
            return got;
    }
    return OK;
}

static int writable(Py_buffer *b, PyObject *o) {
    return PyObject_GetBuffer(o, b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
}

static PyObject *encode(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *offsets_o, *data_o, *validity_o, *indices_o;
    Py_ssize_t first, n, limit;
    if (!PyArg_ParseTuple(args, "OOOnnOn:encode", &offsets_o, &data_o, &validity_o, &first, &n, &indices_o, &limit))
        return NULL;
    if (first < 0 || n < 0 || limit < 0) {
        PyErr_SetString(PyExc_ValueError, "first, n and limit must be >= 0");
        return NULL;
    }
    Py_buffer offsets = {0}, data = {0}, validity = {0}, indices = {0};
    PyObject *result = NULL;
    Dict d = {0};
    if (PyObject_GetBuffer(offsets_o, &offsets, PyBUF_C_CONTIGUOUS) ||
        PyObject_GetBuffer(data_o, &data, PyBUF_C_CONTIGUOUS) ||
        (validity_o != Py_None && PyObject_GetBuffer(validity_o, &validity, PyBUF_C_CONTIGUOUS)) ||
        writable(&indices, indices_o))
        goto done;
    if (first > offsets.len / 4 || n >= offsets.len / 4 - first ||
        (validity_o != Py_None && validity.len < n / 8 + (n % 8 != 0)) || indices.len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "offsets, validity or indices shorter than the rows");
        goto done;
    }
    if ((uintptr_t)offsets.buf % 4 || (uintptr_t)indices.buf % 4) {
        PyErr_SetString(PyExc_ValueError, "offsets and indices must be aligned to 4 bytes (int32)");
        goto done;
    }
    d.mask = 255;
    d.slots = calloc(d.mask + 1, sizeof *d.slots);
    if (d.slots == NULL || dict_reserve(&d, 0)) {
        PyErr_NoMemory();
        goto done;
    }
    d.offsets[0] = 0;
    if (limit > INT32_MAX)  /* the dictionary's own offsets are int32 */
        limit = INT32_MAX;
    /* an empty buffer may have no address: never offset from NULL */
    const uint8_t *bytes = data.len ? (const uint8_t *)data.buf : (const uint8_t *)"";
    int got, status = OK;
    Py_BEGIN_ALLOW_THREADS
    got = encode_rows(&d, (const int32_t *)offsets.buf + first, bytes, (size_t)data.len,
                      validity_o != Py_None ? validity.buf : NULL, n, indices.buf, (size_t)limit, &status);
    Py_END_ALLOW_THREADS
    if (got == NO_MEMORY) {
        PyErr_NoMemory();
    } else if (got != OK && status == BAD_OFFSETS) {
        PyErr_SetString(PyExc_ValueError, "a value's offsets go back or past the data");
    } else if (got == FULL) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *o = PyBytes_FromStringAndSize((const char *)d.offsets, (Py_ssize_t)(d.count + 1) * 4);
        PyObject *v = o ? PyBytes_FromStringAndSize((const char *)d.data, (Py_ssize_t)d.data_size) : NULL;
        if (v != NULL)
            result = Py_BuildValue("nNN", (Py_ssize_t)d.count, o, v);
        else
            Py_XDECREF(o);
    }
done:
    dict_free(&d);
    if (offsets.obj)
        PyBuffer_Release(&offsets);
    if (data.obj)
        PyBuffer_Release(&data);
    if (validity.obj)
        PyBuffer_Release(&validity);
    if (indices.obj)
        PyBuffer_Release(&indices);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "A text column's distinct values and an index per row (see _dictionary.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dictionary",
                                    "Text columns as dictionaries (see _dictionary.c).", -1, methods};

PyMODINIT_FUNC PyInit__dictionary(void) { return PyModule_Create(&module); }
