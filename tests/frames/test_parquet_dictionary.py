"""to_parquet dictionary-encodes a column unless its distinct values would fill pyarrow's 1 MiB dictionary twice
over (pychro/frames/dictionary.py): the dictionary would overflow and fall back to plain encoding, paying for
nothing. The estimate must not be fooled by values repeating in runs, nor by random order (a breaker's cases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pychro
from pychro.frames.dictionary import dictionary_columns

from .test_types import FEED

N = 300_000
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


def test_columns_of_many_distinct_values_are_written_plain(tmp_path: Path) -> None:
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


def _runs(n: int) -> dict[str, pa.Array]:
    """Columns whose values repeat in runs (several ticks a millisecond), in cycles, or come from a pool in random
    order: each has few enough distinct values for the dictionary, though a strided or a first-rows sample looks
    unique (a breaker found files up to 4.2x, then 2.4x larger than pq.write_table's)."""
    i = np.arange(n)
    rng = np.random.default_rng(5)
    return {
        "sym_runs": pa.array([f"symbol-{v:08d}" for v in i // 32]),
        "ts_runs": pa.array(1_700_000_000_000 + i // 32, pa.timestamp("ms")),
        "px_runs": pa.array((i // 32) * 0.25),
        "ids_pool": pa.array(rng.integers(0, 100_000, n)),
        "cycle": pa.array((i * 7) % 50_000),
        "cycle_100k": pa.array(i % 100_000),  # both samples of a strided draw looked all distinct
        "shuffled": pa.array(np.tile(rng.permutation(100_000), n // 100_000 + 1)[:n] * 0.5),
        "names": pa.array([f"name-{v:06d}" for v in np.tile(rng.permutation(60_000), n // 60_000 + 1)[:n]]),
    }


def test_values_in_runs_or_from_a_pool_keep_their_dictionary(tmp_path: Path) -> None:
    table = pa.table(_runs(1 << 20))
    assert dictionary_columns(table) == table.column_names
    ours, default = tmp_path / "ours.parquet", tmp_path / "default.parquet"
    pq.write_table(table, ours, use_dictionary=dictionary_columns(table))
    pq.write_table(table, default)
    assert ours.stat().st_size <= default.stat().st_size


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_small_tables_keep_pyarrows_default(n: int) -> None:
    t = pa.table({"ts": pa.array(range(n), pa.int64()), "s": [str(i) for i in range(n)]})
    assert dictionary_columns(t) == ["ts", "s"]


def test_nested_columns_keep_their_dictionary() -> None:
    t = _table()
    assert dictionary_columns(t) == ["qty", "sym", "flag"]
    nested = pa.table({"legs": pa.array([[{"px": float(i), "qty": i}] for i in range(N)])})
    assert dictionary_columns(nested) == ["legs.list.element.px", "legs.list.element.qty"]


def test_repeated_groups_of_a_java_feed_keep_their_dictionary(java_feed: Any, tmp_path: Path) -> None:
    pychro.to_parquet(java_feed.journal, FEED, tmp_path / "out")
    for name in FEED.names:
        pages = _dictionary_pages(tmp_path / "out" / f"{name}.parquet")
        assert all(pages[p] for p in pages if ".list." in p), (name, pages)
