"""iter_batches (bounded batches, follow mode with live writers across cycles) and read_frame's dtype backends."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pychro import VanillaChronicleWriter, VanillaConfig
from pychro.frames import ReadStats, iter_batches, read_frame, read_table
from pychro.frames.schema import Schema

from ._util import write_journal, write_rows

UTC = dt.UTC
SCHEMA = Schema("t:timestamp_ms,i:int64,s:string,b:bool,c:char,u:uint16")


def rows(lo: int, hi: int) -> list[list[Any]]:
    return [[1_700_000_000_000 + k, k, None if k % 5 == 0 else f"v{k}", k % 3 == 0, chr(65 + k % 26), k % 65536]
            for k in range(lo, hi)]


def test_batches_are_bounded_and_in_order(tmp_path: Path) -> None:
    write_journal(tmp_path, SCHEMA, rows(0, 1000))
    stats = ReadStats()
    batches = list(iter_batches(tmp_path, SCHEMA, batch_rows=128, index=True, stats=stats))
    assert [b.num_rows for b in batches] == [128] * 7 + [104]
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.column("i").to_pylist() == list(range(1000))
    assert stats.batches == 8 and stats.rows == 1000 and stats.cycles == 1
    assert table.to_pylist() == read_table(tmp_path, SCHEMA, index=True).to_pylist()
    assert table.schema.field("t").type == pa.timestamp("ms", tz="UTC")
    assert table.column("t")[0].as_py() == dt.datetime.fromtimestamp(1_700_000_000, UTC)


def test_read_frame_backends(tmp_path: Path) -> None:
    write_journal(tmp_path, SCHEMA, rows(0, 20))
    arrow = read_frame(tmp_path, SCHEMA)
    assert all(isinstance(d, pd.ArrowDtype) for d in arrow.dtypes)
    assert arrow["s"].isna().sum() == 4 and arrow["i"].sum() == sum(range(20))
    nullable = read_frame(tmp_path, SCHEMA, dtype_backend="numpy_nullable")
    assert str(nullable["i"].dtype) == "Int64" and str(nullable["b"].dtype) == "boolean"
    assert isinstance(nullable["s"].dtype, pd.StringDtype) and nullable["s"].isna().sum() == 4
    assert str(nullable["u"].dtype) == "UInt16"
    plain = read_frame(tmp_path, SCHEMA, dtype_backend="numpy")
    assert plain["i"].dtype == np.int64 and plain["b"].dtype == np.bool_ and plain["u"].dtype == np.uint16
    assert str(plain["t"].dtype) == "datetime64[ms, UTC]"
    assert plain["s"].isna().sum() == 4 and plain["s"][1] == "v1"
    with pytest.raises(ValueError, match="dtype_backend"):
        read_frame(tmp_path, SCHEMA, dtype_backend="polars")  # type: ignore[arg-type]
    indexed = read_frame(tmp_path, SCHEMA, columns=["s"], metadata=("index", "seq"))
    assert list(indexed.columns) == ["_index", "_seq", "s"]


class Clock:
    def __init__(self, when: dt.datetime) -> None:
        self.ms = int(when.timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms


def _collect(it: Any, want: int, timeout: float) -> list[pa.RecordBatch]:
    """Consume a follow iterator in a thread until ``want`` rows arrived (it never ends by itself)."""
    got: list[pa.RecordBatch] = []
    done = threading.Event()

    def run() -> None:
        for batch in it:
            got.append(batch)
            if sum(b.num_rows for b in got) >= want:
                break
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert done.wait(timeout), f"only {sum(b.num_rows for b in got)} of {want} rows arrived"
    return got


def test_follow_a_writer_thread_across_cycles(tmp_path: Path) -> None:
    """The reader starts on an empty folder; a writer then fills three HOURS cycles (one hour skipped)."""
    cfg = VanillaConfig(cycle="HOURS")
    clock = Clock(dt.datetime(2024, 5, 1, 23, 30, tzinfo=UTC))
    stats = ReadStats()
    it = iter_batches(tmp_path, SCHEMA, follow=True, poll_interval=0.002, config=cfg, metadata=("cycle", "seq"),
                      batch_rows=16, stats=stats)
    started = threading.Event()

    def write() -> None:
        with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
            app = writer.get_appender()
            started.set()
            for k in range(150):
                if k in (50, 100):
                    clock.ms += 3_600_000 * (1 if k == 50 else 2)
                write_rows(app, SCHEMA, rows(k, k + 1))
                if k % 10 == 0:
                    time.sleep(0.003)

    w = threading.Thread(target=write)
    w.start()
    got = _collect(it, 150, timeout=60)
    w.join()
    table = pa.Table.from_batches(got)
    assert table.column("i").to_pylist() == list(range(150))
    assert table.column("s").to_pylist() == [r[2] for r in rows(0, 150)]
    cycles = table.column("_cycle").to_pylist()
    first = cycles[0]
    assert cycles == [first] * 50 + [first + 1] * 50 + [first + 3] * 50
    assert table.column("_seq").to_pylist() == list(range(50)) * 3
    assert all(b.num_rows <= 16 for b in got)
    assert stats.cycles == 3
    it.close()


def test_follow_stops_at_the_end_bound(tmp_path: Path) -> None:
    write_journal(tmp_path, SCHEMA, rows(0, 5))
    first = read_table(tmp_path, SCHEMA, index=True).column("_index")[0].as_py()
    it = iter_batches(tmp_path, SCHEMA, follow=True, poll_interval=0.002, end=first + 12)
    # the writer starts late, so the reader first waits at seq 5 inside the end bound's own cycle
    writer = threading.Thread(target=lambda: (time.sleep(0.1), write_journal(tmp_path, SCHEMA, rows(5, 30))))
    writer.start()
    got = _collect(it, 10**9, timeout=30)  # ends by itself at the bound
    writer.join()
    assert pa.Table.from_batches(got).column("i").to_pylist() == list(range(12))


def test_follow_a_writer_process(tmp_path: Path) -> None:
    """Another process appends (its own data file) while this one follows."""
    write_journal(tmp_path, "i:int64,s:string", [[k, f"p{k}"] for k in range(10)])
    script = textwrap.dedent(
        f"""
        import time
        from pychro import VanillaChronicleWriter
        with VanillaChronicleWriter({str(tmp_path)!r}) as w:
            a = w.get_appender()
            for k in range(10, 400):
                a.write_long(k)
                a.write_string("p%d" % k)
                a.finish()
                if k % 50 == 0:
                    time.sleep(0.01)
        """
    )
    it = iter_batches(tmp_path, "i:int64,s:string", follow=True, poll_interval=0.002)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        got = _collect(it, 400, timeout=60)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed: do not leave the writer running
            proc.kill()
            proc.wait(timeout=30)
    table = pa.Table.from_batches(got)
    assert table.column("i").to_pylist() == list(range(400))
    assert table.column("s").to_pylist() == [f"p{k}" for k in range(400)]
    assert proc.returncode == 0


def _consume(it: Any, stop: threading.Event) -> tuple[Any, threading.Thread]:
    """Feed a follow iterator's batches into a queue from a daemon thread (ends at the batch after ``stop``)."""
    import queue

    out: queue.SimpleQueue[pa.RecordBatch] = queue.SimpleQueue()

    def run() -> None:
        for batch in it:
            if stop.is_set():
                break
            out.put(batch)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return out, t


