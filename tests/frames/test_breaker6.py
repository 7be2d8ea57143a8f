"""Hostile and careless use of the background unmapper, read_table's even batches and the sampling of index slots."""

from __future__ import annotations

import datetime as dt
import gc
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import pychro
from pychro import PychroError
from pychro.frames import api, iter_batches, read_table

from ._util import run_script as _run


# -- the background unmapper ---------------------------------------------------------------------------------------
def test_a_read_the_collector_closes_while_a_finished_read_hands_over_its_maps(tmp_path: Path) -> None:
    """The collector runs at any allocation, also while a finished read hands its maps to the unmapper; an abandoned
    read in a reference cycle that it closes there hands over its maps too. It must not wait for a lock its own
    thread holds (the unmapper's lock, or the executor's in submit): the program hung for good."""
    script = """
        import faulthandler, gc, sys
        import pyarrow as pa, pychro
        from pychro.frames import api, iter_batches, read_table
        faulthandler.dump_traceback_later(20, exit=True)
        gc.disable()  # collections happen only where the test puts them
        path = sys.argv[1]
        pychro.write_frame(pa.table({"a": pa.array(range(1000), pa.int64())}), path, "a:int64", date="2024-01-02")
        real = api.close_later

        def trial(k):
            it = iter_batches(path, "a:int64", batch_rows=100, threads=1)
            next(it)
            loop = [it]
            loop.append(loop)
            del it, loop  # an abandoned read in a reference cycle, not yet collected

            def close_later(files):
                gc.set_threshold(gc.get_count()[0] + k)  # a collection at the k-th allocation from here on
                gc.enable()
                try:
                    real(files)
                finally:
                    gc.disable()

            api.close_later = close_later
            try:
                got = read_table(path, "a:int64", threads=1)
            finally:
                api.close_later = real
            gc.collect()
            assert got.column("a").to_pylist() == list(range(1000))

        for k in range(1, 60):
            trial(k)
        print("ok")
    """
    got = _run(script, str(tmp_path / "j"), timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == "ok", got.stderr[-3000:]


# -- sampling index slots for the thread-id bits -------------------------------------------------------------------
def _unix_socket(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)


@pytest.mark.parametrize("kind", ["symlink loop", "unix socket"])
def test_an_index_file_that_cannot_be_opened_is_a_pychro_error(tmp_path: Path, kind: str) -> None:
    """Opening a journal samples its newest cycle's index files: one that is a symlink loop (ELOOP) or a socket
    (ENXIO) raised a bare OSError from Journal() and from every read. The sampling looks elsewhere; a read of that
    cycle says what the file is."""
    path = tmp_path / "j"
    for day in (2, 3):
        pychro.write_frame(pa.table({"a": pa.array(range(100), pa.int64())}), path, "a:int64", date=f"2024-01-0{day}")
    journal = pychro.Journal(path)
    index0 = Path(journal.index_path(journal.cycles()[-1], 0))
    index0.unlink()
    if kind == "symlink loop":
        index0.symlink_to(index0)
    else:
        _unix_socket(str(index0))
    assert pychro.Journal(path).detect_thread_id_bits() == 16  # from the other cycle
    assert read_table(path, "a:int64", date="2024-01-02").num_rows == 100
    with pytest.raises(PychroError, match="not a regular file") as caught:
        read_table(path, "a:int64")
    assert str(index0) in str(caught.value)


# -- follow=True and the maps of cycles it has left ----------------------------------------------------------------
class _Clock:
    def __init__(self, when: dt.datetime) -> None:
        self.ms = int(when.timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms


def _maps_of(folder: str) -> list[str]:
    with open("/proc/self/maps") as fh:
        return [line.split()[-1] for line in fh if folder in line]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
@pytest.mark.parametrize("writer", ["quiet", "busy"])
def test_a_follower_drops_the_maps_of_a_cycle_it_left(tmp_path: Path, monkeypatch: Any, writer: str) -> None:
    """A follower watches a cycle it left for late commits for LATE_COMMIT_GRACE_S, then drops its maps. It kept
    them as long as it followed: the files of the cycle it began in (mapped by the read of what was already there),
    and, while the writer kept committing into the newer cycle (each look found new rows), the cycle it left."""
    monkeypatch.setattr(api, "LATE_COMMIT_GRACE_S", 0.1)
    cfg = pychro.VanillaConfig(cycle="HOURS")
    clock = _Clock(dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC))
    with pychro.VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as w:
        app = w.get_appender()
        for k in range(3):
            app.write_long(k)
            app.finish()
    (old,) = os.listdir(tmp_path)
    it = iter_batches(tmp_path, "i:int64", follow=True, poll_interval=0.005, config=cfg)
    got = next(it).column("i").to_pylist()
    clock.ms += 3_600_000
    consumer = None
    try:
        with pychro.VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as w:
            app = w.get_appender()
            app.write_long(3)
            app.finish()
            got += next(it).column("i").to_pylist()  # the follower has moved on to the newer cycle
            deadline = time.monotonic() + 5  # (the grace is 0.1 s)
            k = 4
            if writer == "quiet":  # the follower waits for rows (in a thread) past the grace
                consumer = threading.Thread(target=lambda: got.extend(next(it).column("i").to_pylist()))
                consumer.start()
            while True:
                if writer == "busy":  # a row committed before each look: the newer cycle never goes quiet
                    app.write_long(k)
                    app.finish()
                    k += 1
                    got += next(it).column("i").to_pylist()
                else:
                    time.sleep(0.01)
                gc.collect()
                left_mapped = _maps_of(str(tmp_path / old))
                if not left_mapped or time.monotonic() > deadline:
                    break
            app.write_long(k)
            app.finish()
            if consumer is not None:
                consumer.join(10)
    finally:
        it.close()
    assert got == list(range(len(got))) and len(got) >= 5
    assert left_mapped == []


# -- reads at interpreter shutdown ---------------------------------------------------------------------------------
def test_reads_in_an_atexit_handler_and_in_a_daemon_thread_at_exit(tmp_path: Path) -> None:
    """After the main thread has ended, the interpreter stops its thread pools: a read handing batches to the shared
    decoding threads then failed with a bare RuntimeError ('cannot schedule new futures after shutdown'), in an
    atexit handler and in a daemon thread still reading. They decode in the calling thread instead."""
    script = """
        import atexit, sys, threading
        import pyarrow as pa, pychro
        path = sys.argv[1]
        n = 100_000
        ts = pa.array([1704153600_000 + 100 * i for i in range(n)], pa.timestamp("ms", tz="UTC"))  # from 2024-01-02
        schema = "ts:timestamp_ms,a:int64,s:string"  # (strings: the time bounds are searched by threads)
        pychro.write_frame(pa.table({"ts": ts, "a": pa.array(range(n), pa.int64()), "s": ["x"] * n}), path, schema,
                           date="2024-01-02")

        def at_exit():
            t = pychro.read_table(path, schema, threads=4)
            got = sum(b.num_rows for b in pychro.iter_batches(path, schema, threads=2,
                                                              batch_rows=20_000))
            # a cycle the time range covers in part: its bounds are searched by decoding threads of their own
            hour = pychro.read_table(path, schema, start="2024-01-02T01:00",
                                     end="2024-01-02T02:00", threads=2)
            print(t.column("a").to_pylist() == list(range(n)), got, hour.column("a").to_pylist() == list(range(
                36_000, 72_000)), flush=True)

        def reading():
            while True:
                assert pychro.read_table(path, schema, threads=2).num_rows == n

        atexit.register(at_exit)
        threading.Thread(target=reading, daemon=True).start()
        it = pychro.iter_batches(path, schema, threads=2, batch_rows=20_000)
        next(it)  # left open at exit
    """
    got = _run(script, str(tmp_path / "j"), timeout=60)
    assert got.returncode == 0 and got.stderr == "", got.stderr[-3000:]
    assert got.stdout.split() == ["True", "100000", "True"]


def test_writes_in_an_atexit_handler(tmp_path: Path) -> None:
    """write_frame with threads in an atexit handler failed with a bare RuntimeError ('cannot schedule new futures
    after interpreter shutdown'): its lengths and its runs are laid out in the calling thread instead."""
    script = """
        import atexit, sys
        import pyarrow as pa, pychro
        path = sys.argv[1]
        n = 300_000  # (several runs, and lengths in two parts)
        table = pa.table({"a": pa.array(range(n), pa.int64()), "s": ["x"] * n})

        def at_exit():
            out = pychro.write_frame(table, path, "a:int64,s:string", date="2024-01-02", threads=2)
            t = pychro.read_table(path, "a:int64,s:string")
            print(len(out), t.column("a").to_pylist() == list(range(n)), flush=True)

        atexit.register(at_exit)
    """
    got = _run(script, str(tmp_path / "j"), timeout=60)
    assert got.returncode == 0 and got.stderr == "", got.stderr[-3000:]
    assert got.stdout.split() == ["300000", "True"]
