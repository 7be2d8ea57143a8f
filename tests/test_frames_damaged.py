"""Damaged journals through the frames read paths (issue 6): ``read_table``, ``iter_batches`` (one and two
decoding threads) and ``iter_batches(follow=True)``.

The journal has two writer threads and two days in small blocks (index files of 32 slots, data files of
1 KiB), so a cycle has several index and data files. Each case damages a copy in one precise way; every read
path must then give the same precise error (type, what is wrong, cycle, seq, index, data file, offset) after
delivering exactly the intact rows before the damaged one (``iter_batches``), never a crash, a hang or garbage.
A header that breaks the rules always raises :class:`CorruptDataError`, whatever ``errors=`` says (read_table's
docstring); ``errors=`` governs messages that do not match the schema. The expected errors are also compared
with the row reader's, which must agree on cycle, seq, file and offset.

Unreadable files and a read-only copy are read in a child process without the capabilities that let root
ignore file modes (``setpriv``), as tests/test_verify.py does.

An index file cut short, emptied or deleted while a later one exists, or with an emptied slot before filled
ones, is an error for the frames reader (the row reader still stops there silently; ``verify`` reports it).

Journals left by a writer killed with SIGKILL (inside a message, around the commit, around the creation of
data and index files) are read by every frames path and by the remote clients: exactly what was committed
(the TODO of tests/test_crash.py for these paths).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import FakeClock
from reliability_helpers import (
    FRAMES_SCHEMA,
    HERE,
    REPO,
    build_frames_journal,
    frames_body,
    frames_row_intact,
    frames_rows_by_row_reader,
    frames_rows_of_table,
    journal_state,
    read_report,
    report_line,
    run_frames_writer,
    small_config,
    write_frames_message,
)

pa = pytest.importorskip("pyarrow")

from pychro import (  # noqa: E402
    CorruptDataError,
    FormatError,
    JournalNotFoundError,
    PychroError,
    PychroWarning,
    SchemaMismatchError,
    VanillaChronicleWriter,
)
from pychro.frames import ReadStats, iter_batches, read_table  # noqa: E402
from pychro.verify import verify_journal  # noqa: E402

pytestmark = pytest.mark.timeout(120)

CFG = small_config(data_block_size=1024)  # 32 slots per index file, 1 KiB data files
SLOTS = 32
OFFSET_BITS = 10  # log2(1024): entry = tid << 48 | file_no << 10 | offset (vanilla-format.md §2, 16 tid bits)
DAY_A, DAY_B = "20200301", "20200302"
CYCLE_A, CYCLE_B = 18322, 18323  # days since 1970-01-01
SEQ_BITS = 40  # DAYS cycles: index = cycle << 40 | seq
TRIED: dict[str, list[str]] = {"read_table": [], "iter_batches": [], "follow": [], "child": [], "crash": []}


@pytest.fixture(scope="module", autouse=True)
def _print_cases(request: pytest.FixtureRequest) -> Any:
    yield
    report_line(request,
                "[frames damaged] cases per path: " + "; ".join(f"{k}: {len(set(v))}" for k, v in TRIED.items()))


@dataclass
class Base:
    root: Path
    written: list[tuple[int, int, int]]  # (index, w, i) in index order

    def seqs(self, cycle: int) -> list[tuple[int, int, int]]:
        return [r for r in self.written if r[0] >> SEQ_BITS == cycle]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """Day A: writer 1 x15, writer 2 x15, writer 1 x15 (index-0, index-1; 3 + 1 data files); day B: 6 + 6."""
    root = tmp_path_factory.mktemp("frames-damaged") / "base"
    written = build_frames_journal(root, config=CFG)
    assert len(written) == 57
    assert sorted(p.name for p in (root / DAY_A).iterdir() if p.name.startswith("index-")) == ["index-0", "index-1"]
    assert len([p for p in (root / DAY_A).iterdir() if p.name.startswith("data-")]) >= 4
    return Base(root, written)


@pytest.fixture
def journal(base: Base, tmp_path: Path) -> Path:
    dst = tmp_path / "j"
    shutil.copytree(base.root, dst)
    return dst


# -- locating things with the format's own rules (not pychro's codec) ------------------------------------------
def slot(root: Path, seq: int, day: str = DAY_A) -> int:
    raw = (root / day / f"index-{seq // SLOTS}").read_bytes()
    return struct.unpack_from("<Q", raw, 8 * (seq % SLOTS))[0]


def set_slot(root: Path, seq: int, entry: int, day: str = DAY_A) -> None:
    with open(root / day / f"index-{seq // SLOTS}", "r+b") as fh:
        fh.seek(8 * (seq % SLOTS))
        fh.write(struct.pack("<Q", entry))


def where(root: Path, seq: int, day: str = DAY_A) -> tuple[Path, int]:
    """(data file, body offset) of message ``seq`` of ``day``."""
    e = slot(root, seq, day)
    tid, file_no, offset = e >> 48, (e & ((1 << 48) - 1)) >> OFFSET_BITS, e & ((1 << OFFSET_BITS) - 1)
    return root / day / f"data-{tid}-{file_no}", offset


def put(path: Path, pos: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(pos)
        fh.write(data)


def set_header(root: Path, seq: int, value: int) -> None:
    data, off = where(root, seq)
    put(data, off - 4, struct.pack("<I", value & 0xFFFFFFFF))


def index_of(cycle: int, seq: int) -> int:
    return cycle << SEQ_BITS | seq


# -- the expected error ----------------------------------------------------------------------------------------
@dataclass
class Expect:
    error: type[PychroError]
    what: str  # a fragment of the message
    seq: int | None  # seq in day A (None: the error does not name one)
    path: Path | None = None
    offset: int | None = None
    row_reader_what: str | None = None  # the row reader's wording, where it differs
    cycle: int | None = CYCLE_A  # None: the error does not name the cycle (only the path, which holds it)
    extra: dict[str, Any] = field(default_factory=dict)


def check_error(exc: BaseException, expect: Expect) -> None:
    assert type(exc) is expect.error, f"{type(exc).__name__}: {exc}"
    assert expect.what in str(exc), str(exc)
    assert getattr(exc, "cycle", None) == expect.cycle, str(exc)
    if expect.seq is not None:
        assert exc.seq == expect.seq, str(exc)  # type: ignore[attr-defined]
        assert exc.index == index_of(CYCLE_A, expect.seq), str(exc)  # type: ignore[attr-defined]
    if expect.path is not None:
        assert exc.path == str(expect.path), str(exc)  # type: ignore[attr-defined]
    if expect.offset is not None:
        assert exc.offset == expect.offset, str(exc)  # type: ignore[attr-defined]
    for key, value in expect.extra.items():
        assert getattr(exc, key) == value, str(exc)


# -- damage cases ------------------------------------------------------------------------------------------------
def _header(value: Callable[[Base, int], int], what: str, seq: int = 20) -> Callable[[Path, Base], Expect]:
    def damage(root: Path, base: Base) -> Expect:
        data, off = where(root, seq)
        set_header(root, seq, value(base, seq))
        return Expect(CorruptDataError, what, seq, data, off)
    return damage


def _body_len(base: Base, seq: int) -> int:
    _, w, i = base.seqs(CYCLE_A)[seq]
    return len(frames_body(w, i))


def truncate_mid_body(root: Path, base: Base) -> Expect:
    data, off = where(root, 20)
    os.truncate(data, off + 5)
    return Expect(CorruptDataError, f"message of {_body_len(base, 20)} bytes runs past the end of the data file "
                  f"({off + 5} bytes)", 20, data, off)


def truncate_mid_header(root: Path, base: Base) -> Expect:
    data, off = where(root, 20)
    os.truncate(data, off - 2)
    return Expect(CorruptDataError, f"index entry points outside the data file ({off - 2} bytes)", 20, data, off,
                  row_reader_what="index entry points past the end of the data file")


def zero_length_data(root: Path, base: Base) -> Expect:
    data, _ = where(root, 20)
    os.truncate(data, 0)
    first = min(s for s in range(45) if where(root, s)[0] == data)  # the file's first message fails first
    return Expect(CorruptDataError, "index entry points outside the data file (0 bytes)", first, data,
                  where(root, first)[1], row_reader_what="index entry points past the end of the data file (0 bytes)")


def entry_past_end(root: Path, base: Base) -> Expect:
    """A data file cut after message 20, and message 24's entry (same file) moved past the new end."""
    data, off20 = where(root, 20)
    later = next(s for s in range(21, 45) if where(root, s)[0] == data)
    _, off = where(root, later)
    os.truncate(data, off20 + _body_len(base, 20))
    return Expect(CorruptDataError, "index entry points outside the data file", later, data, off,
                  row_reader_what="index entry points past the end of the data file")


