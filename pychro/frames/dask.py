"""Scale out with Dask: one partition per cycle (large cycles split by row range), parallel export.

Only plain data crosses to workers: the journal path, the schema as JSON, the config, and index bounds taken
from one snapshot of the counts. Each partition opens and maps its own files in the worker (nothing mapped
or open is pickled) and reads with :func:`pychro.read_frame`, so projection is pushed into the decoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._optional import require
from ..config import VanillaConfig
from ..journal import Journal
from .schema import Schema, SchemaLike
from .timerange import TimeFilter

__all__ = ["read_dask", "to_parquet_dask"]

DEFAULT_PARTITION_ROWS = 4_000_000


@dataclass(frozen=True)
class _Part:
    """One partition: messages [start, end) of one cycle. Picklable; opens nothing until called."""

    path: str
    schema_json: str
    config: VanillaConfig
    start: int
    end: int
    columns: tuple[str, ...] | None
    index: bool
    dtype_backend: str
    errors: str = "raise"
    time: TimeFilter | None = None  # datetime bounds: the rows' timestamp range (the span is already narrowed)


def _read_part(part: _Part) -> Any:
    from .api import ReadStats, _batches, _Read, _to_frame

    pa = require("pyarrow")
    columns = list(part.columns) if part.columns is not None else None
    r = _Read(part.path, Schema.from_json(part.schema_json), None, part.start, part.end, columns, part.errors,
              part.index, None, part.config, None, time=part.time)
    # one thread: Dask runs partitions side by side; threads inside each would compete for the cores
    table = pa.Table.from_batches(list(_batches(r, 65_536, 1, False, 0.0, ReadStats())), schema=r.arrow_schema)
    frame = _to_frame(table, part.dtype_backend)
    if part.index:
        frame = frame.set_index("_index")
    return frame


def _parts(
    path: Any, schema: Schema, date: Any, start: Any, end: Any, columns: Sequence[str] | None, index: bool,
    dtype_backend: str, partition_rows: int, config: VanillaConfig | None, thread_id_bits: int | None,
    errors: str, timestamp_column: str | None,
) -> tuple[Journal, list[_Part]]:
    from .api import _Read

    if errors == "truncate":  # each partition would stop at its own first bad message, and keep later partitions
        raise ValueError("errors='truncate' stops the whole read at the first message that does not match the "
                         "schema, which partitions read side by side cannot do: use errors='skip' or 'raise' here, "
                         "or a serial read (read_table, to_parquet without parallel=True)")
    r = _Read(path, schema, date, start, end, columns, errors, False, None, config, thread_id_bits, timestamp_column)
    journal, cfg, ranges = r.journal, r.config, r.cycles
    parts = []
    for cycle, first, stop in ranges:
        # the snapshot: rows committed later are not part of this frame
        count = journal.count(cycle, strict=errors == "raise")
        last = count if stop is None else min(stop, count)
        for s in range(first, last, partition_rows):
            parts.append(
                _Part(journal.path, schema.to_json(), cfg, cfg.index_of(cycle, s),
                      cfg.index_of(cycle, min(s + partition_rows, last)),
                      tuple(columns) if columns is not None else None, index, dtype_backend, errors, r.time)
            )
    return journal, parts


def _meta(schema: Schema, columns: Sequence[str] | None, index: bool, dtype_backend: str) -> Any:
    """An empty frame with the dtypes a partition will have, made from the schema alone."""
    pa = require("pyarrow")
    pd = require("pandas")
    arrow = schema.to_arrow()
    names = list(columns) if columns is not None else arrow.names
    fields = [arrow.field(n) for n in names]
    if index:
        fields.insert(0, pa.field("_index", pa.int64()))
    empty = pa.schema(fields).empty_table()
    if dtype_backend == "pyarrow":
        frame = empty.to_pandas(types_mapper=pd.ArrowDtype)
    else:
        frame = empty.to_pandas()
    return frame.set_index("_index") if index else frame


def read_dask(
    path: str | os.PathLike[str],
    schema: SchemaLike,
    start: Any = None,
    end: Any = None,
    columns: Sequence[str] | None = None,
    *,
    date: Any = None,
    index: bool = False,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    dtype_backend: str = "pyarrow",
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    errors: str = "raise",
    timestamp_column: str | None = None,
    unknown: str = "raise",
) -> Any:
    """A ``dask.dataframe.DataFrame`` of a journal: one partition per cycle, big cycles split by row range.

    With :class:`~pychro.MessageTypes` instead of a schema: ``{type name: dask DataFrame}`` (``columns`` and
    ``unknown`` as for :func:`pychro.read_tables`), one partition per cycle each; the types share their
    partitions' reads when computed together (``dask.compute(*frames.values())``).

    Parameters
    ----------
    start, end, date, columns, errors, timestamp_column, config, thread_id_bits
        As for :func:`pychro.read_table` (datetime ``start``/``end`` select rows by the timestamp field);
        ``columns`` is pushed down to each partition's decoder, ``errors`` applies in each partition
        (``"truncate"`` is refused: partitions cannot stop each other).
    index : bool
        Use the full index as the frame's index; divisions are then known (sorted, from the snapshot).
    partition_rows : int
        Largest number of rows in one partition.

    Examples
    --------
    >>> ddf = pychro.read_dask(path, "ts:timestamp_ms,sym:string,px:float64,qty:int32", index=True)  # doctest: +SKIP
    >>> ddf.groupby("sym").qty.sum().compute()  # doctest: +SKIP
    """
    dd = require("dask.dataframe", extra="dask", purpose="read_dask")
    if partition_rows <= 0:
        raise ValueError("partition_rows must be positive")
    from .types import MessageTypes

    if isinstance(schema, MessageTypes):
        return _read_dask_types(path, schema, start, end, columns, date, index, partition_rows, dtype_backend,
                                config, thread_id_bits, errors, unknown, timestamp_column)
    if unknown != "raise":
        raise ValueError("unknown= is for message types (a pychro.MessageTypes), not a single schema")
    schema = Schema(schema)
    if columns is not None:
        from .decode import Plan

        Plan(schema, columns)  # a ValueError naming an unknown column, before any worker runs
    _, parts = _parts(path, schema, date, start, end, columns, index, dtype_backend, partition_rows, config,
                      thread_id_bits, errors, timestamp_column)
    meta = _meta(schema, columns, index, dtype_backend)
    if not parts:
        return dd.from_pandas(meta, npartitions=1)
    divisions = None
    if index:
        divisions = tuple(p.start for p in parts) + (parts[-1].end - 1,)
    return dd.from_map(_read_part, parts, meta=meta, divisions=divisions, enforce_metadata=False)


@dataclass(frozen=True)
class _TypedPart:
    """One partition of a message-types read: messages [start, end) of one cycle, every type. Picklable."""

    path: str
    types_json: str
    config: VanillaConfig
    start: int
    end: int
    columns: tuple[tuple[str, tuple[str, ...]], ...] | None
    index: bool
    dtype_backend: str
    errors: str
    unknown: str
    time: TimeFilter | None


def _read_typed_part(part: _TypedPart) -> dict[str, Any]:
    """Every type's frame of one partition, in one pass over its messages."""
    from .api import ReadStats, _to_frame
    from .typed import _typed_batches, _TypedRead
    from .types import MessageTypes

    pa = require("pyarrow")
    columns = {name: list(cols) for name, cols in part.columns} if part.columns is not None else None
    tr = _TypedRead(part.path, MessageTypes.from_json(part.types_json), None, part.start, part.end, columns,
                    part.errors, part.unknown, part.index, None, part.config, None, None, time=part.time)
    got: dict[str, list[Any]] = {k.name: [] for k in tr.kinds}
    for name, batch in _typed_batches(tr, 65_536, 1, False, 0.0, ReadStats()):
        got[name].append(batch)
    out = {}
    for name, schema in tr.schemas().items():
        frame = _to_frame(pa.Table.from_batches(got[name], schema=schema), part.dtype_backend)
        out[name] = frame.set_index("_index") if part.index else frame
    return out


