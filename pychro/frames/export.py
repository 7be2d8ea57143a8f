"""Export journals to Parquet, Arrow IPC and CSV, streaming decoded batches (bounded memory).

The pychro schema and the source range travel in the file's metadata (``pychro.schema``, ``pychro.source``),
so :func:`load_file` (and ``pychro import``) can append an exported file back into a journal with no schema.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from .._optional import require
from ..config import VanillaConfig
from ..journal import Journal
from .decode import recycle
from .parquet_file import ParquetFile
from .schema import LIST, META_SCHEMA, Schema, SchemaLike

__all__ = ["export", "import_file", "load_file", "partition_name", "to_csv", "to_ipc", "to_parquet"]

META_SOURCE = b"pychro.source"
_EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet", ".arrow": "ipc", ".feather": "ipc", ".ipc": "ipc", ".csv": "csv",
}


def to_parquet(
    path: str | os.PathLike[str],
    schema: SchemaLike,
    out: str | os.PathLike[str],
    date: Any = None,
    start: Any = None,
    end: Any = None,
    *,
    columns: list[str] | None = None,
    errors: str = "raise",
    row_group_rows: int = 1 << 20,
    compression: str | None = "snappy",
    partition_by: str | None = None,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    progress: bool | None = None,
    parallel: bool = False,
    timestamp_column: str | None = None,
    stats: Any = None,
    unknown: str = "raise",
) -> int:
    """Stream a journal (or a date/index range of it) into a Parquet file; returns the rows written.

    With :class:`~pychro.MessageTypes` instead of a schema, ``out`` is a folder: one ``<type>.parquet`` per
    type (``<type>/date=YYYY-MM-DD/part-0.parquet`` when partitioned), written in one pass, each with an
    ``_index`` column first (the message's full index: ``pychro import`` of the folder restores the journal's
    order); ``columns=`` and ``unknown=`` are those of :func:`pychro.read_tables`, and the rows written are
    returned per type (a dict).

    ``partition_by="date"`` writes a hive-style dataset instead: one ``date=YYYY-MM-DD/part-0.parquet`` per
    cycle (``cycle=<folder>`` for non-daily cycles) under ``out``; with ``parallel=True`` the cycles are
    exported as Dask tasks on the current scheduler (``pip install "pychro[dask]"``). Memory stays bounded
    by about one row group per running task.

    ``date``, ``start``/``end`` (full indices, or datetimes / ISO strings selecting rows by the timestamp
    field, ``end`` exclusive), ``columns``, ``errors``, ``timestamp_column`` and ``stats`` mean what they mean
    for :func:`pychro.read_table`.

    Row groups hold ``row_group_rows`` rows (default 1 Mi, as ``pq.write_table``); each is written while the
    next one is decoded and gathered on a background thread. Smaller row groups cost pyarrow more to write
    (each starts its column dictionaries afresh), larger ones more memory. Columns are dictionary-encoded, as by
    ``pq.write_table``, except those whose distinct values (estimated from samples: a day's timestamps, random
    prices) would fill pyarrow's 1 MiB dictionary twice over: it would overflow and fall back to plain
    encoding, costing time and saving no space. Text columns whose values fit that dictionary are handed to
    pyarrow already dictionary-encoded (the same file, written faster: ``pychro/frames/parquet_file.py``).
    The file is written as ``<out>.partial`` and renamed to ``out`` when complete (an older ``out`` is removed
    just before): a failed export leaves no partial file and an older ``out`` as it was. An export to a name
    another export is writing is refused (an ``OSError``, EBUSY) before it decodes a row.

    Examples
    --------
    >>> pychro.to_parquet(journal_dir, "ts:timestamp_ms,px:float64", "ticks.parquet")  # doctest: +SKIP
    2000000
    """
    if _is_types(schema):
        if parallel:
            raise ValueError("parallel=True exports one schema; message types are exported in one pass without it")
        return _types(  # type: ignore[return-value]
            "parquet", path, schema, out, date, start, end, columns, row_group_rows, compression, partition_by,
            config, thread_id_bits, progress, errors, timestamp_column, stats, unknown)
    if unknown != "raise":
        raise ValueError("unknown= is for message types (a pychro.MessageTypes), not a single schema")
    if parallel:
        if partition_by is None:
            raise ValueError("parallel=True needs partition_by='date' (one file per cycle)")
        from .args import check_rows
        from .dask import to_parquet_dask

        check_rows(row_group_rows, "row_group_rows")
        check_compression("parquet", compression)
        check_outside(path, out)
        return to_parquet_dask(path, schema, out, date, start, end, columns=columns, row_group_rows=row_group_rows,
                               compression=compression, config=config, thread_id_bits=thread_id_bits,
                               errors=errors, timestamp_column=timestamp_column)
    return _export("parquet", path, schema, out, date, start, end, columns, row_group_rows, compression,
                   partition_by, config, thread_id_bits, progress, errors, timestamp_column, stats)


def to_ipc(
    path: str | os.PathLike[str], schema: SchemaLike, out: str | os.PathLike[str], date: Any = None,
    start: Any = None, end: Any = None, *, columns: list[str] | None = None, errors: str = "raise",
    row_group_rows: int = 1 << 20, compression: str | None = None, partition_by: str | None = None,
    config: VanillaConfig | None = None, thread_id_bits: int | None = None, progress: bool | None = None,
    timestamp_column: str | None = None, stats: Any = None, unknown: str = "raise",
) -> int:
    """Like :func:`to_parquet`, writing an Arrow IPC (Feather v2) file."""
    if _is_types(schema):
        return _types(  # type: ignore[return-value]
            "ipc", path, schema, out, date, start, end, columns, row_group_rows, compression, partition_by,
            config, thread_id_bits, progress, errors, timestamp_column, stats, unknown)
    return _export("ipc", path, schema, out, date, start, end, columns, row_group_rows, compression,
                   partition_by, config, thread_id_bits, progress, errors, timestamp_column, stats)


def to_csv(
    path: str | os.PathLike[str], schema: SchemaLike, out: str | os.PathLike[str], date: Any = None,
    start: Any = None, end: Any = None, *, columns: list[str] | None = None, errors: str = "raise",
    row_group_rows: int = 1 << 20, partition_by: str | None = None, config: VanillaConfig | None = None,
    thread_id_bits: int | None = None, progress: bool | None = None, timestamp_column: str | None = None,
    stats: Any = None, unknown: str = "raise",
) -> int:
    """Like :func:`to_parquet`, writing CSV (no metadata: import it back with an explicit schema)."""
    if _is_types(schema):
        return _types(  # type: ignore[return-value]
            "csv", path, schema, out, date, start, end, columns, row_group_rows, None, partition_by,
            config, thread_id_bits, progress, errors, timestamp_column, stats, unknown)
    return _export("csv", path, schema, out, date, start, end, columns, row_group_rows, None,
                   partition_by, config, thread_id_bits, progress, errors, timestamp_column, stats)


def export(
    path: str | os.PathLike[str], schema: SchemaLike, out: str | os.PathLike[str], *, fmt: str | None = None,
    **kwargs: Any,
) -> int:
    """Export with the format taken from ``out``'s extension (.parquet, .arrow/.feather, .csv)."""
    if fmt is None:
        ext = os.path.splitext(os.fspath(out))[1].lower()
        fmt = _EXTENSIONS.get(ext, "parquet" if kwargs.get("partition_by") else None)
        if fmt is None:
            raise ValueError(f"cannot tell the format of {os.fspath(out)!r}: use .parquet, .arrow, .feather or .csv")
    if kwargs.get("compression") is None:
        kwargs.pop("compression", None)
    elif fmt == "csv":
        check_compression(fmt, kwargs["compression"])
    return {"parquet": to_parquet, "ipc": to_ipc, "csv": to_csv}[fmt](path, schema, out, **kwargs)


