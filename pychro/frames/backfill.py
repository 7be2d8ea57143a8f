"""write_frame: DataFrame/Arrow rows -> journal messages, encoded in bulk, committed through the shared path.

The bytes are those the row writer produces for the same rows (vanilla-format.md §4, §7): a fresh data file
``data-<tid>-<max+1>`` per cycle, 4-aligned ``~length`` headers, a roll to the next data file when fewer than
``message_capacity + 4`` bytes remain, CESU-8 text, ``80 00`` null strings, ``'Y'`` booleans. All rows are
turned into the steps of an encoder program (:mod:`.encode`) and measured and checked before anything is
written, then laid out, appended and committed in runs by a :class:`pychro.frames.bulk.BulkAppender`: every
committed row is whole, even if a later run fails.
"""

from __future__ import annotations

import datetime as _dt
import numbers
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import pairwise
from typing import Any, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

from .._mapping import make_folder
from .._optional import require
from ..config import VanillaConfig
from ..journal import Journal
from . import _encode as C
from .args import check_threads
from .bulk import BulkAppender, workers_for
from .encode import Program, RowError, Step, earlier
from .scan import empty
from .schema import FIXED, LIST, SKIP, STOPBIT, STRING, UTF, Field, Schema, SchemaLike, arrow_type
from .timerange import as_date

__all__ = ["to_journal", "write_batches", "write_frame"]

_INT_RANGE = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "stopbit": (-(1 << 63), (1 << 63) - 1),
    "uint8": (0, (1 << 8) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
    "char": (0, (1 << 16) - 1),  # a UTF-16 code unit, as an integer
}


def write_frame(
    data: Any,
    path: str | os.PathLike[str],
    schema: SchemaLike | None = None,
    date: _dt.date | _dt.datetime | str | None = None,
    *,
    timestamp_column: str | None = None,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    clock: Any = None,
    progress: bool | None = None,
    threads: int | None = None,
) -> npt.NDArray[np.int64]:
    """Append every row of a DataFrame or Arrow table to a journal, as Java would write them.

    Parameters
    ----------
    data : pandas.DataFrame, pyarrow.Table or RecordBatch, or dict of columns
        One column per schema field (by name; extra columns are ignored). ``skip<N>`` fields are written as
        N zero bytes. Nulls become Java ``null`` in ``string`` fields and NaN in float fields (pandas' NaN
        arrives as null); in any other field they are rejected. String columns may be pandas categoricals.
    path : str or os.PathLike
        Journal folder (created if missing).
    schema : Schema or schema-like, optional
        Field order and types; default: inferred from the data's Arrow schema (pychro metadata first).
    date : date, datetime or ISO string, optional
        Target cycle for every row. Default: per row, from ``timestamp_column`` (the first ``timestamp_*``
        field when not given), so a multi-day frame lands in the right cycle folders; the current cycle
        when the schema has no timestamp.
    config, thread_id_bits : optional
        Journal format, as for every pychro entry point.
    progress : bool, optional
        Show a progress bar (tqdm); default: only for long jobs on a terminal.
    threads : int, optional
        Threads laying out and writing message bytes while this one commits, 1..256 (default: up to 2 for
        large frames). Commits stay in row order whatever the number.

    Returns
    -------
    numpy.ndarray of int64
        The full index of every row, in row order.

    Raises
    ------
    ValueError
        A row does not fit the schema (null in a non-nullable field, overflow, a body larger than the
        message capacity...): raised before anything is written, naming the row.

    Examples
    --------
    >>> df = pd.DataFrame({"ts": pd.to_datetime(["2024-01-02 09:30"], utc=True), "px": [101.5]})  # doctest: +SKIP
    >>> pychro.write_frame(df, path, "ts:timestamp_ms,px:float64")                              # doctest: +SKIP
    array([21483495768555520])
    """
    check_threads(threads)
    from .interchange import as_source, is_arrow_stream, stream_schema

    if is_arrow_stream(data):  # streamed batch by batch, in two passes (checked, then written): bounded memory
        source = as_source(data)
        assert source is not None
        if schema is None:
            schema = Schema.from_arrow(stream_schema(data))
        return _write_stream(source, path, schema, date, timestamp_column=timestamp_column, config=config,
                             thread_id_bits=thread_id_bits, clock=clock, progress=progress, threads=threads)
    given = None if schema is None else Schema(schema)
    table = _to_table(data, None if given is None else given.names)
    schema = Schema.from_arrow(table.schema) if given is None else given
    journal = Journal(path, config, thread_id_bits, must_exist=False)
    journal.check_target()
    cfg = journal.config
    n = table.num_rows
    workers = workers_for(threads, n)
    prepared = _prepare(table, schema, cfg, date, timestamp_column, clock, workers)
    make_folder(journal.path)  # only once every row is known to fit: a refused frame leaves nothing
    return _append_all(journal, prepared, n, workers, progress)


to_journal = write_frame


