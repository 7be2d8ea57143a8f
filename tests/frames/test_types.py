"""Message types: one pass over a journal of trades, quotes, books and heartbeats behind an int8 tag, against the
journal Java Chronicle 3.5.3 wrote (tests/data/java/README.md, the feed); and write_frames merging them back."""

from __future__ import annotations

import datetime as dt
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from helpers import walk_records, write_bodies

import pychro
from pychro import MessageTypes, SchemaMismatchError
from pychro.frames import ReadStats

T0 = 1709596800000000000  # the feed's ts of message k is T0 + k * 1000003
SYMS = ["AAPL", "Nestl\u00e9", "\u6771\u4eac\u96fb\u529b", "DAX\U0001F680", None]
TAGS = [1, 2, 2, 1, 3, 2, 1, 4, 2, 1]
FEED = MessageTypes(
    header="ts:timestamp_ns,type:int8",
    tag="type",
    types={
        1: ("trade", "sym:string,px:float64,qty:int32"),
        2: ("quote", "sym:string,bid:float64,ask:float64,bid_size:int32,ask_size:int32"),
        3: ("book", "sym:string,levels:list<px:float64,qty:int32>"),
        4: ("heartbeat", ""),
    },
)


def _k(ts: Any) -> int:
    return (ts.value - T0) // 1000003


def _expected(name: str, k: int) -> dict[str, Any]:
    """Message k's row of its type's table, from the fixture README's formulas."""
    if name == "trade":
        return {"sym": SYMS[k % 5], "px": k * 0.25, "qty": k % 977 - 10}
    if name == "quote":
        return {"sym": SYMS[(k + 1) % 5], "bid": k * 0.5, "ask": k * 0.5 + 0.125, "bid_size": k % 100,
                "ask_size": k % 50}
    if name == "book":
        return {"sym": f"BOOK-{k % 3}", "levels": [{"px": 100.0 + j, "qty": j * 10 + k % 7} for j in range(k % 6)]}
    return {}


def test_types_schema_and_json(tmp_path: Path) -> None:
    assert FEED.names == ["trade", "quote", "book", "heartbeat"]
    assert str(FEED.schema("trade")) == "ts:timestamp_ns,type:int8,sym:string,px:float64,qty:int32"
    assert FEED.columns("heartbeat") == ["ts"]
    assert MessageTypes.from_json(FEED.to_json()) == FEED
    (tmp_path / "types.json").write_text(FEED.to_json())
    assert MessageTypes.from_json(tmp_path / "types.json") == FEED
    assert MessageTypes.from_json(str(tmp_path / "types.json")) == FEED
    with pytest.raises(ValueError, match="cannot read message types"):
        MessageTypes.from_json(tmp_path / "missing.json")


