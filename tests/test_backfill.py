"""write_frame: byte identity with the row writer, round trips, validation, cycles, concurrency."""

from __future__ import annotations

import datetime as dt
import filecmp
import math
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pychro
from pychro.frames import bulk
from pychro.frames.backfill import _by_cycle, write_frame

DAY = dt.date(2024, 1, 2)
DAY_MS = 1_704_153_600_000
MIXED = (
    "ts:int64,px:float64,qty:int32,side:bool,sym:string,c:char,u:utf,sb:stopbit,pad:skip3,f:float32,b:int8,"
    "us:uint16"
)


def mixed_table(n: int) -> pa.Table:
    i = np.arange(n, dtype=np.int64)
    syms = np.array(["EURUSD", "", "é€中", "emoji-\U0001F600", "x" * 200, "nul\x00in"], dtype=object)
    sym = pa.array([None if k % 7 == 3 else syms[k % len(syms)] for k in range(n)])
    return pa.table(
        {
            "ts": DAY_MS + i,
            "px": np.where(i % 5 == 0, np.nan, i / 3),
            "qty": (i * 7919 % 100000 - 50000).astype(np.int32),
            "side": i % 3 == 0,
            "sym": sym,
            "c": pa.array([chr(x) for x in np.array([65, 0xE9, 0x20AC, 0x4E2D, 0xFFFF, 0x7F])[i % 6]]),
            "u": pa.array([f"u{k}" for k in range(n)]),
            "sb": np.array([0, -1, 127, 128, -(2**63), 2**63 - 1, -5, 1 << 40])[i % 8],
            "f": (i / 7).astype(np.float32),
            "b": (i % 256 - 128).astype(np.int8),
            "us": (i % 65536).astype(np.uint16),
        }
    )


def row_write(table: pa.Table, path: Path) -> None:
    cols = table.to_pydict()
    with pychro.VanillaChronicleWriter(path, clock=lambda: DAY_MS) as chron:
        a = chron.get_appender()
        for k in range(table.num_rows):
            a.write_long(cols["ts"][k])
            a.write_double(cols["px"][k])
            a.write_int(cols["qty"][k])
            a.write_boolean(cols["side"][k])
            a.write_string(cols["sym"][k])
            a.write_char(cols["c"][k])
            a.write_utf(cols["u"][k])
            a.write_stop_bit(cols["sb"][k])
            a.write_bytes(b"\x00\x00\x00")
            a.write_float(cols["f"][k])
            a.write_byte(cols["b"][k])
            a.write_unsigned_short(cols["us"][k])
            a.finish()


def test_byte_identical_to_row_writer(tmp_path: Path) -> None:
    table = mixed_table(3000)
    row_write(table, tmp_path / "row")
    indices = write_frame(table, tmp_path / "bulk", MIXED, date=DAY)
    a, b = tmp_path / "row" / "20240102", tmp_path / "bulk" / "20240102"
    data_files = [n for n in os.listdir(a) if n.startswith("data-")]  # data-<tid>-0: the tid varies per run
    assert len(data_files) == 1 and data_files[0].endswith("-0")
    assert sorted(os.listdir(a)) == sorted(os.listdir(b)) == [data_files[0], "index-0"]
    for name in os.listdir(a):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    assert list(indices) == [(19724 << 40) + k for k in range(3000)]


def test_byte_identical_across_data_file_rolls_and_index_files(tmp_path: Path) -> None:
    cfg = pychro.VanillaConfig(index_block_size=256, data_block_size=4096, message_capacity=512)
    table = mixed_table(400)
    cols = table.to_pydict()
    with pychro.VanillaChronicleWriter(tmp_path / "row", config=cfg, clock=lambda: DAY_MS) as chron:
        a = chron.get_appender()
        for k in range(table.num_rows):
            a.write_long(cols["ts"][k])
            a.write_string(cols["sym"][k])
            a.finish()
    write_frame(table, tmp_path / "bulk", "ts:int64,sym:string", date=DAY, config=cfg)
    a, b = tmp_path / "row" / "20240102", tmp_path / "bulk" / "20240102"
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    assert sum(n.startswith("index-") for n in names) > 3 and sum(n.startswith("data-") for n in names) > 3
    for name in names:
        assert filecmp.cmp(a / name, b / name, shallow=False), name


