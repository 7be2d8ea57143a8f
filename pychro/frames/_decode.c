/*
 * pychro.frames._decode: the read half of the frames codec (style.md 2.5b, vanilla-format.md 4, 5 and 7).
 *
 * Python compiles a Schema into a program: a tuple of steps (kind, size, column), one per field (see
 * pychro/frames/decode.py, class Plan); column indexes `outs`, the caller's output buffers of that column, or is
 * -1 for a field that is passed over. One call runs it over a batch of index entries:
 *
 *   decode(program, entries, offset_mask, data_bits, keys, files, lo, hi, stop, outs, status, counts)
 *       -> (code, row, detail)
 *
 * For each row lo..hi-1, in index order: the data file is files[j] where keys[j] == entry >> data_bits; the
 * body starts at entry & offset_mask. The header before it is checked (inside the file, not 0, ~length below
 * 2^30, the body inside the file); then every field is decoded into its column, each read checked against the
 * body (which lies inside the file buffer):
 *   fixed fields      -> values[row * size]           numbers as they are (little-endian, like the file)
 *   bool              -> bit `row` of a bitmap         any non-zero byte is true
 *   stopbit           -> int64 values[row]            Java writeStopBit, 1-10 bytes
 *   string, utf, char -> Arrow offsets (int32, n + 1), UTF-8 data and (string) a validity bitmap: Java's
 *                        CESU-8 (surrogate pairs as 2 x 3 bytes, U+0000 as C0 80) becomes UTF-8; a lone
 *                        surrogate becomes U+FFFD (counted); a null string (stop-bit -1) a null.
 * status[row] = ST_OK, ST_MISMATCH (decoded length != header length, or a field holding no valid value) or
 * ST_TEXT (a string column whose bytes are not Java text). counts (int64) = [rows with CESU-8 text (per column),
 * replaced surrogates, bad rows, first bad row, step of the first bad row's text error, nulls of column 0, ...
 * (the 0 bits of its validity bitmap among the rows done)]:
 * added to, so that a call can resume where the previous one stopped. Only rows that end ST_OK add to the
 * counters; a bad row's strings are left empty and valid. With stop != 0, rows after the first bad one are only
 * header-checked (past its tile, their outputs are not written): raise and truncate need nothing past it.
 *
 * Runs of stop-bit steps among the leading steps are decoded by one of four paths with the same results: portable
 * shifts, BMI2 pext, AVX2 (4 rows at a time) or AVX-512 (8 rows at a time), the best this CPU runs fast, chosen at
 * import (no build flag); _stopbit_path(name) selects one, so that tests run each.
 *
 * Codes: C_DONE (row = hi); C_HEADER (the header of `row` fails; detail = H_* reason; rows before it are done);
 * C_NEED_MORE (the data buffer of column `detail` is full at `row`: grow it, call again from `row`); C_TOO_BIG
 * (column `detail` would pass 2^31 - 1 bytes of text, the limit of int32 offsets).
 *
 * A journal of several message types is decoded in one pass by decode_typed() (see the section "message types"):
 * each message's tag is read from its common header and the message decoded with its type's program, by the same
 * tile code, into that type's next output row.
 *
 * The GIL is released around the loop. Nothing is allocated but the op arrays (freed before returning). Errors
 * raised: TypeError/ValueError for arguments that break these rules, MemoryError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#ifdef __SSE2__
#include <emmintrin.h>
#define HAVE_STREAM 1
#else
#define HAVE_STREAM 0
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_PEXT_PATH 1
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the decoder loads little-endian words (Java's byte order here) as they are"
#endif

#define HEADER_SIZE 4
#define MAX_BODY_LENGTH (1 << 30)
#define MAX_STOP_BIT_BYTES 10
#define MAX_OFFSET INT32_MAX
#define MAX_TEXT_STEPS 16 /* text steps a tile decodes column by column at most (text_tile) */
#define MAX_RUN 16 /* stop-bit steps in a run at most (longer runs: in parts) */
#define TILE 64 /* rows whose prefix is decoded column by column (at most 64: a bool column's bits in a word) */

enum kind {
    D_FIXED,   /* size bytes copied to values[row * size] */
    D_BOOL,    /* one byte -> a bit (non-zero = true) */
    D_SKIP,    /* size bytes passed over */
    D_STOPBIT, /* writeStopBit long -> int64 */
    D_STRING,  /* writeUTFΔ: stop-bit byte length (-1 = null) + Java text */
    D_UTF,     /* writeUTF: uint16 LE byte length + Java text */
    D_CHAR,    /* writeChar: one UTF-16 code unit -> a one-character string */
    D_REST,    /* the rest of the body, passed over (the last step only: a header read ahead of its message type) */
    D_LIST,    /* a repeated group: stop-bit count n >= 0, then n entries of size bytes, copied as they are */
    D_COUNT
};

enum code { C_DONE, C_HEADER, C_NEED_MORE, C_TOO_BIG };
enum row_status { ST_OK, ST_MISMATCH, ST_TEXT };
enum header { H_OUTSIDE = 1, H_ZERO, H_HUGE, H_PAST };
enum counter { N_SLOW, N_REPLACED, N_BAD, N_FIRST_BAD, N_TEXT_STEP, N_NULLS };

typedef struct {
    int kind;
    Py_ssize_t size;
    Py_ssize_t col;
    Py_ssize_t run;   /* on the first fixed-size step of a run of them: the run's bytes (one bounds check) */
    uint8_t *values;  /* D_FIXED, D_STOPBIT: n * size; D_BOOL: bitmap */
    int32_t *offsets; /* text: n + 1 */
    uint8_t *data;    /* text: UTF-8; D_LIST: the entries' bytes */
    Py_ssize_t cap;   /* text: bytes of data; D_LIST: entries data holds */
    uint8_t *valid;   /* D_STRING: bitmap */
    int32_t cursor;   /* text: bytes used = offsets[row]; D_LIST: entries used = offsets[row] */
    Py_ssize_t len;      /* bytes of values (D_FIXED) */
    /* on the first step of a group (consecutive D_FIXED of at most 8 bytes and D_SKIP, at least 2 steps): */
    Py_ssize_t group;    /* steps in the group */
    Py_ssize_t span;     /* their bytes */
    Py_ssize_t safe_rows; /* rows whose 8-byte stores stay inside every column of the group */
} Op;

/* -- arguments --------------------------------------------------------------------------------------------- */
typedef struct {
    Py_buffer *views;
    Py_ssize_t count;
} Views;

static void release_views(Views *v) {
    for (Py_ssize_t k = 0; k < v->count; k++)
        if (v->views[k].obj) PyBuffer_Release(&v->views[k]);
    PyMem_Free(v->views);
    v->views = NULL;
    v->count = 0;
}

static Py_buffer *take_view(Views *v, PyObject *obj, int writable, const char *what, Py_ssize_t k) {
    Py_buffer *b = &v->views[v->count];
    if (PyObject_GetBuffer(obj, b, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s %zd must be a contiguous%s buffer", what, k, writable ? " writable" : "");
        b->obj = NULL;
        return NULL;
    }
    v->count++;
    return b;
}

static int bad_arg(const char *fmt, Py_ssize_t k) {
    PyErr_Format(PyExc_ValueError, fmt, k);
    return -1;
}

/* The output buffers of one step's column, checked to cover n rows. */
static int read_out(Op *op, PyObject *outs, Py_ssize_t k, Py_ssize_t n, Views *views) {
    if (op->col < 0) {
        if (op->kind == D_FIXED || op->kind == D_BOOL || op->kind == D_CHAR)
            return bad_arg("step %zd: a fixed field without a column must be a skip", k);
        return 0;
    }
    if (op->col >= PyTuple_GET_SIZE(outs)) return bad_arg("step %zd: column out of range", k);
    PyObject *t = PyTuple_GET_ITEM(outs, op->col);
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
        PyErr_Format(PyExc_TypeError, "outs[%zd] must be a (values, data, validity) tuple", op->col);
        return -1;
    }
    PyObject *a = PyTuple_GET_ITEM(t, 0), *b = PyTuple_GET_ITEM(t, 1), *c = PyTuple_GET_ITEM(t, 2);
    Py_buffer *va = a == Py_None ? NULL : take_view(views, a, 1, "outs", op->col);
    if (!va) return a == Py_None ? bad_arg("outs[%zd][0] is required", op->col) : -1;
    switch (op->kind) {
    case D_FIXED:
    case D_STOPBIT:
        if (va->len / op->size < n) return bad_arg("outs[%zd]: values too short", op->col);
        op->values = va->buf;
        op->len = va->len;
        return 0;
    case D_BOOL:
        if (va->len < (n + 7) / 8) return bad_arg("outs[%zd]: bitmap too short", op->col);
        op->values = va->buf;
        return 0;
    default: { /* text, D_LIST */
        if (va->len / 4 < n + 1) return bad_arg("outs[%zd]: offsets too short", op->col);
        op->offsets = va->buf;
        Py_buffer *vb = b == Py_None ? NULL : take_view(views, b, 1, "outs", op->col);
        if (!vb) return b == Py_None ? bad_arg("outs[%zd][1] (text data) is required", op->col) : -1;
        op->data = vb->buf;
        op->cap = op->kind == D_LIST ? vb->len / op->size : vb->len;
        if (op->kind == D_STRING) {
            Py_buffer *vc = c == Py_None ? NULL : take_view(views, c, 1, "outs", op->col);
            if (!vc) return c == Py_None ? bad_arg("outs[%zd][2] (validity) is required", op->col) : -1;
            if (vc->len < (n + 7) / 8) return bad_arg("outs[%zd]: validity too short", op->col);
            op->valid = vc->buf;
        }
        return 0;
    }
    }
}

static Py_ssize_t read_program(PyObject *program, PyObject *outs, Py_ssize_t n, Views *views, Op **out,
                               Py_ssize_t *n_prefix) {
    *out = NULL;
    *n_prefix = 0;
    if (!PyTuple_Check(program) || !PyTuple_Check(outs)) {
        PyErr_SetString(PyExc_TypeError, "program and outs must be tuples");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(program);
    Op *ops = PyMem_Calloc(count ? count : 1, sizeof(Op));
    if (!ops) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        Op *op = &ops[k];
        PyObject *t = PyTuple_GET_ITEM(program, k);
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "inn", &op->kind, &op->size, &op->col)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "step %zd must be (kind, size, column)", k);
            goto fail;
        }
        if (op->kind < 0 || op->kind >= D_COUNT) {
            bad_arg("step %zd: unknown kind", k);
            goto fail;
        }
        if (op->kind == D_BOOL) op->size = 1;
        if (op->kind == D_CHAR) op->size = 2;
        if ((op->kind == D_FIXED || op->kind == D_SKIP || op->kind == D_LIST) &&
            (op->size < 1 || op->size >= MAX_BODY_LENGTH)) {
            bad_arg("step %zd: size out of range", k);
            goto fail;
        }
        if (op->kind == D_STOPBIT) op->size = 8;
        if (op->kind == D_REST && (k != count - 1 || op->col >= 0)) {
            bad_arg("step %zd: a rest step is the last one and has no column", k);
            goto fail;
        }
        if (read_out(op, outs, k, n, views)) goto fail;
    }
    /* the prefix: the leading steps that write no text (fixed-size ones and stop-bit longs), decoded a tile at a
     * time, column by column */
    Py_ssize_t prefix = 0;
    while (prefix < count && (ops[prefix].kind == D_FIXED || ops[prefix].kind == D_BOOL || ops[prefix].kind == D_SKIP ||
                              ops[prefix].kind == D_STOPBIT))
        prefix++;
    /* runs of fixed-size steps: one bounds check for the run (a run ends with the prefix, so that a row decoded
     * from the step after the prefix checks the rest of its run) */
    for (Py_ssize_t k = 0; k < count;) {
        int fixed = ops[k].kind == D_FIXED || ops[k].kind == D_BOOL || ops[k].kind == D_SKIP || ops[k].kind == D_CHAR;
        if (!fixed) {
            k++;
            continue;
        }
        Py_ssize_t first = k, run = 0;
        for (; k < count; k++) {
            int kd = ops[k].kind;
            if (kd != D_FIXED && kd != D_BOOL && kd != D_SKIP && kd != D_CHAR) break;
            if (k == prefix && k > first) break;
            run += ops[k].size;
            if (run >= MAX_BODY_LENGTH) run = MAX_BODY_LENGTH; /* no body is that long: the check fails */
        }
        ops[first].run = run;
    }
    /* groups: copied as whole 8-byte words whose spill the next row overwrites, without a switch per field */
    for (Py_ssize_t k = 0; k < count;) {
        Py_ssize_t g = k, span = 0, safe = PY_SSIZE_T_MAX;
        for (; g < count && ((ops[g].kind == D_FIXED && ops[g].size <= 8) || ops[g].kind == D_SKIP); g++) {
            span += ops[g].size;
            if (ops[g].kind == D_FIXED) {
                Py_ssize_t rows = ops[g].len < 8 ? 0 : (ops[g].len - 8) / ops[g].size + 1;
                safe = rows < safe ? rows : safe;
            }
        }
        if (g - k >= 2 && span < MAX_BODY_LENGTH) {
            ops[k].group = g - k;
            ops[k].span = span;
            ops[k].safe_rows = safe;
        }
        k = g > k ? g : k + 1;
    }
    *n_prefix = prefix;
    *out = ops;
    return count;
fail:
    PyMem_Free(ops);
    return -1;
}

