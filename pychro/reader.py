"""VanillaChronicleReader: read a journal one message at a time, and tail it (vanilla-format.md §2-§6).

Never writes: index and data files are mapped read-only at their current size and remapped when they grow,
so a reader works on a read-only copy and cannot SIGBUS on a short file. Every header is checked.
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _layout as L
from ._mapping import MappedFile
from .config import VanillaConfig, check_seconds
from .errors import CorruptDataError, JournalNotFoundError, NoData
from .excerpt import Excerpt
from .journal import Journal

__all__ = ["VanillaChronicleReader", "wall_clock_ms"]

_header = struct.Struct("<i").unpack_from

LATE_COMMIT_GRACE_S = L.LATE_COMMIT_GRACE_S  # re-exported: the README names it here


def wall_clock_ms() -> int:
    """The default clock of readers and writers: wall-clock epoch milliseconds (UTC), as Java's cycle uses."""
    return time.time_ns() // 1_000_000


def clock_from_utcnow(utcnow: Callable[[], _dt.datetime]) -> Callable[[], int]:
    """Adapt pychro 0.8's ``utcnow=`` (naive UTC datetimes) to an epoch-ms clock."""

    def clock() -> int:
        now = utcnow()
        if not isinstance(now, _dt.datetime):
            raise TypeError(f"utcnow() must return a datetime.datetime, got {type(now).__name__}")
        if now.tzinfo is None:
            now = now.replace(tzinfo=_dt.UTC)
        return int(now.timestamp() * 1000)

    return clock


