"""Helpers for the frames tests: write rows with the row writer, read them back with the row reader.

The row API is the reference: ``read_table`` must return exactly what these loops read, field by field.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pychro import VanillaChronicleReader, VanillaChronicleWriter, VanillaConfig
from pychro.frames.schema import Schema

WRITE = {
    "int8": "write_byte", "uint8": "write_unsigned_byte", "int16": "write_short", "uint16": "write_unsigned_short",
    "int32": "write_int", "uint32": "write_unsigned_int", "int64": "write_long", "float32": "write_float",
    "float64": "write_double", "bool": "write_boolean", "char": "write_char", "stopbit": "write_stop_bit",
    "string": "write_string", "utf": "write_utf", "timestamp_ms": "write_long", "timestamp_us": "write_long",
    "timestamp_ns": "write_long",
}
READ = {
    "int8": "read_byte", "uint8": "read_unsigned_byte", "int16": "read_short", "uint16": "read_unsigned_short",
    "int32": "read_int", "uint32": "read_unsigned_int", "int64": "read_long", "float32": "read_float",
    "float64": "read_double", "bool": "read_boolean", "char": "read_char", "stopbit": "read_stop_bit",
    "string": "read_string", "utf": "read_utf", "timestamp_ms": "read_long", "timestamp_us": "read_long",
    "timestamp_ns": "read_long",
}


def write_rows(appender: Any, schema: Schema, rows: Sequence[Sequence[Any]]) -> list[int]:
    """Write each row (one value per schema field; bytes for skips) and finish it; returns the indices."""
    out = []
    for row in rows:
        for f, value in zip(schema.fields, row):
            if f.kind == "skip":
                appender.write_bytes(value)
            else:
                getattr(appender, WRITE[f.type.name])(value)
        out.append(appender.finish())
    return out


def write_journal(
    path: Path, schema: Schema | str, rows: Sequence[Sequence[Any]], config: VanillaConfig | None = None, **kw: Any
) -> list[int]:
    schema = Schema(schema)
    with VanillaChronicleWriter(path, config=config, **kw) as writer:
        return write_rows(writer.get_appender(), schema, rows)


def row_api_read(
    path: Path, schema: Schema | str, config: VanillaConfig | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """Every message as a dict read with the row reader (``_index`` included), skips passed over."""
    schema = Schema(schema)
    out = []
    with VanillaChronicleReader(path, config=config, **kw) as reader:
        for e in reader:
            row: dict[str, Any] = {"_index": e.index}
            for f in schema.fields:
                if f.kind == "skip":
                    e.read_bytes(f.type.size)
                else:
                    row[f.name] = getattr(e, READ[f.type.name])()
            out.append(row)
    return out


def lone_surrogates_replaced(value: Any) -> Any:
    """What an Arrow string can hold of a row-API str: a lone surrogate becomes U+FFFD (counted by the reader)."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    return value


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Table rows as dicts, timestamps as their int64 counts (extreme values do not fit datetime)."""
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        cols[name] = col.to_pylist()
    return [dict(zip(cols, values)) for values in zip(*cols.values())]


def same_value(type_name: str, got: Any, want: Any) -> bool:
    """Field equality as the row API defines it (floats bit for bit, chars and strings after U+FFFD)."""
    if type_name == "float64":
        return struct.pack("<d", got) == struct.pack("<d", want)
    if type_name == "float32":
        return (math.isnan(got) and math.isnan(want)) or struct.pack("<f", got) == struct.pack("<f", want)
    if type_name in ("string", "utf", "char"):
        return got == lone_surrogates_replaced(want)
    if type_name == "bool":
        return got is want
    return type(got) is int and got == want


def assert_same(table: pa.Table, expected: list[dict[str, Any]], schema: Schema | str) -> None:
    schema = Schema(schema)
    got = table_rows(table)
    assert len(got) == len(expected)
    types = {f.name: f.type.name for f in schema.fields}
    types["_index"] = "int64"
    for i, (g, w) in enumerate(zip(got, expected)):
        for name, value in g.items():
            assert same_value(types[name], value, w[name]), (i, name, value, w[name])


def run_script(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (a hang or a thread stuck for good ends with it, killed at the timeout)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"no end within {timeout} s: {out}{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
