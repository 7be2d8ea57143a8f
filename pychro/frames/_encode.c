/*
 * pychro.frames._encode: the write half of the frames codec (style.md 2.5b, vanilla-format.md 4 and 7).
 *
 * Python compiles a Schema and the columns of a table into a program: a tuple of steps, one per field, each
 * (kind, size, values, offsets, validity, bit_offset, fill, supplementary) with numpy arrays or Arrow buffers
 * (see pychro/frames/encode.py, class Step). Two calls run it:
 *
 *   lengths(program, n, lo, hi, out, found) -> (row, step, status)
 *       body bytes of rows lo..hi-1 into out[0 .. hi-lo), checking every value the C must check (text to
 *       transcode, chars, writeUTF lengths). The first bad row is returned (-1 when none), so that Python raises
 *       the error with the column and row before anything is written. found[step] += rows holding non-BMP text.
 *   place(program, n, rows, buf) -> bytes
 *       the messages of rows[0..m) back to back from buf[0], as the row writer leaves them in a data file:
 *       ~length header, fields, zero padding to the next 4-byte boundary. Returns the bytes laid out.
 *
 * Both release the GIL. Every read is checked against its buffer (n rows, offsets inside the data), every store
 * against buf; the only allocation is the step array, freed before returning. Errors raised: ValueError or
 * TypeError for arguments that break these rules, MemoryError. Validation problems are statuses, not errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum kind {
    K_FIXED,     /* size bytes per row from values; a null (validity bit 0) is written as fill */
    K_BOOL_BITS, /* Arrow bit-packed booleans at bit_offset: 'Y' (0x59) or 0, as Java's writeBoolean */
    K_ZERO,      /* size zero bytes (skip<N>) */
    K_STOPBIT,   /* int64 values as writeStopBit */
    K_STRING,    /* writeUTFΔ: stop-bit byte length (-1 = null) + CESU-8 of Arrow UTF-8 (offsets of size 4 or 8) */
    K_UTF,       /* writeUTF: uint16 byte length + CESU-8; no nulls */
    K_CHAR,      /* writeChar: a one-character Arrow string as one UTF-16 code unit */
    K_RAW,       /* bytes copied as they are: int64 (start, end) pairs into values (replication) */
    K_COUNT
};

enum status { S_OK, S_CHAR, S_UTF_LONG, S_UTF8, S_NULL, S_OFFSETS };

typedef struct {
    int kind;
    Py_ssize_t size;
    Py_buffer values, offsets, validity, fill;
    Py_ssize_t bit_offset;
    int supplementary; /* some text of this column holds 4-byte UTF-8 sequences (place only) */
} Step;

typedef struct {
    Step *steps;
    Py_ssize_t count;
} Program;

/* -- reading the program ------------------------------------------------------------------------------ */
static void release_program(Program *p) {
    for (Py_ssize_t k = 0; k < p->count; k++) {
        Step *s = &p->steps[k];
        if (s->values.obj) PyBuffer_Release(&s->values);
        if (s->offsets.obj) PyBuffer_Release(&s->offsets);
        if (s->validity.obj) PyBuffer_Release(&s->validity);
        if (s->fill.obj) PyBuffer_Release(&s->fill);
    }
    PyMem_Free(p->steps);
    p->steps = NULL;
    p->count = 0;
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t k, const char *what) {
    if (obj == Py_None) return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "step %zd: %s must be a contiguous buffer", k, what);
        return -1;
    }
    return 0;
}

static int bad_step(Py_ssize_t k, const char *why) {
    PyErr_Format(PyExc_ValueError, "step %zd: %s", k, why);
    return -1;
}