def write_batches(
    batches: Callable[[], Iterable[Any]] | Any,
    path: str | os.PathLike[str],
    schema: SchemaLike,
    date: _dt.date | _dt.datetime | str | None = None,
    *,
    timestamp_column: str | None = None,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    clock: Any = None,
    progress: bool | None = None,
    threads: int | None = None,
) -> int:
    """:func:`write_frame` for a stream too big for memory; returns the rows written.

    ``batches()`` must give the same record batches (or tables) each time it is called: a first pass checks
    every row (a row that does not fit is rejected with its row number in the stream before anything is
    written), a second one writes them through one appender, as one ``write_frame`` of their concatenation
    would. Memory holds about one batch. ``batches`` may also be an object with the Arrow PyCapsule interface
    (a polars DataFrame or LazyFrame result, a DuckDB relation, a pyarrow dataset scanner...): each pass reads
    it afresh as a stream.
    """
    from .interchange import as_source

    if not callable(batches) or hasattr(batches, "__arrow_c_stream__"):
        source = as_source(batches)
        if source is None:
            raise TypeError("batches must be a function giving the batches (called twice: checked, then written) or "
                            f"an object with the Arrow PyCapsule interface, not {type(batches).__name__}")
        batches = source
    written, _ = _write_stream_parts(batches, path, Schema(schema), date, timestamp_column, config, thread_id_bits,
                                     clock, progress, threads, keep=False)
    return written


def _write_stream(
    batches: Callable[[], Iterable[Any]], path: Any, schema: SchemaLike, date: Any, *,
    timestamp_column: str | None, config: VanillaConfig | None, thread_id_bits: int | None, clock: Any,
    progress: bool | None, threads: int | None,
) -> npt.NDArray[np.int64]:
    """write_frame of an Arrow stream: write_batches' two passes, keeping each row's full index."""
    return _write_stream_parts(batches, path, Schema(schema), date, timestamp_column, config, thread_id_bits,
                               clock, progress, threads, keep=True)[1]


def _write_stream_parts(
    batches: Callable[[], Iterable[Any]], path: Any, schema: Schema, date: Any, timestamp_column: str | None,
    config: VanillaConfig | None, thread_id_bits: int | None, clock: Any, progress: bool | None,
    threads: int | None, keep: bool,
) -> tuple[int, npt.NDArray[np.int64]]:
    """(rows written, their full indices when ``keep``, else an empty array)."""
    check_threads(threads)
    journal = Journal(path, config, thread_id_bits, must_exist=False)
    journal.check_target()
    cfg = journal.config
    total = 0
    for batch in batches():
        table = _to_table(batch)
        try:
            _prepare(table, schema, cfg, date, timestamp_column, clock, 1)
        except ValueError as exc:
            raise _shifted(exc, total) from None
        total += table.num_rows
    # every row's index, filled in place (no copy of the whole at the end: 8 bytes a row at the peak, not 16)
    indices = np.empty(total if keep else 0, dtype=np.int64)
    if not total:
        return 0, indices
    make_folder(journal.path)
    bar = _bar(total, progress)
    written = 0
    try:
        with BulkAppender(journal, workers=workers_for(threads, total)) as appender:
            again = iter(batches())
            while True:
                try:
                    table = _to_table(next(again))
                    prepared = _prepare(table, schema, cfg, date, timestamp_column, clock, appender.workers)
                except StopIteration:
                    break
                except (ValueError, TypeError) as exc:  # the rows (a file being imported, say) changed since checked
                    raise ValueError(f"the batches changed between the two passes ({exc}); {_written(written, total)}"
                                     ) from exc
                except Exception as exc:  # (not a change: MemoryError, OSError ...) as it is, with what was written
                    exc.add_note(_written(written, total))
                    raise
                n = table.num_rows
                if written + n > total:
                    raise ValueError(f"the batches changed between the two passes: more rows than the {total} "
                                     f"checked; {_written(written, total)}")
                out = indices[written : written + n] if keep else np.empty(n, dtype=np.int64)
                _append(appender, prepared, out, bar)
                written += n
    finally:
        if bar is not None:
            bar.close()
    if written != total:
        raise ValueError(f"the batches changed between the two passes: {total} rows checked, {written} written")
    return written, indices


def _written(written: int, total: int) -> str:
    return f"{written} of the {total} rows checked were written before" if written else "nothing was written"


