"""A schema compiled for the compiled decoder, and one run of it over a batch (vanilla-format.md §4, §7).

:class:`Plan` turns a :class:`~pychro.frames.schema.Schema` (and the projected columns) into the field program
of ``_decode.c``: one ``(kind, size, column)`` step per field; a fixed-size field that is not projected, and
``skip<N>`` padding, become skips. :class:`Run` allocates the output buffers of one batch in Arrow's memory
pool (numbers, bit-packed booleans, string offsets, UTF-8 data and validity bitmaps), calls the C loop (which
resumes where it stopped when a string data buffer needs to grow) and wraps the buffers as Arrow arrays
without a copy. :class:`TypedRun` does the same for a journal of several message types, one :class:`Run` per
type. The error policy and messages are :mod:`pychro.frames.batch`'s.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .. import _fields as F
from .. import _layout as L
from . import _decode as C
from . import schema as S
from .scan import empty

__all__ = ["Plan", "Recycler", "Run", "TypedRun", "explain_mismatch", "recycle"]

_TEXT = (C.D_STRING, C.D_UTF, C.D_CHAR)
_MAX_OFFSET = (1 << 31) - 1  # Arrow's 32-bit offsets: bytes of one text column's batch, or list entries
_INITIAL_TEXT_BYTES = 24  # a text column's first guess of UTF-8 bytes per row (then learnt batch by batch)


class Plan:
    """A schema compiled for decoding, with the projected columns (in output order).

    Examples
    --------
    >>> p = Plan(S.Schema("ts:timestamp_ms,skip4,sym:string,qty:int32"), ["qty", "sym"])
    >>> [(step[0] == C.D_SKIP, step[2]) for step in p.program]
    [(True, -1), (False, 1), (False, 0)]
    """

    def __init__(self, schema: S.Schema, columns: Sequence[str] | None = None, *, rest: bool = False) -> None:
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
        self.fixed_size = schema.fixed_size
        self.arrow_types = {f.name: S.arrow_type(f.type) for f in schema.fields if f.is_column}
        col_of = {name: j for j, name in enumerate(wanted)}
        steps: list[tuple[int, int, int]] = []
        self.step_names: list[str] = []  # step -> field name (for error messages)
        self.kinds: list[int] = [0] * len(wanted)  # column -> step kind
        for f in schema.fields:
            t = f.type
            col = col_of.get(f.name, -1) if f.is_column else -1
            if t.size and col < 0:  # padding, or a fixed-size field not asked for: passed over
                if steps and steps[-1][0] == C.D_SKIP:
                    steps[-1] = (C.D_SKIP, steps[-1][1] + t.size, -1)
                    continue
                kind = C.D_SKIP
            elif t.kind == S.FIXED:
                kind = C.D_BOOL if t.name == "bool" else C.D_CHAR if t.name == "char" else C.D_FIXED
            elif t.kind == S.LIST:
                steps.append((C.D_LIST, t.entry_size, col))
                self.step_names.append(f.name)
                if col >= 0:
                    self.kinds[col] = C.D_LIST
                continue
            else:
                kind = {S.STOPBIT: C.D_STOPBIT, S.STRING: C.D_STRING, S.UTF: C.D_UTF}[t.kind]
            steps.append((kind, t.size, col))
            self.step_names.append(f.name)
            if col >= 0:
                self.kinds[col] = kind
        if rest:  # the schema is a common header: whatever follows it in a message is passed over
            steps.append((C.D_REST, 0, -1))
            self.step_names.append("")
        self.rest = rest
        self.program = tuple(steps)
        self.sizes = [schema[name].type.size for name in wanted]
        self.types = [schema[name].type for name in wanted]
        # learnt UTF-8 bytes per row of each text column: the next batch's first data buffer size (a race
        # between threads only changes a guess)
        self.text_bytes = [float(_INITIAL_TEXT_BYTES)] * len(wanted)
        self.text_guessed = any(k in (*_TEXT, C.D_LIST) for k in self.kinds)  # no batch has taught text_bytes yet
        # learnt share of a batch's rows that are this plan's (one message type of several; None: not yet)
        self.share: float | None = None
        self.recycler: Recycler | None = None  # where its runs take their number buffers (None: Arrow's pool)

    def unit(self, j: int) -> int:
        """Bytes per offset of text or list column ``j``: a list's offsets count entries, a text's bytes."""
        return self.types[j].entry_size if self.kinds[j] == C.D_LIST else 1


class Recycler:
    """Number and offset buffers of batches used again once nothing refers to them any more: for exports, whose
    batches are written and dropped while the next ones are decoded.

    Why: memory an allocator has given back to the kernel costs a page fault per page when it is taken again, and
    Arrow's allocator gives back what one thread allocated (a decoding thread) and another freed (the writing
    one). On the VM measured, a 10 M-row export of 20 float columns spent 1.3-5 s of its 4.5-7 s in the kernel
    (pq.write_table of the same table: 0.4 s); with its buffers used again, 3.5-3.9 s. A buffer is free when only
    this object holds its array: every Arrow buffer, array or batch made over it holds a reference.

    Arrays come in size classes (16 per power of two: at most 1/16 more than asked), so that batches of somewhat
    different sizes (a cycle's last batch, a message type's share of a batch) share them; a request no free array
    of its class can take gets the smallest free one up to twice its class. Free arrays are let go,
    those of the classes asked for least recently first, whenever a new array is made and the free ones hold more
    than a quarter of the bytes of those in use: memory stays within 1.25x what the export holds (hourly cycles of
    sizes that never repeat had kept every buffer of the export).
    """

    def __init__(self) -> None:
        self._kept: dict[int, list[npt.NDArray[np.uint8]]] = {}  # by size class, least recently asked first
        self._lock = threading.Lock()  # runs are made on several decoding threads

    def buffer(self, size: int) -> pa.Buffer:
        """A mutable buffer of ``size`` bytes (contents undefined)."""
        cls = _size_class(size)
        with self._lock:
            kept = self._kept.pop(cls, [])
            self._kept[cls] = kept  # now the most recently asked
            for i in range(len(kept)):
                if _holders(kept, i) == _FREE:
                    return pa.py_buffer(kept[i][:size])
            return pa.py_buffer(self._missed(cls)[:size])

    def _missed(self, cls: int) -> npt.NDArray[np.uint8]:
        """No free array of class ``cls``: the smallest free one of a larger class up to twice it, else a new one,
        made after letting go of free arrays beyond a quarter of the bytes of those in use."""
        free: list[tuple[int, int]] = []  # (class, index), least recently asked class first
        live = 0
        for c, kept in self._kept.items():
            for i in range(len(kept)):
                if _holders(kept, i) == _FREE:
                    free.append((c, i))
                else:
                    live += c
        fits = [(c, i) for c, i in free if cls < c <= 2 * cls]
        if fits:
            c, i = min(fits)
            return self._kept[c][i]
        excess = sum(c for c, _ in free) - live // 4
        dropped: dict[int, set[int]] = {}
        for c, i in free:
            if excess <= 0:
                break
            dropped.setdefault(c, set()).add(i)
            excess -= c
        for c, gone in dropped.items():
            self._kept[c] = [a for i, a in enumerate(self._kept[c]) if i not in gone]
        a = np.frombuffer(pa.allocate_buffer(cls), np.uint8)
        self._kept[cls].append(a)
        return a


def _size_class(size: int) -> int:
    """``size`` rounded up to a 16th of its power of two (at least 4 KiB)."""
    step = max(4096, 1 << max(0, size.bit_length() - 5))
    return -(-size // step) * step


def _holders(arrays: list[npt.NDArray[np.uint8]], i: int) -> int:
    """References to ``arrays[i]``, as counted here: equal to :data:`_FREE` when only the list holds it. Measured,
    not assumed: how ``sys.getrefcount`` counts its argument differs between Python versions."""
    return sys.getrefcount(arrays[i])


_FREE = _holders([np.empty(0, np.uint8)], 0)


def recycle(plans: Iterable[Plan]) -> None:
    """One :class:`Recycler` for the runs of ``plans`` (an export's; it goes with them)."""
    recycler = Recycler()
    for plan in plans:
        plan.recycler = recycler


class Run:
    """The output buffers of one batch of ``n`` rows and the C loop over them.

    ``status`` (one byte per row: ``C.ST_*``) and ``counts`` (``C.N_*``) are the C's per-row and per-batch
    results.
    """

    def __init__(self, plan: Plan, n: int) -> None:
        self.plan = plan
        self.n = n
        self.done = n  # rows the decoder went through (its counts of nulls cover them)
        self.outs: list[tuple[Any, Any, Any]] = []
        new = pa.allocate_buffer if plan.recycler is None else plan.recycler.buffer
        for j, kind in enumerate(plan.kinds):
            if kind in (C.D_FIXED, C.D_STOPBIT):
                # 8 bytes more: the C stores short fields as whole words whose spill the next row overwrites
                self.outs.append((new(n * (plan.sizes[j] or 8) + 8), None, None))
            elif kind == C.D_BOOL:
                self.outs.append((pa.py_buffer(np.zeros((n + 7) // 8, np.uint8)), None, None))
            else:
                offsets = new(4 * (n + 1))
                np.frombuffer(offsets, np.int32, count=1)[0] = 0
                # (never past what a batch's column can hold: 2**31 - 1 bytes, or list entries)
                cap = min(int(n * plan.text_bytes[j] * 1.25) + 256, _MAX_OFFSET * plan.unit(j))
                data = pa.allocate_buffer(cap, resizable=True)
                valid = pa.py_buffer(np.zeros((n + 7) // 8, np.uint8)) if kind == C.D_STRING else None
                self.outs.append((offsets, data, valid))
        self.status = empty(n, np.uint8)
        self.counts = np.zeros(C.N_NULLS + len(plan.kinds), np.int64)
        self.counts[C.N_FIRST_BAD] = self.counts[C.N_TEXT_STEP] = -1

    def decode(self, entries: npt.NDArray[np.uint64], mask: int, bits: int, keys: npt.NDArray[np.int64],
               files: tuple[Any, ...], lo: int, stop: bool, release: bool = False) -> tuple[int, int, int]:
        """Rows ``lo..n-1``: ``(code, row, detail)`` of ``_decode.decode``, text buffers grown as asked.

        ``release``: ``files`` are read-only mappings of journal files, whose pages read may leave the resident
        set (never for memory of this process)."""
        while True:
            code, row, detail = C.decode(self.plan.program, entries, mask, bits, keys, files, lo, self.n, stop,
                                         tuple(self.outs), self.status, self.counts, release)
            if code != C.C_NEED_MORE:
                return code, row, detail
            self.grow(detail)
            lo = row

    def grow(self, col: int) -> None:
        """Twice the room in the data buffer of text or list column ``col`` (it keeps the bytes of the rows done;
        offsets, of bytes or of list entries, stay below 2**31)."""
        data, unit = self.outs[col][1], self.plan.unit(col)
        data.resize(min(2 * data.size + 4096 * unit, _MAX_OFFSET * unit))

    def grow_rows(self, used: int, n: int) -> None:
        """Room for ``n`` rows, the first ``used`` kept (message types: a type with more messages in a batch than
        its share foresaw)."""
        plan = self.plan
        for j, kind in enumerate(plan.kinds):
            first, data, valid = self.outs[j]
            if kind in (C.D_FIXED, C.D_STOPBIT):
                size = plan.sizes[j] or 8
                first = _moved(first, n * size + 8, used * size)
            elif kind == C.D_BOOL:
                first = _moved(first, (n + 7) // 8, (used + 7) // 8)
            else:
                first = _moved(first, 4 * (n + 1), 4 * (used + 1))
                valid = None if valid is None else _moved(valid, (n + 7) // 8, (used + 7) // 8)
            self.outs[j] = (first, data, valid)
        self.status, self.n = _longer(self.status, n, used), n

    def column(self, col: int) -> str:
        return self.plan.columns[col]

    @property
    def bad(self) -> int:
        return int(self.counts[C.N_BAD])

    def used(self, j: int, m: int) -> int:
        """Bytes of text (or of list entries) in rows ``0..m-1`` of text or list column ``j``."""
        return int(np.frombuffer(self.outs[j][0], np.int32, count=1, offset=4 * m)[0]) * self.plan.unit(j)

    def learn(self, m: int, lower: bool = False) -> None:
        """Rows ``0..m-1``'s bytes per row of each text and list column, kept in the plan: the next batch's guess.
        ``lower``: only where below the guess (a sample of a batch's first rows, whose text may be much longer
        than the rest's: it must not make the batch reserve more)."""
        plan = self.plan
        if m:
            for j, kind in enumerate(plan.kinds):
                if kind in _TEXT or kind == C.D_LIST:
                    rate = max(1.0, self.used(j, m) / m)
                    plan.text_bytes[j] = min(rate, plan.text_bytes[j]) if lower else rate
            plan.text_guessed = False

    def arrays(self, m: int) -> dict[str, Any]:
        """The columns of rows ``0..m-1`` as Arrow arrays over the output buffers (no copy)."""
        plan = self.plan
        self.learn(m)
        out: dict[str, Any] = {}
        for j, name in enumerate(plan.columns):
            kind = plan.kinds[j]
            first, data, valid = self.outs[j]
            arrow = plan.arrow_types[name]
            if kind == C.D_LIST:
                out[name] = _list_array(plan.types[j], arrow, m, first, data)
            elif kind in _TEXT:
                used = self.used(j, m)
                if used < data.size - data.size // 8:  # give back most of a guess that was too big
                    data.resize(used, shrink_to_fit=True)
                nulls = int(self.counts[C.N_NULLS + j]) if m == self.done else -1
                validity = valid if nulls != 0 else None
                out[name] = pa.Array.from_buffers(arrow, m, [validity, first, data], max(nulls, -1))
            else:
                out[name] = pa.Array.from_buffers(arrow, m, [None, first])
        return out


def _longer(a: npt.NDArray[Any], n: int, keep: int) -> npt.NDArray[Any]:
    """An array of ``n`` items of ``a``'s type holding the first ``keep`` items of ``a``."""
    out = empty(n, a.dtype)
    out[:keep] = a[:keep]
    return out


def _moved(buf: Any, size: int, keep: int) -> Any:
    """A zeroed buffer of ``size`` bytes holding the first ``keep`` bytes of ``buf``."""
    out = np.zeros(size, np.uint8)
    out[:keep] = np.frombuffer(buf, np.uint8, count=keep)
    return pa.py_buffer(out)


class TypedRun:
    """One batch of a journal of message types: a :class:`Run` per type (with room for the type's learnt share of
    the batch's rows, grown when the C asks) and ``_decode.decode_typed``, which reads each message's tag in its
    header and decodes it into its type's next output row, in one pass.

    ``rows[t][:used[t]]`` are the batch rows of type ``t``'s output rows; ``info`` is the C's ``I_*`` counts
    (unknown tags, bodies without the header, the first bad row and its type).
    """

    def __init__(self, header: Plan, tags: tuple[Any, ...], plans: Sequence[Plan], n: int,
                 stop_unknown: bool) -> None:
        self.header, self.tags, self.n, self.stop_unknown = header, tags, n, stop_unknown
        # each type's room: its share of the previous batch's rows and a tenth more (a type absent then: 64 rows);
        # the tables keep this room, and a type that needs more is grown (a copy of its rows so far)
        rooms = [min(n, int(n * (1 / len(plans) if p.share is None else p.share) * 1.1) + 64) for p in plans]
        self.runs = [Run(p, room) for p, room in zip(plans, rooms)]
        self.programs = tuple(p.program for p in plans)
        self.rows = [empty(room, np.int32) for room in rooms]
        self.used = np.zeros(len(plans), np.int64)
        self.info = np.zeros(C.I_COUNT, np.int64)
        self.info[[C.I_FIRST_UNKNOWN, C.I_FIRST_BAD, C.I_BAD_TYPE]] = -1
        self.full = 0  # the type whose column the last code names

    def decode(self, entries: npt.NDArray[np.uint64], mask: int, bits: int, keys: npt.NDArray[np.int64],
               files: tuple[Any, ...], lo: int, stop: bool, release: bool = False) -> tuple[int, int, int]:
        """As :meth:`Run.decode`; a full text buffer, or a type's full rows, are grown and the call resumed."""
        runs = self.runs
        while True:
            code, row, detail, self.full = C.decode_typed(
                self.header.program, self.tags, self.programs, entries, mask, bits, keys, files, lo, self.n, stop,
                self.stop_unknown, tuple(tuple(r.outs) for r in runs), tuple(r.status for r in runs),
                tuple(self.rows), self.used, tuple(r.counts for r in runs), self.info, release)
            if code != C.C_NEED_MORE:
                break
            t = self.full
            if detail >= 0:
                runs[t].grow(detail)
            else:  # the type's rows are full
                used, room = int(self.used[t]), min(self.n, 2 * runs[t].n + 64)
                runs[t].grow_rows(used, room)
                self.rows[t] = _longer(self.rows[t], room, used)
            lo = row
        for t, r in enumerate(runs):
            r.done = int(self.used[t])
            if self.n:
                r.plan.share = r.done / self.n
        return code, row, detail

    def column(self, col: int) -> str:
        return self.runs[self.full].column(col)


def _list_array(ft: S.FieldType, arrow: Any, m: int, offsets: Any, data: Any) -> Any:
    """The list column of ``m`` rows: ``offsets`` (entries, int32) over the entries' bytes in ``data``.

    Each entry field becomes a child column with one strided copy (numbers as they are on the wire: the same
    little-endian layout Arrow uses; bools from their byte, non-zero = true).
    """
    count = int(np.frombuffer(offsets, np.int32, count=1, offset=4 * m)[0])
    cols = [f for f in ft.items if f.is_column]
    at, where = 0, {}
    for f in ft.items:
        where[f.name] = at
        at += f.type.size
    # the entries as numpy records (each field at its offset): one typed strided copy per field
    record = np.dtype({"names": [f"f{k}" for k in range(len(cols))],
                       "formats": ["u1" if f.type.name == "bool" else np.dtype(f.type.dtype) for f in cols],
                       "offsets": [where[f.name] for f in cols], "itemsize": ft.entry_size})
    entries = np.frombuffer(data, record, count=count)
    children = []
    for k, f in enumerate(cols):
        field = entries[f"f{k}"]
        if f.type.name == "bool":
            children.append(pa.array(field != 0))
        else:
            values = np.ascontiguousarray(field)
            children.append(pa.Array.from_buffers(S.arrow_type(f.type), count, [None, pa.py_buffer(values)]))
    value_type = arrow.value_type
    if pa.types.is_struct(value_type):
        values = pa.StructArray.from_arrays(children, fields=list(value_type))
    else:
        values = children[0]
    return pa.Array.from_buffers(arrow, m, [None, offsets], children=[values])


def explain_mismatch(plan: Plan, u1: npt.NDArray[np.uint8], pos: int, length: int) -> tuple[str | None, str]:
    """Why the ``length``-byte body at ``pos`` does not match the schema: ``(column or None, detail)``.

    Error path only (one row, in Python): the fields are walked as the decoder walks them, reads past the
    mapping clipped to its last byte. A field holding no valid value is named first, then the first variable
    field that runs past the body, else the decoded length is compared with the header's.
    """
    top = max(int(u1.size) - 1, 0)

    def byte(i: int) -> int:
        return int(u1[min(max(i, 0), top)]) if u1.size else 0

    c = pos
    invalid: tuple[str, str] | None = None
    past: str | None = None
    for f in plan.schema.fields:
        t = f.type
        if t.size:
            c += t.size
            continue
        if t.kind == S.UTF:
            c += 2 + (byte(c) | byte(c + 1) << 8)
        elif t.kind == S.LIST:
            value, used = _stop_bit(byte, c)
            if used == 0 or value < 0:
                invalid = invalid or (f.name, f"field {f.name!r} holds no valid entry count")
                used = 1
            c += used + min(max(value, 0), L.MAX_BODY_LENGTH) * t.entry_size
        else:
            value, used = _stop_bit(byte, c)
            if used == 0 or (t.kind == S.STRING and value < -1):
                invalid = invalid or (f.name, f"field {f.name!r} holds no valid {t.name} value")
                used = 1
            c += used
            if t.kind == S.STRING:
                c += min(max(value, 0), L.MAX_BODY_LENGTH)
        if past is None and c > pos + length:
            past = f.name
    if invalid is not None:
        return invalid
    if past is not None:
        return past, f"field {past!r} runs past the end of the {length}-byte message"
    if plan.rest:  # a common header: any length from its end on is right
        return None, f"the {length}-byte message does not hold the common header"
    return None, f"the schema decodes {c - pos} bytes but the header says {length}"


def _stop_bit(byte: Any, at: int) -> tuple[int, int]:
    """(value, bytes used) of the stop-bit value at ``at``; used 0 when no group ends within 10 bytes, or a 10th
    byte ends a positive value (Java's readStopBit throws)."""
    acc = 0
    for k in range(F.MAX_STOP_BIT_BYTES):
        b = byte(at + k)
        if b < F.STOP_BIT:
            if k == 9 and b:
                return 0, 0
            acc = ~acc & ((1 << 64) - 1) if (k and b == 0) else acc | (b << (7 * k))
            acc &= (1 << 64) - 1
            return acc - (1 << 64) if acc >= 1 << 63 else acc, k + 1
        acc |= (b & F.STOP_BIT_PAYLOAD) << (7 * k)
    return 0, 0
