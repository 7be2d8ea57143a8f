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
    in_use = r.buffer(1 << 20)  # (free arrays are let go beyond a quarter of the bytes in use: this keeps them)
    a, b = r.buffer(64), r.buffer(64)
    assert a.is_mutable and a.size == 64 and a.address != b.address
    array = pa.Array.from_buffers(pa.int64(), 8, [None, a])
    sliced = array.slice(2, 3)
    del a, array
    c = r.buffer(64)
    assert c.address not in (b.address, sliced.buffers()[1].address)  # the slice keeps the first one
    address = sliced.buffers()[1].address
    del sliced
    again = r.buffer(4000)  # now free: used again, for any size of its class
    assert again.address == address and again.size == 4000
    eight = r.buffer(5000).address  # another class (8 KiB), dropped at once: free
    assert eight not in (address, b.address, c.address)
    twelve = r.buffer(10_000).address  # 12 KiB, free too
    # no free array of its class (4 KiB: all three held): the smallest free one up to twice the class
    taken = r.buffer(3000)
    assert taken.address == eight
    assert r.buffer(15_000).address not in (eight, twelve)  # 16 KiB: never a smaller array
    assert r.buffer(1000).address not in (eight, twelve)  # 4 KiB: 12 KiB is over twice the class
    assert in_use.size == 1 << 20 and taken.size == 3000


def test_size_classes_waste_at_most_a_sixteenth() -> None:
    for size in [1, 4095, 4096, 4097, 65_537, 1 << 20, (1 << 20) + 8, 524_292, 10**7, 3 * 10**9]:
        cls = decode._size_class(size)
        assert size <= cls < size + max(4096, size // 16 + 1) and cls % 4096 == 0


def test_free_arrays_are_let_go_when_sizes_never_repeat() -> None:
    """Hourly cycles, each a batch of its own size, had kept every buffer of an export (found by a helper: 1.7 GB
    held for 10.8 M rows). Free arrays beyond a quarter of the bytes in use are let go, least recently asked first."""
    r = decode.Recycler()
    held = [r.buffer(1 << 20) for _ in range(4)]  # 4 MiB in use all along
    for k in range(200):
        r.buffer((1 << 20) + 65_536 * (k + 1))  # each its own class, dropped at once
    kept = sum(len(a) for arrays in r._kept.values() for a in arrays)
    assert kept <= 4 * (1 << 20) * 1.25 + (1 << 20) * 14  # (the largest class asked: 13.5 MiB)
    assert all(b.address for b in held)  # and those in use stay


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