def write_frames(
    frames: Mapping[str, Any],
    path: str | os.PathLike[str],
    types: Any,
    date: _dt.date | _dt.datetime | str | None = None,
    *,
    timestamp_column: str | None = None,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    clock: Any = None,
    progress: bool | None = None,
    threads: int | None = None,
    order_by: str | None = None,
) -> dict[str, npt.NDArray[np.int64]]:
    """Append the frames of several message types as one stream, merged by the header's timestamp.

    Parameters
    ----------
    frames : dict
        ``{type name: DataFrame, Arrow table or dict of columns}``; each has its type's columns (the header
        fields except the tag, then its own; a tag column, if present, must hold the type's tag value).
    types : MessageTypes
        The header, tag and types of the journal.
    timestamp_column : str, optional
        The header field to merge by (default: the header's first ``timestamp_*`` field). Rows are merged by
        it, stably: equal timestamps keep the order of ``frames``, then row order. With no timestamp field in
        the header, the frames are appended one after the other. It also picks each row's cycle, unless
        ``date`` is given.

    order_by : str, optional
        A column of every frame to merge by instead of the timestamp (``_index`` of a message-types export:
        the journal's own order), stably as above.

    Other parameters are those of :func:`write_frame`. Every row is checked before anything is written (the
    frames one after the other, in the order given: a bad row raises a ``ValueError`` naming its frame and its
    row in that frame, with ``.frame`` and ``.row``); the messages are byte for byte those the row writer writes
    for the same values in the same order.

    Returns
    -------
    dict of numpy.ndarray
        Per type, the full index of each of its rows, in its frame's row order.

    Examples
    --------
    >>> pychro.write_frames({"trade": trades, "quote": quotes}, path, types)   # doctest: +SKIP
    {'trade': array([...]), 'quote': array([...])}
    """
    from .encode import raw_program
    from .types import MessageTypes

    if not isinstance(types, MessageTypes):
        raise TypeError(f"types must be a pychro.MessageTypes, got {type(types).__name__}")
    if not isinstance(frames, Mapping):
        raise TypeError(f"frames must be a dict {{type name: frame}}, got {type(frames).__name__}")
    for name in frames:
        types.schema(name)  # KeyError naming the types for a name that is not one
    check_threads(threads)
    journal = Journal(path, config, thread_id_bits, must_exist=False)
    journal.check_target()
    cfg = journal.config
    ts_fields = [f.name for f in types.header.fields if f.type.name.startswith("timestamp_")]
    if timestamp_column is not None and timestamp_column not in ts_fields:
        raise ValueError(f"timestamp_column={timestamp_column!r} is not a timestamp field of the header "
                         f"{str(types.header)!r}")
    ts_name = timestamp_column or (ts_fields[0] if ts_fields else None)
    names, tables, preps = [], [], []
    for name, data in frames.items():
        try:
            table = _to_table(data, types.schema(name).names + ([order_by] if order_by else []))
        except (ValueError, TypeError) as exc:  # not a frame, columns that Arrow cannot take, duplicate names
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(f"frame {name!r}: {exc}") from None
        table = _with_tag(table, types, name)
        try:
            prepared = _prepare(table, types.schema(name), cfg, date, ts_name, clock, 1)
        except RowError as exc:  # the frames are checked one after the other, in the order given
            raise RowError(exc.row, exc.why, frame=name) from None
        except ValueError as exc:
            raise ValueError(f"frame {name!r}: {exc}") from None
        names.append(name)
        tables.append(table)
        preps.append(prepared)
    counts = [t.num_rows for t in tables]
    total = sum(counts)
    # checked even when there is nothing to write: a wrong order_by is an error, not a silent no-op
    keys = None if order_by is None else [_merge_key(t, order_by, name) for t, name in zip(tables, names)]
    if not total:
        return {name: np.empty(0, dtype=np.int64) for name in names}
    # every type's messages laid out once; then one program of raw bodies in merged order
    bodies, starts, lengths, cycles, stamps = [], [], [], [], []
    base = 0
    for prep, n in zip(preps, counts):
        sizes = (prep.lengths + 4 + 3) & ~3  # header and padding: the layout place() writes
        buf = np.zeros(int(sizes.sum()) + 64, np.uint8)
        used = prep.program.place(range(n), prep.lengths, buf)
        bodies.append(buf[:used])
        starts.append(base + np.cumsum(sizes) - sizes + 4)
        base += used
        lengths.append(prep.lengths)
        cycles.append(np.broadcast_to(prep.cycles, (n,)) if n else prep.cycles[:0])
        if ts_name is not None and order_by is None:
            stamps.append(np.asarray(prep.program.steps[prep.program.names.index(ts_name)].values, np.int64))
    if keys is not None:
        stamps = keys
    all_lengths = np.concatenate(lengths)
    order = (np.argsort(np.concatenate(stamps), kind="stable") if stamps
             else np.arange(total, dtype=np.int64))
    program = raw_program(np.concatenate(bodies), np.concatenate(starts)[order], all_lengths[order])
    merged = _Prepared(program, all_lengths[order], np.concatenate(cycles)[order])
    make_folder(journal.path)
    out = _append_all(journal, merged, total, workers_for(threads, total), progress)
    full = np.empty(total, dtype=np.int64)
    full[order] = out
    edges = np.cumsum([0, *counts])
    return {name: full[a:b] for name, a, b in zip(names, edges[:-1], edges[1:])}