def _take(out: Any, want: int, timeout: float = 20.0) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        batch = out.get(timeout=max(0.0, deadline - time.monotonic()))
        got.extend(batch.column("_index").to_pylist())
    return got


def test_follow_delivers_a_late_commit_into_the_cycle_it_left(tmp_path: Path) -> None:
    # A writer begins a message in cycle C; the follower moves on to C+1 (another writer filled it); only
    # then is the message committed, into C (vanilla-format.md §6). It is delivered, after C+1's messages.
    cfg = VanillaConfig(cycle="HOURS")
    clock = Clock(dt.datetime(2024, 5, 1, 9, 59, tzinfo=UTC))
    schema = "i:int64"
    it = iter_batches(tmp_path, schema, follow=True, poll_interval=0.002, config=cfg, metadata=("index",))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as slow, \
            VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as fast:
        app = fast.get_appender()
        for k in range(3):
            app.write_long(k)
            app.finish()
        late = slow.get_appender()
        late.start_excerpt()
        late.write_long(99)
        stop = threading.Event()
        out, consumer = _consume(it, stop)
        first = _take(out, 3)
        clock.ms += 3_600_000
        for k in range(3, 5):
            app.write_long(k)
            app.finish()
        second = _take(out, 2)
        assert cfg.split_index(second[0])[0] == cfg.split_index(first[0])[0] + 1  # the follower moved on
        late_index = late.finish()
        assert late_index == first[-1] + 1  # committed into the cycle it began in
        assert _take(out, 1) == [late_index]
        app.write_long(5)
        app.finish()
        assert _take(out, 1) == [second[-1] + 1]
        stop.set()
        app.write_long(6)
        app.finish()
        consumer.join(20)
    assert not consumer.is_alive()


