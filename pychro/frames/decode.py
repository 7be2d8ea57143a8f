"""Decode a batch of index entries into Arrow columns with numpy, no per-row Python (vanilla-format.md §4, §7).

A :class:`Plan` compiles a :class:`~pychro.frames.schema.Schema` into *segments*: the fields before the first
variable-size field sit at constant offsets from the body start; each variable field (stop-bit, string, utf)
starts a new segment whose fields sit at constant offsets from the cursor after it.

The rows of one data file (see :func:`~pychro.frames.scan.split_groups` and :mod:`pychro.frames.batch`)
are decoded in two phases:

1. **walk** - read and check every header (``~length``; 0 = not committed; below 2**30; body inside the
   file: else :class:`~pychro.errors.CorruptDataError`), then follow the variable fields with per-row cursor
   arrays (stop-bit lengths decoded over a shrinking set of rows) to the decoded end of every row. A row whose
   decoded end differs from its header's length does not match the schema.
2. **gather** - only for the rows kept (all, or the good ones under ``errors="skip"``/``"truncate"``): each
   fixed field before the first variable field comes from numpy's fast contiguous ``take`` on an aligned
   view of the file at the field's offset (headers are 4-byte aligned, so ``h >> 2`` indexes 32-bit words),
   or, when rows are equally spaced (fixed-size records of one writer), from a strided slice; fields after
   a variable field from overlapping window views (any alignment); strings through
   :mod:`pychro.frames.text`. Numbers are written straight into Arrow-pool buffers the columns then wrap.

Reads in phase 1 use ``mode="clip"`` so that a row that does not match the schema can never index outside
the mapping; phase 2 touches only rows whose every byte was proven to lie inside their own body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

from .. import _fields as F
from .. import _layout as L
from . import schema as S
from .scan import DataMap, empty
from .text import build_strings

__all__ = ["Plan", "Strided", "Walk", "stop_bit"]

I64 = np.int64
_HDR = L.HEADER_SIZE
_MAX_LEN = L.MAX_BODY_LENGTH
_max = np.maximum.reduce  # the ufunc reduce: a method call less per batch than ndarray.max


# -- plan --------------------------------------------------------------------------------------------------
class Step(NamedTuple):
    """One field: its segment, its offset from the segment's base, and whether it is a column."""

    name: str
    type: S.FieldType
    seg: int
    off: int
    column: bool


class Segment(NamedTuple):
    fixed: list[Step]  # fixed-size fields (skips included) at constant offsets from the base
    size: int  # bytes of those fields: the variable field (if any) starts at base + size
    var: Step | None  # the variable-size field ending the segment, None for the last segment


