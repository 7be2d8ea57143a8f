"""Schema: every way to build one, validation, the one type table, and Arrow/JSON/Parquet round trips."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pychro
from pychro import _fields as F
from pychro.frames.schema import TYPES, Field, Schema, field_type

COMPACT = "ts:timestamp_ms,px:float64,qty:int32,skip3,sym:string"


def test_lazy_name_on_the_package() -> None:
    assert pychro.Schema is Schema


def test_compact_string() -> None:
    s = Schema(COMPACT)
    assert s.names == ["ts", "px", "qty", "sym"]
    assert [f.type.name for f in s.fields] == ["timestamp_ms", "float64", "int32", "skip3", "string"]
    assert str(s) == COMPACT
    assert s.fixed_size is None
    assert Schema(" a : int8 , b:uint16 ").names == ["a", "b"]


def test_dict_pairs_and_schema_inputs_agree() -> None:
    pairs = [("a", "int8"), ("b", "stopbit"), (None, "skip2"), ("c", "char")]
    s = Schema(pairs)
    assert Schema({"a": "int8", "b": "stopbit", "": "skip2", "c": "char"}) == s
    assert Schema(s) == s
    assert Schema([Field("a", field_type("int8")), ("b", "stopbit"), ("", "skip2"), ("c", "char")]) == s
    assert hash(Schema(pairs)) == hash(s)


def test_fixed_size() -> None:
    assert Schema("a:int64,b:float64,c:int32,d:bool").fixed_size == 21
    assert Schema("a:int8,skip7,c:char,t:timestamp_ns").fixed_size == 1 + 7 + 2 + 8


def test_sizes_come_from_the_row_api_table() -> None:
    for name, t in TYPES.items():
        if name in F.FIXED:
            assert (t.size, t.dtype) == (F.FIXED[name].size, F.FIXED[name].dtype)
    assert TYPES["timestamp_us"].size == 8 and TYPES["string"].size == 0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a:int65", "unknown field type 'int65'.*did you mean int64"),
        ("a:int8,a:int16", "duplicate field name 'a'"),
        ("a:int8,,b:int8", "empty item"),
        ("a", "needs the form name:type"),
        ("skip4", "at least one field that is not a skip"),
        ("a:skip0", "skip size"),
        ([], "at least one field"),
        ([("", "int8")], "needs a name"),
        ("a:timestamp_s", "unknown field type"),
    ],
)
def test_invalid_schemas(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schema(spec)  # type: ignore[arg-type]


def test_wrong_input_kinds() -> None:
    with pytest.raises(TypeError):
        Schema(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Schema([("a", "int8", "extra")])
    with pytest.raises(TypeError):
        Schema([(1, "int8")])


def test_arrow_types() -> None:
    arrow = Schema(
        "a:int8,b:int16,c:int32,d:int64,e:uint8,f:uint16,g:uint32,h:float32,i:float64,j:bool,k:char,"
        "l:stopbit,m:string,n:utf,o:timestamp_ms,p:timestamp_us,q:timestamp_ns,skip1"
    ).to_arrow()
    assert arrow.types == [
        pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.float32(),
        pa.float64(), pa.bool_(), pa.string(), pa.int64(), pa.string(), pa.string(),
        pa.timestamp("ms", tz="UTC"), pa.timestamp("us", tz="UTC"), pa.timestamp("ns", tz="UTC"),
    ]
    assert arrow.field("k").metadata == {b"pychro.type": b"char"}


def test_json_and_dict_round_trip() -> None:
    s = Schema(COMPACT)
    assert Schema.from_json(s.to_json()) == s
    assert Schema.from_dict(s.to_dict()) == s
    assert s.to_dict()["fields"][3] == {"name": "_skip3", "type": "skip3"}
    with pytest.raises(ValueError, match="version"):
        Schema.from_dict({"version": 99, "fields": []})
    with pytest.raises(ValueError, match="fields"):
        Schema.from_dict({"version": 1})


def test_arrow_round_trip_keeps_skips() -> None:
    s = Schema(COMPACT)
    assert Schema.from_arrow(s.to_arrow()) == s
    assert Schema(s.to_arrow()) == s


def test_arrow_field_metadata_without_schema_metadata() -> None:
    arrow = Schema("c:char,u:utf,l:stopbit").to_arrow().remove_metadata()
    assert Schema(arrow) == Schema("c:char,u:utf,l:stopbit")


def test_arrow_inference_without_metadata() -> None:
    arrow = pa.schema(
        [("a", pa.int16()), ("s", pa.large_string()), ("t", pa.timestamp("us", tz="UTC")), ("n", pa.timestamp("ns")),
         ("b", pa.bool_()), ("x", pa.string())]
    )
    assert str(Schema(arrow)) == "a:int16,s:string,t:timestamp_us,n:timestamp_ns,b:bool,x:string"


@pytest.mark.parametrize(
    "field, message",
    [
        (pa.field("a", pa.uint64()), "no pychro type reads Arrow type uint64"),
        (pa.field("t", pa.timestamp("s")), "no pychro type"),
        (pa.field("t", pa.timestamp("ms", tz="Europe/Paris")), "read as UTC"),
        (pa.field("c", pa.int32(), metadata={b"pychro.type": b"char"}), "needs Arrow type string"),
    ],
)
def test_arrow_inference_errors(field: pa.Field, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schema(pa.schema([field]))


def test_schema_survives_parquet(tmp_path: Path) -> None:
    s = Schema(COMPACT)
    table = pa.Table.from_pylist([], schema=s.to_arrow())
    pq.write_table(table, tmp_path / "x.parquet")
    assert Schema(pq.read_schema(tmp_path / "x.parquet")) == s


def test_access() -> None:
    s = Schema(COMPACT)
    assert s["px"].type.name == "float64" and "px" in s and "nope" not in s
    assert len(s) == 5 and next(f.name for f in s) == "ts"
    with pytest.raises(KeyError, match="no field 'nope'"):
        s["nope"]
    assert repr(s) == f"Schema({COMPACT!r})"