def _read_dask_types(
    path: Any, types: Any, start: Any, end: Any, columns: Any, date: Any, index: bool, partition_rows: int,
    dtype_backend: str, config: VanillaConfig | None, thread_id_bits: int | None, errors: str, unknown: str,
    timestamp_column: str | None,
) -> dict[str, Any]:
    """read_dask with message types: ``{type name: dask DataFrame}``, partitions shared by all types (a partition
    is read once when the frames are computed together, e.g. ``dask.compute(*frames.values())``)."""
    dask = require("dask", extra="dask", purpose="read_dask")
    dd = require("dask.dataframe", extra="dask", purpose="read_dask")
    from .typed import _TypedRead

    if errors == "truncate":
        raise ValueError("errors='truncate' stops the whole read at the first message that does not match the "
                         "schema, which partitions read side by side cannot do: use errors='skip' or 'raise' here, "
                         "or a serial read (read_tables)")
    tr = _TypedRead(path, types, date, start, end, columns, errors, unknown, index, None, config, thread_id_bits,
                    timestamp_column)
    r = tr.r
    journal, cfg = r.journal, r.config
    cols = tuple((n, tuple(c)) for n, c in columns.items()) if columns else None
    parts = []
    for cycle, first, stop in r.cycles:
        count = journal.count(cycle, strict=errors == "raise")
        last = count if stop is None else min(stop, count)
        for s in range(first, last, partition_rows):
            parts.append(_TypedPart(journal.path, types.to_json(), cfg, cfg.index_of(cycle, s),
                                    cfg.index_of(cycle, min(s + partition_rows, last)), cols, index, dtype_backend,
                                    errors, unknown, r.time))
    shared = [dask.delayed(_read_typed_part)(p) for p in parts]
    divisions = tuple(p.start for p in parts) + (parts[-1].end - 1,) if index and parts else None
    out = {}
    for kind in tr.kinds:
        meta = _meta(types.schema(kind.name), kind.plan.columns, index, dtype_backend)
        if not parts:
            out[kind.name] = dd.from_pandas(meta, npartitions=1)
            continue
        pieces = [dask.delayed(_pick)(d, kind.name) for d in shared]
        out[kind.name] = dd.from_delayed(pieces, meta=meta, divisions=divisions, verify_meta=False)
    return out