/* -- small pieces of the format ----------------------------------------------------------------------------- */
static inline uint64_t load8(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline void store8(uint8_t *p, uint64_t w) { memcpy(p, &w, 8); }

static inline void set_bit(uint8_t *bits, Py_ssize_t i, int on) {
    uint8_t m = (uint8_t)(1u << (i & 7));
    bits[i >> 3] = (uint8_t)((bits[i >> 3] & ~m) | (m & (uint8_t)-(on != 0))); /* no branch on the value */
}

/* The 0 bits among bits a..b-1 of a bitmap (nulls of a validity bitmap: counted once a call is done, rather than
 * row by row, where the count and the undo of a bad row's null cost a fifth of a read with 30% nulls). */
static int64_t zero_bits(const uint8_t *bits, Py_ssize_t a, Py_ssize_t b) {
    int64_t ones = 0;
    Py_ssize_t i = a;
    for (; i < b && (i & 7); i++) ones += (bits[i >> 3] >> (i & 7)) & 1;
    for (; i + 64 <= b; i += 64) ones += __builtin_popcountll(load8(bits + (i >> 3)));
    for (; i < b; i++) ones += (bits[i >> 3] >> (i & 7)) & 1;
    return b > a ? (b - a) - ones : 0;
}

/* Bits start..start+m-1 of a bitmap (m <= 64): those set in mask (no bit at or above m) become value's. */
static inline void put_bits(uint8_t *bits, Py_ssize_t start, uint64_t value, uint64_t mask, Py_ssize_t m) {
    int s = (int)(start & 7);
    uint8_t *b = bits + (start >> 3);
    Py_ssize_t nbytes = (s + m + 7) / 8; /* at most 9, and 9 only when s > 0 */
    for (Py_ssize_t k = 0; k < nbytes; k++) {
        int sh = 8 * (int)k - s; /* the bit of value that lands on bit 0 of byte k: -7..63 */
        uint8_t mk = (uint8_t)(sh >= 0 ? mask >> sh : mask << -sh);
        uint8_t vk = (uint8_t)(sh >= 0 ? value >> sh : value << -sh);
        b[k] = (uint8_t)((b[k] & ~mk) | (vk & mk));
    }
}

/* The 7-bit groups of the bytes of w side by side (the high bit of each byte must be clear): pairs, quads, then
 * the two halves. */
static inline uint64_t compress7(uint64_t x) {
    x = (x & 0x007F007F007F007Full) | ((x & 0x7F007F007F007F00ull) >> 1);
    x = (x & 0x00003FFF00003FFFull) | ((x & 0x3FFF00003FFF0000ull) >> 2);
    return (x & 0x000000000FFFFFFFull) | ((x & 0x0FFFFFFF00000000ull) >> 4);
}

/* Java readStopBit of p[0..avail): 7-bit groups, low first; a 0x00 byte after continued groups ends a negative
 * value (~accumulated). Returns the bytes used, or 0 when no group ends within avail and 10 bytes, or the 10th byte
 * ends a positive value (Java's readStopBit throws "Cannot read more than 9 stop bits of positive value"; a 10th
 * byte of 0 holds no bits). readable (>= avail) is how many bytes from p may be loaded:
 * with 8 of them, the value is decoded from one word (two for 9 or 10 bytes) without a branch per byte. */
static inline __attribute__((always_inline)) int stop_bit(const uint8_t *p, Py_ssize_t avail, Py_ssize_t readable, int64_t *value, int short_first) {
    if (short_first && avail > 0 && p[0] < 0x80) {
        *value = p[0];
        return 1;
    }
    if (readable >= 8) {
        uint64_t w = load8(p), stops = ~w & 0x8080808080808080ull, x, last;
        int n;
        if (stops) {
            n = __builtin_ctzll(stops) / 8 + 1;
            x = compress7(w & (~0ull >> (64 - 8 * n)) & 0x7F7F7F7F7F7F7F7Full);
            last = (w >> (8 * (n - 1))) & 0xFF;
        } else if (readable >= 10) { /* 9 or 10 bytes: the 8 groups of w, then bytes 8 and 9 */
            uint16_t t;
            memcpy(&t, p + 8, 2);
            uint64_t w2 = t, stops2 = ~w2 & 0x8080u;
            if (!stops2) return 0; /* no group ends within 10 bytes */
            n = 8 + __builtin_ctzll(stops2) / 8 + 1;
            x = compress7(w & 0x7F7F7F7F7F7F7F7Full) | ((w2 & 0x7F) << 56);
            last = (w2 >> (8 * (n - 9))) & 0xFF;
            if (n == 10 && last) return 0; /* a 10th byte only ends a negative value (Java throws on it) */
        } else {
            goto bytewise;
        }
        if (n > avail) return 0; /* the value runs past the body */
        uint64_t neg = (uint64_t)(n > 1) & (uint64_t)(last == 0);
        x ^= -neg; /* a 0x00 after continued groups: negative (~x), without a branch */
        memcpy(value, &x, 8);
        return n;
    }
bytewise:;
    Py_ssize_t lim = avail < MAX_STOP_BIT_BYTES ? avail : MAX_STOP_BIT_BYTES;
    uint64_t acc = 0;
    for (Py_ssize_t k = 0; k < lim; k++) {
        uint64_t b = p[k];
        if (b < 0x80) {
            if (k == 9 && b) return 0; /* a 10th byte only ends a negative value (Java throws on it) */
            acc = (k && b == 0) ? ~acc : acc | (b << (7 * k));
            memcpy(value, &acc, 8);
            return (int)k + 1;
        }
        acc |= (b & 0x7F) << (7 * k); /* 7 * k <= 63 */
    }
    return 0;
}

#define COMPRESS_SHIFTS(w, n) compress7((w) & (~0ull >> (64 - 8 * (n))) & 0x7F7F7F7F7F7F7F7Full)

#ifdef HAVE_PEXT_PATH
/* One stop-bit step of a tile, each read checked (the AVX-512 path's rows that are not 8 at a time): each ok row's
 * value at tile_p[r] + at goes to v[r] (v may be NULL: not a column), tile_p[r] moves past it; a row without a
 * valid value is no longer ok. */
static void stopbit_column(uint8_t *v, Py_ssize_t m, Py_ssize_t at, const uint8_t **tile_p,
                           const uint8_t *const *tile_end, const uint8_t *const *tile_file_end, uint8_t *tile_ok) {
    for (Py_ssize_t r = 0; r < m; r++) {
        if (!tile_ok[r]) continue;
        const uint8_t *q = tile_p[r] + at;
        Py_ssize_t avail = tile_end[r] - q, readable = tile_file_end[r] - q;
        int64_t x = 0;
        int used;
        uint64_t w = readable >= 8 ? load8(q) : 0, stops = ~w & 0x8080808080808080ull;
        if (readable >= 8 && stops) { /* 1 to 8 bytes, the usual case */
            int n = __builtin_ctzll(stops) / 8 + 1;
            uint64_t u = COMPRESS_SHIFTS(w, n), last = (w >> (8 * (n - 1))) & 0xFF;
            u ^= -((uint64_t)(n > 1) & (uint64_t)(last == 0)); /* 0x00 after continued groups: ~u */
            memcpy(&x, &u, 8);
            used = n > avail ? 0 : n; /* past the body: no value */
        } else {
            used = stop_bit(q, avail, readable, &x, 0);
        }
        tile_ok[r] = used != 0;
        if (v) memcpy(v + 8 * r, &x, 8);
        tile_p[r] = q + used;
    }
}
#endif

/* (B) for a run of g (1..MAX_RUN) stop-bit steps in a row (vs[k]: column k's values of the tile, or NULL), column by
 * column (the rows' chains of dependent loads overlap; row by row, one value's start waiting on the previous one's
 * length, a one-thread read of ts + 4 stop-bit fields took 1.2x the time, even with a mask of every stop byte).
 * Rows with 10 bytes a value and 6 more loadable ("safe") are decoded without a bounds check per value: a value
 * running past the body shows as a cursor past it at the end (the row not ok, as if checked value by value). Other
 * ok rows (near the end of their file) are done first, value by value with checked reads (run_start). */
static inline __attribute__((always_inline)) void run_start(uint8_t *safe, uint8_t *const *vs, Py_ssize_t g,
                                                            Py_ssize_t m, Py_ssize_t at, const uint8_t **tile_p,
                                                            const uint8_t *const *tile_end,
                                                            const uint8_t *const *tile_file_end, uint8_t *tile_ok) {
    Py_ssize_t need = MAX_STOP_BIT_BYTES * g + 6;
    for (Py_ssize_t r = 0; r < m; r++) {
        safe[r] = 0;
        if (!tile_ok[r]) continue;
        const uint8_t *q = tile_p[r] + at;
        if (tile_file_end[r] - q >= need) {
            safe[r] = 1;
        } else {
            int ok = 1;
            for (Py_ssize_t k = 0; k < g && ok; k++) {
                int64_t y = 0;
                int n = stop_bit(q, tile_end[r] - q, tile_file_end[r] - q, &y, 0);
                ok = n != 0;
                if (vs[k]) memcpy(vs[k] + 8 * r, &y, 8);
                q += n;
            }
            tile_ok[r] = (uint8_t)ok;
        }
        tile_p[r] = q;
    }
}

/* The end of a run: a safe row is ok where its values end inside its body. */
static inline __attribute__((always_inline)) void run_end(const uint8_t *safe, Py_ssize_t m, const uint8_t **tile_p,
                                                          const uint8_t *const *tile_end, uint8_t *tile_ok) {
    for (Py_ssize_t r = 0; r < m; r++)
        if (safe[r]) tile_ok[r] = tile_p[r] <= tile_end[r];
}

/* A safe row's value at tile_p[r] into v[r], the cursor past it (COMPRESS(w, n): the 7-bit groups of the low n
 * (1..8) bytes of w, side by side). Values of 9 or 10 bytes (every negative value of 50
 * bits or more) take a branch; a value Java's readStopBit refuses makes the row not ok. */
#define STOPBIT_SAFE(COMPRESS, v, r, tile_p, safe, tile_ok)                                                         \
    do {                                                                                                            \
        const uint8_t *q = tile_p[r];                                                                               \
        uint64_t w = load8(q), stops = ~w & 0x8080808080808080ull, u;                                               \
        int n;                                                                                                      \
        if (__builtin_expect(stops != 0, 1)) { /* 1 to 8 bytes */                                                    \
            n = __builtin_ctzll(stops) / 8 + 1;                                                                     \
            u = COMPRESS(w, n);                                                                                     \
            u ^= -((uint64_t)(n > 1) & (uint64_t)(((w >> (8 * n - 8)) & 0xFF) == 0)); /* a 0x00 ends: ~u */        \
        } else {                                                                                                    \
            int64_t y = 0;                                                                                          \
            n = stop_bit(q, MAX_STOP_BIT_BYTES, MAX_STOP_BIT_BYTES + 6, &y, 0);                                     \
            memcpy(&u, &y, 8);                                                                                      \
            if (!n) safe[r] = tile_ok[r] = 0;                                                                       \
        }                                                                                                           \
        memcpy(v + 8 * (r), &u, 8);                                                                                 \
        tile_p[r] = q + n;                                                                                          \
    } while (0)

#define STOPBIT_RUN(NAME, ATTR, COMPRESS)                                                                           \
    ATTR static void NAME(uint8_t *const *vs, Py_ssize_t g, Py_ssize_t m, Py_ssize_t at, const uint8_t **tile_p,   \
                          const uint8_t *const *tile_end, const uint8_t *const *tile_file_end, uint8_t *tile_ok) { \
        uint8_t safe[TILE];                                                                                         \
        uint64_t scratch[TILE]; /* values of a step that is not a column */                                         \
        run_start(safe, vs, g, m, at, tile_p, tile_end, tile_file_end, tile_ok);                                    \
        for (Py_ssize_t k = 0; k < g; k++) {                                                                        \
            uint8_t *v = vs[k] ? vs[k] : (uint8_t *)scratch;                                                        \
            for (Py_ssize_t r = 0; r < m; r++)                                                                      \
                if (safe[r]) STOPBIT_SAFE(COMPRESS, v, r, tile_p, safe, tile_ok);                                   \
        }                                                                                                           \
        run_end(safe, m, tile_p, tile_end, tile_ok);                                                                \
    }
STOPBIT_RUN(stopbit_run, , COMPRESS_SHIFTS)
typedef void (*stopbit_run_fn)(uint8_t *const *, Py_ssize_t, Py_ssize_t, Py_ssize_t, const uint8_t **,
                               const uint8_t *const *, const uint8_t *const *, uint8_t *);
static stopbit_run_fn stopbit_run_impl = stopbit_run;

#ifdef HAVE_PEXT_PATH
/* BMI2: one pext gathers the groups. Chosen at import only where pext is fast (see pext_is_fast); no build flag. */
#define COMPRESS_PEXT(w, n) _pext_u64((w), _bzhi_u64(0x7F7F7F7F7F7F7F7Full, (unsigned)(8 * (n))))
STOPBIT_RUN(stopbit_run_pext, __attribute__((target("bmi,bmi2"))), COMPRESS_PEXT)

/* compress7 in each 64-bit lane. */
__attribute__((target("avx2"))) static inline __m256i compress7_x4(__m256i x) {
    x = _mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi64x(0x007F007F007F007Fll)),
                        _mm256_srli_epi64(_mm256_and_si256(x, _mm256_set1_epi64x(0x7F007F007F007F00ll)), 1));
    x = _mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi64x(0x00003FFF00003FFFll)),
                        _mm256_srli_epi64(_mm256_and_si256(x, _mm256_set1_epi64x(0x3FFF00003FFF0000ll)), 2));
    return _mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi64x(0x000000000FFFFFFFll)),
                           _mm256_srli_epi64(_mm256_and_si256(x, _mm256_set1_epi64x(0x0FFFFFFF00000000ll)), 4));
}

/* AVX2: 4 safe rows at a time, the same steps as STOPBIT_SAFE in each 64-bit lane, without a per-lane count of
 * trailing zeros (AVX2 has none): stops ^ (stops - 1) keeps the bytes up to the first stop, their count is a sum of
 * bytes (psadbw). A lane whose 8 bytes hold no stop (a value of 9 or 10 bytes, or none) is done by STOPBIT_SAFE. */