# -- implementation -------------------------------------------------------------------------------------------
def _is_types(schema: Any) -> bool:
    from .types import MessageTypes

    return isinstance(schema, MessageTypes)


def _types(fmt: str, path: Any, types: Any, out: Any, date: Any, start: Any, end: Any, columns: Any,
           row_group_rows: int, compression: str | None, partition_by: str | None, config: Any, thread_id_bits: Any,
           progress: bool | None, errors: str, timestamp_column: str | None, stats: Any, unknown: str,
           ) -> dict[str, int]:
    from .export_types import export_types

    return export_types(fmt, path, types, out, date, start, end, columns, row_group_rows, compression, partition_by,
                        config, thread_id_bits, progress, errors, unknown, timestamp_column, stats)


def _export(
    fmt: str, path: Any, schema: SchemaLike, out: Any, date: Any, start: Any, end: Any, columns: Any,
    row_group_rows: int, compression: str | None, partition_by: str | None, config: Any, thread_id_bits: Any,
    progress: bool | None, errors: str = "raise", timestamp_column: str | None = None, stats: Any = None,
) -> int:
    import copy

    from .api import TABLE_BATCH_ROWS, ReadStats, _batches, _Read, _threads
    from .args import check_rows

    check_rows(row_group_rows, "row_group_rows")
    check_compression(fmt, compression)
    if partition_by not in (None, "date", "cycle"):
        raise ValueError(f"partition_by must be None or 'date', got {partition_by!r}")
    if partition_by is None and os.path.isdir(out):
        raise ValueError(f"out={os.fspath(out)!r} is an existing folder: give a file name, or partition_by='date' "
                         "to write one file per cycle into it")
    schema = Schema(schema)
    if fmt == "csv":
        listed = [f for f in schema.fields if f.kind == LIST and (columns is None or f.name in columns)]
        if listed:
            f = listed[0]
            raise ValueError(f"CSV has no list columns: column {f.name!r} is {f.type.name}; export to Parquet or "
                             "Arrow IPC (to_parquet, to_ipc), or leave it out with columns=")
    # one resolution of the arguments (datetime bounds narrowed to rows), shared by every partition
    r = _Read(path, schema, date, start, end, columns, errors, False, None, config, thread_id_bits, timestamp_column)
    recycle([r.plan, r.decode_plan])  # batches are dropped once written: their buffers are used again
    journal = r.journal
    check_outside(journal.path, out)
    cfg = journal.config
    ranges = r.cycles
    stats = stats if stats is not None else ReadStats()
    strict = errors == "raise"  # damaged index files raise before anything is written
    total_rows = sum(
        (journal.count(c, strict=strict) if e is None else min(e, journal.count(c, strict=strict))) - s
        for c, s, e in ranges
    )
    from .._progress import progress_bar

    bar = progress_bar(max(total_rows, 0), "rows", progress, big=5_000_000, desc="export")

    def batches(part: list[tuple[int, int, int | None]]) -> Iterator[Any]:
        rp = copy.copy(r)
        rp.cycles = part
        for batch in _batches(rp, TABLE_BATCH_ROWS, _threads(None, rp), False, 0.0, stats):
            if bar is not None:
                bar.update(batch.num_rows)
            yield batch

    source = {
        "journal": os.path.abspath(journal.path),
        "date": _jsonable(date),
        "start": _jsonable(start),
        "end": _jsonable(end),
        "config": {k: v for k, v in vars(cfg).items() if not k.startswith("_")},
    }
    rows = 0
    try:
        if partition_by is None:
            rows = _write(fmt, os.fspath(out), schema, columns, batches(ranges), row_group_rows,
                          compression, _with_range(source, ranges, journal))
        elif partition_by in ("date", "cycle"):
            ext = {"parquet": "parquet", "ipc": "arrow", "csv": "csv"}[fmt]
            with folders_for(os.fspath(out)):
                for cycle, first, stop in ranges:
                    target = os.path.join(os.fspath(out), partition_name(cfg, cycle))  # made (and removed) by _write
                    part = batches([(cycle, first, stop)])
                    rows += _write(fmt, os.path.join(target, f"part-0.{ext}"), schema, columns, part, row_group_rows,
                                   compression, _with_range(dict(source, cycle=cycle), [(cycle, first, stop)], journal))
                    if stats.truncated:  # errors="truncate" stopped at a bad message: nothing after it
                        break
    finally:
        if bar is not None:
            bar.close()
    return rows


