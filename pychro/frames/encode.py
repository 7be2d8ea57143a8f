"""Vectorised encoders: columns -> the bytes Java-Lang writes (vanilla-format.md §7), for the backfill writer.

Each encoder takes one column and returns per-row byte lengths plus what :func:`scatter` needs to place the
bytes at per-row positions in a data file. Nothing loops over rows in Python; the only slow path is the
re-encoding of text holding non-BMP characters (UTF-8 4-byte sequences -> CESU-8 surrogate pairs), which touches
only the rows that have them and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _fields as F

__all__ = [
    "Encoded", "encode_fixed", "encode_stop_bits", "encode_strings", "head_words", "materialize", "scatter", "take",
]


@dataclass
class Encoded:
    """One column ready to write: ``fixed`` (n, size) bytes, or variable ``data`` + per-row ``offsets``."""

    lengths: npt.NDArray[np.int64]  # bytes per row (read-only; a broadcast scalar for fixed-width columns)
    fixed: npt.NDArray[np.uint8] | None = None  # (n, size) when every row has the same size
    data: npt.NDArray[np.uint8] | None = None  # variable: all rows' bytes back to back
    offsets: npt.NDArray[np.int64] | None = None  # variable: start of each row in data (n + 1 entries)
    slow_rows: int = 0  # rows re-encoded on the CESU-8 slow path
    text_lengths: npt.NDArray[np.int64] | None = None  # strings: encoded text bytes per row (0 for null)
    parts: list[Encoded] | None = None  # composite: these, one after the other in each row (prefix + text)


def encode_fixed(values: npt.NDArray[Any], dtype: str) -> Encoded:
    """Fixed-width little-endian values (already range-checked and cast by the caller)."""
    arr = np.ascontiguousarray(values, dtype=np.dtype(dtype))
    n = len(arr)
    size = arr.dtype.itemsize
    return Encoded(_same(n, size), fixed=arr.view(np.uint8).reshape(n, size))


def _same(n: int, size: int) -> npt.NDArray[np.int64]:
    """``size`` for each of ``n`` rows without allocating them (a read-only broadcast view)."""
    return np.broadcast_to(np.int64(size), (n,))


def stop_bit_lengths(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Bytes of Java's stop-bit form per value: 7-bit groups of ``v`` (or of ``~v`` plus a 0x00 for v < 0)."""
    v = values.astype(np.int64, copy=False)
    neg = v < 0
    u = np.where(neg, ~v, v).view(np.uint64)
    groups = np.ones(len(v), dtype=np.int64)
    for k in range(1, 10):
        groups += u >= np.uint64(1) << np.uint64(7 * k)
    return groups + neg


def encode_stop_bits(values: npt.NDArray[np.int64]) -> Encoded:
    """Java ``writeStopBit`` for every value (incl. negatives: ``-1`` -> ``80 00``)."""
    v = np.ascontiguousarray(values, dtype=np.int64)
    n = len(v)
    if n and 0 <= int(v.min()) and int(v.max()) <= F.STOP_BIT_PAYLOAD:
        # the usual case for string lengths: every value is its own single byte
        return Encoded(_same(n, 1), fixed=v.astype(np.uint8).reshape(n, 1))
    neg = v < 0
    u = np.where(neg, ~v, v).view(np.uint64)
    lengths = stop_bit_lengths(v)
    groups = lengths - neg  # 7-bit groups before the optional 0x00 terminator
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.zeros(int(offsets[-1]), dtype=np.uint8)
    for k in range(10):  # at most 10 groups: a loop over byte positions, not rows
        rows = np.flatnonzero(groups > k)
        if not len(rows):
            break
        byte = ((u[rows] >> np.uint64(7 * k)) & np.uint64(F.STOP_BIT_PAYLOAD)).astype(np.uint8)
        # continuation flag on every group but the last of a non-negative value; negatives flag them all
        more = (groups[rows] > k + 1) | neg[rows]
        data[offsets[rows] + k] = byte | (more.astype(np.uint8) << 7)
    # the 0x00 terminator of negatives is already zero in `data`
    if n and int(lengths.min()) == int(lengths.max()):
        # every value has the same size (e.g. lengths of short strings: one byte): a fixed-width column,
        # written with one scatter instead of run copies
        return Encoded(_same(n, int(lengths[0])), fixed=data.reshape(n, int(lengths[0])))
    return Encoded(lengths, data=data, offsets=offsets)