def entry_into_a_body(root: Path, base: Base) -> Expect:
    """The entry of message 20 moved 4 bytes on: its 'header' is the body's first int (the writer number)."""
    data, off = where(root, 20)
    set_slot(root, 20, slot(root, 20) + 4)
    w = base.seqs(CYCLE_A)[20][1]
    return Expect(CorruptDataError, f"bad header {w:#010x}", 20, data, off + 4)


def entry_into_another_message(root: Path, base: Base) -> Expect:
    """Message 20's entry moved 16 bytes into another message of its data file: the 'header' read is that
    body's string length and the first three characters of its ASCII text (a positive int)."""
    data20, _ = where(root, 20)
    src = next(s for s in range(15, 30) if s != 20 and where(root, s)[0] == data20)
    _, off = where(root, src)
    set_slot(root, 20, slot(root, src) + 16)
    head = struct.unpack_from("<i", frames_body(*base.seqs(CYCLE_A)[src][1:]), 12)[0]
    assert head > 0
    return Expect(CorruptDataError, f"bad header {head:#010x}", 20, data20, off + 16)


def entry_before_first_header(root: Path, base: Base) -> Expect:
    data, _ = where(root, 20)
    set_slot(root, 20, slot(root, 20) & ~((1 << OFFSET_BITS) - 1))  # offset 0: the header would be at -4
    return Expect(CorruptDataError, "index entry points before the first header", 20, data, 0)