COMPRESSION = {"parquet": ("none", "snappy", "gzip", "brotli", "lz4", "zstd"), "ipc": ("lz4", "zstd"), "csv": ()}


def check_compression(fmt: str, compression: Any) -> None:
    """A TypeError/ValueError naming ``compression`` and the values ``fmt`` takes, before anything is written."""
    if compression is None:
        return
    if not isinstance(compression, str):
        raise TypeError(f"compression= must be a str or None, got {type(compression).__name__}")
    allowed = COMPRESSION[fmt]
    if not allowed:
        raise ValueError(f"compression={compression!r} does not apply to {fmt.upper()} output (written uncompressed)")
    if compression.lower() not in allowed:
        raise ValueError(f"compression={compression!r} is not one of {', '.join(allowed)} ({fmt} output)")


def check_outside(journal: Any, out: Any) -> None:
    """A ValueError when ``out`` is inside the journal folder being read: readers never write into a journal
    (a folder there would be listed as a cycle); or when ``out`` is empty (it would name the current folder)."""
    if not os.fspath(out):
        raise ValueError("out='' names no file: give the path to write, e.g. 'ticks.parquet'")
    root = os.path.realpath(os.fspath(journal))
    target = os.path.realpath(os.fspath(out))
    if os.path.commonpath([root, target]) == root:
        raise ValueError(f"out={os.fspath(out)!r} is inside the journal {os.fspath(journal)!r} being read: "
                         "write the export somewhere else")


