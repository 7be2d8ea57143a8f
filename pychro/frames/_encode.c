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
 *   place(program, n, rows, lengths, buf, entries, entry_base) -> bytes
 *       the messages of rows[0..m) back to back from buf[0], as the row writer leaves them in a data file:
 *       ~length header, fields, zero padding to the next 4-byte boundary. Returns the bytes laid out. Each
 *       body must be exactly lengths[row] bytes (the lengths() of the same program). rows: an int64 array or
 *       a range (step 1: no array to build and read). entries (uint64, m of them, or None): each message's index
 *       entry, entry_base + its header's offset in buf, for the committer.
 *   fit(rows, lengths, pos, roll_at, limit) -> (count, size)
 *       how many of rows (as in place) go in one run from file offset pos: those whose header starts at or
 *       before roll_at and that end at or before limit (at least one, when the first starts at or before
 *       roll_at; none means the data file must roll first), and the bytes they take.
 *
 * Both release the GIL. Every read is checked against its buffer (n rows, offsets inside the data), every store
 * against buf; the only allocations are the step (and op) arrays, freed before returning. Errors raised: ValueError or
 * TypeError for arguments that break these rules, MemoryError. Validation problems are statuses, not errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the encoder builds little-endian words (Java's byte order here) in registers"
#endif

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

/* Whether a buffer read as int32/int64 in place (width bytes) sits at an address it cannot be read from: not
 * checked when there are no rows (numpy calls an empty array aligned wherever it is; nothing is read). */
static int misaligned(const Py_buffer *b, Py_ssize_t width, Py_ssize_t n) {
    return n > 0 && (uintptr_t)b->buf % (uintptr_t)width != 0;
}

/* Every buffer a step reads must cover rows 0..n-1: checked once here, so the loops check only offsets. */
static int check_step(Step *s, Py_ssize_t k, Py_ssize_t n) {
    if (s->kind < 0 || s->kind >= K_COUNT) return bad_step(k, "unknown kind");
    if (s->bit_offset < 0 || s->bit_offset > PY_SSIZE_T_MAX / 2 - n) return bad_step(k, "bit offset out of range");
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
        if (misaligned(&s->values, 8, n)) return bad_step(k, "values must be aligned");
        return 0;
    case K_RAW:
        if (!s->values.obj || !s->offsets.obj || s->offsets.len / 16 < n) return bad_step(k, "offsets too short");
        if (misaligned(&s->offsets, 8, n)) return bad_step(k, "offsets must be aligned");
        return 0;
    default: /* K_STRING, K_UTF, K_CHAR */
        if (s->size != 4 && s->size != 8) return bad_step(k, "offsets must be int32 or int64");
        if (!s->values.obj || !s->offsets.obj || s->offsets.len / s->size < n + 1) return bad_step(k, "offsets too short");
        if (misaligned(&s->offsets, s->size, n)) return bad_step(k, "offsets must be aligned");
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

static inline uint64_t load8(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline void store8(uint8_t *p, uint64_t w) { memcpy(p, &w, 8); }

/* memcpy for short runs: up to 16 bytes as two overlapping loads and stores, no call, no byte read or written
 * outside [src, src + len) and [dst, dst + len). */
static inline void copy_exact(uint8_t *dst, const uint8_t *src, Py_ssize_t len) {
    if (len >= 8 && len <= 16) {
        uint64_t a = load8(src), b = load8(src + len - 8);
        store8(dst, a);
        store8(dst + len - 8, b);
    } else if (len >= 4 && len < 8) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + len - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + len - 4, &b, 4);
    } else if (len > 0 && len < 4) {
        uint8_t a = src[0], b = src[len >> 1], c = src[len - 1];
        dst[0] = a;
        dst[len >> 1] = b;
        dst[len - 1] = c;
    } else if (len > 16) {
        memcpy(dst, src, (size_t)len);
    }
}

/* Bytes of writeStopBit(v): 7-bit groups of v (of ~v for v < 0, then a 0x00 terminator). */
static inline Py_ssize_t stop_bit_size(int64_t v) {
    /* 7-bit groups by leading zeros of u | 1 (a table instead of (64 - lz + 6) / 7) */
    static const uint8_t groups[64] = {10, 9, 9, 9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6,
                                       6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 2, 2,
                                       2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1};
    uint64_t neg = (uint64_t)(v >> 63), u = (uint64_t)v ^ neg;
    return groups[__builtin_clzll(u | 1)] + (Py_ssize_t)(neg & 1);
}

/* writeStopBit(v) of at most 8 bytes (|v| < 2^49, or 2^56 for v >= 0) as a little-endian word, built without
 * a branch on the data: signs and sizes vary from row to row, and mispredicted branches cost more. */
static inline uint64_t stop_bit_word(int64_t v, Py_ssize_t size) {
    uint64_t neg = (uint64_t)(v >> 63), u = (uint64_t)v ^ neg; /* ~v for negatives */
    /* the 7-bit groups of u (below 2^56) into the low 7 bits of each byte, low first: halves, quarters, eighths */
    uint64_t w = (u & 0x000000000FFFFFFFull) | ((u & 0x00FFFFFFF0000000ull) << 4);
    w = (w & 0x00003FFF00003FFFull) | ((w & 0x0FFFC0000FFFC000ull) << 2);
    w = (w & 0x007F007F007F007Full) | ((w & 0x3F803F803F803F80ull) << 1);
    /* the continuation flag on every byte but the last of a non-negative value; on every byte before the
     * 0x00 terminator (already 0 in w) of a negative one */
    uint64_t flagged = (uint64_t)(size - 1) * 8;
    return w | (0x8080808080808080ull & ((1ull << flagged) - 1));
}

/* Writes writeStopBit(v) at d (stop_bit_size(v) bytes, room checked by the caller), byte by byte. */
static inline uint8_t *put_stop_bit(uint8_t *d, int64_t v) {
    uint64_t u = v < 0 ? ~(uint64_t)v : (uint64_t)v;
    while (u >= 0x80) {
        *d++ = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    if (v < 0) {
        *d++ = (uint8_t)(u | 0x80);
        *d++ = 0;
    } else {
        *d++ = (uint8_t)u;
    }
    return d;
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

/* Bytes >= 0xF0 (UTF-8 leads of 4-byte sequences) in 8 bytes: their top bit set in the result. */
static inline uint64_t leads4_in(uint64_t w) {
    return w & (w << 1) & (w << 2) & (w << 3) & 0x8080808080808080ull;
}

/* Bytes >= 0x80 (not ASCII) in 8 bytes: their top bit set in the result. */
static inline uint64_t non_ascii_in(uint64_t w) { return w & 0x8080808080808080ull; }

/* Whether p[0..len) holds a byte that `in` (leads4_in or non_ascii_in) marks; `readable` bytes from p may be read
 * (>= len). Inlined with `in` known: one word test per 8 bytes. */
static inline int has_any(const uint8_t *p, Py_ssize_t len, Py_ssize_t readable, uint64_t (*in)(uint64_t)) {
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8)
        if (in(load8(p + i))) return 1;
    if (i == len) return 0;
    if (readable - i >= 8) /* the tail in one word, bytes past the text masked off */
        return in(load8(p + i) & (~0ull >> (8 * (8 - (len - i))))) != 0;
    for (; i < len; i++) /* a byte alone in a word: its own top bit is marked as in a whole word */
        if (in(p[i])) return 1;
    return 0;
}

/* Whether a whole range holds a byte >= 0x80 (a loop the compiler vectorises). */
static int any_non_ascii(const uint8_t *p, Py_ssize_t len) {
    uint8_t any = 0;
    for (Py_ssize_t i = 0; i < len; i++) any |= p[i];
    return any >= 0x80;
}

static inline int is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

/* The code point of the 4-byte sequence at p[0..4) when it is a whole supplementary one, else -1. */
static inline int32_t supplementary_at(const uint8_t *p, Py_ssize_t left) {
    if (left < 4 || p[0] > 0xF4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3])) return -1;
    int32_t cp = ((int32_t)(p[0] & 7) << 18) | ((int32_t)(p[1] & 0x3F) << 12) | ((int32_t)(p[2] & 0x3F) << 6) |
                 (p[3] & 0x3F);
    return cp >= 0x10000 && cp <= 0x10FFFF ? cp : -1;
}

