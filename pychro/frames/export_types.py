"""Export and import of journals with several message types: one file per type, in one pass over the journal.

``to_parquet(path, types, "out/")`` (and ``to_ipc``, ``to_csv``) writes ``out/<type>.<ext>``, or with
``partition_by="date"`` one folder per type (``out/<type>/date=YYYY-MM-DD/part-0.<ext>``). Each file holds its
type's columns after an ``_index`` column (the message's full index) and carries the message types
(``pychro.types``) and its type's name (``pychro.type``) in its metadata besides the usual ``pychro.schema``;
:func:`import_folder` merges such files back into one journal by ``_index``: the same messages in the same
order. One reading pass feeds every type's writer (each on a thread of its own, through a short queue).
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

from .._optional import require
from .decode import recycle
from .export import (
    _publish,
    _remove_folders,
    _with_range,
    _write,
    check_compression,
    check_outside,
    folder_of,
    lock_folder,
    make_folders,
    partition_name,
)
from .schema import LIST
from .types import MessageTypes

__all__ = ["META_TYPES", "META_TYPE_NAME", "export_types", "import_folder", "is_types_folder"]

META_TYPES = b"pychro.types"
META_TYPE_NAME = b"pychro.type"
_DONE = object()
BATCH_ROWS = 65_536  # messages per decoded batch (of all types together)
_QUEUE_BATCHES = 4  # batches waiting per type's writer: memory stays bounded by a few batches per type
_POLL_S = 0.05  # how often a waiting writer looks whether it should stop


class _Abort(Exception):
    """The reading side failed: a writer stops and leaves no file."""


def export_types(
    fmt: str, path: Any, types: MessageTypes, out: Any, date: Any, start: Any, end: Any, columns: Any,
    row_group_rows: int, compression: str | None, partition_by: str | None, config: Any, thread_id_bits: Any,
    progress: bool | None, errors: str, unknown: str, timestamp_column: str | None, stats: Any,
) -> dict[str, int]:
    """One file (or partitioned folder) per message type; returns the rows written per type."""
    from .api import ReadStats
    from .args import check_rows
    from .typed import _TypedRead

    check_rows(row_group_rows, "row_group_rows")
    check_compression(fmt, compression)
    if partition_by not in (None, "date", "cycle"):
        raise ValueError(f"partition_by must be None or 'date', got {partition_by!r}")
    if os.path.islink(out) and not os.path.exists(out):  # else a bare ENOENT on a name that is there
        raise FileNotFoundError(errno.ENOENT, f"out is a symbolic link to {os.readlink(out)!r}, which leads nowhere "
                                "(missing, or a loop)", os.fspath(out))
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={os.fspath(out)!r} is a file: message types are exported into a folder, one file "
                         "per type")
    if os.path.isdir(out):
        _check_empty(out, locked=False)
    tr = _TypedRead(path, types, date, start, end, columns, errors, unknown, True, None, config, thread_id_bits,
                    timestamp_column)
    if fmt == "csv":
        listed = [(k.name, c) for k in tr.kinds for c in k.plan.columns
                  if types.schema(k.name)[c].kind == LIST]
        if listed:
            name, col = listed[0]
            raise ValueError(f"CSV has no list columns: column {col!r} of type {name!r} is "
                             f"{types.schema(name)[col].type.name}; export to Parquet or Arrow IPC, or leave it out "
                             "with columns=")
    journal = tr.r.journal
    check_outside(journal.path, out)
    stats = stats if stats is not None else ReadStats()
    cfg = journal.config
    ext = {"parquet": "parquet", "ipc": "arrow", "csv": "csv"}[fmt]
    source = {"journal": os.path.abspath(journal.path), "config": {k: v for k, v in vars(cfg).items()
                                                                    if not k.startswith("_")}}
    # batches are dropped once written: their buffers are used again
    recycle([tr.r.plan, tr.r.decode_plan, *(p for k in tr.kinds for p in (k.plan, k.decode_plan))])
    parents = make_folders(folder_of(os.fspath(out)))  # removed after a failure
    try:
        os.mkdir(out)  # (not exists() then makedirs: two exports would each think they had made it)
        created = True
    except FileExistsError:
        created = False
    except BaseException:
        _remove_folders(parents, out)
        raise
    lock = lock_folder(out)
    targets: list[str] = []  # every file this export writes (or wrote), as it names them
    try:
        if not created:
            _check_empty(out, locked=True)  # again, now that no other export can be writing into it
        return _export_all(fmt, tr, types, out, partition_by, row_group_rows, compression, source, stats, ext, cfg,
                           journal, targets)
    except BaseException:
        # a failed export leaves nothing it made (each file was written as .partial, then renamed)
        if created:
            shutil.rmtree(out, ignore_errors=True)
            _remove_folders(parents, out)
        else:  # the folder was there (and empty): it stays, without the files of types already done
            _unpublish(os.fspath(out), targets)
        raise
    finally:
        os.close(lock)


def _check_empty(out: Any, locked: bool) -> None:
    """A ValueError for a folder that holds anything: files of an earlier export would be imported with this one's.
    Only ``.partial`` files: an export writing there now (told apart once the folder's lock is ``locked``: then
    they are what an export that did not finish left)."""
    if os.listdir(out):
        files = [f for _, _, fs in os.walk(out) for f in fs]
        if files and all(f.endswith(".partial") for f in files):
            if not locked:
                return  # checked again under the lock (an export holding it: refused as busy there)
            raise ValueError(f"out={os.fspath(out)!r} holds only the .partial files of an export of message types "
                             "that did not finish (killed, or the machine stopped): remove the folder, and export "
                             "again")
        raise ValueError(f"out={os.fspath(out)!r} is a folder that is not empty: export message types into a new "
                         "or empty folder")


def _unpublish(out: str, targets: list[str]) -> None:
    """Remove the files of ``targets`` (each ``out`` joined with a relative path) that exist, and the folders between
    them and ``out`` left empty by that: what a failed export published in a folder it did not make (found empty
    under its lock, so these are its own). Best effort: what cannot be removed is left, and the export's own error
    is what the caller raises. Paths are used as the export spelled them (the kernel resolves links in them as it
    did for the export); a file under a folder that became a link meanwhile is left alone."""
    for path in targets:
        parts = os.path.relpath(path, out).split(os.sep)
        folders = [os.path.join(out, *parts[:k]) for k in range(len(parts) - 1, 0, -1)]  # innermost first
        if any(os.path.islink(f) for f in folders):
            continue
        with contextlib.suppress(OSError):
            os.remove(path)
        _remove_folders(folders, path)  # (those still holding another type's file stay)


def _export_all(fmt: str, tr: Any, types: MessageTypes, out: Any, partition_by: str | None, row_group_rows: int,
                compression: str | None, source: dict[str, Any], stats: Any, ext: str, cfg: Any, journal: Any,
                targets: list[str]) -> dict[str, int]:
    """Every type's file (or one per cycle); each file's path is added to ``targets`` before it is written."""
    from .typed import _typed_batches

    rows = {k.name: 0 for k in tr.kinds}
    groups = [tr.r.cycles] if partition_by is None else [[c] for c in tr.r.cycles]
    for ranges in groups:
        names = {}
        for k in tr.kinds:
            if partition_by is None:
                names[k.name] = os.path.join(os.fspath(out), f"{k.name}.{ext}")
            else:
                names[k.name] = os.path.join(os.fspath(out), k.name, partition_name(cfg, ranges[0][0]),
                                             f"part-0.{ext}")
        targets += names.values()
        part = _copy_with(tr, ranges)
        pairs = _typed_batches(part, BATCH_ROWS, _threads_for(part), False, 0.0, stats)
        got = _fan_out(fmt, pairs, tr, types, names, row_group_rows, compression,
                       _with_range(source, ranges, journal))
        for name, n in got.items():
            rows[name] += n
        if stats.truncated:  # errors="truncate" stopped at a bad message: nothing after it
            break
    return rows


def _copy_with(tr: Any, ranges: list[tuple[int, int, int | None]]) -> Any:
    import copy

    part = copy.copy(tr)
    part.r = copy.copy(tr.r)
    part.r.cycles = ranges
    return part


def _threads_for(tr: Any) -> int:
    from .api import _threads

    return _threads(None, tr.r)


def _fan_out(fmt: str, pairs: Iterator[Any], tr: Any, types: MessageTypes, targets: dict[str, str],
             row_group_rows: int, compression: str | None, source: dict[str, Any]) -> dict[str, int]:
    """Feed each type's batches to its own writer thread; a failure on either side leaves no file.

    The reading side ending early (an error, Ctrl-C) halts the writers through an event, not through their
    queues: a second Ctrl-C landing while end markers were being queued left writers waiting for ever (the
    process then never exited), and a writer of small row groups wrote every batch still queued first (14 s)."""
    queues: dict[str, queue.Queue[Any]] = {k.name: queue.Queue(maxsize=_QUEUE_BATCHES) for k in tr.kinds}
    rows: dict[str, int] = {}
    failed: list[BaseException] = []
    stop = threading.Event()  # a writer failed: the reader stops
    halt = threading.Event()  # the reader ended early: every writer stops at its next batch, and fails
    done = threading.Event()  # the reader puts nothing more
    gate = threading.Lock()  # held by a writer publishing its file, and by the clean-up after an interruption
    # set by each writer as it ends (its .partial file gone, or published): waited for instead of Thread.join,
    # which, interrupted by a Ctrl-C, takes a thread still running for ended (Python 3.11's bpo-45274 handling)
    finished = {k.name: threading.Event() for k in tr.kinds}

    def publish(tmp: str, target: str, lock: int) -> None:
        with gate:
            if halt.is_set():  # the reading side was interrupted: its clean-up may be running, or done
                raise _Abort
            _publish(tmp, target, lock)

    def write(kind: Any) -> None:
        q = queues[kind.name]
        try:
            meta = {META_TYPES: types.to_json().encode(), META_TYPE_NAME: kind.name.encode()}
            file_schema: Any = _Indexed(kind.arrow_schema, meta)
            rows[kind.name] = _write(fmt, targets[kind.name], file_schema, ["_index", *kind.plan.columns],
                                     _Feed(q, halt), row_group_rows, compression, dict(source, type=kind.name),
                                     publish)
        except _Abort:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side, which raises it
            failed.append(exc)
            stop.set()
            while not done.is_set():  # take what the reader still puts (its put must not block), until it ends
                try:
                    q.get(timeout=_POLL_S)
                except queue.Empty:
                    pass
        finally:
            finished[kind.name].set()

    # daemon threads: should the reading side be interrupted before it could halt them, they do not keep the
    # process from exiting (their .partial files are then left, as by kill -9)
    writers = [(threading.Thread(target=write, args=(k,), name=f"pychro-export-{k.name}", daemon=True),
                finished[k.name]) for k in tr.kinds]
    ended = False  # every writer has its end marker: its file is complete once it has written its queue
    try:
        for t, _ in writers:  # (in the try: a Ctrl-C between two starts still halts those started)
            t.start()
        for name, batch in pairs:
            if stop.is_set():
                break
            queues[name].put(batch)
        if not stop.is_set():
            for q in queues.values():
                q.put(_DONE)
            ended = True
    finally:
        try:
            if not ended:
                halt.set()
            done.set()
            _join(writers)
        except BaseException:
            # interrupted while waiting for the writers (one may be writing its footer): they stop at their next
            # batch, or before publishing, and remove their .partial files; waited for, so that the clean-up after
            # finds every file and folder (a second Ctrl-C gives that up: .partial files are then left, as by
            # kill -9). One publishing now finishes first, even then: the clean-up then finds its file.
            halt.set()
            try:
                _join(writers)
            finally:
                _wait_for(gate)
            raise
        finally:
            done.set()
            close = getattr(pairs, "close", None)
            if close is not None:
                close()  # the decoding pool ends
    if failed:
        raise failed[0]
    return rows


def _join(writers: list[tuple[threading.Thread, threading.Event]]) -> None:
    """Until every writer thread started has set its event as it ended (see :func:`_fan_out`)."""
    for t, ended in writers:
        if t.ident is not None:  # (started)
            ended.wait()


def _wait_for(lock: threading.Lock) -> None:
    """Until ``lock`` is free (held only around a rename), without taking it: ``halt`` is set first, so a writer that
    takes it after this sees it and does not publish. A Ctrl-C meanwhile is raised after it. (Taken, the lock could
    be left held by a Ctrl-C landing just after its acquire returned: the next acquire would wait for ever.)"""
    interrupted: BaseException | None = None
    while lock.locked():
        try:
            time.sleep(_POLL_S / 10)
        except BaseException as exc:  # noqa: BLE001 - raised once the lock is free
            interrupted = exc
    if interrupted is not None:
        raise interrupted


class _Feed:
    """A type's batches from its queue, for :func:`~pychro.frames.export._write`. ``abort()`` (called by the
    writer when it fails, from another thread) ends a wait for the next batch: its gathering thread can then be
    joined, whatever the reader is doing."""

    def __init__(self, q: queue.Queue[Any], halt: threading.Event) -> None:
        self.q, self.halt = q, halt  # halt: the reading side ended early (no end marker will come)
        self.aborted = threading.Event()

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> Any:
        while True:
            if self.aborted.is_set() or self.halt.is_set():
                raise _Abort()
            try:
                item = self.q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _DONE:
                raise StopIteration
            if self.halt.is_set():
                raise _Abort()
            return item

    def abort(self) -> None:
        self.aborted.set()


class _Indexed:
    """What :func:`~pychro.frames.export._write` needs of a schema: a type's Arrow schema (``_index`` first) with
    the message types in its metadata."""

    def __init__(self, arrow_schema: Any, meta: dict[bytes, bytes]) -> None:
        self.arrow = arrow_schema.with_metadata({**(arrow_schema.metadata or {}), **meta})

    def to_arrow(self) -> Any:
        return self.arrow


# -- import ------------------------------------------------------------------------------------------------------
def is_types_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder written by a message-types export (files whose metadata names their type)."""
    return bool(os.path.isdir(path) and _type_files(os.fspath(path)))