def partition_name(cfg: VanillaConfig, cycle: int) -> str:
    """Hive-style folder of a cycle: ``date=YYYY-MM-DD`` for daily cycles, else ``cycle=<folder name>``."""
    if cfg.cycle_length_ms == 86_400_000:
        return f"date={cfg.cycle_datetime(cycle):%Y-%m-%d}"
    return f"cycle={cfg.folder_name(cycle).replace('/', '-')}"


def _export_range(
    path: str, schema: Schema, cfg: VanillaConfig, start: int, end: int, out: str, fmt: str, columns: Any,
    row_group_rows: int, compression: str | None, errors: str = "raise", time: Any = None,
) -> int:
    """One file of messages [start, end) (a Dask export task); ``time``: the rows' timestamp range."""
    from .api import ReadStats, _batches, _Read

    r = _Read(path, schema, None, start, end, columns, errors, False, None, cfg, None, time=time)
    journal = r.journal
    source = {"journal": os.path.abspath(path), "start": start, "end": end,
              "config": {k: v for k, v in vars(cfg).items() if not k.startswith("_")}}
    # one decoding thread: the parallelism comes from running many such tasks at once
    batches = _batches(r, 65_536, 1, False, 0.0, ReadStats())
    cycle = cfg.split_index(start)[0]
    first, stop = cfg.split_index(start)[1], cfg.split_index(end)[1] if cfg.split_index(end)[0] == cycle else None
    return _write(fmt, out, schema, columns, batches, row_group_rows, compression,
                  _with_range(dict(source, cycle=cycle), [(cycle, first, stop)], journal))


def _with_range(source: dict[str, Any], ranges: list[tuple[int, int, int | None]], journal: Journal) -> dict[str, Any]:
    """The source description plus the exact index range exported (from the same snapshot of counts)."""
    cfg = journal.config
    spans = []
    for cycle, first, stop in ranges:
        count = journal.count(cycle, strict=False)  # damage was raised (or read past) by the read itself
        end = count if stop is None else min(stop, count)
        if end > first:
            spans.append([cfg.index_of(cycle, first), cfg.index_of(cycle, end)])
    return dict(source, index_ranges=spans, first_index=spans[0][0] if spans else None,
                end_index=spans[-1][1] if spans else None)


def _write(
    fmt: str, out: str, schema: Schema, columns: Any, batches: Iterator[Any], row_group_rows: int,
    compression: str | None, source: dict[str, Any], publish: Callable[[str, str, int], None] | None = None,
) -> int:
    """Write batches to one file (through ``<out>.partial``, renamed when complete, by ``publish``: by default
    :func:`_publish`)."""
    pa = require("pyarrow", purpose="export")
    arrow_schema = schema.to_arrow()
    if columns is not None:
        arrow_schema = pa.schema([arrow_schema.field(c) for c in columns], metadata=arrow_schema.metadata)
    meta = dict(arrow_schema.metadata or {})
    file_schema = arrow_schema.with_metadata({**meta, META_SOURCE: json.dumps(source, default=str).encode()})
    if out.endswith(os.sep) or (os.altsep is not None and out.endswith(os.altsep)):
        raise ValueError(f"out={out!r} names a folder: give a file name")
    parent = folder_of(out)
    tmp = out + ".partial"
    with contextlib.ExitStack() as undo:  # each step undone in reverse order, even where one of them fails
        made = make_folders(parent)
        undo.callback(_remove_folders, made, out)  # a failed export: the folders made for it go too (if empty)
        _check_writable(parent, out)
        lock = _claim(tmp, out)
        undo.callback(os.close, lock)  # last: while it is held, no other export writes or claims tmp
        undo.callback(_discard, tmp, lock)  # (once published, tmp is not the file locked: left alone)
        # Row groups are gathered on a background thread (the decoder's own threads decode ahead of it) while
        # this one writes the previous row group: export costs about max(decode, write), not their sum. Writing
        # here rather than on a background thread measured 1-7% faster at 1 M rows (the cause is not pinned
        # down). At most two row groups are held: one being written, one being gathered.
        groups = _RowGroups(batches, arrow_schema, row_group_rows)
        # The writers append to tmp, which _claim left empty. Opened by name, they would truncate it (O_TRUNC), and
        # ext4 writes a file truncated to nothing out when it is closed (auto_da_alloc): closing the file of a
        # 10 M-row export of 20 float columns took 1.35 s of its 5.2-6.3 s (3.6-3.9 s appended).
        sink = pa.OSFile(tmp, "a")
        undo.callback(sink.close)
        if fmt == "parquet":  # opened at the first row group: its rows choose the dictionary columns
            writer: Any = ParquetFile(sink, file_schema, compression or "none")
            groups.prepare = writer.prepare
            undo.callback(writer.forget)  # after the abort below, before the sink is closed
        elif fmt == "ipc":
            opts = pa.ipc.IpcWriteOptions(compression=compression) if compression else None
            writer = pa.ipc.new_file(sink, file_schema, options=opts)
        else:
            writer = _CsvWriter(sink, arrow_schema)
        closed = False
        undo.callback(lambda: None if closed else writer.abort() if fmt == "parquet" else writer.close())
        undo.callback(groups.stop)  # the gathering thread ends before the file is closed (an error here or there)
        rows = 0
        groups.start()
        for table in groups:
            if fmt == "parquet":
                writer.write(table, row_group_rows)
            else:
                writer.write_table(table)
            rows += table.num_rows
            del table  # before the next one is asked for: that frees its place (_RowGroups)
        writer.close()
        closed = True
        sink.close()
        (publish or _publish)(tmp, out, lock)
    return rows