def test_commit_many_into_its_own_entries_across_index_files(tmp_path: Path) -> None:
    """The bulk path commits a run's entries in place (into= the same memory): each entry is read before its
    index is written over it, also where the batch continues in the next index file."""
    from pychro._commit import Committer
    from pychro.journal import Journal

    cfg = pychro.VanillaConfig(index_block_size=256, data_block_size=4096, message_capacity=512)
    cycle = cfg.cycle_of(DAY)
    entries = np.arange(1, 200, dtype=np.uint64) * np.uint64(8) + np.uint64(4)
    got = []
    for name, in_place in (("copy", False), ("in-place", True)):
        committer = Committer(Journal(tmp_path / name, cfg, must_exist=False))
        try:
            mine = entries.copy()
            result = committer.commit_many(cycle, mine, into=mine.view(np.int64) if in_place else None)
            if in_place:
                assert result is not None and np.shares_memory(result, mine)
            got.append(np.array(result))
        finally:
            committer.close()
    assert got[0].tolist() == got[1].tolist() == [(cycle << 40) + k for k in range(len(entries))]
    a, b = (sorted((tmp_path / n).rglob("index-*")) for n in ("copy", "in-place"))
    assert len(a) == len(b) > 3 and all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))
    committer = Committer(Journal(tmp_path / "wrong", cfg, must_exist=False))
    try:
        with pytest.raises(ValueError, match="into"):
            committer.commit_many(cycle, entries, into=np.empty(3, np.int64))
    finally:
        committer.close()


def test_round_trip_through_read_frame_and_row_reader(tmp_path: Path) -> None:
    table = mixed_table(500)
    write_frame(table, tmp_path, MIXED, date=DAY)
    back = pychro.read_table(tmp_path, MIXED)
    for name in table.column_names:
        expected = table.column(name).to_pylist()
        got = back.column(name).to_pylist()
        if name in ("px", "f"):
            assert all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(got, expected))
        else:
            assert got == expected, name
    reader = pychro.VanillaChronicleReader(tmp_path)
    first = reader.next_reader()
    assert first.read_long() == DAY_MS and math.isnan(first.read_double())


def test_pandas_input_timestamps_and_multi_day_cycles(tmp_path: Path) -> None:
    ts = pd.to_datetime(["2024-01-01 23:59:59.999", "2024-01-02 00:00:00.000", "2024-01-04 12:00:00.000"], utc=True)
    df = pd.DataFrame({"ts": ts, "v": [1, 2, 3]})
    indices = write_frame(df, tmp_path, "ts:timestamp_ms,v:int32")
    assert sorted(os.listdir(tmp_path)) == ["20240101", "20240102", "20240104"]
    assert [int(i) >> 40 for i in indices] == [19723, 19724, 19726]
    back = pychro.read_frame(tmp_path, "ts:timestamp_ms,v:int32", dtype_backend="numpy")
    assert list(back["v"]) == [1, 2, 3]
    assert list(back["ts"]) == list(ts)


@pytest.mark.parametrize("threads", [1, 2])
def test_unsorted_multi_day_frame_with_strings_lands_in_row_order_per_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """Rows of three days shuffled together, in runs of 50: each cycle holds its rows in frame order, each
    whole, and the returned indices say where each row went."""
    monkeypatch.setattr(bulk, "RUN_ROWS", 50)
    rng = np.random.default_rng(3)
    n = 1000
    day = rng.integers(0, 3, n)
    ts = DAY_MS + day * 86_400_000 + np.arange(n)
    text = pa.array([None if k % 11 == 0 else "r" * (k % 13) + str(k) for k in range(n)])
    table = pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "k": np.arange(n), "s": text})
    schema = "ts:timestamp_ms,k:int64,s:string"
    indices = write_frame(table, tmp_path, schema, threads=threads)
    assert sorted(os.listdir(tmp_path)) == ["20240102", "20240103", "20240104"]
    back = pychro.read_table(tmp_path, schema, index=True)
    k = back.column("k").to_numpy()
    assert sorted(k) == list(range(n))
    for d in range(3):
        mine = k[(back.column("_index").to_numpy() >> 40) == 19724 + d]
        assert list(mine) == list(np.flatnonzero(day == d))  # frame order within the cycle
    by_k = dict(zip(k, back.column("_index").to_numpy()))
    assert [by_k[i] for i in range(n)] == list(indices)
    assert back.column("s").to_pylist() == [text[int(i)].as_py() for i in k]


