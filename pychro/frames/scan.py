"""Vectorised index scan: which messages to read, and where their bodies are (vanilla-format.md §1-§5).

* :func:`select_cycles` turns ``date=``/``start=``/``end=`` into (cycle, first seq, end seq) ranges.
* :class:`CycleFiles` maps a cycle's index files as ``<u8`` numpy views (the message count is a binary
  search for the first zero slot: slots fill strictly in order) and its data files as :class:`DataMap`.

Everything is mapped read-only at the file's current size, so a short (copied) file cannot SIGBUS; offsets
are bounds-checked by the decoder against :attr:`DataMap.size`. Entries are copied out of the index view, so
nothing returned depends on the index file staying as it was.
"""

from __future__ import annotations

import datetime as _dt
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .. import _layout as L
from .._mapping import MappedFile, count_filled
from ..errors import CorruptDataError, JournalNotFoundError, PychroError
from ..journal import Journal

__all__ = ["CycleFiles", "DataMap", "close_later", "empty", "select_cycles", "wait_unmapped"]

U8 = np.dtype("<u8")
_UTC = _dt.UTC


def empty(n: int, dtype: Any) -> np.ndarray:
    """An uninitialised array in Arrow's memory pool, for the per-batch arrays of the decoder and the big per-row
    arrays of ``write_frame`` (10 M rows' lengths and indices: 80 MB each, above glibc's 32 MiB mmap limit).

    Why not ``np.empty``: arrays of a batch (hundreds of KiB each) are above glibc's mmap threshold, and
    glibc hands such blocks back to the kernel when they are freed, so every batch paid page faults for
    fresh zeroed pages (a third of the run time in measurements). Arrow's pool (mimalloc or jemalloc) keeps
    freed memory for reuse. Results built in these buffers become Arrow arrays without a copy.
    """
    dt = np.dtype(dtype)
    return np.frombuffer(pa.allocate_buffer(n * dt.itemsize), dt)


# -- which cycles and seqs ---------------------------------------------------------------------------------
def _as_datetime(value: _dt.date) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
    raise TypeError(f"expected a date or datetime, got {type(value).__name__}")


def _first_cycle_after(journal: Journal, when: _dt.datetime) -> int:
    """First cycle whose span ends after ``when`` (the cycle holding it)."""
    return journal.config.cycle_of(when)


def _end_cycle_before(journal: Journal, when: _dt.datetime) -> int:
    """Exclusive end cycle for an exclusive end instant: cycles that start before ``when`` are in."""
    cfg = journal.config
    cycle = cfg.cycle_of(when)
    return cycle if cfg.cycle_datetime(cycle) == when else cycle + 1


