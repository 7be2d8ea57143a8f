"""Text columns without per-row Python: Java strings and chars as Arrow ``string`` arrays (vanilla-format.md §7).

Strings (``writeUTFΔ`` and ``writeUTF``) are gathered by Arrow itself: a ``binary`` array is laid over the
mapped data file with offsets alternating ``[start0, end0, start1, end1, ...]`` and the even elements are
taken, so the copy of the text bytes happens in C++ in one call. The result is checked to be UTF-8 (a
numpy ASCII test first, Arrow's validator for the rest). Java writes characters outside the BMP as two
3-byte surrogates (CESU-8), which is not UTF-8: only rows holding such bytes (``ED A0..BF``, or the
modified-UTF-8 NUL ``C0 80``) are decoded on a slow path, row by row, and counted. A lone surrogate cannot be
stored in an Arrow string, so it becomes U+FFFD (counted too); the row API returns it as a lone surrogate.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .. import _fields as F
from .scan import empty

__all__ = ["Text", "build_chars", "build_strings"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = 0xFFFD
_INT32_LIMIT = (1 << 31) - 1
_even: Any = None  # cached pa.Int32Array 0, 2, 4, ... (grown on demand)
_TAKE = pc.TakeOptions(boundscheck=False)  # indices are built here, always in range
_max = np.maximum.reduce
_min = np.minimum.reduce


class Text(NamedTuple):
    """A built text column and what it cost."""

    array: Any  # pa.StringArray
    bad: npt.NDArray[np.bool_] | None  # rows whose bytes are not Java text (None: all good)
    slow_rows: int  # rows decoded on the CESU-8 slow path
    replaced: int  # lone surrogates replaced by U+FFFD


def _even_indices(n: int) -> Any:
    global _even
    cache = _even
    if cache is None or len(cache) < n:
        cache = pa.array(np.arange(0, 2 * max(n, 1 << 16), 2, dtype=np.int32))
        _even = cache  # a race only builds the same array twice
    return cache.slice(0, n)


def build_strings(
    u1: npt.NDArray[np.uint8],
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    null: npt.NDArray[np.bool_] | None = None,
) -> Text:
    """Arrow strings from byte ranges ``[start, end)`` of one data file (rows in file order).

    ``null`` marks Java null strings (their range is empty). Bytes are copied out of the file, so the array
    does not keep the mapping alive.
    """
    n = start.size
    if n == 0:
        return Text(pa.array([], pa.string()), None, 0, 0)
    base = int(_min(start))
    top = int(_max(end))
    if top - base <= _INT32_LIMIT:
        offsets = empty(2 * n + 1, np.int32)
        kind = pa.binary()
    else:  # a batch spanning more than 2 GiB of one file: 64-bit offsets, narrowed after the gather
        offsets = empty(2 * n + 1, np.int64)
        kind = pa.large_binary()
    np.subtract(start, base, out=offsets[0 : 2 * n : 2], casting="unsafe")
    np.subtract(end, base, out=offsets[1 : 2 * n : 2], casting="unsafe")
    offsets[2 * n] = offsets[2 * n - 1]
    # Only the even elements [start_k, end_k) are taken; the odd ones (the bytes between two strings) are
    # never read, so their lengths do not matter.
    source = pa.Array.from_buffers(kind, 2 * n, [None, pa.py_buffer(offsets), pa.py_buffer(u1[base:top])])
    got = pc.call_function("take", [source, _even_indices(n)], _TAKE)
    if kind == pa.large_binary():
        got = got.cast(pa.binary())
    validity, null_count = _validity(null)
    bufs = got.buffers()
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    total = int(np.frombuffer(bufs[1], np.int32, count=n + 1, offset=4 * got.offset)[n])
    if total == 0 or int(_max(data[:total])) < 0x80:  # all ASCII: valid UTF-8 without asking Arrow
        return Text(pa.Array.from_buffers(pa.string(), n, [validity, bufs[1], bufs[2]], null_count), None, 0, 0)
    arr = pa.Array.from_buffers(pa.string(), n, [validity, bufs[1], bufs[2]], null_count)
    try:
        arr.validate(full=True)
        return Text(arr, None, 0, 0)
    except pa.ArrowInvalid:
        return _repair(got, data[:total], validity, null_count)


def _validity(null: npt.NDArray[np.bool_] | None) -> tuple[Any, int]:
    if null is None:
        return None, 0
    count = int(np.count_nonzero(null))
    if not count:
        return None, 0
    return pa.py_buffer(np.packbits(~null, bitorder="little")), count


def _repair(got: Any, data: npt.NDArray[np.uint8], validity: Any, null_count: int) -> Text:
    """Slow path for a batch that is not valid UTF-8: decode only the rows with CESU-8 bytes in Python."""
    n = len(got)
    offsets = np.frombuffer(got.buffers()[1], np.int32, count=n + 1, offset=4 * got.offset)
    head, nxt = data[:-1], data[1:]
    surrogate = (head == 0xED) & ((nxt & 0xE0) == 0xA0)  # ED A0..BF: a UTF-16 surrogate in 3 bytes
    modified_nul = (head == 0xC0) & (nxt == 0x80)
    hits = np.flatnonzero(surrogate | modified_nul)
    rows = np.unique(np.searchsorted(offsets, hits, side="right") - 1)
    bad = np.zeros(n, np.bool_)
    replaced = 0
    values: list[bytes] = []
    for row in rows.tolist():  # only the flagged rows: this is the counted slow path
        raw = data[offsets[row] : offsets[row + 1]].tobytes()
        try:
            text = F.decode_text_slow(raw)
        except ValueError:
            bad[row] = True
            values.append(b"")
            continue
        text, count = _LONE_SURROGATE.subn("\ufffd", text)
        replaced += count
        values.append(text.encode("utf-8"))
    fixed = got
    if rows.size:
        mask = np.zeros(n, np.bool_)
        mask[rows] = True
        fixed = pc.replace_with_mask(got, pa.array(mask), pa.array(values, pa.binary()))
    invalid = _invalid_rows(fixed, 0, n)
    if invalid:
        bad[invalid] = True
        mask = np.zeros(n, np.bool_)
        mask[invalid] = True
        fixed = pc.replace_with_mask(fixed, pa.array(mask), pa.array([b""] * len(invalid), pa.binary()))
    bufs = fixed.buffers()
    arr = pa.Array.from_buffers(pa.string(), n, [validity, bufs[1], bufs[2]], null_count, offset=fixed.offset)
    arr.validate(full=True)
    return Text(arr, bad if bad.any() else None, int(rows.size), replaced)


def _invalid_rows(binary: Any, lo: int, hi: int) -> list[int]:
    """Rows in [lo, hi) that are not UTF-8, by bisection: O(k log n) Arrow calls for k bad rows.

    Only reached for bytes that are neither UTF-8 nor Java's CESU-8, i.e. a field that is not text.
    """
    try:
        binary.slice(lo, hi - lo).cast(pa.string())
        return []
    except pa.ArrowInvalid:
        pass
    if hi - lo == 1:
        return [lo]
    mid = (lo + hi) // 2
    return _invalid_rows(binary, lo, mid) + _invalid_rows(binary, mid, hi)


def build_chars(units: npt.NDArray[np.uint16]) -> tuple[Any, int]:
    """Java chars (UTF-16 code units) -> one-character Arrow strings, and the count of lone surrogates.

    Each unit is encoded to 1-3 UTF-8 bytes with array arithmetic; a surrogate unit cannot stand alone in
    UTF-8 and becomes U+FFFD.
    """
    n = units.size
    if n == 0 or int(units.max()) < 0x80:
        data = units.astype(np.uint8)
        offsets = np.arange(n + 1, dtype=np.int32)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]), 0
    surrogate = (units & 0xF800) == 0xD800
    replaced = int(np.count_nonzero(surrogate))
    u = units.astype(np.int32)
    if replaced:
        u[surrogate] = _REPLACEMENT
    width = 1 + (u >= 0x80).astype(np.int32) + (u >= 0x800)
    out = np.empty((n, 3), np.uint8)
    out[:, 0] = np.where(width == 1, u, np.where(width == 2, 0xC0 | (u >> 6), 0xE0 | (u >> 12)))
    out[:, 1] = np.where(width == 2, 0x80 | (u & 0x3F), 0x80 | ((u >> 6) & 0x3F))
    out[:, 2] = 0x80 | (u & 0x3F)
    data = out[np.arange(3) < width[:, None]]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(width, out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]), replaced