@given(st.lists(st.integers(0, 4), max_size=40), st.booleans())
def test_rows_by_cycle_ascending_each_in_row_order(cycles: list[int], in_order: bool) -> None:
    """Runs of rows in time order, a stable sort otherwise: the same (cycle, rows) pairs as a filter per cycle."""
    c = np.array(sorted(cycles) if in_order else cycles, dtype=np.int64)
    got = [(cycle, list(rows)) for cycle, rows in _by_cycle(c, len(c))]
    assert got == [(int(k), list(np.flatnonzero(c == k))) for k in np.unique(c)]
    assert [(k, list(r)) for k, r in _by_cycle(np.array([7]), 3)] == [(7, [0, 1, 2])]  # one cycle for all rows


def test_hourly_config_and_timestamp_units(tmp_path: Path) -> None:
    cfg = pychro.VanillaConfig(cycle="HOURS")
    ts = pd.to_datetime(["2024-01-02 09:30:00.000000", "2024-01-02 10:15:00.000001"], utc=True)
    write_frame(pd.DataFrame({"ts": ts}), tmp_path, "ts:timestamp_us", config=cfg)
    assert sorted(os.listdir(tmp_path)) == ["2024010209", "2024010210"]
    back = pychro.read_table(tmp_path, "ts:timestamp_us", config=cfg)
    assert back.column("ts").to_pylist() == list(ts.to_pydatetime())


@pytest.mark.parametrize(
    "data,schema,message",
    [
        ({"a": [1, 300]}, "a:int8", "row 1"),
        ({"a": [1, -1]}, "a:uint16", "row 1"),
        ({"a": [1.5]}, "a:int32", "row 0"),
        ({"a": pa.array([1, None])}, "a:int64", "row 1"),
        ({"a": ["x", None]}, "a:utf", "row 1"),
        ({"a": ["ab"]}, "a:char", "row 0"),
        ({"a": ["\U0001F600"]}, "a:char", "row 0"),
        ({"a": [1]}, "a:string", "strings"),
        ({"a": ["x" * 200_000]}, "a:string", "message capacity"),
        ({"b": [1]}, "a:int32", "no column 'a'"),
    ],
)
def test_rows_that_do_not_fit_are_rejected_before_anything_is_written(
    tmp_path: Path, data: dict, schema: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_frame(pa.table(data), tmp_path / "j", schema, date=DAY)
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").rglob("index-*"))


def test_returns_indices_after_existing_messages(tmp_path: Path) -> None:
    with pychro.VanillaChronicleWriter(tmp_path, clock=lambda: DAY_MS) as chron:
        a = chron.get_appender()
        a.write_int(-1)
        a.finish()
    indices = write_frame({"v": np.arange(5, dtype=np.int32)}, tmp_path, "v:int32", date=DAY)
    assert [int(i) & 0xFFFF for i in indices] == [1, 2, 3, 4, 5]
    assert pychro.read_table(tmp_path, "v:int32").column("v").to_pylist() == [-1, 0, 1, 2, 3, 4]
    assert sorted(os.listdir(tmp_path / "20240102"))[:2] == sorted(
        n for n in os.listdir(tmp_path / "20240102") if n.startswith("data-")
    )  # two data files: the row writer's and the backfill's own (max+1)


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=True, allow_infinity=True),
            st.one_of(st.none(), text),
            st.integers(-(2**31), 2**31 - 1),
            st.booleans(),
            st.integers(-(2**63), 2**63 - 1),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_hypothesis_round_trip(tmp_path_factory: pytest.TempPathFactory, rows: list) -> None:
    path = tmp_path_factory.mktemp("hyp")
    cols = list(zip(*rows))
    table = pa.table(
        {"l": pa.array(cols[0], pa.int64()), "d": pa.array(cols[1], pa.float64()), "s": pa.array(cols[2], pa.string()),
         "i": pa.array(cols[3], pa.int32()), "b": pa.array(cols[4]), "sb": pa.array(cols[5], pa.int64())}
    )
    schema = "l:int64,d:float64,s:string,i:int32,b:bool,sb:stopbit"
    write_frame(table, path, schema, date=DAY)
    back = pychro.read_table(path, schema)
    for name in ("l", "s", "i", "b", "sb"):
        assert back.column(name).to_pylist() == table.column(name).to_pylist()
    got, exp = back.column("d").to_pylist(), table.column("d").to_pylist()
    assert all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(got, exp))
    # and the row API reads the same bytes
    reader = pychro.VanillaChronicleReader(path)
    for k, e in enumerate(reader):
        assert e.read_long() == cols[0][k]
        e.read_double()
        assert e.read_string() == cols[2][k]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_write_failing_midway_leaves_the_committed_prefix_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """The run of rows 300-399 fails to reach its data file (disk full): the 3 runs before it are committed
    and readable, nothing after it is committed, whatever thread wrote which run, and no descriptor leaks."""
    monkeypatch.setattr(bulk, "RUN_ROWS", 100)
    real = bulk._pwrite_all

    def disk_full_at_row_300(fd: int, data: np.ndarray, offset: int) -> None:
        if b"\x04\x00u300" in data.tobytes():  # row 300's utf field (uint16 length, text): in the 4th run
            raise OSError(28, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(bulk, "_pwrite_all", disk_full_at_row_300)
    table = mixed_table(1000)
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="No space left"):
        write_frame(table, tmp_path, MIXED, date=DAY, threads=threads)
    assert len(os.listdir("/proc/self/fd")) == fds_before
    back = pychro.read_table(tmp_path, MIXED)
    assert back.num_rows == 300
    assert back.column("u").to_pylist() == table.column("u").to_pylist()[:300]
    from pychro.verify import verify_journal

    assert verify_journal(tmp_path).ok