def _type_files(folder: str) -> dict[str, list[str]]:
    """type name -> its files (a file, or the parts of its date folders), from each file's metadata."""
    pa = require("pyarrow", purpose="import")
    pq = require("pyarrow.parquet", extra="frames")
    found: dict[str, list[str]] = {}
    for root, _dirs, files in os.walk(folder):
        for f in sorted(files):
            p = os.path.join(root, f)
            ext = os.path.splitext(f)[1].lower()
            try:
                if ext == ".parquet":
                    meta = pq.read_schema(p).metadata or {}
                elif ext in (".arrow", ".feather", ".ipc"):
                    with pa.memory_map(p) as src:
                        meta = pa.ipc.open_file(src).schema.metadata or {}
                else:
                    continue
            except (OSError, pa.ArrowInvalid):
                continue
            if META_TYPE_NAME in meta and META_TYPES in meta:
                found.setdefault(meta[META_TYPE_NAME].decode(), []).append(p)
    return found


def import_folder(folder: str | os.PathLike[str], path: str | os.PathLike[str], *, config: Any = None,
                  thread_id_bits: int | None = None, progress: bool | None = None) -> dict[str, int]:
    """Append the messages of a message-types export back into a journal, merged by ``_index`` (their order in
    the journal exported); returns the rows per type."""
    pa = require("pyarrow", purpose="import")
    pq = require("pyarrow.parquet", extra="frames")
    from .backfill import write_frames

    files = _type_files(os.fspath(folder))
    if not files:
        raise ValueError(f"{os.fspath(folder)!r} holds no file of a message-types export (pychro.type metadata)")
    unfinished = [os.path.join(root, f) for root, _, fs in os.walk(folder) for f in fs if f.endswith(".partial")]
    if unfinished:
        raise ValueError(f"{os.fspath(folder)!r} holds an unfinished export ({unfinished[0]}): export again")
    types_json = {_meta(p)[META_TYPES] for ps in files.values() for p in ps}
    if len(types_json) != 1:
        raise ValueError(f"the files under {os.fspath(folder)!r} come from exports with different message types")
    types = MessageTypes.from_json(types_json.pop().decode())
    missing = [name for name in types.names if name not in files]
    if missing:  # an export writes a file for every type, empty or not
        raise ValueError(f"{os.fspath(folder)!r} has no file of message type {missing[0]!r}: an export by type "
                         "writes one for every type; this folder is incomplete")
    frames = {}
    for name in types.names:
        parts = []
        for p in files.get(name, []):
            if p.endswith(".parquet"):
                parts.append(pq.read_table(p))
            else:
                with pa.memory_map(p) as src:
                    parts.append(pa.ipc.open_file(src).read_all())
        if parts:
            frames[name] = pa.concat_tables(parts)
    out = write_frames(frames, path, types, config=config, thread_id_bits=thread_id_bits, progress=progress,
                       order_by="_index")
    return {name: int(v.size) for name, v in out.items()}


def _meta(p: str) -> dict[bytes, bytes]:
    pa = require("pyarrow", purpose="import")
    if p.endswith(".parquet"):
        return dict(require("pyarrow.parquet", extra="frames").read_schema(p).metadata or {})
    with pa.memory_map(p) as src:
        return dict(pa.ipc.open_file(src).schema.metadata or {})
