"""to_parquet dictionary-encodes a column unless its values are nearly all distinct (pychro/frames/dictionary.py):
such a column would overflow Parquet's 1 MiB dictionary and fall back to plain encoding, paying for nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import pychro
from pychro.frames.dictionary import dictionary_columns

from .test_types import FEED

N = 40_000
SCHEMA = "ts:timestamp_ms,px:float64,qty:int32,sym:string,id:string,flag:bool"


def _dictionary_pages(path: Path) -> dict[str, bool]:
    md = pq.ParquetFile(path).metadata
    group = md.row_group(0)
    return {group.column(i).path_in_schema: group.column(i).has_dictionary_page for i in range(md.num_columns)}


def _table() -> pa.Table:
    rng = np.random.default_rng(3)
    return pa.table({
        "ts": pa.array(1_709_629_200_000 + np.arange(N), pa.timestamp("ms", tz="UTC")),
        "px": rng.normal(100, 5, N),
        "qty": rng.integers(1, 50, N).astype(np.int32),
        "sym": rng.choice(["AAPL", "MSFT", "GOOG"], N),
        "id": [f"order-{i:08d}" for i in range(N)],
        "flag": rng.random(N) < 0.5,
    })


def test_nearly_unique_columns_are_written_plain(tmp_path: Path) -> None:
    table = _table()
    pychro.write_frame(table, tmp_path / "j", SCHEMA, date="2024-03-05")
    out = tmp_path / "x.parquet"
    assert pychro.to_parquet(tmp_path / "j", SCHEMA, out) == N
    pages = _dictionary_pages(out)
    assert not pages["ts"] and not pages["px"] and not pages["id"]
    assert pages["qty"] and pages["sym"]
    assert pq.read_table(out).equals(pychro.read_table(tmp_path / "j", SCHEMA))
    pq.write_table(table, tmp_path / "default.parquet")  # every column tried: no smaller
    assert out.stat().st_size <= (tmp_path / "default.parquet").stat().st_size


def test_the_sample_decides_and_nested_columns_keep_their_dictionary() -> None:
    t = _table()
    assert dictionary_columns(t) == ["qty", "sym", "flag"]
    assert dictionary_columns(t.slice(0, 0)) == list(t.column_names)  # nothing to go by: pyarrow's default
    few = pa.table({"v": pa.array(np.arange(N) % 20_000, pa.int64())})  # 20 K values: the dictionary holds them
    assert dictionary_columns(few) == ["v"]
    nested = pa.table({"legs": pa.array([[{"px": float(i), "qty": i}] for i in range(N)])})
    assert dictionary_columns(nested) == ["legs.list.element.px", "legs.list.element.qty"]


def test_repeated_groups_of_a_java_feed_keep_their_dictionary(java_feed: Any, tmp_path: Path) -> None:
    pychro.to_parquet(java_feed.journal, FEED, tmp_path / "out")
    for name in FEED.names:
        pages = _dictionary_pages(tmp_path / "out" / f"{name}.parquet")
        nested = [p for p in pages if ".list." in p]
        assert all(pages[p] for p in nested), (name, pages)
        assert not pages["_index"]  # full indices: all distinct