def _pick(frames: dict[str, Any], name: str) -> Any:
    return frames[name]


def _export_part(
    part: _Part, out: str, fmt: str, compression: str | None, row_group_rows: int
) -> tuple[int, Exception | None]:
    """The rows one task wrote, or its error: returned, not raised, so that the export fails only once every task
    has ended (dask.compute raises the first error at once, while the other tasks still write)."""
    from .export import _export_range

    try:
        return _export_range(part.path, Schema.from_json(part.schema_json), part.config, part.start, part.end, out,
                             fmt, part.columns, row_group_rows, compression, part.errors, part.time), None
    except Exception as exc:  # noqa: BLE001 - raised by to_parquet_dask after the others
        return 0, exc


def to_parquet_dask(
    path: str | os.PathLike[str],
    schema: SchemaLike,
    out: str | os.PathLike[str],
    date: Any = None,
    start: Any = None,
    end: Any = None,
    *,
    columns: Sequence[str] | None = None,
    row_group_rows: int = 1 << 20,
    compression: str | None = "snappy",
    fmt: str = "parquet",
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    scheduler: Any = None,
    errors: str = "raise",
    timestamp_column: str | None = None,
) -> int:
    """``to_parquet(..., partition_by="date")`` with one Dask task per cycle; returns the rows written.

    Runs on the current Dask scheduler (a ``distributed.Client`` if one is active), or ``scheduler=``.
    """
    dask = require("dask", extra="dask", purpose="parallel export")
    schema = Schema(schema)
    journal, parts = _parts(path, schema, date, start, end, columns, False, "pyarrow", 1 << 62, config,
                            thread_id_bits, errors, timestamp_column)
    cfg = journal.config
    from .export import folders_for, partition_name

    ext = {"parquet": "parquet", "ipc": "arrow", "csv": "csv"}[fmt]
    tasks = []
    for p in parts:
        cycle = cfg.split_index(p.start)[0]
        folder = os.path.join(os.fspath(out), partition_name(cfg, cycle))  # made (and removed on failure) by the task
        tasks.append(dask.delayed(_export_part)(p, os.path.join(folder, f"part-0.{ext}"), fmt, compression,
                                                row_group_rows))
    with folders_for(os.fspath(out)):
        done = dask.compute(*tasks, scheduler=scheduler)
        failed = [exc for _, exc in done if exc is not None]
        if failed:
            raise failed[0]
    return int(sum(n for n, _ in done))