@pytest.mark.parametrize("args, error, words", [
    (("ts:int64", "x", {1: ("a", "")}), ValueError, "not a header field"),
    (("t:float64", "t", {1: ("a", "")}), ValueError, "integer field"),
    (("t:int8", "t", {300: ("a", "")}), ValueError, "outside the range"),
    (("t:int8", "t", {"x": ("a", "")}), TypeError, "tag values are int"),
    (("t:string", "t", {1: ("a", "")}), TypeError, "tag values are str"),
    (("t:int8", "t", {1: ("a", ""), 2: ("a", "")}), ValueError, "is used for tags"),
    (("t:int8", "t", {1: ("class", "")}), ValueError, "identifier"),
    (("t:int8", "t", {1: ("a", "t:int16")}), ValueError, "also a header field"),
    (("t:int8", "t", {}), ValueError, "non-empty"),
    (("t:int8", "t", {1: ("a", "x:nope")}), ValueError, "type 'a': unknown field type"),
    (("t:int8", 3, {1: ("a", "")}), TypeError, "tag must be"),
])
def test_bad_types(args: tuple[Any, ...], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        MessageTypes(*args)


def test_java_feed_in_one_pass(java_feed: Any) -> None:
    """Every message of the Java feed lands in its type's table, in index order, with the values the README
    gives (k recovered from ts); non-BMP text (surrogate pairs) and null symbols included."""
    stats = ReadStats()
    tables = pychro.read_tables(java_feed.journal, FEED, index=True, stats=stats)
    assert list(tables) == FEED.names
    index_of = {d["index"]: d for d in java_feed.dump}
    assert sum(t.num_rows for t in tables.values()) == len(java_feed.dump) == 6000
    assert stats.rows == 6000 and stats.skipped_rows == 0 and stats.unknown_rows == 0
    for name, table in tables.items():
        tag = FEED.value(name)
        idx = table.column("_index").to_pylist()
        assert idx == [d["index"] for d in java_feed.dump if d["body"][8] == tag], name  # index order
        assert table.column_names == ["_index", *FEED.columns(name)]
        for row in table.to_pylist():
            k = _k(row.pop("ts"))
            assert TAGS[k % 10] == tag and row.pop("_index") in index_of
            assert row == _expected(name, k), (name, k)
    assert [t.num_rows for t in tables.values()] == [2400, 2400, 600, 600]
    assert stats.slow_path_strings == sum(1 for d in java_feed.dump if b"\xed\xa0" in d["body"])


def test_threads_batches_and_projection_agree(java_feed: Any) -> None:
    whole = pychro.read_tables(java_feed.journal, FEED)
    for kw in ({"threads": 1}, {"batch_rows": 97}, {"threads": 2, "batch_rows": 1000}):
        got = pychro.read_tables(java_feed.journal, FEED, **kw)
        assert all(got[n].equals(whole[n]) for n in FEED.names), kw
    part = pychro.read_tables(java_feed.journal, FEED, columns={"quote": ["ask", "sym"], "book": ["levels"]})
    assert part["quote"].equals(whole["quote"].select(["ask", "sym"]))
    assert part["book"].equals(whole["book"].select(["levels"]))
    assert part["trade"].equals(whole["trade"])
    with pytest.raises(ValueError, match="columns= names no message type 'fill'"):
        pychro.read_tables(java_feed.journal, FEED, columns={"fill": ["px"]})
    with pytest.raises(ValueError, match=r"columns\['quote'\]: unknown columns \['px'\]"):
        pychro.read_tables(java_feed.journal, FEED, columns={"quote": ["px"]})
    with pytest.raises(TypeError, match="dict"):
        pychro.read_tables(java_feed.journal, FEED, columns=["px"])


def test_unknown_tags(java_feed: Any) -> None:
    two = MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("trade", "sym:string,px:float64,qty:int32"),
                                                              4: ("heartbeat", "")})
    first_other = next(d for d in java_feed.dump if d["body"][8] not in (1, 4))
    with pytest.raises(SchemaMismatchError, match=r"type=\d, which names no message type") as info:
        pychro.read_tables(java_feed.journal, two)
    assert info.value.index == first_other["index"]  # type: ignore[attr-defined]
    stats = ReadStats()
    got = pychro.read_tables(java_feed.journal, two, unknown="skip", stats=stats)
    assert got["trade"].num_rows == 2400 and got["heartbeat"].num_rows == 600
    assert stats.unknown_rows == 3000 and stats.skipped_rows == 0
    with pytest.raises(ValueError, match="unknown= must be one of"):
        pychro.read_tables(java_feed.journal, two, unknown="ignore")


def test_time_range_on_the_header(java_feed: Any, tmp_path: Path) -> None:
    """start/end select by the header's timestamp, in every type. (The Java feed's folder is the day it was
    written, not its messages' day: written again here, each message lands in the cycle of its ts.)"""
    pychro.write_frames(pychro.read_tables(java_feed.journal, FEED), tmp_path / "j", FEED)
    lo, hi = T0 + 1000 * 1000003, T0 + 2000 * 1000003
    start = np.datetime64(lo, "ns")
    end = np.datetime64(hi, "ns")
    got = pychro.read_tables(tmp_path / "j", FEED, start=start, end=end)
    whole = pychro.read_tables(tmp_path / "j", FEED)
    for name in FEED.names:
        ts = whole[name].column("ts").cast(pa.int64()).to_numpy()
        assert got[name].equals(whole[name].filter(pa.array((ts >= lo) & (ts < hi)))), name
    assert sum(t.num_rows for t in got.values()) == 1000