def _merge_key(table: Any, column: str, name: str) -> npt.NDArray[np.int64]:
    pa = require("pyarrow")
    if column not in table.column_names:
        raise ValueError(f"frame {name!r} has no column {column!r} to merge by (order_by=)")
    if table.column_names.count(column) > 1:
        raise ValueError(f"frame {name!r} has more than one column named {column!r} (order_by=)")
    col = table.column(column)
    if not len(col):  # no values: a 0-row frame's dtype (pandas' object or float64) does not matter
        return np.empty(0, dtype=np.int64)
    bad = ValueError(f"order_by={column!r}: frame {name!r}'s column must be integers or timestamps that fit int64, "
                     "no nulls")
    if col.null_count or not (pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type)):
        raise bad
    try:
        return np.asarray(col.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    except pa.ArrowInvalid:  # uint64 above 2**63 - 1
        raise bad from None


def _with_tag(table: Any, types: Any, name: str) -> Any:
    """The table with its type's tag column (added as a constant; checked when the frame has one)."""
    pa = require("pyarrow")
    tag, value = types.tag, types.value(name)
    arrow = types.header.to_arrow().field(tag).type
    if table.column_names.count(tag) > 1:
        raise ValueError(f"frame {name!r}: the data has more than one column named {tag!r} (the tag)")
    if tag in table.column_names:
        col = table.column(tag)
        try:
            same = not col.null_count and (not len(col) or pa.compute.all(pa.compute.equal(col, value)).as_py())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # text against a number ...
            same = False
        if not same:
            raise ValueError(f"frame {name!r}: column {tag!r} must hold the type's tag {value!r} in every row "
                             f"(it is {col.type}; leave it out and write_frames fills it in)")
        return table
    values = [value] * table.num_rows if types.tag_is_text else np.full(table.num_rows, value)
    return table.append_column(pa.field(tag, arrow), pa.array(values, type=arrow))


def _shifted(exc: ValueError, first_row: int) -> ValueError:
    """The same error with its row counted from the start of the stream instead of its batch."""
    return RowError(exc.row + first_row, exc.why) if isinstance(exc, RowError) else exc


# -- preparing and appending -----------------------------------------------------------------------------
class _Prepared(NamedTuple):
    program: Program
    lengths: npt.NDArray[np.int64]
    cycles: npt.NDArray[np.int64]  # per row (or one for all)


def _prepare(
    table: Any, schema: Schema, cfg: VanillaConfig, date: Any, timestamp_column: str | None, clock: Any, workers: int
) -> _Prepared:
    """Every row checked, its message length and its cycle; nothing written. A bad row raises
    :class:`RowError` naming the first bad row of the table, whichever check finds it."""
    try:
        return _prepare_rows(table, schema, cfg, date, timestamp_column, clock, workers)
    except RowError as exc:
        first = exc
    # The checks run by kind: each field's own (nulls, then ranges ...), then over whole rows (in C), then on
    # the cycles; each names its first bad row, which may come after another check's. Rows before it are
    # checked again, alone: a few rounds at most (not one per field: every field is checked in each round).
    while first.row > 0:
        try:
            _prepare_rows(table.slice(0, first.row), schema, cfg, date, timestamp_column, clock, workers)
        except RowError as exc:
            first = exc
            continue
        break
    raise first from None


def _prepare_rows(
    table: Any, schema: Schema, cfg: VanillaConfig, date: Any, timestamp_column: str | None, clock: Any, workers: int
) -> _Prepared:
    n = table.num_rows
    steps, names, columns = [], [], []
    first: RowError | None = None  # the first bad row the fields' own checks found
    where = _positions(table.column_names)
    for f in schema.fields:
        col = _column(table, f, where)
        try:
            made = _encode_list(f, col) if f.kind == LIST else [_encode(f, col, n)]
        except RowError as exc:
            first = earlier(first, exc)
            continue
        steps += made
        names += [f.name] * len(made)
        columns += [col] * len(made)
    if first is not None:
        raise first
    program = Program(steps, n, names, columns)
    lengths = program.lengths(workers)
    if n and int(lengths.max()) > cfg.message_capacity:
        r = int(np.argmax(lengths > cfg.message_capacity))
        raise RowError(
            r, f"message of {int(lengths[r])} bytes exceeds the message capacity of {cfg.message_capacity} "
            "bytes (raise config message_capacity)"
        )
    return _Prepared(program, lengths, _cycles(program, schema, cfg, n, date, timestamp_column, clock))


def _append_all(journal: Journal, prepared: _Prepared, n: int, workers: int, progress: bool | None,
                ) -> npt.NDArray[np.int64]:
    """All ``n`` rows of one prepared table through a new appender (fresh data files); their full indices."""
    out = empty(n, np.int64)  # Arrow's pool: a big array reuses freed memory (np.empty maps fresh pages)
    if not n:
        return out
    bar = _bar(n, progress)
    try:
        with BulkAppender(journal, workers=workers) as appender:
            _append(appender, prepared, out, bar)
    finally:
        if bar is not None:
            bar.close()
    return out


def _append(appender: BulkAppender, prepared: _Prepared, out: npt.NDArray[np.int64], bar: Any) -> None:
    """All rows of one prepared table, cycle by cycle (in row order within each)."""
    for cycle, rows in _by_cycle(prepared.cycles, len(out)):
        appender.append(cycle, rows, prepared.program, prepared.lengths, out, bar)


def _by_cycle(cycles: npt.NDArray[np.int64], n: int) -> Iterator[tuple[int, range | npt.NDArray[np.int64]]]:
    """Each cycle of the rows, ascending, with its rows in row order. Rows in time order (cycles never
    decrease, the usual case) give one run of rows per cycle, found in O(n); only other orders are sorted (a
    sort of 1 M rows cost as much as a third of ``write_frame``)."""
    if len(cycles) <= 1:  # one cycle for all rows
        if n:
            yield int(cycles[0]), range(n)
        return
    step = np.diff(cycles)
    if not (step < 0).any():
        edges = [0, *(np.flatnonzero(step) + 1).tolist(), n]
        for a, b in pairwise(edges):
            yield int(cycles[a]), range(a, b)
        return
    order = np.argsort(cycles, kind="stable")  # rows of one cycle stay in row order
    edges = [0, *(np.flatnonzero(np.diff(cycles[order])) + 1).tolist(), n]
    for a, b in pairwise(edges):
        yield int(cycles[order[a]]), order[a:b]


# -- input -------------------------------------------------------------------------------------------------
def _to_table(data: Any, names: list[str] | None = None) -> Any:
    """``data`` as an Arrow table. Of a DataFrame or dict, only the columns ``names`` (a schema's) are converted
    when given: the others are ignored, whatever they hold."""
    pa = require("pyarrow", purpose="write_frame")
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    pd = sys.modules.get("pandas")  # (a pandas object can only come from an imported pandas)
    is_pandas = pd is not None and isinstance(data, pd.DataFrame)  # a Series, Index ...: refused below
    if isinstance(data, dict) or is_pandas:
        keys = list(data.columns if is_pandas else data.keys())
        if names is not None:
            wanted = set(names)
            keys = [k for k in keys if str(k) in wanted]  # (pyarrow names a column 1 '1')
            if not is_pandas and len({len(v) for v in data.values() if hasattr(v, "__len__")}) > 1:
                keys = list(data.keys())  # columns of different lengths: not a frame, whichever are used
        twice = sorted(str(k) for k, times in Counter(keys).items() if times > 1)  # (count() per key: quadratic)
        if is_pandas and twice:
            raise ValueError(f"the DataFrame has more than one column named {', '.join(map(repr, twice))}")
        try:
            if is_pandas:  # (pyarrow refuses a frame with a name twice, even among the columns not converted)
                frame = data[keys] if data.columns.has_duplicates else data
                return pa.Table.from_pandas(frame, preserve_index=False, columns=keys)
            return pa.table({k: data[k] for k in keys})
        except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
            raise _conversion_error(pa, data, keys, exc) from None
    if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__"):  # polars, DuckDB, ...
        try:
            return pa.table(data)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ValueError(f"the {type(data).__name__} could not be read as Arrow data: {exc}") from None
    raise TypeError(
        f"write_frame takes a pandas DataFrame, a pyarrow Table/RecordBatch, a dict of columns or an object with "
        f"the Arrow PyCapsule interface (__arrow_c_stream__: polars, DuckDB ...), not {type(data).__module__}."
        f"{type(data).__name__}"
    )


def _conversion_error(pa: Any, data: Any, keys: list[Any], exc: BaseException) -> ValueError:
    """Arrow could not take the data: name the column (values too big for int64, lone surrogates, ...)."""
    for name in keys:
        values = data[name]
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            continue
        try:
            pa.array(values, from_pandas=True)
        except (pa.ArrowException, OverflowError, ValueError, TypeError) as col_exc:
            return ValueError(f"column {name!r} cannot be converted to Arrow: {col_exc}")
    return ValueError(f"the data cannot be converted to an Arrow table: {exc}")


def _positions(names: list[str]) -> dict[str, int]:
    """Column name -> its position; -1 for a name held by more than one column."""
    where: dict[str, int] = {}
    for i, name in enumerate(names):
        where[name] = -1 if name in where else i
    return where


def _column(table: Any, field: Any, where: dict[str, int]) -> Any:
    """The column of ``field`` (``where``: :func:`_positions` of the table's names; by name, pyarrow looks a
    column up by a scan of them all: a frame of 5000 columns took minutes)."""
    if field.kind == SKIP:
        return None
    if field.name not in where:
        raise ValueError(f"the data has no column {field.name!r} (schema field {field.name}:{field.type.name})")
    if where[field.name] < 0:
        raise ValueError(f"the data has more than one column named {field.name!r}")
    col = table.column(where[field.name])
    if not len(col):  # no values to convert: a 0-row frame's dtypes (pandas' defaults, say) do not matter
        return require("pyarrow").array([], type=arrow_type(field.type))
    col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()  # one chunk: no copy
    return _typed_nulls(col, arrow_type(field.type))


def _typed_nulls(values: Any, arrow: Any) -> Any:
    """Values of Arrow's null type (pandas' all-None column, entries of lists all empty: Arrow could not tell
    their type) as nulls of ``arrow``, for the field's own checks; any other values as they are (never cast:
    a cast would take text for numbers)."""
    pa = require("pyarrow")
    return pa.nulls(len(values), arrow) if pa.types.is_null(values.type) else values


def _first_null(col: Any, field: Any) -> None:
    if col.null_count:
        import pyarrow.compute as pc

        r = int(pc.index(col.is_null(), True).as_py())
        raise RowError(r, f"column {field.name!r} is null; {field.type.name} fields cannot hold nulls")


def _encode(field: Any, col: Any, n: int) -> Step:
    """The encoder step of one field: its column's buffers as they are when they already hold the field's
    values in its layout, else converted (and range-checked) once, in bulk."""
    pa = require("pyarrow")
    ft = field.type
    if ft.kind == SKIP:
        return Step(C.K_ZERO, ft.size)
    if ft.kind in (STRING, UTF):
        return _encode_text(field, col)
    t = col.type
    name = ft.name
    if name.startswith("float"):
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            raise ValueError(f"column {field.name!r}: {name} fields take numbers, not {t}")
        return _floats(col, ft.dtype, field.name)
    _first_null(col, field)
    if name.startswith("timestamp_"):
        unit = name.split("_")[1]
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            try:
                col = col.cast(pa.timestamp(unit, tz="UTC") if pa.types.is_timestamp(t) else pa.timestamp(unit))
            except pa.ArrowInvalid:  # pyarrow names neither the column nor the row
                _lossy_timestamps(field, col, unit)
            values = col.cast(pa.int64()).to_numpy(zero_copy_only=False)
        else:
            values = _integers(field, col, "int64")
        return _fixed(values, "<i8")
    if name == "bool":
        if pa.types.is_boolean(t):
            return Step(C.K_BOOL_BITS, 1, col.buffers()[1], bit_offset=col.offset)  # Arrow's bits, as they are
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise ValueError(f"column {field.name!r}: bool fields take booleans or numbers, not {t}")
        values = col.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f" and np.isnan(values).any():  # (NaN != 0: it was written as true)
            r = int(np.flatnonzero(np.isnan(values))[0])
            raise RowError(r, f"column {field.name!r} value nan is not true or false (a bool field takes booleans "
                              "or numbers, nonzero as true)")
        truth = values != 0
        return _fixed(truth.view(np.uint8) * np.uint8(0x59), "u1")  # Java writes 'Y'
    if name == "char":
        return _chars(field, col)
    if ft.kind == STOPBIT:
        return Step(C.K_STOPBIT, 8, np.require(_integers(field, col, "int64"), "<i8", ["C", "A"]))
    assert ft.kind == FIXED
    return _fixed(_integers(field, col, ft.dtype), ft.dtype)


def _encode_list(field: Any, col: Any) -> list[Step]:
    """A repeated group as the row writer writes it: ``writeStopBit(count)``, then each entry's fields. Two
    steps: the counts (stop-bit) and the entries' bytes, laid out once for the whole column (one strided copy
    per entry field) and copied per row as they are."""
    pa = require("pyarrow")
    ft, t = field.type, col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise ValueError(f"column {field.name!r}: {ft.name} fields take lists, not {t}")
    if col.null_count:
        r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise RowError(r, f"column {field.name!r} is null; a repeated group has no null (write an empty list)")
    bounds = col.offsets.to_numpy().astype(np.int64)
    counts = np.diff(bounds)
    entries = _typed_nulls(col.flatten(), arrow_type(ft).value_type)  # these rows' entries (slices respected)

    def entry_error(entry: int, why: str) -> RowError:
        """The error of entry ``entry`` (counted over all rows' entries), naming its row and its place there."""
        r = int(np.searchsorted(bounds[1:] - bounds[0], entry, "right"))
        return RowError(r, f"{why} (entry {entry - int(bounds[r] - bounds[0])} of the row)")

    def first_null(values: Any) -> int:
        return int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])

    if entries.null_count:  # a null entry (a null struct, or a null value of a plain list)
        if pa.types.is_struct(entries.type) or not ft.items[0].type.name.startswith("float"):
            raise entry_error(first_null(entries), f"column {field.name!r} has a null entry; a repeated group's "
                              "entries cannot be null")
    size = ft.entry_size
    raw = np.zeros((len(entries), size), np.uint8)
    cols = [f for f in ft.items if f.is_column]
    if pa.types.is_struct(entries.type):
        missing = [f.name for f in cols if entries.type.get_field_index(f.name) < 0]
        if missing:
            raise ValueError(f"column {field.name!r}: its entries have no field {missing[0]!r} ({ft.name})")
        children = {f.name: _typed_nulls(entries.field(f.name), arrow_type(f.type)) for f in cols}
    elif len(cols) == 1 and not cols[0].name:
        children = {"": entries}
    else:
        raise ValueError(f"column {field.name!r}: {ft.name} entries are structs with fields "
                         f"{[f.name for f in cols]}, not {entries.type}")
    at = 0
    first: RowError | None = None  # the first bad entry of any entry field (all are checked: see _prepare)
    for f in ft.items:
        if f.is_column:
            child = children[f.name]
            label = f"{field.name}.{f.name}" if f.name else field.name
            try:
                if child.null_count and not f.type.name.startswith("float"):
                    raise RowError(first_null(child), f"column {label!r} has a null entry; {f.type.name} entries "
                                   "cannot be null")
                step = _encode(Field(label, f.type), child, len(child))
            except RowError as exc:  # its row is an entry (of all rows' entries)
                first = earlier(first, exc)
            else:
                raw[:, at : at + f.type.size] = _step_bytes(step, len(child))
        at += f.type.size
    if first is not None:
        raise entry_error(first.row, first.why)
    pairs = np.empty((len(counts), 2), np.int64)
    pairs[:, 0] = (bounds[:-1] - bounds[0]) * size
    pairs[:, 1] = (bounds[1:] - bounds[0]) * size
    return [Step(C.K_STOPBIT, 8, np.require(counts, "<i8", ["C", "A"])), Step(C.K_RAW, 0, raw.reshape(-1), pairs)]


