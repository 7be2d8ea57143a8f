"""Bulk appending: an encoder program's messages -> data files, then index slots, in runs (vanilla-format.md §4-5).

A :class:`BulkAppender` is one appender of the calling thread, like a Java ``ExcerptAppender``: per cycle it
claims a fresh data file ``data-<tid>-<max+1>`` and fills it, rolling to the next one where the row writer
rolls (a header position above ``block - capacity - 4``). Rows go in runs of up to ``RUN_ROWS`` consecutive
messages (and ``RUN_BYTES``) of one data file. Each run's bytes are laid out in a staging buffer by the compiled
encoder (:meth:`pychro.frames.encode.Program.place`) and written with one ``pwrite``, on up to ``workers``
threads, while the calling thread commits finished runs in order, each by one native batch CAS
(:meth:`pychro._commit.Committer.commit_many`). A run is committed only after its bytes are in the file, so
every committed message is whole, even if a later run fails.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from .. import _layout as L
from .. import _mapping
from .._commit import Committer
from ..journal import Journal
from . import _encode as C
from ._workers import submit
from .encode import Program

__all__ = ["RUN_BYTES", "RUN_ROWS", "BulkAppender", "workers_for"]

RUN_ROWS = 1 << 16  # messages laid out and committed per step: temporaries stay in cache
RUN_BYTES = 16 << 20  # and at most this many bytes (but at least one message): bounded staging memory


def workers_for(threads: int | None, n: int) -> int:
    """Threads for ``n`` rows: ``threads`` when given, else 2 (at most the CPUs) above two runs."""
    if threads is None:
        return min(2, os.cpu_count() or 1) if n > 2 * RUN_ROWS else 1
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


class _Run(NamedTuple):
    """Consecutive messages in one data file: rows ``rows``; their index entries, filled in by the layout, go to
    ``entries`` (a view of the caller's ``out`` when the rows are a range: committed there in place)."""

    fd: int
    file_no: int
    pos: int  # file offset of the first header
    size: int  # bytes from the first header to the end of the last record
    rows: range | npt.NDArray[np.int64]
    entries: npt.NDArray[np.uint64]
    entry_base: int  # the index entry of the first message (header at pos); the layout adds each one's offset


class _DataFile:
    """The data file an appender is filling in one cycle."""

    __slots__ = ("file_no", "fd", "pos")

    def __init__(self, file_no: int, fd: int) -> None:
        self.file_no, self.fd, self.pos = file_no, fd, 0


class BulkAppender:
    """Appends an encoder program's messages for the calling thread's id; use as a context manager (or call
    close()).

    Example (what :func:`pychro.write_frame` does)::

        with BulkAppender(journal, workers=2) as appender:
            appender.append(cycle, range(n), program, program.lengths(), out)
    """

    def __init__(self, journal: Journal, *, workers: int = 1) -> None:
        self.journal = journal
        self.workers = workers
        self.tid = threading.get_native_id()
        if self.tid > journal.codec.max_tid:
            raise ValueError(
                f"this thread's id {self.tid} does not fit in thread_id_bits={journal.config.thread_id_bits}"
            )
        self._committer = Committer(journal)
        self._files: dict[int, _DataFile] = {}
        self._fds: list[int] = []  # every descriptor opened, closed by close()

    def __enter__(self) -> BulkAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._files.clear()
        self._committer.close()

    def append(
        self, cycle: int, rows: range | npt.NDArray[np.int64], program: Program,
        lengths: npt.NDArray[np.int64], out: npt.NDArray[np.int64], bar: Any = None,
    ) -> None:
        """Write and commit ``rows`` (ascending) of the program in ``cycle``, in order; each row's full index
        goes to ``out[row]``. ``lengths`` are the rows' body sizes (indexed by row), from ``program.lengths()``."""
        workers = self.workers
        spaces: queue.SimpleQueue[_Staging] = queue.SimpleQueue()  # one per run in flight
        for _ in range(workers + 1):
            spaces.put(_Staging.borrow())

        def place_run(run: _Run) -> None:
            staging = spaces.get()
            try:
                buf = staging.at_least(run.size)[: run.size]
                size = program.place(run.rows, lengths, buf, run.entries, run.entry_base)
                if size != run.size:  # each body is exactly its measured length; never write a short run
                    raise RuntimeError(f"laid out {size} bytes where {run.size} were measured")
                try:
                    _pwrite_all(run.fd, buf, run.pos)
                except OSError as exc:  # a full disk, typically: say which file and how much
                    path = self.journal.data_path(cycle, self.tid, run.file_no)
                    raise OSError(exc.errno, f"cannot write {run.size} bytes at offset {run.pos} ({exc.strerror})",
                                  path) from None
            finally:
                spaces.put(staging)

        def commit(run: _Run) -> None:
            if isinstance(run.rows, range):  # the entries are out[rows] already: full indices replace them
                self._committer.commit_many(cycle, run.entries, into=run.entries.view(np.int64))
            else:
                out[run.rows] = self._committer.commit_many(cycle, run.entries)
            if bar is not None:
                bar.update(len(run.rows))

        pool = ThreadPoolExecutor(workers, thread_name_prefix="pychro-bulk") if workers > 1 else None
        pending: deque[tuple[_Run, Future[None]]] = deque()
        try:
            for run in self._runs(cycle, rows, lengths, out):
                try:
                    # Disk space for this run, in row order, before any of its bytes are written: its index
                    # slots, and (runs written side by side race for the last free blocks) its data range.
                    # When the disk is full, this run fails here and every run before it still commits.
                    self._committer.reserve_ahead(cycle, len(run.rows) + sum(len(r.rows) for r, _ in pending))
                    if pool is not None:
                        self._reserve_data(cycle, run)
                except OSError:
                    while pending:
                        done_run, fut = pending.popleft()
                        fut.result()
                        commit(done_run)
                    raise
                if pool is None:
                    place_run(run)
                    commit(run)
                    continue
                pending.append((run, submit(pool, place_run, run)))
                while len(pending) > workers or (pending and pending[0][1].done()):
                    done_run, fut = pending.popleft()
                    fut.result()  # a failed layout or write stops here, before its rows are committed
                    commit(done_run)
            while pending:
                done_run, fut = pending.popleft()
                fut.result()
                commit(done_run)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)  # no write may outlive its file descriptor
            while not spaces.empty():
                spaces.get().give_back()

    def _reserve_data(self, cycle: int, run: _Run) -> None:
        """Allocate the blocks of a run's data range (nothing on file systems without fallocate)."""
        try:
            _mapping._allocate(run.fd, run.pos, run.size)  # looked up here: tests replace it
        except OSError as exc:
            path = self.journal.data_path(cycle, self.tid, run.file_no)
            raise OSError(exc.errno, f"cannot reserve {run.size} bytes at offset {run.pos} ({exc.strerror})",
                          path) from None

    def _runs(
        self, cycle: int, rows: range | npt.NDArray[np.int64], lengths: npt.NDArray[np.int64],
        out: npt.NDArray[np.int64],
    ) -> Iterator[_Run]:
        """Where each chunk of rows goes: the current data file while a message may start there (header
        position <= block - capacity - 4, the row writer's rule), else a newly claimed one. Measured by the C
        (``fit``): no per-run arrays of positions."""
        cfg = self.journal.config
        codec = self.journal.codec
        roll_at = cfg.data_block_size - cfg.message_capacity - L.HEADER_SIZE
        f = self._files.get(cycle)
        if f is None:
            f = self._files[cycle] = self._claim(cycle, None)
        for c0 in range(0, len(rows), RUN_ROWS):
            chunk = rows[c0 : c0 + RUN_ROWS]
            done = 0
            while done < len(chunk):
                part = chunk[done:]
                fit, size = C.fit(part, lengths, f.pos, roll_at, f.pos + RUN_BYTES)
                if fit == 0:
                    f = self._files[cycle] = self._claim(cycle, f.file_no)
                    continue
                part = part[:fit]
                if isinstance(part, range):
                    entries = out[part.start : part.stop].view(np.uint64)
                else:
                    entries = np.empty(fit, dtype=np.uint64)
                base = codec.pack(self.tid, f.file_no, L.HEADER_SIZE) + f.pos
                yield _Run(f.fd, f.file_no, f.pos, size, part, entries, base)
                f.pos += size
                done += fit

    def _claim(self, cycle: int, after: int | None) -> _DataFile:
        file_no, fd = self._committer.claim_data_fd(cycle, self.tid, after)
        self._fds.append(fd)
        return _DataFile(file_no, fd)


