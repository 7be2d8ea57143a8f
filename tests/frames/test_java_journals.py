"""read_table against journals written by Java Chronicle 3.4.0 and 3.6.6 (tests/data/java/README.md)."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import pychro
from pychro import JournalNotFoundError, SchemaMismatchError
from pychro.frames import ReadStats, read_table

from ._util import assert_same, row_api_read

SCHEMA_366 = "w:int8,i:int32,l:int64,d:float64,s:string,c:char,a:stopbit,b:stopbit"
DAY1 = 16487 << 40  # first full index of 20150221
DAY2 = 16488 << 40


def test_366_equals_the_java_readers_dump(java_3_6_6: Any) -> None:
    stats = ReadStats()
    table = read_table(java_3_6_6.journal, SCHEMA_366, index=True, stats=stats)
    expected = java_3_6_6.expected
    assert table.num_rows == len(expected) == 3000
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    assert cols["_index"] == [e["index"] for e in expected]
    for name in ("w", "i", "l", "s", "a", "b"):
        assert cols[name] == [e[name] for e in expected], name
    assert cols["c"] == [chr(e["c"]) for e in expected]
    assert [struct.pack(">d", d).hex() for d in cols["d"]] == [e["d_bits"] for e in expected]
    # every body is exactly this schema: nothing remains after the last field
    assert all(e["rem"] == 0 for e in expected)
    # 300 messages carry U+1F600 as a surrogate pair (CESU-8): the counted slow path
    assert stats.slow_path_strings == 300
    assert stats.rows == 3000 and stats.skipped_rows == 0 and stats.replaced_surrogates == 0
    assert sum(s is None for s in cols["s"]) == 300 and cols["s"].count("") == 300
    assert sum("\U0001f600" in s for s in cols["s"] if s) == 300


def test_366_equals_the_row_api(java_3_6_6: Any) -> None:
    table = read_table(java_3_6_6.journal, SCHEMA_366, index=True)
    assert_same(table, row_api_read(java_3_6_6.journal, SCHEMA_366), SCHEMA_366)


def test_366_projection_and_metadata(java_3_6_6: Any) -> None:
    expected = java_3_6_6.expected
    table = read_table(java_3_6_6.journal, SCHEMA_366, columns=["b", "s", "w"], metadata=("seq", "cycle", "index"))
    assert table.column_names == ["_index", "_cycle", "_seq", "b", "s", "w"]
    assert table.column("_seq").to_pylist() == list(range(3000))
    assert set(table.column("_cycle").to_pylist()) == {java_3_6_6.expected[0]["index"] >> 40}
    assert table.column("b").to_pylist() == [e["b"] for e in expected]
    assert table.column("s").to_pylist() == [e["s"] for e in expected]
    # columns after variable fields only; the strings are skipped over, not built
    only_tail = read_table(java_3_6_6.journal, SCHEMA_366, columns=["a"])
    assert only_tail.column("a").to_pylist() == [e["a"] for e in expected]


def test_366_per_writer_sequences(java_3_6_6: Any) -> None:
    """The three writers interleave in the index; each one's own sequence is intact."""
    table = read_table(java_3_6_6.journal, SCHEMA_366, columns=["w", "i"])
    for w in range(3):
        mine = [i for ww, i in zip(table.column("w").to_pylist(), table.column("i").to_pylist()) if ww == w]
        assert mine == list(range(1000))


@pytest.mark.parametrize("batch_rows", [1, 7, 1000, 4096])
@pytest.mark.parametrize("threads", [1, 2])
def test_366_batch_sizes_and_threads(java_3_6_6: Any, batch_rows: int, threads: int) -> None:
    table = read_table(java_3_6_6.journal, SCHEMA_366, batch_rows=batch_rows, threads=threads)
    assert table.column("s").to_pylist() == [e["s"] for e in java_3_6_6.expected]
    assert table.column("l").to_pylist() == [e["l"] for e in java_3_6_6.expected]


def test_366_wrong_thread_id_bits_names_the_missing_file(java_3_6_6: Any) -> None:
    with pytest.raises(JournalNotFoundError, match="thread_id_bits=16"):
        read_table(java_3_6_6.journal, SCHEMA_366, thread_id_bits=15)


# -- 3.4.0: messages of different shapes ---------------------------------------------------------------------
def test_340_mismatch_names_the_first_bad_seq(java_3_4_0: Path) -> None:
    with pytest.raises(SchemaMismatchError) as info:
        read_table(java_3_4_0, "cmd:int32", thread_id_bits=16)
    err = info.value
    assert (err.cycle, err.seq, err.index) == (16487, 1, DAY1 + 1)  # type: ignore[attr-defined]
    assert err.length == 12  # type: ignore[attr-defined]  # int32 + float64
    assert "decodes 4 bytes but the header says 12" in str(err)
    assert "data-" in err.path  # type: ignore[attr-defined]