__attribute__((target("avx2,bmi"))) static void stopbit_run_avx2(
    uint8_t *const *vs, Py_ssize_t g, Py_ssize_t m, Py_ssize_t at, const uint8_t **tile_p,
    const uint8_t *const *tile_end, const uint8_t *const *tile_file_end, uint8_t *tile_ok) {
    uint8_t safe[TILE];
    uint64_t scratch[TILE]; /* values of a step that is not a column (zeroed when used: blended into) */
    run_start(safe, vs, g, m, at, tile_p, tile_end, tile_file_end, tile_ok);
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi64x(1);
    const __m256i high = _mm256_set1_epi64x((long long)0x8080808080808080ull);
    const __m256i low7 = _mm256_set1_epi64x(0x7F7F7F7F7F7F7F7Fll), ones = _mm256_set1_epi64x(0x0101010101010101ll);
    for (Py_ssize_t k = 0, zeroed = 0; k < g; k++) {
        if (!vs[k] && !zeroed) memset(scratch, 0, sizeof scratch), zeroed = 1;
        uint8_t *v = vs[k] ? vs[k] : (uint8_t *)scratch;
        Py_ssize_t r = 0;
        for (; r + 4 <= m; r += 4) {
            uint32_t s4;
            memcpy(&s4, safe + r, 4);
            if (!s4) continue;
            __m256i lane = _mm256_cmpgt_epi64(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128((int)s4)), zero);
            __m256i p;
            memcpy(&p, tile_p + r, 32);
            const uint8_t *const *pr = tile_p + r;
            __m256i w;
            if (s4 == 0x01010101u) { /* four loads (a gather measured slower on AMD Zen 3) */
                __m128i lo = _mm_insert_epi64(_mm_cvtsi64_si128((long long)load8(pr[0])), (long long)load8(pr[1]), 1);
                __m128i hi = _mm_insert_epi64(_mm_cvtsi64_si128((long long)load8(pr[2])), (long long)load8(pr[3]), 1);
                w = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
            } else {
                w = _mm256_mask_i64gather_epi64(zero, (const long long *)0, p, lane, 1);
            }
            __m256i stops = _mm256_andnot_si256(w, high);
            __m256i keep = _mm256_xor_si256(stops, _mm256_sub_epi64(stops, one)); /* bits up to the first stop */
            __m256i x = compress7_x4(_mm256_and_si256(_mm256_and_si256(w, keep), low7));
            __m256i n = _mm256_sad_epu8(_mm256_and_si256(keep, ones), zero); /* bytes used: 1..8 */
            __m256i last = _mm256_xor_si256(keep, _mm256_srli_epi64(keep, 8)); /* the stop byte's bits */
            __m256i neg = _mm256_and_si256(_mm256_cmpeq_epi64(_mm256_and_si256(w, last), zero),
                                           _mm256_cmpgt_epi64(n, one)); /* a 0x00 after continued groups */
            x = _mm256_xor_si256(x, neg);
            if (s4 != 0x01010101u) /* the other rows' values stay (those run_start decoded) */
                x = _mm256_blendv_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(v + 8 * r)), x, lane);
            _mm256_storeu_si256((__m256i *)(void *)(v + 8 * r), x);
            _mm256_storeu_si256((__m256i *)(void *)(tile_p + r), _mm256_add_epi64(p, _mm256_and_si256(n, lane)));
            int longer = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_and_si256(_mm256_cmpeq_epi64(stops, zero), lane)));
            if (__builtin_expect(longer != 0, 0)) {
                const uint8_t *at_value[4];
                memcpy(at_value, &p, 32);
                for (; longer; longer &= longer - 1) {
                    int j = __builtin_ctz((unsigned)longer);
                    tile_p[r + j] = at_value[j];
                    STOPBIT_SAFE(COMPRESS_SHIFTS, v, r + j, tile_p, safe, tile_ok);
                }
            }
        }
        for (; r < m; r++)
            if (safe[r]) STOPBIT_SAFE(COMPRESS_SHIFTS, v, r, tile_p, safe, tile_ok);
    }
    run_end(safe, m, tile_p, tile_end, tile_ok);
}

/* BMI2 present, and pext not microcoded: Intel, or AMD from Zen 3 (family 19h) on. */
static int pext_is_fast(void) {
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("bmi2") || !__get_cpuid(0, &a, &b, &c, &d)) return 0;
    int intel = b == 0x756e6547u, amd = b == 0x68747541u; /* "Genu"ineIntel, "Auth"enticAMD */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    unsigned family = (a >> 8) & 0xF;
    if (family == 0xF) family += (a >> 20) & 0xFF;
    return intel || (amd && family >= 0x19);
}

/* The bytes up to and including the first stop (a set bit of stops, whose bits are 0x80 of some bytes) in each
 * lane: 1..8; a lane without a stop gets a value of no use. */
__attribute__((target("avx512f,avx512cd"))) static inline __m512i first_stop(__m512i stops) {
    __m512i lowest = _mm512_and_si512(stops, _mm512_sub_epi64(_mm512_setzero_si512(), stops));
    return _mm512_add_epi64(_mm512_srli_epi64(_mm512_sub_epi64(_mm512_set1_epi64(63), _mm512_lzcnt_epi64(lowest)), 3),
                            _mm512_set1_epi64(1));
}

/* AVX-512 (F and CD): 8 rows of a tile at a time, the same steps as stopbit_column in each 64-bit lane; a lane
 * loads only where its row is ok with 8 bytes to load, as the scalar code checks, by a masked gather (on 4 stop-bit
 * fields: 0.96-0.98x the time of 8 scalar loads put together on an Intel Xeon; 1.05x on AMD Zen 4). Values of 9 or
 * 10 bytes (every negative value of 50 bits or more) take a second, gathered word where 16 bytes may be loaded (a
 * scalar way for them cost a 2-thread read of ts + 4 stop-bit fields, the widest 50 bits, 11%). Lanes that cannot load 8 bytes
 * (16 for a long value), or whose value does not end within 10 bytes, go the scalar way (stop_bit). */
__attribute__((target("avx512f,avx512cd"))) static void stopbit_column_avx512(
    uint8_t *v, Py_ssize_t m, Py_ssize_t at, const uint8_t **tile_p, const uint8_t *const *tile_end,
    const uint8_t *const *tile_file_end, uint8_t *tile_ok) {
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1), eight = _mm512_set1_epi64(8);
    const __m512i high = _mm512_set1_epi64((long long)0x8080808080808080ull);
    const __m512i low7 = _mm512_set1_epi64(0x7F7F7F7F7F7F7F7Fll);
    Py_ssize_t r = 0;
    for (; r + 8 <= m; r += 8) {
        uint64_t okb;
        memcpy(&okb, tile_ok + r, 8);
        __mmask8 ok = _mm512_test_epi64_mask(_mm512_cvtepu8_epi64(_mm_cvtsi64_si128((long long)okb)),
                                             _mm512_set1_epi64(0xFF));
        if (!ok) continue;
        __m512i p, end, file_end;
        memcpy(&p, tile_p + r, 64);
        memcpy(&end, tile_end + r, 64);
        memcpy(&file_end, tile_file_end + r, 64);
        p = _mm512_add_epi64(p, _mm512_set1_epi64(at));
        __mmask8 load = ok & _mm512_cmpge_epi64_mask(_mm512_sub_epi64(file_end, p), eight);
        __m512i w = _mm512_mask_i64gather_epi64(zero, load, p, (const void *)0, 1);
        __m512i stops = _mm512_andnot_si512(w, high);
        __mmask8 fast = load & _mm512_test_epi64_mask(stops, stops); /* a stop within the 8 bytes */
        __m512i n = first_stop(stops);
        /* 9 or 10 bytes (a negative value of 50 bits or more), where 16 bytes may be loaded: all 8 groups of w,
         * then bytes 8 and 9 from a second word, gathered for those lanes only */
        __mmask8 longer = load & ~fast & _mm512_cmpge_epi64_mask(_mm512_sub_epi64(file_end, p),
                                                                   _mm512_set1_epi64(16));
        __m512i w2 = zero, n2 = zero, last2 = zero;
        if (longer) {
            w2 = _mm512_mask_i64gather_epi64(zero, longer, _mm512_add_epi64(p, eight), (const void *)0, 1);
            __m512i stops2 = _mm512_andnot_si512(w2, _mm512_set1_epi64(0x8080));
            longer &= _mm512_test_epi64_mask(stops2, stops2); /* else no group ends within 10 bytes */
            n2 = first_stop(stops2);
            last2 = _mm512_and_si512(_mm512_srlv_epi64(w2, _mm512_slli_epi64(_mm512_sub_epi64(n2, one), 3)),
                                     _mm512_set1_epi64(0xFF));
            /* a 10th byte ends only a negative value (0x00: no bits): else the scalar way says no value */
            longer &= ~(_mm512_cmpgt_epi64_mask(n2, one) & _mm512_test_epi64_mask(last2, last2));
            n = _mm512_mask_mov_epi64(n, longer, eight);
        }
        __m512i bits = _mm512_slli_epi64(n, 3);
        __m512i keep = _mm512_srlv_epi64(_mm512_set1_epi64(-1), _mm512_sub_epi64(_mm512_set1_epi64(64), bits));
        __m512i x = _mm512_and_si512(_mm512_and_si512(w, low7), keep); /* the low n bytes' groups */
        x = _mm512_or_si512(_mm512_and_si512(x, _mm512_set1_epi64(0x007F007F007F007Fll)),
                            _mm512_srli_epi64(_mm512_and_si512(x, _mm512_set1_epi64(0x7F007F007F007F00ll)), 1));
        x = _mm512_or_si512(_mm512_and_si512(x, _mm512_set1_epi64(0x00003FFF00003FFFll)),
                            _mm512_srli_epi64(_mm512_and_si512(x, _mm512_set1_epi64(0x3FFF00003FFF0000ll)), 2));
        x = _mm512_or_si512(_mm512_and_si512(x, _mm512_set1_epi64(0x000000000FFFFFFFll)),
                            _mm512_srli_epi64(_mm512_and_si512(x, _mm512_set1_epi64(0x0FFFFFFF00000000ll)), 4));
        __m512i last = _mm512_and_si512(_mm512_srlv_epi64(w, _mm512_sub_epi64(bits, eight)), _mm512_set1_epi64(0xFF));
        if (longer) { /* byte 8's group at bit 56 (a 10th byte is 0x00 here) */
            __m512i tail = _mm512_slli_epi64(_mm512_and_si512(w2, _mm512_set1_epi64(0x7F)), 56);
            x = _mm512_mask_or_epi64(x, longer, x, tail);
            last = _mm512_mask_mov_epi64(last, longer, last2);
            n = _mm512_mask_add_epi64(n, longer, n2, eight);
            fast |= longer;
        }
        __mmask8 neg = _mm512_cmpeq_epi64_mask(last, zero) & _mm512_cmpgt_epi64_mask(n, one);
        x = _mm512_mask_xor_epi64(x, neg, x, _mm512_set1_epi64(-1));
        __mmask8 good = fast & _mm512_cmple_epi64_mask(n, _mm512_sub_epi64(end, p)); /* inside the body */
        if (v) _mm512_storeu_si512(v + 8 * r, _mm512_maskz_mov_epi64(good, x));
        p = _mm512_mask_add_epi64(p, good, p, n);
        memcpy(tile_p + r, &p, 64); /* every ok row's cursor at its value, or past it where done */
        for (unsigned rest = (unsigned)(ok & ~good); rest; rest &= rest - 1) {
            Py_ssize_t k = r + __builtin_ctz(rest);
            if (fast & (1u << (k - r))) { /* the value runs past the body */
                tile_ok[k] = 0;
                continue;
            }
            const uint8_t *q = tile_p[k];
            int64_t y = 0;
            int used = stop_bit(q, tile_end[k] - q, tile_file_end[k] - q, &y, 0);
            tile_ok[k] = used != 0;
            if (v) memcpy(v + 8 * k, &y, 8);
            tile_p[k] = q + used;
        }
    }
    if (r < m) /* the last rows of a short tile */
        stopbit_column(v ? v + 8 * r : NULL, m - r, at, tile_p + r, tile_end + r, tile_file_end + r, tile_ok + r);
}

/* The AVX-512 path's run: step by step, each a column of 8 rows at a time. */
__attribute__((target("avx512f,avx512cd"))) static void stopbit_run_avx512(
    uint8_t *const *vs, Py_ssize_t g, Py_ssize_t m, Py_ssize_t at, const uint8_t **tile_p,
    const uint8_t *const *tile_end, const uint8_t *const *tile_file_end, uint8_t *tile_ok) {
    for (Py_ssize_t k = 0; k < g; k++)
        stopbit_column_avx512(vs[k], m, k ? 0 : at, tile_p, tile_end, tile_file_end, tile_ok);
}

static int avx512_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd");
}
#endif

static inline int is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

static inline uint8_t *put3(uint8_t *d, uint32_t u) {
    d[0] = (uint8_t)(0xE0 | (u >> 12));
    d[1] = (uint8_t)(0x80 | ((u >> 6) & 0x3F));
    d[2] = (uint8_t)(0x80 | (u & 0x3F));
    return d + 3;
}

/* Java text s[0..len) -> UTF-8 at d (at most len bytes are written). Plain UTF-8 is copied; C0 80 becomes 00, a
 * surrogate pair in CESU-8 (ED A0..AF xx ED B0..BF xx) the 4-byte sequence of its code point, a lone surrogate
 * U+FFFD (*replaced += 1); *cesu is set when any of these occurs. Returns the bytes written, or -1 for bytes that
 * are neither UTF-8 nor Java's CESU-8. */
static inline __attribute__((always_inline)) Py_ssize_t java_text(const uint8_t *s, Py_ssize_t len, uint8_t *d, int *cesu, int64_t *replaced) {
    Py_ssize_t i = 0, o = 0;
    while (i < len) {
        while (i + 8 <= len) { /* ASCII, a word at a time */
            uint64_t w = load8(s + i);
            if (w & 0x8080808080808080ull) break;
            store8(d + o, w);
            i += 8;
            o += 8;
        }
        while (i < len && s[i] < 0x80) d[o++] = s[i++];
        if (i == len) break;
        uint8_t c = s[i];
        if (c == 0xC0) { /* modified UTF-8 NUL */
            if (i + 1 >= len || s[i + 1] != 0x80) return -1;
            d[o++] = 0;
            i += 2;
            *cesu = 1;
        } else if (c < 0xC2) { /* a stray continuation byte, or an overlong 2-byte form */
            return -1;
        } else if (c < 0xE0) {
            if (i + 1 >= len || !is_cont(s[i + 1])) return -1;
            d[o] = c;
            d[o + 1] = s[i + 1];
            o += 2;
            i += 2;
        } else if (c < 0xF0) {
            if (i + 2 >= len || !is_cont(s[i + 1]) || !is_cont(s[i + 2])) return -1;
            uint8_t b1 = s[i + 1];
            if (c == 0xE0 && b1 < 0xA0) return -1; /* overlong */
            if (c == 0xED && b1 >= 0xA0) {         /* a UTF-16 surrogate, 3 bytes */
                uint32_t u = 0xD000u | ((uint32_t)(b1 & 0x3F) << 6) | (s[i + 2] & 0x3Fu);
                *cesu = 1;
                if (u < 0xDC00 && i + 5 < len && s[i + 3] == 0xED && (s[i + 4] & 0xF0) == 0xB0 && is_cont(s[i + 5])) {
                    uint32_t lo = 0xD000u | ((uint32_t)(s[i + 4] & 0x3F) << 6) | (s[i + 5] & 0x3Fu);
                    uint32_t cp = 0x10000u + ((u - 0xD800u) << 10) + (lo - 0xDC00u);
                    d[o] = (uint8_t)(0xF0 | (cp >> 18));
                    d[o + 1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                    d[o + 2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                    d[o + 3] = (uint8_t)(0x80 | (cp & 0x3F));
                    o += 4;
                    i += 6;
                } else {
                    put3(d + o, 0xFFFD);
                    o += 3;
                    i += 3;
                    (*replaced)++;
                }
            } else {
                d[o] = c;
                d[o + 1] = b1;
                d[o + 2] = s[i + 2];
                o += 3;
                i += 3;
            }
        } else if (c < 0xF5) { /* plain UTF-8 above the BMP: not what Java writes, but valid text */
            if (i + 3 >= len || !is_cont(s[i + 1]) || !is_cont(s[i + 2]) || !is_cont(s[i + 3])) return -1;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90)) return -1;
            memcpy(d + o, s + i, 4);
            o += 4;
            i += 4;
        } else {
            return -1;
        }
    }
    return o;
}