def test_read_table_cuts_its_rows_into_alike_batches_for_its_threads(tmp_path: Path, monkeypatch: Any) -> None:
    """Without batch_rows, read_table cuts each cycle's rows into batches of one size whose number is a multiple of
    its threads (the last short batch of a fixed size left a thread idle); batch_rows= is taken as given."""
    from pychro.frames import api

    monkeypatch.setattr(api, "READ_TABLE_BATCH_ROWS", 128)
    monkeypatch.setattr(api, "EVEN_MIN_ROWS", 16)
    write_journal(tmp_path, SCHEMA, rows(0, 1000))
    want = read_table(tmp_path, SCHEMA, batch_rows=1000, threads=1)

    def chunks(**kw: Any) -> list[int]:
        table = read_table(tmp_path, SCHEMA, **kw)
        assert table.equals(want)
        return [len(c) for c in table.column("i").chunks]

    assert chunks(threads=2) == [125] * 8  # 1000 / 128 = 7.8 batches: 8, of 125 rows
    assert chunks(threads=3) == [112] * 8 + [104]  # 7.8 batches: 9, a multiple of 3
    assert chunks(threads=1) == [128] * 7 + [104]  # one thread: nothing to balance
    assert chunks(threads=2, batch_rows=128) == [128] * 7 + [104]  # as asked
    first = read_table(tmp_path, SCHEMA, index=True, end=None).column("_index")[0].as_py()

    def cut(end: int, **kw: Any) -> list[int]:
        table = read_table(tmp_path, SCHEMA, start=first, end=first + end, **kw)
        assert table.equals(want.slice(0, end))
        return [len(c) for c in table.column("i").chunks]

    assert cut(30, threads=2) == [30]  # below 2 x EVEN_MIN_ROWS: one batch, by the caller
    assert cut(40, threads=2) == [20, 20]
    assert cut(300, threads=2) == [150, 150]  # 2.3 batches: 2
    # more threads than batches of EVEN_MIN_ROWS: as many such batches as fit (not one batch for the caller alone)
    assert cut(300, threads=64) == [17] * 17 + [11]


def test_small_batches_are_decoded_by_the_caller(tmp_path: Path, monkeypatch: Any) -> None:
    """A batch of fewer than EVEN_MIN_ROWS rows costs more handed to a decoding thread than it takes to decode: it
    is decoded in the caller's thread, in its turn; bigger ones are handed to the threads."""
    from pychro.frames import api

    monkeypatch.setattr(api, "EVEN_MIN_ROWS", 200)
    write_journal(tmp_path, SCHEMA, rows(0, 1000))
    seen: list[tuple[int, bool]] = []
    submitted: list[int] = []
    real, real_submit = api.decode_batch, api._submit

    def decode_batch(plan: Any, files: Any, seq0: int, entries: Any, *args: Any, **kw: Any) -> Any:
        seen.append((int(entries.size), threading.current_thread() is threading.main_thread()))
        return real(plan, files, seq0, entries, *args, **kw)

    def submit(pool: Any, threads: int, run: Any, task: Any) -> Any:
        submitted.append(task[2])
        return real_submit(pool, threads, run, task)

    monkeypatch.setattr(api, "decode_batch", decode_batch)
    monkeypatch.setattr(api, "_submit", submit)
    want = read_table(tmp_path, SCHEMA, threads=1)
    seen.clear()
    got = pa.Table.from_batches(list(iter_batches(tmp_path, SCHEMA, batch_rows=150, threads=2)))
    assert got.equals(want) and seen and all(here for _, here in seen) and not submitted
    got = pa.Table.from_batches(list(iter_batches(tmp_path, SCHEMA, batch_rows=250, threads=2)))
    assert got.equals(want) and submitted == [250] * 4


def test_a_batch_no_thread_has_begun_is_decoded_by_the_caller(tmp_path: Path, monkeypatch: Any) -> None:
    """The caller does not wait for a batch that waits for a thread: it decodes it (a read of 2 batches on 2 threads
    took 1.3x the time when a thread was slow to wake). Here both decoding threads are held busy: every batch is
    decoded in the caller, and the read ends without them."""
    from pychro.frames import api

    monkeypatch.setattr(api, "EVEN_MIN_ROWS", 200)
    write_journal(tmp_path, SCHEMA, rows(0, 1000))
    want = read_table(tmp_path, SCHEMA, threads=1)
    seen: list[bool] = []
    real = api.decode_batch

    def decode_batch(*args: Any, **kw: Any) -> Any:
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kw)

    monkeypatch.setattr(api, "decode_batch", decode_batch)
    pool, release, busy = api._pool(2), threading.Event(), threading.Barrier(3)

    def hold() -> None:
        busy.wait(timeout=30)
        release.wait(timeout=30)

    holders = [pool.submit(hold) for _ in range(2)]
    try:
        busy.wait(timeout=30)  # both threads are in hold()
        got = read_table(tmp_path, SCHEMA, threads=2, batch_rows=250)
        assert got.equals(want) and seen == [True] * 4
    finally:
        release.set()
        for h in holders:
            h.result(timeout=30)