def entry_unaligned(root: Path, base: Base) -> Expect:
    data, off = where(root, 20)
    set_slot(root, 20, slot(root, 20) + 1)
    return Expect(CorruptDataError, "bad header", 20, data, off + 1)


def entry_into_zeros(root: Path, base: Base) -> Expect:
    """Message 40's entry moved into the unwritten (zero) rest of the data file of message 44 (writer 1's last
    on day A): an uncommitted header."""
    data, off = where(root, 44)
    used = off + _body_len(base, 44)
    target = used + (-used % 4) + 4  # the next header position's body offset
    assert target < 1024 and data.read_bytes()[target - 4 :] == bytes(1024 - target + 4)
    set_slot(root, 40, (slot(root, 44) & ~((1 << OFFSET_BITS) - 1)) | target)
    return Expect(CorruptDataError, "uncommitted (zero) header", 40, data, target)


def missing_data_file(root: Path, base: Base) -> Expect:
    data, _ = where(root, 20)
    data.unlink()
    return Expect(JournalNotFoundError, f"data file {data.name} named by an index entry is missing", None, data)


def two_missing_data_files(root: Path, base: Base) -> Expect:
    """Slots 3 and 5 name data files that do not exist, the later slot's file sorting first (lower thread id):
    the error names the first in index order, whatever the batch size or decoding order."""
    offset = slot(root, 3) & ((1 << OFFSET_BITS) - 1)
    set_slot(root, 3, 65000 << 48 | offset)
    set_slot(root, 5, 1 << 48 | offset)
    data = root / DAY_A / "data-65000-0"
    return Expect(JournalNotFoundError, f"data file {data.name} named by an index entry is missing", None, data)


def folder_for_data_file(root: Path, base: Base) -> Expect:
    data, _ = where(root, 20)
    data.unlink()
    data.mkdir()
    return Expect(FormatError, "not a regular file", None, data, cycle=None)


def fifo_for_data_file(root: Path, base: Base) -> Expect:
    data, _ = where(root, 20)
    data.unlink()
    os.mkfifo(data)
    return Expect(FormatError, "not a regular file", None, data, cycle=None)


def folder_for_index_file(root: Path, base: Base) -> Expect:
    index = root / DAY_A / "index-1"
    index.unlink()
    index.mkdir()
    return Expect(FormatError, "not a regular file", None, index, cycle=None)


CORRUPT: dict[str, Callable[[Path, Base], Expect]] = {
    "header_positive": _header(lambda b, s: 7, "bad header 0x00000007: ~length must be below 2**30"),
    "header_2**30": _header(lambda b, s: ~(1 << 30), "bad header 0xbfffffff: ~length must be below 2**30"),
    "header_minus_2**31": _header(lambda b, s: -(1 << 31), "bad header 0x80000000"),
    "header_zero": _header(lambda b, s: 0, "index entry points at an uncommitted (zero) header"),
    "header_past_file_end": _header(lambda b, s: ~2000, "message of 2000 bytes runs past the end of the data file"),
    "header_zero_in_index_1": _header(lambda b, s: 0, "uncommitted (zero) header", seq=40),
    "truncated_mid_body": truncate_mid_body,
    "truncated_mid_header": truncate_mid_header,
    "zero_length_data_file": zero_length_data,
    "entry_past_file_end": entry_past_end,
    "entry_into_a_body": entry_into_a_body,
    "entry_into_another_message": entry_into_another_message,
    "entry_before_first_header": entry_before_first_header,
    "entry_unaligned": entry_unaligned,
    "entry_into_zeros": entry_into_zeros,
    "missing_data_file": missing_data_file,
    "two_missing_data_files": two_missing_data_files,
    "folder_for_data_file": folder_for_data_file,
    "fifo_for_data_file": fifo_for_data_file,
    "folder_for_index_file": folder_for_index_file,
}


def _table_rows(table: Any) -> list[tuple[int, int, int]]:
    rows = frames_rows_of_table(table)
    assert all(frames_row_intact(w, i, s, crc) for _, w, i, s, crc in rows)
    return [(index, w, i) for index, w, i, _, _ in rows]