/* Every buffer a step reads must cover rows 0..n-1: checked once here, so the loops check only offsets. */
static int check_step(Step *s, Py_ssize_t k, Py_ssize_t n) {
    if (s->kind < 0 || s->kind >= K_COUNT) return bad_step(k, "unknown kind");
    if (s->bit_offset < 0) return bad_step(k, "negative bit offset");
    if (s->validity.obj && s->validity.len < (s->bit_offset + n + 7) / 8) return bad_step(k, "validity too short");
    switch (s->kind) {
    case K_FIXED:
        if (s->size < 1 || !s->values.obj || s->values.len / s->size < n) return bad_step(k, "values too short");
        if (s->validity.obj && (!s->fill.obj || s->fill.len != s->size)) return bad_step(k, "fill must be size bytes");
        return 0;
    case K_BOOL_BITS:
        if (!s->values.obj || s->values.len < (s->bit_offset + n + 7) / 8) return bad_step(k, "values too short");
        return 0;
    case K_ZERO:
        return s->size < 0 ? bad_step(k, "negative size") : 0;
    case K_STOPBIT:
        if (!s->values.obj || s->values.len / 8 < n) return bad_step(k, "values too short");
        return 0;
    case K_RAW:
        if (!s->values.obj || !s->offsets.obj || s->offsets.len / 16 < n) return bad_step(k, "offsets too short");
        return 0;
    default: /* K_STRING, K_UTF, K_CHAR */
        if (s->size != 4 && s->size != 8) return bad_step(k, "offsets must be int32 or int64");
        if (!s->values.obj || !s->offsets.obj || s->offsets.len / s->size < n + 1) return bad_step(k, "offsets too short");
        return 0;
    }
}

static int read_program(PyObject *program, Py_ssize_t n, Program *p) {
    p->steps = NULL;
    p->count = 0;
    if (!PyTuple_Check(program)) {
        PyErr_SetString(PyExc_TypeError, "program must be a tuple of steps");
        return -1;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(program);
    p->steps = PyMem_Calloc(count ? count : 1, sizeof(Step));
    if (!p->steps) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *t = PyTuple_GET_ITEM(program, k);
        Step *s = &p->steps[k];
        p->count = k + 1; /* release_program frees the buffers of this step too */
        int kind, supplementary;
        PyObject *values, *offsets, *validity, *fill;
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "inOOOnOp", &kind, &s->size, &values, &offsets, &validity,
                                                   &s->bit_offset, &fill, &supplementary)) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "step %zd must be (kind, size, values, offsets, validity, bit_offset, fill, supplementary)", k);
            }
            goto fail;
        }
        s->kind = kind;
        s->supplementary = supplementary;
        if (get_buffer(values, &s->values, k, "values") || get_buffer(offsets, &s->offsets, k, "offsets") ||
            get_buffer(validity, &s->validity, k, "validity") || get_buffer(fill, &s->fill, k, "fill") ||
            check_step(s, k, n))
            goto fail;
    }
    return 0;
fail:
    release_program(p);
    return -1;
}

/* -- small pieces of the format ----------------------------------------------------------------------- */
static inline int bit(const Py_buffer *b, Py_ssize_t i) {
    return (((const uint8_t *)b->buf)[i >> 3] >> (i & 7)) & 1;
}

static inline int is_valid(const Step *s, Py_ssize_t row) {
    return !s->validity.obj || bit(&s->validity, s->bit_offset + row);
}

/* Bytes of writeStopBit(v): 7-bit groups of v (of ~v for v < 0, then a 0x00 terminator). */
static inline Py_ssize_t stop_bit_size(int64_t v) {
    uint64_t u = v < 0 ? ~(uint64_t)v : (uint64_t)v;
    int bits = 64 - __builtin_clzll(u | 1);
    return (bits + 6) / 7 + (v < 0);
}