def _too_big_past_40_rows(decode: Any) -> Any:
    """``decode`` (its 4th argument the batch's entries), raising TextTooBig for batches of more than 40 rows: Arrow's
    2 GiB of text in one column, stood in for."""
    from pychro.frames import batch

    def small(*args: Any, **kw: Any) -> Any:
        if args[3].size > 40:
            raise batch.TextTooBig("the text of column 's' in one batch passes 2 GiB")
        return decode(*args, **kw)

    return small


@pytest.mark.parametrize("errors", ["raise", "truncate"])
def test_a_batch_whose_text_passes_arrows_offsets_is_read_in_halves(tmp_path: Path, monkeypatch: Any,
                                                                    errors: str) -> None:
    """A column's text in one batch must stay below 2 GiB (Arrow's 32-bit offsets): with read_table's batches of
    524 288 rows, 4 KB of text per row passed it and the read failed (found by a helper; 2.2 GB of journal). The
    batch is now decoded in halves, in turn; the limit is stood in for here by a batch of more than 40 rows."""
    from pychro.frames import api, batch

    write_journal(tmp_path, SCHEMA, rows(0, 300))
    want = read_table(tmp_path, SCHEMA, threads=1)
    monkeypatch.setattr(api, "decode_batch", _too_big_past_40_rows(batch.decode_batch))
    stats = ReadStats()
    table = read_table(tmp_path, SCHEMA, threads=2, batch_rows=300, errors=errors, stats=stats, index=True)
    assert table.drop(["_index"]).equals(want) and stats.rows == 300
    assert table.column("_index").to_pylist() == read_table(tmp_path, SCHEMA, index=True).column("_index").to_pylist()
    assert max(len(c) for c in table.column("i").chunks) <= 40


def test_message_types_whose_text_passes_arrows_offsets_are_read_in_halves(tmp_path: Path, monkeypatch: Any) -> None:
    """As for read_table: read_tables' batches are pychro's choice, so text past 2 GiB in one is decoded in halves
    (it failed with TextTooBig; found by a helper with 131 072 rows of 17 KB). The limit is stood in for here."""
    from pychro import MessageTypes, read_tables, write_frames
    from pychro.frames import typed

    types = MessageTypes(header="t:int8", tag="t", types={1: ("a", "k:int64,s:string"), 2: ("b", "x:float64")})
    k = np.arange(300, dtype=np.int64)
    write_frames({"a": {"k": k, "s": [f"s{v}" for v in k]}, "b": {"x": np.arange(100, dtype=np.float64)}},
                 tmp_path / "j", types)
    want = read_tables(tmp_path / "j", types, threads=1)
    monkeypatch.setattr(typed, "_decode", _too_big_past_40_rows(typed._decode))
    stats = ReadStats()
    got = read_tables(tmp_path / "j", types, threads=2, batch_rows=400, stats=stats)
    assert got["a"].equals(want["a"]) and got["b"].equals(want["b"]) and stats.rows == 400
    assert max(len(c) for c in got["a"].column("k").chunks) <= 40


def test_text_buffers_start_no_bigger_than_the_first_guess_or_2_gib(tmp_path: Path, monkeypatch: Any) -> None:
    """A read's first batch sizes its text buffers from its first 2 048 rows, but only ever smaller than the first
    guess (long text there and short text after made one read reserve 65 GB: found by a helper); and no guess
    reserves more than a column can hold (2**31 - 1 bytes)."""
    from pychro.frames import decode

    n = 20_000
    s = ["x" * 3000 if i < 2048 else "y" for i in range(n)]
    write_journal(tmp_path, "i:int32,s:string", [[i, s[i]] for i in range(n)])
    sizes: list[int] = []
    real = decode.Run.__init__

    def note(self: Any, plan: Any, rows: int) -> None:
        real(self, plan, rows)
        sizes.append(self.outs[1][1].size)

    monkeypatch.setattr(decode.Run, "__init__", note)
    table = read_table(tmp_path, "i:int32,s:string", threads=1)
    assert table.column("s").to_pylist() == s
    assert max(sizes) <= int(n * 24 * 1.25) + 256
    assert decode._MAX_OFFSET == (1 << 31) - 1
    monkeypatch.setattr(decode, "_MAX_OFFSET", 1000)  # (not a 2 GiB buffer in a test)
    plan = decode.Plan(Schema("i:int32,s:string"))
    plan.text_bytes[1] = 1e9
    assert decode.Run(plan, 100_000).outs[1][1].size == 1000