def _check_writable(folder: str, out: str) -> None:
    """A PermissionError before anything is written where ``out`` cannot be published: a stale .partial left there
    (writable itself) was otherwise filled with the whole export, which could then be neither renamed nor removed.
    The same where the folder is sticky (as /tmp) and that .partial, or ``out``, is another user's."""
    eff = os.access in os.supports_effective_ids  # the rights this process has (its capabilities, for root)
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=eff):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, "cannot write the folder of out: its file system is mounted read-only", folder)
        raise PermissionError(errno.EACCES, "cannot create or rename files in the folder of out (permission denied)",
                              folder)
    # a sticky folder of another user: this process may rename over or remove only its own files there (unless it
    # has CAP_FOWNER, as root has)
    st, me = os.stat(folder), os.geteuid()
    if st.st_mode & stat.S_ISVTX and st.st_uid != me and not _has_fowner():
        for name in (out + ".partial", out):
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(name).st_uid != me:
                    raise PermissionError(errno.EPERM, f"{os.path.basename(name)!r} is another user's, in a folder "
                                          "whose sticky bit keeps this process from replacing or removing it: export "
                                          "to another name", name)


def _has_fowner() -> bool:
    """Whether this process has CAP_FOWNER (Linux: bit 3 of its effective capabilities; elsewhere: it is root)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 3 & 1)
    return os.geteuid() == 0


def _remove_folders(made: list[str], out: str) -> None:
    """The folders ``made`` for ``out`` (innermost first), where ``out`` was not written and they are empty."""
    if not os.path.exists(out):
        _remove_empty(made)


def _remove_empty(made: list[str]) -> None:
    """Those of the folders ``made`` (innermost first) that are empty: after a failure, what it made and left."""
    for folder in made:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def folders_for(folder: str) -> Iterator[None]:
    """``folder`` and its missing parents made (:func:`make_folders`) for the block; should the block fail, those it
    made that are left empty (nothing was written into them) are removed."""
    made = make_folders(folder)
    try:
        yield
    except BaseException:
        _remove_empty(made)
        raise


def _discard(tmp: str, lock: int) -> None:
    """Remove ``tmp`` if it is still the file ``lock`` holds (an export that failed before it published)."""
    if _holds(lock, tmp):
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _holds(fd: int, path: str) -> bool:
    """Whether the name ``path`` is still the file ``fd`` is open on (not removed, renamed away or replaced)."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        return False


def check_parquet_folder(p: str) -> None:
    """A ValueError for a folder that holds no .parquet file (CSV files, say), before pyarrow reads it."""
    names = [f for _, _, fs in os.walk(p) for f in fs]
    if not any(f.endswith(".parquet") for f in names):
        what = ("CSV files (CSV carries no schema: import each file with its schema, or export to Parquet or IPC to "
                "import a folder back)" if any(f.endswith(".csv") for f in names) else "no .parquet file")
        raise ValueError(f"{p!r} is a folder of {what}")


def folder_of(out: str) -> str:
    """The folder that holds ``out`` (a file, or an export's folder), as spelled: the kernel resolves links in it,
    so that "link/../f" is in the link's parent, not in the folder of the text's own "."."""
    bare = out.rstrip(os.sep) or out
    return os.path.dirname(bare) or os.curdir