def test_iter_batches_pairs_and_single_schema_guards(java_feed: Any) -> None:
    pairs = list(pychro.iter_batches(java_feed.journal, FEED, batch_rows=500))
    assert {name for name, _ in pairs} == set(FEED.names)
    trades = pa.Table.from_batches([b for n, b in pairs if n == "trade"])
    assert trades.equals(pychro.read_tables(java_feed.journal, FEED)["trade"])
    with pytest.raises(TypeError, match="read_tables"):
        pychro.read_table(java_feed.journal, FEED)
    with pytest.raises(TypeError, match="read_frames"):
        pychro.read_frame(java_feed.journal, FEED)
    with pytest.raises(ValueError, match="unknown= is for message types"):
        pychro.iter_batches(java_feed.journal, "ts:int64", unknown="skip")


def test_read_frames(java_feed: Any) -> None:
    frames = pychro.read_frames(java_feed.journal, FEED, dtype_backend="numpy_nullable")
    assert list(frames) == FEED.names and len(frames["quote"]) == 2400
    assert str(frames["trade"]["qty"].dtype) == "Int32"


def _write(path: Path, bodies: list[bytes]) -> None:
    write_bodies(path, bodies, T0 // 1_000_000)


def _msg(k: int, tag: int, rest: bytes = b"") -> bytes:
    return struct.pack("<qb", T0 + k, tag) + rest


def test_mismatches_across_types_in_index_order(tmp_path: Path) -> None:
    """A quote whose bytes are a trade's length, a body shorter than the header: errors= decides, across types."""
    types = MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("a", "x:int32"), 2: ("b", "y:float64")})
    bodies = [_msg(0, 1, struct.pack("<i", 5)), _msg(1, 2, struct.pack("<d", 1.5)), _msg(2, 2, b"\0\0\0\0"),
              b"\x01\x02", _msg(4, 1, struct.pack("<i", 6)), _msg(5, 2, struct.pack("<d", 2.5))]
    _write(tmp_path / "j", bodies)
    with pytest.raises(SchemaMismatchError, match="but the header says") as info:
        pychro.read_tables(tmp_path / "j", types)
    assert info.value.seq == 2  # type: ignore[attr-defined]
    stats = ReadStats()
    got = pychro.read_tables(tmp_path / "j", types, errors="skip", stats=stats)
    assert got["a"].column("x").to_pylist() == [5, 6] and got["b"].column("y").to_pylist() == [1.5, 2.5]
    assert stats.skipped_rows == 2 and stats.first_bad_index is not None
    cut = pychro.read_tables(tmp_path / "j", types, errors="truncate")
    assert cut["a"].column("x").to_pylist() == [5] and cut["b"].column("y").to_pylist() == [1.5]
    short = tmp_path / "short"
    _write(short, [_msg(0, 1, struct.pack("<i", 5)), b"\x01\x02"])
    with pytest.raises(SchemaMismatchError, match="the 2-byte message does not hold the common header") as info:
        pychro.read_tables(short, types)
    assert info.value.seq == 1  # type: ignore[attr-defined]