class VanillaChronicleReader:
    """Read messages in index order, across cycle folders, optionally waiting for new ones.

    Parameters
    ----------
    base_dir : str or os.PathLike
        The journal folder.
    polling_interval : float or None
        At the end of the journal: ``None`` raises :class:`NoData`; ``0`` spins; ``> 0`` sleeps that many
        seconds between polls.
    date : datetime.date, datetime.datetime or ISO string, optional
        Start at the first message of the cycle holding this date/time.
    full_index : int, optional
        Start at this full index (exclusive with ``date``).
    thread_id_bits : int, optional
        Shortcut for ``config.thread_id_bits``; detected from the journal when not given.
    config : VanillaConfig, optional
        Format settings (cycle, block sizes, ...).
    clock, utcnow : callable, optional
        Injectable clock (epoch ms, or pychro 0.8's naive-UTC ``utcnow``); decides when a past cycle is
        finished and the reader may move on to the next folder.
    max_mapped_memory : int, optional
        Cap on bytes of data files kept mapped at once (least recently used are unmapped).

    Examples
    --------
    >>> with VanillaChronicleReader(path) as chron:          # doctest: +SKIP
    ...     for excerpt in chron:
    ...         print(excerpt.read_int(), excerpt.read_string())
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        polling_interval: float | None = None,
        date: _dt.date | str | None = None,
        full_index: int | None = None,
        max_mapped_memory: int | None = None,
        thread_id_bits: int | None = None,
        utcnow: Callable[[], _dt.datetime] | None = None,
        *,
        config: VanillaConfig | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if full_index is not None and date is not None:
            raise ValueError("give date or full_index, not both")
        interval = None if polling_interval is None else check_seconds(polling_interval, "polling_interval")
        if max_mapped_memory is not None and (isinstance(max_mapped_memory, bool)
                                              or not isinstance(max_mapped_memory, int)):
            raise TypeError(f"max_mapped_memory must be an int (bytes), got {type(max_mapped_memory).__name__}")
        self._journal = Journal(base_dir, config, thread_id_bits)
        self._journal.check_layout()  # a folder that is not a journal (or another configuration's) raises
        self.config = self._journal.config
        self.polling_interval = interval
        self._clock = clock or (clock_from_utcnow(utcnow) if utcnow else wall_clock_ms)
        codec = self._journal.codec
        self._tid_shift = codec.tid_shift
        self._data_bits = codec.data_bits
        self._offset_mask = codec.offset_mask
        self._slot_bits = self.config.slot_bits
        self._slot_mask = (1 << self._slot_bits) - 1
        block = self.config.data_block_size
        self._max_maps = max(1, max_mapped_memory // block) if max_mapped_memory else 256
        self._data: OrderedDict[int, MappedFile] = OrderedDict()  # key: entry >> data_bits (tid, file_no)
        self._index_maps: list[MappedFile] = []
        self._cycle: int | None = None
        self._cycle_dir: str | None = None
        self._seq = 0
        self._last_index: int | None = None
        # cache of the index file being read: number, u64 view, filled length seen so far
        self._ifile = -1
        self._slots: Any = None
        self._nslots = 0
        self._cycle_base = 0  # full index of seq 0 of the current cycle
        self._left: list[list[Any]] = []  # [cycle, next seq, monotonic deadline] of cycles left recently
        self._back: tuple[int, int] | None = None  # where to return after the late messages of a left cycle
        if full_index is not None:
            self.set_index(full_index)
        elif date is not None:
            self.set_date(date)
        else:
            self.set_start()

    # -- context manager / lifetime ------------------------------------------------------------------------
    def __enter__(self) -> VanillaChronicleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        return f"<VanillaChronicleReader {self._journal.path!r} next_index={self._next_index_or_none()}>"

    def close(self) -> None:
        """Unmap every file. Excerpts already returned keep their mapping alive until they are dropped."""
        self._drop_index()
        # Data maps are dropped, not closed: an mmap closes itself once no excerpt refers to it any more.
        self._data = OrderedDict()

    @property
    def journal(self) -> Journal:
        return self._journal

    # -- positioning ---------------------------------------------------------------------------------------
    def _drop_index(self) -> None:
        self._slots = None
        self._nslots = 0
        self._ifile = -1
        for mf in self._index_maps:
            mf.close()
        self._index_maps = []

    def _goto(self, cycle: int | None, seq: int, keep_left: bool = False) -> None:
        if not keep_left:  # a new position by the caller: cycles left earlier are no longer watched
            self._left = []
            self._back = None
        if cycle != self._cycle:
            self._drop_index()
            # Data maps are keyed by (tid, file_no), which names a different file in every cycle folder.
            # Drop them without closing: excerpts already returned still read from their mapping.
            self._data = OrderedDict()
            self._cycle = cycle
            self._cycle_dir = self._journal.cycle_path(cycle) if cycle is not None else None
            self._cycle_base = self.config.index_of(cycle, 0) if cycle is not None else 0
        self._seq = seq

    def set_start(self) -> None:
        """Go to the first message of the oldest cycle."""
        cycles = self._journal.cycles()
        self._goto(cycles[0] if cycles else None, 0)

    def set_date(self, date: _dt.date | _dt.datetime | str) -> None:
        """Go to the first message of the cycle holding ``date`` (or of the next cycle that exists); an ISO
        string (``"2024-03-05"``, ``"2024-03-05T09:00"``) as the frames readers take it."""
        if isinstance(date, str):
            try:
                date = _dt.datetime.fromisoformat(date.strip())
            except ValueError:
                raise ValueError(f"date={date!r} is not an ISO date (YYYY-MM-DD) or date/time") from None
        if not isinstance(date, _dt.date):
            raise TypeError(f"date must be a datetime.date, datetime.datetime or ISO string, got {type(date).__name__}")
        self._goto(self.config.check_cycle(self.config.cycle_of(date), f"date {date}"), 0)

    def set_index(self, full_index: int) -> None:
        """Go to a full index: the next ``next_reader()`` returns that message."""
        self._goto(*self.config.split_index(self.config.check_index(full_index)))

    def set_end(self) -> None:
        """Go past the last committed message: ``next_reader()`` then returns only new messages."""
        cycles = self._journal.cycles()
        if not cycles:
            self._goto(None, 0)
            return
        self._goto(cycles[-1], self._journal.count(cycles[-1]))

    def set_start_index_today(self) -> None:
        """pychro 0.8: go to the start of the current cycle."""
        self._seq = 0

    def set_end_index_today(self) -> None:
        """pychro 0.8: go past the last message of the current cycle."""
        if self._cycle is not None:
            self._seq = self._journal.count(self._cycle)

    def _next_index_or_none(self) -> int | None:
        return None if self._cycle is None else self.config.index_of(self._cycle, self._seq)

    def get_index(self) -> int:
        """Full index of the next message to read (pychro 0.8 semantics; Java's ``index()`` is :attr:`index`)."""
        if self._cycle is None:
            raise NoData("the journal has no cycle folder yet", path=self._journal.path)
        return self.config.index_of(self._cycle, self._seq)

    @property
    def index(self) -> int | None:
        """Full index of the last message returned by ``next_reader()`` (Java ``index()``), or None."""
        return self._last_index

    def get_date(self) -> _dt.date | None:
        """Date (UTC) of the cycle being read."""
        return None if self._cycle is None else self.config.cycle_datetime(self._cycle).date()

    def get_end_index(self) -> int | None:
        """Full index one past the last committed message of the journal (None when empty)."""
        return self._journal.end_index()

    def get_end_index_today(self) -> int:
        """pychro 0.8: full index one past the last message of the current cycle."""
        if self._cycle is None:
            raise NoData("the journal has no cycle folder yet", path=self._journal.path)
        return self.config.index_of(self._cycle, self._journal.count(self._cycle))

    @staticmethod
    def to_full_index(date: _dt.date, index: int) -> int:
        """pychro 0.8 (daily cycles): full index of message ``index`` on ``date``."""
        return VanillaConfig().index_of(VanillaConfig().cycle_of(date), index)

    @staticmethod
    def from_full_index(full_index: int) -> tuple[_dt.date, int]:
        """pychro 0.8 (daily cycles): full index -> (date, seq)."""
        cfg = VanillaConfig()
        cycle, seq = cfg.split_index(full_index)
        return cfg.cycle_datetime(cycle).date(), seq

    @staticmethod
    def get_thread_id_bits(pid_max: int) -> int:
        """pychro 0.8: ``ceil(log2(pid_max))``, the Java-Lang <= 6.8.0 rule on Linux."""
        return L.pid_max_bits(pid_max)

    # -- reading -------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Excerpt]:
        """Excerpts from the current position; ends at the end of the journal unless polling."""
        while True:
            try:
                yield self.next_reader()
            except NoData:
                return

    def next_reader(self) -> Excerpt:
        """Return the next committed message as an :class:`Excerpt` and advance.

        Raises :class:`NoData` at the end when ``polling_interval`` is None; otherwise waits.
        """
        seq = self._seq
        # fast path: the slot lies in the index file already mapped (_ifile is -1 when none is)
        if (seq >> self._slot_bits) == self._ifile and (seq & self._slot_mask) < self._nslots:
            entry = self._slots[seq & self._slot_mask]
            if not entry:
                entry = self._wait_for_entry()
                seq = self._seq
        else:
            entry = self._wait_for_entry()
            seq = self._seq
        mf = self._data.get(entry >> self._data_bits)
        if mf is None:
            mf = self._open_data(entry)
        offset = entry & self._offset_mask
        mm = mf.mm
        if offset < 4 or offset + 4 > mf.size:
            return self._checked_excerpt(entry, mf)
        assert mm is not None  # mf.size >= 8: only an empty file is left unmapped
        header = _header(mm, offset - 4)[0]
        end = offset + ~header
        # valid: header < 0 (non-zero with ~header >= 0), ~header < 2**30, body inside the mapped file
        if header >= 0 or ~header >= 0x40000000 or end > mf.size:
            return self._checked_excerpt(entry, mf)
        self._seq = seq + 1
        index = self._cycle_base + seq
        self._last_index = index
        return Excerpt(mm, offset, end, index)

    def next_index(self) -> int:
        """pychro 0.8: skip one message and return the next index to read."""
        self.next_reader()
        return self.get_index()

    def excerpt_at(self, full_index: int) -> Excerpt:
        """Random access: the message at ``full_index`` (raises :class:`NoData` when it is not committed).

        The reader's position is left after that message.
        """
        saved = self.polling_interval
        self.set_index(full_index)
        self.polling_interval = None
        try:
            cycle = self._cycle
            excerpt = self.next_reader()
            if excerpt.index is None or self._cycle != cycle:
                raise NoData("no message at that index", index=full_index)
            return excerpt
        finally:
            self.polling_interval = saved

    # -- slow paths ----------------------------------------------------------------------------------------
    def _wait_for_entry(self) -> int:
        """Loop until the slot at the position is filled, moving to later cycles when this one is over."""
        while True:
            if self._cycle is None:
                cycles = self._journal.cycles()
                if cycles:
                    self._goto(cycles[0], 0)
            if self._cycle is not None:
                entry = self._load_entry(self._seq)
                if entry:
                    return entry
                self._check_dead_end(self._seq)
                entry = self._check_hole(self._seq)
                if entry:
                    return entry
                if self._back is not None:  # the late messages of a left cycle are delivered: go back
                    self._return_from_left()
                    continue
                if self._advance_cycle():
                    continue
                if self._left and self._late_commit():
                    continue
            if self.polling_interval is None:
                raise NoData("no more committed messages", index=self._next_index_or_none())
            if self.polling_interval > 0:
                time.sleep(self.polling_interval)

    def _check_dead_end(self, seq: int) -> None:
        """An empty slot is the end, unless a later index file exists: index-(n+1) is created only once
        index-n is full, so a short, empty or missing index-n there is damage that hides later messages."""
        n = seq >> self._slot_bits
        later = os.path.join(self._cycle_dir, L.index_file_name(n + 1))  # type: ignore[arg-type]
        if not os.path.lexists(later):
            # the last index file: cut short, longer than the block, or a lost index-0 (Journal.index_damage)
            damage = self._journal.index_damage(self._cycle, n, seq & self._slot_mask, seq)  # type: ignore[arg-type]
            if damage is not None and not self._load_entry(seq):
                raise damage
            return
        if self._load_entry(seq):  # filled meanwhile: the next look reads it
            return
        path = os.path.join(self._cycle_dir, L.index_file_name(n))  # type: ignore[arg-type]
        ctx = dict(path=path, cycle=self._cycle, seq=seq)
        if not os.path.lexists(path):
            raise JournalNotFoundError(
                f"{L.index_file_name(n)} is missing but {L.index_file_name(n + 1)} exists", **ctx
            )
        raise CorruptDataError(
            f"{L.index_file_name(n)} ends at entry {seq & self._slot_mask} ({os.path.getsize(path)} bytes) but "
            f"{L.index_file_name(n + 1)} exists: the index is cut{self._journal.block_size_hint()}", **ctx
        )

    def _check_hole(self, seq: int) -> int:
        """An empty slot with a filled one after it in the same index file: slots fill in order, so this is
        damage that would silently skip the rest of the cycle - unless it fills within ``HOLE_GRACE_S`` (a reader
        can load slot k empty, then see k+1 filled by a writer that filled k in between). Returns the entry if
        it filled, 0 when no later slot is filled; raises :class:`CorruptDataError` for a hole that stays."""
        if not self._later_slot_filled(seq):
            return 0
        deadline = time.monotonic() + L.HOLE_GRACE_S
        pause = 0.001
        while True:
            entry = self._load_entry(seq)
            if entry:
                return entry
            if time.monotonic() >= deadline:
                n = seq >> self._slot_bits
                raise CorruptDataError(
                    "index slot is empty but later slots are filled (slots fill in order)",
                    path=os.path.join(self._cycle_dir, L.index_file_name(n)),  # type: ignore[arg-type]
                    cycle=self._cycle, seq=seq, index=self._cycle_base + seq,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _later_slot_filled(self, seq: int) -> bool:
        """Is a slot after ``seq`` set in its (mapped) index file? Looks through the slots known to lie in
        written pages, then probes the first slot of the next page (a load there could fault on tmpfs)."""
        if (seq >> self._slot_bits) != self._ifile or self._slots is None:
            return False  # that index file is not mapped (absent): nothing follows in it
        slot = seq & self._slot_mask
        nslots = self._nslots
        if slot + 1 < nslots and np.count_nonzero(np.frombuffer(self._slots[slot + 1 : nslots], np.uint64)):
            return True
        return bool(self._index_maps[self._ifile].read_slot(max(nslots, slot + 1)))

    def _load_entry(self, seq: int) -> int:
        n = seq >> self._slot_bits
        slot = seq & self._slot_mask
        if n != self._ifile or slot >= self._nslots:
            if not self._map_index(n, slot):
                return 0
        return int(self._slots[slot])

    def _map_index(self, n: int, slot: int) -> bool:
        """Make index file ``n`` current, mapping or remapping it until ``slot`` is inside; False if absent or
        if ``slot`` lies in a page never written (loading it could fault on tmpfs: it is empty anyway)."""
        while len(self._index_maps) <= n:
            path = os.path.join(self._cycle_dir, L.index_file_name(len(self._index_maps)))  # type: ignore[arg-type]
            try:
                mf = MappedFile.open_read(path, self.config.index_block_size)
            except JournalNotFoundError:
                return False
            if mf.size == self.config.index_block_size and os.path.getsize(path) > mf.size:
                mf.close()  # written with a bigger index_block_size: its slots would be misnumbered
                raise self._journal.oversized_index(path, os.path.getsize(path), self._cycle, self._seq)  # type: ignore[arg-type]
            self._index_maps.append(mf)
        mf = self._index_maps[n]
        if slot * L.ENTRY_SIZE + L.ENTRY_SIZE > mf.size:
            self._slots = None
            self._ifile = -1
            mf.refresh(self.config.index_block_size)
        self._slots = mf.u64_view()
        # learn which pages were written (pread probes) without loading from the others: they fault on a full
        # tmpfs. A filled slot means every slot before it is filled: then find how far the written pages reach.
        if mf.read_slot(slot):
            mf.count_filled(slot + 1)
        self._nslots = min(len(self._slots), mf.written // L.ENTRY_SIZE)  # the fast path loads only below
        self._ifile = n
        return slot < self._nslots

    def _advance_cycle(self) -> bool:
        """At an empty slot of a finished cycle, move to the next existing cycle folder."""
        current = self._cycle
        if current is None or current >= self.config.cycle_of_ms(self._clock()):
            return False  # Java's rule: a cycle is over only once the clock has left it
        later = [c for c in self._journal.cycles() if c > current]
        if not later:
            return False
        if current >= self.config.cycle_of_ms(self._clock() - int(LATE_COMMIT_GRACE_S * 1000)):
            # it ended less than the grace ago (a reader catching up on old cycles watches none of them)
            self._left.append([current, self._seq, time.monotonic() + LATE_COMMIT_GRACE_S])
        self._goto(later[0], 0, keep_left=True)
        return True

    def _late_commit(self) -> bool:
        """Is a message committed late into a cycle left recently? Then go there (back afterwards)."""
        now = time.monotonic()
        self._left = [w for w in self._left if w[2] > now]
        for cycle, seq, _ in self._left:
            # one pread of the slot: the left cycle's files are not kept mapped
            path = self._journal.index_path(cycle, seq >> self._slot_bits)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                slot = os.pread(fd, L.ENTRY_SIZE, (seq & self._slot_mask) * L.ENTRY_SIZE)
            finally:
                os.close(fd)
            if len(slot) == L.ENTRY_SIZE and any(slot):
                self._back = (self._cycle, self._seq)  # type: ignore[assignment]
                self._goto(cycle, seq, keep_left=True)
                return True
        return False

    def _return_from_left(self) -> None:
        assert self._back is not None
        for watch in self._left:
            if watch[0] == self._cycle:
                watch[1] = self._seq
        back, self._back = self._back, None
        self._goto(*back, keep_left=True)

    def _open_data(self, entry: int) -> MappedFile:
        codec = self._journal.codec
        tid, file_no, _ = codec.unpack(entry)
        path = os.path.join(self._cycle_dir, L.data_file_name(tid, file_no))  # type: ignore[arg-type]
        try:
            mf = MappedFile.open_read(path, self.config.data_block_size)
        except JournalNotFoundError:
            raise JournalNotFoundError(
                f"data file {L.data_file_name(tid, file_no)} named by an index entry is missing; "
                + self._journal.missing_data_hint(),
                path=path, cycle=self._cycle, seq=self._seq, entry=entry,
            ) from None
        self._data[entry >> self._data_bits] = mf
        if len(self._data) > self._max_maps:
            self._data.popitem(last=False)  # dropped, not closed: excerpts of that file stay readable
        return mf

    def _checked_excerpt(self, entry: int, mf: MappedFile) -> Excerpt:
        """Slow path when the fast checks fail: remap a grown file, else raise a precise error."""
        offset = entry & self._offset_mask
        ctx = dict(cycle=self._cycle, seq=self._seq, path=mf.path, offset=offset)
        if offset < L.HEADER_SIZE:
            raise CorruptDataError("index entry points before the first header", entry=entry, **ctx)
        if offset > mf.size or offset + 4 > mf.size:
            mf.refresh(self.config.data_block_size)
        if offset > mf.size:
            raise CorruptDataError(f"index entry points past the end of the data file ({mf.size} bytes)"
                                   + self._journal.block_size_hint("data"), **ctx)
        assert mf.mm is not None  # mf.size >= offset >= 4: only an empty file is left unmapped
        header = _header(mf.mm, offset - 4)[0]
        length = L.length_from_header(header)
        if length == -1:
            raise CorruptDataError("index entry points at an uncommitted (zero) header", **ctx)
        if length == -2:
            raise CorruptDataError(f"bad header {header & 0xFFFFFFFF:#010x}: ~length must be below 2**30", **ctx)
        if offset + length > mf.size:
            mf.refresh(self.config.data_block_size)
            if offset + length > mf.size:
                raise CorruptDataError(
                    f"message of {length} bytes runs past the end of the data file ({mf.size} bytes)"
                    + self._journal.block_size_hint("data"), **ctx
                )
        seq = self._seq
        self._seq = seq + 1
        index = self.config.index_of(self._cycle, seq)  # type: ignore[arg-type]
        self._last_index = index
        return Excerpt(mf.mm, offset, offset + length, index)
