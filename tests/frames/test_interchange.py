"""Arrow interchange with real polars and DuckDB: their frames and query results written into journals (streamed),
and journals read by them through pychro.scan (a lazy Arrow stream, a fresh read per call)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import pychro
from pychro.frames.backfill import write_batches
from pychro.frames.export import import_file

from .test_types import FEED

pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")

SCHEMA = "ts:timestamp_ms,sym:string,px:float64,qty:int32"
DAY = dt.datetime(2024, 3, 5, 9, tzinfo=dt.UTC)


def _ticks(n: int) -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.table({
        "ts": pa.array([DAY + dt.timedelta(milliseconds=i) for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "sym": pa.array(np.array(["AAPL", "Nestlé", "中文", None], dtype=object)[rng.integers(0, 4, n)]),
        "px": rng.normal(100, 1, n),
        "qty": rng.integers(1, 100, n).astype(np.int32),
    })


def test_polars_frame_in(tmp_path: Path) -> None:
    table = _ticks(1000)
    frame = pl.from_arrow(table)
    pychro.write_frame(frame, tmp_path / "j", SCHEMA)
    assert pychro.read_table(tmp_path / "j", SCHEMA).equals(table)
    # without a schema: inferred from the frame's Arrow schema (polars' large strings become string fields)
    pychro.write_frame(frame, tmp_path / "k")
    assert pychro.read_table(tmp_path / "k", SCHEMA).column("px").equals(table.column("px"))


def test_duckdb_relation_streams_in_two_passes(tmp_path: Path) -> None:
    """A DuckDB query result is read twice (checked, then written) as a stream, a batch at a time."""
    con = duckdb.connect()
    rel = con.sql("SELECT TIMESTAMPTZ '2024-03-05 09:00:00+00' + to_milliseconds(i) AS ts, "
                  "CASE WHEN i % 3 = 0 THEN 'AAPL' ELSE 'Nestlé' END AS sym, i / 4.0 AS px, "
                  "CAST(i % 100 AS INTEGER) AS qty FROM range(200000) t(i)")
    out = pychro.write_frame(rel, tmp_path / "j", SCHEMA)
    assert out.size == 200_000
    back = pychro.read_table(tmp_path / "j", SCHEMA)
    assert back.num_rows == 200_000 and back.column("px")[7].as_py() == 1.75
    assert back.column("sym")[3].as_py() == "AAPL" and back.column("ts")[1].as_py() == DAY + dt.timedelta(
        milliseconds=1)
    assert write_batches(rel, tmp_path / "k", SCHEMA) == 200_000
    assert import_file(rel, tmp_path / "m", SCHEMA) == 200_000
    assert pychro.read_table(tmp_path / "m", SCHEMA).equals(back)


def test_bad_rows_and_types_are_named(tmp_path: Path) -> None:
    frame = pl.DataFrame({"ts": [DAY], "sym": ["x"], "px": [1.0], "qty": [1 << 40]})
    with pytest.raises(ValueError, match="row 0: column 'qty'"):
        pychro.write_frame(frame, tmp_path / "j", SCHEMA)
    nested = pl.DataFrame({"ts": [DAY], "sym": [{"a": 1}], "px": [1.0], "qty": [1]})
    with pytest.raises(ValueError, match="column 'sym'"):
        pychro.write_frame(nested, tmp_path / "j", SCHEMA)
    assert not (tmp_path / "j").exists()
    with pytest.raises(TypeError, match="PyCapsule"):
        pychro.write_frame(object(), tmp_path / "j", SCHEMA)


def test_one_shot_reader(tmp_path: Path) -> None:
    table = _ticks(500)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=100))
    pychro.write_frame(reader, tmp_path / "j", SCHEMA)
    assert pychro.read_table(tmp_path / "j", SCHEMA).equals(table)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "j"
    pychro.write_frame(_ticks(100_000), path, SCHEMA)
    return path


def test_scan_duckdb_polars_pyarrow(journal: Path) -> None:
    j = pychro.scan(journal, SCHEMA)
    whole = pychro.read_table(journal, SCHEMA)
    got = duckdb.sql("SELECT sym, count(*) AS n, sum(qty) AS q FROM j GROUP BY sym ORDER BY sym NULLS LAST").fetchall()
    want = whole.group_by("sym").aggregate([("sym", "count"), ("qty", "sum")])
    assert sorted((r[0], r[1], r[2]) for r in got if r[0] is not None) == sorted(
        (s, c, q) for s, c, q in zip(*(want.column(k).to_pylist() for k in ("sym", "sym_count", "qty_sum")))
        if s is not None)
    again = duckdb.sql("SELECT count(*) FROM j").fetchall()  # a second query: a fresh stream
    assert again == [(100_000,)]
    frame = pl.DataFrame(j)
    assert frame.height == 100_000 and frame.to_arrow().cast(whole.schema).equals(whole)
    # polars' from_arrow makes any Arrow stream one struct Series (its rule, not ours): the same rows
    assert pl.from_arrow(j).struct.unnest().equals(frame)
    assert pa.RecordBatchReader.from_stream(j).read_all().equals(whole)
    assert j.to_table().equals(whole)


def test_scan_projection_and_time_range(journal: Path) -> None:
    j = pychro.scan(journal, SCHEMA, columns=["px"], start="2024-03-05T09:00:10", end="2024-03-05T09:00:20")
    table = pa.RecordBatchReader.from_stream(j).read_all()
    assert table.column_names == ["px"] and table.num_rows == 10_000
    with pytest.raises(ValueError, match="unknown columns"):
        pychro.scan(journal, SCHEMA, columns=["nope"])  # at scan(), not in the query
    with pytest.raises(TypeError, match="unknown options"):
        pychro.scan(journal, SCHEMA, colums=["px"])
    with pytest.raises(TypeError, match="follow"):
        pychro.scan(journal, SCHEMA, follow=True)
    with pytest.raises(pychro.JournalNotFoundError):
        pychro.scan(journal.parent / "missing", SCHEMA)
    opened = pychro.open(journal).scan(SCHEMA, columns=["qty"])  # noqa: F841 - DuckDB finds it by name
    assert duckdb.sql("SELECT sum(qty) FROM opened").fetchall() == [
        (sum(pychro.read_table(journal, SCHEMA).column("qty").to_pylist()),)]


def test_scan_message_types(java_feed: Any) -> None:
    j = pychro.scan(java_feed.journal, FEED)
    assert j.names == FEED.names
    quotes = j["quote"]  # noqa: F841 - DuckDB finds it by name
    n = duckdb.sql("SELECT count(*), sum(bid_size) FROM quotes").fetchall()
    local = pychro.read_tables(java_feed.journal, FEED)["quote"]
    assert n == [(2400, sum(local.column("bid_size").to_pylist()))]
    with pytest.raises(TypeError, match="one stream per type"):
        pa.RecordBatchReader.from_stream(j)
    with pytest.raises(KeyError, match="no message type 'fill'"):
        j["fill"]


def test_write_frames_takes_polars(tmp_path: Path) -> None:
    ts = pl.Series("ts", [DAY, DAY + dt.timedelta(seconds=1)], dtype=pl.Datetime("ns", "UTC"))
    types = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("a", "x:int32"), 2: ("b", "")})
    pychro.write_frames({"a": pl.DataFrame({"ts": ts, "x": [1, 2]}), "b": pl.DataFrame({"ts": ts[:1]})},
                        tmp_path / "j", types)
    got = pychro.read_tables(tmp_path / "j", types)
    assert got["a"].column("x").to_pylist() == [1, 2] and got["b"].num_rows == 1


def test_polars_chars_and_categoricals(tmp_path: Path) -> None:
    """polars hands strings over as string views, categoricals as dictionaries: char and string fields take both."""
    frame = pl.DataFrame({"side": ["B", "S", "é"], "sym": pl.Series(["AAPL", "中文", "AAPL"], dtype=pl.Categorical)})
    pychro.write_frame(frame, tmp_path / "j", "side:char,sym:string", date="2024-03-05")
    back = pychro.read_table(tmp_path / "j", "side:char,sym:string")
    assert back.column("side").to_pylist() == ["B", "S", "é"] and back.column("sym").to_pylist() == [
        "AAPL", "中文", "AAPL"]