def test_string_tag(tmp_path: Path) -> None:
    types = MessageTypes("kind:string,n:int32", "kind", {"TRD": ("trade", "px:float64"), "HB": ("beat", "")})
    path = tmp_path / "j"
    with pychro.VanillaChronicleWriter(str(path), clock=lambda: T0 // 1_000_000) as chron:
        a = chron.get_appender()
        for i in range(10):
            a.write_string("TRD" if i % 3 else "HB")
            a.write_int(i)
            if i % 3:
                a.write_double(i / 2)
            a.finish()
    got = pychro.read_tables(path, types)
    assert got["trade"].column("n").to_pylist() == [i for i in range(10) if i % 3]
    assert got["trade"].column("px").to_pylist() == [i / 2 for i in range(10) if i % 3]
    assert got["beat"].column_names == ["n"] and got["beat"].num_rows == 4


def test_follow_a_live_journal(tmp_path: Path) -> None:
    types = MessageTypes("ts:timestamp_ms,type:int8", "type", {1: ("a", "x:int32"), 2: ("b", "")})
    path = tmp_path / "live"
    now = int(time.time() * 1000)
    _write_ms = [(now + i, 1 + i % 2) for i in range(40)]
    done = threading.Event()

    def writer() -> None:
        with pychro.VanillaChronicleWriter(str(path)) as chron:
            a = chron.get_appender()
            for i, (ts, tag) in enumerate(_write_ms):
                a.write_long(ts)
                a.write_byte(tag)
                if tag == 1:
                    a.write_int(i)
                a.finish()
                if i == 19:
                    time.sleep(0.2)
        done.set()

    _write(path, [])  # the folder exists before the reader starts
    t = threading.Thread(target=writer)
    t.start()
    got: list[tuple[str, int]] = []
    it = pychro.iter_batches(path, types, follow=True, poll_interval=0.01)
    try:
        deadline = time.monotonic() + 20
        for name, batch in it:
            got += [(name, r) for r in range(batch.num_rows)]
            if len(got) >= 40 or time.monotonic() > deadline:
                break
    finally:
        it.close()  # type: ignore[attr-defined]
        t.join(10)
    assert done.is_set()
    assert [n for n, _ in got].count("a") == 20 and [n for n, _ in got].count("b") == 20


# -- write_frames ------------------------------------------------------------------------------------------------
def _bodies(journal: Path) -> list[bytes]:
    (data,) = list(journal.rglob("data-*"))
    raw = data.read_bytes()
    return [raw[pos + 4 : pos + 4 + length] for pos, length in walk_records(data, 1 << 22)]


def test_write_frames_is_the_java_feed(java_feed: Any, tmp_path: Path) -> None:
    """Backfill of the four tables: merged by ts, the messages are Java's own bytes (in ts order), and read back
    to the same tables; the returned indices are each row's."""
    tables = pychro.read_tables(java_feed.journal, FEED)
    out = pychro.write_frames(tables, tmp_path / "j", FEED)
    by_ts = sorted(java_feed.dump, key=lambda d: int.from_bytes(d["body"][:8], "little"))
    assert _bodies(tmp_path / "j") == [d["body"] for d in by_ts]
    back = pychro.read_tables(tmp_path / "j", FEED, index=True)
    for name in FEED.names:
        assert back[name].drop_columns(["_index"]).equals(tables[name].sort_by("ts")), name
    # the returned indices, in each frame's row order
    for name in FEED.names:
        order = np.argsort(tables[name].column("ts").cast(pa.int64()).to_numpy(), kind="stable")
        assert out[name][order].tolist() == back[name].column("_index").to_pylist(), name


def test_write_frames_ties_keep_frame_then_row_order(tmp_path: Path) -> None:
    types = MessageTypes("ts:timestamp_ms,type:int8", "type", {1: ("a", "x:int32"), 2: ("b", "y:int8")})
    ts = pa.array([dt.datetime(2024, 3, 5, 9, tzinfo=dt.UTC)] * 2, pa.timestamp("ms", tz="UTC"))
    frames = {"b": pa.table({"ts": ts, "y": pa.array([1, 2], pa.int8())}),
              "a": pa.table({"ts": ts, "x": pa.array([3, 4], pa.int32())})}
    pychro.write_frames(frames, tmp_path / "j", types)
    assert [b[8] for b in _bodies(tmp_path / "j")] == [2, 2, 1, 1]
    assert [b[9] for b in _bodies(tmp_path / "j")] == [1, 2, 3, 4]


def test_write_frames_checks_everything_first(tmp_path: Path) -> None:
    types = MessageTypes("ts:timestamp_ms,type:int8", "type", {1: ("a", "x:int8"), 2: ("b", "")})
    ts = pa.array([dt.datetime(2024, 3, 5, tzinfo=dt.UTC)], pa.timestamp("ms", tz="UTC"))
    ok = pa.table({"ts": ts, "x": pa.array([1], pa.int32())})
    with pytest.raises(ValueError, match="frame 'a': row 0: column 'x'"):
        pychro.write_frames({"b": pa.table({"ts": ts}), "a": pa.table({"ts": ts, "x": [300]})}, tmp_path / "x", types)
    with pytest.raises(KeyError, match="no message type 'c'"):
        pychro.write_frames({"c": ok}, tmp_path / "x", types)
    with pytest.raises(ValueError, match="must hold the type's tag 1"):
        pychro.write_frames({"a": ok.append_column("type", pa.array([2], pa.int8()))}, tmp_path / "x", types)
    with pytest.raises(TypeError, match="MessageTypes"):
        pychro.write_frames({"a": ok}, tmp_path / "x", "ts:timestamp_ms")
    assert not (tmp_path / "x").exists()
    assert pychro.write_frames({"a": ok}, tmp_path / "y", types)["a"].size == 1
