"""Memory maps of index and data files, and the one commit path (vanilla-format.md §1, §5).

Which accesses to a mapping can raise SIGBUS, and how each is avoided:

* Any access past the end of the file. Readers map read-only at the file's current size (never extending it)
  and remap when a file has grown.
* A store into a page with no disk block behind it when the file system is full (a hole of a sparse file on
  ext4, xfs, tmpfs...). Writers create files the way Java does (sparse, of the block size) but reserve disk
  space with ``fallocate`` (:meth:`MappedFile.reserve`) ahead of their stores, in chunks that grow from
  4 KiB to 4 MiB, so a full disk is an ``OSError`` from the reservation instead.
* On tmpfs (``/dev/shm``), even a *load* from a hole: tmpfs allocates a page to back it, and fails when full.
  Index pages are loaded through a mapping only where a filled slot shows the page was written
  (:func:`count_filled`, :meth:`MappedFile.read_slot`); other pages are probed with ``pread``, which reads a
  hole as zeros without allocating. Data files are read only where committed entries point.

Index entries are published through :func:`commit`/:func:`commit_batch`, the only users of ``_atomic``.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from collections.abc import Callable
from typing import Any

from . import _atomic
from . import _layout as L
from .errors import CorruptDataError, FormatError, JournalNotFoundError, ReadOnlyJournalError

Buffer = Any  # collections.abc.Buffer is 3.12+

__all__ = [
    "RESERVE_MAX", "RESERVE_MIN", "MappedFile", "commit", "commit_batch", "count_filled", "first_zero_slot",
    "load_slot", "make_folder", "open_sized",
]

RESERVE_MIN = 4 << 10  # first reservation in a file: one page, so short-lived writers stay as small as Java
RESERVE_MAX = 4 << 20  # reservations double up to this: a busy writer calls fallocate once per 4 MiB
_PAGE = mmap.PAGESIZE
_SLOTS_PER_PAGE = _PAGE // L.ENTRY_SIZE


class MappedFile:
    """One mapped file. ``mm`` is None while the file is empty (mmap cannot map zero bytes).

    A writable file keeps its descriptor (``fd``) to reserve disk space: bytes below ``reserved`` have disk
    blocks behind them (:meth:`reserve`). ``written`` is how many bytes from the start of an index file are
    known to lie in written pages, where loads cannot fault (:meth:`count_filled`).
    """

    __slots__ = ("path", "mm", "size", "writable", "fd", "reserved", "written", "_grown", "_view")

    def __init__(self, path: str, mm: mmap.mmap | None, size: int, writable: bool, fd: int = -1) -> None:
        self.path = path
        self.mm = mm
        self.size = size
        self.writable = writable
        self.fd = fd
        self.reserved = 0
        self.written = 0
        self._grown = 0  # bytes this object reserved so far: the next chunk is as large, within the bounds
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
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FormatError("not a regular file: a symlink that loops", path=path) from None
            if exc.errno in (errno.ENXIO, errno.ENODEV):  # a socket, a device without a driver
                raise FormatError("not a regular file", path=path) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # mmap of a folder fails with a bare ENODEV
                raise FormatError("not a regular file", path=path)
            for _ in range(3):
                size = st.st_size if limit is None else min(st.st_size, limit)
                try:
                    mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
                    break
                except ValueError:  # the file shrank after fstat (another process truncating it): look again
                    st = os.fstat(fd)
            else:
                raise CorruptDataError("the file kept shrinking while it was being mapped", path=path)
        finally:
            os.close(fd)
        return cls(path, mm, size, False)

    @classmethod
    def open_write(cls, path: str, size: int, *, exclusive: bool = False) -> MappedFile:
        """Create (or open) a file, extend it to ``size`` if shorter (never shrink), map it shared read-write.

        ``exclusive`` claims a new file with O_EXCL: a data file belongs to exactly one appender. The file
        stays sparse: :meth:`reserve` before storing into it.
        """
        fd = open_sized(path, size, exclusive=exclusive)
        try:
            mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, mm, size, True, fd)

    # -- writing -------------------------------------------------------------------------------------
    def reserve(self, end: int, *, owned: bool) -> None:
        """Give the bytes below ``end`` disk blocks, so that stores there cannot SIGBUS on a full disk.

        Allocates from :attr:`reserved` up to ``end`` plus a chunk ahead (as large as what this object
        reserved so far, from :data:`RESERVE_MIN` to :data:`RESERVE_MAX`), in whole pages, never past the
        file's size; when the chunk does not fit on the disk, just up to ``end``. ``owned``: nobody else
        stores into the range (a data file), so where the file system has no ``fallocate`` zeros are written
        instead; in a shared index file that would race with other writers' CASes, so there the file then
        stays sparse, as Java leaves it.

        Raises ``OSError`` (errno ``ENOSPC``, ``EDQUOT``...) naming the file and the bytes that did not fit;
        :attr:`reserved` is then unchanged.
        """
        end = min(end, self.size)
        if end <= self.reserved:
            return
        start = self.reserved
        need = _page_up(end, self.size)
        ahead = _page_up(start + min(RESERVE_MAX, max(RESERVE_MIN, self._grown)), self.size)
        done = False
        for stop in (ahead, need) if ahead > need else (need,):
            try:
                done = _allocate(self.fd, start, stop - start)
            except OSError as exc:
                if stop > need and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    continue  # the chunk does not fit: try what the caller needs now
                raise _reserve_error(exc, start, stop, self.path) from None
            break
        if not done:
            if owned:
                _write_zeros(self.fd, start, stop, self.path)
            else:
                stop = self.size  # no safe way to allocate: sparse, as before, and no further tries
        self._grown += stop - start
        self.reserved = stop
        if stop >= self.size:  # all of it: the descriptor is not needed any more
            self._close_fd()

    # -- reading -------------------------------------------------------------------------------------
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
        """The mapping as little-endian u64 slots (index files); cached, released by :meth:`close`.

        A load from a slot at or past :meth:`count_filled` can fault on a full tmpfs: use :meth:`read_slot`.
        """
        if self._view is None:
            if self.mm is None:
                self._view = memoryview(b"").cast("Q")
            else:
                n = self.size // L.ENTRY_SIZE * L.ENTRY_SIZE
                self._view = memoryview(self.mm)[:n].cast("Q")
        return self._view

    def count_filled(self, lo: int = 0) -> int:
        """Filled slots of an index file: its first zero slot at or after ``lo`` (slots below ``lo`` must be
        filled), loaded through the mapping only from pages that were written (:func:`count_filled`)."""
        filled, self.written = count_filled(self.u64_view(), self.path, lo, self.written)
        return filled

    def read_slot(self, slot: int) -> int:
        """Index slot ``slot`` (0 when empty or past the mapping), without loading from a page never written."""
        slots = self.u64_view()
        if slot >= len(slots):
            return 0
        if (slot + 1) * L.ENTRY_SIZE > self.written:
            page = slot - slot % _SLOTS_PER_PAGE
            if not _page_written(self.path, page * L.ENTRY_SIZE):
                return 0  # slots fill in order: the page's first slot is empty, so is this one
            self.written = max(self.written, min(len(slots), page + _SLOTS_PER_PAGE) * L.ENTRY_SIZE)
        return int(slots[slot])

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
        self._close_fd()

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        # an index file replaced by the next one is dropped, not closed, while other threads may still use it
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def flush(self) -> None:
        if self.mm is not None:
            self.mm.flush()


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def make_folder(path: str, what: str = "journal folder") -> None:
    """``os.makedirs(path, exist_ok=True)`` with pychro errors for what a writer cannot fix: a read-only
    folder or mount (:class:`ReadOnlyJournalError`), a file or a symlink loop where the folder should be."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise ReadOnlyJournalError(f"cannot create {what}: {exc.strerror}", path=path) from None
        if exc.errno == errno.ELOOP or (os.path.islink(path) and not os.path.exists(path)):
            raise JournalNotFoundError(f"{what} is a symlink that loops or points nowhere", path=path) from None
        if os.path.exists(path) and not os.path.isdir(path):
            raise JournalNotFoundError(f"{what} is a file, not a folder", path=path) from None
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            raise JournalNotFoundError(f"cannot create {what}: a part of its path is a file", path=path) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise JournalNotFoundError(f"cannot create {what}: {exc.strerror}", path=path) from None
        raise