def encode_strings(
    data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_] | None
) -> Encoded:
    """Java ``writeUTFΔ`` for UTF-8 strings given as Arrow-style ``data``/``offsets``; invalid rows -> null
    (``valid=None``: no nulls).

    Valid UTF-8 equals Java's encoding except for non-BMP characters (4-byte sequences), which Java writes as
    two 3-byte surrogates; only rows holding a 0xF0..0xF4 lead byte are re-encoded, one by one.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    text_len = np.diff(offsets)
    slow = 0
    if len(data) and bool((data >= 0xF0).any()):
        # rows containing a 4-byte lead: find them with one cumulative count, re-encode only those
        lead = np.concatenate(([0], np.cumsum(data >= 0xF0, dtype=np.int64)))
        has = lead[offsets[1:]] - lead[offsets[:-1]] > 0
        rows = np.flatnonzero(has if valid is None else has & valid)
        slow = len(rows)
        fixed_parts = {int(r): F.encode_text(bytes(data[offsets[r] : offsets[r + 1]]).decode("utf-8")) for r in rows}
        for r, raw in fixed_parts.items():
            text_len[r] = len(raw)
        data, offsets = _splice(data, offsets, fixed_parts, text_len)
    if valid is None:
        prefix = encode_stop_bits(text_len)
        tl = text_len
    else:
        prefix = encode_stop_bits(np.where(valid, text_len, -1))
        tl = np.where(valid, text_len, 0)
    # the text stays where Arrow (or the slow path) put it: written straight from there into the data file
    text = Encoded(tl, data=data, offsets=offsets)
    lengths = tl + prefix.lengths[0] if prefix.fixed is not None else tl + prefix.lengths
    return Encoded(lengths, parts=[prefix, text], slow_rows=slow, text_lengths=tl)


def materialize(enc: Encoded) -> Encoded:
    """Any column as one flat ``data``/``offsets`` buffer (for inspection; writing needs no copy)."""
    if enc.parts is None and enc.fixed is None:
        return enc
    n = len(enc.lengths)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(enc.lengths, out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=np.uint8)
    scatter(out, offsets[:-1], enc)
    return Encoded(enc.lengths, data=out, offsets=offsets, slow_rows=enc.slow_rows, text_lengths=enc.text_lengths)


def _splice(
    data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], parts: dict[int, bytes], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Rebuild data/offsets with some rows replaced (rows not in ``parts`` are copied in bulk)."""
    new_off = np.zeros(len(offsets), dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    out = np.zeros(int(new_off[-1]), dtype=np.uint8)
    keep = np.ones(len(lengths), dtype=bool)
    keep[list(parts)] = False
    rows = np.flatnonzero(keep)
    _copy_runs(out, new_off[rows], data, offsets[rows], lengths[rows])
    for r, raw in parts.items():
        out[new_off[r] : new_off[r] + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out, new_off


SHORT_RUN = 64  # runs up to this many bytes are copied 8 bytes at a time, longer ones byte by byte
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # low k bytes of a word


def _copy_runs(
    dst: npt.NDArray[np.uint8],
    dst_starts: npt.NDArray[np.int64],
    src: npt.NDArray[np.uint8],
    src_starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
) -> None:
    """dst[dst_starts[i] : +lengths[i]] = src[src_starts[i] : +lengths[i]] for all i.

    ``dst_starts`` must be ascending with non-overlapping runs (rows in file order). Short runs (the usual
    symbols, venues, ids) move as masked 8-byte words, one pass per 8 bytes of the longest run; the rest
    go byte by byte.
    """
    n = len(lengths)
    if not n or not int(lengths.max(initial=0)):
        return
    long_rows = lengths > SHORT_RUN
    near_end = dst_starts + ((lengths + 7) & ~7) > len(dst)  # an 8-byte word would run off the buffer
    slow = (long_rows | near_end) & (lengths > 0)
    if slow.any():
        r = np.flatnonzero(slow)
        _copy_bytes(dst, dst_starts[r], src, src_starts[r], lengths[r])
    fast = np.flatnonzero(~slow & (lengths > 0))
    if len(fast):
        _copy_words(dst, dst_starts[fast], src, src_starts[fast], lengths[fast])


def _copy_bytes(
    dst: npt.NDArray[np.uint8], dst_starts: npt.NDArray[np.int64], src: npt.NDArray[np.uint8],
    src_starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64],
) -> None:
    total = int(lengths.sum())
    if not total:
        return
    run_starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=run_starts[1:])
    within = np.arange(total, dtype=np.int64) - np.repeat(run_starts, lengths)
    dst[np.repeat(dst_starts, lengths) + within] = src[np.repeat(src_starts, lengths) + within]