/* The 4-byte sequences of p[0..len), each checked (a supplementary code point, whole). Their count, or -1. */
static Py_ssize_t check_leads4(const uint8_t *p, Py_ssize_t len) {
    Py_ssize_t c = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (p[i] < 0xF0) continue;
        if (supplementary_at(p + i, len - i) < 0) return -1;
        c++;
        i += 3;
    }
    return c;
}

/* p[0..len) checked as UTF-8 (RFC 3629: no overlong form, no surrogate, nothing past U+10FFFF, no sequence cut
 * short): the number of its 4-byte sequences (each written as two 3-byte surrogates), or -1. Arrow promises valid
 * UTF-8 in a string column, but a binary column viewed or cast as one keeps whatever bytes it had, and Java would
 * read them as other text (our reader refuses them). */
static Py_ssize_t check_utf8(const uint8_t *p, Py_ssize_t len) {
    Py_ssize_t c = 0, i = 0;
    while (i < len) {
        uint8_t b = p[i];
        if (len - i >= 8 && !non_ascii_in(load8(p + i))) { /* ASCII a word at a time */
            i += 8;
        } else if (b < 0x80) {
            i++;
        } else if (b >= 0xC2 && b <= 0xDF) {
            if (len - i < 2 || !is_cont(p[i + 1])) return -1;
            i += 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            if (len - i < 3 || !is_cont(p[i + 1]) || !is_cont(p[i + 2])) return -1;
            if ((b == 0xE0 && p[i + 1] < 0xA0) || (b == 0xED && p[i + 1] >= 0xA0)) return -1; /* overlong; surrogate */
            i += 3;
        } else if (b >= 0xF0 && supplementary_at(p + i, len - i) >= 0) { /* F0..F4: U+10000..U+10FFFF, whole */
            c++;
            i += 4;
        } else {
            return -1;
        }
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
 * d holds len + 2 * (sequences) bytes; returns the end written, or NULL on a sequence check_leads4 refuses. */
static uint8_t *put_cesu8(uint8_t *d, const uint8_t *p, Py_ssize_t len) {
    Py_ssize_t i = 0;
    while (i < len) {
        Py_ssize_t j = i;
        while (j < len && p[j] < 0xF0) j++;
        memcpy(d, p + i, (size_t)(j - i));
        d += j - i;
        if (j == len) break;
        int32_t cp = supplementary_at(p + j, len - j);
        if (cp < 0) return NULL;
        cp -= 0x10000;
        d = put_unit3(d, 0xD800 | ((uint32_t)cp >> 10));
        d = put_unit3(d, 0xDC00 | ((uint32_t)cp & 0x3FF));
        i = j + 4;
    }
    return d;
}

/* The UTF-16 code unit of a one-character (BMP) UTF-8 string, or -1: as check_utf8 takes it (no overlong form,
 * no surrogate), so that only valid text is written; the caller tells invalid text from other text. */
static int32_t char_unit(const uint8_t *p, Py_ssize_t len) {
    if (len == 1 && p[0] < 0x80) return p[0];
    if (len == 2 && p[0] >= 0xC2 && p[0] <= 0xDF && is_cont(p[1])) return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    if (len == 3 && p[0] >= 0xE0 && p[0] <= 0xEF && check_utf8(p, 3) == 0) /* one 3-byte sequence, not three */
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

/* The bytes writeUTFΔ (utf 0: a stop-bit length, one byte for nearly all text) or writeUTF (utf 1: two) takes
 * for text of len bytes once transcoded. */
static inline int64_t text_size(int64_t len, int utf) {
    return (utf ? 2 : len < 0x80 ? 1 : (int64_t)stop_bit_size(len)) + len;
}

/* The stop-bit length prefix of len bytes of text (len < 2^31), computed in 32 bits: compares the compiler
 * vectorises (SSE2 has no 64-bit compare). */
static inline int32_t prefix_size(int32_t len) {
    return 1 + (len > 0x7F) + (len > 0x3FFF) + (len > 0x1FFFFF) + (len > 0xFFFFFFF);
}

/* o[r + 1] - o[r], wrapping: offsets checked to rise may be changed by another thread meanwhile (no overflow then
 * either, just a wrong length). */
static inline int32_t span32(const int32_t *o, Py_ssize_t r) { return (int32_t)((uint32_t)o[r + 1] - (uint32_t)o[r]); }
static inline int64_t span64(const int64_t *o, Py_ssize_t r) { return (int64_t)((uint64_t)o[r + 1] - (uint64_t)o[r]); }

/* Each row's size as if its text were ASCII (out[r - lo] += ...), for offsets that never fall (so every row's
 * length is >= 0 and, with int32 offsets, fits 32 bits). Arrow's strings (int32 offsets): one loop per case,
 * without branches on the data, which the compiler vectorises (a null mask, not a branch: nulls are random);
 * large strings row by row. A writeUTF step comes here only without nulls. */
static void ascii_sizes(const Step *s, Py_ssize_t lo, Py_ssize_t hi, int64_t *restrict out) {
    const uint8_t *valid = s->validity.obj ? (const uint8_t *)s->validity.buf : NULL;
    Py_ssize_t bits = s->bit_offset;
    if (s->size == 4) {
        const int32_t *o = (const int32_t *)s->offsets.buf;
        if (s->kind == K_UTF) {
            for (Py_ssize_t r = lo; r < hi; r++) out[r - lo] += 2 + (int64_t)span32(o, r);
        } else if (!valid) {
            for (Py_ssize_t r = lo; r < hi; r++) {
                int32_t len = span32(o, r);
                out[r - lo] += (int64_t)len + prefix_size(len);
            }
        } else {
            for (Py_ssize_t r = lo; r < hi; r++) { /* a null is stop-bit -1: 2 bytes */
                int32_t len = span32(o, r);
                Py_ssize_t x = bits + r;
                int64_t keep = -(int64_t)((valid[x >> 3] >> (x & 7)) & 1), size = (int64_t)len + prefix_size(len);
                out[r - lo] += (size & keep) | (2 & ~keep);
            }
        }
    } else {
        const int64_t *o = (const int64_t *)s->offsets.buf;
        for (Py_ssize_t r = lo; r < hi; r++) {
            int64_t len = span64(o, r);
            out[r - lo] += is_valid(s, r) ? text_size(len, s->kind == K_UTF) : 2;
        }
    }
}

/* The fast pass of text_lengths over rows lo..hi-1 whose offsets never fall: every row's text then lies inside
 * [first, last) = [o[lo], o[hi]), checked by the caller against the data. The offsets are read again here: each
 * read is kept inside rows lo..hi-1 and bytes [first, last), so that offsets another thread changes meanwhile
 * (the GIL is released) give wrong lengths at worst, never a read or write outside the buffers. Each row first
 * counts as if its text were ASCII (ascii_sizes); then only the rows holding a byte >= 0x80, found by one scan of
 * the data, are checked as UTF-8 and corrected (most rows of most columns are ASCII). Inlined with o32 or o64 NULL. Not for writeUTF text that
 * may be null or too long (the caller's slow loop names those rows). */
static __attribute__((always_inline)) inline void text_lengths_fast(const Step *s, Py_ssize_t k, Py_ssize_t lo,
                                                                    Py_ssize_t hi, Py_ssize_t first,
                                                                    Py_ssize_t last, const int32_t *o32,
                                                                    const int64_t *o64, int64_t *restrict out,
                                                                    int64_t *found, Bad *bad) {
#define OFF(r) ((Py_ssize_t)(o32 ? (int64_t)o32[r] : o64[r]))
    const uint8_t *data = (const uint8_t *)s->values.buf;
    Py_ssize_t i = first, r = lo, rows_found = 0;
    int utf = s->kind == K_UTF;
    ascii_sizes(s, lo, hi, out);
    while (i < last) {
        /* the next byte >= 0x80 at or after i: 32, then 8 bytes at a time, then byte by byte at the end */
        if (last - i >= 32 && !non_ascii_in(load8(data + i) | load8(data + i + 8) | load8(data + i + 16) |
                                             load8(data + i + 24))) {
            i += 32;
            continue;
        }
        if (last - i >= 8) {
            uint64_t w = non_ascii_in(load8(data + i));
            if (!w) {
                i += 8;
                continue;
            }
            i += __builtin_ctzll(w) >> 3;
        } else if (data[i] < 0x80) {
            i++;
            continue;
        }
        while (r + 1 < hi && OFF(r + 1) <= i) r++; /* its row: o[r] <= i < o[r + 1] */
        Py_ssize_t start = OFF(r), end = OFF(r + 1);
        start = start < first ? first : start > last ? last : start;
        end = end < start ? start : end > last ? last : end;
        i = end > i ? end : i + 1;
        if (!is_valid(s, r)) continue; /* a null's bytes: unused */
        Py_ssize_t extra = check_utf8(data + start, end - start);
        if (extra < 0) {
            note(bad, r, k, S_UTF8);
            return;
        }
        if (extra) {
            rows_found++;
            out[r - lo] += text_size(end - start + 2 * extra, utf) - text_size(end - start, utf); /* 4 -> 6 bytes */
        }
    }
    *found += rows_found;
#undef OFF
}

/* Whether the offsets of rows lo..hi-1 ever fall (a row ending before it starts); *longest: the longest row when
 * they do not (asked for writeUTF only). Loops the compiler vectorises. */
static int offsets_fall(const Step *s, Py_ssize_t lo, Py_ssize_t hi, int64_t *longest) {
    int falls = 0;
    int64_t most = 0;
    if (s->size == 4) {
        const int32_t *o = (const int32_t *)s->offsets.buf;
        for (Py_ssize_t r = lo; r < hi; r++) falls |= o[r + 1] < o[r];
        if (longest && !falls)
            for (Py_ssize_t r = lo; r < hi; r++) most = span32(o, r) > most ? span32(o, r) : most;
    } else {
        const int64_t *o = (const int64_t *)s->offsets.buf;
        for (Py_ssize_t r = lo; r < hi; r++) falls |= o[r + 1] < o[r];
        if (longest && !falls)
            for (Py_ssize_t r = lo; r < hi; r++) most = span64(o, r) > most ? span64(o, r) : most;
    }
    if (longest) *longest = most;
    return falls;
}

/* Text of rows lo..hi-1 of a string step: adds each row's encoded size to out. */
static void text_lengths(const Step *s, Py_ssize_t k, Py_ssize_t lo, Py_ssize_t hi, int64_t *restrict out,
                         int64_t *found, Bad *bad) {
    const uint8_t *data = (const uint8_t *)s->values.buf;
    Py_ssize_t first, last, a;
    if (text_bounds(s, lo, &first, &a) || text_bounds(s, hi - 1, &a, &last)) {
        note(bad, lo, k, S_OFFSETS);
        return;
    }
    /* offsets that never fall keep every row inside [first, last): the fast pass, unless writeUTF text may be
     * null or, transcoded (at most 1.5x: 4 bytes become 6), longer than 65535 bytes */
    int64_t longest = 0;
    int utf = s->kind == K_UTF;
    if (!(utf && s->validity.obj) && !offsets_fall(s, lo, hi, utf ? &longest : NULL) &&
        longest + longest / 2 <= 0xFFFF) {
        if (s->size == 4)
            text_lengths_fast(s, k, lo, hi, first, last, (const int32_t *)s->offsets.buf, NULL, out, found, bad);
        else
            text_lengths_fast(s, k, lo, hi, first, last, NULL, (const int64_t *)s->offsets.buf, out, found, bad);
        return;
    }
    /* one scan of the whole range: most tiles of most columns are ASCII and need no per-row look */
    int scan = any_non_ascii(data + first, last - first);
    /* the step's fields in locals: the stores into out must not make the loop reload them */
    const uint8_t *valid = s->validity.obj ? (const uint8_t *)s->validity.buf : NULL;
    const int32_t *o32 = s->size == 4 ? (const int32_t *)s->offsets.buf : NULL;
    const int64_t *o64 = (const int64_t *)s->offsets.buf;
    Py_ssize_t bits = s->bit_offset, data_len = s->values.len, rows_found = 0;
    for (Py_ssize_t r = lo; r < hi; r++) {
        Py_ssize_t x = bits + r;
        if (valid && !((valid[x >> 3] >> (x & 7)) & 1)) {
            if (utf) note(bad, r, k, S_NULL);
            out[r - lo] += 2; /* null string: stop-bit -1 */
            continue;
        }
        int64_t start = o32 ? o32[r] : o64[r], end = o32 ? o32[r + 1] : o64[r + 1];
        if (start < 0 || end < start || end > data_len) { /* rows stay in [first, last) while offsets rise */
            note(bad, r, k, S_OFFSETS);
            return;
        }
        Py_ssize_t len = (Py_ssize_t)(end - start);
        if (scan && has_any(data + start, len, data_len - (Py_ssize_t)start, non_ascii_in)) {
            Py_ssize_t extra = check_utf8(data + start, len);
            if (extra < 0) {
                note(bad, r, k, S_UTF8);
                return;
            }
            rows_found += extra > 0;
            len += 2 * extra;
        }
        if (utf && len > 0xFFFF) note(bad, r, k, S_UTF_LONG);
        out[r - lo] += text_size(len, utf);
    }
    *found += rows_found;
}

static void step_lengths(const Step *s, Py_ssize_t k, Py_ssize_t lo, Py_ssize_t hi, int64_t *out, int64_t *found,
                         Bad *bad) {
    Py_ssize_t a, b;
    switch (s->kind) {
    case K_FIXED:
    case K_ZERO:
    case K_BOOL_BITS:
    case K_STOPBIT:
        return; /* in the row by row pass of lengths() */
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
            const uint8_t *t = (const uint8_t *)s->values.buf + a;
            if (char_unit(t, b - a) < 0) {
                note(bad, r, k, check_utf8(t, b - a) < 0 ? S_UTF8 : S_CHAR); /* (the error shows the text) */
                return;
            }
        }
        return;
    default: /* K_STRING, K_UTF */
        text_lengths(s, k, lo, hi, out, found, bad);
    }
}

enum { LENGTHS_TILE = 4096 }; /* rows: 32 KiB of out */

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
    /* the bytes of the fixed-size fields, and the values of the stop-bit ones */
    Py_ssize_t fixed = 0, n_stop = 0;
    const int64_t **stop = PyMem_Malloc(sizeof(*stop) * (size_t)(p.count ? p.count : 1));
    if (!stop) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < p.count; k++) {
        const Step *s = &p.steps[k];
        if (s->kind == K_FIXED || s->kind == K_ZERO)
            fixed += s->size;
        else if (s->kind == K_BOOL_BITS)
            fixed += 1;
        else if (s->kind == K_STOPBIT)
            stop[n_stop++] = (const int64_t *)s->values.buf;
    }
    Bad bad = {-1, -1, S_OK};
    Py_BEGIN_ALLOW_THREADS
    int64_t *o = (int64_t *)out.buf;
    /* By tiles of rows: first the fixed-size and stop-bit fields, row by row (their columns read side by side,
     * each a stream the prefetcher follows: field by field, 4 stop-bit fields of 1 M rows took 9x the time of
     * one), then each other field over the tile, adding to out's tile while it is in cache (field by field
     * over all rows, 10 M rows took 13x the time of 1 M). A tile's bad row comes before every row of the next
     * tile: stop at the first tile holding one. */
    for (Py_ssize_t t = lo; t < hi && bad.row < 0; t += LENGTHS_TILE) {
        Py_ssize_t t_hi = hi - t > LENGTHS_TILE ? t + LENGTHS_TILE : hi;
        int64_t *ot = o + (t - lo);
        for (Py_ssize_t r = t; r < t_hi; r++) {
            int64_t bytes = fixed;
            for (Py_ssize_t j = 0; j < n_stop; j++) bytes += stop_bit_size(stop[j][r]);
            ot[r - t] = bytes;
        }
        for (Py_ssize_t k = 0; k < p.count; k++)
            step_lengths(&p.steps[k], k, t, t_hi, ot, (int64_t *)found.buf + k, &bad);
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(stop);
    result = Py_BuildValue("nni", bad.row, bad.step, bad.status);
done:
    release_program(&p);
    PyBuffer_Release(&out);
    PyBuffer_Release(&found);
    return result;
}

enum { HEADER_SIZE = 4 }; /* the ~length before each body */

/* -- rows: an int64 array, or a range (first, first + 1, ...) ---------------------------------------------- */
typedef struct {
    Py_buffer view;      /* the array (view.obj NULL for a range) */
    const int64_t *list; /* its values, or NULL */
    Py_ssize_t first, count;
} Rows;

/* obj as an aligned, C-contiguous array of 8-byte integers whose format letter is in letters (numpy's int64 is
 * "l", Python's array "q"; uint64 "L" or "Q"; an empty one may be anywhere), else an error naming it: an array of
 * another type would be read as garbage words (within its bounds, but a wrong answer or a vague error). */
static int word_view(PyObject *obj, Py_buffer *view, int flags, const char *letters, const char *name) {
    const char *type = strchr(letters, 'l') ? "int64" : "uint64";
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        if (!PyErr_Occurred()) { /* an exporter that failed without saying why */
            PyErr_Format(PyExc_ValueError, "%s: its buffer could not be had", name);
            return -1;
        }
        /* the exporter's usual errors say it again with the argument's name, the original as the cause; any other
         * (an exception of its own, MemoryError, KeyboardInterrupt) goes on as it is */
        PyObject *kind, *value, *tb, *again = NULL;
        PyErr_Fetch(&kind, &value, &tb);
        PyErr_NormalizeException(&kind, &value, &tb);
        if (kind == PyExc_BufferError || kind == PyExc_ValueError || kind == PyExc_TypeError) {
            PyObject *said = PyUnicode_FromFormat("%s: %S", name, value);
            again = said ? PyObject_CallOneArg(kind, said) : NULL;
            Py_XDECREF(said);
        }
        if (!again) {
            PyErr_Clear(); /* (its str() failed: the original is better) */
            PyErr_Restore(kind, value, tb);
            return -1;
        }
        if (tb) PyException_SetTraceback(value, tb);
        PyException_SetCause(again, value); /* steals value */
        PyErr_SetObject(kind, again);
        Py_DECREF(again);
        Py_DECREF(kind);
        Py_XDECREF(tb);
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    const char *letter = *f == '@' || *f == '=' || *f == '<' ? f + 1 : f;
    if (view->itemsize != 8 || !letter[0] || letter[1] || !strchr(letters, letter[0])) {
        PyErr_Format(PyExc_ValueError, "%s must be an array of %s, not of format '%s' (%zd-byte items)", name, type,
                     f, view->itemsize);
    } else if (misaligned(view, 8, view->len)) {
        PyErr_Format(PyExc_ValueError, "%s must be aligned to 8 bytes", name);
    } else {
        return 0;
    }
    PyBuffer_Release(view);
    return -1;
}

static int read_rows(PyObject *obj, Rows *r) {
    memset(r, 0, sizeof *r);
    if (PyRange_Check(obj)) {
        Py_ssize_t v[3];
        const char *names[3] = {"start", "stop", "step"};
        for (int k = 0; k < 3; k++) {
            PyObject *x = PyObject_GetAttrString(obj, names[k]);
            if (!x) return -1;
            v[k] = PyLong_AsSsize_t(x);
            Py_DECREF(x);
            if (v[k] == -1 && PyErr_Occurred()) return -1;
        }
        if (v[2] != 1) {
            PyErr_SetString(PyExc_ValueError, "rows: a range must have step 1");
            return -1;
        }
        if (v[0] < 0 && v[1] > PY_SSIZE_T_MAX + v[0]) { /* its length would overflow */
            PyErr_SetString(PyExc_ValueError, "rows: the range is too long");
            return -1;
        }
        r->first = v[0];
        r->count = v[1] > v[0] ? v[1] - v[0] : 0;
        return 0;
    }
    if (word_view(obj, &r->view, PyBUF_SIMPLE, "lq", "rows (a range or an array)") < 0) return -1;
    r->list = (const int64_t *)r->view.buf;
    r->count = r->view.len / 8;
    return 0;
}

static inline int64_t row_at(const Rows *r, Py_ssize_t i) { return r->list ? r->list[i] : (int64_t)(r->first + i); }

static void release_rows(Rows *r) {
    if (r->view.obj) PyBuffer_Release(&r->view);
}

/* The body length of rows[i] from lengths (n of them), or -1 when it is not a row of them or not a length place
 * and fit take (0 .. INT32_MAX). */
static inline int64_t body_at(const Rows *rows, Py_ssize_t i, const int64_t *len, Py_ssize_t n) {
    int64_t r = row_at(rows, i), body = r >= 0 && r < n ? len[r] : -1;
    return body <= INT32_MAX ? body : -1;
}

/* Bytes a message of this body takes in a data file: ~length header, body, zero padding to 4 bytes. */
static inline Py_ssize_t record_size(int64_t body) { return (HEADER_SIZE + (Py_ssize_t)body + 3) & ~(Py_ssize_t)3; }

/* One value of a fixed-width field: constant sizes are one load and one store each. */
static inline void copy_fixed(uint8_t *d, const uint8_t *src, Py_ssize_t size) {
    switch (size) {
    case 8: memcpy(d, src, 8); break;
    case 4: memcpy(d, src, 4); break;
    case 2: memcpy(d, src, 2); break;
    case 1: *d = *src; break;
    default: memcpy(d, src, (size_t)size);
    }
}

/* -- place: the messages of some rows, back to back ---------------------------------------------------- */
/* Row by row, field by field, in file order. Short values are stored as whole 8-byte words ("wild" stores, as
 * snappy and LZ4 copy): the bytes a word writes past its field belong to the next field, the padding, or the
 * next message, all written after it. So a wild store needs only to stay inside the buffer. Consecutive
 * fixed-width fields without nulls form one group, copied by a loop with no branch per field. */

typedef struct {
    const Step *step;     /* the step, or the first of a group */
    Py_ssize_t count;     /* steps in the group (0: a single step, not a group) */
    Py_ssize_t bytes;     /* a group's width */
    Py_ssize_t safe_rows; /* rows below this have 8 readable bytes at their value in every step of the group */
    uint8_t *tile;        /* a wide group: its values of the current tile of rows, row after row (see place) */
} Op;

/* A group of at least WIDE_STEPS columns is copied through a tile: TILE_BYTES of its values, filled column after
 * column, then copied row after row. Why: large columns are often page-aligned (glibc maps each big array at the
 * same offset in a page), so reading one value of each of 20 columns per row hits the same few L1 sets: a 10 M-row
 * table of 20 float64 columns laid out at 55 ns a row, the same columns at spread offsets at 32. */
enum { WIDE_STEPS = 6, TILE_BYTES = 16384, TILE_MAX_ROWS = 64 };

static inline int plain_fixed(const Step *s) { return s->kind == K_FIXED && !s->validity.obj && s->size <= 8; }

/* The ops of a program (at most one per step); returns their number, or -1 (MemoryError set). */
static Py_ssize_t compile_ops(const Program *p, Op **out) {
    Op *ops = PyMem_Calloc(p->count ? (size_t)p->count : 1, sizeof(Op));
    if (!ops) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t count = 0;
    for (Py_ssize_t k = 0; k < p->count; count++) {
        Op *op = &ops[count];
        op->step = &p->steps[k];
        if (!plain_fixed(op->step)) {
            k++;
            continue;
        }
        op->safe_rows = PY_SSIZE_T_MAX;
        for (; k < p->count && plain_fixed(&p->steps[k]); k++) {
            const Step *s = &p->steps[k];
            Py_ssize_t safe = s->values.len < 8 ? 0 : (s->values.len - 8) / s->size + 1;
            op->safe_rows = safe < op->safe_rows ? safe : op->safe_rows;
            op->bytes += s->size;
            op->count++;
        }
    }
    *out = ops;
    return count;
}

/* Fill the tiles of the wide groups with the values of rows[i0 .. i0+count) (rows not of the program: zeros; place
 * fails on them before using the tile). */
static void fill_tiles(Op *ops, Py_ssize_t n_ops, const Rows *rows, Py_ssize_t i0, Py_ssize_t count, Py_ssize_t n) {
    for (Py_ssize_t k = 0; k < n_ops; k++) {
        const Op *op = &ops[k];
        if (!op->tile) continue;
        Py_ssize_t at = 0;
        for (Py_ssize_t j = 0; j < op->count; j++) {
            const Step *s = &op->step[j];
            const uint8_t *v = (const uint8_t *)s->values.buf;
            Py_ssize_t size = s->size, bytes = op->bytes;
            uint8_t *t = op->tile + at;
            for (Py_ssize_t q = 0; q < count; q++, t += bytes) {
                int64_t r = row_at(rows, i0 + q);
                if (r < 0 || r >= n) {
                    memset(t, 0, (size_t)size);
                    continue;
                }
                copy_fixed(t, v + r * size, size);
            }
            at += size;
        }
    }
}

/* A group of plain fixed-width fields of row r at d (bytes checked against stop by the caller). */
static inline uint8_t *put_group(const Op *restrict op, Py_ssize_t r, uint8_t *restrict d, const uint8_t *end) {
    const Step *s = op->step;
    if (r < op->safe_rows && end - d >= op->bytes + 8) {
        for (Py_ssize_t k = 0; k < op->count; k++) { /* wild: 8 bytes each, the next field overwrites the rest */
            store8(d, load8((const uint8_t *)s[k].values.buf + r * s[k].size));
            d += s[k].size;
        }
        return d;
    }
    for (Py_ssize_t k = 0; k < op->count; k++) {
        memcpy(d, (const uint8_t *)s[k].values.buf + r * s[k].size, (size_t)s[k].size);
        d += s[k].size;
    }
    return d;
}

/* A wide group's bytes of one row from its tile (8 readable bytes past every row of a tile) to d. */
static inline uint8_t *copy_row(const uint8_t *src, Py_ssize_t bytes, uint8_t *restrict d, const uint8_t *end) {
    if (end - d >= bytes + 8) {
        for (Py_ssize_t b = 0; b < bytes; b += 8) store8(d + b, load8(src + b)); /* wild, as put_group */
    } else {
        memcpy(d, src, (size_t)bytes);
    }
    return d + bytes;
}

/* One field of row r at d; the body ends at stop, the buffer at end. Returns the cursor after the field, or
 * NULL when the field passes stop or is not what lengths() accepted. */
static inline uint8_t *put_field(const Step *restrict s, Py_ssize_t r, uint8_t *restrict d, const uint8_t *stop,
                                 const uint8_t *end) {
    const uint8_t *v = (const uint8_t *)s->values.buf;
    Py_ssize_t size = s->size, a, b;
    switch (s->kind) {
    case K_FIXED: {
        if (stop - d < size) return NULL;
        const uint8_t *src = v + r * size;
        if (s->validity.obj) { /* a null takes the fill value; chosen by arithmetic: nulls come at random */
            uintptr_t mask = (uintptr_t)0 - (uintptr_t)(bit(&s->validity, s->bit_offset + r) ^ 1);
            src = (const uint8_t *)(((uintptr_t)src & ~mask) | ((uintptr_t)s->fill.buf & mask));
        }
        copy_fixed(d, src, size);
        return d + size;
    }
    case K_BOOL_BITS:
        if (stop - d < 1) return NULL;
        *d = (uint8_t)(0x59 & -bit(&s->values, s->bit_offset + r)); /* Java writes 'Y'; no branch on the data */
        return d + 1;
    case K_ZERO:
        if (stop - d < size) return NULL;
        if (size <= 16 && end - d >= 16) {
            store8(d, 0);
            store8(d + 8, 0);
        } else {
            memset(d, 0, (size_t)size);
        }
        return d + size;
    case K_STOPBIT: {
        int64_t x = ((const int64_t *)v)[r];
        Py_ssize_t n = stop_bit_size(x);
        if (stop - d < n) return NULL;
        if (n <= 8 && end - d >= 8) {
            store8(d, stop_bit_word(x, n));
            return d + n;
        }
        return put_stop_bit(d, x);
    }
    case K_RAW: {
        const int64_t *o = (const int64_t *)s->offsets.buf + 2 * r;
        if (o[0] < 0 || o[1] < o[0] || o[1] > s->values.len || stop - d < o[1] - o[0]) return NULL;
        copy_exact(d, v + o[0], (Py_ssize_t)(o[1] - o[0]));
        return d + (o[1] - o[0]);
    }
    case K_CHAR: {
        int32_t u;
        if (stop - d < 2 || text_bounds(s, r, &a, &b) || (u = char_unit(v + a, b - a)) < 0) return NULL;
        d[0] = (uint8_t)u;
        d[1] = (uint8_t)(u >> 8);
        return d + 2;
    }
    default: { /* K_STRING, K_UTF */
        if (!is_valid(s, r)) {
            if (s->kind == K_UTF || stop - d < 2) return NULL;
            d[0] = 0x80; /* writeUTFΔ(null): stop-bit -1 */
            d[1] = 0x00;
            return d + 2;
        }
        if (text_bounds(s, r, &a, &b)) return NULL;
        const uint8_t *src = v + a;
        Py_ssize_t len = b - a, readable = s->values.len - a, extra = 0;
        if (s->supplementary && has_any(src, len, readable, leads4_in)) extra = check_leads4(src, len);
        if (extra < 0) return NULL;
        Py_ssize_t text = len + 2 * extra, prefix = (Py_ssize_t)text_size(text, s->kind == K_UTF) - text;
        if (stop - d < prefix + text || (s->kind == K_UTF && text > 0xFFFF)) return NULL;
        if (s->kind == K_UTF) {
            d[0] = (uint8_t)text;
            d[1] = (uint8_t)(text >> 8);
        } else if (text < 0x80) {
            d[0] = (uint8_t)text; /* the usual one-byte length */
        } else {
            put_stop_bit(d, text);
        }
        d += prefix;
        if (extra) return put_cesu8(d, src, len) == d + text ? d + text : NULL;
        if (len <= 16 && readable >= 16 && end - d >= 16) { /* short text: two words, whatever its length */
            store8(d, load8(src));
            store8(d + 8, load8(src + 8));
        } else {
            copy_exact(d, src, len);
        }
        return d + len;
    }
    }
}

static PyObject *place(PyObject *self, PyObject *args) {
    PyObject *program, *rows_obj, *entries_obj;
    Py_ssize_t n;
    PyObject *lens_obj, *base_obj;
    Py_buffer lens = {0}, buf, ent = {0};
    Rows rows = {0};
    if (!PyArg_ParseTuple(args, "OnOOw*OO", &program, &n, &rows_obj, &lens_obj, &buf, &entries_obj, &base_obj))
        return NULL;
    Program p = {0};
    PyObject *result = NULL;
    Op *ops = NULL;
    uint8_t *tiles = NULL;
    /* the first entry's index: every entry (it plus an offset in buf) must be a uint64, not taken modulo 2^64 */
    unsigned long long entry_base = 0;
    if (!PyIndex_Check(base_obj)) {
        PyErr_Format(PyExc_TypeError, "entry_base must be an int, not %.100s", Py_TYPE(base_obj)->tp_name);
        goto done;
    }
    PyObject *base = PyNumber_Index(base_obj); /* its __index__ may fail: that error goes on */
    if (!base) goto done;
    entry_base = PyLong_AsUnsignedLongLong(base);
    Py_DECREF(base);
    if ((entry_base == (unsigned long long)-1 && PyErr_Occurred()) || entry_base > UINT64_MAX - (uint64_t)buf.len) {
        PyErr_Clear(); /* (an int's only error here: OverflowError) */
        PyErr_SetString(PyExc_OverflowError, "entry_base: its entries (it plus offsets in buf) must be 0..2**64-1");
        goto done;
    }
    if (read_rows(rows_obj, &rows) || read_program(program, n, &p)) goto done;
    if (word_view(lens_obj, &lens, PyBUF_SIMPLE, "lq", "lengths") < 0) goto done;
    if (lens.len / 8 < n) {
        PyErr_Format(PyExc_ValueError, "lengths needs one int64 per row of the program (%zd), not %zd", n,
                     lens.len / 8);
        goto done;
    }
    if (entries_obj != Py_None) {
        if (word_view(entries_obj, &ent, PyBUF_WRITABLE, "LQ", "entries") < 0) goto done;
        if (ent.len / 8 != rows.count) {
            PyErr_Format(PyExc_ValueError, "entries needs one uint64 per row laid out (%zd), not %zd", rows.count,
                         ent.len / 8);
            goto done;
        }
    }
    Py_ssize_t n_ops = compile_ops(&p, &ops);
    if (n_ops < 0) goto done;
    Py_ssize_t wide_bytes = 0, tile_rows = 0;
    for (Py_ssize_t k = 0; k < n_ops; k++)
        if (ops[k].count >= WIDE_STEPS) wide_bytes += ops[k].bytes;
    if (wide_bytes) {
        tile_rows = TILE_BYTES / wide_bytes;
        tile_rows = tile_rows < 1 ? 1 : tile_rows > TILE_MAX_ROWS ? TILE_MAX_ROWS : tile_rows;
        if (!(tiles = PyMem_Malloc((size_t)(tile_rows * wide_bytes + 8)))) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t k = 0, at = 0; k < n_ops; k++)
            if (ops[k].count >= WIDE_STEPS) {
                ops[k].tile = tiles + at;
                at += tile_rows * ops[k].bytes;
            }
    }
    Py_ssize_t m = rows.count, pos = 0, failed = -1, i0 = 0;
    const char *why = NULL;
    Py_BEGIN_ALLOW_THREADS
    const int64_t *len = (const int64_t *)lens.buf;
    uint64_t *entry = (uint64_t *)ent.buf;
    uint8_t *base = (uint8_t *)buf.buf, *end = base + buf.len;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (tile_rows && i - i0 >= tile_rows) i0 = i;
        if (tile_rows && i == i0) fill_tiles(ops, n_ops, &rows, i0, m - i0 < tile_rows ? m - i0 : tile_rows, n);
        int64_t r = row_at(&rows, i), body = body_at(&rows, i, len, n);
        if (body < 0) {
            why = "is not a row of the program, or has no valid length";
            failed = i;
            break;
        }
        Py_ssize_t next = pos + record_size(body); /* pos is a multiple of 4 */
        if (next > buf.len) {
            why = "does not fit in the buffer";
            failed = i;
            break;
        }
        uint32_t h = ~(uint32_t)body; /* ~length, little-endian, as the row writer's finish() leaves it */
        uint8_t header[4] = {(uint8_t)h, (uint8_t)(h >> 8), (uint8_t)(h >> 16), (uint8_t)(h >> 24)};
        memcpy(base + pos, header, 4);
        if (entry) entry[i] = (uint64_t)entry_base + (uint64_t)pos;
        uint8_t *d = base + pos + HEADER_SIZE, *stop = d + body;
        for (Py_ssize_t k = 0; k < n_ops && d; k++) {
            const Op *op = &ops[k];
            if (!op->count)
                d = put_field(op->step, (Py_ssize_t)r, d, stop, end);
            else if (stop - d < op->bytes)
                d = NULL;
            else if (op->tile)
                d = copy_row(op->tile + (i - i0) * op->bytes, op->bytes, d, end);
            else
                d = put_group(op, (Py_ssize_t)r, d, end);
        }
        if (d != stop) {
            why = d ? "is shorter than its length" : "is longer than its length, or not what lengths() accepted";
            failed = i;
            break;
        }
        /* zero padding to the next header: 4 bytes at once where the buffer goes on (the next header covers
         * the rest), else byte by byte */
        if (end - stop >= 4)
            memset(stop, 0, 4);
        else
            for (uint8_t *z = stop; z < base + next; z++) *z = 0;
        pos = next;
    }
    Py_END_ALLOW_THREADS
    if (why) {
        PyErr_Format(PyExc_ValueError, "the message of rows[%zd] %s", failed, why);
        goto done;
    }
    result = PyLong_FromSsize_t(pos);
