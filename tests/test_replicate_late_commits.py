"""Issue #12 item 6: a SECONDS source written by several processes (two row writers, one write_frame) and
replicated throughout ends with a replica equal to the source, including messages committed late into a cycle
the replica had already left (one row writer does so on purpose, every few cycles)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pychro import Journal, VanillaChronicleReader, VanillaConfig
from pychro.remote import replicate, serve

SECONDS = VanillaConfig(cycle="SECONDS")
RUN_S = 6.0

ROW_WRITER = r"""
import sys, time
from pychro import VanillaChronicleWriter, VanillaConfig
path, name, late = sys.argv[1], sys.argv[2].encode(), sys.argv[3] == "1"
cfg = VanillaConfig(cycle="SECONDS")
stop = time.time() + float(sys.argv[4])
with VanillaChronicleWriter(path, config=cfg) as w:
    a = w.get_appender()
    i = 0
    while time.time() < stop:
        a.start_excerpt()
        a.write_long(i)
        a.write_bytes(name * (1 + i % 7))
        if late and i % 300 == 150:
            # hold the message until the next cycle is 0.4 s old: the others have written into it by then
            time.sleep(1.4 - time.time() % 1.0)
        a.finish()
        i += 1
        if i % 50 == 0:
            time.sleep(0.002)
"""

FRAME_WRITER = r"""
import sys, time
import numpy as np, pandas as pd
from pychro import VanillaConfig, write_frame
path = sys.argv[1]
cfg = VanillaConfig(cycle="SECONDS")
stop = time.time() + float(sys.argv[2])
k = 0
while time.time() < stop:
    now = pd.Timestamp(int(time.time() * 1000), unit="ms")
    df = pd.DataFrame({"ts": [now] * 500, "v": np.arange(k, k + 500, dtype=np.int32)})
    write_frame(df, path, "ts:timestamp_ms,v:int32", config=cfg)
    k += 500
    time.sleep(0.05)
"""


def _contents(path: Path) -> tuple[dict[int, int], list[tuple[int, bytes]]]:
    counts = {cycle: Journal(path, SECONDS).count(cycle) for cycle in Journal(path, SECONDS).cycles()}
    with VanillaChronicleReader(path, config=SECONDS) as reader:
        return counts, [(e.index, e.body()) for e in reader]  # type: ignore[misc]


@pytest.mark.slow
def test_replica_of_a_busy_seconds_journal_equals_the_source(tmp_path: Path) -> None:
    source = tmp_path / "source"
    replica = tmp_path / "replica"
    source.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    counts: list[int] = []
    errors: list[Exception] = []
    with serve(source, background=True, config=SECONDS) as server:
        def run() -> None:
            try:
                counts.append(replicate("127.0.0.1", server.port, replica, config=SECONDS, timeout=3.0,
                                        late_grace=5.0))
            except Exception as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        procs = [
            subprocess.Popen([sys.executable, "-c", ROW_WRITER, str(source), "a", "1", str(RUN_S)], env=env),
            subprocess.Popen([sys.executable, "-c", ROW_WRITER, str(source), "b", "0", str(RUN_S)], env=env),
            subprocess.Popen([sys.executable, "-c", FRAME_WRITER, str(source), str(RUN_S)], env=env),
        ]
        try:
            for proc in procs:
                assert proc.wait(timeout=60) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            worker.join(60)
    assert not worker.is_alive()
    assert not errors, errors
    want = _contents(source)
    got = _contents(replica)
    assert len(want[1]) == counts[0]
    assert got == want
