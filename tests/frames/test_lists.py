"""Repeated groups (``list<...>``): a stop-bit count, then that many entries of fixed-size fields. Read against
the book messages Java Chronicle 3.5.3 wrote (tests/data/java/README.md, the feed), written byte for byte as
Java and the row writer write them, and hostile counts."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import ref_stop_bit, ref_stop_bit_in, walk_records, write_bodies  # tests/helpers.py: from the spec

import pychro
from pychro import SchemaMismatchError
from pychro.frames import _decode as C
from pychro.frames import read_table
from pychro.frames import schema as S

from .test_kernels import decode as kernel_decode

BOOK = "ts:timestamp_ns,type:int8,sym:string,levels:list<px:float64,qty:int32>"
T0 = 1709596800000000000  # the feed's ts of message k is T0 + k * 1000003
LEVEL = pa.struct([("px", pa.float64()), ("qty", pa.int32())])


def _k(ts_ns: int) -> int:
    return (ts_ns - T0) // 1000003


def _book_levels(k: int) -> list[dict[str, Any]]:
    return [{"px": 100.0 + j, "qty": j * 10 + k % 7} for j in range(k % 6)]


def _bodies(journal: Path) -> list[bytes]:
    """Every message body of a one-writer journal, in data file order."""
    (data,) = [p for p in journal.rglob("data-*")]
    raw = data.read_bytes()
    return [raw[pos + 4 : pos + 4 + length] for pos, length in walk_records(data)]


def test_schema_forms() -> None:
    s = S.Schema("a:int8,levels:list<px:float64,skip3,ok:bool>,fills:list<int64>")
    assert str(s) == "a:int8,levels:list<px:float64,skip3,ok:bool>,fills:list<int64>"
    assert s["levels"].type.entry_size == 12 and s["fills"].type.entry_size == 8
    arrow = s.to_arrow()
    assert arrow.field("levels").type == pa.list_(pa.struct([("px", pa.float64()), ("ok", pa.bool_())]))
    assert arrow.field("fills").type == pa.list_(pa.int64())
    assert S.Schema.from_arrow(arrow) == s and S.Schema.from_json(s.to_json()) == s
    plain = pa.schema([("l", pa.list_(LEVEL)), ("f", pa.large_list(pa.int16()))])  # no pychro metadata
    assert str(S.Schema(plain)) == "l:list<px:float64,qty:int32>,f:list<int16>"


@pytest.mark.parametrize("bad, words", [
    ("x:list<string>", "fixed-size"), ("x:list<a:stopbit>", "fixed-size"), ("x:list<a:char>", "fixed-size"),
    ("x:list<a:list<int8>>", "do not nest"), ("x:list<skip4>", "not a skip"), ("x:list<int8", "unbalanced"),
    ("x:list<a:int8,a:int16>", "duplicate"), ("x:list<int8,int16>", "name:type"), ("x:list<>", "unknown"),
])
def test_bad_list_types(bad: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        S.Schema(bad)


def test_java_books_read(java_feed: Any) -> None:
    """The 600 books of the Java feed, levels included, in index order. Other types are skipped
    as mismatches or dropped by their tag: a book schema cannot hide a book."""
    table = read_table(java_feed.journal, BOOK, errors="skip", index=True)
    books = table.filter(pa.compute.equal(table.column("type"), 3))
    want = [d for d in java_feed.dump if d["body"][8] == 3]
    assert books.num_rows == len(want) == 600
    assert books.column("_index").to_pylist() == [d["index"] for d in want]
    ks = [_k(t.value) for t in books.column("ts")]
    assert books.column("sym").to_pylist() == [f"BOOK-{k % 3}" for k in ks]
    assert books.column("levels").to_pylist() == [_book_levels(k) for k in ks]
    assert books.column("levels").type == pa.list_(LEVEL)
    assert {k % 6 for k in ks} == {0, 2, 4}  # books are k % 10 == 4: 0, 2 and 4 levels (empty groups too)


def test_java_books_projection(java_feed: Any) -> None:
    full = read_table(java_feed.journal, BOOK, errors="skip")
    for columns in (["levels"], ["sym"], ["levels", "ts"]):
        part = read_table(java_feed.journal, BOOK, errors="skip", columns=columns)
        assert part.equals(full.select(columns)), columns


def test_written_books_are_javas_bytes(java_feed: Any, tmp_path: Path) -> None:
    """write_frame of the books' values writes the bodies Java wrote, byte for byte, and the row writer's."""
    want = [d["body"] for d in java_feed.dump if d["body"][8] == 3]
    ks = [_k(int.from_bytes(b[:8], "little")) for b in want]
    table = pa.table({
        "ts": pa.array([T0 + k * 1000003 for k in ks], pa.timestamp("ns", tz="UTC")),
        "type": pa.array([3] * len(ks), pa.int8()),
        "sym": [f"BOOK-{k % 3}" for k in ks],
        "levels": pa.array([_book_levels(k) for k in ks], pa.list_(LEVEL)),
    })
    pychro.write_frame(table, tmp_path / "bulk", BOOK, date="2024-03-05")
    assert _bodies(tmp_path / "bulk") == want
    with pychro.VanillaChronicleWriter(str(tmp_path / "rows"), clock=lambda: T0 // 1_000_000) as chron:
        a = chron.get_appender()
        for k in ks:
            a.write_long(T0 + k * 1000003)
            a.write_byte(3)
            a.write_string(f"BOOK-{k % 3}")
            a.write_stop_bit(k % 6)
            for lv in _book_levels(k):
                a.write_double(lv["px"])
                a.write_int(lv["qty"])
            a.finish()
    assert _bodies(tmp_path / "rows") == want


def test_plain_lists_bools_timestamps_and_slices(tmp_path: Path) -> None:
    schema = "id:int32,f:list<int64>,g:list<on:bool,skip2,at:timestamp_ms,x:float32>"
    n = 3000
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, n)  # past the first guess of the entries' buffer
    f = [list(range(i, i + c)) for i, c in enumerate(counts)]
    g = [[{"on": bool((i + j) % 2), "at": 1_700_000_000_000 + j, "x": float(j) / 4} for j in range(c % 5)]
         for i, c in enumerate(counts)]
    table = pa.table({
        "id": pa.array(range(n), pa.int32()),
        "f": pa.array(f, pa.list_(pa.int64())),
        "g": pa.array(g, pa.list_(pa.struct([("on", pa.bool_()), ("at", pa.timestamp("ms", tz="UTC")),
                                              ("x", pa.float32())]))),
    })
    part = table.slice(7, n - 20)  # list offsets that do not start at 0
    pychro.write_frame(part, tmp_path / "j", schema, date="2024-03-05")
    for threads in (1, None):
        back = read_table(tmp_path / "j", schema, threads=threads, batch_rows=1000)
        assert back.equals(part.cast(back.schema)), threads
    first = _bodies(tmp_path / "j")[0]
    c = int(counts[7])
    # id, f's count and values, g's count and its first entry (Java's 'Y' for true, the skip as zeros)
    sb, m = ref_stop_bit(c), ref_stop_bit(c % 5)
    values = b"".join(struct.pack("<q", 7 + j) for j in range(c))
    entry = (b"Y" if 7 % 2 else b"\x00") + b"\x00\x00" + struct.pack("<qf", 1_700_000_000_000, 0.0)
    assert first[: 4 + len(sb) + 8 * c + len(m)] == struct.pack("<i", 7) + sb + values + m
    assert first[4 + len(sb) + 8 * c + len(m) :][:15] == (entry if c % 5 else b"")
    assert len(first) == 4 + len(sb) + 8 * c + len(m) + 15 * (c % 5)


def test_bool_entries_are_java_y(tmp_path: Path) -> None:
    table = pa.table({"b": pa.array([[True, False, True]], pa.list_(pa.bool_()))})
    pychro.write_frame(table, tmp_path / "j", "b:list<bool>", date="2024-03-05")
    assert _bodies(tmp_path / "j") == [b"\x03Y\x00Y"]


def test_nulls(tmp_path: Path) -> None:
    lists = pa.array([[1, 2], None], pa.list_(pa.int64()))
    with pytest.raises(ValueError, match=r"row 1: column 'f' is null; a repeated group has no null"):
        pychro.write_frame(pa.table({"f": lists}), tmp_path / "a", "f:list<int64>", date="2024-03-05")
    entries = pa.array([[1], [2, None]], pa.list_(pa.int64()))
    with pytest.raises(ValueError, match=r"row 1: column 'f' has a null entry"):
        pychro.write_frame(pa.table({"f": entries}), tmp_path / "b", "f:list<int64>", date="2024-03-05")
    floats = pa.array([[1.5, None]], pa.list_(pa.float64()))  # a float null is NaN, as in a plain field
    pychro.write_frame(pa.table({"f": floats}), tmp_path / "c", "f:list<float64>", date="2024-03-05")
    assert np.isnan(read_table(tmp_path / "c", "f:list<float64>").column("f")[0].values[1].as_py())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written before the check


def test_wrong_column_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="take lists"):
        pychro.write_frame(pa.table({"f": [1, 2]}), tmp_path / "a", "f:list<int64>", date="2024-03-05")
    wrong = pa.array([[{"px": 1.0}]], pa.list_(pa.struct([("px", pa.float64())])))
    with pytest.raises(ValueError, match="no field 'qty'"):
        pychro.write_frame(pa.table({"f": wrong}), tmp_path / "b", "f:list<px:float64,qty:int32>", date="2024-03-05")


def _journal(tmp_path: Path, bodies: list[bytes]) -> Path:
    return write_bodies(tmp_path / "hostile", bodies, T0 // 1_000_000)


def test_hostile_counts(tmp_path: Path) -> None:
    """Counts that are negative, run past the body, near 2**62, cut short, or leave bytes over: mismatches
    (skipped with errors='skip', named with errors='raise'); good rows around them are read."""
    entry = struct.pack("<d", 1.5)
    good = b"\x01" + ref_stop_bit(2) + entry * 2
    bodies = [
        good,
        b"\x02" + ref_stop_bit(-1),  # negative
        b"\x03" + ref_stop_bit(3) + entry * 2,  # past the body
        b"\x04" + ref_stop_bit(1 << 62) + entry,  # huge
        b"\x05" + b"\xff" * 12,  # no stop within 10 bytes
        b"\x06" + ref_stop_bit(1) + entry + b"\x00",  # a byte over
        b"\x07" + ref_stop_bit(0),
        b"\x08" + ref_stop_bit(1) + entry[:5],  # an entry cut short
        good,
    ]
    path = _journal(tmp_path, bodies)
    schema = "id:int8,v:list<float64>"
    table = read_table(path, schema, errors="skip")
    assert table.column("id").to_pylist() == [1, 7, 1]
    assert table.column("v").to_pylist() == [[1.5, 1.5], [], [1.5, 1.5]]
    with pytest.raises(SchemaMismatchError, match="field 'v' holds no valid entry count"):
        read_table(path, schema)
    truncated = read_table(path, schema, errors="truncate")
    assert truncated.column("id").to_pylist() == [1]
    with pytest.raises(SchemaMismatchError, match="runs past the end"):
        read_table(_journal(tmp_path / "b", [good, bodies[2]]), schema)


def test_list_in_the_last_bytes_of_a_mapping(tmp_path: Path) -> None:
    """A body whose entries end exactly at the end of the data the reader maps: no read past it."""
    pychro.write_frame(pa.table({"v": pa.array([[7] * 1000], pa.list_(pa.int64()))}), tmp_path / "j",
                       "v:list<int64>", date="2024-03-05")
    data = next((tmp_path / "j").rglob("data-*"))
    size = 4 + 2 + 8000
    with open(data, "r+b") as fh:
        fh.truncate(size)
    assert read_table(tmp_path / "j", "v:list<int64>").column("v").to_pylist() == [[7] * 1000]


def _ref_list_row(body: bytes) -> tuple[int, list[int], int] | None:
    """Reference decode of ``a:int8,v:list<x:int16,skip1>,b:int8`` from the spec, or None for a mismatch."""
    if not body:
        return None
    a = struct.unpack("<b", body[:1])[0]
    pos = 1
    got = ref_stop_bit_in(body, pos)
    if got is None:
        return None
    count, used = got
    pos += used
    if count < 0 or pos + 3 * count > len(body):
        return None
    xs = [struct.unpack_from("<h", body, pos + 3 * j)[0] for j in range(count)]
    pos += 3 * count
    if pos + 1 != len(body):
        return None
    return a, xs, struct.unpack("<b", body[pos:])[0]


@given(st.lists(st.one_of(
    st.tuples(st.integers(-128, 127), st.lists(st.integers(-(1 << 15), (1 << 15) - 1), max_size=12),
              st.integers(-128, 127)).map(
        lambda t: struct.pack("<b", t[0]) + ref_stop_bit(len(t[1])) + b"".join(struct.pack("<hx", x) for x in t[1])
        + struct.pack("<b", t[2])),
    st.binary(max_size=40),  # anything: counts of any size and sign, cut entries, bytes over
), min_size=1, max_size=60))
def test_list_decode_matches_the_reference(bodies: list[bytes]) -> None:
    """Every row's status and values against a decoder written from the spec, whatever the bytes (also run
    under AddressSanitizer by tests/test_sanitizers.py)."""
    schema = "a:int8,v:list<x:int16,skip1>,b:int8"
    run, cols = kernel_decode(schema, bodies)
    for row, body in enumerate(bodies):
        want = _ref_list_row(body)
        assert (run.status[row] == C.ST_OK) == (want is not None), (row, body.hex())
        if want is not None:
            got = (cols["a"][row].as_py(), [e["x"] for e in cols["v"][row].as_py()], cols["b"][row].as_py())
            assert got == want, row


def test_csv_export_names_the_list_column(tmp_path: Path) -> None:
    pychro.write_frame(pa.table({"a": [1], "v": pa.array([[1]], pa.list_(pa.int64()))}), tmp_path / "j",
                       "a:int64,v:list<int64>", date="2024-03-05")
    with pytest.raises(ValueError, match="CSV has no list columns: column 'v' is list<int64>"):
        pychro.to_csv(tmp_path / "j", "a:int64,v:list<int64>", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    pychro.to_csv(tmp_path / "j", "a:int64,v:list<int64>", tmp_path / "out.csv", columns=["a"])
    assert (tmp_path / "out.csv").read_text().split() == ['"a"', "1"]
