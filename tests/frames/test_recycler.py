"""Exports decode into number buffers used again once nothing refers to them (decode.Recycler): a buffer still
held by any Arrow object is never handed out again, and exports with reuse still equal read_table/read_tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pychro
from pychro.frames import api, decode, export_types

from .test_types import FEED


def test_a_buffer_is_handed_out_again_only_when_nothing_holds_it() -> None:
    r = decode.Recycler()
    a, b = r.buffer(64), r.buffer(64)
    assert a.is_mutable and a.size == 64 and a.address != b.address
    array = pa.Array.from_buffers(pa.int64(), 8, [None, a])
    sliced = array.slice(2, 3)
    del a, array
    c = r.buffer(64)
    assert c.address not in (b.address, sliced.buffers()[1].address)  # the slice keeps the first one
    address = sliced.buffers()[1].address
    del sliced
    assert r.buffer(64).address == address  # now free: used again
    assert r.buffer(32).address not in (address, b.address, c.address)  # sizes are exact


def test_plans_without_a_recycler_take_arrows_pool(tmp_path: Path) -> None:
    plan = decode.Plan(pychro.Schema("x:int64"))
    assert plan.recycler is None
    decode.recycle([plan])
    assert isinstance(plan.recycler, decode.Recycler)


@pytest.fixture
def handed(monkeypatch: Any) -> list[int]:
    """Addresses of every buffer the recyclers hand out."""
    got: list[int] = []
    real = decode.Recycler.buffer

    def spy(self: decode.Recycler, size: int) -> Any:
        buf = real(self, size)
        got.append(buf.address)
        return buf

    monkeypatch.setattr(decode.Recycler, "buffer", spy)
    return got


def test_export_with_buffers_used_again_equals_read_table(tmp_path: Path, monkeypatch: Any, handed: list[int]) -> None:
    schema = "ts:timestamp_ms,sym:string,px:float64,n:stopbit,ok:bool"
    n = 20_000
    rng = np.random.default_rng(3)
    pychro.write_frame({"ts": np.arange(n) + 1_709_600_000_000, "sym": [f"s{v}" for v in rng.integers(0, 99, n)],
                        "px": rng.normal(size=n), "n": rng.integers(-1 << 40, 1 << 40, n), "ok": rng.random(n) < 0.5},
                       tmp_path / "j", schema)
    monkeypatch.setattr(api, "TABLE_BATCH_ROWS", 500)  # many batches, each written and dropped
    pychro.to_parquet(tmp_path / "j", schema, tmp_path / "t.parquet", row_group_rows=1000)
    want = pychro.read_table(tmp_path / "j", schema)
    got = pq.read_table(tmp_path / "t.parquet")
    assert got.equals(want.cast(got.schema))
    assert len(set(handed)) < len(handed) / 4  # buffers were used again, many times
    handed.clear()
    pychro.to_ipc(tmp_path / "j", schema, tmp_path / "t.arrow", row_group_rows=1000)
    with pa.memory_map(str(tmp_path / "t.arrow")) as f:
        assert pa.ipc.open_file(f).read_all().equals(want)
    assert len(set(handed)) < len(handed)


def test_export_of_message_types_with_buffers_used_again(java_feed: Any, tmp_path: Path, monkeypatch: Any,
                                                          handed: list[int]) -> None:
    monkeypatch.setattr(export_types, "BATCH_ROWS", 300)
    pychro.to_parquet(java_feed.journal, FEED, tmp_path / "out", row_group_rows=500)
    tables = pychro.read_tables(java_feed.journal, FEED, index=True)
    for name in FEED.names:
        got = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert got.equals(tables[name].cast(got.schema)), name
    assert len(set(handed)) < len(handed)  # (each type's writer holds a few batches: less reuse than above)