def make_folders(folder: str) -> list[str]:
    """Make ``folder`` and its missing parents, as spelled (the kernel resolves each ``..`` after a link); returns the
    folders this call made, innermost first: only those are removed after a failure (with "new/../old", "new/.."
    and "new/../old" are there already)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        up = os.path.dirname(folder)
        if up == folder:
            break
        folder = up
    made = []
    for f in reversed(missing):
        try:
            os.mkdir(f)
        except FileExistsError:
            if os.path.isdir(f):  # made meanwhile (another export)
                continue
            if os.path.islink(f) and not os.path.exists(f):  # a raw EEXIST would say the opposite of what is wrong
                raise FileNotFoundError(errno.ENOENT, "cannot make folder: it is a symbolic link to "
                                        f"{os.readlink(f)!r}, which leads nowhere (missing, or a loop)", f) from None
            raise NotADirectoryError(errno.ENOTDIR, "cannot make folder: a file of that name is in the way"
                                     + (" (a symbolic link to one)" if os.path.islink(f) else ""), f) from None
        made.append(f)
    return made[::-1]


class _RowGroups:
    """Tables of ``row_group_rows`` rows (the last one shorter) gathered from ``batches`` on a thread of their
    own, handed over in order; at most two exist at a time. Iterate after :meth:`start`, letting go of each table
    before asking for the next: that frees its place (the gatherer then begins the table two after it, whose
    batches take the freed buffers). An error of the batches is raised by the iteration, and :meth:`stop` ends the
    thread."""

    _END = object()

    def __init__(self, batches: Iterator[Any], arrow_schema: Any, row_group_rows: int) -> None:
        self.batches, self.schema, self.size = batches, arrow_schema, row_group_rows
        self.ready: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.places = threading.Semaphore(2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._gather, name="pychro-export", daemon=True)
        self.prepare: Callable[[Any], Any] = lambda table: table  # each row group, on this thread (ParquetFile's)

    def start(self) -> None:
        self.thread.start()

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.ready.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            # its place is freed only once nothing here holds it: held while waiting for the next table (a writer
            # faster than the decoding), a third row group's buffers were made anew (an IPC export of 10 M rows of
            # 20 float columns made 404-416 MiB of buffers, 327-368 MiB once let go here)
            del item
            self.places.release()

    def stop(self) -> None:
        self.stopping.set()
        abort = getattr(self.batches, "abort", None)
        if abort is not None:
            abort()  # batches fed from another thread (exports by message type): stop waiting for the next one
        self.places.release()  # a gatherer waiting for a place wakes up and sees stopping
        if self.thread.ident is not None:
            self.thread.join()
            return
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()  # never started: the batches' decoding threads still end

    def _gather(self) -> None:
        pa = require("pyarrow", purpose="export")
        names = self.schema.names
        pending: list[Any] = []
        pending_rows = 0
        try:
            self.places.acquire()
            for batch in self.batches:
                if self.stopping.is_set():
                    return
                if not batch.num_rows:
                    continue
                pending.append(pa.RecordBatch.from_arrays([batch.column(n) for n in names], schema=self.schema))
                pending_rows += batch.num_rows
                while pending_rows >= self.size:
                    table = pa.Table.from_batches(pending, schema=self.schema)
                    self.ready.put(self.prepare(table.slice(0, self.size)))
                    rest = table.slice(self.size)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
                    del table, rest
                    self.places.acquire()
                    if self.stopping.is_set():
                        return
            if pending_rows:
                self.ready.put(self.prepare(pa.Table.from_batches(pending, schema=self.schema)))
            self.ready.put(self._END)
        except BaseException as exc:  # noqa: BLE001 - raised in the writing thread, after the row groups before it
            self.ready.put(exc)
        finally:
            close = getattr(self.batches, "close", None)
            if close is not None:
                close()  # this thread drove the generator: it closes it (its decoding pool ends)


def _claim(tmp: str, out: str) -> int:
    """A descriptor of ``tmp`` holding an exclusive lock (``flock``) on it, for as long as this export writes it.

    Why: two exports to one name would write one ``.partial`` file at once, and the second to finish removed the
    file the first had just published (both measured). The lock dies with its process, so the ``.partial`` file a
    killed export left is taken over (and truncated by the writer). The file locked may have been renamed to its
    final name by the export that held it, between this open and this lock: then it is opened again. Only the
    holder of the lock removes or renames ``tmp``. A ``tmp`` that is not a regular file (a link, whose target the
    writer would overwrite; a FIFO, where it would wait for a reader) is refused."""
    while True:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO):
                raise
            fd = -1
        st = os.fstat(fd) if fd >= 0 else None
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:  # (a hard link: its other name's file
            # would be emptied and written over)
            if fd >= 0:
                os.close(fd)
            raise FileExistsError(errno.EEXIST, f"{os.path.basename(tmp)!r}, where the export to {out!r} is "
                                  "written first, is not a file an export left (a link, a FIFO, ...): remove it",
                                  tmp)
        _lock(fd, f"another export is writing {out!r} (its {os.path.basename(tmp)!r} is locked): wait for it, or "
              "export to another name", tmp)
        if _holds(fd, tmp):
            if os.fstat(fd).st_size:  # a killed export's: emptied, as the writers append (see _write)
                os.ftruncate(fd, 0)
            return fd
        os.close(fd)


def lock_folder(folder: str) -> int:
    """A descriptor of ``folder`` holding an exclusive lock on it: one export of message types into a folder at a
    time (two at once each won one type's file and failed on the other's, and the one that had made the folder
    removed it with the other's files). An OSError (EBUSY) where another export holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _lock(fd, f"another export is writing into {os.fspath(folder)!r}: wait for it, or export into another folder",
          os.fspath(folder))
    return fd