class _Staging:
    """A staging buffer, reused run after run by one thread at a time.

    Why: glibc gives each worker thread its own malloc arena and hands a freed big block of it back to the
    kernel, so a fresh buffer per run page-faults again on every run (measured: 1.5x slower in worker threads).
    """

    _idle: ClassVar[list[_Staging]] = []  # kept between calls, so that their pages are already faulted in
    _idle_lock: ClassVar[threading.Lock] = threading.Lock()
    KEEP = 4  # buffers kept
    KEEP_BYTES = 32 << 20  # a bigger one (huge messages) is dropped after use

    def __init__(self) -> None:
        self.buf = np.empty(0, dtype=np.uint8)

    @classmethod
    def borrow(cls) -> _Staging:
        """A kept buffer if there is one, else a new one; return it with :meth:`give_back`."""
        with cls._idle_lock:
            return cls._idle.pop() if cls._idle else cls()

    def give_back(self) -> None:
        with self._idle_lock:
            if len(self.buf) <= self.KEEP_BYTES and len(self._idle) < self.KEEP:
                self._idle.append(self)

    def at_least(self, size: int) -> npt.NDArray[np.uint8]:
        """The buffer, grown to ``size`` bytes if shorter; its contents are undefined."""
        if len(self.buf) < size:
            self.buf = np.empty(size, dtype=np.uint8)
        return self.buf


def _pwrite_all(fd: int, data: npt.NDArray[np.uint8], offset: int) -> None:
    view = memoryview(data)  # type: ignore[arg-type]  # numpy arrays are buffers
    while len(view):
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