def test_340_mismatch_names_the_field_running_past_the_end(java_3_4_0: Path) -> None:
    with pytest.raises(SchemaMismatchError) as info:
        read_table(java_3_4_0, "cmd:int32,x:float64,s:string", thread_id_bits=16)
    assert info.value.seq == 0 and info.value.column in ("x", "s")  # type: ignore[attr-defined]


def test_340_skip_keeps_the_matching_shape(java_3_4_0: Path) -> None:
    stats = ReadStats()
    table = read_table(java_3_4_0, "cmd:int32", errors="skip", index=True, thread_id_bits=16, stats=stats)
    assert table.to_pydict() == {"_index": [DAY1, DAY2], "cmd": [0, 0]}
    assert stats.skipped_rows == 18 and stats.first_bad_index == DAY1 + 1 and not stats.truncated
    # cmd 1 messages: int32 + float64 (1.0 / cmd)
    one = read_table(java_3_4_0, "cmd:int32,x:float64", errors="skip", thread_id_bits=16)
    assert one.to_pydict() == {"cmd": [1, 1], "x": [1.0, 1.0]}
    # cmd 2: int32, float64, string "2="
    two = read_table(java_3_4_0, "cmd:int32,x:float64,s:string", errors="skip", thread_id_bits=16)
    assert two.to_pydict() == {"cmd": [2, 2], "x": [0.5, 0.5], "s": ["2=", "2="]}


def test_340_truncate_stops_before_the_first_bad_row(java_3_4_0: Path) -> None:
    stats = ReadStats()
    table = read_table(java_3_4_0, "cmd:int32", errors="truncate", index=True, thread_id_bits=16, stats=stats)
    assert table.to_pydict() == {"_index": [DAY1], "cmd": [0]}
    assert stats.truncated and stats.first_bad_index == DAY1 + 1 and stats.skipped_rows == 0
    batches = list(pychro.iter_batches(java_3_4_0, "cmd:int32", errors="truncate", thread_id_bits=16))
    assert sum(b.num_rows for b in batches) == 1


def test_340_full_shape_of_cmd_7(java_3_4_0: Path) -> None:
    """cmd 7: int32, float64, string, uint8, int64, char, float64, string (README table)."""
    schema = "cmd:int32,d0:float64,s1:string,u2:uint8,l3:int64,c4:char,d5:float64,s6:string"
    table = read_table(java_3_4_0, schema, errors="skip", thread_id_bits=16)
    row = {"cmd": 7, "d0": 1 / 7, "s1": "7=01234", "u2": 7, "l3": 7 << 32, "c4": "\ud1a9", "d5": 1 / 7, "s6": "7=01234"}
    assert table.to_pylist() == [row, row]


def test_340_dates_and_ranges(java_3_4_0: Path) -> None:
    kw: dict[str, Any] = dict(errors="skip", index=True, thread_id_bits=16)
    assert read_table(java_3_4_0, "cmd:int32", date=dt.date(2015, 2, 21), **kw).column("_index").to_pylist() == [DAY1]
    both = (dt.date(2015, 2, 21), dt.date(2015, 2, 22))
    assert read_table(java_3_4_0, "cmd:int32", date=both, **kw).num_rows == 2
    # a day the journal has no cycle for is an error naming the cycles it has, not an empty table (issue 13)
    with pytest.raises(ValueError, match=r"date=2015-02-23 selects no cycle of this journal.* from 20150221"):
        read_table(java_3_4_0, "cmd:int32", date=dt.date(2015, 2, 23), **kw)
    # full indices: start inclusive, end exclusive
    t = read_table(java_3_4_0, "cmd:int32", start=DAY1 + 3, end=DAY2 + 1, errors="skip", thread_id_bits=16,
                   metadata="seq")
    assert t.to_pydict() == {"_seq": [0], "cmd": [0]}
    mixed = read_table(java_3_4_0, "cmd:int32,x:float64", start=DAY1 + 1, end=DAY1 + 2, thread_id_bits=16)
    assert mixed.to_pydict() == {"cmd": [1], "x": [1.0]}
    # datetimes select rows by the schema's timestamp field (issue 13; tests/test_time_range.py): these messages
    # have none, so a datetime bound is an error instead of whole cycles
    with pytest.raises(ValueError, match="no timestamp_ms/us/ns field"):
        read_table(java_3_4_0, "cmd:int32", start=dt.datetime(2015, 2, 21, 12, tzinfo=dt.UTC),
                   end=dt.datetime(2015, 2, 22, tzinfo=dt.UTC), **kw)
    # ... and date= (a date or an ISO string) selects the cycles of those days
    assert read_table(java_3_4_0, "cmd:int32", date=("2015-02-21", "2015-02-22"), **kw).num_rows == 2


def test_340_empty_selection_has_the_schema(java_3_4_0: Path) -> None:
    # a cycle that exists, but no message in the range
    t = read_table(java_3_4_0, "cmd:int32,s:string", start=DAY1 + 100, end=DAY1 + 200, thread_id_bits=16, index=True)
    assert t.num_rows == 0
    assert t.schema.types == [pa.int64(), pa.int32(), pa.string()]
