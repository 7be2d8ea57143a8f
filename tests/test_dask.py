"""read_dask and the parallel export on a LocalCluster of 2 worker processes."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import pychro
from pychro.demo import TICK_SCHEMA, sample_ticks

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dask") / "j"
    pychro.write_frame(sample_ticks(120_000, days=4), path, TICK_SCHEMA)
    return path


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def test_compute_equals_read_frame(journal: Path, client: object) -> None:
    ddf = pychro.read_dask(journal, TICK_SCHEMA, index=True, partition_rows=20_000)
    assert ddf.known_divisions
    assert ddf.npartitions == sum(-(-c.messages // 20_000) for c in pychro.open(journal).cycle_infos())
    got = ddf.compute()
    expected = pychro.read_frame(journal, TICK_SCHEMA, index=True).set_index("_index")
    pd.testing.assert_frame_equal(got, expected)
    # one partition per cycle by default
    assert pychro.read_dask(journal, TICK_SCHEMA).npartitions == 4


def test_meta_from_schema_without_reading(journal: Path) -> None:
    ddf = pychro.read_dask(journal, TICK_SCHEMA, columns=["sym", "px"])
    assert list(ddf.columns) == ["sym", "px"]
    assert str(ddf.dtypes["px"]) == "double[pyarrow]"
    with pytest.raises(ValueError, match=r"unknown columns \['nope'\]"):
        pychro.read_dask(journal, TICK_SCHEMA, columns=["nope"])


def test_projection_and_range_filters(journal: Path, client: object) -> None:
    day = dt.date(2024, 3, 5)
    got = pychro.read_dask(journal, TICK_SCHEMA, date=day, columns=["px", "qty"]).compute().reset_index(drop=True)
    expected = pychro.read_frame(journal, TICK_SCHEMA, date=day, columns=["px", "qty"])
    pd.testing.assert_frame_equal(got, expected)
    first = pychro.open(journal).first_index()
    assert first is not None
    start, end = first + 100, first + 5000
    got = pychro.read_dask(journal, TICK_SCHEMA, start=start, end=end, index=True, partition_rows=1000).compute()
    assert list(got.index) == list(range(start, end))
    # datetimes select rows by the timestamp field, in worker processes too (the time filter is pickled)
    t0, t1 = "2024-03-05T09:00", "2024-03-06T17:30"
    got = pychro.read_dask(journal, TICK_SCHEMA, start=t0, end=t1, partition_rows=5000).compute()
    expected = pychro.read_frame(journal, TICK_SCHEMA, start=t0, end=t1)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected)
    assert expected.ts.min() >= pd.Timestamp(t0, tz="UTC") and expected.ts.max() < pd.Timestamp(t1, tz="UTC")


def test_vwap_equals_pandas(journal: Path, client: object) -> None:
    ddf = pychro.read_dask(journal, TICK_SCHEMA, columns=["sym", "px", "qty"])
    agg = ddf.assign(notional=ddf.px * ddf.qty).groupby("sym")[["notional", "qty"]].sum().compute()
    vwap = (agg.notional / agg.qty).sort_index()
    df = pychro.read_frame(journal, TICK_SCHEMA, dtype_backend="numpy")
    ref = (df.px * df.qty).groupby(df.sym).sum() / df.qty.groupby(df.sym).sum()
    np.testing.assert_allclose(vwap.to_numpy(dtype=float), ref.sort_index().to_numpy(dtype=float), rtol=1e-12)


def test_parallel_export_equals_serial(journal: Path, client: object, tmp_path: Path) -> None:
    n = pychro.to_parquet(journal, TICK_SCHEMA, tmp_path / "par", partition_by="date", parallel=True)
    m = pychro.to_parquet(journal, TICK_SCHEMA, tmp_path / "ser", partition_by="date")
    assert n == m == 120_000
    assert sorted(os.listdir(tmp_path / "par")) == sorted(os.listdir(tmp_path / "ser"))
    a = pq.read_table(tmp_path / "par").sort_by("ts")
    b = pq.read_table(tmp_path / "ser").sort_by("ts")
    assert a.equals(b)


def test_parts_pickle_without_open_files(journal: Path) -> None:
    from pychro.frames.dask import _parts
    from pychro.frames.schema import Schema

    _, parts = _parts(journal, Schema(TICK_SCHEMA), None, None, None, None, False, "pyarrow", 10_000, None, None,
                      "skip", None)
    blob = pickle.dumps(parts)
    assert b"mmap" not in blob and len(blob) < 20_000
    assert pickle.loads(blob) == parts


def test_missing_dask_gives_install_hint(monkeypatch: pytest.MonkeyPatch, journal: Path) -> None:
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("dask"):
            raise ImportError("no dask")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(__import__("sys").modules, "dask.dataframe", raising=False)
    with pytest.raises(ImportError, match=r"pychro\[dask\]"):
        pychro.read_dask(journal, TICK_SCHEMA)


def test_message_types_share_their_partitions(java_feed: Any) -> None:
    """read_dask with message types: one dask frame per type, partitions shared, equal to read_frames."""
    import dask
    from frames.test_types import FEED

    frames = pychro.read_dask(java_feed.journal, FEED, index=True, partition_rows=1500)
    assert list(frames) == FEED.names and all(f.npartitions == 4 for f in frames.values())
    got = dask.compute(*frames.values())
    local = pychro.read_frames(java_feed.journal, FEED, index=True)
    for name, frame in zip(FEED.names, got):
        assert frame.reset_index().equals(local[name]), name
    sel = pychro.read_dask(java_feed.journal, FEED, columns={"quote": ["ask"]})["quote"].compute()
    assert list(sel.columns) == ["ask"] and len(sel) == 2400
    with pytest.raises(ValueError, match="truncate"):
        pychro.read_dask(java_feed.journal, FEED, errors="truncate")


def test_a_failed_parallel_export_waits_for_its_tasks_and_leaves_no_empty_folder(
    journal: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every day's date= folder was made before the tasks ran, and dask.compute raised at the first failed task
    while the others still wrote: the export failed with .partial files in out that became whole days after it
    returned, and a failed day's folder was left empty. Now each task makes its own folder (removed if its write
    fails) and the export fails once every task has ended, leaving whole days only."""
    import threading
    import time

    from pychro.frames.dask import to_parquet_dask
    from pychro.frames.parquet_file import ParquetFile

    real = ParquetFile.write
    first: list[int] = []
    lock = threading.Lock()

    def write(self: Any, *args: Any) -> None:
        with lock:
            if not first:
                first.append(id(self))
        if id(self) == first[0]:
            raise OSError(28, "No space left on device")
        time.sleep(0.3)  # the other days are still being written when the first one fails
        real(self, *args)

    monkeypatch.setattr(ParquetFile, "write", write)
    out = tmp_path / "new" / "par"
    with pytest.raises(OSError, match="No space left"):
        to_parquet_dask(journal, TICK_SCHEMA, out, scheduler="threads")  # in this process: the patch applies
    days = sorted(os.listdir(out))
    assert len(days) == 3  # of 4: the failed one's folder is gone
    for day in days:
        assert os.listdir(out / day) == ["part-0.parquet"]  # whole, published before the export failed
        want = pychro.read_table(journal, TICK_SCHEMA, date=dt.date.fromisoformat(day.removeprefix("date=")))
        assert pq.read_table(out / day / "part-0.parquet").select(want.column_names).equals(want)
    monkeypatch.setattr(ParquetFile, "write", lambda self, *args: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(OSError, match="No space"):
        to_parquet_dask(journal, TICK_SCHEMA, tmp_path / "other" / "par", scheduler="threads")
    assert not (tmp_path / "other").exists()