/* A short text (at most 16 bytes, in a and b; bytes past its length zero) that is plain UTF-8 with nothing Java
 * writes differently (no C0 80, no surrogate), so that it may be copied as it is; 0 sends it to java_text. The
 * three-table check of Keiser and Lemire ("Validating UTF-8 in less than one instruction per byte", 2021): every
 * pair of adjacent bytes is classified by the high and low nibble of the first byte and the high nibble of the
 * second, each through a 16-entry table of the errors it allows; a pair is bad when all three agree on one. The
 * bytes before the text count as zero; zero bytes after it make a sequence cut short an error; a 16-byte text
 * must not end inside a sequence. C0 80 is an overlong form and ED A0..BF a surrogate to this check: both bad. */
typedef int (*text16_fn)(uint64_t a, uint64_t b, Py_ssize_t len);
static text16_fn text16_plain = NULL; /* chosen at import: NULL where SSSE3 is missing (java_text then) */

#ifdef HAVE_PEXT_PATH
enum { /* the errors a pair of bytes can show (bit 7: two continuation bytes, right only after a 3- or 4-byte lead) */
    U_SHORT = 1, U_LONG = 2, U_OVERLONG3 = 4, U_TOO_LARGE = 8, U_SURROGATE = 16, U_OVERLONG2 = 32,
    U_TOO_LARGE_1000 = 64, U_OVERLONG4 = 64, U_TWO_CONTS = 128, U_CARRY = U_SHORT | U_LONG | U_TWO_CONTS
};
__attribute__((target("ssse3"))) static int text16_plain_ssse3(uint64_t a, uint64_t b, Py_ssize_t len) {
    const __m128i first_high = _mm_setr_epi8( /* by the high nibble of the first byte of a pair */
        U_LONG, U_LONG, U_LONG, U_LONG, U_LONG, U_LONG, U_LONG, U_LONG, U_TWO_CONTS, U_TWO_CONTS, U_TWO_CONTS,
        U_TWO_CONTS, U_SHORT | U_OVERLONG2, U_SHORT, U_SHORT | U_OVERLONG3 | U_SURROGATE,
        U_SHORT | U_TOO_LARGE | U_TOO_LARGE_1000 | U_OVERLONG4);
    const __m128i first_low = _mm_setr_epi8( /* by its low nibble */
        U_CARRY | U_OVERLONG3 | U_OVERLONG2 | U_OVERLONG4, U_CARRY | U_OVERLONG2, U_CARRY, U_CARRY,
        U_CARRY | U_TOO_LARGE, U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000, U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000,
        U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000, U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000,
        U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000, U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000,
        U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000, U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000,
        U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000 | U_SURROGATE, U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000,
        U_CARRY | U_TOO_LARGE | U_TOO_LARGE_1000);
    const __m128i second_high = _mm_setr_epi8( /* by the high nibble of the second byte */
        U_SHORT, U_SHORT, U_SHORT, U_SHORT, U_SHORT, U_SHORT, U_SHORT, U_SHORT,
        U_LONG | U_OVERLONG2 | U_TWO_CONTS | U_OVERLONG3 | U_TOO_LARGE_1000 | U_OVERLONG4,
        U_LONG | U_OVERLONG2 | U_TWO_CONTS | U_OVERLONG3 | U_TOO_LARGE,
        U_LONG | U_OVERLONG2 | U_TWO_CONTS | U_SURROGATE | U_TOO_LARGE,
        U_LONG | U_OVERLONG2 | U_TWO_CONTS | U_SURROGATE | U_TOO_LARGE, U_SHORT, U_SHORT, U_SHORT, U_SHORT);
    const __m128i nibble = _mm_set1_epi8(0x0F);
    __m128i x = _mm_set_epi64x((long long)b, (long long)a);
    __m128i prev1 = _mm_slli_si128(x, 1), prev2 = _mm_slli_si128(x, 2), prev3 = _mm_slli_si128(x, 3);
    __m128i pair = _mm_and_si128(
        _mm_and_si128(_mm_shuffle_epi8(first_high, _mm_and_si128(_mm_srli_epi16(prev1, 4), nibble)),
                      _mm_shuffle_epi8(first_low, _mm_and_si128(prev1, nibble))),
        _mm_shuffle_epi8(second_high, _mm_and_si128(_mm_srli_epi16(x, 4), nibble)));
    /* the bytes 2 after a 3- or 4-byte lead (E0..) and 3 after a 4-byte one (F0..): where two continuations are due */
    __m128i due = _mm_or_si128(_mm_subs_epu8(prev2, _mm_set1_epi8(0xE0 - 0x80)),
                               _mm_subs_epu8(prev3, _mm_set1_epi8((char)(0xF0 - 0x80))));
    __m128i bad = _mm_xor_si128(pair, _mm_and_si128(due, _mm_set1_epi8((char)0x80)));
    if (len == 16) /* the last three bytes must not begin a sequence they do not finish */
        bad = _mm_or_si128(bad, _mm_subs_epu8(x, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                                (char)0xEF, (char)0xDF, (char)0xBF)));
    return _mm_movemask_epi8(_mm_cmpeq_epi8(bad, _mm_setzero_si128())) == 0xFFFF;
}
#endif


/* -- the loop ------------------------------------------------------------------------------------------------ */
/* The data files of a batch (keys[j] names views[j]). */
typedef struct {
    const int64_t *keys;
    const Py_buffer *views;
    Py_ssize_t count;
} Files;

/* Entry e's file and the header before its body: 0 (then *off, *length are the body's), or an H_* reason. *key,
 * *file, *base and *size are the file of the previous entry (*base NULL before the first): kept by the caller as
 * locals, so that they stay in registers; *file is f->count for a key Python did not pass, read as an empty
 * file. */
static inline __attribute__((always_inline)) int locate(const Files *f, uint64_t e, int data_bits, uint64_t mask, int64_t *key, Py_ssize_t *file,
                         const uint8_t **base, Py_ssize_t *size, uint64_t *off, int32_t *length) {
    int64_t k = (int64_t)(e >> data_bits);
    if (k != *key || !*base) {
        Py_ssize_t j = 0;
        while (j < f->count && f->keys[j] != k) j++;
        if (j == f->count) {
            *base = (const uint8_t *)"";
            *size = 0;
        } else {
            *base = f->views[j].buf;
            *size = f->views[j].len;
        }
        *key = k;
        *file = j;
    }
    uint64_t o = e & mask;
    int32_t hdr = 0, len = 0;
    int why = 0;
    if (o < HEADER_SIZE || o > (uint64_t)*size) {
        why = H_OUTSIDE;
    } else {
        memcpy(&hdr, *base + o - HEADER_SIZE, 4);
        len = ~hdr;
        if (hdr == 0)
            why = H_ZERO;
        else if (len < 0 || len >= MAX_BODY_LENGTH)
            why = H_HUGE;
        else if ((uint64_t)len > (uint64_t)*size - o)
            why = H_PAST;
    }
    *off = o;
    *length = len;
    return why;
}

/* release: the lowest and highest byte of the messages read in each file */
static inline __attribute__((always_inline)) void note_span(uint64_t *span, Py_ssize_t file, Py_ssize_t count, uint64_t off, int32_t length) {
    if (file >= count) return;
    uint64_t *sp = span + 2 * file;
    if (!sp[1] || off - HEADER_SIZE < sp[0]) sp[0] = off - HEADER_SIZE;
    if (off + (uint64_t)length > sp[1]) sp[1] = off + (uint64_t)length;
}

/* The files are read-only shared mappings of journal files (never memory of this process: there the call would
 * zero it). The pages wholly inside what was read leave the process's resident set; they stay in the page cache,
 * and a later read maps them again. Pages at either end may hold messages of other batches: they are kept. */
static void release_spans(const Py_buffer *views, Py_ssize_t count, const uint64_t *span) {
#if defined(__linux__) && defined(MADV_DONTNEED)
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (Py_ssize_t j = 0; j < count; j++) {
        uintptr_t start = (uintptr_t)views[j].buf + span[2 * j];
        uintptr_t end = (uintptr_t)views[j].buf + span[2 * j + 1];
        start = (start + page - 1) & ~(page - 1);
        end &= ~(page - 1);
        if (span[2 * j + 1] && end > start && end - start >= 16 * page) madvise((void *)start, end - start, MADV_DONTNEED);
    }
#else
    (void)views;
    (void)count;
    (void)span;
#endif
}

/* What one row's fields gave besides its status. */
typedef struct {
    int code;             /* C_DONE, or C_NEED_MORE / C_TOO_BIG for column col (the row is undone) */
    Py_ssize_t col;
    int slow;             /* text columns that took the CESU-8 path */
    int64_t replaced;     /* lone surrogates replaced */
    Py_ssize_t text_step; /* ST_TEXT: the step whose bytes are not Java text */
} RowOut;

/* A text of len bytes (Java's, src) as UTF-8 at the cursor of op, whose room for it the caller checked; two_words:
 * the room and the bytes readable take 16 bytes (a short text is then copied as two words, whatever its length).
 * Returns 0, or -1 for a text that is not valid. */
static inline __attribute__((always_inline)) int put_room(Op *op, const uint8_t *src, Py_ssize_t len, int two_words,
                                                          int *slow, int64_t *replaced) {
    uint8_t *d = op->data + op->cursor;
    if (two_words) {
        uint64_t a = load8(src), b = load8(src + 8);
        /* the low len bytes of the two words (no branch on whether len is 0: a null's text is empty) */
        uint64_t ma = len >= 8 ? ~0ull : (~0ull >> 1) >> (63 - 8 * len);
        uint64_t mb = len >= 16 ? ~0ull : (len > 8 ? ~0ull >> (8 * (16 - len)) : 0);
        if (!(((a & ma) | (b & mb)) & 0x8080808080808080ull) || (text16_plain && text16_plain(a & ma, b & mb, len))) {
            store8(d, a);
            store8(d + 8, b);
            op->cursor += (int32_t)len;
            return 0;
        }
    }
    int cesu = 0;
    Py_ssize_t got = java_text(src, len, d, &cesu, replaced);
    if (got < 0) return -1;
    op->cursor += (int32_t)got;
    *slow += cesu;
    return 0;
}

/* One row's text field into its column (src readable up to readable_end): put_room after checking the room.
 * Returns 0, or -1 for bad text, or C_NEED_MORE/C_TOO_BIG where there is not room enough. */
static inline __attribute__((always_inline)) int put_text(Op *op, const uint8_t *src, Py_ssize_t len,
                                                          const uint8_t *readable_end, int *slow, int64_t *replaced) {
    Py_ssize_t room = op->cap - op->cursor;
    if ((int64_t)op->cursor + len > MAX_OFFSET) return C_TOO_BIG;
    if (room < len) return C_NEED_MORE;
    return put_room(op, src, len, len <= 16 && room >= 16 && readable_end - src >= 16, slow, replaced);
}

/* A usual length (0..127, or Java's null 0x80 0x00) from its first byte b0: *n the text's bytes (0 for a null),
 * *null; returns the bytes the length takes. No branch on which. */
static inline __attribute__((always_inline)) int usual_length(uint32_t b0, Py_ssize_t *n, int *null) {
    *null = (int)(b0 >> 7);
    *n = (Py_ssize_t)(b0 & (uint32_t)(*null - 1));
    return 1 + *null;
}

/* The length of a writeUTFΔ text at p (body up to end, readable up to file_end): the bytes it takes, or 0 when it
 * is no valid length; *n the text's bytes (0 for a null), *null. The usual lengths, 0..127 (one byte) and Java's
 * null (-1: 0x80 0x00), without a branch on which: on nulls at random, that branch (mispredicted) took a fifth of
 * the read. The one branch is on whether the length is one of them (GCC made two, the first on b0 < 0x80: hence
 * the asm). */
static inline __attribute__((always_inline)) int string_length(const uint8_t *p, const uint8_t *end,
                                                               const uint8_t *file_end, Py_ssize_t *n, int *null) {
    Py_ssize_t avail = end - p;
    uint32_t b0 = file_end - p >= 2 ? p[0] : 0xFF, b1 = file_end - p >= 2 ? p[1] : 0xFF;
    int usual = ((b0 < 0x80) & (avail >= 1)) | ((b0 == 0x80) & (b1 == 0) & (avail >= 2));
    __asm__("" : "+r"(usual));
    if (usual) return usual_length(b0, n, null);
    int64_t len;
    int used = stop_bit(p, avail, file_end - p, &len, 0);
    if (!used || len < -1) return 0;
    *null = len < 0;
    *n = *null ? 0 : (Py_ssize_t)len;
    return used;
}

/* Steps k0.. of one row (its body p..end, readable up to file_end) into output row i; bad: the row's status so
 * far. Returns its status (ST_*); o->code says whether a text buffer was full (the row then undone). */