def _copy_words(
    dst: npt.NDArray[np.uint8], dst_starts: npt.NDArray[np.int64], src: npt.NDArray[np.uint8],
    src_starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64],
) -> None:
    """Masked 8-byte read-modify-write through overlapping window views.

    Each pass gathers the destination words first, then scatters them in ascending order: bytes a word
    carries past its own run are either rewritten by the next run's word (written later) or are written
    back unchanged, so no run is clobbered.
    """
    padded = np.zeros(len(src) + 8, dtype=np.uint8)  # the source is read 8 bytes at a time past its end
    padded[: len(src)] = src
    sw = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    dw = np.ndarray((len(dst) - 7,), dtype="<u8", buffer=dst, strides=(1,))
    rows = np.arange(len(lengths))  # all non-empty (an empty run may sit at the very end of the buffer)
    for k in range(0, int(lengths.max(initial=0)), 8):
        if k:
            rows = rows[lengths[rows] > k]
        mask = _MASKS[np.minimum(lengths[rows] - k, 8)]
        d = dst_starts[rows] + k
        old = dw[d]
        dw[d] = (old & ~mask) | (sw[src_starts[rows] + k] & mask)


def scatter(buf: npt.NDArray[np.uint8], positions: npt.NDArray[np.int64], enc: Encoded) -> None:
    """Write an encoded column at per-row byte ``positions`` of ``buf`` (a data file's bytes)."""
    if enc.parts is not None:
        for part in enc.parts:
            scatter(buf, positions, part)
            positions = positions + part.lengths
        return
    if enc.fixed is not None:
        n, size = enc.fixed.shape
        if not n:
            return
        if size in (1, 2, 4, 8):
            # overlapping window view: element i is the `size` bytes starting at byte i, so one 1-D scatter
            # writes a value at any unaligned position
            window = np.ndarray((len(buf) - size + 1,), dtype=f"<u{size}", buffer=buf, strides=(1,))
            window[positions] = enc.fixed.view(f"<u{size}").reshape(n)
        else:
            buf[positions[:, None] + np.arange(size)] = enc.fixed
        return
    assert enc.data is not None and enc.offsets is not None
    _copy_runs(buf, positions, enc.data, enc.offsets[:-1], enc.lengths)


def take(enc: Encoded, rows: npt.NDArray[np.int64]) -> Encoded:
    """The encoded values of some ascending ``rows`` (slices, no copies, when they are consecutive)."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    contiguous = hi - lo == len(rows)  # the usual case (one cycle)
    lengths = enc.lengths[lo:hi] if contiguous else enc.lengths[rows]
    if enc.parts is not None:
        return Encoded(lengths, parts=[take(p, rows) for p in enc.parts])
    if enc.fixed is not None:
        return Encoded(lengths, fixed=enc.fixed[lo:hi] if contiguous else enc.fixed[rows])
    assert enc.data is not None and enc.offsets is not None
    if contiguous:
        base = enc.offsets[lo]
        return Encoded(lengths, data=enc.data[base : enc.offsets[hi]], offsets=enc.offsets[lo : hi + 1] - base)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.zeros(int(offsets[-1]), dtype=np.uint8)
    _copy_runs(data, offsets[:-1], enc.data, enc.offsets[rows], lengths)
    return Encoded(lengths, data=data, offsets=offsets)


@dataclass
class Tail:
    """Bytes of a variable-length column beyond its first 8 in some rows: ``src[src_starts[i] : +lengths[i]]``
    belongs 8 bytes after the column's start in row ``rows[i]``."""

    rows: npt.NDArray[np.int64]
    src: npt.NDArray[np.uint8]
    src_starts: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]


