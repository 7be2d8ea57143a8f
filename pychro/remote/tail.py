"""JournalTail: the source server's cursor over a journal, turning committed messages into wire frames in bulk.

One tail per subscribed client (vanilla-format.md §9: the Java source keeps one tailer per session). It follows
the journal the way a Java ``VanillaChronicle`` tailer does: slots in index order, the next index file when one
is full, and the next existing cycle folder only once the clock has left the current cycle (§6); it never
writes. New messages from any process become visible by re-reading index slots (the source polls, as Java does).

Frames are built per batch with numpy, not per message: the batch's index entries are split into data file and
offset, every header is read with one gather, and the bodies are copied with one row gather into a
``(rows, 12 + longest body)`` table whose first 12 columns hold the frame headers; a boolean mask then drops the
padding, leaving exactly the wire bytes of consecutive frames.

Mapped files are bounded without ever closing one a batch still uses: only the index file being read stays mapped
(earlier ones of the cycle are closed when the tail moves on), and data files beyond the most recently used
:data:`_MAX_MAPPED_DATA_FILES` are closed after a batch is built, never while it is (a batch may name any number of
data files, e.g. one per writer thread or restart).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import _layout as L
from .._mapping import MappedFile, load_slot
from ..errors import CorruptDataError, JournalNotFoundError, PychroError
from ..journal import Journal
from ..reader import wall_clock_ms
from .wire import FRAME_HEADER_SIZE, frame_header

__all__ = ["JournalTail"]

# Packed 12-byte frame header as a numpy record, so a batch of headers is one array assignment.
_HEADER_DTYPE = np.dtype({"names": ["size", "index"], "formats": ["<i4", "<i8"], "offsets": [0, 4], "itemsize": 12})
# A single body longer than this is sent straight from the mapping (no copy) instead of through the table.
_ZERO_COPY_BODY = 64 << 10
_CYCLE_CHECK_S = 0.05  # how often an idle tail lists folders to find a newer cycle
_MAX_MAPPED_DATA_FILES = 32  # kept mapped between batches (a batch itself may use more)
# An empty slot with filled ones after it is reported as corruption only once it has stayed empty this long
# (it is re-read after the later slots first: a writer can fill slot k and k+1 between two reads).
_HOLE_GRACE_S = L.HOLE_GRACE_S


class JournalTail:
    """Position in a journal plus the mapped files needed to read on from it.

    Parameters
    ----------
    journal : Journal
        The journal to follow (its config decides cycles and entry layout).
    clock : callable, optional
        Epoch milliseconds; decides when a cycle is over (default: the wall clock).
    """

    def __init__(self, journal: Journal, clock: Callable[[], int] | None = None) -> None:
        self.journal = journal
        self.config = journal.config
        codec = journal.codec
        self._data_bits = codec.data_bits
        self._offset_mask = codec.offset_mask
        self._slot_bits = self.config.slot_bits
        self._slot_mask = (1 << self._slot_bits) - 1
        self._clock = clock or wall_clock_ms
        self.cycle: int | None = None
        self.seq = 0
        self.pinned = False  # waiting for one exact index (SUBSCRIBE idx): no moving to later cycles
        self._index: dict[int, MappedFile] = {}  # index files of self.cycle by number
        self._data: OrderedDict[int, MappedFile] = OrderedDict()  # key: entry >> data_bits
        self._next_cycle_check = 0.0
        self._hole: tuple[int | None, int, float] | None = None  # (cycle, seq, since) of an empty slot seen

    def close(self) -> None:
        self._drop_index()
        for mf in self._data.values():
            mf.close()
        self._data.clear()

    # -- positioning ---------------------------------------------------------------------------------------
    def _drop_index(self) -> None:
        for mf in self._index.values():
            mf.close()
        self._index.clear()

    def _goto(self, cycle: int | None, seq: int) -> None:
        if cycle != self.cycle:
            self._drop_index()
            # data maps are keyed by (tid, file_no), which names another file in every cycle folder
            for mf in self._data.values():
                mf.close()
            self._data.clear()
            self.cycle = cycle
        self.seq = seq

    def seek_start(self) -> None:
        """First message of the oldest cycle (or wait for the first cycle folder to appear)."""
        cycles = self.journal.cycles()
        self._goto(cycles[0] if cycles else None, 0)
        self.pinned = False

    def seek_index(self, index: int) -> None:
        """Exactly ``index`` next (inclusive); until it exists, stay there (Java's ``tailer.index(idx)`` loop)."""
        self._goto(*self.config.split_index(index))
        self.pinned = True

    @property
    def next_index(self) -> int | None:
        return None if self.cycle is None else self.config.index_of(self.cycle, self.seq)

    def last_index(self) -> int | None:
        """Full index of the last committed message, None when the journal is empty."""
        end = self.journal.end_index()
        return None if end is None else end - 1

    # -- QUERY ---------------------------------------------------------------------------------------------
    def entry_exists(self, index: int) -> bool:
        """Is the message at ``index`` committed? (Opens the index file afresh: QUERY is rare.)"""
        if index < 0:
            return False
        cycle, seq = self.config.split_index(index)
        path = self.journal.index_path(cycle, seq >> self._slot_bits)
        try:
            mf = MappedFile.open_read(path, self.config.index_block_size)
        except JournalNotFoundError:
            return False
        try:
            return mf.read_slot(seq & self._slot_mask) != 0
        finally:
            mf.close()

    def index_after(self, index: int) -> int | None:
        """For QUERY: None when ``index`` is absent; else the next existing index, or ``index`` itself when
        nothing follows it yet."""
        if not self.entry_exists(index):
            return None
        if self.entry_exists(index + 1):
            return index + 1
        cycle = self.config.split_index(index)[0]
        if cycle < self.config.cycle_of_ms(self._clock()):
            for later in self.journal.cycles():
                if later > cycle and self.entry_exists(self.config.index_of(later, 0)):
                    return self.config.index_of(later, 0)
        return index

    # -- reading -------------------------------------------------------------------------------------------
    def next_frames(self, max_messages: int = 8192, budget_bytes: int = 2 << 20) -> tuple[list[Any], int]:
        """Frames of the next committed messages: (buffers to send in order, message count); ([], 0) if none.

        ``budget_bytes`` bounds the working table (rows x (12 + longest body)); at least one message is
        returned when one is committed, however long.
        """
        if self.cycle is None:
            if not self._find_first_cycle():
                return [], 0
        seq = self.seq
        entries = self._read_entries(seq, max_messages)
        if entries is None:
            # a hole under watch is never skipped by moving on to the next cycle
            if self.pinned or self._hole is not None or not self._maybe_next_cycle():
                return [], 0
            seq = self.seq
            entries = self._read_entries(seq, max_messages)
            if entries is None:
                return [], 0
        first = self.config.index_of(self.cycle, seq)  # type: ignore[arg-type]
        buffers, count = self._frames(entries, first, budget_bytes)
        if count:
            self.seq = seq + count
            self.pinned = False
        return buffers, count

    def _find_first_cycle(self) -> bool:
        now = time.monotonic()
        if now < self._next_cycle_check:
            return False
        self._next_cycle_check = now + _CYCLE_CHECK_S
        cycles = self.journal.cycles()
        if not cycles:
            return False
        self._goto(cycles[0], 0)
        return True

    def _maybe_next_cycle(self) -> bool:
        """At an empty slot: move to the next existing cycle once the clock has left this one (§6)."""
        now = time.monotonic()
        if now < self._next_cycle_check:
            return False
        self._next_cycle_check = now + _CYCLE_CHECK_S
        current = self.cycle
        if current is None or current >= self.config.cycle_of_ms(self._clock()):
            return False
        later = [c for c in self.journal.cycles() if c > current]
        if not later:
            return False
        # leaving this cycle for good: a lost index-0 or a cut last index file hides messages, so raise as the
        # readers do (the client is dropped with that error) instead of going on as if the cycle had ended
        self.journal.count(current)
        self._goto(later[0], 0)
        self._next_cycle_check = 0.0  # an empty cycle folder may follow: the next look must not wait
        return True

    def _index_file(self, n: int, slot: int) -> MappedFile | None:
        mf = self._index.get(n)
        if mf is None:
            try:
                path = self.journal.index_path(self.cycle, n)  # type: ignore[arg-type]
                mf = MappedFile.open_read(path, self.config.index_block_size)
            except JournalNotFoundError:
                return None
            for old in [i for i in self._index if i < n]:  # the tail never reads an earlier index file again
                self._index.pop(old).close()
            self._index[n] = mf
        if (slot + 1) * L.ENTRY_SIZE > mf.size:
            mf.refresh(self.config.index_block_size)
        return mf

    @staticmethod
    def _slots(mf: MappedFile, slot: int, count: int) -> Any:
        """Live view of ``count`` index slots from ``slot`` (read in address order)."""
        return np.frombuffer(mf.mm, dtype="<u8", count=count, offset=slot * L.ENTRY_SIZE)  # type: ignore[arg-type]

    def _read_entries(self, seq: int, max_messages: int) -> Any:
        """Copy of the filled slots from ``seq`` on (at most ``max_messages``), or None when none is filled."""
        n, slot = seq >> self._slot_bits, seq & self._slot_mask
        mf = self._index_file(n, slot)
        if mf is None or mf.mm is None:
            self._check_dead_end(n, seq)
            return None
        # load only from pages a filled slot shows were written: a never-written page faults on a full tmpfs
        if mf.read_slot(slot):
            mf.count_filled(slot + 1)  # slots up to `slot` are filled: learn how far the written pages reach
        count = min(mf.written // L.ENTRY_SIZE - slot, max_messages)
        if count <= 0:
            self._check_dead_end(n, seq)
            return None
        slots = self._slots(mf, slot, count)
        filled = slots != 0
        k = count if filled.all() else int(filled.argmin())  # slots fill strictly in order
        if k < count and filled[k:].any():
            # Slot k was read before the later ones: a writer may have filled it (and the next) in between.
            # Look at it again, now that a later slot was seen filled; only one that stays empty is a hole.
            if load_slot(mf.mm, slot + k) != 0:
                return slots[:k].copy() if k else self._read_entries(seq, max_messages)
            if k:
                return slots[:k].copy()  # the messages before the hole first; the hole at the next look
            self._report_hole(mf, seq)
            return None
        self._hole = None
        if k == 0:
            self._check_dead_end(n, seq)
            return None
        return slots[:k].copy()  # detach from the mapping, which may be remapped later

    def _report_hole(self, mf: MappedFile, seq: int) -> None:
        """Slot ``seq`` stayed empty after later slots were seen filled: corruption once it stays so for
        :data:`_HOLE_GRACE_S` (until then the tail waits, as for a message not committed yet)."""
        now = time.monotonic()
        hole = self._hole
        if hole is None or hole[:2] != (self.cycle, seq):
            self._hole = (self.cycle, seq, now)
            return
        if now - hole[2] >= _HOLE_GRACE_S:
            raise CorruptDataError("index slot is empty but later slots are filled (slots fill in order)",
                                   path=mf.path, cycle=self.cycle, seq=seq)

    def _check_dead_end(self, n: int, seq: int) -> None:
        """No entry at ``seq`` (in index file ``n``): fine, unless index file ``n + 1`` exists - it is created only
        once file ``n`` is full, so the slot is lost (a cut, emptied or deleted index file), not pending."""
        later = self.journal.index_path(self.cycle, n + 1)  # type: ignore[arg-type]
        if not os.path.lexists(later):
            return
        path = self.journal.index_path(self.cycle, n)  # type: ignore[arg-type]
        slot = seq & self._slot_mask
        try:
            mf = MappedFile.open_read(path, self.config.index_block_size)
        except JournalNotFoundError:
            raise JournalNotFoundError(f"index file {os.path.basename(path)} is missing but "
                                       f"{os.path.basename(later)} exists", path=path, cycle=self.cycle,
                                       seq=seq) from None
        try:
            if mf.read_slot(slot) != 0:
                return  # it was filled meanwhile: read on at the next look
            size = mf.size
        finally:
            mf.close()
        raise CorruptDataError(f"index file {os.path.basename(path)} ends at entry {slot} ({size} bytes) but "
                               f"{os.path.basename(later)} exists", path=path, cycle=self.cycle, seq=seq)

    def _data_file(self, key: int, entry: int, need: int) -> MappedFile:
        mf = self._data.get(key)
        if mf is None:
            tid, file_no, _ = self.journal.codec.unpack(entry)
            path = self.journal.data_path(self.cycle, tid, file_no)  # type: ignore[arg-type]
            try:
                mf = MappedFile.open_read(path, self.config.data_block_size)
            except JournalNotFoundError:
                raise JournalNotFoundError(
                    f"data file {os.path.basename(path)} named by an index entry is missing; "
                    + self.journal.missing_data_hint(),
                    path=path, cycle=self.cycle, entry=entry,
                ) from None
            self._data[key] = mf  # closed by _trim_data() after the batch, never during it
        else:
            self._data.move_to_end(key)
        if mf.size < need:
            mf.refresh(self.config.data_block_size)
        return mf

    def _trim_data(self, used: Any) -> None:
        """Close the least recently used data files beyond :data:`_MAX_MAPPED_DATA_FILES`, except ``used``."""
        extra = len(self._data) - _MAX_MAPPED_DATA_FILES
        if extra <= 0:
            return
        for key in [k for k in self._data if k not in used][:extra]:  # oldest first
            self._data.pop(key).close()

    def _frames(self, entries: Any, first_index: int, budget: int) -> tuple[list[Any], int]:
        files: dict[int, MappedFile] = {}
        try:
            return self._build(entries, first_index, budget, files)
        finally:
            self._trim_data(files)  # the table is built (a copy): only a zero-copy body still views its file

    def _build(self, entries: Any, first_index: int, budget: int,
               files: dict[int, MappedFile]) -> tuple[list[Any], int]:
        k = len(entries)
        keys = entries >> np.uint64(self._data_bits)
        offs = (entries & np.uint64(self._offset_mask)).astype(np.int64)
        if keys[0] == keys[-1] and bool((keys == keys[0]).all()):
            groups: list[tuple[int, Any]] = [(int(keys[0]), slice(None))]
        else:  # several writers interleave: one pass per data file, not per run
            groups = [(int(u), keys == u) for u in np.unique(keys)]
        lens = np.empty(k, dtype=np.int64)
        damaged: tuple[int, Exception] | None = None  # (batch row, error) of the first damaged message
        for key, sel in groups:
            o = offs[sel]
            first_entry = int(entries[sel][0])
            try:
                mf = self._data_file(key, first_entry, int(o.max()))
                try:
                    lens[sel] = self._lengths(mf, o, first_index, sel)
                except CorruptDataError:
                    if not mf.refresh(self.config.data_block_size):  # a short file may have grown: look again
                        raise
                    lens[sel] = self._lengths(mf, o, first_index, sel)
            except (PychroError, OSError) as exc:  # damaged, missing or unreadable
                seq = getattr(exc, "seq", None)
                row = (self.config.index_of(self.cycle, seq) - first_index if seq is not None  # type: ignore[arg-type]
                       else 0 if isinstance(sel, slice) else int(sel.argmax()))
                if damaged is None or row < damaged[0]:
                    damaged = (row, exc)
                continue
            files[key] = mf
        if damaged is not None:
            # Send the intact messages before the damaged one first; the error ends the session only when
            # nothing is left before it (the client has then received everything up to it).
            if damaged[0] == 0:
                raise damaged[1]
            files.clear()
            return self._build(entries[: damaged[0]], first_index, budget, files)
        # A zero header after a committed entry is not visible yet: stop before it and retry later.
        pending = lens < 0
        if pending.any():
            k = int(pending.argmax())
            if k == 0:
                return [], 0
        # Rows while the table (rows x (12 + longest body so far)) fits the budget; at least one.
        widths = FRAME_HEADER_SIZE + np.maximum.accumulate(lens[:k])
        cost = np.arange(1, k + 1, dtype=np.int64) * widths
        cut = max(1, int(np.searchsorted(cost, budget, side="right")))
        if cut == 1 and lens[0] > _ZERO_COPY_BODY:
            mf = files[int(keys[0])]
            o, n = int(offs[0]), int(lens[0])
            return [frame_header(n, first_index), memoryview(mf.mm)[o : o + n]], 1  # type: ignore[arg-type]
        return [self._table(files, groups, offs[:cut], lens[:cut], keys[:cut], first_index, int(widths[cut - 1]))], cut

    def _lengths(self, mf: MappedFile, o: Any, first_index: int, sel: Any) -> Any:
        """Body lengths from the ``~length`` headers, checked; -1 where the header is still 0."""
        size = mf.size
        bad = (o < L.HEADER_SIZE) | (o > size)
        if bad.any():
            self._corrupt(f"index entry points outside its data file ({size} bytes)", mf, o, bad, first_index, sel)
        bad = (o & 3) != 0
        if bad.any():
            self._corrupt("index entry offset is not 4-byte aligned", mf, o, bad, first_index, sel)
        words = np.frombuffer(mf.mm, dtype="<i4", count=size // 4)  # type: ignore[arg-type]
        headers = words[(o >> 2) - 1].astype(np.int64)
        del words
        lens = ~headers
        bad = (headers > 0) | (lens >= L.MAX_BODY_LENGTH) | (o + lens > size)
        bad &= headers != 0
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            n = int(lens[row])
            what = (f"message of {n} bytes runs past the end of the data file ({size} bytes)"
                    + self.journal.block_size_hint("data")
                    if 0 <= n < L.MAX_BODY_LENGTH
                    else f"bad header {int(headers[row]) & 0xFFFFFFFF:#010x}: ~length must be below 2**30")
            self._corrupt(what, mf, o, bad, first_index, sel)
        lens[headers == 0] = -1
        return lens

    def _corrupt(self, what: str, mf: MappedFile, o: Any, bad: Any, first_index: int, sel: Any) -> None:
        row = int(np.flatnonzero(bad)[0])
        seqs = np.arange(len(bad) if isinstance(sel, slice) else len(sel))[sel]
        index = first_index + int(seqs[row])
        cycle, seq = self.config.split_index(index)
        raise CorruptDataError(what, path=mf.path, cycle=cycle, seq=seq, offset=int(o[row]))

    def _table(self, files: dict[int, MappedFile], groups: list[tuple[int, Any]], offs: Any, lens: Any,
               keys: Any, first_index: int, width: int) -> Any:
        """Wire bytes of ``len(offs)`` frames: header + body rows, padding masked away."""
        k = len(offs)
        body_width = width - FRAME_HEADER_SIZE
        table = np.empty((k, width), dtype=np.uint8)
        headers = np.empty(k, dtype=_HEADER_DTYPE)
        headers["size"] = lens
        headers["index"] = np.arange(first_index, first_index + k, dtype=np.int64)
        table[:, :FRAME_HEADER_SIZE] = headers.view(np.uint8).reshape(k, FRAME_HEADER_SIZE)
        if body_width:
            for key, sel in groups:
                mf = files[key]
                rows = np.arange(k) if isinstance(sel, slice) else np.flatnonzero(keys == key)
                if not len(rows):
                    continue
                o = offs[rows]
                data = np.frombuffer(mf.mm, dtype=np.uint8, count=mf.size)  # type: ignore[arg-type]
                # A window must not run past the last byte these messages vouch for: past it the file may be
                # a hole, and loading a hole faults on a full tmpfs (or past the file's end). Rows near that
                # end are read from a zero-padded copy of their stretch of the file instead.
                limit = int((o + lens[rows]).max())
                tail = o + body_width > limit
                if tail.any():
                    lo = int(o[tail].min())
                    padded = np.zeros(limit - lo + body_width, dtype=np.uint8)
                    padded[: limit - lo] = data[lo:limit]
                    windows = as_strided(padded, shape=(limit - lo + 1, body_width), strides=(1, 1), writeable=False)
                    table[rows[tail], FRAME_HEADER_SIZE:] = windows[o[tail] - lo]
                    del windows
                    rows, o = rows[~tail], o[~tail]
                if len(rows):
                    # Row i of the window view is the body_width bytes starting at byte i of the file.
                    windows = as_strided(data, shape=(mf.size - body_width + 1, body_width), strides=(1, 1),
                                         writeable=False)
                    if len(rows) == k:
                        table[:, FRAME_HEADER_SIZE:] = windows[o]
                    else:
                        table[rows, FRAME_HEADER_SIZE:] = windows[o]
                    del windows
                del data
        keep = np.arange(width) < (FRAME_HEADER_SIZE + lens)[:, None]
        return table[keep]
