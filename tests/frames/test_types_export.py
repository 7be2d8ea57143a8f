"""Message types exported one file per type in one pass, imported back in the journal's order, and shown by the
CLI (head/tail/export/import --types); against the Java 3.5.3 feed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from helpers import walk_records

import pychro
from pychro.frames.export_types import import_folder

from .test_types import FEED


def test_parquet_per_type_and_back(java_feed: Any, tmp_path: Path) -> None:
    rows = pychro.to_parquet(java_feed.journal, FEED, tmp_path / "out")
    assert rows == {"trade": 2400, "quote": 2400, "book": 600, "heartbeat": 600}
    assert sorted(os.listdir(tmp_path / "out")) == [f"{n}.parquet" for n in sorted(FEED.names)]
    tables = pychro.read_tables(java_feed.journal, FEED, index=True)
    for name in FEED.names:
        got = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert got.column_names == ["_index", *FEED.columns(name)]
        assert got.equals(tables[name].cast(got.schema)), name
        assert pychro.MessageTypes.from_json(got.schema.metadata[b"pychro.types"].decode()) == FEED
    # back into a journal: the same messages, in the journal's own (index) order
    assert import_folder(tmp_path / "out", tmp_path / "copy") == rows
    again = pychro.read_tables(tmp_path / "copy", FEED)
    for name in FEED.names:
        assert again[name].equals(tables[name].drop_columns(["_index"])), name
    (data,) = list((tmp_path / "copy").rglob("data-*"))  # Java's own bodies, in Java's index order
    raw = data.read_bytes()
    assert [raw[p + 4 : p + 4 + n] for p, n in walk_records(data, 1 << 22)] == [d["body"] for d in java_feed.dump]


def test_partitioned_ipc_and_csv(java_feed: Any, tmp_path: Path) -> None:
    pychro.write_frames(pychro.read_tables(java_feed.journal, FEED), tmp_path / "j", FEED)
    rows = pychro.to_ipc(tmp_path / "j", FEED, tmp_path / "ipc", partition_by="date")
    assert rows["book"] == 600
    for name in FEED.names:
        assert (tmp_path / "ipc" / name / "date=2024-03-05" / "part-0.arrow").exists()
    with pytest.raises(ValueError, match="CSV has no list columns: column 'levels' of type 'book'"):
        pychro.to_csv(tmp_path / "j", FEED, tmp_path / "csv")
    assert not (tmp_path / "csv").exists() or not os.listdir(tmp_path / "csv")
    got = pychro.to_csv(tmp_path / "j", FEED, tmp_path / "csv", columns={"book": ["sym"]})
    assert got["trade"] == 2400
    assert (tmp_path / "csv" / "trade.csv").read_text().splitlines()[0] == '"_index","ts","sym","px","qty"'


def test_export_arguments(java_feed: Any, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file: message types are exported into a folder"):
        pychro.to_parquet(java_feed.journal, FEED, tmp_path / "file")
    with pytest.raises(ValueError, match="parallel=True"):
        pychro.to_parquet(java_feed.journal, FEED, tmp_path / "o", partition_by="date", parallel=True)
    with pytest.raises(ValueError, match="unknown= is for message types"):
        pychro.to_parquet(java_feed.journal, "ts:int64", tmp_path / "o.parquet", unknown="skip")


def test_a_failing_read_leaves_no_file(tmp_path: Path, java_feed: Any) -> None:
    two = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("trade", "sym:string,px:float64,qty:int32")})
    with pytest.raises(pychro.SchemaMismatchError, match="names no message type"):
        pychro.to_parquet(java_feed.journal, two, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the folder it made goes too


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pychro", *args], capture_output=True, text=True, timeout=120)


def test_cli_types(java_feed: Any, tmp_path: Path) -> None:
    types = tmp_path / "types.json"
    types.write_text(FEED.to_json())
    head = _cli("head", str(java_feed.journal), "--types", str(types), "-n", "3")
    assert head.returncode == 0, head.stderr
    lines = head.stdout.splitlines()
    want = java_feed.dump[:3]
    assert [int(line.split()[0], 16) for line in lines] == [d["index"] for d in want]
    assert [line.split()[1] for line in lines] == [FEED.name_of(d["body"][8]) for d in want]
    assert "levels=[" in head.stdout or all(d["body"][8] != 3 for d in want)
    tail = _cli("tail", str(java_feed.journal), "--types", str(types), "-n", "2")
    assert [int(line.split()[0], 16) for line in tail.stdout.splitlines()] == [d["index"] for d in java_feed.dump[-2:]]
    out = _cli("export", str(java_feed.journal), "--types", str(types), "--to", str(tmp_path / "out"))
    assert out.returncode == 0 and "trade 2,400" in out.stdout, out.stderr
    imp = _cli("import", str(tmp_path / "out"), str(tmp_path / "copy"))
    assert imp.returncode == 0, imp.stderr
    assert pychro.read_tables(tmp_path / "copy", FEED)["quote"].num_rows == 2400
    both = _cli("export", str(java_feed.journal), "--types", str(types), "--schema", "a:int8", "--to", "x")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    missing = _cli("export", str(java_feed.journal), "--types", str(tmp_path / "nope.json"), "--to", "x")
    assert missing.returncode == 1 and "--types file not found" in missing.stderr
    for item in (".px", "trade.", "px"):  # a column of no type named, or no column
        bad = _cli("export", str(java_feed.journal), "--types", str(types), "--columns", item, "--to", "x")
        assert bad.returncode == 2 and f"names type.column (e.g. trade.px), got {item!r}" in bad.stderr, bad.stderr


def test_cli_head_exits_1_when_every_message_was_left_out(java_feed: Any, tmp_path: Path) -> None:
    only = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {9: ("none", "")})
    (tmp_path / "t.json").write_text(only.to_json())
    got = _cli("head", str(java_feed.journal), "--types", str(tmp_path / "t.json"), "--unknown", "skip", "-n", "3")
    assert got.returncode == 1 and "no row to show" in got.stderr and got.stdout == ""


def test_import_file_of_a_types_export_names_the_call_that_imports_it(java_feed: Any, tmp_path: Path) -> None:
    """import_file of the folder said "the data has no column 'type'" (a breaker); pychro import reads it."""
    from pychro.frames.export import import_file

    pychro.to_parquet(java_feed.journal, FEED, tmp_path / "out")
    with pytest.raises(ValueError, match=r"is an export by message type .*export_types.import_folder"):
        import_file(tmp_path / "out", tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_a_dangling_link_or_a_file_in_the_way_of_the_folder_is_named(
    java_feed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent of out that is a symbolic link to nothing, or a file, is named as such (was: a bare
    FileExistsError); nothing is written."""
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path / "nowhere", "gone")
    Path("afile").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"symbolic link to '.*nowhere', which leads nowhere") as got:
        pychro.to_parquet(java_feed.journal, FEED, "gone/sub/out")
    assert got.value.filename == "gone"
    with pytest.raises(NotADirectoryError, match="a file of that name is in the way") as got2:
        pychro.to_parquet(java_feed.journal, FEED, "afile/out")
    assert got2.value.filename == "afile"
    with pytest.raises(FileNotFoundError, match=r"out is a symbolic link to '.*nowhere', which leads nowhere"):
        pychro.to_parquet(java_feed.journal, FEED, "gone")
    assert sorted(os.listdir(".")) == ["afile", "gone"] and not os.path.exists(tmp_path / "nowhere")
