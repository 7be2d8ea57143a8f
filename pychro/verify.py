"""verify_journal: check every committed message of a journal, vectorised, without writing anything.

Checks (vanilla-format.md §1-§5): index files numbered without gaps and of the configured size; filled slots
contiguous (nothing after the first zero slot); each entry names an existing data file; bodies 4-aligned with
a committed header (non-zero, ``~header < 2**30``) and inside both the file and the data block; messages of one
data file do not overlap and appear in the index in file order (one appender writes one file in order);
thread ids fit the configured bits. Never repairs, never writes.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _layout as L
from ._mapping import MappedFile
from .config import VanillaConfig
from .errors import FormatError, JournalNotFoundError
from .journal import Journal

__all__ = ["CycleReport", "Problem", "VerifyReport", "verify_journal"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, and where."""

    cycle: int
    folder: str
    what: str
    seq: int | None = None
    path: str | None = None
    offset: int | None = None

    def __str__(self) -> str:
        where = [f"cycle {self.cycle} ({self.folder})"]
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.path is not None:
            where.append(os.path.basename(self.path))
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{', '.join(where)}: {self.what}"


@dataclass
class CycleReport:
    cycle: int
    folder: str
    messages: int = 0  # committed slots
    valid: int = 0  # messages that passed every check
    problems: list[Problem] = field(default_factory=list)