def _row_appender(path: str, wid: int, n: int, barrier: mp.synchronize.Barrier) -> None:
    barrier.wait()
    with pychro.VanillaChronicleWriter(path, clock=lambda: DAY_MS) as chron:
        a = chron.get_appender()
        for k in range(n):
            a.write_int(wid)
            a.write_int(k)
            a.finish()


@pytest.mark.slow
def _reap(procs: list[Any]) -> None:
    """Kill the child processes a failed test left running."""
    for p in procs:
        if p.is_alive():
            p.kill()
        if p.pid is not None:
            p.join(30)


def test_write_frame_while_two_processes_append(tmp_path: Path) -> None:
    n_bulk, n_row = 300_000, 20_000
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_row_appender, args=(str(tmp_path), w, n_row, barrier)) for w in (1, 2)]
    try:
        for p in procs:
            p.start()
        table = pa.table({"w": np.zeros(n_bulk, dtype=np.int32), "k": np.arange(n_bulk, dtype=np.int32)})
        barrier.wait(60)
        indices = write_frame(table, tmp_path, "w:int32,k:int32", date=DAY)
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    finally:
        _reap(procs)
    back = pychro.read_table(tmp_path, "w:int32,k:int32", index=True)
    assert back.num_rows == n_bulk + 2 * n_row
    w = back.column("w").to_numpy()
    k = back.column("k").to_numpy()
    for wid, n in ((0, n_bulk), (1, n_row), (2, n_row)):
        assert (k[w == wid] == np.arange(n)).all()  # each row once, in order, no gaps
    idx = back.column("_index").to_numpy()
    assert (idx[w == 0] == indices).all()
    assert pychro.open(tmp_path).count(19724) == len(back)


def _bulk_writer(path: str, n: int, started: mp.synchronize.Event) -> None:
    bulk.RUN_ROWS = 4096  # many runs per call, committed one after the other
    k = np.arange(n, dtype=np.int64)
    table = pa.table({"k": k, "s": pa.array([f"row-{i}" * (1 + i % 3) for i in range(n)]), "neg": -k})
    started.set()
    step = n // 20
    for lo in range(0, n, step):  # 20 calls, spread out so that readers overlap them
        write_frame(table.slice(lo, step), path, "k:int64,s:string,neg:int64", date=DAY, threads=2)
        time.sleep(0.01)


@pytest.mark.slow
def test_readers_see_bulk_rows_whole_while_they_are_written(tmp_path: Path) -> None:
    """A row reader and read_table, polling while write_frame (2 threads) writes 400 k rows in another
    process, only ever see whole rows, in order, and a prefix of the frame."""
    n = 400_000
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    proc = ctx.Process(target=_bulk_writer, args=(str(tmp_path), n, started))
    try:
        proc.start()
        assert started.wait(60)
        deadline = time.monotonic() + 60
        while not (tmp_path / "20240102" / "index-0").exists():
            assert (proc.is_alive() or proc.exitcode == 0) and time.monotonic() < deadline
            time.sleep(0.001)
        polls = []

        def poll_frames() -> None:
            assert proc.is_alive() or proc.exitcode == 0
            table = pychro.read_table(tmp_path, "k:int64,s:string,neg:int64")
            k = table.column("k").to_numpy()
            assert (k == np.arange(len(k))).all() and (table.column("neg").to_numpy() == -k).all()
            assert table.column("s").to_pylist()[-3:] == [f"row-{i}" * (1 + i % 3) for i in k[-3:]]
            polls.append(len(k))

        with pychro.VanillaChronicleReader(tmp_path) as reader:
            got, polled_at = 0, -1
            while got < n:
                if got % 10_000 == 5_000 and polled_at != got:
                    poll_frames()  # the frames reader too, now and then
                    polled_at = got
                try:
                    e = reader.next_reader()
                except pychro.NoData:
                    poll_frames()
                    continue
                k = e.read_long()
                assert k == got and e.read_string() == f"row-{k}" * (1 + k % 3) and e.read_long() == -k
                got += 1
        proc.join(60)
        assert proc.exitcode == 0
    finally:
        _reap([proc])
    assert got == n
    partial = sum(0 < p < n for p in polls)
    print(f"\n[backfill] row reader read {n:,} rows as written; {partial} read_table polls saw a partial journal")


