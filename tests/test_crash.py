"""Crash safety with real processes (issue 6): a writer killed with SIGKILL never leaves a journal from which a
reader returns a partial message; every message it reported committed is read intact; a new writer continues.

The child writer (``reliability_helpers.py``) kills itself at a precise point: mid-body, between body and
header, between header and the index CAS, right after the CAS, and before / during / after the creation of a
data or index file (rolls and cycle changes). It uses small blocks (32 index slots per file, 4 KiB data
files) and a clock tied to its message number, so each point is reached deterministically. The parent also
kills a busy two-thread writer at random times.

The frames and remote read paths read crashed journals in tests/test_frames_damaged.py (11 kill points, read
by ``read_table``, ``iter_batches``, ``RemoteChronicleReader`` and ``iter_remote_batches``).
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reliability_helpers import (
    check_sequences,
    read_all,
    read_excerpt,
    read_report,
    report_line,
    run_writer,
    small_config,
    write_message,
)

import pychro._mapping as M
from pychro import VanillaChronicleReader, VanillaChronicleWriter
from pychro.verify import verify_journal

CFG = small_config()
SLOTS = CFG.slots_per_index_file  # 32
W = 7  # writer number of the crashed writer
KILLED = -signal.SIGKILL

STATS = {"kills": 0, "messages_checked": 0}


@pytest.fixture(scope="module", autouse=True)
def _print_stats(request: pytest.FixtureRequest) -> Any:
    """Print what the crash tests did once the module is done (pytest -rA or -s not needed)."""
    yield
    if STATS["kills"]:
        report_line(request, f"[crash] kills survived: {STATS['kills']}; "
                             f"messages checked intact: {STATS['messages_checked']}")


def _folders(journal: Path) -> list[Path]:
    return sorted(p for p in journal.iterdir() if p.is_dir()) if journal.exists() else []


def _files(journal: Path, prefix: str) -> list[Path]:
    return sorted((f for d in _folders(journal) for f in d.iterdir() if f.name.startswith(prefix)),
                  key=lambda f: (f.parent.name, int(f.name.rsplit("-", 1)[1])))


def _check_after_crash(journal: Path, reported: list[tuple[int, int, int]], start: int = 0) -> int:
    """Everything a reader sees is intact and gapless; every reported message is there, at its index.

    Returns how many messages of writer W are committed (reported ones, plus at most the one in flight).
    """
    rows = read_all(journal, CFG) if journal.exists() else []
    STATS["messages_checked"] += len(rows)
    counts = check_sequences(rows)
    committed = counts.get(W, 0)
    mine = [r for r in rows if r[1] == W and r[2] >= start]
    assert mine[: len(reported)] == reported, "a reported message is missing or at another index"
    assert len(reported) <= len(mine) <= len(reported) + 1, "more than the one message in flight appeared"
    return committed


def _verify_problems(journal: Path) -> list[str]:
    report = verify_journal(journal, config=CFG)
    for c in report.cycles:
        assert c.valid == c.messages, report.summary()
    return [str(p) for p in report.problems] + [str(p) for c in report.cycles for p in c.problems]


def _crash_then_continue(tmp_path: Path, event: str, nth: int, *, change_at: int | None = None,
                         count: int = 80, more: int = 40) -> dict[str, Any]:
    journal = tmp_path / "j"
    run = run_writer(tmp_path, journal, w=W, count=count, kill_event=event, kill_nth=nth, cycle_change_at=change_at)
    assert run.returncode == KILLED, f"writer was not killed at {event} #{nth}: rc={run.returncode} {run.stderr!r}"
    STATS["kills"] += 1
    reported = read_report(tmp_path / f"report-{W}-0.bin")
    committed = _check_after_crash(journal, reported)
    problems = _verify_problems(journal) if journal.exists() else []
    state = {"committed": committed, "reported": len(reported), "problems": problems,
             "index_files": [(f.parent.name, f.name, f.stat().st_size) for f in _files(journal, "index-")],
             "data_files": [(f.parent.name, f.name, f.stat().st_size) for f in _files(journal, "data-")]}

    # A reader opened on the crashed journal reads what is there, then follows the new writer.
    tail = VanillaChronicleReader(journal, config=CFG) if journal.exists() else None
    seen = [read_excerpt(e) for e in tail] if tail else []
    assert seen == [(W, i) for i in range(committed)]

    again = run_writer(tmp_path, journal, w=W, start=committed, count=more, cycle_change_at=change_at)
    assert again.returncode == 0, again.stderr.decode()
    reported2 = read_report(tmp_path / f"report-{W}-{committed}.bin")
    assert len(reported2) == more
    rows = read_all(journal, CFG)
    STATS["messages_checked"] += len(rows)
    assert check_sequences(rows) == {W: committed + more}
    assert rows[committed:] == reported2 and rows[: len(reported)] == reported
    if tail is not None:
        seen += [read_excerpt(e) for e in tail]
        tail.close()
        assert seen == [(W, i) for i in range(committed + more)]
    assert _verify_problems(journal) == [], "verify after the new writer finished"
    return state


# -- deterministic kill points ---------------------------------------------------------------------------
# (event, nth, cycle_change_at, expectation). Messages are numbered from 0; message k is the (k+1)-th.
POINTS = [
    # inside a message
    ("mid_body", 1, None, "first message: nothing committed"),
    ("mid_body", 20, None, "19 committed"),
    ("before_header", 1, None, "body written, no header"),
    ("before_header", 33, None, "body of the 33rd message, index-0 full"),
    # between header and CAS, and right after the CAS
    ("before_commit", 1, None, "header written, no entry"),
    ("before_commit", 10, None, "9 committed"),
    ("after_commit", 1, None, "1 committed, not reported"),
    ("after_commit", 32, None, "last slot of index-0 committed"),
    # index-file roll: message 32 finds index-0 full
    ("before_commit", 33, None, "CAS on full index-0 (fails) not yet tried"),
    ("before_commit", 34, None, "index-1 created and mapped, CAS not yet tried"),
    ("create_index", 2, None, "index-1 not created yet"),
    ("truncate_index", 2, None, "index-1 created empty"),
    ("mapped_index", 2, None, "index-1 at full size, nothing in it"),
    ("after_commit", 33, None, "first entry of index-1"),
    # data-file roll (the first data file, then the second)
    ("create_data", 1, None, "no data file yet"),
    ("truncate_data", 1, None, "data-<tid>-0 claimed, empty"),
    ("truncate_data", 2, None, "data-<tid>-1 claimed, empty"),
    ("mapped_data", 2, None, "data-<tid>-1 mapped, no message in it"),
    ("before_commit", 1, None, "first message: header written, no entry"),
    # cycle change at message 20: new folder, new data file, new index-0
    ("create_data", 2, 20, "new cycle: folder only"),
    ("truncate_data", 2, 20, "new cycle: empty data file"),
    ("mapped_data", 2, 20, "new cycle: data file, no index"),
    ("create_index", 2, 20, "new cycle: no index-0"),
    ("truncate_index", 2, 20, "new cycle: empty index-0"),
    ("mapped_index", 2, 20, "new cycle: empty full-size index-0"),
    ("before_commit", 21, 20, "new cycle: first CAS not done"),
    ("after_commit", 21, 20, "new cycle: first message committed"),
]
FAST = {("before_commit", 10, None), ("truncate_index", 2, None), ("truncate_data", 2, 20), ("after_commit", 33, None)}


@pytest.mark.parametrize(
    "event,nth,change_at,why",
    [pytest.param(*p, marks=() if p[:3] in FAST else pytest.mark.slow, id=f"{p[0]}-{p[1]}{'-cycle' if p[2] else ''}")
     for p in POINTS],
)
def test_kill_at_point(tmp_path: Path, event: str, nth: int, change_at: int | None, why: str) -> None:
    state = _crash_then_continue(tmp_path, event, nth, change_at=change_at)
    committed, problems = state["committed"], state["problems"]
    index_files, data_files = state["index_files"], state["data_files"]
    expect_committed = {
        "mid_body": nth - 1, "before_header": nth - 1,
        "after_commit": nth, "before_commit": nth - 1 - (1 if nth > SLOTS + 1 else 0),
    }
    if event in expect_committed:
        assert committed == expect_committed[event], why
        assert state["reported"] == committed - (event == "after_commit"), why
    # The kill happened where the scenario says: check the files the writer left.
    if event.endswith("_index"):
        n_expected = 1  # the file at stake is index-1 of day 0, or index-0 of the new day
        sizes = [size for _, _, size in index_files]
        if event == "create_index":
            assert len(index_files) == n_expected, index_files
        else:
            assert len(index_files) == n_expected + 1, index_files
            assert sizes[-1] == (0 if event == "truncate_index" else CFG.index_block_size), index_files
    if event.endswith("_data"):
        created = len(data_files)
        sizes = [size for _, _, size in data_files]
        if event == "create_data":
            assert created == nth - 1, data_files
        else:
            assert created == nth and sizes[-1] == (0 if event == "truncate_data" else CFG.data_block_size), data_files
    if change_at is not None and event.endswith(("_data", "_index")) and event != "create_data":
        assert len({folder for folder, _, _ in data_files}) == 2, "the kill was meant for the new cycle"
    # verify is clean after any crash, except an index file caught between its creation and its extension
    if event == "truncate_index":
        assert len(problems) == 1 and "index file is 0 bytes, expected 256" in problems[0], problems
    else:
        assert problems == [], problems


def test_committed_messages_survive_kill_without_msync_or_close(tmp_path: Path) -> None:
    """Messages live in MAP_SHARED pages: a SIGKILL (no msync, no close) loses none of the committed ones."""
    journal = tmp_path / "j"
    run = run_writer(tmp_path, journal, w=W, count=500, kill_event="mid_body", kill_nth=400)
    assert run.returncode == KILLED
    reported = read_report(tmp_path / f"report-{W}-0.bin")
    assert len(reported) == 399
    assert _check_after_crash(journal, reported) == 399
    assert len(_files(journal, "index-")) == 13 and len(_files(journal, "data-")) > 5  # rolled many times
    STATS["kills"] += 1


# -- random-time kills of a busy writer ------------------------------------------------------------------
@pytest.mark.slow
def test_random_kills_of_busy_two_thread_writer(tmp_path: Path) -> None:
    """Kill a busy writer (2 threads, real clock) at random times, 14 times, continuing each time."""
    rng = random.Random(int(os.environ.get("PYCHRO_CRASH_SEED", "6")))
    journal = tmp_path / "j"
    starts = {W: 0, W + 1: 0}
    kills = 0
    for round_no in range(15):
        last = round_no == 14
        sync = round_no % 5 == 4
        report = tmp_path / f"report-round{round_no}.bin"
        proc = run_writer(tmp_path, journal, w=W, count=300 if last else -1, wait=False, threads=2,
                          starts={str(w): s for w, s in starts.items()}, clock="real", synchronous=sync,
                          report=str(report))
        try:
            if last:
                assert proc.wait(timeout=120) == 0, proc.stderr.read()  # type: ignore[union-attr]
            else:
                deadline = time.monotonic() + 30
                while len(read_report(report)) < 5 and time.monotonic() < deadline:  # busy writing
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.08))
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait(timeout=30) == KILLED
                kills += 1
        finally:  # count=-1 writes forever: never leave it running when something above failed
            if proc.poll() is None:  # type: ignore[union-attr]
                proc.kill()  # type: ignore[union-attr]
                proc.wait(timeout=30)  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
        reported = read_report(report)
        rows = read_all(journal, CFG)
        STATS["messages_checked"] += len(rows)
        counts = check_sequences(rows)
        by_w = {w: [r for r in rows if r[1] == w and r[2] >= starts[w]] for w in starts}
        for w in starts:
            mine = [r for r in reported if r[1] == w]
            assert by_w[w][: len(mine)] == mine
            assert len(by_w[w]) <= len(mine) + 1
        problems = _verify_problems(journal)
        assert all("index file is 0 bytes" in p for p in problems), problems
        starts = {w: counts.get(w, 0) for w in starts}
    assert kills == 14 and _verify_problems(journal) == []
    assert min(starts.values()) >= 300
    STATS["kills"] += kills


# -- synchronous=True ------------------------------------------------------------------------------------
class _CountingMmap(mmap.mmap):
    flushes: ClassVar[dict[str, int]] = {}

    def flush(self, *args: Any) -> None:  # type: ignore[override]
        key = "index" if len(self) == CFG.index_block_size else "data"
        _CountingMmap.flushes[key] = _CountingMmap.flushes.get(key, 0) + 1
        super().flush(*args)


@pytest.mark.parametrize("synchronous", [False, True])
def test_synchronous_msyncs_data_and_index_after_each_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               synchronous: bool) -> None:
    monkeypatch.setattr(M.mmap, "mmap", _CountingMmap)
    _CountingMmap.flushes = {}
    n = 100  # rolls data files and index files on the way
    with VanillaChronicleWriter(tmp_path, config=CFG, synchronous=synchronous) as writer:
        appender = writer.get_appender()
        for i in range(n):
            write_message(appender, 1, i)
    expected = {"data": n, "index": n} if synchronous else {}
    assert _CountingMmap.flushes == expected
    monkeypatch.undo()
    assert check_sequences(read_all(tmp_path, CFG)) == {1: n}


@pytest.mark.slow
def test_synchronous_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measure msgs/s with and without msync after each commit (ext4 here: each msync reaches the disk)."""
    cfg = small_config(index_block_size=1 << 16, data_block_size=1 << 20)
    rates = {}
    for sync, n in ((False, 20_000), (True, 300)):
        path = tmp_path / f"sync-{sync}"
        with VanillaChronicleWriter(path, config=cfg, synchronous=sync) as writer:
            appender = writer.get_appender()
            t0 = time.perf_counter()
            for i in range(n):
                write_message(appender, 1, i)
            rates[sync] = n / (time.perf_counter() - t0)
        assert check_sequences(read_all(path, cfg)) == {1: n}
    with capsys.disabled():
        print(f"\n[bench] synchronous=False {rates[False]:,.0f} msg/s; synchronous=True {rates[True]:,.0f} msg/s "
              f"({rates[False] / rates[True]:,.0f}x slower; self-checking ~80-byte messages)")
    assert rates[True] < rates[False]