def _lock(fd: int, busy: str, path: str) -> None:
    """An exclusive ``flock`` on ``fd`` (closed on any error), or an OSError (EBUSY) saying ``busy`` where another
    holds it. On a file system without locks (some network ones) nothing: written as before, unguarded."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(errno.EBUSY, busy, path) from None
    except OSError:
        pass
    except BaseException:
        os.close(fd)
        raise


def _publish(tmp: str, out: str, lock: int) -> None:
    """Move the finished file to ``out``. An older ``out`` is removed first: renaming over an existing file
    makes ext4 write the new file's blocks out at once (``auto_da_alloc``), which cost as much as a tenth of
    an export. A reader sees the old file, no file or the new one, never a partial file. ``tmp`` must still be
    the file ``lock`` holds, the one written: removed or replaced (by a link, say) while the export ran, the
    export fails and ``out`` is left as it was (it was removed, or replaced by the link)."""
    if not _holds(lock, tmp):
        raise FileNotFoundError(errno.ENOENT, f"{os.path.basename(tmp)!r}, the file the export to {out!r} wrote, "
                                "was removed or replaced while it ran: export again", tmp)
    try:
        os.remove(out)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        pass  # os.replace raises the usual error below
    os.replace(tmp, out)


class _CsvWriter:
    """CSV through pyarrow's writer, with timestamps as :mod:`.csv_text` spells them: a batch holding a value ISO
    text cannot (a far-future sentinel) writes that column as text, so the file's header is written once."""

    def __init__(self, sink: Any, schema: Any) -> None:
        from pyarrow import csv

        self._csv = csv
        self._file = sink  # closed by close(), as pyarrow's writers are
        csv.write_csv(schema.empty_table(), self._file)  # the header line

    def write_table(self, table: Any) -> None:
        from .csv_text import outside_iso, timestamp_text

        pa = require("pyarrow", purpose="export")
        for pos, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type) and outside_iso(table.column(pos)) is not None:
                text = timestamp_text(table.column(pos).combine_chunks())
                table = table.set_column(pos, field.with_type(pa.string()), text)
        self._csv.write_csv(table, self._file, write_options=self._csv.WriteOptions(include_header=False))

    def close(self) -> None:
        self._file.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def import_file(
    file: str | os.PathLike[str] | Any,
    path: str | os.PathLike[str],
    schema: SchemaLike | None = None,
    date: Any = None,
    *,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    progress: bool | None = None,
    batch_rows: int = 1 << 20,
) -> int:
    """Append the rows of a .parquet (file or dataset folder), .arrow/.feather or .csv file to a journal, in
    batches of ``batch_rows`` (of a CSV file: of its reader's blocks, about 1 MiB of text each, or one row
    longer than that): memory stays about one batch, whatever the file's size. Returns the rows.
    ``file`` may also be Arrow data with the PyCapsule interface (a polars frame, a DuckDB relation ...),
    streamed batch by batch.

    The schema comes from ``schema`` or from the file's ``pychro.schema`` metadata (files made by
    :func:`to_parquet` and friends); CSV always needs one. Rows go where :func:`pychro.write_frame` would
    put them (``date=`` or each row's timestamp), through one appender, and every row is checked before the
    first is written (the file is read twice).

    Examples
    --------
    >>> pychro.frames.export.import_file("ticks.parquet", "/data/journal")  # doctest: +SKIP
    1000000
    """
    from .backfill import write_batches
    from .interchange import as_source, stream_schema

    if not isinstance(file, (str, bytes, os.PathLike)):  # Arrow data itself: polars, DuckDB, pyarrow ...
        source = as_source(file)
        if source is None:
            raise TypeError(f"import_file takes a file path or an object with the Arrow PyCapsule interface, not "
                            f"{type(file).__name__}")
        sch = Schema(schema) if schema is not None else Schema.from_arrow(stream_schema(file))
        return write_batches(source, path, sch, date, config=config, thread_id_bits=thread_id_bits,
                             progress=progress)
    from .export_types import is_types_folder

    name = str(os.fsdecode(file))
    if os.path.isdir(name) and is_types_folder(name):
        raise ValueError(f"{name!r} is an export by message type (a file per type): import it with "
                         "pychro.frames.export_types.import_folder(folder, journal), or `pychro import FOLDER DIR`")
    batches, sch = _batch_source(name, schema, batch_rows)
    return write_batches(batches, path, sch, date, config=config, thread_id_bits=thread_id_bits,
                         progress=progress)