# -- byte identity over random schemas: every field type, in any order, across chunk and data-file boundaries
_WORDS = ["", "a", "EURUSD", "é€中", "emoji-\U0001F600", "x" * 9, "y" * 70, "nul\x00in", "1234567"]
_FIELDS = {  # type -> (row-writer call, value for row k)
    "int8": ("write_byte", lambda k: k % 256 - 128),
    "int16": ("write_short", lambda k: (k * 977) % 65536 - 32768),
    "int32": ("write_int", lambda k: (k * 7919) % 100_000 - 50_000),
    "int64": ("write_long", lambda k: k * 10**12 - 5),
    "uint8": ("write_unsigned_byte", lambda k: k % 256),
    "uint16": ("write_unsigned_short", lambda k: k % 65536),
    "uint32": ("write_unsigned_int", lambda k: k * 65537 % 2**32),
    "float32": ("write_float", lambda k: k / 8),
    "float64": ("write_double", lambda k: k / 3),
    "bool": ("write_boolean", lambda k: k % 3 == 0),
    "char": ("write_char", lambda k: "Aé€中\uffff"[k % 5]),
    "string": ("write_string", lambda k: None if k % 5 == 2 else _WORDS[k * 7 % len(_WORDS)]),
    "utf": ("write_utf", lambda k: _WORDS[k * 5 % len(_WORDS)]),
    "stopbit": ("write_stop_bit", lambda k: [0, -1, 127, 128, 1 << 40, -(2**63), 5][k % 7]),
    "skip5": ("write_bytes", lambda k: b"\x00" * 5),
    "skip12": ("write_bytes", lambda k: b"\x00" * 12),
}
_ARROW = {"int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "uint8": pa.uint8(),
          "uint16": pa.uint16(), "uint32": pa.uint32(), "float32": pa.float32(), "float64": pa.float64(),
          "bool": pa.bool_(), "char": pa.string(), "string": pa.string(), "utf": pa.string(), "stopbit": pa.int64()}


@settings(max_examples=60, deadline=None)
@given(
    types=st.lists(st.sampled_from(sorted(_FIELDS)), min_size=1, max_size=7),
    n=st.integers(1, 120),
    offset=st.integers(0, 1000),
    chunk=st.sampled_from([1, 2, 7, 64]),
    run_bytes=st.sampled_from([1, 200, 16 << 20]),
    small_blocks=st.booleans(),
    threads=st.sampled_from([1, 2, 3]),
)
def test_hypothesis_byte_identical_to_row_writer(
    tmp_path_factory: pytest.TempPathFactory, types: list[str], n: int, offset: int, chunk: int, run_bytes: int,
    small_blocks: bool, threads: int,
) -> None:
    """Any field order (variable fields first, last, adjacent, long or empty), runs ended by row count or
    bytes, data-file rolls, one or more threads laying out runs of messages."""
    assume(any(not t.startswith("skip") for t in types))  # a schema needs a column
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bulk, "RUN_ROWS", chunk)
        mp.setattr(bulk, "RUN_BYTES", run_bytes)
        _check_byte_identity(tmp_path_factory.mktemp("bytes"), types, n, offset, small_blocks, threads)


