"""A journal of several message types, read in one pass (see :class:`~pychro.frames.types.MessageTypes`).

Each batch of index entries is decoded once, by the compiled decoder (``_decode.decode_typed``, driven by
:class:`~pychro.frames.decode.TypedRun`): each message's tag is read from its common header and the message is
decoded with its type's plan into that type's columns. No row is handled in Python. Errors follow the
single-schema rules across all types together, in index order: with ``errors="raise"`` the first bad message of
the batch, of whatever type, is raised; with ``"truncate"`` every type stops before it; with ``"skip"`` bad rows
are dropped and counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .. import _fields as F
from .._optional import require
from ..config import VanillaConfig
from ..errors import CorruptDataError, PychroError, SchemaMismatchError
from . import _decode as C
from . import schema as S
from .api import (
    DEFAULT_BATCH_ROWS,
    TABLE_BATCH_ROWS,
    DtypeBackend,
    Errors,
    ReadStats,
    _check_stats,
    _note,
    _ordered,
    _Read,
    _tasks,
    _threads,
    _to_frame,
    _with_progress,
)
from .args import check_rows
from .batch import decode_batch, in_halves, run_batch
from .decode import Plan, TypedRun
from .scan import CycleFiles
from .types import MessageTypes

pa = require("pyarrow", purpose="pychro.frames")

__all__ = ["TypedBatch", "iter_typed_batches", "read_frames", "read_tables"]

_UNKNOWN = ("raise", "skip")


class TypedBatch(NamedTuple):
    """One message type's rows of a batch: ``(name, RecordBatch)``."""

    name: str
    batch: Any

    @property
    def num_rows(self) -> int:
        return int(self.batch.num_rows)


class _Type(NamedTuple):
    name: str
    plan: Plan  # the columns asked for
    decode_plan: Plan  # those and the timestamp column of a time range
    arrow_schema: Any


class _TypedRead:
    """Arguments resolved once: the header read (journal, cycles, time range) and each type's plan."""

    def __init__(
        self, path: Any, types: MessageTypes, date: Any, start: Any, end: Any, columns: Any, errors: str,
        unknown: str, index: bool, metadata: Iterable[str] | str | None, config: VanillaConfig | None,
        thread_id_bits: int | None, timestamp_column: str | None, narrow_rows: bool = True, time: Any = None,
    ) -> None:
        if not isinstance(types, MessageTypes):
            raise TypeError(f"types must be a pychro.MessageTypes, got {type(types).__name__}")
        if unknown not in _UNKNOWN:
            raise ValueError(f"unknown= must be one of {_UNKNOWN}, got {unknown!r}")
        self.types = types
        self.unknown = unknown
        wanted = columns_by_type(types, columns)
        self.r = _Read(path, types.header, date, start, end, [types.tag], errors, index, metadata, config,
                       thread_id_bits, timestamp_column, narrow_rows=narrow_rows, rest=True, time=time)
        r = self.r
        self.kinds, self.tags = type_plans(types, wanted, r.meta, r.time.column if r.time is not None else None)

    def schemas(self) -> dict[str, Any]:
        return {k.name: k.arrow_schema for k in self.kinds}


def type_plans(types: MessageTypes, wanted: dict[str, list[str]], meta: list[str], tcol: str | None,
               ) -> tuple[list[_Type], tuple[Any, ...]]:
    """Each type's plans and output schema, and the tag values as the decoder compares them (see
    :func:`wire_tags`), in the types' order."""
    kinds = []
    for name in types.names:
        full = types.schema(name)
        plan = Plan(full, wanted.get(name) or types.columns(name))
        if not plan.columns and not meta:  # (a table of no column would hold no rows either)
            raise ValueError(f"message type {name!r} has no column (only padding): read with index=True or "
                             "metadata= to have its messages")
        clash = [m for m in meta if m in plan.columns]
        if clash:
            raise ValueError(f"metadata columns {clash} clash with fields of the same name in type {name!r}")
        decode_plan = plan if tcol is None or tcol in plan.columns else Plan(full, [*plan.columns, tcol])
        arrow = full.to_arrow()
        fields = [pa.field(m, pa.int64(), nullable=False) for m in meta]
        fields += [arrow.field(c) for c in plan.columns]
        kinds.append(_Type(name, plan, decode_plan, pa.schema(fields, metadata=arrow.metadata)))
    return kinds, wire_tags(types)