@dataclass
class VerifyReport:
    path: str
    thread_id_bits: int
    cycles: list[CycleReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # journal-level (not tied to one cycle)
    empty: bool = False  # a journal folder with nothing in it yet (no cycle folder)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(c.problems for c in self.cycles)

    @property
    def first_problem(self) -> Problem | None:
        every = self.problems + [p for c in self.cycles for p in c.problems]
        return every[0] if every else None

    def summary(self) -> str:
        lines = [f"journal {self.path} (thread-id bits {self.thread_id_bits})"]
        for c in self.cycles:
            state = "ok" if not c.problems else f"{len(c.problems)} problem(s)"
            lines.append(f"  {c.folder}: {c.valid:,} valid of {c.messages:,} messages - {state}")
        lines.extend(f"  ! {p}" for p in self.problems)
        first = self.first_problem
        if first is None and self.empty:
            lines.append("empty journal: no cycle folder yet, nothing to verify")
        else:
            lines.append("OK" if first is None else f"FIRST PROBLEM: {first}")
        return "\n".join(lines)


def verify_journal(
    path: str | os.PathLike[str],
    *,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    date: _dt.date | str | None = None,
    max_problems_per_cycle: int = 20,
) -> VerifyReport:
    """Check every committed message of a journal (or of the cycle holding ``date``, a date or ISO string).

    A folder that is not a journal under ``config`` (no cycle folder it would name, a cycle folder itself, a
    folder of journals) raises :class:`~pychro.errors.JournalNotFoundError` saying what was found and which
    configuration would match; an empty folder gives a report with ``empty=True``.

    Examples
    --------
    >>> report = verify_journal(path)   # doctest: +SKIP
    >>> report.ok, report.cycles[0].valid  # doctest: +SKIP
    (True, 10)
    """
    journal = Journal(path, config, thread_id_bits)
    cfg = journal.config
    report = VerifyReport(journal.path, int(cfg.thread_id_bits or 0))
    report.empty = journal.check_layout()
    cycles = journal.cycles()
    if isinstance(date, str):
        try:
            date = _dt.date.fromisoformat(date.strip())
        except ValueError:
            raise ValueError(f"date={date!r} is not an ISO date (YYYY-MM-DD)") from None
    if date is not None:
        wanted = cfg.cycle_of(date)
        cycles = [c for c in cycles if c == wanted]
        if not cycles:
            report.problems.append(Problem(wanted, cfg.folder_name(wanted), "no folder for this cycle"))
    for cycle in cycles:
        report.cycles.append(_verify_cycle(journal, cycle, max_problems_per_cycle))
    return report


BATCH_ROWS = 1 << 18  # index entries checked per step: verify's memory depends on this, not on the cycle


@dataclass
class _FileState:
    """What verify carries from one batch to the next for one data file."""

    next_header: int = 0  # lowest header position the file's next message may have (order and overlap)
    reported: set[str] = field(default_factory=set)  # kinds of problem already reported (one each per file)


def _verify_cycle(journal: Journal, cycle: int, limit: int) -> CycleReport:
    cfg = journal.config
    folder = cfg.folder_name(cycle)
    rep = CycleReport(cycle, folder)

    def problem(what: str, **where: Any) -> None:
        if len(rep.problems) < limit:
            rep.problems.append(Problem(cycle, folder, what, **where))

    files: dict[int, _FileState] = {}
    for seq0, entries in _entry_batches(journal, cycle, problem, BATCH_ROWS):
        rep.messages += len(entries)
        rep.valid += len(entries) - _check_batch(journal, cycle, seq0, entries, files, problem, limit)
    # data files were checked in (tid, file_no) order: report the earliest seq first (index-file problems,
    # without a seq, stay in front)
    rep.problems.sort(key=lambda p: -1 if p.seq is None else p.seq)
    return rep


def _check_batch(
    journal: Journal, cycle: int, seq0: int, entries: Any, files: dict[int, _FileState], problem: Any, limit: int,
) -> int:
    """Check the messages of consecutive entries (the first is seq ``seq0``); returns how many are bad."""
    cfg = journal.config
    codec = journal.codec
    tids = (entries >> np.uint64(codec.tid_shift)).astype(np.int64)
    pos = entries & np.uint64(codec.pos_mask)
    file_nos = (pos >> np.uint64(codec.data_bits)).astype(np.int64)
    offsets = (pos & np.uint64(codec.offset_mask)).astype(np.int64)
    del pos
    bad = np.zeros(len(entries), dtype=bool)

    misaligned = (offsets < L.HEADER_SIZE) | (offsets % L.ALIGNMENT != 0)
    for i in np.flatnonzero(misaligned)[:limit]:
        problem("body offset is not a 4-aligned position after a header", seq=seq0 + int(i), offset=int(offsets[i]))
    bad |= misaligned

    # group by data file: one mapping each, headers gathered with one numpy take per file
    key = (tids << 32) | file_nos
    del tids, file_nos
    order = np.argsort(key, kind="stable")
    uniq, starts = np.unique(key[order], return_index=True)
    bounds = list(starts) + [len(order)]
    for g, k in enumerate(uniq):
        rows = order[bounds[g] : bounds[g + 1]]
        tid, file_no = int(k >> 32), int(k & 0xFFFFFFFF)
        state = files.setdefault(int(k), _FileState())
        path = journal.data_path(cycle, tid, file_no)
        try:
            mf = MappedFile.open_read(path, cfg.data_block_size)
        except (JournalNotFoundError, FormatError) as exc:
            if "missing" not in state.reported:
                state.reported.add("missing")
                what = (f"data file is missing ({journal.missing_data_hint()})"
                        if isinstance(exc, JournalNotFoundError) else "data file is not a regular file")
                problem(what, seq=seq0 + int(rows[0]), path=path)
            bad[rows] = True
            continue
        try:
            _check_file(mf, seq0, rows, offsets, bad, state, problem, lambda: journal.block_size_hint("data"))
        finally:
            mf.close()
    return int(bad.sum())


def _check_file(mf: MappedFile, seq0: int, rows: Any, offsets: Any, bad: Any, state: _FileState,
                problem: Any, hint: Any) -> None:
    """Headers, bounds, overlap and order of the messages of one data file (rows in index order)."""

    def first(kind: str, which: Any) -> Any:
        """The rows of ``which`` to report: the first, unless this kind was reported for the file already."""
        if kind in state.reported or not len(which):
            return which[:0]
        state.reported.add(kind)
        return which[:1]

    off = offsets[rows]
    ok = ~bad[rows] & (off <= mf.size)
    for i in first("past_file", rows[~ok & ~bad[rows]]):
        problem(f"index entry points past the end of the data file ({mf.size} bytes){hint()}", seq=seq0 + int(i),
                path=mf.path, offset=int(offsets[i]))
    bad[rows[~ok]] = True
    good = rows[ok]
    if not len(good) or mf.mm is None:
        return
    words = np.frombuffer(mf.mm, dtype="<i4", count=mf.size // 4)
    headers = words[(offsets[good] - L.HEADER_SIZE) // 4].astype(np.int64)
    del words  # release the export of the mapping before it is closed
    ln = ~headers
    uncommitted = headers == 0
    for i in first("uncommitted", good[uncommitted]):
        problem("header is 0 (uncommitted) behind a filled index slot",
                seq=seq0 + int(i), path=mf.path, offset=int(offsets[i]))
    broken = ~uncommitted & ((ln < 0) | (ln >= L.MAX_BODY_LENGTH))
    for j in first("broken", np.flatnonzero(broken)):
        i = good[j]
        problem(f"bad header {int(headers[j]) & 0xFFFFFFFF:#010x}: ~length must be below 2**30",
                seq=seq0 + int(i), path=mf.path, offset=int(offsets[i]))
    past = ~uncommitted & ~broken & (offsets[good] + ln > mf.size)
    for i in first("past_body", good[past]):
        problem(f"body runs past the end of the data file ({mf.size} bytes){hint()}", seq=seq0 + int(i), path=mf.path,
                offset=int(offsets[i]))
    fail = uncommitted | broken | past
    bad[good[fail]] = True
    # order and overlap: in index order a file's messages must start at or after the previous one's end
    # (the previous one may be in an earlier batch)
    keep = good[~fail]
    if len(keep):
        starts = offsets[keep]
        ends = starts + ln[~fail]
        next_header_min = np.empty(len(keep), dtype=np.int64)
        next_header_min[0] = state.next_header
        next_header_min[1:] = (ends[:-1] + 3) & ~3
        clash = (starts - L.HEADER_SIZE) < next_header_min
        for j in first("overlap", np.flatnonzero(clash)):
            problem("message overlaps the previous one of its data file or is out of file order",
                    seq=seq0 + int(keep[j]), path=mf.path, offset=int(starts[j]))
        bad[keep[clash]] = True
        state.next_header = int((ends[-1] + 3) & ~3)


def _entry_batches(journal: Journal, cycle: int, problem: Any, batch: int) -> Iterator[tuple[int, Any]]:
    """The committed entries of a cycle as ``(first seq, entries)`` batches of about ``batch`` (small index
    files are joined: a batch per file would cost a pass per file)."""
    parts: list[Any] = []
    have = seq0 = 0
    for seq, part in _index_parts(journal, cycle, problem, batch):
        if not have:
            seq0 = seq
        parts.append(part)
        have += len(part)
        if have >= batch:
            yield seq0, parts[0] if len(parts) == 1 else np.concatenate(parts)
            parts, have = [], 0
    if have:
        yield seq0, parts[0] if len(parts) == 1 else np.concatenate(parts)


def _lost_index(journal: Journal, cycle: int, problem: Any) -> None:
    """A missing or empty index-0 while the data files prove messages were committed: the index was lost."""
    lost = journal.index_damage(cycle, 0, 0, 0)
    if lost is not None:
        problem(str(lost).split(" (path=")[0], path=journal.index_path(cycle, 0))


def _index_parts(journal: Journal, cycle: int, problem: Any, batch: int) -> Iterator[tuple[int, Any]]:
    """The committed entries of a cycle as consecutive ``(first seq, entries)`` parts of at most ``batch``, and
    problems with its index files (gaps, sizes, stray entries). Reads the files (no mapping: no hole is
    loaded)."""
    cfg = journal.config
    files = journal.index_files(cycle)
    per_file = cfg.slots_per_index_file
    for expect, n in enumerate(files):
        path = journal.index_path(cycle, n)
        if n != expect:
            problem(f"index-{expect} is missing (index-{n} exists)", path=path)
            return
        if not os.path.isfile(path):
            problem("index file is not a regular file", path=path)
            return
        size = os.path.getsize(path)
        if size != cfg.index_block_size:
            problem(f"index file is {size} bytes, expected {cfg.index_block_size}{journal.block_size_hint()}",
                    path=path)
        slots = min(size, cfg.index_block_size) // L.ENTRY_SIZE
        filled = None  # the first zero slot, once found
        with open(path, "rb") as fh:
            for lo in range(0, slots, batch):
                raw = np.empty(min(batch, slots - lo), dtype="<u8")
                got = fh.readinto(memoryview(raw).cast("B")) // L.ENTRY_SIZE  # type: ignore[arg-type]
                raw = raw[:got]
                if filled is None:
                    zero = np.flatnonzero(raw == 0)
                    if not len(zero):
                        yield n * per_file + lo, raw
                        continue
                    filled = lo + int(zero[0])
                    if zero[0]:
                        yield n * per_file + lo, raw[: zero[0]]
                    raw = raw[zero[0] :]
                    lo = filled
                stray = np.flatnonzero(raw)
                if len(stray):
                    seq = (n << cfg.slot_bits) + lo + int(stray[0])
                    problem(f"entry after the first empty slot (seq {(n << cfg.slot_bits) + filled} is empty)",
                            seq=seq, path=path)
                    break
        if filled is None:
            filled = slots
        if filled < per_file:
            if expect + 1 < len(files):
                problem(f"index-{n} is not full but index-{n + 1} exists", path=path)
            if n == 0 and filled == 0:
                _lost_index(journal, cycle, problem)
            return
    if not files:
        _lost_index(journal, cycle, problem)