def _step_bytes(step: Step, n: int) -> npt.NDArray[np.uint8]:
    """The ``n`` values of a fixed-size step as the bytes the encoder writes, one row of bytes per value."""
    if step.kind == C.K_BOOL_BITS:
        bits = np.unpackbits(np.frombuffer(step.values, np.uint8), bitorder="little")
        return (bits[step.bit_offset : step.bit_offset + n] * np.uint8(0x59)).reshape(n, 1)
    values = np.asarray(step.values)[:n]
    out = values.view(np.uint8).reshape(n, step.size).copy()
    if step.validity is not None:  # floats: a null is written as NaN (the step's fill)
        assert step.fill is not None
        valid = np.unpackbits(np.frombuffer(step.validity, np.uint8), bitorder="little")
        invalid = valid[step.bit_offset : step.bit_offset + n] == 0
        out[invalid] = np.frombuffer(step.fill, np.uint8)
    return out


def _lossy_timestamps(field: Any, col: Any, unit: str) -> NoReturn:
    """Raise a RowError naming the column and the first row whose value a cast to ``unit`` would change (finer
    than the unit) or that does not fit in int64 ``unit`` (past 2262 in ns, say)."""
    pa = require("pyarrow")
    if pa.types.is_date(col.type):  # days or ms since 1970: as ms (within int64 for every date32 and date64)
        col = col.cast(pa.timestamp("ms"))
    src = col.type.unit
    scale = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}
    raw = col.cast(pa.int64()).to_numpy(zero_copy_only=False)
    if scale[src] > scale[unit]:
        lost = np.flatnonzero(raw % (scale[src] // scale[unit]) != 0)
        if len(lost):
            r = int(lost[0])
            raise RowError(
                r, f"column {field.name!r}: {raw[r]} {src} since 1970 has finer precision than the "
                f"field's timestamp_{unit} keeps; round the column first (e.g. series.dt.floor({unit!r})) "
                f"or use a timestamp_{src} field"
            )
    else:
        factor = scale[unit] // scale[src]
        over = np.flatnonzero((raw > (2**63 - 1) // factor) | (raw < -(2**63 // factor)))
        if len(over):
            r = int(over[0])
            years = ", years 1677 to 2262" if unit == "ns" else ""
            raise RowError(r, f"column {field.name!r}: {raw[r]} {src} since 1970 does not fit in the field's "
                              f"timestamp_{unit} (int64 {unit}{years})")
    raise ValueError(f"column {field.name!r}: its {col.type} values do not fit in timestamp_{unit} (int64 {unit})")


def _fixed(values: npt.NDArray[Any], dtype: str) -> Step:
    arr = np.ascontiguousarray(values, dtype=np.dtype(dtype))  # no copy when it already is
    return Step(C.K_FIXED, arr.dtype.itemsize, arr)


def _floats(col: Any, dtype: str, name: str) -> Step:
    """A null is written as NaN: pandas turns NaN into null on the way to Arrow, and back on the way out."""
    pa = require("pyarrow")
    target = np.dtype(dtype)
    nan = np.full(1, np.nan, dtype=target).tobytes()  # the NaN the row writer packs
    same = pa.types.is_float64(col.type) if target.itemsize == 8 else pa.types.is_float32(col.type)
    if same:  # the column's own buffers, nulls by its validity bitmap
        values = _whole_values(col.buffers()[1], target)[col.offset : col.offset + len(col)]
        validity = col.buffers()[0] if col.null_count else None
        return Step(C.K_FIXED, target.itemsize, values, None, validity, col.offset, nan)
    if col.null_count or pa.types.is_decimal(col.type):
        col = col.cast(pa.float64()).fill_null(float("nan"))
    src = col.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):
        values = src.astype(target, copy=False)
    if target.itemsize == 4 and src.dtype.kind == "f":
        big = np.isinf(values) & np.isfinite(src)  # finite, but beyond float32: the row writer refuses it too
        if big.any():
            r = int(np.argmax(big))
            raise RowError(r, f"column {name!r} value {float(src[r])!r} does not fit in a Java float "
                             f"(float32, |x| <= {float(np.finfo(np.float32).max):.7g})")
    return _fixed(values, dtype)


def _integers(field: Any, col: Any, dtype: str) -> npt.NDArray[Any]:
    """Integer values, range-checked against the field type (first offending row named)."""
    pa = require("pyarrow")
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise ValueError(f"column {field.name!r}: {field.type.name} fields take integers, not {t}")
    values = col.to_numpy(zero_copy_only=False)
    target = np.dtype(dtype)
    if values.dtype.kind in "iub" and _fits(values.dtype, field.type.name):
        return values.astype(target, copy=False)  # every value of the source type fits: nothing to check
    lo, hi = _INT_RANGE.get(field.type.name, _INT_RANGE["int64"])
    whole = None
    if values.dtype == np.float16:  # the bounds as float16 overflow (a RuntimeWarning; an error under -W error)
        values = values.astype(np.float64)
    if values.dtype.kind == "f":
        # hi + 1 is a power of two, exact as a float; hi is not always (2**63 - 1 rounds up to 2**63)
        whole = np.isfinite(values) & (values == np.floor(values))
        over = ~whole | (values < lo) | (values >= hi + 1)
    elif values.dtype.kind == "u" and values.dtype.itemsize == 8:
        over = values > np.uint64(hi)
    else:
        v = values.astype(np.int64)
        over = (v < lo) | (v > hi)
    if over.any():
        r = int(np.flatnonzero(over)[0])
        why = "is not an integer" if whole is not None and not whole[r] else f"does not fit in {field.type.name}"
        raise RowError(r, f"column {field.name!r} value {values[r].item()!r} {why}")
    return values.astype(target, copy=False)


def _fits(source: np.dtype[Any], type_name: str) -> bool:
    """Every value of integer (or bool) dtype ``source`` lies in the range of field type ``type_name``."""
    lo, hi = _INT_RANGE.get(type_name, _INT_RANGE["int64"])
    info = np.iinfo(source) if source.kind != "b" else None
    return info is None or (lo <= int(info.min) and int(info.max) <= hi)


def _chars(field: Any, col: Any) -> Step:
    """One UTF-16 code unit per row, from 1-character strings (BMP, checked by the C) or integer code units."""
    pa = require("pyarrow")
    t = col.type
    if pa.types.is_integer(t):
        return _fixed(_integers(field, col, "<u2"), "<u2")
    if not _is_text(t) and not (pa.types.is_dictionary(t) and _is_text(t.value_type)):
        raise ValueError(f"column {field.name!r}: char fields take 1-character strings or integers, not {t}")
    return _text_step(C.K_CHAR, _offsets_text(col))


def _encode_text(field: Any, col: Any) -> Step:
    pa = require("pyarrow")
    t = col.type
    if pa.types.is_dictionary(t) and _is_text(t.value_type):
        col, t = _offsets_text(col), pa.large_string()  # pandas and polars categoricals
    if not _is_text(t):  # (a column of nulls alone came as text: see _column)
        raise ValueError(f"column {field.name!r}: {field.type.name} fields take strings, not {t}")
    col = _offsets_text(col)
    if field.type.kind == UTF:
        _first_null(col, field)
    return _text_step(C.K_UTF if field.type.kind == UTF else C.K_STRING, col)


def _offsets_text(col: Any) -> Any:
    """Text with offsets, which the C reads: string views (polars) cast, categoricals (a dictionary, of views
    too) decoded."""
    pa = require("pyarrow")
    t = col.type
    if pa.types.is_dictionary(t):
        values = col.dictionary
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = values.cast(pa.large_string())  # pyarrow cannot take() from string views
        return pa.DictionaryArray.from_arrays(col.indices, values).dictionary_decode()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col
    return col.cast(pa.large_string())


def _whole_values(buffer: Any, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """An Arrow buffer (or None) as an array of ``dtype``, in place: the whole values it holds (Arrow lets a buffer
    run past its last value by any number of bytes)."""
    count = buffer.size // dtype.itemsize if buffer is not None else 0
    return np.frombuffer(buffer, dtype, count=count) if count else np.zeros(0, dtype)


def _text_step(kind: int, col: Any) -> Step:
    """A step over an Arrow string or large_string array's own buffers: validity, offsets, UTF-8 data."""
    pa = require("pyarrow")
    validity, offsets, data = col.buffers()
    width = 8 if pa.types.is_large_string(col.type) else 4
    n = len(col)
    off = _whole_values(offsets, np.dtype(f"<i{width}"))
    off = off[col.offset : col.offset + n + 1] if len(off) > n else np.zeros(n + 1, f"<i{width}")  # empty arrays
    off = np.require(off, requirements="A")  # a copy only for offsets at an odd address (a foreign buffer)
    return Step(kind, width, data if data is not None else b"", off, validity if col.null_count else None, col.offset)


def _is_text(t: Any) -> bool:
    pa = require("pyarrow")
    is_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or is_view(t))


def _cycles(
    program: Program, schema: Schema, cfg: VanillaConfig, n: int, date: Any, ts_name: str | None, clock: Any,
) -> npt.NDArray[np.int64]:
    """Each row's cycle (one value when all rows share it), from the timestamp field as it will be written."""
    if date is not None:
        date = as_date(date)  # an ISO string, as the readers take
        if not isinstance(date, _dt.date):
            raise TypeError(f"date must be a datetime.date, datetime.datetime or ISO string, got {type(date).__name__}")
        return np.full(min(n, 1), cfg.check_cycle(cfg.cycle_of(date), f"date {date}"), dtype=np.int64)
    ts_fields = [f for f in schema.fields if f.type.name.startswith("timestamp_")]
    if ts_name is not None:
        matches = [f for f in ts_fields if f.name == ts_name]
        if not matches:
            raise ValueError(f"timestamp_column {ts_name!r} is not a timestamp field of the schema")
        ts_fields = matches
    if not ts_fields:
        now = clock() if clock is not None else time.time_ns() // 1_000_000
        if not isinstance(now, numbers.Integral) or isinstance(now, bool):
            raise TypeError(f"clock() must return epoch milliseconds as an int, got {type(now).__name__}")
        now = int(now)
        cycle = cfg.check_cycle(cfg.cycle_of_ms(now), f"the clock ({now} ms since 1970)")
        return np.full(min(n, 1), cycle, dtype=np.int64)
    f = ts_fields[0]
    unit = f.type.name.split("_")[1]
    values = program.steps[program.names.index(f.name)].values  # the timestamp as written: int64 in its unit
    per_ms = {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    length = cfg.cycle_length_ms
    assert length is not None  # set for every config (VanillaConfig.__post_init__)
    cycles = values // (per_ms * length)  # floor(floor(v / a) / b) == floor(v / (a * b))
    if n and (int(cycles.min()) < 0 or int(cycles.max()) > cfg.max_cycle):
        # before 1970 a full index would be negative: no reader (Java's or ours) takes one
        r = int(np.argmax((cycles < 0) | (cycles > cfg.max_cycle)))
        try:
            cfg.check_cycle(int(cycles[r]), f"{f.name} = {int(values[r])} ({unit} since 1970)")
        except ValueError as exc:
            raise RowError(r, str(exc)) from None
    return cycles


def _bar(total: int, progress: bool | None) -> Any:
    from .._progress import progress_bar

    return progress_bar(total, "rows", progress, big=2_000_000)