static inline __attribute__((always_inline)) int decode_fields(Op *ops, Py_ssize_t k0, Py_ssize_t n_ops, const uint8_t *p, const uint8_t *end,
                                const uint8_t *file_end, Py_ssize_t i, int bad, RowOut *o) {
    for (Py_ssize_t k = k0; k < n_ops && bad != ST_MISMATCH; k++) {
        Op *op = &ops[k];
        if (op->run && end - p < op->run) {
            bad = ST_MISMATCH;
            break;
        }
        if (op->group && i < op->safe_rows && file_end - p >= op->span + 8) {
            const uint8_t *q = p;
            for (Py_ssize_t g = 0; g < op->group; g++) {
                const Op *f = op + g;
                if (f->values) store8(f->values + i * f->size, load8(q));
                q += f->size;
            }
            p = q;
            k += op->group - 1;
            continue;
        }
        switch (op->kind) {
        case D_FIXED: {
            uint8_t *d = op->values + i * op->size;
            switch (op->size) { /* constant sizes: one load and one store */
            case 8: memcpy(d, p, 8); break;
            case 4: memcpy(d, p, 4); break;
            case 2: memcpy(d, p, 2); break;
            case 1: *d = *p; break;
            default: memcpy(d, p, (size_t)op->size);
            }
            p += op->size;
            break;
        }
        case D_BOOL:
            set_bit(op->values, i, *p != 0);
            p += 1;
            break;
        case D_SKIP:
            p += op->size;
            break;
        case D_REST:
            p = end;
            break;
        case D_LIST: {
            int64_t count;
            int used = stop_bit(p, end - p, file_end - p, &count, 1);
            if (!used || count < 0 || count > (end - p - used) / op->size) { /* the entries pass the body */
                bad = ST_MISMATCH;
                break;
            }
            p += used;
            Py_ssize_t bytes = (Py_ssize_t)count * op->size;
            if (op->offsets) {
                if ((int64_t)op->cursor + count > MAX_OFFSET) {
                    o->code = C_TOO_BIG;
                } else if (op->cap - op->cursor < count) {
                    o->code = C_NEED_MORE;
                } else {
                    memcpy(op->data + (Py_ssize_t)op->cursor * op->size, p, (size_t)bytes);
                    op->cursor += (int32_t)count;
                    op->offsets[i + 1] = op->cursor;
                }
            }
            p += bytes;
            break;
        }
        case D_STOPBIT: {
            int64_t v;
            int used = stop_bit(p, end - p, file_end - p, &v, 0);
            if (!used) {
                bad = ST_MISMATCH;
                break;
            }
            if (op->values) memcpy(op->values + i * 8, &v, 8);
            p += used;
            break;
        }
        case D_CHAR: {
            uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
            p += 2;
            if ((int64_t)op->cursor + 3 > MAX_OFFSET) {
                o->code = C_TOO_BIG;
            } else if (op->cap - op->cursor < 3) {
                o->code = C_NEED_MORE;
            } else {
                uint8_t *d = op->data + op->cursor;
                if (u < 0x80) {
                    d[0] = (uint8_t)u;
                    op->cursor += 1;
                } else if (u < 0x800) {
                    d[0] = (uint8_t)(0xC0 | (u >> 6));
                    d[1] = (uint8_t)(0x80 | (u & 0x3F));
                    op->cursor += 2;
                } else {
                    if (u >= 0xD800 && u <= 0xDFFF) { /* a lone surrogate cannot be UTF-8 */
                        u = 0xFFFD;
                        o->replaced++;
                    }
                    put3(d, u);
                    op->cursor += 3;
                }
                op->offsets[i + 1] = op->cursor;
            }
            break;
        }
        default: { /* D_STRING, D_UTF */
            Py_ssize_t n; /* the text's bytes (0 for a null) */
            int null = 0;
            if (op->kind == D_STRING) {
                int used = string_length(p, end, file_end, &n, &null);
                if (!used) {
                    bad = ST_MISMATCH;
                    break;
                }
                p += used;
            } else {
                if (end - p < 2) {
                    bad = ST_MISMATCH;
                    break;
                }
                n = p[0] | (p[1] << 8);
                p += 2;
            }
            if (n > end - p) {
                bad = ST_MISMATCH;
                break;
            }
            if (!op->data) { /* not a column: passed over */
                p += n;
                break;
            }
            /* a null is an empty text, not valid (no branch on it either) */
            int r = put_text(op, p, n, file_end, &o->slow, &o->replaced);
            if (r == C_NEED_MORE || r == C_TOO_BIG) {
                o->code = r;
            } else {
                if (r < 0 && bad == ST_OK) {
                    bad = ST_TEXT;
                    o->text_step = k;
                }
                if (op->valid) set_bit(op->valid, i, !null); /* (nulls are counted from it: see zero_bits) */
                op->offsets[i + 1] = op->cursor;
            }
            p += n;
            break;
        }
        }
        if (o->code != C_DONE) { /* a text buffer is full: undo this row, ask for more */
            o->col = op->col;
            for (Py_ssize_t j = 0; j < n_ops; j++) {
                if (ops[j].offsets) ops[j].cursor = ops[j].offsets[i];
            }
            return bad;
        }
    }
    if (bad == ST_OK && p != end) bad = ST_MISMATCH;
    return bad;
}

/* Output row i is done with status bad: counted, or (a bad row) its strings made empty and valid, so that a filter
 * can drop it. */
static inline void settle_row(Op *ops, Py_ssize_t n_ops, Py_ssize_t i, int bad, const RowOut *o, int64_t *cnt,
                              uint8_t *st) {
    st[i] = (uint8_t)bad;
    if (bad == ST_OK) {
        if (o->slow | o->replaced) {
            cnt[N_SLOW] += o->slow;
            cnt[N_REPLACED] += o->replaced;
        }
        return;
    }
    for (Py_ssize_t k = 0; k < n_ops; k++) {
        Op *op = &ops[k];
        if (!op->offsets) continue;
        op->cursor = op->offsets[i];
        op->offsets[i + 1] = op->cursor;
        if (op->valid) set_bit(op->valid, i, 1);
    }
    if (cnt[N_FIRST_BAD] < 0) {
        cnt[N_FIRST_BAD] = i;
        cnt[N_TEXT_STEP] = bad == ST_TEXT ? o->text_step : -1;
    }
    cnt[N_BAD]++;
}

/* (C) column by column, for a tile whose steps after the prefix are all writeUTF\u0394 texts and whose rows are all
 * ok after (B): each text step over the tile's rows (no dispatch on the step per row; the rows' copies side by side;
 * the validity bits of a tile in a word), where row by row a read of ts, 3 numbers and 2 short texts spent a third
 * of its time on the step loop. Returns 1 when the tile is done, each row ok; 0 when it must go row by row, with
 * nothing it did left behind (cursors as they were; the offsets and bits it wrote are written again): a text
 * buffer without room for every body of the tile (text never grows from Java's bytes to UTF-8), a body with less
 * than 16 bytes readable after it (near the end of its file), a length or text that is not valid, or a row that
 * does not end where its body does. */
static __attribute__((noinline)) int text_tile(Op *ops, Py_ssize_t n_prefix, Py_ssize_t n_ops, Py_ssize_t i0,
                                               Py_ssize_t m, const uint8_t *const *tile_p,
                                               const uint8_t *const *tile_end, const uint8_t *const *tile_file_end,
                                               const uint8_t *tile_ok, Py_ssize_t tail, int64_t *cnt, uint8_t *st) {
    if (n_ops - n_prefix > MAX_TEXT_STEPS || n_ops == n_prefix) return 0;
    for (Py_ssize_t k = n_prefix; k < n_ops; k++) /* (before any row: a program of other steps pays nothing more) */
        if (ops[k].kind != D_STRING) return 0;
    Py_ssize_t body = 0;
    int roomy = 1; /* 16 bytes readable past every body: the lengths and short texts below need not check where
                    * their file ends (measured: a seventh of a read of two short texts per row) */
    for (Py_ssize_t r = 0; r < m; r++) {
        if (!tile_ok[r]) return 0;
        body += tile_end[r] - tile_p[r];
        roomy &= tile_file_end[r] - tile_end[r] >= 16;
    }
    if (!roomy) return 0;
    int32_t start[MAX_TEXT_STEPS];
    for (Py_ssize_t k = n_prefix; k < n_ops; k++) {
        const Op *op = &ops[k];
        if (op->data && (op->cap - op->cursor < body + 16 || (int64_t)op->cursor + body > MAX_OFFSET)) return 0;
        start[k - n_prefix] = op->cursor;
    }
    const uint8_t *cur[TILE];
    for (Py_ssize_t r = 0; r < m; r++) cur[r] = tile_p[r] + tail;
    int slow = 0, fine = 1;
    int64_t replaced = 0;
    for (Py_ssize_t k = n_prefix; k < n_ops && fine; k++) {
        Op *op = &ops[k];
        uint64_t valid = 0;
        for (Py_ssize_t r = 0; r < m; r++) {
            const uint8_t *q = cur[r];
            uint32_t b0 = q[0], w = b0 << 8 | q[1]; /* above 0x8000: neither 0..127 nor 0x80 0x00 */
            Py_ssize_t n;
            int null, used = usual_length(b0, &n, &null);
            if (__builtin_expect(w > 0x8000 || n > tile_end[r] - q - used, 0)) {
                used = string_length(q, tile_end[r], tile_file_end[r], &n, &null);
                if (!used || n > tile_end[r] - q - used) {
                    fine = 0;
                    break;
                }
            }
            q += used;
            if (op->data) {
                if (put_room(op, q, n, n <= 16, &slow, &replaced)) { /* (room and 16 readable bytes: above) */
                    fine = 0;
                    break;
                }
                op->offsets[i0 + r + 1] = op->cursor;
                valid |= (uint64_t)!null << r;
            }
            cur[r] = q + n;
        }
        if (fine && op->valid) put_bits(op->valid, i0, valid, m == 64 ? ~0ull : (1ull << m) - 1, m);
    }
    for (Py_ssize_t r = 0; r < m && fine; r++) fine = cur[r] == tile_end[r];
    if (!fine) {
        for (Py_ssize_t k = n_prefix; k < n_ops; k++)
            if (ops[k].data) ops[k].cursor = start[k - n_prefix];
        return 0;
    }
    memset(st + i0, ST_OK, (size_t)m);
    cnt[N_SLOW] += slow;
    cnt[N_REPLACED] += replaced;
    return 1;
}

/* (B) and (C) of one tile (see decode()): its m bodies (tile_p, tile_end, readable up to tile_file_end; tile_ok: the
 * body holds the run its program starts with) into output rows i0..i0+m-1. *decoding becomes 0 after a bad row when
 * stop (the rows after it are not decoded; their text offsets stay whole). Returns C_DONE, or C_NEED_MORE /
 * C_TOO_BIG with *row (the output row, undone) and *detail (the column). */
static inline __attribute__((always_inline)) int decode_tile(Op *ops, Py_ssize_t n_ops, Py_ssize_t n_prefix, Py_ssize_t i0, Py_ssize_t m,
                       const uint8_t **tile_p, const uint8_t *const *tile_end, const uint8_t *const *tile_file_end,
                       uint8_t *tile_ok, int stop, int *decoding, int64_t *cnt, uint8_t *st, Py_ssize_t *row,
                       Py_ssize_t *detail) {
    Py_ssize_t tail = 0; /* bytes from tile_p[r] to the end of the prefix (after its last stop-bit) */
    /* a prefix then a rest step (a common header): (B) decodes it all, and any body at least that long is right */
    int rest = n_ops > 0 && ops[n_ops - 1].kind == D_REST && n_prefix == n_ops - 1;
    int all_prefix = n_prefix == n_ops || rest;
    if (n_prefix && *decoding) { /* (B); the bodies are inside their files */
        Py_ssize_t at = 0; /* bytes from tile_p[r] to the step, the same in every row (since the last stop-bit) */
        /* A whole tile of a column of 8-byte values fills 8 cache lines (where the column is aligned): stored past
         * the cache, so that its lines are not first read from memory (on wide rows, a third of the memory
         * traffic: 0.7x the time measured). Measured no gain, or a loss, with 4-byte and stop-bit columns: they
         * are not streamed. One non-temporal store per value: gathered in a buffer on the stack and streamed
         * from there, the read took up to 1.3x the time, depending on where the buffer fell (as code around it
         * changed). */
        int stream = HAVE_STREAM && m == TILE;
        for (Py_ssize_t k = 0; k < n_prefix; k++) {
            const Op *op = &ops[k];
            uint8_t *v = op->values;
            Py_ssize_t sz = op->size;
            if (op->run && k) /* a run of fixed-size steps: it must lie inside the body ((A) checked step 0) */
                for (Py_ssize_t r = 0; r < m; r++)
                    tile_ok[r] &= tile_end[r] - tile_p[r] - at >= op->run;
            if (op->kind == D_BOOL) { /* the tile's bits gathered in a word (TILE <= 64) */
                uint64_t on = 0, ok = 0;
                for (Py_ssize_t r = 0; r < m; r++)
                    if (tile_ok[r]) {
                        ok |= 1ull << r;
                        on |= (uint64_t)(tile_p[r][at] != 0) << r;
                    }
                put_bits(v, i0, on, ok, m);
            } else if (op->kind == D_FIXED) {
                uint8_t *d = v + i0 * sz;
                switch (sz) { /* constant sizes: one load and one store */
                case 8:
                    if (stream && !((uintptr_t)d & 63)) {
#if HAVE_STREAM
                        for (Py_ssize_t r = 0; r < TILE; r++) {
                            long long x = 0;
                            if (tile_ok[r]) memcpy(&x, tile_p[r] + at, 8);
                            _mm_stream_si64((long long *)(d + 8 * r), x);
                        }
                        break;
#endif
                    }
                    for (Py_ssize_t r = 0; r < m; r++)
                        if (tile_ok[r]) memcpy(d + 8 * r, tile_p[r] + at, 8);
                    break;
                case 4:
                    for (Py_ssize_t r = 0; r < m; r++)
                        if (tile_ok[r]) memcpy(d + 4 * r, tile_p[r] + at, 4);
                    break;
                case 2:
                    for (Py_ssize_t r = 0; r < m; r++)
                        if (tile_ok[r]) memcpy(d + 2 * r, tile_p[r] + at, 2);
                    break;
                case 1:
                    for (Py_ssize_t r = 0; r < m; r++)
                        if (tile_ok[r]) d[r] = tile_p[r][at];
                    break;
                default:
                    for (Py_ssize_t r = 0; r < m; r++)
                        if (tile_ok[r]) memcpy(d + sz * r, tile_p[r] + at, (size_t)sz);
                }
            } else if (op->kind == D_STOPBIT) { /* a run of stop-bit steps */
                Py_ssize_t g = 1;
                while (g < MAX_RUN && k + g < n_prefix && ops[k + g].kind == D_STOPBIT) g++;
                uint8_t *vs[MAX_RUN];
                for (Py_ssize_t j = 0; j < g; j++) vs[j] = ops[k + j].values ? ops[k + j].values + 8 * i0 : NULL;
                stopbit_run_impl(vs, g, m, at, tile_p, tile_end, tile_file_end, tile_ok);
                k += g - 1;
                at = 0;
                continue;
            }
            at += sz;
        }
        tail = at;
    }
    if (all_prefix && *decoding) { /* (C) when (B) decoded every field (no text): each body must end there */
        Py_ssize_t r = 0;
        for (; r < m; r++) {
            int bad = !tile_ok[r] || (!rest && tile_p[r] + tail != tile_end[r]);
            st[i0 + r] = (uint8_t)(bad ? ST_MISMATCH : ST_OK);
            if (bad) {
                if (cnt[N_FIRST_BAD] < 0) {
                    cnt[N_FIRST_BAD] = i0 + r;
                    cnt[N_TEXT_STEP] = -1;
                }
                cnt[N_BAD]++;
                if (stop) { /* rows after it: header checks only, as below */
                    *decoding = 0;
                    break;
                }
            }
        }
        return C_DONE;
    }
    if (*decoding && text_tile(ops, n_prefix, n_ops, i0, m, tile_p, tile_end, tile_file_end, tile_ok, tail, cnt, st))
        return C_DONE;
    for (Py_ssize_t r = 0; r < m; r++) { /* (C) */
        Py_ssize_t i = i0 + r;
        if (!*decoding) { /* header checks only; the text offsets stay whole for a call resuming here, and the
                           * strings valid (not nulls, which are counted from the validity bitmaps) */
            for (Py_ssize_t k = 0; k < n_ops; k++) {
                if (ops[k].offsets) ops[k].offsets[i + 1] = ops[k].cursor;
                if (ops[k].valid) set_bit(ops[k].valid, i, 1);
            }
            continue;
        }
        RowOut o = {C_DONE, 0, 0, 0, -1};
        const uint8_t *p = tile_ok[r] ? tile_p[r] + tail : tile_p[r];
        int bad = decode_fields(ops, n_prefix, n_ops, p, tile_end[r], tile_file_end[r], i,
                                tile_ok[r] ? ST_OK : ST_MISMATCH, &o); /* (B) decoded the prefix */
        if (o.code != C_DONE) {
            *row = i;
            *detail = o.col;
            return o.code;
        }
        settle_row(ops, n_ops, i, bad, &o, cnt, st);
        if (bad != ST_OK && stop) *decoding = 0;
    }
    return C_DONE;
}