def _first_failing_seq(expect: Expect, root: Path) -> int:
    """The seq the error stops at (a missing or unreadable data file: its first message in day A)."""
    if expect.seq is not None:
        return expect.seq
    assert expect.path is not None
    if expect.path.name.startswith("index-"):
        return 0  # the cycle's count (taken before its first batch) opens every index file
    return min(s for s in range(45) if where(root, s)[0].name == expect.path.name)


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_read_table_raises_the_precise_error_whatever_errors_says(journal: Path, base: Base, case: str) -> None:
    expect = CORRUPT[case](journal, base)
    for errors in ("raise", "skip", "truncate"):
        for threads in (1, 2):
            with pytest.raises(PychroError) as info:
                read_table(journal, FRAMES_SCHEMA, errors=errors, config=CFG, threads=threads, batch_rows=8)
            check_error(info.value, expect)
    TRIED["read_table"].append(case)
    # the row reader names the same message, file and offset
    with pytest.raises(PychroError) as row_info:
        frames_rows_by_row_reader(journal, config=CFG)
    assert type(row_info.value) is expect.error
    assert (expect.row_reader_what or expect.what) in str(row_info.value)
    for key in ("cycle", "path", "offset"):
        if getattr(info.value, key, None) is not None:
            assert getattr(row_info.value, key) == getattr(info.value, key), (key, str(row_info.value))
    if expect.seq is not None:
        assert row_info.value.seq == expect.seq  # type: ignore[attr-defined]
    # nothing was written to the damaged journal by reading it
    assert not (journal / DAY_A / "index-2").exists()


@pytest.mark.parametrize("case", sorted(CORRUPT))
@pytest.mark.parametrize("batch_rows, threads", [(1, 1), (4, 2), (7, 1)])
def test_iter_batches_delivers_every_row_before_the_damage(journal: Path, base: Base, case: str, batch_rows: int,
                                                           threads: int) -> None:
    expect = CORRUPT[case](journal, base)
    bad = _first_failing_seq(expect, journal)
    # batches never span index files: the batch holding ``bad`` starts at a multiple of batch_rows in its file
    first_of_file = bad // SLOTS * SLOTS
    delivered_up_to = first_of_file + (bad - first_of_file) // batch_rows * batch_rows
    got: list[Any] = []
    stats = ReadStats()
    with pytest.raises(PychroError) as info:
        for batch in iter_batches(journal, FRAMES_SCHEMA, batch_rows=batch_rows, threads=threads, index=True,
                                  config=CFG, stats=stats, errors="skip"):
            assert batch.num_rows <= batch_rows
            got.append(batch)
    check_error(info.value, expect)
    rows = _table_rows(pa.Table.from_batches(got)) if got else []
    assert rows == base.seqs(CYCLE_A)[:delivered_up_to]
    assert stats.rows == len(rows) and stats.skipped_rows == 0
    TRIED["iter_batches"].append(case)