def _bound(journal: Journal, value: Any, what: str) -> tuple[int, int]:
    """start/end argument -> (cycle, seq) of a full index position."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be a full index or a datetime, got a bool")
    if isinstance(value, (int, np.integer)):
        cfg = journal.config
        top = cfg.max_index + (what == "end")  # an exclusive end may be one past the last index
        if not 0 <= value <= top:
            raise ValueError(f"{what} index must be in 0..{top:#x}, got {int(value):#x}")
        return cfg.split_index(int(value))
    if isinstance(value, _dt.date):
        when = _as_datetime(value)
        if what == "start":
            return _first_cycle_after(journal, when), 0
        return _end_cycle_before(journal, when), 0
    raise TypeError(f"{what} must be a full index (int) or a datetime/date, got {type(value).__name__}")


def select_cycles(
    journal: Journal,
    date: Any = None,
    start: Any = None,
    end: Any = None,
    *,
    cycles: list[int] | None = None,
) -> tuple[list[tuple[int, int, int | None]], tuple[int, int] | None]:
    """Cycles to read, as ``(cycle, first seq, end seq or None = up to the count)``, oldest first.

    ``date`` is a date (its UTC day, or an ISO string) or an inclusive ``(first, last)`` pair of dates: cycles
    overlapping those days. ``start``/``end`` are full indices or datetimes / ISO strings (naive = UTC; end
    exclusive); a datetime selects the cycles overlapping ``[start, end)`` here, the rows inside them are
    selected by :mod:`pychro.frames.timerange`. Also returns the exclusive ``(cycle, seq)`` end bound
    (None when open), which ``follow`` mode uses for cycles that appear later.
    """
    from .timerange import as_date, check_order, parse_when

    date, start, end = as_date(date), parse_when(start, "start"), parse_when(end, "end")
    check_order(start, end)
    lo: tuple[int, int] = (-(1 << 62), 0)
    hi: tuple[int, int] | None = None
    if date is not None:
        if isinstance(date, (tuple, list)):
            if len(date) != 2:
                raise ValueError("date= takes a date or a (first, last) pair of dates")
            first, last = date
        else:
            first = last = date
        d0, d1 = _as_datetime(first), _as_datetime(last)
        day0 = _dt.datetime(d0.year, d0.month, d0.day, tzinfo=d0.tzinfo)
        day1 = (_dt.datetime(d1.year, d1.month, d1.day, tzinfo=d1.tzinfo) + _dt.timedelta(days=1)
                if d1.date() < _dt.date.max else _dt.datetime.max.replace(tzinfo=d1.tzinfo))  # no day after 9999-12-31
        if day1 <= day0:
            raise ValueError(f"date range is empty: {first} .. {last}")
        lo = max(lo, (_first_cycle_after(journal, day0), 0))
        hi = (_end_cycle_before(journal, day1), 0)
    if start is not None:
        lo = max(lo, _bound(journal, start, "start"))
    if end is not None:
        e = _bound(journal, end, "end")
        hi = e if hi is None else min(hi, e)
    out: list[tuple[int, int, int | None]] = []
    for cycle in journal.cycles() if cycles is None else cycles:
        if cycle < lo[0] or (hi is not None and (cycle > hi[0] or (cycle == hi[0] and hi[1] == 0))):
            continue
        first_seq = lo[1] if cycle == lo[0] else 0
        end_seq = hi[1] if hi is not None and cycle == hi[0] else None
        if end_seq is not None and end_seq <= first_seq:
            continue
        out.append((cycle, first_seq, end_seq))
    return out, hi


# -- data files --------------------------------------------------------------------------------------------
class DataMap:
    """One data file, mapped read-only at its size when mapped: ``u1`` is the file as bytes, ``size`` its length.

    The array owns the mapping: it is unmapped when the last view of it goes, so nothing ever has to close it
    while the decoder (or a result) still uses it (no ``BufferError``).
    """

    __slots__ = ("path", "size", "u1")

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        mf = MappedFile.open_read(path, limit)
        self.size = mf.size
        self.u1: npt.NDArray[np.uint8] = np.zeros(0, np.uint8) if mf.mm is None else np.frombuffer(mf.mm, np.uint8)
        mf.mm = None  # the numpy array keeps the mmap object alive from here on


_HOLE_RECHECK_S = 0.001  # first look again at an empty slot below filled ones after this long


def _pause(seconds: float) -> None:
    time.sleep(seconds)  # a seam for tests: a writer fills the slot while the reader pauses


class CycleFiles:
    """Index and data files of one cycle, mapped on demand; shared by the decoding threads."""

    def __init__(self, journal: Journal, cycle: int) -> None:
        self.journal = journal
        self.cycle = cycle
        self.config = journal.config
        self.folder = journal.cycle_path(cycle)
        self.codec = journal.codec
        self._slots_per_file = self.config.slots_per_index_file
        self._index: list[np.ndarray] = []
        self._filled: list[int] = []  # filled slots seen so far per index file (a lower bound)
        self._written: list[int] = []  # bytes of each index file known to lie in written pages
        self._data: dict[int, DataMap] = {}
        self._lock = threading.Lock()
        # count(): raise a damaged last index file (a cut one, a lost index-0), or only note it here and count
        # the readable prefix (errors="skip"/"truncate")
        self.tolerate = False
        self.damage: PychroError | None = None
        # A live follower waits this long for an empty slot below filled ones to fill (see entries())
        self.hole_wait = 0.0

    # -- index ---------------------------------------------------------------------------------------------
    def _index_view(self, n: int) -> np.ndarray | None:
        """u64 view of ``index-<n>``; remapped when it was mapped short and has grown; None when absent."""
        while len(self._index) <= n:
            path = os.path.join(self.folder, L.index_file_name(len(self._index)))
            view = _map_u64(path, self.config.index_block_size)
            if view is None:
                return None
            if view.size == self._slots_per_file and os.path.getsize(path) > self.config.index_block_size:
                # a longer file was written with a bigger index_block_size: its slots would be misnumbered
                raise self.journal.oversized_index(path, os.path.getsize(path), self.cycle)
            self._index.append(view)
            self._filled.append(0)
            self._written.append(0)
        view = self._index[n]
        if view.size < self._slots_per_file:
            path = os.path.join(self.folder, L.index_file_name(n))
            try:
                grown = os.stat(path).st_size // L.ENTRY_SIZE > view.size
            except FileNotFoundError:
                grown = False
            if grown:
                fresh = _map_u64(path, self.config.index_block_size)
                if fresh is not None:
                    self._index[n] = view = fresh
        return view

    def count(self) -> int:
        """Committed messages right now: full index files, plus the first zero slot of the last one.

        A damaged last index file (:meth:`pychro.Journal.index_damage`) raises, or with ``tolerate`` is kept
        in :attr:`damage` while the readable prefix is counted.
        """
        total = 0
        n = 0
        while True:
            view = self._index_view(n)
            if view is None:
                if not self._later_index_exists(n):
                    if n == 0:
                        self._damaged(0, 0, 0)
                    break
                # index files are created in order: look again (writers may have created this one and the
                # next since the first look); still missing means it was lost
                view = self._index_view(n)
                if view is None:
                    raise JournalNotFoundError(
                        f"index file {L.index_file_name(n)} is missing but {L.index_file_name(n + 1)} exists",
                        path=os.path.join(self.folder, L.index_file_name(n)), cycle=self.cycle, seq=total,
                        index=self.config.index_of(self.cycle, total),
                    )
            filled = self._count_filled(n, view)
            if filled < self._slots_per_file and self._later_index_exists(n):
                # The next index file is created only once this one is full: look again (it may have filled
                # since); still short or unfilled means damage that would hide every later message.
                view = self._index_view(n)
                assert view is not None
                filled = self._count_filled(n, view)
                if filled < self._slots_per_file:
                    raise CorruptDataError(
                        f"index file {L.index_file_name(n)} has {filled} of {self._slots_per_file} entries "
                        f"({view.size * L.ENTRY_SIZE} bytes) but {L.index_file_name(n + 1)} exists"
                        + self.journal.block_size_hint(),
                        path=os.path.join(self.folder, L.index_file_name(n)), cycle=self.cycle, seq=total + filled,
                        index=self.config.index_of(self.cycle, total + filled),
                    )
            self._filled[n] = filled
            total += filled
            if filled < self._slots_per_file:
                self._damaged(n, filled, total)
                break
            n += 1
        return total

    def _count_filled(self, n: int, view: np.ndarray) -> int:
        """First zero slot of index file ``n``, never loading from a page that was not written (tmpfs)."""
        path = os.path.join(self.folder, L.index_file_name(n))
        filled, self._written[n] = count_filled(view, path, self._filled[n], self._written[n])
        return filled

    def _damaged(self, n: int, filled: int, seq: int) -> None:
        self.damage = self.journal.index_damage(self.cycle, n, filled, seq)
        if self.damage is not None and not self.tolerate:
            raise self.damage

    def _later_index_exists(self, n: int) -> bool:
        return os.path.lexists(os.path.join(self.folder, L.index_file_name(n + 1)))

    def entries(self, seq_lo: int, seq_hi: int, batch_rows: int) -> Iterator[tuple[int, npt.NDArray[np.uint64]]]:
        """``(first seq, entries)`` batches covering ``[seq_lo, seq_hi)``; a batch never spans index files.

        At an empty slot below filled ones, the batch of the entries before it comes first, then the damage is
        raised (see :meth:`load`).
        """
        for seq, n in self.spans(seq_lo, seq_hi, batch_rows):
            out, damage = self.load(seq, n)
            if out.size:
                yield seq, out
            if damage is not None:
                raise damage

    def spans(self, seq_lo: int, seq_hi: int, batch_rows: int) -> Iterator[tuple[int, int]]:
        """``(first seq, count)`` of the batches covering ``[seq_lo, seq_hi)``, none spanning index files.

        Cheap: the entries themselves are copied by :meth:`load`, which a decoding thread calls, so that the
        index scan of one batch runs beside the decode of others.
        """
        per_file = self._slots_per_file
        seq = seq_lo
        while seq < seq_hi:
            slot = seq % per_file
            n = min(seq_hi - seq, per_file - slot, batch_rows)
            yield seq, n
            seq += n

    def load(self, seq: int, n: int) -> tuple[npt.NDArray[np.uint64], PychroError | None]:
        """The ``n`` entries from ``seq`` (within one index file), and the damage found among them.

        Slots below the count are committed and never written again, so where they are all filled the result
        is a read-only view of the index file (a copy, with the fresh pages it takes, cost a 2-thread read of
        1 M fixed-size rows 5%); else a copy. An empty slot below the count means a filled slot follows: after
        a look again (for a follower, for up to ``hole_wait`` seconds: a live writer can fill slots k and k+1
        between two loads), it is damage; the entries before it come back with the error.
        """
        file_n, slot = divmod(seq, self._slots_per_file)
        view = self._index_view(file_n)
        if view is None or slot + n > view.size:
            raise JournalNotFoundError(
                f"index file {L.index_file_name(file_n)} vanished or shrank while reading",
                path=os.path.join(self.folder, L.index_file_name(file_n)), cycle=self.cycle, seq=seq,
            )
        part = view[slot : slot + n]
        if np.count_nonzero(part) == n:  # (count_nonzero: no cast to bool, unlike all())
            return part, None
        out = empty(n, U8)
        np.copyto(out, part)
        out = self._reread_hole(view, slot, out)
        if np.count_nonzero(out) == n:
            return out, None
        hole = int(np.argmin(out))  # still empty below filled slots: slots fill in order, this is damage
        damage = CorruptDataError(
            "index slot is empty but later slots are filled (slots fill in order)",
            path=os.path.join(self.folder, L.index_file_name(file_n)), cycle=self.cycle, seq=seq + hole,
            index=self.config.index_of(self.cycle, seq + hole),
        )
        return out[:hole], damage

    def _reread_hole(self, view: np.ndarray, slot: int, out: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """Copy the slots again until they are all filled or the hole has stayed empty long enough."""
        deadline = time.monotonic() + self.hole_wait
        pause = _HOLE_RECHECK_S
        while True:
            _pause(pause)
            np.copyto(out, view[slot : slot + out.size])
            if np.count_nonzero(out) == out.size or time.monotonic() >= deadline:
                return out
            pause = min(pause * 2, 0.05)

    # -- data ----------------------------------------------------------------------------------------------
    def data(self, key: int, *, refresh: bool = False) -> DataMap:
        """The data file of index entries with ``entry >> data_bits == key`` (tid and file number)."""
        dm = self._data.get(key)
        if dm is not None and not refresh:
            return dm
        with self._lock:
            dm = self._data.get(key)
            if dm is None or refresh:
                tid = key >> (self.codec.tid_shift - self.codec.data_bits)
                file_no = key & ((1 << (self.codec.tid_shift - self.codec.data_bits)) - 1)
                path = os.path.join(self.folder, L.data_file_name(tid, file_no))
                try:
                    dm = DataMap(path, self.config.data_block_size)
                except JournalNotFoundError:
                    raise JournalNotFoundError(
                        f"data file {L.data_file_name(tid, file_no)} named by an index entry is missing; "
                        + self.journal.missing_data_hint(),
                        path=path, cycle=self.cycle,
                    ) from None
                self._data[key] = dm
        return dm

    def key_path(self, key: int) -> str:
        tid = key >> (self.codec.tid_shift - self.codec.data_bits)
        file_no = key & ((1 << (self.codec.tid_shift - self.codec.data_bits)) - 1)
        return os.path.join(self.folder, L.data_file_name(tid, file_no))

    def close(self) -> None:
        """Drop the maps; each is unmapped once no array made from it is left."""
        self.take_maps()

    def take_maps(self) -> list[Any]:
        """The maps, no longer this object's (it maps files again if used after this)."""
        maps: list[Any] = [*self._index, *self._data.values()]
        self._index, self._filled, self._written, self._data = [], [], [], {}
        return maps