static PyObject *decode(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *program, *files_t, *outs;
    Py_buffer entries, keys, status, counts;
    unsigned long long mask_arg;
    int data_bits, stop, release = 0;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "Oy*Kiy*OnnpOw*w*|p", &program, &entries, &mask_arg, &data_bits, &keys, &files_t,
                          &lo, &hi, &stop, &outs, &status, &counts, &release))
        return NULL;
    PyObject *result = NULL;
    Op *ops = NULL;
    uint64_t *span = NULL; /* per file: the lowest and highest byte of the messages read (release) */
    Views views = {NULL, 0};
    Views fviews = {NULL, 0};
    Py_ssize_t n = entries.len / 8, n_ops = 0, n_files = 0, n_cols = 0, n_prefix = 0;
    if (!PyTuple_Check(files_t)) {
        PyErr_SetString(PyExc_TypeError, "files must be a tuple of buffers");
        goto done;
    }
    n_files = PyTuple_GET_SIZE(files_t);
    n_cols = PyTuple_Check(outs) ? PyTuple_GET_SIZE(outs) : 0;
    if (data_bits < 0 || data_bits > 63 || keys.len / 8 != n_files || lo < 0 || hi < lo || hi > n ||
        status.len < n || counts.len / 8 < N_NULLS + n_cols) {
        PyErr_SetString(PyExc_ValueError, "decode: inconsistent arguments (data_bits, keys, lo/hi, status, counts)");
        goto done;
    }
    Py_ssize_t n_views = 3 * (PyTuple_Check(program) ? PyTuple_GET_SIZE(program) : 0);
    views.views = PyMem_Calloc(n_views ? n_views : 1, sizeof(Py_buffer));
    fviews.views = PyMem_Calloc(n_files ? n_files : 1, sizeof(Py_buffer));
    span = PyMem_Calloc(2 * (n_files ? n_files : 1), sizeof(uint64_t));
    if (!views.views || !fviews.views || !span) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < n_files; j++)
        if (!take_view(&fviews, PyTuple_GET_ITEM(files_t, j), 0, "file", j)) goto done;
    n_ops = read_program(program, outs, n, &views, &ops, &n_prefix);
    if (n_ops < 0) goto done;
    int64_t *cnt = (int64_t *)counts.buf;
    for (Py_ssize_t k = 0; k < n_ops; k++) {
        Op *op = &ops[k];
        if (op->offsets) {
            int32_t c = op->offsets[lo];
            if (c < 0 || c > op->cap) {
                bad_arg("outs[%zd]: offsets[lo] lies outside the data", op->col);
                goto done;
            }
            op->cursor = c;
        }
    }
    int code = C_DONE;
    Py_ssize_t row = hi, detail = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint64_t *ent = (const uint64_t *)entries.buf, mask = (uint64_t)mask_arg;
    const int64_t *key_of = (const int64_t *)keys.buf;
    uint8_t *st = (uint8_t *)status.buf;
    int64_t cur_key = -1;
    Py_ssize_t cur_file = n_files;
    const uint8_t *base = NULL;
    Py_ssize_t size = 0;
    int decoding = !(stop && cnt[N_BAD] > 0);
    /* Rows go in tiles: (A) the headers, row by row; (B) the prefix, column by column (each column a short
     * contiguous run of stores, rather than one store per column per row: much less memory traffic on wide rows;
     * and the rows' stop-bit values side by side, so that their dependent loads overlap), each row's cursor kept
     * in tile_p; (C) the rest of each row, row by row. A row whose prefix does not fit its body is bad. */
    const uint8_t *tile_p[TILE], *tile_end[TILE], *tile_file_end[TILE];
    uint8_t tile_ok[TILE];
    Py_ssize_t run0 = n_prefix ? ops[0].run : 0; /* bytes of the run that starts the body, checked in (A) */
    for (Py_ssize_t i0 = lo; i0 < hi && code == C_DONE; i0 += TILE) {
        Py_ssize_t m = hi - i0 < TILE ? hi - i0 : TILE, header_row = -1, why = 0;
        /* (A): the checks of locate(), written out: through it, a read of 20 float64 columns took 1.14x the time
         * (measured; the code of (B) laid out differently) */
        for (Py_ssize_t r = 0; r < m; r++) { /* (A) */
            Py_ssize_t i = i0 + r;
            uint64_t e = ent[i];
            int64_t key = (int64_t)(e >> data_bits);
            if (key != cur_key || !base) {
                Py_ssize_t j = 0;
                while (j < n_files && key_of[j] != key) j++;
                if (j == n_files) { /* Python passes every key of the batch; a missing one reads as an empty file */
                    base = (const uint8_t *)"";
                    size = 0;
                } else {
                    base = fviews.views[j].buf;
                    size = fviews.views[j].len;
                }
                cur_key = key;
                cur_file = j;
            }
            uint64_t off = e & mask;
            int32_t hdr = 0, length = 0;
            if (off < HEADER_SIZE || off > (uint64_t)size) {
                why = H_OUTSIDE;
            } else {
                memcpy(&hdr, base + off - HEADER_SIZE, 4);
                length = ~hdr;
                if (hdr == 0)
                    why = H_ZERO;
                else if (length < 0 || length >= MAX_BODY_LENGTH)
                    why = H_HUGE;
                else if ((uint64_t)length > (uint64_t)size - off)
                    why = H_PAST;
            }
            if (why) { /* the rows before it are decoded first */
                header_row = i;
                m = r;
                break;
            }
            if (release) note_span(span, cur_file, n_files, off, length);
            tile_p[r] = base + off;
            tile_end[r] = base + off + length;
            tile_file_end[r] = base + size;
            tile_ok[r] = length >= run0;
        }
        int c = decode_tile(ops, n_ops, n_prefix, i0, m, tile_p, tile_end, tile_file_end, tile_ok, stop, &decoding,
                            cnt, st, &row, &detail);
        if (c != C_DONE) {
            code = c;
            break;
        }
        if (code == C_DONE && header_row >= 0)
            code = C_HEADER, row = header_row, detail = why;
    }
#if HAVE_STREAM
    _mm_sfence(); /* the streamed stores are visible before the buffers are handed back */
#endif
    if (release) release_spans(fviews.views, n_files, span);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n_ops; k++) /* the rows done: lo.. up to the one returned (hi when done) */
        if (ops[k].valid) cnt[N_NULLS + ops[k].col] += zero_bits(ops[k].valid, lo, row);
    result = Py_BuildValue("(inn)", code, row, detail);
done:
    PyMem_Free(span);
    PyMem_Free(ops);
    release_views(&views);
    release_views(&fviews);
    PyBuffer_Release(&entries);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&status);
    PyBuffer_Release(&counts);
    return result;
}

/* decode_tile for decode_typed: out of line there (inlined, its loop measured 1.1x slower) */
static __attribute__((noinline)) int decode_subtile(Op *ops, Py_ssize_t n_ops, Py_ssize_t n_prefix, Py_ssize_t i0,
                                                    Py_ssize_t m, const uint8_t **tile_p, const uint8_t *const *tile_end,
                                                    const uint8_t *const *tile_file_end, uint8_t *tile_ok, int stop,
                                                    int *decoding, int64_t *cnt, uint8_t *st, Py_ssize_t *row,
                                                    Py_ssize_t *detail) {
    return decode_tile(ops, n_ops, n_prefix, i0, m, tile_p, tile_end, tile_file_end, tile_ok, stop, decoding, cnt, st,
                       row, detail);
}

/* -- message types ------------------------------------------------------------------------------------------- */
/* decode_typed: a journal of several message types, one pass. A message starts with a common header holding the
 * tag field; the tag's value picks the message type, whose program (the header and its own fields) decodes the
 * whole body into that type's columns, at that type's next output row. See decode_typed() below. */
enum info { I_UNKNOWN, I_FIRST_UNKNOWN, I_HEAD_BAD, I_FIRST_BAD, I_BAD_TYPE, I_COUNT };
#define UNKNOWN_TYPE (-1) /* a tag that names no type */
#define NO_HEADER (-2)    /* a body that does not hold the common header */
#define CHUNK 256         /* rows whose headers are read before their messages are decoded by type */
#define SLOTS 8           /* types a chunk decoded by type may hold */

typedef struct {
    int kind;
    Py_ssize_t size;
} Step;

typedef struct { /* one tag value: an integer as its bytes on the wire read (little-endian, zero-extended), or text */
    uint64_t value;
    const char *text; /* as Java writes it */
    Py_ssize_t len;
    const char *utf8; /* as UTF-8 */
    Py_ssize_t utf8_len;
} Tag;

#define OTHER_TAG_BYTES 1024 /* text tags that match none as Java writes them: decoded and compared up to this long */

typedef struct {
    const Step *steps; /* the common header, with the tag at step `at` */
    Py_ssize_t count, at;
    const Tag *tags;
    Py_ssize_t n_tags;
    int text;           /* a text tag (else an integer) */
    Py_ssize_t fixed;   /* a header of fixed-size fields (and a fixed-size tag): its bytes, else -1 */
    Py_ssize_t tag_at;  /* then: the tag's offset in the body */
    int16_t small[256]; /* integer tags below 256 -> type (-1: none) */
    int big;            /* some integer tag is 256 or more: those are looked up one by one */
} Header;

/* An integer tag's wire bytes (size 1..8), little-endian, zero-extended. */
static inline __attribute__((always_inline)) uint64_t load_tag(const uint8_t *p, Py_ssize_t size) {
    uint64_t v = 0;
    switch (size) { /* constant sizes: one load (a call of memcpy otherwise, a third of a message's time) */
    case 1: return p[0];
    case 2: memcpy(&v, p, 2); return v;
    case 4: memcpy(&v, p, 4); return v;
    case 8: memcpy(&v, p, 8); return v;
    default: memcpy(&v, p, (size_t)size); return v;
    }
}

static __attribute__((noinline)) Py_ssize_t big_tag_type(const Header *h, uint64_t value) {
    for (Py_ssize_t t = 0; t < h->n_tags; t++)
        if (h->tags[t].value == value) return t;
    return UNKNOWN_TYPE;
}

static inline __attribute__((always_inline)) Py_ssize_t tag_type(const Header *h, uint64_t value) {
    if (value < 256) return h->small[value];
    return h->big ? big_tag_type(h, value) : UNKNOWN_TYPE;
}

