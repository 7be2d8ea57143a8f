"""Many writer processes and threads append to one journal while a reader process tails it (§5).

Every message must be read exactly once and intact, each writer's sequence without gaps, and the index slots
contiguous (first zero slot == number of messages).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
import struct
import time
from pathlib import Path

import pytest

from helpers import concurrency_payload, concurrency_tail, concurrency_writer

from pychro import Journal, VanillaChronicleReader, VanillaConfig

CLOCK_MS = 1424523600000  # 2015-02-21 13:00 UTC: one fixed cycle, whatever the real time
CYCLE = 16487
CTX = mp.get_context("spawn")


def _run(
    root: Path, config_kwargs: dict[str, object], procs: int, threads: int, n: int, timeout: float, min_switches: int
) -> None:
    root.mkdir()
    writers = procs * threads
    start = CTX.Barrier(writers + 2)  # every writer thread, the tailing reader and this process
    rounds = CTX.Barrier(writers)  # see concurrency_writer: interleaving by construction, not by luck
    out: mp.Queue = CTX.Queue()  # type: ignore[type-arg]
    tail = CTX.Process(target=concurrency_tail, args=(str(root), config_kwargs, writers, n, start, CLOCK_MS, out))
    tail.start()
    workers = [
        CTX.Process(
            target=concurrency_writer,
            args=(str(root), config_kwargs, list(range(p * threads, (p + 1) * threads)), n, start, CLOCK_MS, rounds),
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    t0 = time.monotonic()
    try:
        start.wait(60)
        for w in workers:
            w.join(max(1.0, timeout - (time.monotonic() - t0)))
            assert w.exitcode == 0, f"writer process failed with exit code {w.exitcode}"
        try:
            report = out.get(timeout=max(5.0, timeout - (time.monotonic() - t0)))
        except queue.Empty:
            pytest.fail("the tailing reader did not see every message in time")
        tail.join(10)
    finally:
        for p in [tail, *workers]:
            if p.is_alive():
                p.kill()
                p.join()
    # the tailing reader
    assert report["problems"] == []
    assert report["total"] == writers * n
    assert report["next_seq"] == [n] * writers
    assert report["indices_ok"]
    _check_journal(root, VanillaConfig(**config_kwargs), writers, n, min_switches)  # type: ignore[arg-type]


def _check_journal(root: Path, cfg: VanillaConfig, writers: int, n: int, min_switches: int) -> None:
    total = writers * n
    journal = Journal(root, cfg)
    assert journal.cycles() == [CYCLE]
    # the index: contiguous slots, exactly one per message, across all index files
    slots: list[int] = []
    for k in journal.index_files(CYCLE):
        raw = (root / "20150221" / f"index-{k}").read_bytes()
        slots.extend(struct.unpack(f"<{len(raw) // 8}Q", raw))
    first_zero = slots.index(0)
    assert first_zero == total
    assert not any(slots[first_zero:])
    assert len(set(slots[:total])) == total  # no entry committed twice
    # the writers really ran at the same time: consecutive slots often come from different threads (at least
    # writers - 1 times in each of the CONCURRENCY_ROUNDS rounds)
    switches = sum(1 for a, b in itertools.pairwise(slots[:total]) if a >> 48 != b >> 48)
    assert switches >= min_switches, f"only {switches} writer switches in the index"
    assert journal.count(CYCLE) == total
    assert journal.end_index() == (CYCLE << cfg.seq_bits) + total
    # a fresh reader from the start sees every message once, each writer's in order
    seen = [0] * writers
    with VanillaChronicleReader(root, config=cfg, clock=lambda: CLOCK_MS) as reader:
        for k, excerpt in enumerate(reader):
            assert excerpt.index == (CYCLE << cfg.seq_bits) + k
            w, seq = excerpt.read_int(), excerpt.read_int()
            assert seq == seen[w]
            assert excerpt.read_string() == concurrency_payload(w, seq)
            assert excerpt.remaining() == 0
            seen[w] += 1
    assert seen == [n] * writers


@pytest.mark.slow
def test_four_processes_two_threads_each(tmp_path: Path) -> None:
    """4 processes x 2 threads x 20 000 messages with default block sizes, tailed by a polling reader."""
    _run(tmp_path / "j", {}, procs=4, threads=2, n=20_000, timeout=120, min_switches=100)


@pytest.mark.slow
def test_concurrent_index_and_data_file_rolls(tmp_path: Path) -> None:
    """Small blocks: writers race to create index-(n+1) (512 slots each) and roll their data files often."""
    cfg = {"index_block_size": 4096, "data_block_size": 1 << 16, "message_capacity": 1024}
    _run(tmp_path / "j", cfg, procs=4, threads=2, n=5_000, timeout=120, min_switches=50)
    files = sorted(p.name for p in (tmp_path / "j" / "20150221").iterdir())
    assert sum(name.startswith("index-") for name in files) == 40_000 // 512 + 1
    assert sum(name.startswith("data-") for name in files) > 8


def test_small_concurrent_run(tmp_path: Path) -> None:
    """A quick version for every test run (2 processes x 2 threads x 1 000); too short to demand interleaving."""
    cfg = {"index_block_size": 1024}
    _run(tmp_path / "j", cfg, procs=2, threads=2, n=1_000, timeout=60, min_switches=0)