def _follow_in_thread(journal: Path, timeout: float, **kw: Any) -> tuple[list[Any], BaseException | None, bool]:
    """Consume iter_batches(follow=True) in a thread; (batches, error, still running after ``timeout``)."""
    got: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            for batch in iter_batches(journal, FRAMES_SCHEMA, follow=True, poll_interval=0.01, index=True,
                                      config=CFG, **kw):
                got.append(batch)  # one by one: the test reads what arrived while this runs
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            error.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return got, (error[0] if error else None), t.is_alive()


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_follow_raises_instead_of_waiting(journal: Path, base: Base, case: str) -> None:
    expect = CORRUPT[case](journal, base)
    got, error, running = _follow_in_thread(journal, 20, batch_rows=5)
    assert not running, "follow mode hung on a damaged journal"
    assert error is not None
    check_error(error, expect)
    bad = _first_failing_seq(expect, journal)
    first_of_file = bad // SLOTS * SLOTS
    rows = _table_rows(pa.Table.from_batches(got)) if got else []
    assert rows == base.seqs(CYCLE_A)[: first_of_file + (bad - first_of_file) // 5 * 5]
    TRIED["follow"].append(case)


def test_follow_raises_on_damage_committed_while_following(journal: Path, base: Base) -> None:
    """A crafted entry committed into day B while a follower waits there: the follower raises, naming it."""
    got: list[Any] = []
    error: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            for batch in iter_batches(journal, FRAMES_SCHEMA, follow=True, poll_interval=0.01, index=True, config=CFG):
                got.append(batch)
                if sum(b.num_rows for b in got) == 57:
                    done.set()
        except BaseException as exc:  # noqa: BLE001
            error.append(exc)
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert done.wait(20)
    data, off = where(journal, 0, DAY_B)
    set_slot(journal, 12, slot(journal, 0, DAY_B) + 4, DAY_B)  # into message 0's body: header = its int w
    t.join(20)
    assert not t.is_alive()
    (exc,) = error
    assert isinstance(exc, CorruptDataError) and "bad header" in str(exc)
    assert (exc.cycle, exc.seq, exc.path, exc.offset) == (CYCLE_B, 12, str(data), off + 4)  # type: ignore[attr-defined]
    assert _table_rows(pa.Table.from_batches(got)) == base.written
    TRIED["follow"].append("damage committed while following")


def test_follow_waits_behind_a_crashed_roll_and_resumes(journal: Path, base: Base) -> None:
    """A writer that died right after creating a new cycle's index-0 (0 bytes, no data file) leaves what a live
    journal looks like: follow waits without spinning, and reads on once a writer continues."""
    (journal / "20200303").mkdir()
    (journal / "20200303" / "index-0").touch()
    end = index_of(CYCLE_B + 1, 1)  # the follower ends by itself after the message written below
    got, error, running = _follow_in_thread(journal, 1.0, end=end)
    assert running and error is None
    assert _table_rows(pa.Table.from_batches(got)) == base.written
    cpu0 = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - cpu0 < 0.3, "the follower spins while waiting"
    with VanillaChronicleWriter(journal, config=CFG, clock=FakeClock(dt.datetime(2020, 3, 3, 12))) as writer:
        index = write_frames_message(writer.get_appender(), 3, 0)
    assert index == index_of(CYCLE_B + 1, 0)
    deadline = time.monotonic() + 10
    while sum(b.num_rows for b in got) < 58 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _table_rows(pa.Table.from_batches(got)) == [*base.written, (index, 3, 0)]
    TRIED["follow"].append("crashed roll: zero-length index-0 of a new cycle")


# -- schema mismatches: errors= decides ------------------------------------------------------------------------
MISMATCH: dict[str, tuple[Callable[[Path, int], None], str, str | None]] = {
    # (damage at body offset, what, column)
    "string_runs_past_body": (lambda d, off: put(d, off + 12, b"\x7f"), "field 's' runs past the end", "s"),
    "string_too_short": (lambda d, off: put(d, off + 12, b"\x00"), "the schema decodes 17 bytes but the header says",
                         None),
    "string_not_text": (lambda d, off: put(d, off + 13, b"\xff"), "field 's' holds bytes that are not Java text", "s"),
    "string_length_stop_bit_too_long": (lambda d, off: put(d, off + 12, b"\x80" * 11), "field 's'", "s"),
}


@pytest.mark.parametrize("case", sorted(MISMATCH))
def test_schema_mismatch_follows_errors(journal: Path, base: Base, case: str) -> None:
    damage, what, column = MISMATCH[case]
    seq = next(s for s in range(20, 45) if len(frames_body(*base.seqs(CYCLE_A)[s][1:])) > 40)
    data, off = where(journal, seq)
    damage(data, off)
    expected = base.written
    with pytest.raises(SchemaMismatchError) as info:
        read_table(journal, FRAMES_SCHEMA, config=CFG)
    err = info.value
    assert what in str(err) and "use errors='skip' or 'truncate'" in str(err)
    assert (err.cycle, err.seq, err.index, err.path, err.offset) == (  # type: ignore[attr-defined]
        CYCLE_A, seq, index_of(CYCLE_A, seq), str(data), off)
    if column is not None:
        assert err.column == column  # type: ignore[attr-defined]
    stats = ReadStats()
    skipped = read_table(journal, FRAMES_SCHEMA, errors="skip", index=True, config=CFG, stats=stats, batch_rows=8)
    assert _table_rows(skipped) == [r for r in expected if r[0] != index_of(CYCLE_A, seq)]
    assert (stats.skipped_rows, stats.first_bad_index, stats.truncated) == (1, index_of(CYCLE_A, seq), False)
    stats = ReadStats()
    cut = read_table(journal, FRAMES_SCHEMA, errors="truncate", index=True, config=CFG, stats=stats, batch_rows=8)
    assert _table_rows(cut) == expected[:seq]
    assert (stats.first_bad_index, stats.truncated) == (index_of(CYCLE_A, seq), True)
    # the row reader sees the same message as not matching the schema, and reads the others identically
    by_rows = frames_rows_by_row_reader(journal, config=CFG)
    assert [k for k, r in enumerate(by_rows) if r is None] == [seq]
    assert frames_rows_of_table(skipped) == [r for r in by_rows if r is not None]
    TRIED["read_table"].append(case)


# -- damage the readers pass over, and damage they cannot see -----------------------------------------------------
def strays(root: Path) -> None:
    (root / "README.txt").write_text("not a cycle")
    (root / "notacycle").mkdir()
    (root / "2020030").mkdir()  # one digit short of a folder name
    (root / "20200305").write_text("a file named like a cycle folder")
    (root / DAY_A / "data-x-0").write_bytes(b"\1" * 8)
    (root / DAY_A / "index-x").write_bytes(b"\1" * 8)
    (root / DAY_A / "index-").mkdir()
    (root / DAY_A / "notes").mkdir()
    (root / DAY_A / "data-1-0.bak").write_bytes(b"\1" * 8)
    (root / "20200304").mkdir()  # an empty later cycle


def empty_cycle_between(root: Path) -> None:
    os.rename(root / DAY_B, root / "20200303")
    (root / DAY_B).mkdir()


def unused_zero_tail_cut(root: Path) -> None:
    """index-1 cut right after its last filled slot, data files right after their last message (a short copy)."""
    os.truncate(root / DAY_A / "index-1", 8 * 13)
    for day in (DAY_A, DAY_B):
        for data in (root / day).glob("data-*"):
            raw = data.read_bytes()
            os.truncate(data, len(raw.rstrip(b"\0")) + (-len(raw.rstrip(b"\0")) % 4))


def duplicate_entry(root: Path) -> None:
    """Slot 20 holds slot 3's entry: a valid message twice (undetectable; both readers return it twice)."""
    set_slot(root, 20, slot(root, 3))


READABLE: dict[
    str, tuple[Callable[[Path], None], Callable[[list[tuple[int, int, int]]], list[tuple[int, int, int]]]]
] = {
    "stray_files_and_folders": (strays, lambda rows: rows),
    "empty_cycle_folder_between": (empty_cycle_between, lambda rows: [
        (index_of(CYCLE_B + 1, r[0] & ((1 << SEQ_BITS) - 1)), r[1], r[2]) if r[0] >> SEQ_BITS == CYCLE_B else r
        for r in rows]),
    "duplicate_entry": (duplicate_entry, lambda rows: [
        (r[0], *rows[3][1:]) if r[0] == index_of(CYCLE_A, 20) else r for r in rows]),
}


def test_short_copy_of_an_index_file_raises_unless_errors_reads_the_prefix(journal: Path, base: Base) -> None:
    """An index file cut inside its filled slots (here right after them) may hide later messages (issue 13): every
    reader raises by default; errors="skip" or "truncate" read the prefix and the later cycles, warn, and say so
    in ReadStats."""
    unused_zero_tail_cut(journal)
    what = "index-1 is cut: 104 of 256 bytes, filled up to its end"
    with pytest.raises(CorruptDataError, match=what) as info:
        read_table(journal, FRAMES_SCHEMA, config=CFG)
    assert (info.value.cycle, info.value.seq) == (CYCLE_A, 45)  # type: ignore[attr-defined]
    with pytest.raises(CorruptDataError, match=what):
        frames_rows_by_row_reader(journal, config=CFG)
    for errors, want in (("skip", base.written), ("truncate", base.written)):
        stats = ReadStats()
        with pytest.warns(PychroWarning, match=what):
            table = read_table(journal, FRAMES_SCHEMA, index=True, errors=errors, config=CFG, batch_rows=8,
                               stats=stats)
        assert _table_rows(table) == want
        assert len(stats.index_damage) == 1 and what in stats.index_damage[0]
        assert not stats.truncated  # truncate is about messages that do not match the schema
    assert not verify_journal(journal, config=CFG).ok
    TRIED["read_table"].append("short copy")


@pytest.mark.parametrize("case", sorted(READABLE))
def test_damage_that_reads_like_the_row_reader(journal: Path, base: Base, case: str) -> None:
    damage, expected = READABLE[case]
    damage(journal)
    want = expected(base.written)
    for errors in ("raise", "skip"):
        table = read_table(journal, FRAMES_SCHEMA, index=True, errors=errors, config=CFG, batch_rows=8)
        assert _table_rows(table) == want
    batches = list(iter_batches(journal, FRAMES_SCHEMA, index=True, config=CFG, batch_rows=5, threads=2))
    assert _table_rows(pa.Table.from_batches(batches)) == want
    assert frames_rows_of_table(table) == frames_rows_by_row_reader(journal, config=CFG)
    TRIED["read_table"].append(case)
    TRIED["iter_batches"].append(case)


def _cut_index(root: Path, case: str) -> tuple[type[PychroError], str, int, Path]:
    """Damage index-0 of day A (index-1 exists): (error, what, seq it names, file)."""
    index0 = root / DAY_A / "index-0"
    if case == "truncated_mid_entry":
        os.truncate(index0, 8 * 10 + 3)
        return CorruptDataError, "index file index-0 has 10 of 32 entries (80 bytes) but index-1 exists", 10, index0
    if case == "zero_length":
        os.truncate(index0, 0)
        return CorruptDataError, "index file index-0 has 0 of 32 entries (0 bytes) but index-1 exists", 0, index0
    if case == "missing":
        index0.unlink()
        return JournalNotFoundError, "index file index-0 is missing but index-1 exists", 0, index0
    if case == "stray_later_file":  # an index-2 after the partly filled index-1
        (root / DAY_A / "index-2").write_bytes(struct.pack("<Q", slot(root, 0)) + bytes(248))
        return (CorruptDataError, "index file index-1 has 13 of 32 entries (256 bytes) but index-2 exists", 45,
                root / DAY_A / "index-1")
    assert case == "hole"
    put(index0, 8 * 7, bytes(8))  # an emptied slot before filled ones (slots fill in order)
    return CorruptDataError, "index slot is empty but later slots are filled (slots fill in order)", 7, index0


CUT_INDEX = ["truncated_mid_entry", "zero_length", "missing", "hole", "stray_later_file"]


@pytest.mark.parametrize("case", CUT_INDEX)
def test_cut_or_holed_index_file_is_an_error(journal: Path, base: Base, case: str) -> None:
    """An index file cut short, emptied, deleted or with an emptied slot while later entries exist would hide the
    messages after it: an error naming the index file and the first seq it cannot reach. (The row reader
    stops there without a word - see the report - and verify names the damage.)"""
    error, what, seq, path = _cut_index(journal, case)
    for errors in ("raise", "skip", "truncate"):
        with pytest.raises(PychroError) as info:
            read_table(journal, FRAMES_SCHEMA, config=CFG, errors=errors, batch_rows=5)
        exc = info.value
        assert type(exc) is error and what in str(exc), str(exc)
        assert (exc.cycle, exc.seq, exc.index, exc.path) == (  # type: ignore[attr-defined]
            CYCLE_A, seq, index_of(CYCLE_A, seq), str(path))
    # the count fails before the cycle's first batch; at a hole, every row before it comes first
    got: list[Any] = []
    with pytest.raises(error, match=what.replace("(", r"\(").replace(")", r"\)")):
        for batch in iter_batches(journal, FRAMES_SCHEMA, index=True, config=CFG, batch_rows=4):
            got.append(batch)  # kept when the iterator raises
    rows = _table_rows(pa.Table.from_batches(got)) if got else []
    assert rows == (base.seqs(CYCLE_A)[:seq] if case == "hole" else [])
    got, follow_error, running = _follow_in_thread(journal, 20, batch_rows=4)
    assert not running and type(follow_error) is error and what in str(follow_error)
    assert not verify_journal(journal, config=CFG).ok  # verify names it too
    TRIED["read_table"].append(f"index {case}")
    TRIED["iter_batches"].append(f"index {case}")
    TRIED["follow"].append(f"index {case}")


@pytest.mark.parametrize("threads", [1, 2])
def test_damaged_index_of_a_later_cycle_comes_after_every_earlier_row(journal: Path, base: Base, threads: int) -> None:
    """Decoding threads look ahead into the next cycle; damage found there is raised in its place, after every
    row of the cycles before it, as a serial read raises it."""
    put(journal / DAY_B / "index-0", 8 * 3, bytes(8))  # a hole at seq 3 of day B
    got: list[Any] = []
    with pytest.raises(CorruptDataError, match="index slot is empty") as info:
        for batch in iter_batches(journal, FRAMES_SCHEMA, index=True, config=CFG, batch_rows=4, threads=threads):
            got.append(batch)  # kept when the iterator raises
    assert (info.value.cycle, info.value.seq) == (CYCLE_B, 3)  # type: ignore[attr-defined]
    assert _table_rows(pa.Table.from_batches(got)) == base.seqs(CYCLE_A) + base.seqs(CYCLE_B)[:3]
    TRIED["iter_batches"].append("hole in a later cycle's index")


def test_missing_and_odd_journal_paths(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFoundError):
        read_table(tmp_path / "nope", FRAMES_SCHEMA, config=CFG)
    with pytest.raises(JournalNotFoundError):
        iter_batches(tmp_path / "nope", FRAMES_SCHEMA, config=CFG)
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalNotFoundError):
        read_table(tmp_path / "file", FRAMES_SCHEMA, config=CFG)
    (tmp_path / "empty").mkdir()
    assert read_table(tmp_path / "empty", FRAMES_SCHEMA, config=CFG).num_rows == 0
    TRIED["read_table"] += ["missing journal", "journal is a file", "empty journal"]