/* type_of() of a header that is not all fixed-size fields, or of a text tag: its fields walked */
static __attribute__((noinline)) Py_ssize_t walk_type(const Header *h, const uint8_t *p, const uint8_t *end,
                                                      const uint8_t *file_end) {
    uint64_t value = 0;
    const uint8_t *text = NULL;
    int64_t text_len = -1;
    for (Py_ssize_t k = 0; k < h->count; k++) {
        const Step *s = &h->steps[k];
        int64_t v = 0;
        switch (s->kind) {
        case D_REST:
            p = end;
            continue;
        case D_STOPBIT: {
            int used = stop_bit(p, end - p, file_end - p, &v, 1);
            if (!used) return NO_HEADER;
            p += used;
            if (k == h->at) memcpy(&value, &v, 8);
            continue;
        }
        case D_LIST: {
            int used = stop_bit(p, end - p, file_end - p, &v, 1);
            if (!used || v < 0 || v > (end - p - used) / s->size) return NO_HEADER;
            p += used + v * s->size;
            continue;
        }
        case D_STRING:
        case D_UTF:
            if (s->kind == D_STRING) {
                int used = stop_bit(p, end - p, file_end - p, &v, 1);
                if (!used || v < -1) return NO_HEADER;
                p += used;
            } else {
                if (end - p < 2) return NO_HEADER;
                v = p[0] | (p[1] << 8);
                p += 2;
            }
            if (v > end - p) return NO_HEADER;
            if (k == h->at) text = p, text_len = v;
            p += v < 0 ? 0 : v;
            continue;
        default: /* fixed size */
            if (end - p < s->size) return NO_HEADER;
            if (k == h->at) value = load_tag(p, s->size); /* integer tags: at most 8 bytes */
            p += s->size;
        }
    }
    if (h->text) {
        if (text_len < 0) return UNKNOWN_TYPE; /* a null */
        for (Py_ssize_t t = 0; t < h->n_tags; t++)
            if (h->tags[t].len == text_len && !memcmp(h->tags[t].text, text, (size_t)text_len)) return t;
        /* not spelled as Java writes any tag (C0 80, 4-byte UTF-8, a lone surrogate...): its text, as a read of
         * the header field gives it, is compared; bytes that are not Java text make the header bad */
        uint8_t d[OTHER_TAG_BYTES];
        int cesu = 0;
        int64_t replaced = 0;
        if (text_len > OTHER_TAG_BYTES) return UNKNOWN_TYPE;
        Py_ssize_t got = java_text(text, (Py_ssize_t)text_len, d, &cesu, &replaced);
        if (got < 0) return NO_HEADER;
        for (Py_ssize_t t = 0; t < h->n_tags; t++)
            if (h->tags[t].utf8_len == got && !memcmp(h->tags[t].utf8, d, (size_t)got)) return t;
        return UNKNOWN_TYPE;
    }
    return tag_type(h, value);
}

/* The type of the message whose body is p..end (readable up to file_end), or UNKNOWN_TYPE or NO_HEADER. */
static inline __attribute__((always_inline)) Py_ssize_t type_of(const Header *h, const uint8_t *p, const uint8_t *end,
                                                              const uint8_t *file_end) {
    if (h->fixed < 0) return walk_type(h, p, end, file_end);
    if (end - p < h->fixed) return NO_HEADER; /* the common case: the tag at a fixed offset */
    return tag_type(h, load_tag(p + h->tag_at, h->steps[h->at].size));
}

/* The common header's program (steps of (kind, size, column); the tag's column is 0, the others -1) and the tags
 * (ints, or bytes as Java writes the text), read into h. */
static int read_header(PyObject *program, PyObject *tags, Header *h, Step **steps, Tag **tag_out) {
    *steps = NULL;
    *tag_out = NULL;
    if (!PyTuple_Check(program) || !PyTuple_Check(tags)) {
        PyErr_SetString(PyExc_TypeError, "header and tags must be tuples");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(program), n_tags = PyTuple_GET_SIZE(tags);
    Step *s = PyMem_Calloc(count ? count : 1, sizeof(Step));
    Tag *t = PyMem_Calloc(n_tags ? n_tags : 1, sizeof(Tag));
    *steps = s;
    *tag_out = t;
    if (!s || !t) {
        PyErr_NoMemory();
        return -1;
    }
    h->at = -1;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t col;
        PyObject *step = PyTuple_GET_ITEM(program, k);
        if (!PyTuple_Check(step) || !PyArg_ParseTuple(step, "inn", &s[k].kind, &s[k].size, &col)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "header step %zd must be (kind, size, column)", k);
            return -1;
        }
        int kd = s[k].kind;
        if (kd < 0 || kd >= D_COUNT || (kd == D_REST && k != count - 1)) return bad_arg("header step %zd: bad kind", k);
        if (kd == D_BOOL) s[k].size = 1;
        if (kd == D_CHAR) s[k].size = 2;
        if ((kd == D_FIXED || kd == D_SKIP || kd == D_LIST) && (s[k].size < 1 || s[k].size >= MAX_BODY_LENGTH))
            return bad_arg("header step %zd: size out of range", k);
        if (col == 0) {
            if (h->at >= 0) return bad_arg("header step %zd: a second tag", k);
            if (!(kd == D_STOPBIT || kd == D_STRING || kd == D_UTF || (kd == D_FIXED && s[k].size <= 8)))
                return bad_arg("header step %zd: a tag is an integer or text field", k);
            h->at = k;
        }
    }
    if (h->at < 0) return bad_arg("the header has no tag (column 0) among its %zd steps", count);
    int text = s[h->at].kind == D_STRING || s[h->at].kind == D_UTF;
    for (Py_ssize_t j = 0; j < 256; j++) h->small[j] = UNKNOWN_TYPE;
    h->big = 0;
    h->text = text;
    h->fixed = text ? -1 : 0;
    h->tag_at = 0;
    for (Py_ssize_t k = 0; k < count && h->fixed >= 0; k++) {
        int kd = s[k].kind;
        if (k == h->at) h->tag_at = h->fixed;
        if (kd == D_FIXED || kd == D_SKIP || kd == D_BOOL || kd == D_CHAR)
            h->fixed += s[k].size;
        else if (kd != D_REST)
            h->fixed = -1;
    }
    for (Py_ssize_t j = 0; j < n_tags; j++) {
        PyObject *o = PyTuple_GET_ITEM(tags, j);
        if (text) {
            PyObject *java = PyTuple_Check(o) && PyTuple_GET_SIZE(o) == 2 ? PyTuple_GET_ITEM(o, 0) : NULL;
            PyObject *utf8 = java ? PyTuple_GET_ITEM(o, 1) : NULL;
            if (!java || !PyBytes_Check(java) || !PyBytes_Check(utf8)) {
                PyErr_SetString(PyExc_TypeError, "text tags must be (Java bytes, UTF-8 bytes) pairs");
                return -1;
            }
            t[j].text = PyBytes_AS_STRING(java); /* the tuple holds them for the call */
            t[j].len = PyBytes_GET_SIZE(java);
            t[j].utf8 = PyBytes_AS_STRING(utf8);
            t[j].utf8_len = PyBytes_GET_SIZE(utf8);
            continue;
        }
        if (!PyLong_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "integer tags must be ints");
            return -1;
        }
        t[j].value = PyLong_AsUnsignedLongLongMask(o);
        if (t[j].value == (uint64_t)-1 && PyErr_Occurred()) return -1;
        if (t[j].value < 256) {
            if (h->small[t[j].value] == UNKNOWN_TYPE) h->small[t[j].value] = (int16_t)j;
        } else {
            h->big = 1;
        }
    }
    if (n_tags > INT16_MAX) return bad_arg("too many tags (%zd)", n_tags);
    h->steps = s;
    h->count = count;
    h->tags = t;
    h->n_tags = n_tags;
    return 0;
}

typedef struct { /* one message type's program and output */
    Op *ops;
    Py_ssize_t n_ops, n_cols, n_prefix, run0; /* as in decode() */
    Py_ssize_t room; /* output rows its buffers hold */
    uint8_t *status; /* per output row: ST_* */
    int32_t *rows;   /* per output row: its row of the batch */
    int64_t *counts; /* as decode()'s counts, of this type's output rows */
    /* what a chunk decoded by type changed, to be undone (see decode_typed) */
    int64_t used0, counts0[N_NULLS];
    int64_t start; /* its output rows when the call began */
    int16_t seen;    /* its slot in the chunk, plus 1 (0: not in it) */
} Kind;

/* One message (batch row i, body p..end readable up to file_end) of type kd into its next output row (*used).
 * Returns its status, or -1 with o->code set when a text buffer is full (nothing written). */
static inline int typed_row(Kind *kd, int64_t *used, Py_ssize_t i, const uint8_t *p, const uint8_t *end,
                            const uint8_t *file_end, RowOut *o) {
    Py_ssize_t out = *used;
    int bad = decode_fields(kd->ops, 0, kd->n_ops, p, end, file_end, out, ST_OK, o);
    if (o->code != C_DONE) return -1;
    settle_row(kd->ops, kd->n_ops, out, bad, o, kd->counts, kd->status);
    kd->rows[out] = (int32_t)i;
    *used = out + 1;
    return bad;
}

static void save_kind(Kind *kd, const int64_t *used) {
    kd->used0 = *used;
    memcpy(kd->counts0, kd->counts, sizeof kd->counts0);
}

static void restore_kind(Kind *kd, int64_t *used) {
    *used = kd->used0;
    memcpy(kd->counts, kd->counts0, sizeof kd->counts0);
    for (Py_ssize_t k = 0; k < kd->n_ops; k++) {
        Op *op = &kd->ops[k];
        if (op->offsets) op->cursor = op->offsets[kd->used0];
    }
}

/*
 * decode_typed(header, tags, programs, entries, offset_mask, data_bits, keys, files, lo, hi, stop, stop_unknown,
 *              outs, statuses, rows, used, counts, info, release=False) -> (code, row, detail, type)
 *
 * header: the common header's program (the tag's column 0, the others -1); tags: each type's tag value (an int
 * as the tag's wire bytes read little-endian, or bytes of Java text); programs, outs, statuses (uint8), rows
 * (int32), counts (int64): per type, as decode()'s program, outs, status and counts, over that type's output
 * rows (statuses[t] has one byte per output row the type has room for; the others hold as many rows); used
 * (int64, per type): output rows written so far (a call resumes there).
 * Each batch row lo..hi-1: the header checked as by decode(), its type found, then decoded with its type's
 * program into that type's output row used[t]++ (rows[t][used] = the batch row). info (int64): [messages whose
 * tag names no type, the first of them, bodies without the common header, the first bad row (header or type),
 * its type (-1: the header)]. stop: rows after the first bad one are only header-checked; stop_unknown: so are
 * those after the first unknown tag. Codes as decode()'s; for C_NEED_MORE and C_TOO_BIG, type names the type
 * whose column `detail` is full (detail -1: its rows are).
 */