class Plan:
    """A schema compiled for decoding, with the projected columns (in output order)."""

    def __init__(self, schema: S.Schema, columns: Sequence[str] | None = None) -> None:
        names = schema.names
        if columns is None:
            wanted = list(names)
        else:
            if isinstance(columns, str):
                raise TypeError("columns= takes a list of names, not a str")
            wanted = list(columns)
            unknown = [c for c in wanted if c not in names]
            if unknown:
                raise ValueError(f"unknown columns {unknown}; the schema has {names}")
            if len(set(wanted)) != len(wanted):
                raise ValueError(f"duplicate names in columns={wanted}")
        self.schema = schema
        self.columns = wanted
        chosen = set(wanted)
        segments: list[Segment] = []
        fixed: list[Step] = []
        off = 0
        for f in schema.fields:
            column = f.is_column and f.name in chosen
            if f.type.size:  # fixed or skip
                fixed.append(Step(f.name, f.type, len(segments), off, column))
                off += f.type.size
            else:
                segments.append(Segment(fixed, off, Step(f.name, f.type, len(segments), off, column)))
                fixed, off = [], 0
        segments.append(Segment(fixed, off, None))
        self.segments = segments
        self.fixed_size = schema.fixed_size
        self.steps = {s.name: s for seg in segments for s in [*seg.fixed, *([seg.var] if seg.var else [])]}
        # How each projected field of segment 0 is gathered when headers are 4-byte aligned (always, for
        # Java-written journals): from a contiguous, aligned view of the file at the field's offset from the
        # header, with element width ``unit`` = the largest of 4, 2, 1 that divides that offset and the
        # field's size; a field wider than its unit is ``size // unit`` consecutive units taken at once.
        self.recipes0: list[tuple[str, int, int, int]] = []  # (name, byte offset from header, unit, units)
        for st in segments[0].fixed:
            if st.column:
                at = _HDR + st.off
                unit = min(st.type.size, 4 if at % 4 == 0 else 2 if at % 2 == 0 else 1)
                self.recipes0.append((st.name, at, unit, st.type.size // unit))
        self.arrow_types = {f.name: S.arrow_type(f.type) for f in schema.fields if f.is_column}


# -- stop-bit --------------------------------------------------------------------------------------------
def stop_bit(
    u1: npt.NDArray[np.uint8], cursor: npt.NDArray[np.int64], first: npt.NDArray[np.uint8] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_] | None]:
    """Decode Java stop-bit values at ``cursor`` -> (values, bytes used, too-long mask or None).

    Only the rows still carrying a continuation bit are looked at in each round (at most 10 rounds); the
    negative form (groups of ``~n`` ending in a 0x00 byte, e.g. ``80 00`` = -1) is handled as Java does.

    Examples
    --------
    >>> buf = np.frombuffer(bytes.fromhex("7f 8001 8000 ffffffffffffffffff00"), np.uint8)
    >>> values, used, _ = stop_bit(buf, np.array([0, 1, 3, 5]))
    >>> values.tolist(), used.tolist()
    ([127, 128, -1, -9223372036854775808], [1, 2, 2, 10])
    """
    b = u1.take(cursor, mode="clip") if first is None else first
    values = b.astype(I64)
    used = np.ones(cursor.size, I64)
    rows = np.flatnonzero(b >= F.STOP_BIT)
    if not rows.size:
        return values, used, None
    acc = (b[rows] & F.STOP_BIT_PAYLOAD).astype(np.uint64)
    at = cursor[rows]
    for k in range(1, F.MAX_STOP_BIT_BYTES):
        bk = u1.take(at + k, mode="clip")
        shift = np.uint64(7 * k)
        last = bk < F.STOP_BIT
        done = np.flatnonzero(last)
        if done.size:
            bd = bk[done].astype(np.uint64)
            ad = acc[done]
            # a 0x00 byte after continued groups ends a negative value: ~accumulated
            v = np.where(bd == 0, ~ad, ad | (bd << shift))
            values[rows[done]] = v.view(I64)
            used[rows[done]] = k + 1
            more = np.flatnonzero(~last)
            rows, acc, at, bk = rows[more], acc[more], at[more], bk[more]
            if not rows.size:
                return values, used, None
        acc |= (bk & F.STOP_BIT_PAYLOAD).astype(np.uint64) << shift
    too_long = np.zeros(cursor.size, np.bool_)
    too_long[rows] = True
    return values, used, too_long


# -- one data file's rows -----------------------------------------------------------------------------------
class Strided(NamedTuple):
    """Header positions ``first + step * i``: rows of one fixed size written back to back."""

    first: int
    step: int
    n: int

    def array(self) -> npt.NDArray[np.int64]:
        return np.arange(self.first, self.first + self.step * self.n, self.step, dtype=I64)[: self.n]

    def slice(self, view: np.ndarray) -> np.ndarray:
        return view[self.first : self.first + self.step * (self.n - 1) + 1 : self.step]


class _Corrupt(Exception):
    """A header check failed: group-local row mask and a reason per failing row."""

    def __init__(self, mask: npt.NDArray[np.bool_], reasons: list[tuple[int, str]]) -> None:
        self.mask = mask
        self.reasons = reasons


class Walk:
    """Phase 1 of one data file's rows: positions, lengths, variable-field cursors and the bad rows."""

    __slots__ = ("dm", "h", "q", "n", "rend", "var", "bad", "why")

    def __init__(self, plan: Plan, dm: DataMap, h: npt.NDArray[np.int64] | Strided) -> None:
        self.dm = dm
        self.h = h
        self.n = h.n if isinstance(h, Strided) else h.size
        self.q: npt.NDArray[np.int64] | None = None
        self.rend: npt.NDArray[np.int64] | None = None
        self.var: dict[str, tuple[Any, ...]] = {}  # name -> (start|None, end, values|None, null|None)
        self.bad: npt.NDArray[np.bool_] | None = None
        self.why: dict[str, npt.NDArray[np.bool_]] = {}  # column -> rows whose field itself is invalid
        self._headers(plan)
        if plan.fixed_size is None:
            self._variable(plan)

    # phase 1a: headers and bounds ------------------------------------------------------------------------
    def _headers(self, plan: Plan) -> None:
        dm, h, n = self.dm, self.h, self.n
        if isinstance(h, Strided):
            lo, hi = h.first, h.first + h.step * (n - 1)
            hdr = h.slice(dm.window("<i4", 0)) if lo >= 0 and hi + _HDR <= dm.size else None
        else:
            lo, hi = int(h[0]), int(h[-1])  # ascending within a data file
            hdr = None
            if lo >= 0 and hi + _HDR <= dm.size:
                if not (int(np.bitwise_or.reduce(h)) & 3):
                    self.q = q = np.right_shift(h, 2, out=empty(n, I64))
                    # every q is in range (lo and hi were checked), so "wrap" never wraps; it only avoids
                    # the buffering numpy does for out= in the default mode
                    hdr = np.take(dm.u4, q, out=empty(n, np.uint32), mode="wrap").view(np.int32)
                else:  # unaligned headers: not written by Java, but readable
                    hdr = dm.window("<i4", 0)[h]
        if hdr is None:
            self._corrupt(plan, None)
        if plan.fixed_size is not None:
            same = np.equal(hdr, ~plan.fixed_size)
            if hi + _HDR + plan.fixed_size <= dm.size and bool(same.all()):
                return
            ln = ~hdr.astype(I64)
            self._check_lengths(plan, hdr, ln)
            self.bad = _none_if_clear(~same)
            return
        ln = np.invert(hdr, out=empty(n, np.int32))
        if int(_max(ln.view(np.uint32))) >= _MAX_LEN:  # also catches hdr == 0 (ln == -1)
            self._corrupt(plan, hdr)
        harr = h.array() if isinstance(h, Strided) else h
        rend = np.add(harr, _HDR, out=empty(n, I64))
        rend += ln
        if int(_max(rend)) > dm.size:
            self._corrupt(plan, hdr)
        self.rend = rend

    def _check_lengths(self, plan: Plan, hdr: np.ndarray, ln: np.ndarray) -> None:
        harr = self.h.array() if isinstance(self.h, Strided) else self.h
        if (hdr == 0).any() or (ln >= _MAX_LEN).any() or (ln < 0).any() or int((harr + _HDR + ln).max()) > self.dm.size:
            self._corrupt(plan, hdr)

    def _corrupt(self, plan: Plan, hdr: np.ndarray | None) -> NoReturn:
        """Build the per-row failure mask (error path only) and raise :class:`_Corrupt`."""
        dm = self.dm
        h = self.h.array() if isinstance(self.h, Strided) else self.h
        outside = (h < 0) | (h + _HDR > dm.size)
        if hdr is None:
            safe = np.where(outside, 0, h)
            hdr = dm.window("<i4", 0)[safe]
        hdr = np.where(outside, 1, hdr).astype(I64)  # placeholder for rows already failing
        ln = ~hdr
        zero = ~outside & (hdr == 0)
        huge = ~outside & ~zero & ((ln < 0) | (ln >= _MAX_LEN))
        past = ~outside & ~zero & ~huge & (h + _HDR + ln > dm.size)
        mask = outside | zero | huge | past
        reasons: list[tuple[int, str]] = []
        # every failing row gets its reason: the caller names the first one in index order, which is not
        # necessarily the first in file order (error path only)
        for row in np.flatnonzero(mask).tolist():
            if outside[row]:
                reasons.append((row, f"index entry points outside the data file ({dm.size} bytes)"))
            elif zero[row]:
                reasons.append((row, "index entry points at an uncommitted (zero) header"))
            elif huge[row]:
                reasons.append((row, f"bad header {int(hdr[row]) & 0xFFFFFFFF:#010x}: ~length must be below 2**30"))
            else:
                reasons.append(
                    (row, f"message of {int(ln[row])} bytes runs past the end of the data file ({dm.size} bytes)")
                )
        raise _Corrupt(mask, reasons)

    # phase 1b: variable-size fields -------------------------------------------------------------------------
    def _variable(self, plan: Plan) -> None:
        u1 = self.dm.u1
        h = self.h.array() if isinstance(self.h, Strided) else self.h
        n = self.n
        rend = self.rend
        assert rend is not None
        invalid: npt.NDArray[np.bool_] | None = None
        base: npt.NDArray[np.int64] | None = None
        for s, seg in enumerate(plan.segments):
            var = seg.var
            if var is None:
                break
            if s == 0:
                c = np.add(h, _HDR + seg.size, out=empty(n, I64))
            else:
                assert base is not None  # set by the previous segment's variable field
                c = np.add(base, seg.size, out=empty(n, I64)) if seg.size else base
            kind = var.type.kind
            if kind == S.STRING:
                first = np.take(u1, c, out=empty(n, np.uint8), mode="clip")
                if int(_max(first)) < F.STOP_BIT:  # every length fits one byte: no nulls, no stop-bit loop
                    start = np.add(c, 1, out=empty(n, I64))
                    end = np.add(start, first, out=empty(n, I64))
                    self.var[var.name] = (start, end, None, None)
                else:
                    values, used, too_long = stop_bit(u1, c, first)
                    null = values == -1
                    wrong = values < -1
                    if too_long is not None:
                        wrong |= too_long
                    start = c + used
                    # clip so that a garbage length cannot overflow the cursor; the row then ends past
                    # its body and fails the length check
                    end = start + np.clip(values, 0, _MAX_LEN)
                    self.var[var.name] = (start, end, None, null if null.any() else None)
                    if wrong.any():
                        invalid = wrong if invalid is None else invalid | wrong
                        self.why[var.name] = wrong
            elif kind == S.STOPBIT:
                values, used, too_long = stop_bit(u1, c)
                end = c + used
                self.var[var.name] = (None, end, values, None)
                if too_long is not None:
                    invalid = too_long if invalid is None else invalid | too_long
                    self.why[var.name] = too_long
            else:  # UTF: uint16 little-endian byte length
                length = u1.take(c, mode="clip").astype(I64)
                length |= u1.take(c + 1, mode="clip").astype(I64) << 8
                start = c + 2
                end = start + length
                self.var[var.name] = (start, end, None, None)
            base = end
        assert base is not None
        last = plan.segments[-1].size
        final = np.add(base, last, out=empty(n, I64)) if last else base
        mismatch = np.not_equal(final, rend, out=empty(n, np.bool_))
        if invalid is not None:
            mismatch |= invalid
        self.bad = _none_if_clear(mismatch)

    # phase 2 --------------------------------------------------------------------------------------------
    def gather(self, plan: Plan, keep: npt.NDArray[np.int64] | None) -> tuple[dict[str, Any], list[Any]]:
        """Columns (raw numpy or Arrow text results) for the kept rows (group-local indices; None = all)."""
        dm = self.dm
        h: npt.NDArray[np.int64] | Strided = self.h
        q = self.q
        var = self.var
        if keep is not None:
            h = h.array()[keep] if isinstance(h, Strided) else h[keep]
            q = None if q is None else q[keep]
            var = {k: tuple(None if a is None else a[keep] for a in v) for k, v in var.items()}
        out: dict[str, Any] = {}
        texts: list[Any] = []
        seg0 = [st for st in plan.segments[0].fixed if st.column]
        if seg0:
            n = h.n if isinstance(h, Strided) else h.size
            if isinstance(h, Strided):
                for st in seg0:
                    col = _target(st, n)
                    np.copyto(col, h.slice(dm.window(st.type.dtype, _HDR + st.off)))  # type: ignore[arg-type]
                    out[st.name] = col
            elif q is not None:
                index = {4: q, 2: None, 1: h}
                multi: dict[tuple[int, int], np.ndarray] = {}
                for name, at, unit, units in plan.recipes0:
                    dtype = plan.steps[name].type.dtype
                    if units > 4:  # e.g. a long at an odd offset: one unaligned gather beats 8 byte gathers
                        out[name] = dm.window(dtype, at)[h]  # type: ignore[arg-type]
                        continue
                    idx = index[unit]
                    if idx is None:
                        idx = index[unit] = np.right_shift(h, 1, out=empty(n, I64))
                    view = dm.aligned(unit, at)
                    col = _target(plan.steps[name], n)
                    # mode="wrap" only because numpy buffers ``out=`` takes in the default mode; every index
                    # is in range here (phase 1 proved each field lies inside its body)
                    if units == 1:
                        np.take(view, idx, out=col.view(view.dtype), mode="wrap")
                    else:
                        rows = multi.get((unit, units))
                        if rows is None:  # (n, units) indices of consecutive units, built column by column
                            rows = empty(n * units, I64).reshape(n, units)
                            for j in range(units):
                                np.add(idx, j, out=rows[:, j])
                            multi[(unit, units)] = rows
                        np.take(view, rows, out=col.view(view.dtype).reshape(n, units), mode="wrap")
                    out[name] = col
            else:
                for st in seg0:
                    out[st.name] = dm.window(st.type.dtype, _HDR + st.off)[h]  # type: ignore[arg-type]
        base = None
        for s, seg in enumerate(plan.segments):
            if s and base is not None:
                for st in seg.fixed:
                    if st.column:
                        out[st.name] = dm.window(st.type.dtype, st.off)[base]  # type: ignore[arg-type]
            v = seg.var
            if v is None:
                break
            start, end, values, null = var[v.name]
            if v.column:
                if v.type.kind == S.STOPBIT:
                    out[v.name] = values
                else:
                    text = build_strings(dm.u1, start, end, null)
                    out[v.name] = text
                    texts.append((v.name, text))
            base = end
        return out, texts


def _target(step: Step, n: int) -> np.ndarray:
    """Output array for a fixed-size column, in Arrow's pool (see :func:`~pychro.frames.scan.empty`):
    numbers become Arrow arrays over the same memory without a copy."""
    dtype = np.dtype(step.type.dtype)
    return empty(n, dtype)


def _none_if_clear(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    return mask if mask.any() else None