# -- permissions and read-only copies: in a child that obeys file modes ---------------------------------------------
def _obey_modes() -> list[str]:
    """A command prefix under which file modes apply (root ignores them otherwise); [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{tests!r}]
    from reliability_helpers import FRAMES_SCHEMA, frames_rows_of_table, small_config
    from pychro.frames import iter_batches, read_table
    cfg = small_config(data_block_size=1024)
    out = {{}}
    for name, run in (("read_table", lambda: read_table({root!r}, FRAMES_SCHEMA, index=True, config=cfg)),
                      ("iter_batches", lambda: list(iter_batches({root!r}, FRAMES_SCHEMA, index=True, config=cfg,
                                                                 batch_rows=4, threads=2))),
                      ("follow", lambda: list(iter_batches({root!r}, FRAMES_SCHEMA, index=True, config=cfg,
                                                           follow=True, end={end}, poll_interval=0.01)))):
        try:
            result = run()
            rows = sum(b.num_rows for b in result) if isinstance(result, list) else result.num_rows
            out[name] = {{"rows": rows}}
        except BaseException as exc:
            out[name] = {{"error": type(exc).__name__, "message": str(exc),
                         "filename": getattr(exc, "filename", None) or getattr(exc, "path", None),
                         "is_oserror": isinstance(exc, OSError)}}
    print(json.dumps(out))
""")