def wire_tags(types: MessageTypes) -> tuple[Any, ...]:
    """The tag values as the decoder finds them in a message: text as Java writes it and as UTF-8 (a pair of
    bytes), a stop-bit integer as it is, a fixed-size one as its little-endian bytes read unsigned (int8 -1 -> 255).

    >>> wire_tags(MessageTypes("type:int8", "type", {-1: ("a", ""), 2: ("b", "")}))
    (255, 2)
    """
    t = types.header[types.tag].type
    if t.kind in (S.STRING, S.UTF):
        return tuple((F.encode_text(v), v.encode("utf-8", "surrogatepass")) for v in types.values)
    if t.kind == S.STOPBIT:
        return tuple(int(v) for v in types.values)
    return tuple(int(v) & ((1 << (8 * t.size)) - 1) for v in types.values)


def columns_by_type(types: MessageTypes, columns: Any) -> dict[str, list[str]]:
    """``columns=`` of a read of message types, checked: ``{type name: [columns]}`` ({} for every column)."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping):
        raise TypeError("with message types, columns= is a dict {type name: [columns]}")
    out = {}
    for name, cols in columns.items():
        if name not in types.names:
            raise ValueError(f"columns= names no message type {name!r} (types: {', '.join(types.names)})")
        if isinstance(cols, str) or not isinstance(cols, Sequence):
            raise TypeError(f"columns[{name!r}] must be a list of names")
        have = types.columns(name)
        bad = [c for c in cols if c not in have]
        if bad:
            raise ValueError(f"columns[{name!r}]: unknown columns {bad}; type {name!r} has {have}")
        if not cols:
            raise ValueError(f"columns[{name!r}] is empty: leave the type out of columns= to read all its columns")
        out[name] = list(cols)
    return out


class _Decoded(NamedTuple):
    """One batch, by type: (rows of the batch, columns) per type, in index order within each."""

    parts: list[tuple[npt.NDArray[np.int32], dict[str, Any]] | None]
    skipped: int
    unknown: int
    first_bad: int | None  # batch row
    stop: bool
    slow_rows: int
    replaced: int


def _decode(tr: Any, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], stable: bool = False,
            ) -> _Decoded:
    """One batch of every type (``tr``: a :class:`_TypedRead`, or what the remote reader makes alike). ``stable``:
    ``entries`` is this read's own copy (else it may be a view of an index file, which another process could
    write: before an error names a message, the batch is decoded again from a copy)."""
    r = tr.r
    n = int(entries.size)
    run = TypedRun(r.decode_plan, tr.tags, [k.decode_plan for k in tr.kinds], n, tr.unknown == "raise")
    # damage raises here, the first in index order; mismatches are noted, not raised yet: the first problem in
    # index order across all types (and unknown tags) is the one to raise or stop at
    run_batch(run, files, seq0, entries, r.errors != "skip", r.release_now(files, entries))
    info = run.info
    first_bad = int(info[C.I_FIRST_BAD]) if info[C.I_FIRST_BAD] >= 0 else None
    unknown = int(info[C.I_UNKNOWN])
    raises = unknown and tr.unknown == "raise" and (
        first_bad is None or r.errors == "skip" or int(info[C.I_FIRST_UNKNOWN]) < first_bad)
    if (raises or (r.errors == "raise" and first_bad is not None)) and not stable:
        return _decode(tr, files, seq0, np.array(entries), stable=True)
    if raises:
        _raise_unknown(tr, files, seq0, entries, int(info[C.I_FIRST_UNKNOWN]))
    if r.errors == "raise" and first_bad is not None:
        _reraise(tr, files, seq0, entries, (first_bad, int(info[C.I_BAD_TYPE])))
    # with errors="truncate" the decoder stopped at the first bad row: only that row is to drop
    stop = r.errors == "truncate" and first_bad is not None
    parts: list[tuple[npt.NDArray[np.int32], dict[str, Any]] | None] = []
    slow = replaced = bad = 0
    for t, out in enumerate(run.runs):
        m = out.done
        slow, replaced, bad = slow + int(out.counts[C.N_SLOW]), replaced + int(out.counts[C.N_REPLACED]), bad + out.bad
        if not m:
            parts.append(None)
            continue
        rows = run.rows[t][:m]  # (int32: batch rows; made seqs only for metadata columns)
        if not out.bad:
            parts.append((rows, out.arrays(m)))
        elif stop:
            keep = int(np.searchsorted(rows, first_bad))  # type: ignore[arg-type]
            parts.append((rows[:keep], out.arrays(keep)))
        else:  # errors="skip"
            good = out.status[:m] == C.ST_OK
            keep = pa.array(good)
            parts.append((rows[good], {k: v.filter(keep) for k, v in out.arrays(m).items()}))
    skipped = int(info[C.I_HEAD_BAD]) + bad if r.errors == "skip" else 0
    return _Decoded(parts, skipped, unknown, first_bad, stop, slow, replaced)


def _reraise(tr: Any, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], first: tuple[int, int],
             ) -> None:
    """Raise the mismatch of batch row ``first[0]`` (type ``first[1]``, -1: its header) as a read with
    ``errors="raise"`` names it."""
    row, t = first
    plan = tr.r.decode_plan if t < 0 else tr.kinds[t].decode_plan
    one = entries[row : row + 1]
    decode_batch(plan, files, seq0, one, "raise", seqs=np.array([seq0 + row], np.int64), stable=True)
    # decoded cleanly this time: its bytes changed since (another process writing the journal's files)
    raise CorruptDataError("the message changed while it was read", cycle=files.cycle, seq=seq0 + row,
                           index=files.config.index_of(files.cycle, seq0 + row))


def _raise_unknown(tr: Any, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], row: int) -> None:
    tag = tr.types.tag
    seq = seq0 + row
    # the header of that one message, read again for its tag (a tag that is not Java text raises as such here)
    head = decode_batch(tr.r.decode_plan, files, seq0, entries[row : row + 1], "raise", stable=True,
                        seqs=np.array([seq], np.int64), release=False)
    value = head.columns[tag][0].as_py()
    listed = ", ".join(f"{v!r} {n}" for v, n in list(zip(tr.types.values, tr.types.names))[:20])
    if len(tr.types.names) > 20:
        listed += f", ... ({len(tr.types.names)} types)"
    raise SchemaMismatchError(
        f"message has {tag}={value!r}, which names no message type (types: {listed}); use unknown='skip' to "
        "read past such messages",
        column=tag, path=getattr(files, "folder", None), cycle=files.cycle, seq=seq,
        index=files.config.index_of(files.cycle, seq),
    )


def _typed_batches(tr: _TypedRead, batch_rows: int, threads: int, follow: bool, poll_interval: float,
                   stats: ReadStats) -> Iterator[TypedBatch]:
    """``(type name, RecordBatch)`` per type present in each batch, batches in index order."""
    check_rows(batch_rows, "batch_rows")
    _check_stats(stats)
    r = tr.r

    def run(files: CycleFiles, seq0: int, n: int) -> tuple[list[tuple[_Decoded, int]], int, PychroError | None]:
        entries, damage = files.load(seq0, n)
        decode = partial(_decode, tr, files)  # (text past 2 GiB in a batch: its halves, see in_halves)
        return (in_halves(decode, seq0, entries) if entries.size else []), files.cycle, damage

    seen: set[int] = set()
    for outs, cycle, damage in _ordered(_tasks(r, batch_rows, follow, poll_interval, stats), run, threads, follow):
        for out, seq0 in outs:
            yield from typed_batches_of(tr, out, cycle, seq0, stats, seen)
            if out.stop:
                return
        if damage is not None:
            raise damage


def typed_batches_of(tr: Any, out: _Decoded, cycle: int, seq0: int, stats: ReadStats, seen: set[int] | None,
                     ) -> Iterator[TypedBatch]:
    """One decoded batch: noted in the stats, then its rows by type (``tr``: a :class:`_TypedRead`, or what the
    remote reader makes alike; ``seen`` as for :func:`~pychro.frames.api._note`)."""
    _note(stats, tr.r.config, out, cycle, seq0, seen)
    stats.unknown_rows += out.unknown
    for kind, part in zip(tr.kinds, out.parts):
        if part is None:
            continue
        batch = _record_batch(tr, kind, part[0], seq0, part[1], cycle)
        stats.rows += batch.num_rows
        if batch.num_rows:
            yield TypedBatch(kind.name, batch)


def _record_batch(tr: Any, kind: _Type, rows: npt.NDArray[np.int32], seq0: int, cols: dict[str, Any], cycle: int,
                  ) -> Any:
    r = tr.r
    arrays = []
    seqs = rows.astype(np.int64) + seq0 if r.meta else rows  # (the rows' seqs: only metadata columns need them)
    for m in r.meta:
        if m == "_index":
            values = seqs + (cycle << r.config.seq_bits)
        elif m == "_cycle":
            values = np.full(seqs.size, cycle, dtype=np.int64)
        else:
            values = seqs
        arrays.append(pa.array(values, pa.int64()))
    arrays += [cols[c] for c in kind.plan.columns]
    batch = pa.RecordBatch.from_arrays(arrays, schema=kind.arrow_schema)
    tf = r.time
    if tf is None:
        return batch
    mask = tf.inside(tf.values(cols[tf.column]))
    return batch if mask is None else batch.filter(pa.array(mask))


# -- public functions --------------------------------------------------------------------------------------------
def iter_typed_batches(
    path: str | os.PathLike[str], types: MessageTypes, date: Any = None, start: Any = None, end: Any = None,
    columns: Mapping[str, Sequence[str]] | None = None, errors: Errors = "raise", *, unknown: str = "raise",
    batch_rows: int = DEFAULT_BATCH_ROWS, index: bool = False, metadata: Iterable[str] | str | None = None,
    follow: bool = False, poll_interval: float = 0.1, config: VanillaConfig | None = None,
    thread_id_bits: int | None = None, threads: int | None = None, stats: ReadStats | None = None,
    progress: bool | None = None, timestamp_column: str | None = None,
) -> Iterator[TypedBatch]:
    """:func:`pychro.iter_batches` with message types: ``(type name, RecordBatch)`` pairs, in index order."""
    from ..config import check_seconds

    check_rows(batch_rows, "batch_rows")
    poll_interval = check_seconds(poll_interval, "poll_interval")
    tr = _TypedRead(path, types, date, start, end, columns, errors, unknown, index, metadata, config,
                    thread_id_bits, timestamp_column, narrow_rows=not follow)
    batches = _typed_batches(tr, batch_rows, _threads(threads, tr.r), follow, poll_interval, stats or ReadStats())
    return _with_progress(tr.r, batches, progress, follow)


def read_tables(
    path: str | os.PathLike[str],
    types: MessageTypes,
    date: Any = None,
    start: Any = None,
    end: Any = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    errors: Errors = "raise",
    *,
    unknown: str = "raise",
    index: bool = False,
    metadata: Iterable[str] | str | None = None,
    batch_rows: int | None = None,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    threads: int | None = None,
    stats: ReadStats | None = None,
    progress: bool | None = None,
    timestamp_column: str | None = None,
) -> dict[str, Any]:
    """Read a journal of several message types into one ``pyarrow.Table`` per type, in one pass.

    Each type's table has the header fields except the tag, then the type's own fields (``index=True``
    adds ``_index`` first), its rows in index order; every type is a key, with an empty table when no
    message has its tag.

    Parameters
    ----------
    types : MessageTypes
        The header, the tag field and the types.
    columns : dict, optional
        ``{type name: [columns]}``; a type left out is read whole.
    unknown : {"raise", "skip"}
        A message whose tag names no type: raise :class:`~pychro.SchemaMismatchError` (with the tag value,
        cycle and seq) or skip it (counted in ``ReadStats.unknown_rows``).
    errors : {"raise", "skip", "truncate"}
        A message that does not decode with its type's fields (or is shorter than the header), as for
        :func:`read_table`, across all types in index order.

    Other parameters are those of :func:`read_table`; ``timestamp_column`` and time bounds name a header field.

    Examples
    --------
    >>> types = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type",
    ...                             {1: ("trade", "sym:string,px:float64,qty:int32"), 4: ("heartbeat", "")})
    >>> tables = pychro.read_tables(path, types, unknown="skip")      # doctest: +SKIP
    >>> tables["trade"].column_names                                   # doctest: +SKIP
    ['ts', 'sym', 'px', 'qty']
    """
    tr = _TypedRead(path, types, date, start, end, columns, errors, unknown, index, metadata, config,
                    thread_id_bits, timestamp_column)
    tr.r.release = False  # the tables hold it all anyway (see _Read.release)
    # read_table's batches: 1 M messages of 4 types in 8 batches of 125 k took 0.86x the time of 4 of 250 k (each
    # batch is decoded once per type: a smaller one is read again from the caches)
    threads = _threads(threads, tr.r)
    if batch_rows is None:
        tr.r.even = threads
    rows = TABLE_BATCH_ROWS if batch_rows is None else batch_rows
    parts: dict[str, list[Any]] = {k.name: [] for k in tr.kinds}
    for name, batch in _with_progress(tr.r, _typed_batches(tr, rows, threads, False, 0.0, stats or ReadStats()),
                                      progress, False):
        parts[name].append(batch)
    schemas = tr.schemas()
    return {name: pa.Table.from_batches(batches, schema=schemas[name]) for name, batches in parts.items()}


def read_frames(
    path: str | os.PathLike[str], types: MessageTypes, date: Any = None, start: Any = None, end: Any = None,
    columns: Mapping[str, Sequence[str]] | None = None, errors: Errors = "raise", *,
    dtype_backend: DtypeBackend = "pyarrow", **kwargs: Any,
) -> dict[str, Any]:
    """:func:`read_tables` as pandas DataFrames (``dtype_backend`` as for :func:`read_frame`).

    Examples
    --------
    >>> frames = pychro.read_frames(path, types, unknown="skip")       # doctest: +SKIP
    >>> pd.merge_asof(frames["trade"], frames["quote"], on="ts", by="sym")  # doctest: +SKIP
    """
    tables = read_tables(path, types, date, start, end, columns, errors, **kwargs)
    return {name: _to_frame(table, dtype_backend) for name, table in tables.items()}
