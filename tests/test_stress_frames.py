"""Concurrency stress with frame readers (issue 6): writer processes x threads append frames-decodable messages
while ``iter_batches(follow=True)`` and a row reader tail the journal. Every message is read exactly once and
intact by each reader, in index order, and each writer's sequence has no gap. Small index and data blocks make
rolls happen under contention."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from reliability_helpers import FRAMES_SCHEMA, frames_row_intact

import pychro

CONFIG = {"index_block_size": 1024, "data_block_size": 1 << 15, "message_capacity": 256, "thread_id_bits": 16}

WRITER = textwrap.dedent(
    """
    import json, sys, threading, time
    sys.path.insert(0, {tests!r})
    import pychro
    from reliability_helpers import write_frames_message

    spec = json.loads(sys.argv[1])
    cfg = pychro.VanillaConfig(**spec["config"])
    writer = pychro.VanillaChronicleWriter(spec["dir"], config=cfg)

    def run(w):
        appender = writer.get_appender()
        for i in range(spec["count"]):
            write_frames_message(appender, w, i)
            if i % 500 == 499:
                time.sleep(0.001)

    threads = [threading.Thread(target=run, args=(w,)) for w in spec["writers"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    """
)


def _check(rows: list[tuple[int, int, int, str | None, int]], expected: dict[int, int], who: str) -> None:
    indices = [r[0] for r in rows]
    assert indices == sorted(indices) and len(set(indices)) == len(indices), f"{who}: index order"
    nxt: dict[int, int] = {}
    for _, w, i, s, crc in rows:
        assert i == nxt.get(w, 0), f"{who}: writer {w} read {i}, expected {nxt.get(w, 0)}"
        assert frames_row_intact(w, i, s, crc), f"{who}: message ({w}, {i}) not intact"
        nxt[w] = i + 1
    assert nxt == expected, f"{who}: {nxt} != {expected}"


@pytest.mark.slow
@pytest.mark.parametrize("processes,threads,count", [(3, 2, 4000)])
def test_frames_and_row_readers_tail_concurrent_writers(tmp_path: Path, processes: int, threads: int,
                                                         count: int) -> None:
    journal = tmp_path / "j"
    journal.mkdir()
    cfg = pychro.VanillaConfig(**CONFIG)
    expected = {10 * p + t: count for p in range(processes) for t in range(threads)}
    total = sum(expected.values())
    frame_rows: list[tuple[int, int, int, str | None, int]] = []
    row_rows: list[tuple[int, int, int, str | None, int]] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 120
    stop = threading.Event()  # set on the way out: a failed test does not leave readers polling

    def frames_reader() -> None:
        try:
            batches = pychro.iter_batches(journal, FRAMES_SCHEMA, config=cfg, follow=True, poll_interval=0.005,
                                          index=True, batch_rows=1000)
            for batch in batches:
                cols = [batch.column(n).to_pylist() for n in ("_index", "w", "i", "s", "crc")]
                frame_rows.extend(zip(*cols))
                if len(frame_rows) >= total or time.monotonic() > deadline or stop.is_set():
                    break
            batches.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def row_reader() -> None:
        try:
            with pychro.VanillaChronicleReader(journal, config=cfg, polling_interval=0.002) as reader:
                while len(row_rows) < total and time.monotonic() < deadline and not stop.is_set():
                    e = reader.next_reader()
                    row_rows.append((e.index, e.read_int(), e.read_long(), e.read_string(), e.read_unsigned_int()))
                    assert e.remaining() == 0
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=frames_reader), threading.Thread(target=row_reader)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for t in readers:
            t.start()
        for p in range(processes):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent)), json.dumps(
                    {"dir": str(journal), "config": CONFIG, "count": count,
                     "writers": [10 * p + t for t in range(threads)]})], stderr=subprocess.PIPE))
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
        for t in readers:
            t.join(timeout=150)
            assert not t.is_alive(), "a reader did not finish"
    finally:  # whatever failed: no writer left running, no pipe left open, no reader left polling
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        for t in readers:
            if t.ident is not None:
                t.join(timeout=30)
    assert not errors, errors
    _check(frame_rows, expected, "iter_batches(follow=True)")
    _check(row_rows, expected, "row reader")
    assert [r[0] for r in frame_rows] == [r[0] for r in row_rows]
    final = pychro.read_table(journal, FRAMES_SCHEMA, config=cfg, index=True)
    assert final.num_rows == total
    assert pychro.open(journal, config=cfg).info()["messages"] == total
    index_files = len(list(journal.glob("*/index-*")))
    data_files = len(list(journal.glob("*/data-*")))
    assert index_files > 10 and data_files > 10  # rolls happened under contention