def _check_byte_identity(path: Path, types: list[str], n: int, offset: int, small_blocks: bool, threads: int) -> None:
    """Writes the rows with the row writer and with write_frame, and compares every file byte for byte."""
    # small files keep the byte comparison cheap; the smallest also roll data and index files
    if small_blocks:
        cfg = pychro.VanillaConfig(index_block_size=512, data_block_size=4096, message_capacity=512)
    else:
        cfg = pychro.VanillaConfig(index_block_size=1 << 16, data_block_size=1 << 20)
    names = [f"f{j}" for j in range(len(types))]
    rows = range(offset, offset + n)
    columns = {name: [_FIELDS[t][1](k) for k in rows] for name, t in zip(names, types)}
    with pychro.VanillaChronicleWriter(path / "row", config=cfg, clock=lambda: DAY_MS) as chron:
        a = chron.get_appender()
        for i in range(n):
            for name, t in zip(names, types):
                getattr(a, _FIELDS[t][0])(columns[name][i])
            a.finish()
    table = pa.table({name: pa.array(columns[name], _ARROW[t]) for name, t in zip(names, types) if t in _ARROW})
    schema = ",".join(f"{name}:{t}" for name, t in zip(names, types))
    indices = write_frame(table, path / "bulk", schema, date=DAY, config=cfg, threads=threads)
    assert list(indices) == [(19724 << 40) + k for k in range(n)]
    a_dir, b_dir = path / "row" / "20240102", path / "bulk" / "20240102"
    assert sorted(os.listdir(a_dir)) == sorted(os.listdir(b_dir))
    for name in os.listdir(a_dir):
        assert (a_dir / name).read_bytes() == (b_dir / name).read_bytes(), name


def test_pandas_nan_floats_categoricals_and_string_dtypes(tmp_path: Path) -> None:
    """What a pandas user has: NaN floats (null in Arrow), categorical and pyarrow-backed strings."""
    df = pd.DataFrame({
        "ts": pd.date_range("2024-01-02 09:30", periods=4, freq="s", tz="UTC"),
        "sym": pd.Categorical(["EURUSD", "GBPUSD", "EURUSD", None]),
        "venue": pd.array(["LDN", None, "NY4", "TY3"], dtype="string[pyarrow]"),
        "px": [1.5, np.nan, 2.5, np.nan],
        "f": np.array([0.5, np.nan, 1.0, 2.0], dtype=np.float32),
    })
    schema = "ts:timestamp_ms,sym:string,venue:string,px:float64,f:float32"
    write_frame(df, tmp_path, schema)
    back = pychro.read_frame(tmp_path, schema)
    assert back["sym"].tolist()[:3] == ["EURUSD", "GBPUSD", "EURUSD"] and pd.isna(back["sym"][3])
    assert back["venue"][0] == "LDN" and pd.isna(back["venue"][1])
    assert np.isnan(back["px"][1]) and np.isnan(back["px"][3]) and back["px"][2] == 2.5
    assert np.isnan(back["f"][1]) and back["f"][3] == 2.0
    reader = pychro.VanillaChronicleReader(tmp_path)
    e = reader.next_reader()
    e.read_long(), e.read_string(), e.read_string()
    e = reader.next_reader()  # row 1: the NaN that pandas handed over as a null is a Java NaN
    e.read_long(), e.read_string()
    assert e.read_string() is None and math.isnan(e.read_double())


def test_nulls_in_other_fields_are_rejected_with_the_row(tmp_path: Path) -> None:
    df = pd.DataFrame({"q": pd.array([1, None, 3], dtype="Int64")})
    with pytest.raises(ValueError, match="row 1: column 'q' is null"):
        write_frame(df, tmp_path, "q:int64", date=DAY)
    assert not os.path.exists(tmp_path / "20240102")


def test_a_frame_of_no_rows_writes_nothing_whatever_its_dtypes(tmp_path: Path) -> None:
    """pandas gives the columns of an empty frame float64 or object: with no value to convert, any dtype is
    fine, and nothing is written (no cycle); a missing column is still an error."""
    schema = "ts:timestamp_ns,sym:string,n:int32,levels:list<px:float64>"
    for frame in (pd.DataFrame(columns=["ts", "sym", "n", "levels"]),
                  pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "sym": [], "n": [], "levels": []})):
        assert len(write_frame(frame, tmp_path / "j", schema, date="2024-01-02")) == 0
    assert not (tmp_path / "j").exists() or pychro.Journal(tmp_path / "j").cycles() == []
    with pytest.raises(ValueError, match="no column 'levels'"):
        write_frame(pd.DataFrame(columns=["ts", "sym", "n"]), tmp_path / "j", schema, date="2024-01-02")
    with pytest.raises(ValueError, match="string fields take strings"):  # with rows, the dtype counts again
        write_frame(pd.DataFrame({"ts": [1], "sym": [1.5], "n": [1], "levels": [[]]}), tmp_path / "k", schema,
                    date="2024-01-02")