def open_sized(path: str, size: int, *, exclusive: bool = False) -> int:
    """Create (or open) a file for writing and extend it to ``size`` if shorter (never shrink); returns the
    descriptor. ``exclusive`` claims a new file with O_EXCL."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise ReadOnlyJournalError(f"cannot open for writing: {exc.strerror}", path=path) from None
        raise
    try:
        # ftruncate only ever grows here: a concurrent writer extending to the same size loses nothing.
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- counting filled slots -----------------------------------------------------------------------------------
def first_zero_slot(slots: Any, lo: int = 0, hi: int | None = None) -> int:
    """Count of filled slots: slots fill strictly in order, so binary-search the first zero in ``[lo, hi)``
    (``hi`` when all of them are filled)."""
    hi = len(slots) if hi is None else hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if slots[mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def count_filled(slots: Any, path: str, lo: int = 0, written: int = 0) -> tuple[int, int]:
    """Hole-safe first zero slot of the index file ``path`` mapped as ``slots``: ``(filled, written)``.

    ``written`` (bytes) is a prefix of the file known to lie in written pages; slots below ``lo`` must be
    filled. A page holding a filled slot was written and slots fill in order, so a page was written when its
    first slot is set. Loads through the mapping stay inside written pages; the pages past them are probed by
    a binary search over their first slots with ``pread``, which reads a hole as zeros without allocating it.
    Returns the count and the grown ``written``.
    """
    n = len(slots)
    safe = min(n, max(written // L.ENTRY_SIZE, -(-lo // _SLOTS_PER_PAGE) * _SLOTS_PER_PAGE))
    filled = first_zero_slot(slots, lo, safe) if lo < safe else lo
    if filled < safe or safe >= n:
        return filled, safe * L.ENTRY_SIZE
    # every slot below `safe` (a page start) is set: find the first page from there whose first slot is zero
    page_lo, page_hi = safe // _SLOTS_PER_PAGE, -(-n // _SLOTS_PER_PAGE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return filled, safe * L.ENTRY_SIZE  # gone or unreadable now: what the mapping showed stands
    try:
        if not any(os.pread(fd, L.ENTRY_SIZE, page_lo * _PAGE)):
            page_hi = page_lo  # the usual case when caught up with the writers: one probe
        while page_lo < page_hi:
            mid = (page_lo + page_hi) >> 1
            if any(os.pread(fd, L.ENTRY_SIZE, mid * _PAGE)):
                page_lo = mid + 1
            else:
                page_hi = mid
    finally:
        os.close(fd)
    new_safe = min(n, page_lo * _SLOTS_PER_PAGE)  # >= safe; the first slot of each page below it is set
    if new_safe > safe:
        filled = first_zero_slot(slots, (page_lo - 1) * _SLOTS_PER_PAGE, new_safe)
    return filled, new_safe * L.ENTRY_SIZE


def _page_written(path: str, offset: int) -> bool:
    """Is the index slot at ``offset`` (a page's first) set, read with ``pread``?"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return any(os.pread(fd, L.ENTRY_SIZE, offset))
    finally:
        os.close(fd)


# -- commit ----------------------------------------------------------------------------------------------------
def load_slot(buf: Buffer, slot: int) -> int:
    """Acquire load of one index slot (for paths that must not rely on x86 ordering)."""
    return _atomic.load_u64(buf, slot * L.ENTRY_SIZE)


def commit(index: Buffer, start_offset: int, entry: int, /) -> int:
    """Publish ``entry`` in the first free slot at or after byte ``start_offset``.

    Returns the slot's byte offset, or -1 when the buffer ends first. The CAS is the commit: body and header
    stores made before this call are visible to whoever sees the entry. Writers pass a window of the index
    mapping that ends where their disk reservation does (:class:`pychro._commit.IndexFile`). (This is the C
    function itself: the row writer calls it once per message, so no Python wrapper sits in between.)
    """
    return _atomic.append_u64(index, start_offset, entry)


commit = _atomic.append_u64  # noqa: F811 - documented above; bound directly for speed


def commit_batch(
    index: mmap.mmap, start_offset: int, entries: Buffer, out_offsets: Buffer, window: Buffer | None = None,
) -> int:
    """Commit many entries, in order, into free slots from byte ``start_offset``; returns how many fit.

    ``out_offsets`` (int64, one per entry) receives each committed slot's byte offset. ``window`` (a prefix
    of ``index``, default all of it) is where slots may be taken.
    """
    target = index if window is None else window
    _populate(index, start_offset, min(len(memoryview(entries).cast("B")), len(target) - start_offset))
    return _atomic.append_u64_batch(target, start_offset, entries, out_offsets)


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


# -- disk space ------------------------------------------------------------------------------------------------
def _page_up(offset: int, size: int) -> int:
    return min(size, -(-offset // _PAGE) * _PAGE)


def _libc_fallocate() -> Callable[..., int] | None:
    """fallocate(2) itself. Not ``os.posix_fallocate``: where a file system has no fallocate, glibc emulates it
    by writing a zero into each block that reads as zero, which would race with other writers' CASes."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "fallocate64", None) or libc.fallocate
    except (ImportError, OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_fallocate = _libc_fallocate() if os.uname().sysname == "Linux" else None


def _allocate(fd: int, offset: int, length: int) -> bool:
    """Allocate disk blocks for a byte range inside the file (its size does not change). False when the file
    system cannot (no fallocate); ``OSError`` when it fails (``ENOSPC``: the disk is full)."""
    if _fallocate is None:
        return False
    import ctypes

    while _fallocate(fd, 0, offset, length) != 0:
        err = ctypes.get_errno()
        if err == errno.EINTR:
            continue
        if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # EINVAL: what some FUSE file systems say
            return False
        raise OSError(err, os.strerror(err))
    return True


def _write_zeros(fd: int, start: int, stop: int, path: str) -> None:
    """Give an owned range that holds nothing yet its blocks by writing zeros (no fallocate)."""
    zeros = bytes(min(stop - start, 1 << 20))
    pos = start
    try:
        while pos < stop:
            pos += os.pwrite(fd, zeros[: stop - pos], pos)
    except OSError as exc:
        raise _reserve_error(exc, start, stop, path) from None


def _reserve_error(exc: OSError, start: int, stop: int, path: str) -> OSError:
    return OSError(
        exc.errno, f"cannot reserve disk space for {stop - start} bytes at offset {start} ({exc.strerror})", path
    )