# The thread that unmaps the files of finished reads (started on first use), fed through a SimpleQueue: its put()
# may be called again in the same thread while it runs (the collector closes an abandoned read at any allocation,
# also inside a hand-over), where a ThreadPoolExecutor's submit, or any lock held around one, waits for itself.
_UNMAPPER: list[threading.Thread] = []
_QUEUE: queue.SimpleQueue[Any] = queue.SimpleQueue()
_STARTING = threading.Lock()


def close_later(files: Iterable[Any]) -> None:
    """Drop the maps of a finished read's cycle files in a thread of its own: the kernel's work of unmapping
    (page tables of every page read) took 1 ms of a 10 ms read of 1 M rows, which the caller need not wait for.
    A map still used elsewhere (a batch decoding) is unmapped when that use ends, as before. Other files than
    :class:`CycleFiles` (the remote reader's) hold no maps."""
    maps = [m for f in files if isinstance(f, CycleFiles) for m in f.take_maps()]
    if not maps:
        return
    _QUEUE.put(maps)
    _start_unmapper()


def wait_unmapped() -> None:
    """Return once the maps handed to :func:`close_later` so far are dropped (tests; before deleting files on
    systems that refuse to delete a mapped file)."""
    done = threading.Event()
    _QUEUE.put(done)
    _start_unmapper()
    done.wait()