/* Writes writeStopBit(v) at dst (stop_bit_size(v) bytes, checked by the caller). */
static inline uint8_t *put_stop_bit(uint8_t *dst, int64_t v) {
    uint64_t u = v < 0 ? ~(uint64_t)v : (uint64_t)v;
    while (u >= 0x80) {
        *dst++ = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    if (v < 0) {
        *dst++ = (uint8_t)(u | 0x80);
        *dst++ = 0;
    } else {
        *dst++ = (uint8_t)u;
    }
    return dst;
}

/* Start and end of row's text in the step's data, or -1 when the offsets leave the data. */
static inline int text_bounds(const Step *s, Py_ssize_t row, Py_ssize_t *a, Py_ssize_t *b) {
    int64_t lo, hi;
    if (s->size == 4) {
        const int32_t *o = (const int32_t *)s->offsets.buf;
        lo = o[row];
        hi = o[row + 1];
    } else {
        const int64_t *o = (const int64_t *)s->offsets.buf;
        lo = o[row];
        hi = o[row + 1];
    }
    if (lo < 0 || hi < lo || hi > s->values.len) return -1;
    *a = (Py_ssize_t)lo;
    *b = (Py_ssize_t)hi;
    return 0;
}

/* Bytes >= 0xF0: UTF-8 lead bytes of 4-byte sequences (a simple loop the compiler vectorises). */
static Py_ssize_t count_leads4(const uint8_t *p, Py_ssize_t len) {
    Py_ssize_t c = 0;
    for (Py_ssize_t i = 0; i < len; i++) c += p[i] >= 0xF0;
    return c;
}

static inline int is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

/* Checks every 4-byte sequence of p[0..len): a supplementary code point, whole. Returns their count, or -1. */
static Py_ssize_t check_leads4(const uint8_t *p, Py_ssize_t len) {
    Py_ssize_t c = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (p[i] < 0xF0) continue;
        if (p[i] > 0xF4 || i + 3 >= len || !is_cont(p[i + 1]) || !is_cont(p[i + 2]) || !is_cont(p[i + 3]))
            return -1;
        uint32_t cp = ((uint32_t)(p[i] & 7) << 18) | ((uint32_t)(p[i + 1] & 0x3F) << 12) |
                      ((uint32_t)(p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
        if (cp < 0x10000 || cp > 0x10FFFF) return -1;
        c++;
        i += 3;
    }
    return c;
}

static inline uint8_t *put_unit3(uint8_t *d, uint32_t u) {
    d[0] = (uint8_t)(0xE0 | (u >> 12));
    d[1] = (uint8_t)(0x80 | ((u >> 6) & 0x3F));
    d[2] = (uint8_t)(0x80 | (u & 0x3F));
    return d + 3;
}

/* UTF-8 -> Java's CESU-8: each 4-byte sequence becomes its two surrogates, 3 bytes each; the rest is copied.
 * dst holds len + 2 * (sequences) bytes; returns the end written, or NULL on a sequence check_leads4 refuses. */
static uint8_t *put_cesu8(uint8_t *d, const uint8_t *p, Py_ssize_t len) {
    Py_ssize_t i = 0;
    while (i < len) {
        Py_ssize_t j = i;
        while (j < len && p[j] < 0xF0) j++;
        memcpy(d, p + i, (size_t)(j - i));
        d += j - i;
        if (j == len) break;
        if (j + 3 >= len || p[j] > 0xF4) return NULL;
        uint32_t cp = ((uint32_t)(p[j] & 7) << 18) | ((uint32_t)(p[j + 1] & 0x3F) << 12) |
                      ((uint32_t)(p[j + 2] & 0x3F) << 6) | (p[j + 3] & 0x3F);
        if (cp < 0x10000 || cp > 0x10FFFF) return NULL;
        cp -= 0x10000;
        d = put_unit3(d, 0xD800 | (cp >> 10));
        d = put_unit3(d, 0xDC00 | (cp & 0x3FF));
        i = j + 4;
    }
    return d;
}

/* The UTF-16 code unit of a one-character (BMP) UTF-8 string, or -1. */
static int32_t char_unit(const uint8_t *p, Py_ssize_t len) {
    if (len == 1 && p[0] < 0x80) return p[0];
    if (len == 2 && p[0] >= 0xC0 && p[0] < 0xE0 && is_cont(p[1])) return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    if (len == 3 && p[0] >= 0xE0 && p[0] < 0xF0 && is_cont(p[1]) && is_cont(p[2]))
        return ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    return -1;
}

/* -- lengths: one pass per step over the rows, adding into out ----------------------------------------- */
typedef struct {
    Py_ssize_t row; /* first bad row, or -1 */
    Py_ssize_t step;
    int status;
} Bad;

static inline void note(Bad *bad, Py_ssize_t row, Py_ssize_t step, int status) {
    if (bad->row < 0 || row < bad->row) {
        bad->row = row;
        bad->step = step;
        bad->status = status;
    }
}

/* Text of rows lo..hi-1 of a string-like step: adds each row's encoded size to out. */
static void text_lengths(const Step *s, Py_ssize_t k, Py_ssize_t lo, Py_ssize_t hi, int64_t *out, int64_t *found,
                         Bad *bad) {
    const uint8_t *data = (const uint8_t *)s->values.buf;
    Py_ssize_t first, last, a, b;
    if (text_bounds(s, lo, &first, &a) || text_bounds(s, hi - 1, &a, &last)) {
        note(bad, lo, k, S_OFFSETS);
        return;
    }
    /* one scan of the whole range: most columns hold no 4-byte sequence and need no per-row look */
    int scan = count_leads4(data + first, last - first) > 0;
    for (Py_ssize_t r = lo; r < hi; r++) {
        if (!is_valid(s, r)) {
            if (s->kind == K_UTF) note(bad, r, k, S_NULL);
            out[r - lo] += 2; /* null string: stop-bit -1 */
            continue;
        }
        if (text_bounds(s, r, &a, &b)) {
            note(bad, r, k, S_OFFSETS);
            return;
        }
        Py_ssize_t len = b - a;
        if (scan) {
            Py_ssize_t extra = check_leads4(data + a, len);
            if (extra < 0) {
                note(bad, r, k, S_UTF8);
                return;
            }
            *found += extra > 0;
            len += 2 * extra;
        }
        if (s->kind == K_UTF) {
            if (len > 0xFFFF) note(bad, r, k, S_UTF_LONG);
            out[r - lo] += 2 + len;
        } else {
            out[r - lo] += stop_bit_size(len) + len;
        }
    }
}

static void step_lengths(const Step *s, Py_ssize_t k, Py_ssize_t lo, Py_ssize_t hi, int64_t *out, int64_t *found,
                         Bad *bad) {
    Py_ssize_t a, b;
    switch (s->kind) {
    case K_FIXED:
    case K_ZERO:
        for (Py_ssize_t r = lo; r < hi; r++) out[r - lo] += s->size;
        return;
    case K_BOOL_BITS:
        for (Py_ssize_t r = lo; r < hi; r++) out[r - lo] += 1;
        return;
    case K_STOPBIT: {
        const int64_t *v = (const int64_t *)s->values.buf;
        for (Py_ssize_t r = lo; r < hi; r++) out[r - lo] += stop_bit_size(v[r]);
        return;
    }
    case K_RAW: {
        const int64_t *o = (const int64_t *)s->offsets.buf;
        for (Py_ssize_t r = lo; r < hi; r++) {
            if (o[2 * r] < 0 || o[2 * r + 1] < o[2 * r] || o[2 * r + 1] > s->values.len) {
                note(bad, r, k, S_OFFSETS);
                return;
            }
            out[r - lo] += o[2 * r + 1] - o[2 * r];
        }
        return;
    }
    case K_CHAR:
        for (Py_ssize_t r = lo; r < hi; r++) {
            out[r - lo] += 2;
            if (!is_valid(s, r)) {
                note(bad, r, k, S_NULL);
                return;
            }
            if (text_bounds(s, r, &a, &b)) {
                note(bad, r, k, S_OFFSETS);
                return;
            }
            if (char_unit((const uint8_t *)s->values.buf + a, b - a) < 0) {
                note(bad, r, k, S_CHAR);
                return;
            }
        }
        return;
    default: /* K_STRING, K_UTF */
        text_lengths(s, k, lo, hi, out, found, bad);
    }
}

static PyObject *lengths(PyObject *self, PyObject *args) {
    PyObject *program;
    Py_ssize_t n, lo, hi;
    Py_buffer out, found;
    if (!PyArg_ParseTuple(args, "Onnnw*w*", &program, &n, &lo, &hi, &out, &found)) return NULL;
    Program p;
    PyObject *result = NULL;
    if (read_program(program, n, &p)) goto done;
    if (lo < 0 || hi < lo || hi > n) {
        PyErr_Format(PyExc_ValueError, "rows %zd..%zd outside 0..%zd", lo, hi, n);
        goto done;
    }
    if (out.len / 8 < hi - lo || found.len / 8 < p.count) {
        PyErr_SetString(PyExc_ValueError, "out needs hi - lo int64 and found one int64 per step");
        goto done;
    }
    Bad bad = {-1, -1, S_OK};
    Py_BEGIN_ALLOW_THREADS
    int64_t *o = (int64_t *)out.buf;
    memset(o, 0, (size_t)(hi - lo) * 8);
    if (hi > lo)
        for (Py_ssize_t k = 0; k < p.count; k++) step_lengths(&p.steps[k], k, lo, hi, o, (int64_t *)found.buf + k, &bad);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nni", bad.row, bad.step, bad.status);
done:
    release_program(&p);
    PyBuffer_Release(&out);
    PyBuffer_Release(&found);
    return result;
}

/* -- place: the messages of some rows, back to back ---------------------------------------------------- */
enum { HEADER_SIZE = 4 };

/* One field of row r at d (before end). Returns the new cursor, or NULL when it would pass end or the row is
 * not what lengths() accepted. */
static uint8_t *put_field(const Step *s, Py_ssize_t r, uint8_t *d, const uint8_t *end) {
    Py_ssize_t a, b;
    switch (s->kind) {
    case K_FIXED: {
        if (end - d < s->size) return NULL;
        const uint8_t *src = is_valid(s, r) ? (const uint8_t *)s->values.buf + r * s->size : s->fill.buf;
        switch (s->size) { /* constant sizes: one load and one store each */
        case 8: memcpy(d, src, 8); break;
        case 4: memcpy(d, src, 4); break;
        case 2: memcpy(d, src, 2); break;
        case 1: *d = *src; break;
        default: memcpy(d, src, (size_t)s->size);
        }
        return d + s->size;
    }
    case K_BOOL_BITS:
        if (end - d < 1) return NULL;
        *d = bit(&s->values, s->bit_offset + r) ? 0x59 : 0;
        return d + 1;
    case K_ZERO:
        if (end - d < s->size) return NULL;
        memset(d, 0, (size_t)s->size);
        return d + s->size;
    case K_STOPBIT: {
        int64_t v = ((const int64_t *)s->values.buf)[r];
        if (end - d < stop_bit_size(v)) return NULL;
        return put_stop_bit(d, v);
    }
    case K_RAW: {
        const int64_t *o = (const int64_t *)s->offsets.buf;
        if (o[2 * r] < 0 || o[2 * r + 1] < o[2 * r] || o[2 * r + 1] > s->values.len) return NULL;
        Py_ssize_t len = (Py_ssize_t)(o[2 * r + 1] - o[2 * r]);
        if (end - d < len) return NULL;
        memcpy(d, (const uint8_t *)s->values.buf + o[2 * r], (size_t)len);
        return d + len;
    }
    case K_CHAR: {
        if (end - d < 2 || text_bounds(s, r, &a, &b)) return NULL;
        int32_t u = char_unit((const uint8_t *)s->values.buf + a, b - a);
        if (u < 0) return NULL;
        d[0] = (uint8_t)u;
        d[1] = (uint8_t)(u >> 8);
        return d + 2;
    }
    default: { /* K_STRING, K_UTF */
        if (!is_valid(s, r)) {
            if (s->kind == K_UTF || end - d < 2) return NULL;
            d[0] = 0x80; /* writeUTFΔ(null): stop-bit -1 */
            d[1] = 0x00;
            return d + 2;
        }
        if (text_bounds(s, r, &a, &b)) return NULL;
        const uint8_t *src = (const uint8_t *)s->values.buf + a;
        Py_ssize_t len = b - a, extra = s->supplementary ? count_leads4(src, len) : 0;
        Py_ssize_t size = len + 2 * extra;
        if (s->kind == K_UTF) {
            if (size > 0xFFFF || end - d < 2 + size) return NULL;
            d[0] = (uint8_t)size;
            d[1] = (uint8_t)(size >> 8);
            d += 2;
        } else {
            if (end - d < stop_bit_size(size) + size) return NULL;
            d = put_stop_bit(d, size);
        }
        if (!extra) {
            memcpy(d, src, (size_t)len);
            return d + len;
        }
        uint8_t *e = put_cesu8(d, src, len);
        return e == d + size ? e : NULL;
    }
    }
}

static PyObject *place(PyObject *self, PyObject *args) {
    PyObject *program;
    Py_ssize_t n;
    Py_buffer rows, buf;
    if (!PyArg_ParseTuple(args, "Ony*w*", &program, &n, &rows, &buf)) return NULL;
    Program p;
    PyObject *result = NULL;
    if (read_program(program, n, &p)) goto done;
    Py_ssize_t m = rows.len / 8, pos = 0, failed = -1;
    int bad_row = 0;
    Py_BEGIN_ALLOW_THREADS
    const int64_t *row = (const int64_t *)rows.buf;
    uint8_t *base = (uint8_t *)buf.buf, *end = base + buf.len;
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t r = row[i];
        if (r < 0 || r >= n) {
            failed = i;
            bad_row = 1;
            break;
        }
        if (buf.len - pos < HEADER_SIZE) {
            failed = i;
            break;
        }
        uint8_t *d = base + pos + HEADER_SIZE;
        for (Py_ssize_t k = 0; k < p.count && d; k++) d = put_field(&p.steps[k], (Py_ssize_t)r, d, end);
        if (!d) {
            failed = i;
            break;
        }
        Py_ssize_t body = (d - base) - pos - HEADER_SIZE, next = (pos + HEADER_SIZE + body + 3) & ~(Py_ssize_t)3;
        if (body > INT32_MAX || next > buf.len) {
            failed = i;
            break;
        }
        uint32_t header = ~(uint32_t)body; /* ~length, little-endian, as the row writer's finish() leaves it */
        uint8_t h[4] = {(uint8_t)header, (uint8_t)(header >> 8), (uint8_t)(header >> 16), (uint8_t)(header >> 24)};
        memcpy(base + pos, h, 4);
        memset(d, 0, (size_t)(base + next - d));
        pos = next;
    }
    Py_END_ALLOW_THREADS
    if (failed >= 0) {
        if (bad_row)
            PyErr_Format(PyExc_ValueError, "rows[%zd] is not a row of 0..%zd", failed, n);
        else
            PyErr_Format(PyExc_ValueError,
                         "the message of rows[%zd] does not fit in %zd bytes of buffer after %zd, or is not the "
                         "message lengths() measured", failed, buf.len, pos);
        goto done;
    }
    result = PyLong_FromSsize_t(pos);
done:
    release_program(&p);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"lengths", lengths, METH_VARARGS, "lengths(program, n, lo, hi, out, found) -> (row, step, status)"},
    {"place", place, METH_VARARGS, "place(program, n, rows, buf) -> bytes laid out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_encode", "The frames encoder (see _encode.c).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__encode(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    /* the step kinds and statuses, so that Python takes them from here */
    static const struct { const char *name; int value; } constants[] = {
        {"K_FIXED", K_FIXED}, {"K_BOOL_BITS", K_BOOL_BITS}, {"K_ZERO", K_ZERO}, {"K_STOPBIT", K_STOPBIT},
        {"K_STRING", K_STRING}, {"K_UTF", K_UTF}, {"K_CHAR", K_CHAR}, {"K_RAW", K_RAW},
        {"S_OK", S_OK}, {"S_CHAR", S_CHAR}, {"S_UTF_LONG", S_UTF_LONG}, {"S_UTF8", S_UTF8}, {"S_NULL", S_NULL},
        {"S_OFFSETS", S_OFFSETS},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