static PyObject *decode_typed(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *header_p, *tags_t, *programs, *files_t, *outs, *statuses, *rows_t, *counts_t;
    Py_buffer entries, keys, used_b, info_b;
    unsigned long long mask_arg;
    int data_bits, stop, stop_unknown, release = 0;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "OOOy*Kiy*OnnppOOOw*Ow*|p", &header_p, &tags_t, &programs, &entries, &mask_arg,
                          &data_bits, &keys, &files_t, &lo, &hi, &stop, &stop_unknown, &outs, &statuses, &rows_t,
                          &used_b, &counts_t, &info_b, &release))
        return NULL;
    PyObject *result = NULL;
    Header h;
    Step *steps = NULL;
    Tag *tags = NULL;
    Kind *kinds = NULL;
    uint64_t *span = NULL;
    Views views = {NULL, 0}, fviews = {NULL, 0}, kviews = {NULL, 0};
    Py_ssize_t n = entries.len / 8, n_files = 0, n_kinds = 0, n_steps = 0;
    if (read_header(header_p, tags_t, &h, &steps, &tags) < 0) goto done;
    if (!PyTuple_Check(files_t) || !PyTuple_Check(programs) || !PyTuple_Check(outs) || !PyTuple_Check(statuses) ||
        !PyTuple_Check(rows_t) || !PyTuple_Check(counts_t)) {
        PyErr_SetString(PyExc_TypeError, "files, programs, outs, statuses, rows and counts must be tuples");
        goto done;
    }
    n_files = PyTuple_GET_SIZE(files_t);
    n_kinds = PyTuple_GET_SIZE(programs);
    if (n_kinds != h.n_tags || PyTuple_GET_SIZE(outs) != n_kinds || PyTuple_GET_SIZE(statuses) != n_kinds ||
        PyTuple_GET_SIZE(rows_t) != n_kinds || PyTuple_GET_SIZE(counts_t) != n_kinds || used_b.len / 8 < n_kinds ||
        info_b.len / 8 < I_COUNT || data_bits < 0 || data_bits > 63 || keys.len / 8 != n_files || lo < 0 ||
        hi < lo || hi > n || hi > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "decode_typed: inconsistent arguments");
        goto done;
    }
    for (Py_ssize_t t = 0; t < n_kinds; t++) {
        PyObject *p = PyTuple_GET_ITEM(programs, t);
        if (!PyTuple_Check(p) || !PyTuple_Check(PyTuple_GET_ITEM(outs, t))) {
            PyErr_SetString(PyExc_TypeError, "programs and outs hold tuples");
            goto done;
        }
        n_steps += PyTuple_GET_SIZE(p);
    }
    kinds = PyMem_Calloc(n_kinds ? n_kinds : 1, sizeof(Kind));
    views.views = PyMem_Calloc(3 * n_steps + 1, sizeof(Py_buffer));
    kviews.views = PyMem_Calloc(3 * n_kinds + 1, sizeof(Py_buffer));
    fviews.views = PyMem_Calloc(n_files ? n_files : 1, sizeof(Py_buffer));
    span = PyMem_Calloc(2 * (n_files ? n_files : 1), sizeof(uint64_t));
    if (!kinds || !views.views || !kviews.views || !fviews.views || !span) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < n_files; j++)
        if (!take_view(&fviews, PyTuple_GET_ITEM(files_t, j), 0, "file", j)) goto done;
    int64_t *used = (int64_t *)used_b.buf, *info = (int64_t *)info_b.buf;
    for (Py_ssize_t t = 0; t < n_kinds; t++) {
        Kind *kd = &kinds[t];
        PyObject *o = PyTuple_GET_ITEM(outs, t);
        kd->n_cols = PyTuple_GET_SIZE(o);
        Py_buffer *st = take_view(&kviews, PyTuple_GET_ITEM(statuses, t), 1, "statuses", t);
        if (!st) goto done;
        kd->room = st->len;
        kd->n_ops = read_program(PyTuple_GET_ITEM(programs, t), o, kd->room, &views, &kd->ops, &kd->n_prefix);
        if (kd->n_ops < 0) goto done;
        kd->run0 = kd->n_prefix ? kd->ops[0].run : 0;
        kd->start = used[t];
        Py_buffer *rw = take_view(&kviews, PyTuple_GET_ITEM(rows_t, t), 1, "rows", t);
        Py_buffer *ct = rw ? take_view(&kviews, PyTuple_GET_ITEM(counts_t, t), 1, "counts", t) : NULL;
        if (!ct) goto done;
        if (rw->len / 4 < kd->room || ct->len / 8 < N_NULLS + kd->n_cols || used[t] < 0 || used[t] > lo ||
            used[t] > kd->room) {
            bad_arg("type %zd: rows or counts too short, or used out of range", t);
            goto done;
        }
        kd->status = st->buf;
        kd->rows = rw->buf;
        kd->counts = ct->buf;
        for (Py_ssize_t k = 0; k < kd->n_ops; k++) {
            Op *op = &kd->ops[k];
            if (op->offsets) {
                int32_t c = op->offsets[used[t]];
                if (c < 0 || c > op->cap) {
                    bad_arg("type %zd: offsets[used] lies outside the data", t);
                    goto done;
                }
                op->cursor = c;
            }
        }
    }
    int code = C_DONE;
    Py_ssize_t row = hi, detail = 0, type = -1;
    Py_BEGIN_ALLOW_THREADS
    const uint64_t *ent = (const uint64_t *)entries.buf, mask = (uint64_t)mask_arg;
    const Files f = {(const int64_t *)keys.buf, fviews.views, n_files};
    int64_t cur_key = -1;
    Py_ssize_t cur_file = n_files, size = 0;
    const uint8_t *base = NULL;
    int decoding = !(stop && info[I_FIRST_BAD] >= 0) && !(stop_unknown && info[I_FIRST_UNKNOWN] >= 0);
    /* Rows go in chunks: (1) each message's header is checked and its tag read, row by row (the tags' loads
     * overlap; no message's decoding then waits on its tag), and the message is put in its type's list for the
     * chunk; (2) each type's messages of the chunk are decoded a tile at a time, as decode() does (the tile's
     * prefix column by column). What depends on the order sends the chunk to (3), its changes undone: a stop (a
     * bad message, or an unknown tag with stop_unknown), a full text buffer (a call resumes at the row where it
     * stopped) and more than SLOTS types in the chunk; (3) the chunk's messages in index order, one by one. */
    const uint8_t *sp[SLOTS][CHUNK], *se[SLOTS][CHUNK], *sfe[SLOTS][CHUNK]; /* each type's bodies, in order */
    uint8_t sok[SLOTS][CHUNK];   /* the body holds the run its type's program starts with */
    uint16_t srow[SLOTS][CHUNK]; /* its row of the chunk */
    Py_ssize_t n_in[SLOTS];
    int16_t slot_kind[SLOTS];
    for (Py_ssize_t i0 = lo; i0 < hi && code == C_DONE; i0 += CHUNK) {
        Py_ssize_t m = hi - i0 < CHUNK ? hi - i0 : CHUNK, header_row = -1, n_seen = 0;
        int why = 0, ordered = !decoding;
        int64_t info0[I_COUNT];
        memcpy(info0, info, sizeof info0);
        for (Py_ssize_t r = 0; r < m && !ordered; r++) { /* (1) */
            Py_ssize_t i = i0 + r;
            uint64_t off;
            int32_t length;
            why = locate(&f, ent[i], data_bits, mask, &cur_key, &cur_file, &base, &size, &off, &length);
            if (why) { /* the rows before it are decoded first */
                header_row = i;
                m = r;
                break;
            }
            if (release) note_span(span, cur_file, n_files, off, length);
            const uint8_t *p = base + off;
            Py_ssize_t t = type_of(&h, p, p + length, base + size);
            if (t < 0) {
                if (t == UNKNOWN_TYPE) {
                    ordered = stop_unknown;
                    if (!info[I_UNKNOWN]++) info[I_FIRST_UNKNOWN] = i;
                } else {
                    ordered = stop;
                    info[I_HEAD_BAD]++;
                    if (info[I_FIRST_BAD] < 0 || i < info[I_FIRST_BAD]) info[I_FIRST_BAD] = i, info[I_BAD_TYPE] = -1;
                }
                continue;
            }
            Kind *kd = &kinds[t];
            if (!kd->seen) {
                if (n_seen == SLOTS) {
                    ordered = 1;
                    break;
                }
                save_kind(kd, &used[t]);
                slot_kind[n_seen] = (int16_t)t;
                n_in[n_seen] = 0;
                kd->seen = (int16_t)(++n_seen); /* its slot, plus 1 */
            }
            Py_ssize_t q = kd->seen - 1, k = n_in[q]++;
            sp[q][k] = p;
            se[q][k] = p + length;
            sfe[q][k] = base + size;
            sok[q][k] = length >= kd->run0;
            srow[q][k] = (uint16_t)r;
        }
        for (Py_ssize_t q = 0; q < n_seen && !ordered; q++) { /* (2) */
            Py_ssize_t t = slot_kind[q];
            Kind *kd = &kinds[t];
            for (Py_ssize_t x = 0; x < n_in[q]; x += TILE) {
                Py_ssize_t k = n_in[q] - x < TILE ? n_in[q] - x : TILE, out0 = used[t], at_row, col;
                if (out0 + k > kd->room) { /* its rows are full: (3) asks for more room */
                    ordered = 1;
                    break;
                }
                int64_t bad0 = kd->counts[N_BAD];
                int dec = 1;
                if (decode_subtile(kd->ops, kd->n_ops, kd->n_prefix, out0, k, &sp[q][x], &se[q][x], &sfe[q][x],
                                   &sok[q][x], 0, &dec, kd->counts, kd->status, &at_row, &col) != C_DONE) {
                    ordered = 1;
                    break;
                }
                for (Py_ssize_t j = 0; j < k; j++) kd->rows[out0 + j] = (int32_t)(i0 + srow[q][x + j]);
                used[t] = out0 + k;
                if (kd->counts[N_BAD] != bad0) {
                    if (stop) {
                        ordered = 1;
                        break;
                    }
                    Py_ssize_t j = 0;
                    while (kd->status[out0 + j] == ST_OK) j++;
                    Py_ssize_t i = i0 + srow[q][x + j];
                    if (info[I_FIRST_BAD] < 0 || i < info[I_FIRST_BAD]) info[I_FIRST_BAD] = i, info[I_BAD_TYPE] = t;
                }
            }
        }
        for (Py_ssize_t q = 0; q < n_seen; q++) {
            Kind *kd = &kinds[slot_kind[q]];
            kd->seen = 0;
            if (ordered) restore_kind(kd, &used[slot_kind[q]]);
        }
        if (ordered) memcpy(info, info0, sizeof info0);
        for (Py_ssize_t r = 0; ordered && r < m; r++) { /* (3); after a stop, header checks only */
            Py_ssize_t i = i0 + r;
            uint64_t off;
            int32_t length;
            int bad_header = locate(&f, ent[i], data_bits, mask, &cur_key, &cur_file, &base, &size, &off, &length);
            if (bad_header) {
                code = C_HEADER, row = i, detail = bad_header;
                break;
            }
            if (release) note_span(span, cur_file, n_files, off, length);
            if (!decoding) continue;
            const uint8_t *p = base + off;
            Py_ssize_t t = type_of(&h, p, p + length, base + size);
            if (t < 0) {
                if (t == UNKNOWN_TYPE) {
                    if (!info[I_UNKNOWN]++) info[I_FIRST_UNKNOWN] = i;
                    if (stop_unknown) decoding = 0;
                } else {
                    info[I_HEAD_BAD]++;
                    if (info[I_FIRST_BAD] < 0) info[I_FIRST_BAD] = i, info[I_BAD_TYPE] = -1;
                    if (stop) decoding = 0;
                }
                continue;
            }
            if (used[t] >= kinds[t].room) {
                code = C_NEED_MORE, row = i, detail = -1, type = t;
                break;
            }
            RowOut o = {C_DONE, 0, 0, 0, -1};
            int bad = typed_row(&kinds[t], &used[t], i, p, p + length, base + size, &o);
            if (bad < 0) {
                code = o.code, row = i, detail = o.col, type = t;
                break;
            }
            if (bad != ST_OK) {
                if (info[I_FIRST_BAD] < 0) info[I_FIRST_BAD] = i, info[I_BAD_TYPE] = t;
                if (stop) decoding = 0;
            }
        }
        if (code == C_DONE && header_row >= 0) code = C_HEADER, row = header_row, detail = why;
    }
#if HAVE_STREAM
    _mm_sfence(); /* decode_tile's streamed stores are visible before the buffers are handed back */
#endif
    if (release) release_spans(fviews.views, n_files, span);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < n_kinds; t++) /* each type's rows done by this call */
        for (Py_ssize_t k = 0; k < kinds[t].n_ops; k++) {
            const Op *op = &kinds[t].ops[k];
            if (op->valid) kinds[t].counts[N_NULLS + op->col] += zero_bits(op->valid, kinds[t].start, used[t]);
        }
    result = Py_BuildValue("(innn)", code, row, detail, type);
done:
    if (kinds)
        for (Py_ssize_t t = 0; t < n_kinds; t++) PyMem_Free(kinds[t].ops);
    PyMem_Free(kinds);
    PyMem_Free(steps);
    PyMem_Free(tags);
    PyMem_Free(span);
    release_views(&views);
    release_views(&kviews);
    release_views(&fviews);
    PyBuffer_Release(&entries);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&used_b);
    PyBuffer_Release(&info_b);
    return result;
}

/* The stop-bit run paths this CPU can run, best first. */
static int stopbit_paths(stopbit_run_fn *runs, const char **names) {
    int n = 0;
#ifdef HAVE_PEXT_PATH
    if (avx512_usable()) runs[n] = stopbit_run_avx512, names[n++] = "avx512";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi")) runs[n] = stopbit_run_avx2, names[n++] = "avx2";
    if (pext_is_fast()) runs[n] = stopbit_run_pext, names[n++] = "bmi2";
#endif
    runs[n] = stopbit_run, names[n++] = "portable";
    return n;
}

/* _stopbit_path(name or None) -> name: the stop-bit path in use ("avx512", "avx2", "bmi2", "portable"); a name
 * selects that path (tests run each one), None the best this CPU has. */
static PyObject *stopbit_path(PyObject *Py_UNUSED(self), PyObject *arg) {
    stopbit_run_fn runs[4];
    const char *names[4];
    int n = stopbit_paths(runs, names), k = 0;
    if (arg != Py_None) {
        const char *want = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
        if (!want) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "_stopbit_path takes a path name or None");
            return NULL;
        }
        for (k = 0; k < n && strcmp(names[k], want); k++)
            ;
        if (k == n) return PyErr_Format(PyExc_ValueError, "stop-bit path %s is not available on this CPU", want);
    }
    stopbit_run_impl = runs[k];
    return PyUnicode_FromString(names[k]);
}

/* _text_path(name or None) -> name: how short non-ASCII text is checked before its plain copy: "ssse3" (where the
 * CPU has it) or "scalar" (java_text for every text with a byte above 0x7F); None the best this CPU has. */
static text16_fn text16_best(void) {
#ifdef HAVE_PEXT_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("ssse3")) return text16_plain_ssse3;
#endif
    return NULL;
}

static PyObject *text_path(PyObject *Py_UNUSED(self), PyObject *arg) {
    text16_fn best = text16_best();
    if (arg != Py_None && !PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_text_path takes a path name or None");
        return NULL;
    }
    const char *want = arg == Py_None ? NULL : PyUnicode_AsUTF8(arg);
    if (!want && arg != Py_None) return NULL;
    if (want && strcmp(want, "scalar") && (strcmp(want, "ssse3") || !best)) {
        PyErr_Clear();
        return PyErr_Format(PyExc_ValueError, "text path %s is not available on this CPU", want);
    }
    text16_plain = want && !strcmp(want, "scalar") ? NULL : best;
    return PyUnicode_FromString(text16_plain ? "ssse3" : "scalar");
}

static PyMethodDef methods[] = {
    {"_stopbit_path", stopbit_path, METH_O, "_stopbit_path(name or None) -> name: the stop-bit path"},
    {"_text_path", text_path, METH_O, "_text_path(name or None) -> name: the short-text check in use"},
    {"decode", decode, METH_VARARGS,
     "decode(program, entries, offset_mask, data_bits, keys, files, lo, hi, stop, outs, status, counts) "
     "-> (code, row, detail)"},
    {"decode_typed", decode_typed, METH_VARARGS,
     "decode_typed(header, tags, programs, entries, offset_mask, data_bits, keys, files, lo, hi, stop, "
     "stop_unknown, outs, statuses, rows, used, counts, info, release=False) -> (code, row, detail, type)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode", "The frames decoder (see _decode.c).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__decode(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    {
        stopbit_run_fn runs[4];
        const char *names[4];
        stopbit_paths(runs, names);
        stopbit_run_impl = runs[0];
    }
    text16_plain = text16_best();
    /* the step kinds, codes and statuses, so that Python takes them from here */
    static const struct {
        const char *name;
        int value;
    } constants[] = {
        {"D_FIXED", D_FIXED}, {"D_BOOL", D_BOOL}, {"D_SKIP", D_SKIP}, {"D_STOPBIT", D_STOPBIT},
        {"D_STRING", D_STRING}, {"D_UTF", D_UTF}, {"D_CHAR", D_CHAR}, {"D_REST", D_REST}, {"D_LIST", D_LIST}, {"C_DONE", C_DONE}, {"C_HEADER", C_HEADER},
        {"C_NEED_MORE", C_NEED_MORE}, {"C_TOO_BIG", C_TOO_BIG}, {"ST_OK", ST_OK}, {"ST_MISMATCH", ST_MISMATCH},
        {"ST_TEXT", ST_TEXT}, {"H_OUTSIDE", H_OUTSIDE}, {"H_ZERO", H_ZERO}, {"H_HUGE", H_HUGE}, {"H_PAST", H_PAST},
        {"N_SLOW", N_SLOW}, {"N_REPLACED", N_REPLACED}, {"N_BAD", N_BAD}, {"N_FIRST_BAD", N_FIRST_BAD},
        {"N_TEXT_STEP", N_TEXT_STEP}, {"N_NULLS", N_NULLS}, {"I_UNKNOWN", I_UNKNOWN},
        {"I_FIRST_UNKNOWN", I_FIRST_UNKNOWN}, {"I_HEAD_BAD", I_HEAD_BAD}, {"I_FIRST_BAD", I_FIRST_BAD},
        {"I_BAD_TYPE", I_BAD_TYPE}, {"I_COUNT", I_COUNT},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