def _start_unmapper() -> None:
    if _UNMAPPER:
        return
    if not _STARTING.acquire(blocking=False):
        return  # being started, by another thread or by this one in the call the collector interrupted
    try:
        if not _UNMAPPER:
            thread = threading.Thread(target=_unmap, name="pychro-unmap", daemon=True)
            thread.start()
            _UNMAPPER.append(thread)
    except RuntimeError:  # the interpreter is shutting down: no new threads; drop the maps here
        _unmap(block=False)
    finally:
        _STARTING.release()


def _unmap(block: bool = True) -> None:
    """Drop what the queue holds (maps; an Event is set once what came before it is dropped)."""
    while True:
        try:
            item = _QUEUE.get(block)
        except queue.Empty:
            return
        if isinstance(item, threading.Event):
            item.set()
        item = None  # (dropped before waiting for the next)


def _forget_unmapper() -> None:
    global _QUEUE, _STARTING
    _UNMAPPER.clear()  # the parent's thread does not exist in a forked child
    _QUEUE, _STARTING = queue.SimpleQueue(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_unmapper)


def _map_u64(path: str, limit: int) -> np.ndarray | None:
    try:
        mf = MappedFile.open_read(path, limit)
    except JournalNotFoundError:
        return None
    if mf.mm is None:
        return np.zeros(0, U8)
    view = np.frombuffer(mf.mm, U8, count=mf.size // L.ENTRY_SIZE)
    mf.mm = None  # owned by the array now
    return view
