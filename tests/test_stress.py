"""Concurrency stress (issue 6): N writer processes x M threads append for a bounded time while row readers in
other processes tail the journal and verify runs over and over. Every message is read exactly once and intact
by every reader, each writer's sequence has no gap, and verify never sees a bad message.

Small blocks (512 slots per index file, 64 KiB data files) make index-file and data-file rolls happen under
contention many times a second. ``test_concurrency.py`` covers the fixed-size 4 x 2 case with exact
expectations; this one runs by time (``PYCHRO_STRESS_SECONDS``, default 20, and at most
``PYCHRO_STRESS_MESSAGES`` per thread, default 40000) and adds verify and many rolls.

A frames reader (``iter_batches(follow=True)``) beside a row reader under concurrent writers is in
tests/test_stress_frames.py; live TCP subscribers under writers in tests/test_remote_loopback.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reliability_helpers import (
    check_sequences,
    read_all,
    read_report,
    report_line,
    run_child,
    run_writer,
    small_config,
)

from pychro.verify import verify_journal

STRESS_CONFIG = {"index_block_size": 4096, "data_block_size": 1 << 16}
CFG = small_config(**STRESS_CONFIG)


def _stress(tmp_path: Path, request: pytest.FixtureRequest, *, processes: int, threads: int, readers: int,
            seconds: float, per_thread: int) -> None:
    """Writers stop after ``seconds`` or ``per_thread`` messages each (checking every message is the slow part)."""
    journal = tmp_path / "j"
    journal.mkdir()
    go, done = tmp_path / "go", tmp_path / "done"
    base = {"dir": str(journal), "config": STRESS_CONFIG, "done": str(done), "timeout": seconds + 120}
    children: list[subprocess.Popen[bytes]] = []
    try:
        _run(tmp_path, journal, go, done, base, children, processes=processes, threads=threads, readers=readers,
             seconds=seconds, per_thread=per_thread, request=request)
    finally:
        reap(children)


def reap(children: list[subprocess.Popen[bytes]]) -> None:
    """Kill the children still running (a failed assertion leaves them) and close their pipes."""
    for proc in children:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=30)
        except (subprocess.TimeoutExpired, ValueError):  # ValueError: pipes already read and closed
            pass
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def write_atomically(path: Path, text: str) -> None:
    """Readers poll for ``path``: they must never see it half written (rename is atomic, write_text is not)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run(tmp_path: Path, journal: Path, go: Path, done: Path, base: dict[str, Any],
         children: list[subprocess.Popen[bytes]], *, processes: int, threads: int, readers: int, seconds: float,
         per_thread: int, request: pytest.FixtureRequest) -> None:
    tails = [run_child("read", base) for _ in range(readers)]
    children.extend(tails)
    verifier = run_child("verify", base)
    children.append(verifier)
    writers = []
    for p in range(processes):
        w0 = 10 * (p + 1)
        writers.append(run_writer(
            tmp_path, journal, w=w0, count=per_thread, wait=False, threads=threads, config=STRESS_CONFIG,
            starts={str(w0 + t): 0 for t in range(threads)}, duration=seconds, go=str(go), pause=0.002,
            report=str(tmp_path / f"report-{p}.bin"),
        ))
        children.append(writers[-1])  # type: ignore[arg-type]
    go.touch()
    t0 = time.monotonic()
    for proc in writers:
        assert proc.wait(timeout=seconds + 120) == 0, proc.stderr.read()  # type: ignore[union-attr]
    elapsed = time.monotonic() - t0
    reported = [r for p in range(processes) for r in read_report(tmp_path / f"report-{p}.bin")]
    totals: dict[int, int] = {}
    for _, w, i in reported:
        totals[w] = max(totals.get(w, 0), i + 1)
    assert len(totals) == processes * threads and len(reported) == sum(totals.values())
    write_atomically(done, json.dumps(totals))

    results: list[dict[str, Any]] = []
    for proc in [*tails, verifier]:
        out, err = proc.communicate(timeout=seconds + 180)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    for r in results[:-1]:  # every tailing reader saw every message once, in order, intact
        assert r["read"] == len(reported) and {int(k): v for k, v in r["per_writer"].items()} == totals

    rows = read_all(journal, CFG)
    assert check_sequences(rows) == totals
    assert sorted(rows) == sorted(reported), "a reported index differs from where the message was read"
    report = verify_journal(journal, config=CFG)
    assert report.ok, report.summary()
    index_files = len(list(journal.glob("*/index-*")))
    data_files = len(list(journal.glob("*/data-*")))
    report_line(request, f"[stress] {processes} processes x {threads} threads for {elapsed:.1f}s: "
                         f"{len(rows):,} messages ({len(rows) / elapsed:,.0f}/s while checked by readers), "
                         f"read intact exactly once by {readers} tailing readers "
                         f"+ 1 final read; {results[-1]['runs']} concurrent verify runs "
                         f"({len(results[-1]['transient'])} saw a new index file before it was extended); "
                         f"{index_files} index files, {data_files} data files")


@pytest.mark.slow
def test_stress_writers_readers_and_verify(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seconds = float(os.environ.get("PYCHRO_STRESS_SECONDS", "20"))
    per_thread = int(os.environ.get("PYCHRO_STRESS_MESSAGES", "40000"))
    _stress(tmp_path, request, processes=3, threads=2, readers=2, seconds=seconds, per_thread=per_thread)


def test_stress_short(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A two-second version, so the fast suite has a multi-process run with readers and verify too."""
    t0 = time.monotonic()
    _stress(tmp_path, request, processes=2, threads=2, readers=1, seconds=2, per_thread=1500)
    assert time.monotonic() - t0 < 60