def file_format(path: str | os.PathLike[str]) -> str | None:
    """``"parquet"``, ``"ipc"`` or ``"csv"``: the format :func:`import_file` reads ``path`` as (a folder is a
    Parquet dataset); None when the extension names none of them."""
    p = os.fspath(path)
    return "parquet" if os.path.isdir(p) else _EXTENSIONS.get(os.path.splitext(p)[1].lower())


def _batch_source(p: str, schema: SchemaLike | None, batch_rows: int) -> tuple[Any, Schema]:
    """(a function giving the file's record batches afresh on each call, its Schema)."""
    pa = require("pyarrow", purpose="import")
    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    fmt = file_format(p)
    if fmt == "parquet":
        pq = require("pyarrow.parquet", extra="frames")
        if os.path.isdir(p):  # a dataset (partition_by="date"): its files in path order, i.e. by date
            import pyarrow.dataset as ds

            check_parquet_folder(p)

            files = sorted(ds.dataset(p, format="parquet").files)
        else:
            files = [p]
        if not files:
            raise ValueError(f"{p} holds no Parquet files")
        meta = pq.ParquetFile(files[0]).schema_arrow.metadata

        def parquet_batches() -> Iterator[Any]:
            for f in files:
                with pq.ParquetFile(f) as pf:
                    yield from pf.iter_batches(batch_size=batch_rows)

        return parquet_batches, _import_schema(p, schema, meta)
    if fmt == "ipc":
        with pa.memory_map(p) as source:
            meta = pa.ipc.open_file(source).schema.metadata

        def ipc_batches() -> Iterator[Any]:
            with pa.memory_map(p) as source:  # batches are views of the mapping: nothing is read ahead
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    for lo in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(lo, batch_rows)

        return ipc_batches, _import_schema(p, schema, meta)
    if fmt == "csv":
        if schema is None:
            raise ValueError("importing CSV needs a schema (schema=): CSV files carry no "
                             "pychro metadata")
        from .csv_import import CsvFile, csv_batches

        sch = Schema(schema)
        return partial(csv_batches, CsvFile(p, sch)), sch
    raise ValueError(f"cannot tell the format of {p!r}: use .parquet, .arrow, .feather or .csv")


def _import_schema(p: str, schema: SchemaLike | None, meta: dict[bytes, bytes] | None) -> Schema:
    if schema is not None:
        return Schema(schema)
    if not meta or META_SCHEMA not in meta:
        raise ValueError(f"{p} has no pychro schema in its metadata: give one (schema=)")
    return Schema.from_json(meta[META_SCHEMA])


def load_file(path: str | os.PathLike[str], schema: SchemaLike | None = None) -> tuple[Any, Schema]:
    """Read a .parquet/.arrow/.feather/.csv file for import -> (pyarrow.Table, Schema).

    The schema comes from ``schema`` or from the file's ``pychro.schema`` metadata (files made by
    ``pychro export``); CSV always needs one.
    """
    pa = require("pyarrow", purpose="import")
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    fmt = _EXTENSIONS.get(ext)
    if fmt == "parquet" or os.path.isdir(p):
        pq = require("pyarrow.parquet", extra="frames")
        if os.path.isdir(p):
            check_parquet_folder(p)  # (pyarrow reads a folder of no .parquet file, a dir.csv say, as no rows)
        table = pq.read_table(p)
    elif fmt == "ipc":
        with pa.memory_map(p) as source:
            table = pa.ipc.open_file(source).read_all()
    elif fmt == "csv":
        if schema is None:
            raise ValueError("importing CSV needs a schema (schema=): CSV files carry no "
                             "pychro metadata")
        from .csv_import import CsvFile, read_csv

        sch = Schema(schema)
        return read_csv(CsvFile(p, sch)), sch
    else:
        raise ValueError(f"cannot tell the format of {p!r}: use .parquet, .arrow, .feather or .csv")
    return table, _import_schema(p, schema, table.schema.metadata)
