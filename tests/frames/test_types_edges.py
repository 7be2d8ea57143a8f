"""Message types at their edges: which problem a read names first, numpy tag values, metadata column clashes."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import pychro
from pychro import MessageTypes, SchemaMismatchError
from pychro.frames import ReadStats

from .test_types import FEED, _msg, _write
from .test_types_export import _cli

T0 = 1709596800000000000
TYPES = MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("a", "x:int32"), 2: ("b", "y:float64")})


A0, A3 = _msg(0, 1, struct.pack("<i", 7)), _msg(3, 1, struct.pack("<i", 8))
UNKNOWN, BAD = _msg(1, 9), _msg(2, 2, b"\0\0")  # tag 9 is no type; a b of 2 bytes where 8 are due


def test_an_unknown_tag_before_a_mismatch_is_named_first(tmp_path: Path) -> None:
    _write(tmp_path / "j", [A0, UNKNOWN, BAD, A3])
    with pytest.raises(SchemaMismatchError, match="type=9, which names no message type") as info:
        pychro.read_tables(tmp_path / "j", TYPES)
    assert info.value.seq == 1  # type: ignore[attr-defined]
    with pytest.raises(SchemaMismatchError, match="the header says") as info:
        pychro.read_tables(tmp_path / "j", TYPES, unknown="skip")
    assert info.value.seq == 2  # type: ignore[attr-defined]
    with pytest.raises(SchemaMismatchError, match="type=9"):  # a skipped mismatch does not hide it
        pychro.read_tables(tmp_path / "j", TYPES, errors="skip")
    stats = ReadStats()
    got = pychro.read_tables(tmp_path / "j", TYPES, errors="skip", unknown="skip", stats=stats)
    assert got["a"].column("x").to_pylist() == [7, 8] and got["b"].num_rows == 0
    assert (stats.unknown_rows, stats.skipped_rows) == (1, 1)


def test_a_mismatch_before_an_unknown_tag_is_named_first(tmp_path: Path) -> None:
    _write(tmp_path / "j", [A0, BAD, UNKNOWN, A3])
    with pytest.raises(SchemaMismatchError, match="the header says") as info:
        pychro.read_tables(tmp_path / "j", TYPES)
    assert info.value.seq == 1  # type: ignore[attr-defined]
    stats = ReadStats()
    cut = pychro.read_tables(tmp_path / "j", TYPES, errors="truncate", stats=stats)  # ends before the unknown tag
    assert cut["a"].column("x").to_pylist() == [7] and stats.truncated and stats.unknown_rows == 0
    with pytest.raises(SchemaMismatchError, match="type=9"):
        pychro.read_tables(tmp_path / "j", TYPES, errors="skip")


def test_numpy_tag_values_are_their_ints() -> None:
    types = MessageTypes("t:int16", "t", {np.int16(1): ("a", ""), np.int64(300): ("b", "x:int8")})
    assert types.values == [1, 300] and all(type(v) is int for v in types.values)
    assert types == MessageTypes("t:int16", "t", {1: ("a", ""), 300: ("b", "x:int8")})
    assert json.loads(types.to_json())["types"][1]["tag"] == 300
    with pytest.raises(ValueError, match="outside the range"):
        MessageTypes("t:int8", "t", {np.int64(200): ("a", "")})
    with pytest.raises(TypeError, match="tag values are int"):
        MessageTypes("t:int8", "t", {np.bool_(True): ("a", "")})
    assert MessageTypes("t:string", "t", {np.str_("T"): ("a", "")}).values == ["T"]


def test_metadata_columns_clash_with_a_type_field(tmp_path: Path) -> None:
    types = MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("a", "_index:int32"), 2: ("b", "")})
    _write(tmp_path / "j", [_msg(0, 1, struct.pack("<i", 5)), _msg(1, 2)])
    assert pychro.read_tables(tmp_path / "j", types)["a"].column("_index").to_pylist() == [5]
    with pytest.raises(ValueError, match=r"metadata columns \['_index'\] clash with fields .* in type 'a'"):
        pychro.read_tables(tmp_path / "j", types, index=True)


def test_cli_unknown_tags(java_feed: Any, tmp_path: Path) -> None:
    """head/tail --types take --unknown like export; the advice in the error names the CLI's option."""
    no_heartbeat = MessageTypes(FEED.header, FEED.tag, {FEED.value(n): (n, _own(n)) for n in FEED.names[:3]})
    types = tmp_path / "types.json"
    types.write_text(no_heartbeat.to_json())
    journal = str(java_feed.journal)
    for cmd in ("head", "tail", "export"):
        out = ["--to", str(tmp_path / cmd)] if cmd == "export" else ["-n", "2000"]
        failed = _cli(cmd, journal, "--types", str(types), *out)
        assert failed.returncode == 1 and "use --unknown skip to read past" in failed.stderr, (cmd, failed.stderr)
        ok = _cli(cmd, journal, "--types", str(types), "--unknown", "skip", *out)
        assert ok.returncode == 0, (cmd, ok.stderr)
        if cmd != "export":
            beats = sum(1 for d in (java_feed.dump[:2000] if cmd == "head" else java_feed.dump[-2000:])
                        if d["body"][8] == 4)
            assert len(ok.stdout.splitlines()) == 2000 - beats and f"and {beats} of no listed type" in ok.stderr
    wrong = _cli("tail", journal, "--schema", "ts:int64", "--unknown", "skip")
    assert wrong.returncode == 2 and "--unknown is for --types" in wrong.stderr  # a bad argument


