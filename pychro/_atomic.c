/*
 * pychro._atomic: the only native code in pychro.
 *
 * 64-bit atomics on a writable buffer (an index file mapped MAP_SHARED), addressed by byte offset.
 * Memory-ordering contract: every CAS here is sequentially consistent, so all stores the calling thread
 * made before the call (message body, then the ~length header) are visible to any thread or process that
 * observes the new slot value. load_u64 is an acquire load. No pointers cross the Python API: callers
 * pass a buffer object and an offset, checked for bounds and 8-byte alignment. No I/O, no format policy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static int check_slot(Py_buffer *b, Py_ssize_t off) {
    if (off < 0 || off > b->len - 8) {
        PyErr_Format(PyExc_IndexError, "offset %zd outside buffer of %zd bytes", off, b->len);
        return -1;
    }
    if ((((uintptr_t)b->buf) + (uintptr_t)off) & 7u) {
        PyErr_Format(PyExc_ValueError, "offset %zd is not 8-byte aligned", off);
        return -1;
    }
    return 0;
}

/* cas_u64(buf, offset, expected, new) -> bool */
static PyObject *cas_u64(PyObject *self, PyObject *args) {
    Py_buffer b; Py_ssize_t off; unsigned long long expected, desired;
    if (!PyArg_ParseTuple(args, "w*nKK", &b, &off, &expected, &desired)) return NULL;
    if (check_slot(&b, off)) { PyBuffer_Release(&b); return NULL; }
    uint64_t exp = expected;
    int ok = __atomic_compare_exchange_n((uint64_t *)((char *)b.buf + off), &exp, (uint64_t)desired, 0,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&b);
    return PyBool_FromLong(ok);
}

/* load_u64(buf, offset) -> int (acquire). Accepts read-only buffers too. */
static PyObject *load_u64(PyObject *self, PyObject *args) {
    Py_buffer b; Py_ssize_t off;
    if (!PyArg_ParseTuple(args, "y*n", &b, &off)) return NULL;
    if (check_slot(&b, off)) { PyBuffer_Release(&b); return NULL; }
    uint64_t v = __atomic_load_n((uint64_t *)((char *)b.buf + off), __ATOMIC_ACQUIRE);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(v);
}

/* Scan forward from `off` for a zero slot and CAS `entry` into it; slots that are taken are skipped.
 * Returns the slot's offset, or -1 when the buffer ends first. */
static Py_ssize_t append_one(Py_buffer *b, Py_ssize_t off, uint64_t entry) {
    for (; off <= b->len - 8; off += 8) {
        uint64_t *p = (uint64_t *)((char *)b->buf + off);
        uint64_t zero = 0;
        if (__atomic_load_n(p, __ATOMIC_RELAXED) != 0) continue;
        if (__atomic_compare_exchange_n(p, &zero, entry, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return off;
    }
    return -1;
}

/* append_u64(buf, offset, entry) -> slot offset or -1 */
static PyObject *append_u64(PyObject *self, PyObject *args) {
    Py_buffer b; Py_ssize_t off; unsigned long long entry;
    if (!PyArg_ParseTuple(args, "w*nK", &b, &off, &entry)) return NULL;
    if (entry == 0) { PyBuffer_Release(&b); PyErr_SetString(PyExc_ValueError, "entry must be non-zero"); return NULL; }
    if (off != b.len && check_slot(&b, off)) { PyBuffer_Release(&b); return NULL; }
    Py_ssize_t r = append_one(&b, off, entry);
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(r);
}

/* append_u64_batch(buf, offset, entries, out_offsets) -> count
 * Commits entries[0..] in order, each into the next free slot (scan + CAS as append_u64), writing each
 * slot's offset into out_offsets (int64). Stops early when the buffer is full; returns how many committed. */
static PyObject *append_u64_batch(PyObject *self, PyObject *args) {
    Py_buffer b, e, o; Py_ssize_t off;
    if (!PyArg_ParseTuple(args, "w*ny*w*", &b, &off, &e, &o)) return NULL;
    PyObject *res = NULL;
    Py_ssize_t n = e.len / 8, i = 0;
    if (e.len % 8 || o.len < e.len || (((uintptr_t)e.buf | (uintptr_t)o.buf) & 7u)) {
        PyErr_SetString(PyExc_ValueError, "entries and out_offsets must be aligned 8-byte arrays of equal length");
        goto done;
    }
    if (off != b.len && check_slot(&b, off)) goto done;
    const uint64_t *ent = (const uint64_t *)e.buf;
    int64_t *out = (int64_t *)o.buf;
    for (i = 0; i < n; i++) {
        if (ent[i] == 0) { PyErr_Format(PyExc_ValueError, "entry %zd is zero", i); goto done; }
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        Py_ssize_t r = append_one(&b, off, ent[i]);
        if (r < 0) break;
        out[i] = r;
        off = r + 8;
    }
    Py_END_ALLOW_THREADS
    res = PyLong_FromSsize_t(i);
done:
    PyBuffer_Release(&b); PyBuffer_Release(&e); PyBuffer_Release(&o);
    return res;
}

static PyMethodDef methods[] = {
    {"cas_u64", cas_u64, METH_VARARGS, "cas_u64(buf, offset, expected, new) -> bool"},
    {"load_u64", load_u64, METH_VARARGS, "load_u64(buf, offset) -> int (acquire load)"},
    {"append_u64", append_u64, METH_VARARGS, "append_u64(buf, offset, entry) -> slot offset or -1"},
    {"append_u64_batch", append_u64_batch, METH_VARARGS,
     "append_u64_batch(buf, offset, entries, out_offsets) -> number committed"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_atomic", "64-bit atomics on writable buffers.", -1, methods};

PyMODINIT_FUNC PyInit__atomic(void) { return PyModule_Create(&module); }