def _run_child(root: Path) -> dict[str, Any]:
    end = index_of(CYCLE_B, 12)  # follow stops at the end bound: the last message read
    code = CHILD.format(tests=str(HERE.parent), root=str(root), end=end)
    run = subprocess.run([*_obey_modes(), sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def world_readable(base: Base) -> Any:
    """A copy under a fresh folder of /tmp (pytest's tmp folders are 0700), removed afterwards."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="pychro-frames-perm-"))
    os.chmod(top, 0o755)
    root = top / "j"
    shutil.copytree(base.root, root)
    try:
        yield root
    finally:
        for p in [root, *root.rglob("*")]:
            if not p.is_symlink():
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
        shutil.rmtree(top)


def test_read_only_copy_reads_fully_and_stays_untouched(world_readable: Path) -> None:
    root = world_readable
    for p in [root, *root.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    before = journal_state(root)
    out = _run_child(root)
    assert out == {"read_table": {"rows": 57}, "iter_batches": {"rows": 57}, "follow": {"rows": 57}}, out
    assert journal_state(root) == before
    TRIED["child"].append("read-only copy")


@pytest.mark.parametrize("target", ["data_file", "index_file", "cycle_folder"])
def test_unreadable_file_names_it(world_readable: Path, target: str) -> None:
    """An unreadable data file, index file or cycle folder: PermissionError naming the path (not a crash, not
    a silent empty result). Not a PychroError: the bytes are fine, the process lacks the right to read them."""
    root = world_readable
    data, _ = where(root, 20)
    path = {"data_file": data, "index_file": root / DAY_A / "index-1", "cycle_folder": root / DAY_A}[target]
    os.chmod(path, 0)
    out = _run_child(root)
    for name in ("read_table", "iter_batches", "follow"):
        got = out[name]
        assert got.get("error") == "PermissionError" and got["is_oserror"], (name, got)
        if target != "cycle_folder":
            assert got["filename"] == str(path), (name, got)
        else:
            assert str(got["filename"]).startswith(str(path)), (name, got)
    TRIED["child"].append(f"unreadable {target}")


# -- journals left by a writer killed with SIGKILL (the frames/remote TODO of tests/test_crash.py) --------------------
# (event, occurrence): inside a message, around the commit, and around the creation of data and index files
# (1 KiB data files roll every ~14 messages, index files every 32; the day changes at message 50)
CRASHES = [("mid_body", 10), ("before_header", 10), ("before_commit", 10), ("after_commit", 10),
           ("create_data", 3), ("truncate_data", 3), ("mapped_data", 3),
           ("create_index", 2), ("truncate_index", 2), ("mapped_index", 2), ("truncate_index", 3)]


@pytest.mark.network
@pytest.mark.parametrize("event, nth", CRASHES)
def test_crashed_writer_frames_and_remote_read_what_was_committed(tmp_path: Path, event: str, nth: int) -> None:
    from pychro.remote import RemoteChronicleReader, iter_remote_batches, serve

    journal, report = tmp_path / "j", tmp_path / "report"
    spec = {"config": {"data_block_size": 1024}, "cycle_change_at": 50}
    run = run_frames_writer(journal, report, w=7, start=0, count=80, kill_event=event, kill_nth=nth, **spec)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    reported = read_report(report)
    assert reported, "the writer died before its first message"
    rows = _table_rows(read_table(journal, FRAMES_SCHEMA, index=True, config=CFG))
    # every message reported committed, and at most one more (committed, killed before it was reported)
    assert rows[: len(reported)] == reported
    assert len(rows) == len(reported) + (1 if event == "after_commit" else 0)
    assert [(w, i) for _, w, i in rows] == [(7, i) for i in range(len(rows))]
    streamed = list(iter_batches(journal, FRAMES_SCHEMA, index=True, config=CFG, batch_rows=6, threads=2))
    assert _table_rows(pa.Table.from_batches(streamed)) == rows
    with serve(journal, config=CFG, background=True) as server:
        with RemoteChronicleReader("127.0.0.1", server.port, "start", config=CFG, timeout=0.3) as reader:
            got = [(e.index, e.body()) for e in reader]
        assert got == [(index, frames_body(w, i)) for index, w, i in rows]
        batches = list(iter_remote_batches("127.0.0.1", server.port, FRAMES_SCHEMA, index=True, timeout=0.3,
                                           config=CFG))
        assert _table_rows(pa.Table.from_batches(batches)) == rows
    # a new writer carries on after the crash; all of it reads
    run = run_frames_writer(journal, report, w=7, start=len(rows), count=10, **spec)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    after = _table_rows(read_table(journal, FRAMES_SCHEMA, index=True, config=CFG))
    assert [(w, i) for _, w, i in after] == [(7, i) for i in range(len(rows) + 10)]
    TRIED["crash"].append(f"{event}#{nth}")