def _own(name: str) -> str:
    return str(pychro.Schema(FEED.schema(name).fields[len(FEED.header.fields):])) if FEED.columns(name)[1:] else ""


def test_padding_in_the_header_and_the_types(tmp_path: Path) -> None:
    """Anonymous skip<N> padding in the header and in a type is no name clash, a type may be padding alone, and
    the JSON keeps both; a type with no column is read with index=True (else refused, as read_table does)."""
    types = MessageTypes("skip4,t:int8", "t", {1: ("a", "skip2,x:int8"), 2: ("b", "skip3")})
    assert [d["fields"] for d in types.to_dict()["types"]] == ["skip2,x:int8", "skip3"]
    assert MessageTypes.from_json(types.to_json()) == types
    assert str(types.schema("b")) == "skip4,t:int8,skip3" and types.columns("b") == []
    with pytest.raises(ValueError, match="field 't' is also a header field"):
        MessageTypes("skip4,t:int8", "t", {1: ("a", "t:int16")})
    _write(tmp_path / "j", [bytes([0, 0, 0, 0, 1 + i % 2, 0, 0, i]) if i % 2 == 0 else bytes([0, 0, 0, 0, 2, 9, 9, 9])
                            for i in range(5)])
    got = pychro.read_tables(tmp_path / "j", types, index=True)
    assert got["a"].column("x").to_pylist() == [0, 2, 4] and got["b"].num_rows == 2
    with pytest.raises(ValueError, match="message type 'b' has no column"):
        pychro.read_tables(tmp_path / "j", types)


def test_from_json_text_that_is_not_an_object() -> None:
    with pytest.raises(ValueError, match=r"an object with 'header', 'tag' and 'types', got \[1, 2\]"):
        MessageTypes.from_json("[1, 2]")
    for text in ("null", "3", '"x"'):  # JSON, though not "{...}" or "[...]": not taken for a missing file's name
        with pytest.raises(ValueError, match=f"an object with 'header', 'tag' and 'types', got {text}"):
            MessageTypes.from_json(text)
    with pytest.raises(ValueError, match="need 'header', 'tag' and 'types'"):
        MessageTypes.from_json('{"header": "ts:int64"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        MessageTypes.from_json("[" * 100_000)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc")
@pytest.mark.parametrize("after_mib", [1, 64])
def test_a_streaming_read_of_types_gives_pages_back(tmp_path: Path, monkeypatch: Any, after_mib: int) -> None:
    """Message types are decoded in one pass, which gives back the pages it read past the read's first
    RELEASE_AFTER bytes, as a read of one schema does."""
    from pychro.frames import api

    from .test_safety import _resident_kib

    monkeypatch.setattr(api, "RELEASE_AFTER", after_mib << 20)
    n = 100_000  # about 5 MiB of journal
    types = MessageTypes("ts:timestamp_ns,type:int8,p:int64,q:int64,r:int64", "type",
                         {1: ("a", "x:int32"), 2: ("b", "y:float64")})
    kind = np.arange(n) % 3 == 0
    ts = T0 + np.arange(n)

    def frame(sel: Any, name: str, values: Any) -> Any:
        m = int(np.count_nonzero(sel))
        return pa.table({"ts": pa.array(ts[sel], pa.timestamp("ns", tz="UTC")), "p": np.zeros(m, np.int64),
                         "q": np.zeros(m, np.int64), "r": np.zeros(m, np.int64), name: values})

    path = tmp_path / "j"
    pychro.write_frames({"a": frame(kind, "x", np.arange(n, dtype=np.int32)[kind]),
                         "b": frame(~kind, "y", np.arange(n)[~kind] / 2)}, path, types, date="2024-01-02")
    seen = 0
    for _, batch in pychro.iter_batches(path, types, batch_rows=4096, threads=1):
        seen += batch.num_rows
        resident = _resident_kib(path)  # the data file is mapped until the iterator ends
    assert seen == n
    if after_mib == 1:
        assert resident < 2048  # the first MiB, and what the last batches read
    else:
        assert resident > 4096  # all of it
