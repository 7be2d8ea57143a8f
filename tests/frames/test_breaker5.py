"""Hostile and careless use of what changed in the read pipeline: shared decoding threads, page release."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import pychro

from ._util import run_script as _run


def test_read_collected_inside_a_decoding_thread_does_not_wait_for_itself(tmp_path: Path) -> None:
    """An abandoned iterator in a reference cycle is closed by the collector in whichever thread allocates, a
    decoding thread among them: it must not wait there for the batch that thread is decoding (a thread stuck
    for good, and the interpreter hangs at exit joining it)."""
    script = """
        import gc, sys, threading
        import pyarrow as pa, pychro
        from pychro.frames import api, iter_batches
        gc.disable()  # the collection below runs where the test puts it, not where allocations happen to
        path = sys.argv[1]
        pychro.write_frame(pa.table({"a": pa.array(range(10_000), pa.int64())}), path, "a:int64", date="2024-01-02")
        abandoned = threading.Event()
        real = api.decode_batch

        collected = []

        def decode_batch(plan, files, seq0, *args, **kw):
            if seq0 == 1000 and threading.current_thread() is not threading.main_thread():
                abandoned.wait(10)
                gc.collect()  # the collector closes the abandoned iterator here, in a decoding thread
                collected.append(seq0)
            return real(plan, files, seq0, *args, **kw)

        api.decode_batch = decode_batch
        api.EVEN_MIN_ROWS = 1  # batches this small go to the decoding threads too
        it = iter_batches(path, "a:int64", threads=2, batch_rows=500)
        next(it)
        cycle = [it]
        cycle.append(cycle)
        del it, cycle
        abandoned.set()
        table = pa.Table.from_batches(iter_batches(path, "a:int64", threads=2, batch_rows=500))
        print(table.column("a").to_pylist() == list(range(10_000)) and bool(collected))
    """
    got = _run(script, str(tmp_path / "j"), timeout=30)
    assert got.returncode == 0 and got.stdout.strip() == "True", got.stderr


def _types() -> Any:
    return pychro.MessageTypes(header="ts:timestamp_ns,type:int8", tag="type",
                               types={1: ("trade", "sym:string,px:float64"), 2: ("book", "sym:string,n:int32")})


def test_order_by_column_of_an_empty_frame_may_have_any_dtype(tmp_path: Path) -> None:
    """pandas makes the columns of a frame with no rows object or float64: as for the type's own columns, the
    dtype of an order_by column with no values does not matter."""
    ts = pd.to_datetime(["2024-03-05 09:00:00.001", "2024-03-05 09:00:00.002"], utc=True)
    trade = pd.DataFrame({"ts": ts, "sym": ["A", "B"], "px": [1.0, 2.0], "_index": [6, 5]})
    book = pd.DataFrame(columns=["ts", "sym", "n", "_index"])
    got = pychro.write_frames({"trade": trade, "book": book}, tmp_path / "j", _types(), order_by="_index")
    assert len(got["book"]) == 0 and len(got["trade"]) == 2
    assert pychro.read_tables(tmp_path / "j", _types())["trade"].column("px").to_pylist() == [2.0, 1.0]


def test_order_by_naming_no_column_is_an_error_with_no_rows_too(tmp_path: Path) -> None:
    empty = {"trade": pd.DataFrame(columns=["ts", "sym", "px"])}
    with pytest.raises(ValueError, match="no column 'nope' to merge by"):
        pychro.write_frames(empty, tmp_path / "j", _types(), order_by="nope")


@pytest.mark.parametrize("text", [" null", "null\n", "\n3 ", "  true\n"])
def test_from_json_of_json_text_around_blanks_that_is_not_an_object(text: str) -> None:
    """What sys.stdin.read() gives, say: JSON text that is not an object, not a missing file."""
    with pytest.raises(ValueError, match="message types are an object with 'header', 'tag' and 'types', got"):
        pychro.MessageTypes.from_json(text)


def test_from_json_of_a_file_that_is_not_utf8_or_a_path_with_nul_names_it(tmp_path: Path) -> None:
    (tmp_path / "types.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"cannot read message types from '.*types.json': the file is not UTF-8"):
        pychro.MessageTypes.from_json(str(tmp_path / "types.json"))
    with pytest.raises(ValueError, match="cannot read message types from 'a\\\\x00b': neither JSON text nor a path"):
        pychro.MessageTypes.from_json("a\x00b")


def test_cli_export_columns_naming_no_type_reads_as_one_sentence() -> None:
    from pychro import cli

    assert cli._cli_words("columns= names no message type 'nope'") == "--columns names no message type 'nope'"
    assert cli._cli_words("out of columns= to read") == "out of --columns to read"
    assert cli._cli_words("timestamp_column='t' is not") == "--timestamp-column 't' is not"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("child", ["close", "continue"])
def test_read_begun_before_a_fork_ends_or_goes_on_in_the_child(tmp_path: Path, child: str) -> None:
    """A child made by fork has none of the parent's decoding threads: a batch one of them was decoding at the
    fork never ends there. Closing the read in the child must not wait for it, going on must decode it."""
    script = """
        import os, signal, sys, threading, time
        import numpy as np, pyarrow as pa, pychro
        from pychro.frames import api, iter_batches
        path, child = sys.argv[1], sys.argv[2]
        pychro.write_frame(pa.table({"a": np.arange(20_000, dtype=np.int64)}), path, "a:int64", date="2024-01-02")
        started, hold = threading.Event(), threading.Event()
        real = api.decode_batch

        def decode_batch(plan, files, seq0, *args, **kw):
            if seq0 == 1000 and threading.current_thread() is not threading.main_thread():
                started.set()
                hold.wait(10)  # decoding in a pool thread of the parent when the process forks
            return real(plan, files, seq0, *args, **kw)

        api.decode_batch = decode_batch
        api.EVEN_MIN_ROWS = 1  # batches this small go to the decoding threads too
        it = iter_batches(path, "a:int64", threads=2, batch_rows=1000)
        next(it)
        assert started.wait(10)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                hold.set()
                if child == "close":
                    it.close()
                    code = 0
                else:
                    got = pa.Table.from_batches(list(it)).column("a").to_pylist()
                    code = 0 if got == list(range(1000, 20_000)) else 3
            finally:
                os._exit(code)
        hold.set()
        rows = 1000 + sum(b.num_rows for b in it)
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("child hung")
        else:
            print(rows, os.waitstatus_to_exitcode(done[1]))
    """
    got = _run(script, str(tmp_path / "j"), child, timeout=60)
    assert got.returncode == 0 and got.stdout.split() == ["20000", "0"], got.stdout + got.stderr


@pytest.mark.parametrize("threads, error, match", [
    (float("nan"), TypeError, "threads must be an int, got float"),  # read no rows, silently
    (2.5, TypeError, "threads must be an int, got float"),
    ("2", TypeError, "threads must be an int, got str"),  # a bare "'<' not supported"
    (10**6, ValueError, r"threads must be in 1\.\.256, got 1000000"),
])
def test_read_threads_is_an_int_in_range(tmp_path: Path, threads: Any, error: type, match: str) -> None:
    pychro.write_frame(pd.DataFrame({"a": range(10)}), tmp_path / "j", "a:int64", date="2024-01-02")
    for read in (pychro.read_table, lambda *a, **kw: list(pychro.iter_batches(*a, **kw))):
        with pytest.raises(error, match=match):
            read(tmp_path / "j", "a:int64", threads=threads)


def test_a_read_of_one_batch_does_not_queue_behind_the_batches_of_other_reads(tmp_path: Path) -> None:
    """The decoding threads are shared: a small read (one batch) beside a big streaming read waited for the big
    read's queued batches (2-3x its time, measured); it decodes its batch in the calling thread."""
    from concurrent.futures import wait

    from pychro.frames import api

    pychro.write_frame(pd.DataFrame({"a": range(1000)}), tmp_path / "j", "a:int64", date="2024-01-02")
    gate = threading.Event()
    busy = [api._pool(2).submit(gate.wait, 30) for _ in range(4)]  # another read's batches fill the pool
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(pychro.read_table(tmp_path / "j", "a:int64", threads=2)))
    try:
        reader.start()
        reader.join(10)
        assert got and got[0].column("a").to_pylist() == list(range(1000))
    finally:
        gate.set()
        wait(busy, timeout=30)
        reader.join(30)