def head_words(enc: Encoded, out: npt.NDArray[np.uint64] | None = None) -> tuple[npt.NDArray[np.uint64], Tail | None]:
    """A variable-length column as one little-endian 8-byte word per row, plus what does not fit in it.

    Each word starts with the row's bytes (stop-bit or uint16 length prefix, then text; or a stop-bit
    number); bytes after them are arbitrary (whatever follows in the source). The bulk writer stores these
    words in file order, so those extra bytes are overwritten by the next field (see ``place.py``).
    ``out`` receives the words when given (it may be a strided column of a larger array).
    """
    if enc.parts is None:
        assert enc.data is not None and enc.offsets is not None
        words = _words_at(enc.data, enc.offsets[:-1])
        if out is not None:
            out[:] = words
        return words if out is None else out, _tail(enc.lengths, enc.data, enc.offsets[:-1], 0)
    prefix, text = enc.parts
    assert text.data is not None and text.offsets is not None
    if prefix.fixed is not None:
        plen: Any = prefix.fixed.shape[1]
        pw = prefix.fixed.reshape(-1) if plen == 1 else _fixed_words(prefix.fixed)
    else:
        assert prefix.data is not None and prefix.offsets is not None
        plen = prefix.lengths
        pw = _words_at(prefix.data, prefix.offsets[:-1]) & _MASKS[plen]
    words = _words_at(text.data, text.offsets[:-1])
    # a prefix is at most 3 bytes: no shift reaches 64
    np.left_shift(words, np.asarray(plen, dtype=np.uint64) * np.uint64(8), out=words)
    words = np.bitwise_or(words, pw, out=words if out is None else out)
    return words, _tail(enc.lengths, text.data, text.offsets[:-1], plen)


def _tail(
    lengths: npt.NDArray[np.int64], src: npt.NDArray[np.uint8], src_starts: npt.NDArray[np.int64], plen: Any
) -> Tail | None:
    """Rows longer than a word: their bytes from offset 8 on (``plen`` bytes of the word held a prefix)."""
    if not len(lengths) or int(lengths.max()) <= 8:
        return None
    rows = np.flatnonzero(lengths > 8)
    skip = 8 - (plen[rows] if isinstance(plen, np.ndarray) else plen)  # source bytes already in the word
    return Tail(rows, src, src_starts[rows] + skip, lengths[rows] - 8)


def _words_at(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The 8 bytes at each of ascending ``starts`` in ``data``, as little-endian words; bytes past the end are 0."""
    if len(data) < 8:
        padded = np.zeros(8 + len(data), dtype=np.uint8)
        padded[: len(data)] = data
        return np.ndarray((len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))[starts]
    window = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, offset=0, strides=(1,))
    late = int(np.searchsorted(starts, len(data) - 8, side="right"))  # words that would run past the end
    words = np.empty(len(starts), dtype=np.uint64)
    words[:late] = window[starts[:late]]
    if late < len(starts):
        over = starts[late:] - (len(data) - 8)
        words[late:] = window[len(data) - 8] >> (over.astype(np.uint64) * np.uint64(8))
    return words


def _fixed_words(fixed: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """(n, w <= 8) bytes per row as little-endian words."""
    n, w = fixed.shape
    if w in (1, 2, 4, 8):
        return np.ascontiguousarray(fixed).view(f"<u{w}").reshape(n).astype(np.uint64)
    words = np.zeros(n, dtype=np.uint64)
    for j in range(w):
        words |= fixed[:, j].astype(np.uint64) << np.uint64(8 * j)
    return words
