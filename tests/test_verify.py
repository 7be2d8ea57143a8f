"""verify_journal and ``pychro verify`` on good and damaged journals (issue 6).

Every damaged case checks: the report is not ok and its first problem names the right cycle, seq, file,
offset and fault; the CLI (a real ``python -m pychro verify`` subprocess) exits 1 and prints the same first
problem; and nothing under the journal changed (sizes, modes, mtimes, hashes). Row-reader errors on damaged
files are tested in ``test_damaged.py``; here only verify is.

Offsets and sequence numbers are worked out from the raw bytes with this module's own decoding (16 thread-id
bits, 4 KiB data blocks: ``tid << 48 | file_no << 12 | offset``), not with pychro's codec.

The frames reader on damaged journals (errors="raise"/"skip"/"truncate") is tested in
tests/test_frames_damaged.py.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import chmod_read_only, chmod_writable, copy_journal
from reliability_helpers import (
    REPO,
    build_two_writer_journal,
    check_sequences,
    journal_state,
    read_all,
    report_line,
    small_config,
)

from pychro import JournalNotFoundError
from pychro.verify import verify_journal

CFG = small_config()
SMALL_ARGS = ["--index-block-size", "256", "--data-block-size", "4096", "--message-capacity", "256"]
DAY_A, DAY_B = "20200301", "20200302"
CYCLE_A, CYCLE_B = 18322, 18323
CASES_TRIED: list[str] = []

pytestmark = pytest.mark.timeout(120)  # a hang is a failure, found quickly


@pytest.fixture(scope="module", autouse=True)
def _print_count(request: pytest.FixtureRequest) -> Any:
    yield
    if CASES_TRIED:
        report_line(request, f"[verify] damaged cases tried: {len(set(CASES_TRIED))}")


# -- the pristine journal ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verify") / "pristine"
    build_two_writer_journal(root)
    return root


@dataclass
class Msg:
    seq: int
    tid: int
    file_no: int
    offset: int
    length: int
    w: int

    def data(self, root: Path, day: str = DAY_A) -> Path:
        return root / day / f"data-{self.tid}-{self.file_no}"


def layout(root: Path, day: str = DAY_A) -> list[Msg]:
    """Every committed message of a day, decoded from the raw index and header bytes."""
    out: list[Msg] = []
    n = 0
    while (root / day / f"index-{n}").exists():
        raw = (root / day / f"index-{n}").read_bytes()
        for k in range(len(raw) // 8):
            (e,) = struct.unpack_from("<Q", raw, 8 * k)
            if not e:
                return out
            tid, file_no, offset = e >> 48, (e >> 12) & ((1 << 36) - 1), e & 0xFFF
            data = (root / day / f"data-{tid}-{file_no}").read_bytes()
            (hdr,) = struct.unpack_from("<i", data, offset - 4)
            (w,) = struct.unpack_from("<i", data, offset)
            out.append(Msg(len(out), tid, file_no, offset, ~hdr, w))
        n += 1
    return out


def _set_slot(path: Path, slot: int, entry: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(8 * slot)
        fh.write(struct.pack("<Q", entry))


def _put(path: Path, pos: int, raw: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(pos)
        fh.write(raw)


def _entry(m: Msg, offset: int | None = None) -> int:
    return m.tid << 48 | m.file_no << 12 | (m.offset if offset is None else offset)


def test_pristine_layout_is_what_the_cases_assume(pristine: Path) -> None:
    a, b = layout(pristine), layout(pristine, DAY_B)
    assert len(a) == 70 and len(b) == 20
    assert [m.w for m in a] == [1] * 20 + [2] * 20 + [1] * 30
    assert len({(m.tid, m.file_no) for m in a if m.w == 1}) >= 2, "writer 1 rolled its data file on day A"
    assert sorted(p.name for p in (pristine / DAY_A).glob("index-*")) == ["index-0", "index-1", "index-2"]
    assert check_sequences(read_all(pristine, CFG)) == {1: 60, 2: 30}
    report = verify_journal(pristine, config=CFG)
    assert report.ok and [(c.folder, c.valid, c.messages) for c in report.cycles] == [(DAY_A, 70, 70), (DAY_B, 20, 20)]


# -- damaged cases -------------------------------------------------------------------------------------------
@dataclass
class Expect:
    what: str  # substring of the first problem's text
    seq: int | None
    file: str | None  # basename
    offset: int | None = None
    cycle: int = CYCLE_A
    valid_a: int | None = None  # valid messages of day A
    messages_a: int | None = None


def _first_of(a: list[Msg], w: int, file_no: int | None = None) -> Msg:
    return next(m for m in a if m.w == w and (file_no is None or m.file_no == file_no))


def case_truncate_data_mid_message(root: Path) -> Expect:
    a = layout(root)
    m = a[5]
    os.truncate(m.data(root), m.offset + 3)
    later = [x for x in a if (x.tid, x.file_no) == (m.tid, m.file_no) and x.seq >= 5]
    return Expect(f"body runs past the end of the data file ({m.offset + 3} bytes)", 5, m.data(root).name, m.offset,
                  valid_a=70 - len(later))


def case_truncate_data_before_entry(root: Path) -> Expect:
    a = layout(root)
    m = [x for x in a if x.w == 2][2]
    os.truncate(m.data(root), m.offset - 4)  # the header of writer 2's third message is cut off
    return Expect(f"index entry points past the end of the data file ({m.offset - 4} bytes)", m.seq, m.data(root).name,
                  m.offset, valid_a=70 - 18)


def case_zero_length_data_file(root: Path) -> Expect:
    a = layout(root)
    m = a[0]
    n = sum(1 for x in a if (x.tid, x.file_no) == (m.tid, m.file_no))
    os.truncate(m.data(root), 0)
    return Expect("index entry points past the end of the data file (0 bytes)", 0, m.data(root).name, m.offset,
                  valid_a=70 - n)


def case_missing_data_file(root: Path) -> Expect:
    m = _first_of(layout(root), 2)
    m.data(root).unlink()
    return Expect("data file is missing (the data file was deleted", m.seq, m.data(root).name, valid_a=50)


def case_data_file_is_a_folder(root: Path) -> Expect:
    m = _first_of(layout(root), 2)
    m.data(root).unlink()
    m.data(root).mkdir()
    return Expect("data file is not a regular file", m.seq, m.data(root).name, valid_a=50)


def case_data_file_is_a_fifo(root: Path) -> Expect:
    m = _first_of(layout(root), 2)
    m.data(root).unlink()
    os.mkfifo(m.data(root))
    return Expect("data file is not a regular file", m.seq, m.data(root).name, valid_a=50)


def case_truncate_index(root: Path) -> Expect:
    os.truncate(root / DAY_A / "index-1", 100)
    return Expect("index file is 100 bytes, expected 256", None, "index-1", valid_a=44, messages_a=44)


def case_zero_length_index(root: Path) -> Expect:
    os.truncate(root / DAY_A / "index-0", 0)
    return Expect("index file is 0 bytes, expected 256", None, "index-0", valid_a=0, messages_a=0)


def case_missing_first_index(root: Path) -> Expect:
    (root / DAY_A / "index-0").unlink()
    return Expect("index-0 is missing (index-1 exists)", None, "index-1", valid_a=0, messages_a=0)


def case_missing_middle_index(root: Path) -> Expect:
    (root / DAY_A / "index-1").unlink()
    return Expect("index-1 is missing (index-2 exists)", None, "index-2", valid_a=32, messages_a=32)


def case_index_is_a_folder(root: Path) -> Expect:
    (root / DAY_A / "index-2").unlink()
    (root / DAY_A / "index-2").mkdir()
    return Expect("index file is not a regular file", None, "index-2", valid_a=64, messages_a=64)


def case_index_too_long(root: Path) -> Expect:
    os.truncate(root / DAY_A / "index-2", 512)
    return Expect("index file is 512 bytes, expected 256", None, "index-2", valid_a=70, messages_a=70)


def case_entry_after_first_empty_slot(root: Path) -> Expect:
    a = layout(root)
    _set_slot(root / DAY_A / "index-2", 20, _entry(a[3]))
    return Expect("entry after the first empty slot (seq 70 is empty)", 84, "index-2", valid_a=70, messages_a=70)


def case_entry_past_block(root: Path) -> Expect:
    a = layout(root)
    m = a[7]
    os.truncate(m.data(root), 2000)
    _set_slot(root / DAY_A / "index-0", 7, _entry(m, 3000))
    return Expect("index entry points past the end of the data file (2000 bytes)", 7, m.data(root).name, 3000)


def case_entry_into_another_message(root: Path) -> Expect:
    a = layout(root)
    prev = a[9]  # the body starts with int32 w = 1: read as a header that is positive, so invalid
    _set_slot(root / DAY_A / "index-0", 10, _entry(prev, prev.offset + 4))
    return Expect("bad header 0x00000001: ~length must be below 2**30", 10, prev.data(root).name, prev.offset + 4,
                  valid_a=69)


def case_entry_repeats_earlier_message(root: Path) -> Expect:
    a = layout(root)
    _set_slot(root / DAY_A / "index-0", 10, _entry(a[8]))
    return Expect("message overlaps the previous one of its data file or is out of file order", 10,
                  a[8].data(root).name, a[8].offset, valid_a=69)


def case_entries_swapped(root: Path) -> Expect:
    a = layout(root)
    _set_slot(root / DAY_A / "index-0", 1, _entry(a[2]))
    _set_slot(root / DAY_A / "index-0", 2, _entry(a[1]))
    return Expect("out of file order", 2, a[1].data(root).name, a[1].offset, valid_a=69)


def case_misaligned_entry(root: Path) -> Expect:
    a = layout(root)
    _set_slot(root / DAY_A / "index-0", 4, _entry(a[4], a[4].offset + 1))
    return Expect("body offset is not a 4-aligned position after a header", 4, None, a[4].offset + 1, valid_a=69)


def case_entry_before_first_header(root: Path) -> Expect:
    a = layout(root)
    _set_slot(root / DAY_A / "index-0", 0, _entry(a[0], 0))
    return Expect("body offset is not a 4-aligned position after a header", 0, None, 0, valid_a=69)


def case_header_positive(root: Path) -> Expect:
    m = layout(root)[3]
    _put(m.data(root), m.offset - 4, struct.pack("<i", 0x7FFFFFFF))
    return Expect("bad header 0x7fffffff", 3, m.data(root).name, m.offset, valid_a=69)


def case_header_length_too_big(root: Path) -> Expect:
    m = layout(root)[3]
    _put(m.data(root), m.offset - 4, struct.pack("<i", ~(1 << 30)))
    return Expect("bad header 0xbfffffff: ~length must be below 2**30", 3, m.data(root).name, m.offset, valid_a=69)


def case_header_zero(root: Path) -> Expect:
    m = layout(root)[3]
    _put(m.data(root), m.offset - 4, bytes(4))
    return Expect("header is 0 (uncommitted) behind a filled index slot", 3, m.data(root).name, m.offset, valid_a=69)


def case_header_past_block(root: Path) -> Expect:
    m = layout(root)[3]
    _put(m.data(root), m.offset - 4, struct.pack("<i", ~5000))
    return Expect("body runs past the end of the data file (4096 bytes)", 3, m.data(root).name, m.offset, valid_a=69)


def case_header_overlaps_next(root: Path) -> Expect:
    a = layout(root)
    m = a[3]
    _put(m.data(root), m.offset - 4, struct.pack("<i", ~(m.length + 8)))  # runs into message 4's header
    return Expect("message overlaps the previous one of its data file or is out of file order", 4,
                  a[4].data(root).name, a[4].offset, valid_a=69)


def case_damage_on_second_day_only(root: Path) -> Expect:
    m = layout(root, DAY_B)[12]
    _put(m.data(root, DAY_B), m.offset - 4, bytes(4))
    return Expect("header is 0 (uncommitted)", 12, m.data(root, DAY_B).name, m.offset, cycle=CYCLE_B, valid_a=70)


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.fixture
def damaged(pristine: Path, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Expect]:
    root = copy_journal(pristine, tmp_path / "j")
    expect = CASES[request.param](root)
    CASES_TRIED.append(request.param)
    return root, expect


@pytest.mark.parametrize("damaged", sorted(CASES), indirect=True)
def test_verify_reports_damage_precisely_and_writes_nothing(damaged: tuple[Path, Expect]) -> None:
    root, expect = damaged
    before = journal_state(root)
    report = verify_journal(root, config=CFG)
    assert not report.ok
    first = report.first_problem
    assert first is not None
    assert expect.what in first.what, report.summary()
    assert (first.cycle, first.seq) == (expect.cycle, expect.seq), str(first)
    assert (os.path.basename(first.path) if first.path else None) == expect.file or expect.file is None, str(first)
    assert first.offset == expect.offset, str(first)
    day_a = next(c for c in report.cycles if c.folder == DAY_A)
    if expect.valid_a is not None:
        assert day_a.valid == expect.valid_a, report.summary()
    assert day_a.messages == (70 if expect.messages_a is None else expect.messages_a), report.summary()
    if expect.cycle == CYCLE_A:
        assert report.cycles[1].valid == report.cycles[1].messages == 20

    # the CLI: exit 1, the same first problem, in a separate process (a crash or hang would show here)
    run = subprocess.run([sys.executable, "-m", "pychro", "verify", str(root), *SMALL_ARGS],
                         check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == ""
    assert f"FIRST PROBLEM: {first}" in run.stdout
    assert journal_state(root) == before, "verify changed the journal"


# -- stray files and folders are ignored --------------------------------------------------------------------
def test_stray_files_and_folders_are_ignored(pristine: Path, tmp_path: Path) -> None:
    root = copy_journal(pristine, tmp_path / "j")
    (root / "notes.txt").write_text("not a journal file")
    (root / "tmp").mkdir()
    (root / "20200231").mkdir()  # no such date: not a cycle
    (root / "2020030").mkdir()
    (root / "20200301.bak").mkdir()
    (root / DAY_A / "sub").mkdir()
    (root / DAY_A / "data-999-0").write_bytes(b"\xff" * 100)  # nothing points into it
    (root / DAY_A / "data-x-0").write_bytes(b"junk")
    (root / DAY_A / "index-x").write_bytes(b"junk")
    (root / DAY_A / "index-").write_bytes(b"junk")
    (root / DAY_A / ".index-0.swp").write_bytes(b"junk")
    os.symlink("/nonexistent", root / DAY_A / "dangling")
    (root / "20200303").mkdir()  # an empty cycle folder: zero messages, nothing wrong
    CASES_TRIED.append("stray files and folders")
    before = journal_state(root)
    report = verify_journal(root, config=CFG)
    assert report.ok, report.summary()
    assert [(c.folder, c.valid, c.messages) for c in report.cycles] == [
        (DAY_A, 70, 70), (DAY_B, 20, 20), ("20200303", 0, 0),
    ]
    run = subprocess.run([sys.executable, "-m", "pychro", "verify", str(root), *SMALL_ARGS],
                         check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout + run.stderr
    assert journal_state(root) == before


def test_every_problem_is_listed_in_seq_order(pristine: Path, tmp_path: Path) -> None:
    root = copy_journal(pristine, tmp_path / "j")
    a = layout(root)
    # one bad header in each of three data files (verify names the first fault of each kind per file),
    # damaged in reverse order of seq; the data files are checked in (tid, file_no) order, not seq order
    picks = [max((m for m in a if m.w == 1), key=lambda m: m.file_no), _first_of(a, 2), a[3]]
    assert len({(m.tid, m.file_no) for m in picks}) == 3
    for m in picks:
        _put(m.data(root), m.offset - 4, bytes(4))
    CASES_TRIED.append("three zero headers")
    report = verify_journal(root, config=CFG)
    problems = report.cycles[0].problems
    assert [p.seq for p in problems] == sorted(m.seq for m in picks), report.summary()
    assert report.cycles[0].valid == 67 and report.first_problem == problems[0]


def test_date_selects_one_cycle(pristine: Path, tmp_path: Path) -> None:
    root = copy_journal(pristine, tmp_path / "j")
    expect = case_damage_on_second_day_only(root)

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pychro", "verify", str(root), *SMALL_ARGS, *extra],
                              check=False, capture_output=True, text=True, timeout=60, cwd=REPO)

    ok = cli("--date", "2020-03-01")
    assert ok.returncode == 0 and "20200301: 70 valid of 70 messages - ok" in ok.stdout and DAY_B not in ok.stdout
    bad = cli("--date", "2020-03-02")
    assert bad.returncode == 1 and f"seq {expect.seq}" in bad.stdout and DAY_A not in bad.stdout
    none = cli("--date", "2020-03-05")
    assert none.returncode == 1 and "20200305" in none.stdout and "no folder for this cycle" in none.stdout
    report = verify_journal(root, config=CFG, date=dt.date(2020, 3, 2))
    assert [c.folder for c in report.cycles] == [DAY_B] and report.first_problem.seq == 12  # type: ignore[union-attr]


def test_missing_and_empty_journals(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFoundError):
        verify_journal(tmp_path / "nope")
    run = subprocess.run([sys.executable, "-m", "pychro", "verify", str(tmp_path / "nope")],
                         check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 1 and "journal folder not found" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / "empty").mkdir()
    report = verify_journal(tmp_path / "empty")
    assert report.ok and report.cycles == []
    (tmp_path / "file").write_text("x")
    run = subprocess.run([sys.executable, "-m", "pychro", "verify", str(tmp_path / "file")],
                         check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 1 and "Traceback" not in run.stderr


# -- read-only copies --------------------------------------------------------------------------------------
def _without_write_rights() -> list[str]:
    """A prefix that runs a command bound by file modes (root ignores them), or [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a journal really read-only")
    # root without these capabilities obeys the r-x/r-- modes of the copy (and can still read /root)
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("case", ["pristine", "header_zero", "zero_length_index"])
def test_read_only_copy(pristine: Path, tmp_path: Path, case: str) -> None:
    """verify on a journal whose files and folders are read-only, run by a user who cannot write them."""
    root = copy_journal(pristine, tmp_path / "j")
    expect = CASES[case](root) if case != "pristine" else None
    chmod_read_only(root)
    before = journal_state(root)
    try:
        run = subprocess.run([*_without_write_rights(), sys.executable, "-m", "pychro", "verify", str(root),
                              *SMALL_ARGS],
                             check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert run.stderr == ""
        if expect is None:
            assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout
        else:
            CASES_TRIED.append(f"{case} read-only")
            assert run.returncode == 1 and expect.what in run.stdout, run.stdout
        assert journal_state(root) == before
    finally:
        chmod_writable(root)


# -- the Java fixtures through the CLI -----------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pychro", "verify", *args],
                          check=False, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_cli_java_3_4_0_ok_with_detected_thread_id_bits(java_3_4_0: Path) -> None:
    before = journal_state(java_3_4_0)
    run = _cli(str(java_3_4_0))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(thread-id bits 16)" in run.stdout
    assert "20150221: 10 valid of 10 messages - ok" in run.stdout
    assert "20150222: 10 valid of 10 messages - ok" in run.stdout
    assert run.stdout.rstrip().endswith("OK")
    assert journal_state(java_3_4_0) == before


def test_cli_java_3_4_0_with_15_bits_names_the_missing_data_file(java_3_4_0: Path) -> None:
    run = _cli(str(java_3_4_0), "--thread-id-bits", "15")
    assert run.returncode == 1, run.stdout + run.stderr
    # seq 0 of 20150221: its entry read with 15 thread-id bits names a data file that does not exist
    (e,) = struct.unpack_from("<Q", (java_3_4_0 / "20150221" / "index-0").read_bytes())
    assert e >> 48 == 55760 and (java_3_4_0 / "20150221" / "data-55760-0").exists()
    missing = f"data-{e >> 49}-{(e >> 26) & ((1 << 23) - 1)}"
    first = run.stdout.splitlines()[-1]
    assert first.startswith(f"FIRST PROBLEM: cycle 16487 (20150221), seq 0, {missing}: data file is missing"), first
    assert "thread_id_bits=16" in first
    assert "0 valid of 10 messages" in run.stdout


def test_cli_java_3_6_6_ok(java_3_6_6: Any) -> None:
    run = _cli(str(java_3_6_6.journal))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3,000 valid of 3,000 messages - ok" in run.stdout
    run = _cli(str(java_3_6_6.journal), "--date", "2026-11-28")
    assert run.returncode == 0 and "20261128" in run.stdout


def test_cli_damaged_java_3_4_0_copy(java_3_4_0: Path, tmp_path: Path) -> None:
    root = copy_journal(java_3_4_0, tmp_path / "j")
    # seq 4 of 20150222: find its entry in the raw index and zero its header
    raw = (root / "20150222" / "index-0").read_bytes()
    (e,) = struct.unpack_from("<Q", raw, 8 * 4)
    tid, file_no, offset = e >> 48, (e >> 26) & ((1 << 22) - 1), e & ((1 << 26) - 1)
    data = root / "20150222" / f"data-{tid}-{file_no}"
    _put(data, offset - 4, bytes(4))
    CASES_TRIED.append("java 3.4.0 zero header")
    before = journal_state(root)
    run = _cli(str(root))
    assert run.returncode == 1
    assert "20150221: 10 valid of 10 messages - ok" in run.stdout
    assert "20150222: 9 valid of 10 messages - 1 problem(s)" in run.stdout
    assert (f"FIRST PROBLEM: cycle 16488 (20150222), seq 4, {data.name}, offset {offset}: "
            "header is 0 (uncommitted) behind a filled index slot") in run.stdout
    assert journal_state(root) == before
