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
        lines.append("OK" if first is None else f"FIRST PROBLEM: {first}")
        return "\n".join(lines)


def verify_journal(
    path: str | os.PathLike[str],
    *,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    date: _dt.date | None = None,
    max_problems_per_cycle: int = 20,
) -> VerifyReport:
    """Check every committed message of a journal (or of the cycle holding ``date``).

    Examples
    --------
    >>> report = verify_journal(path)   # doctest: +SKIP
    >>> report.ok, report.cycles[0].valid  # doctest: +SKIP
    (True, 10)
    """
    journal = Journal(path, config, thread_id_bits)
    cfg = journal.config
    report = VerifyReport(journal.path, int(cfg.thread_id_bits or 0))
    cycles = journal.cycles()
    if date is not None:
        wanted = cfg.cycle_of(date)
        cycles = [c for c in cycles if c == wanted]
        if not cycles:
            report.problems.append(Problem(wanted, cfg.folder_name(wanted), "no folder for this cycle"))
    for cycle in cycles:
        report.cycles.append(_verify_cycle(journal, cycle, max_problems_per_cycle))
    return report


def _verify_cycle(journal: Journal, cycle: int, limit: int) -> CycleReport:
    cfg = journal.config
    folder = cfg.folder_name(cycle)
    rep = CycleReport(cycle, folder)

    def problem(what: str, **where: Any) -> None:
        if len(rep.problems) < limit:
            rep.problems.append(Problem(cycle, folder, what, **where))

    entries = _read_entries(journal, cycle, problem)
    rep.messages = len(entries)
    if not len(entries):
        return rep
    codec = journal.codec
    tids = (entries >> np.uint64(codec.tid_shift)).astype(np.int64)
    pos = entries & np.uint64(codec.pos_mask)
    file_nos = (pos >> np.uint64(codec.data_bits)).astype(np.int64)
    offsets = (pos & np.uint64(codec.offset_mask)).astype(np.int64)
    bad = np.zeros(len(entries), dtype=bool)

    misaligned = (offsets < L.HEADER_SIZE) | (offsets % L.ALIGNMENT != 0)
    for i in np.flatnonzero(misaligned)[:limit]:
        problem("body offset is not a 4-aligned position after a header", seq=int(i), offset=int(offsets[i]))
    bad |= misaligned

    # group by data file: one mapping each, headers gathered with one numpy take per file
    key = (tids << 32) | file_nos
    order = np.argsort(key, kind="stable")
    uniq, starts = np.unique(key[order], return_index=True)
    bounds = list(starts) + [len(order)]
    lengths = np.full(len(entries), -1, dtype=np.int64)
    for g, k in enumerate(uniq):
        rows = order[bounds[g] : bounds[g + 1]]
        tid, file_no = int(k >> 32), int(k & 0xFFFFFFFF)
        path = journal.data_path(cycle, tid, file_no)
        try:
            mf = MappedFile.open_read(path, cfg.data_block_size)
        except JournalNotFoundError:
            problem(f"data file is missing ({journal.missing_data_hint()})", seq=int(rows[0]), path=path)
            bad[rows] = True
            continue
        except FormatError:
            problem("data file is not a regular file", seq=int(rows[0]), path=path)
            bad[rows] = True
            continue
        try:
            _check_file(mf, rows, offsets, lengths, bad, problem)
        finally:
            mf.close()
    rep.valid = int(len(entries) - bad.sum())
    # data files were checked in (tid, file_no) order: report the earliest seq first (index-file problems,
    # without a seq, stay in front)
    rep.problems.sort(key=lambda p: -1 if p.seq is None else p.seq)
    return rep


def _check_file(mf: MappedFile, rows: Any, offsets: Any, lengths: Any, bad: Any, problem: Any) -> None:
    """Headers, bounds, overlap and order of the messages of one data file (rows in index order)."""
    off = offsets[rows]
    ok = ~bad[rows] & (off <= mf.size)
    for i in rows[~ok & ~bad[rows]][:1]:
        problem(f"index entry points past the end of the data file ({mf.size} bytes)", seq=int(i), path=mf.path,
                offset=int(offsets[i]))
    bad[rows[~ok]] = True
    good = rows[ok]
    if not len(good) or mf.mm is None:
        return
    words = np.frombuffer(mf.mm, dtype="<i4", count=mf.size // 4)
    headers = words[(offsets[good] - L.HEADER_SIZE) // 4].astype(np.int64)
    del words  # release the export of the mapping before it is closed
    ln = ~headers
    uncommitted = headers == 0
    for i in good[uncommitted][:1]:
        problem("header is 0 (uncommitted) behind a filled index slot",
                seq=int(i), path=mf.path, offset=int(offsets[i]))
    broken = ~uncommitted & ((ln < 0) | (ln >= L.MAX_BODY_LENGTH))
    for i, h in zip(good[broken][:1], headers[broken][:1]):
        problem(f"bad header {int(h) & 0xFFFFFFFF:#010x}: ~length must be below 2**30", seq=int(i), path=mf.path,
                offset=int(offsets[i]))
    past = ~uncommitted & ~broken & (offsets[good] + ln > mf.size)
    for i in good[past][:1]:
        problem(f"body runs past the end of the data file ({mf.size} bytes)", seq=int(i), path=mf.path,
                offset=int(offsets[i]))
    fail = uncommitted | broken | past
    bad[good[fail]] = True
    lengths[good[~fail]] = ln[~fail]
    # order and overlap: in index order a file's messages must start at or after the previous one's end
    keep = good[~fail]
    if len(keep) > 1:
        starts = offsets[keep]
        ends = starts + lengths[keep]
        next_header_min = (ends[:-1] + 3) & ~3
        clash = (starts[1:] - L.HEADER_SIZE) < next_header_min
        for j in np.flatnonzero(clash)[:1]:
            problem("message overlaps the previous one of its data file or is out of file order",
                    seq=int(keep[j + 1]), path=mf.path, offset=int(starts[j + 1]))
        bad[keep[1:][clash]] = True


def _read_entries(journal: Journal, cycle: int, problem: Any) -> Any:
    """All committed entries of a cycle, and problems with its index files (gaps, sizes, stray entries)."""
    cfg = journal.config
    files = journal.index_files(cycle)
    parts = []
    for expect, n in enumerate(files):
        path = journal.index_path(cycle, n)
        if n != expect:
            problem(f"index-{expect} is missing (index-{n} exists)", path=path)
            break
        if not os.path.isfile(path):
            problem("index file is not a regular file", path=path)
            break
        size = os.path.getsize(path)
        if size != cfg.index_block_size:
            problem(f"index file is {size} bytes, expected {cfg.index_block_size}", path=path)
        with open(path, "rb") as fh:
            raw = np.frombuffer(fh.read(min(size, cfg.index_block_size) // 8 * 8), dtype="<u8")
        zero = np.flatnonzero(raw == 0)
        filled = int(zero[0]) if len(zero) else len(raw)
        stray = np.flatnonzero(raw[filled:])
        if len(stray):
            seq = (n << cfg.slot_bits) + filled + int(stray[0])
            problem(f"entry after the first empty slot (seq {(n << cfg.slot_bits) + filled} is empty)",
                    seq=seq, path=path)
        parts.append(raw[:filled])
        if filled < cfg.slots_per_index_file:
            if expect + 1 < len(files):
                problem(f"index-{n} is not full but index-{n + 1} exists", path=path)
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<u8")
