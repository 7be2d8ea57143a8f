"""The one commit path shared by the row writer and the bulk (frames) writer (vanilla-format.md §4-§5).

A :class:`Committer` knows, per cycle, the index file being appended to and a hint of its first free slot,
publishes entries with the CAS of :func:`pychro._mapping.commit` (one) or :func:`commit_batch` (many, in order,
in one native call), moves to ``index-(n+1)`` when a file is full, and claims new data files
``data-<tid>-<max+1>`` exclusively for an appender.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from . import _layout as L
from ._mapping import MappedFile, commit, commit_batch, make_folder, open_sized
from .errors import FormatError
from .journal import Journal

__all__ = ["Committer", "IndexFile"]

T = TypeVar("T")
_claim_lock = threading.Lock()  # serialises data-file claims of all writers in this process


class IndexFile:
    """One index file of a cycle, with a hint of its first free slot and a window of the mapping to commit in.

    The hint (a byte offset) only ever points at or below the first free slot: it is one past a slot this
    process filled, and filled slots are contiguous, so scanning forward from it never leaves a gap.
    ``base`` is the full index of the file's slot 0. ``win`` is the mapping up to where disk space is
    reserved: a CAS into a sparse page of a full disk would be a SIGBUS, so slots past it are taken only
    after :meth:`Committer.grow` reserved more (a commit into ``win`` returns -1 at its end).
    """

    __slots__ = ("cycle", "file_no", "mf", "mm", "hint", "base", "win")

    def __init__(self, cycle: int, file_no: int, mf: MappedFile, base: int) -> None:
        self.cycle = cycle
        self.file_no = file_no
        self.mf = mf
        assert mf.mm is not None  # index files are opened at their block size, never empty
        self.mm: mmap.mmap = mf.mm
        with _no_read_around(self.mm):  # ~20 probes: without this each reads (or zero-fills) 128 KiB around it
            self.hint = mf.count_filled() * L.ENTRY_SIZE
        # pages below the first free slot hold filled slots: written, so they have their blocks already
        mf.reserved = self.hint - self.hint % mmap.PAGESIZE
        self.win = memoryview(b"")
        self.reserve(self.hint + L.ENTRY_SIZE)
        self.base = base

    def reserve(self, end: int) -> None:
        """Reserve disk space below ``end`` (and a chunk ahead) and widen :attr:`win` to it."""
        self.mf.reserve(end, owned=False)
        if len(self.win) < self.mf.reserved:
            self.win = memoryview(self.mm)[: self.mf.reserved]

    def close(self) -> None:
        self.win = memoryview(b"")  # dropped, not released: a commit on another thread may still use it
        self.mf.close()


@contextlib.contextmanager
def _no_read_around(mm: mmap.mmap) -> Iterator[None]:
    advise = getattr(mm, "madvise", None)
    try:
        if advise is not None:
            advise(mmap.MADV_RANDOM)
    except (OSError, AttributeError):
        advise = None
    try:
        yield
    finally:
        if advise is not None:
            advise(mmap.MADV_NORMAL)


class Committer:
    """Index files and data-file claims of one journal for one writer object (thread-safe)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.config = journal.config
        self._lock = threading.Lock()
        self._files: dict[int, IndexFile] = {}

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()

    def index_file(self, cycle: int) -> IndexFile:
        """The current index file of ``cycle`` (the highest existing one, created if none)."""
        f = self._files.get(cycle)
        if f is None:
            with self._lock:
                f = self._files.get(cycle)
                if f is None:
                    numbers = self.journal.index_files(cycle)
                    f = self._open(cycle, numbers[-1] if numbers else 0)
                    self._files[cycle] = f
        return f

    def _open(self, cycle: int, n: int) -> IndexFile:
        if n >= L.MAX_INDEX_FILES:
            raise FormatError(f"cycle is full: Java stops at index-{L.MAX_INDEX_FILES - 1}", cycle=cycle)
        make_folder(self.journal.cycle_path(cycle), "cycle folder")
        mf = MappedFile.open_write(self.journal.index_path(cycle, n), self.config.index_block_size)
        try:
            return IndexFile(cycle, n, mf, self.config.index_of(cycle, n << self.config.slot_bits))
        except BaseException:  # no disk space for the first slots: nothing is committed, nothing kept open
            mf.close()
            raise

    def next_file(self, full: IndexFile) -> IndexFile:
        """The file after ``full`` (created if needed); shared by every appender of this writer."""
        with self._lock:
            current = self._files.get(full.cycle)
            if current is full or current is None:
                current = self._open(full.cycle, full.file_no + 1)
                self._files[full.cycle] = current
            return current

    def grow(self, f: IndexFile, scanned: int) -> None:
        """Widen ``f``'s window after a commit found no free slot in its first ``scanned`` bytes: reserve disk
        space past them (unless another thread did). Raises ``OSError`` when the disk is full."""
        with self._lock:
            if len(f.win) > scanned:
                return  # grown meanwhile: look there
            f.hint = max(f.hint, scanned)  # every slot below was taken
            f.reserve(scanned + L.ENTRY_SIZE)

    def _reserve_to(self, f: IndexFile, end: int) -> None:
        with self._lock:
            f.reserve(end)

    def reserve_ahead(self, cycle: int, count: int) -> None:
        """Reserve index space for the next ``count`` entries of ``cycle`` (in its current index file) before
        their bodies are written: on a full disk the body write then fails, rather than the commit of bodies
        already written, which would leave runs that fitted uncommitted. Raises ``OSError`` when it cannot."""
        f = self.index_file(cycle)
        self._reserve_to(f, min(f.mf.size, f.hint + count * L.ENTRY_SIZE))

    def commit_full(self, f: IndexFile, entry: int, scanned: int) -> tuple[IndexFile, int]:
        """Commit one entry after a commit found no free slot in the first ``scanned`` bytes of ``f``: reserve
        more of it, or move to the next file, until the CAS succeeds. -> (file, index)."""
        while True:
            if scanned >= f.mf.size:
                f = self.next_file(f)
            else:
                self.grow(f, scanned)
            win = f.win
            off = commit(win, f.hint, entry)
            if off >= 0:
                f.hint = off + L.ENTRY_SIZE
                return f, f.base + (off >> 3)
            scanned = len(win)

    def commit(self, cycle: int, entry: int) -> int:
        """Publish one entry in ``cycle``; returns its full index."""
        f = self.index_file(cycle)
        win = f.win
        off = commit(win, f.hint, entry)
        if off < 0:
            return self.commit_full(f, entry, len(win))[1]
        f.hint = off + L.ENTRY_SIZE
        return f.base + (off >> 3)

    def commit_many(
        self, cycle: int, entries: npt.NDArray[np.uint64], into: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Publish entries in order, each into the next free slot (one native call per reserved window).

        Returns their full indices, in ``into`` when given (a C-contiguous int64 array of the same length; it
        may be ``entries`` itself, seen as int64: each entry is read before its index is written over it).
        Other writers may interleave; every entry is committed exactly once. Raises ``OSError`` when disk space
        for the index runs out; the entries before stay committed.
        """
        entries = np.ascontiguousarray(entries, dtype=np.uint64)
        if into is None:
            out = np.empty(len(entries), dtype=np.int64)
        elif into.dtype != np.int64 or into.shape != entries.shape or not into.flags.c_contiguous:
            raise ValueError("into must be a C-contiguous int64 array as long as entries")
        else:
            out = into
        f = self.index_file(cycle)
        if len(entries):
            # space for all of them first: when the disk is full, a run fails before any of it is committed
            # (unless other writers take slots meanwhile, so that the window must grow once more)
            self._reserve_to(f, f.hint + len(entries) * L.ENTRY_SIZE)
        done = 0
        while done < len(entries):
            part = out[done:]
            win = f.win
            n = commit_batch(f.mm, f.hint, entries[done:], part, win)
            if n:
                f.hint = int(part[n - 1]) + L.ENTRY_SIZE
                part[:n] >>= 3
                part[:n] += f.base
                done += n
            if done < len(entries):
                if len(win) >= f.mf.size:
                    f = self.next_file(f)
                else:
                    self.grow(f, len(win))
        return out

    def claim_data_file(self, cycle: int, tid: int, after: int | None) -> tuple[int, MappedFile]:
        """Create this thread's next data file in ``cycle``: ``max+1`` of its existing ones (Java >= 3.2.2),
        or ``after+1`` when rolling. Created with O_EXCL: a data file belongs to exactly one appender.
        Returns its number and a shared writable mapping."""
        size = self.config.data_block_size
        return self._claim(cycle, tid, after, lambda path: MappedFile.open_write(path, size, exclusive=True))

    def claim_data_fd(self, cycle: int, tid: int, after: int | None) -> tuple[int, int]:
        """As :meth:`claim_data_file`, for a writer that fills the file with ``pwrite``: returns its number and
        a file descriptor (the caller closes it). The file has its full block size, as Java maps it."""
        size = self.config.data_block_size
        return self._claim(cycle, tid, after, lambda path: open_sized(path, size, exclusive=True))

    def _claim(self, cycle: int, tid: int, after: int | None, create: Callable[[str], T]) -> tuple[int, T]:
        folder = self.journal.cycle_path(cycle)
        make_folder(folder, "cycle folder")
        with _claim_lock:
            if after is None:
                mine = [n for t, n in self.journal.data_files(cycle) if t == tid]
                file_no = max(mine) + 1 if mine else 0
            else:
                file_no = after + 1
            while True:
                path = os.path.join(folder, L.data_file_name(tid, file_no))
                try:
                    return file_no, create(path)
                except FileExistsError:
                    file_no += 1  # another writer object of this thread took it
