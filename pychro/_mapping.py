"""Memory maps of index and data files, and the one commit path (vanilla-format.md §1, §5).

Readers map read-only, at the file's current size (never extending it, so a short file cannot SIGBUS), and
remap when a file has grown. Writers create files the way Java does (a sparse file of the block size) and
publish index entries through :func:`commit`/:func:`commit_batch`, the only users of the ``_atomic`` module.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from typing import Any

from . import _atomic
from . import _layout as L
from .errors import FormatError, JournalNotFoundError, ReadOnlyJournalError

Buffer = Any  # collections.abc.Buffer is 3.12+

__all__ = ["MappedFile", "commit", "commit_batch", "first_zero_slot", "load_slot", "open_sized"]


class MappedFile:
    """One mapped file. ``mm`` is None while the file is empty (mmap cannot map zero bytes)."""

    __slots__ = ("path", "mm", "size", "writable", "_view")

    def __init__(self, path: str, mm: mmap.mmap | None, size: int, writable: bool) -> None:
        self.path = path
        self.mm = mm
        self.size = size
        self.writable = writable
        self._view: memoryview | None = None

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open_read(cls, path: str, limit: int | None = None) -> MappedFile:
        """Map an existing file read-only at its current size (capped at ``limit``)."""
        try:
            # O_NONBLOCK: a FIFO in place of a journal file must not block the open (no effect on files)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise JournalNotFoundError("file not found", path=path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # mmap of a folder fails with a bare ENODEV
                raise FormatError("not a regular file", path=path)
            size = st.st_size
            if limit is not None:
                size = min(size, limit)
            mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
        finally:
            os.close(fd)
        return cls(path, mm, size, False)

    @classmethod
    def open_write(cls, path: str, size: int, *, exclusive: bool = False) -> MappedFile:
        """Create (or open) a file, extend it to ``size`` if shorter (never shrink), map it shared read-write.

        ``exclusive`` claims a new file with O_EXCL: a data file belongs to exactly one appender.
        """
        fd = open_sized(path, size, exclusive=exclusive)
        try:
            mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        return cls(path, mm, size, True)

    def refresh(self, limit: int) -> bool:
        """Remap if the file grew (up to ``limit`` bytes); True when more bytes became visible."""
        try:
            size = min(os.stat(self.path).st_size, limit)
        except FileNotFoundError:
            return False
        if size <= self.size:
            return False
        fresh = MappedFile.open_read(self.path, limit)
        if self._view is not None:
            self._view.release()
            self._view = None
        # the old mapping is dropped, not closed: excerpts handed out still read from it until they go
        self.mm, self.size = fresh.mm, fresh.size
        return True

    def u64_view(self) -> memoryview:
        """The mapping as little-endian u64 slots (index files); cached, released by :meth:`close`."""
        if self._view is None:
            if self.mm is None:
                self._view = memoryview(b"").cast("Q")
            else:
                n = self.size // L.ENTRY_SIZE * L.ENTRY_SIZE
                self._view = memoryview(self.mm)[:n].cast("Q")
        return self._view

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass  # a caller still holds a view of it; the mapping goes when that view does
            self.mm = None

    def flush(self) -> None:
        if self.mm is not None:
            self.mm.flush()


def open_sized(path: str, size: int, *, exclusive: bool = False) -> int:
    """Create (or open) a file for writing and extend it to ``size`` if shorter (never shrink); returns the
    descriptor. ``exclusive`` claims a new file with O_EXCL."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except PermissionError as exc:
        raise ReadOnlyJournalError(f"cannot open for writing: {exc.strerror}", path=path) from None
    try:
        # ftruncate only ever grows here: a concurrent writer extending to the same size loses nothing.
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def first_zero_slot(slots: memoryview, lo: int = 0) -> int:
    """Count of filled slots: slots fill strictly in order, so binary-search the first zero at or after lo."""
    hi = len(slots)
    while lo < hi:
        mid = (lo + hi) >> 1
        if slots[mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def load_slot(buf: Buffer, slot: int) -> int:
    """Acquire load of one index slot (for paths that must not rely on x86 ordering)."""
    return _atomic.load_u64(buf, slot * L.ENTRY_SIZE)


def commit(index: mmap.mmap, start_offset: int, entry: int, /) -> int:
    """Publish ``entry`` in the first free slot at or after byte ``start_offset``.

    Returns the slot's byte offset, or -1 when the index file is full. The CAS is the commit: body and
    header stores made before this call are visible to whoever sees the entry. (This is the C function
    itself: the row writer calls it once per message, so no Python wrapper sits in between.)
    """
    return _atomic.append_u64(index, start_offset, entry)


commit = _atomic.append_u64  # noqa: F811 - documented above; bound directly for speed


def commit_batch(index: mmap.mmap, start_offset: int, entries: Buffer, out_offsets: Buffer) -> int:
    """Commit many entries, in order, into free slots from byte ``start_offset``; returns how many fit.

    ``out_offsets`` (int64, one per entry) receives each committed slot's byte offset.
    """
    _populate(index, start_offset, len(memoryview(entries).cast("B")))
    return _atomic.append_u64_batch(index, start_offset, entries, out_offsets)


# MADV_POPULATE_WRITE (Linux >= 5.14): fault a range of a shared mapping in, writable, in one call. It
# changes no byte, so it is safe on slots other writers are filling; a batch of CASes then takes no page
# faults (about a third of their cost on fresh index pages).
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23) if os.uname().sysname == "Linux" else None


def _populate(mm: mmap.mmap, start: int, length: int) -> None:
    global _POPULATE_WRITE
    if _POPULATE_WRITE is None or length <= 0:
        return
    first = start - start % mmap.PAGESIZE
    try:
        mm.madvise(_POPULATE_WRITE, first, min(len(mm), start + length) - first)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            _POPULATE_WRITE = None  # a kernel before 5.14: plain page faults, as before
    except ValueError:
        pass  # a range the mapping does not cover: the CASes will fault the pages in themselves
