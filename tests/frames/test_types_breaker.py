"""Reproductions of what a hostile review of message types, repeated groups and exports by type found, kept as
tests: each was a raw low-level error, silent garbage, a mixed or incomplete folder taken as whole, or a file left
behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import pychro
from pychro.frames.export_types import import_folder
from pychro.frames.schema import Schema

T = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("trade", "px:float64"), 4: ("heartbeat", "")})


def _journal(path: Path, days: int = 1) -> Path:
    ts = pd.to_datetime([f"2024-03-0{4 + d} 10:00" for d in range(days)], utc=True)
    pychro.write_frames({"trade": pd.DataFrame({"ts": ts, "px": [1.0 + d for d in range(days)]}),
                         "heartbeat": pd.DataFrame({"ts": ts})}, path, T)
    return path


def test_skip_written_as_the_docs_write_it() -> None:
    assert str(Schema("a:int8,skip<3>,b:int8")) == "a:int8,skip3,b:int8"
    assert Schema("lv:list<px:float64,skip<4>>")["lv"].type.entry_size == 12


def test_a_text_tag_column_is_named() -> None:
    df = pd.DataFrame({"ts": pd.to_datetime([1, 2], utc=True), "px": [1.0, 2.0], "type": ["1", "1"]})
    with pytest.raises(ValueError, match="column 'type' must hold the type's tag 1"):
        pychro.write_frames({"trade": df}, "/nonexistent-never-made", T)


def test_a_null_entry_of_a_group_is_refused(tmp_path: Path) -> None:
    s = Schema("e:list<x:int16,y:bool>")
    t = pa.table({"e": pa.array([[None, {"x": 7, "y": True}]],
                                pa.list_(pa.struct([("x", pa.int16()), ("y", pa.bool_())])))})
    with pytest.raises(ValueError, match="row 0: column 'e' has a null entry"):
        pychro.write_frame(t, tmp_path / "j", s, date="2024-03-05")
    assert not (tmp_path / "j").exists()


def test_order_by_beyond_int64_is_named(tmp_path: Path) -> None:
    types = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("a", "x:int32")})
    t = pa.table({"ts": pa.array([1], pa.timestamp("ns", "UTC")), "x": pa.array([1], pa.int32()),
                  "k": pa.array([2**63 + 5], pa.uint64())})
    with pytest.raises(ValueError, match="fit int64"):
        pychro.write_frames({"a": t}, tmp_path / "j", types, order_by="k")


def test_an_export_never_mixes_with_an_earlier_one(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", days=2)
    pychro.to_parquet(j, T, tmp_path / "out", partition_by="date")
    before = sorted(str(p) for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(ValueError, match="not empty"):
        pychro.to_parquet(j, T, tmp_path / "out", partition_by="date", start="2024-03-05")
    assert sorted(str(p) for p in (tmp_path / "out").rglob("*")) == before


def test_a_failed_export_leaves_no_folder(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j")
    only = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("trade", "px:float64")})
    for fn in (pychro.to_parquet, pychro.to_ipc, pychro.to_csv):
        with pytest.raises(pychro.SchemaMismatchError):
            fn(j, only, tmp_path / "out")
        assert not (tmp_path / "out").exists(), fn.__name__
    with pytest.raises(pychro.SchemaMismatchError):  # a single-schema export: its new parent folders go too
        pychro.to_parquet(j, "ts:timestamp_ns,type:int8,px:float64", tmp_path / "a" / "b" / "x.parquet")
    assert not (tmp_path / "a").exists()


def test_import_refuses_an_incomplete_folder(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j")
    pychro.to_ipc(j, T, tmp_path / "out")
    os.rename(tmp_path / "out" / "trade.arrow", tmp_path / "out" / "trade.arrow.partial")  # what kill -9 leaves
    with pytest.raises(ValueError, match="unfinished export"):
        import_folder(tmp_path / "out", tmp_path / "imp")
    os.remove(tmp_path / "out" / "trade.arrow.partial")
    with pytest.raises(ValueError, match="no file of message type 'trade'"):
        import_folder(tmp_path / "out", tmp_path / "imp")
    assert not (tmp_path / "imp").exists()


def test_import_of_a_csv_folder_says_why(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j")
    pychro.to_csv(j, T, tmp_path / "out")
    got = subprocess.run([sys.executable, "-m", "pychro", "import", str(tmp_path / "out"), str(tmp_path / "imp")],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 1 and "folder of CSV files" in got.stderr and "Parquet magic" not in got.stderr