done:
    PyMem_Free(tiles);
    PyMem_Free(ops);
    release_program(&p);
    release_rows(&rows);
    if (ent.obj) PyBuffer_Release(&ent);
    if (lens.obj) PyBuffer_Release(&lens);
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *fit(PyObject *self, PyObject *args) {
    PyObject *rows_obj;
    PyObject *lens_obj;
    Py_buffer lens = {0};
    Py_ssize_t pos, roll_at, limit;
    Rows rows = {0};
    if (!PyArg_ParseTuple(args, "OOnnn", &rows_obj, &lens_obj, &pos, &roll_at, &limit)) return NULL;
    PyObject *result = NULL;
    if (read_rows(rows_obj, &rows)) goto done;
    if (word_view(lens_obj, &lens, PyBUF_SIMPLE, "lq", "fit: lengths") < 0) goto done;
    if (pos < 0 || roll_at < 0 || limit < 0 || pos > PY_SSIZE_T_MAX / 2 ||
        roll_at > PY_SSIZE_T_MAX / 2 || limit > PY_SSIZE_T_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "fit: positions (pos, roll_at, limit) must be 0..2**62");
        goto done;
    }
    Py_ssize_t n = lens.len / 8, count = 0, at = pos, bad = -1;
    const int64_t *len = (const int64_t *)lens.buf;
    Py_BEGIN_ALLOW_THREADS
    for (; count < rows.count; count++) {
        int64_t body = body_at(&rows, count, len, n);
        if (body < 0) {
            bad = count;
            break;
        }
        Py_ssize_t next = at + record_size(body);
        if (at > roll_at || (count && next > limit)) break;
        at = next;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        PyErr_Format(PyExc_ValueError, "rows[%zd] is not a row of lengths, or has no valid length", bad);
    else
        result = Py_BuildValue("nn", count, at - pos);
done:
    release_rows(&rows);
    if (lens.obj) PyBuffer_Release(&lens);
    return result;
}

static PyMethodDef methods[] = {
    {"lengths", lengths, METH_VARARGS, "lengths(program, n, lo, hi, out, found) -> (row, step, status)"},
    {"place", place, METH_VARARGS, "place(program, n, rows, lengths, buf, entries, entry_base) -> bytes laid out"},
    {"fit", fit, METH_VARARGS, "fit(rows, lengths, pos, roll_at, limit) -> (count, size) of one run"},
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
