"""CSV import (pychro/frames/csv_import.py) on files pyarrow's reader gets wrong or names badly: line breaks in
quoted values, a quoted "\\r\\n" on a block boundary, ragged rows, a file cut inside a quoted value, empty lines
before a one-column header. Each case was reported by a breaker pass; each test fails on the code before it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import pychro
import pychro.frames.csv_import as ci
from pychro.frames.encode import RowError
from pychro.frames.export import import_file, load_file, to_csv

BLOCK = 1 << 20  # pyarrow's CSV block: the import's first reads are this long
_CHECKED = ci.csv_batches  # (the hooks of _on_write_pass wrap it)


def _rows_of(path: Path, schema: str) -> list[tuple[object, ...]]:
    return [tuple(r.values()) for r in pychro.read_table(path, schema).to_pylist()]


def _on_write_pass(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Have ``change`` run as import_file's write pass starts (the check pass has read the file: the CRCs of its
    pieces are recorded)."""
    def hooked(f: ci.CsvFile) -> Any:
        if f.crcs:
            change()
        yield from _CHECKED(f)

    monkeypatch.setattr(ci, "csv_batches", hooked)


def _append(path: Path, data: bytes) -> Callable[[], None]:
    def change() -> None:
        with open(path, "ab") as out:
            out.write(data)
    return change


def test_a_quoted_crlf_on_a_block_boundary_keeps_its_newline(tmp_path: Path) -> None:
    """Arrow drops the "\\n" of a quoted "\\r\\n" when a block ends between the two (silently): the file is
    made so that byte BLOCK - 1 is such a "\\r", and the values must come back whole, read whole or in batches."""
    head = b"n,s\n"
    rows = [b'%d,"a\r\nb"\n' % i for i in range(200_000)]
    data = head + b"".join(rows)
    cr = data.index(b"\r", BLOCK - 20)
    pad = BLOCK - 1 - cr  # lengthen the first value so that a "\r" ends the first block
    data = head + rows[0].replace(b"a", b"a" * (1 + pad), 1) + b"".join(rows[1:])
    assert data[BLOCK - 1 : BLOCK + 1] == b"\r\n"
    (tmp_path / "in.csv").write_bytes(data)
    want = ["a" * (1 + pad) + "\r\nb"] + ["a\r\nb"] * (len(rows) - 1)
    table, _ = load_file(tmp_path / "in.csv", "n:int32,s:string")
    assert table.column("s").to_pylist() == want
    assert import_file(tmp_path / "in.csv", tmp_path / "j", "n:int32,s:string") == len(rows)
    assert [s for _, s in _rows_of(tmp_path / "j", "n:int32,s:string")] == want


def test_values_with_line_breaks_round_trip_through_a_file_of_many_blocks(tmp_path: Path) -> None:
    """to_csv quotes values holding line breaks; the import read a file of more than one block as if each line
    were a row ("Expected 2 columns, got 1")."""
    schema = "n:int32,s:string"
    values = [f"row {i}\nsecond line\r\nthird, \"quoted\"\rend" for i in range(40_000)]
    pychro.write_frame(pa.table({"n": pa.array(range(len(values)), pa.int32()), "s": values}), tmp_path / "j",
                       schema, date="2024-03-05")
    out = tmp_path / "x.csv"
    to_csv(tmp_path / "j", schema, out, date="2024-03-05")
    assert out.stat().st_size > 2 * BLOCK
    assert import_file(out, tmp_path / "k", schema, date="2024-03-05") == len(values)
    assert [s for _, s in _rows_of(tmp_path / "k", schema)] == values
    table, _ = load_file(out, schema)
    assert table.column("s").to_pylist() == values


def test_empty_lines_before_a_one_column_header(tmp_path: Path) -> None:
    """A one-column file reads empty lines as nulls (to_csv writes them so); those before the header are no
    rows, and the header is the first line with text (was a raw ArrowKeyError)."""
    (tmp_path / "in.csv").write_bytes(b"\n\r\n\rs\nabc\n\nd\n")
    table, _ = load_file(tmp_path / "in.csv", "s:string")
    assert table.column("s").to_pylist() == ["abc", None, "d"]
    assert import_file(tmp_path / "in.csv", tmp_path / "j", "s:string") == 3


@pytest.mark.parametrize(("text", "row", "why"), [
    ("a,b\n1,2\n3\n4,5\n", 1, "has 1 values where the header names 2 columns: '3'"),
    ("a,b\n1,2\n\n3,4,5\n", 1, "has 3 values where the header names 2 columns: '3,4,5'"),
    ("a,b\n1,2\n3,x\n4\n", 1, "column 'b': 'x' is not valid for its int32 field"),  # a bad value first
    ("a,b\n1,2\n3\n4,x\n", 1, "has 1 values"),  # a ragged row before a bad value
    ("a,b\n1,2\n,3\n4\n", 1, "column 'a' is null"),  # a write check finds an earlier row
])
def test_ragged_rows_are_named_and_do_not_hide_an_earlier_bad_row(tmp_path: Path, text: str, row: int,
                                                                   why: str) -> None:
    (tmp_path / "in.csv").write_text(text)
    with pytest.raises(RowError) as info:
        import_file(tmp_path / "in.csv", tmp_path / "j", "a:int32,b:int32")
    assert info.value.row == row and why in str(info.value)
    assert not (tmp_path / "j").exists()


def test_a_ragged_row_blocks_later_is_named(tmp_path: Path) -> None:
    rows = ["1,2"] * 300_000
    rows[250_000] = "7"
    (tmp_path / "in.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    with pytest.raises(RowError, match=r"^row 250000: has 1 values where the header names 2 columns"):
        import_file(tmp_path / "in.csv", tmp_path / "j", "a:int32,b:int32")
    with pytest.raises(RowError, match=r"^row 250000: has 1 values"):
        load_file(tmp_path / "in.csv", "a:int32,b:int32")
    assert not (tmp_path / "j").exists()


def test_rows_before_a_bad_value_meet_the_writes_checks_before_a_bad_time(tmp_path: Path) -> None:
    """In a block that does not convert (row 5's 'x'), the rows before it are handed to the write's checks: its
    null int32 in row 1 comes before the bad time in row 3 (the bad time was raised first)."""
    good = "2024-03-05T09:00:00Z"
    rows = [f"{good},1"] * 8
    rows[1], rows[3], rows[5] = f"{good},", "not a time,1", f"{good},x"
    (tmp_path / "in.csv").write_text("ts,q\n" + "\n".join(rows) + "\n")
    with pytest.raises(RowError, match=r"^row 1: column 'q' is null"):
        import_file(tmp_path / "in.csv", tmp_path / "j", "ts:timestamp_ms,q:int32")
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("tail", [b'2,"de\nf', b'2,"de""', b'2,"'])
def test_a_file_cut_inside_a_quoted_value_is_refused(tmp_path: Path, tail: bytes) -> None:
    """pyarrow reads a quoted value that never closes as if it had: a file cut short imported silently."""
    (tmp_path / "in.csv").write_bytes(b'n,s\n1,"abc"\n' + tail)
    with pytest.raises(ValueError, match=r"ends inside a quoted value .*cut short"):
        import_file(tmp_path / "in.csv", tmp_path / "j", "n:int32,s:string")
    with pytest.raises(ValueError, match=r"ends inside a quoted value"):
        load_file(tmp_path / "in.csv", "n:int32,s:string")
    assert not (tmp_path / "j").exists()


def test_a_header_cut_inside_a_quoted_name_is_no_empty_file(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(b'n,"s\n1,2\n')
    with pytest.raises(ValueError, match=r"ends inside a quoted value"):
        import_file(tmp_path / "in.csv", tmp_path / "j", "n:int32")
    (tmp_path / "in.csv").write_bytes(b"\n\r\n")
    with pytest.raises(ValueError, match=r"is empty: a CSV file needs a header line"):
        import_file(tmp_path / "in.csv", tmp_path / "j", "n:int32")


def test_quotes_inside_unquoted_values_are_text(tmp_path: Path) -> None:
    """An odd number of quotes is no cut file when one stands inside an unquoted value (12" is text)."""
    (tmp_path / "in.csv").write_bytes(b'n,s\n1,12" ruler\n2,"a""b"\n')
    table, _ = load_file(tmp_path / "in.csv", "n:int32,s:string")
    assert table.column("s").to_pylist() == ['12" ruler', 'a"b']


def test_rows_appended_between_the_passes_are_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """import_file checks every row, then writes: rows appended to the file in between (a live CSV) were written
    unchecked (a bad one too), then the import failed. Each pass now reads the bytes the import began with."""
    for extra in [b"3,c\n", b"zz,bad\n", b'4,"unterminated\n']:
        path, journal = tmp_path / f"f{len(extra)}.csv", tmp_path / f"j{len(extra)}"
        path.write_bytes(b"q,s\n1,a\n2,b\n")
        _on_write_pass(monkeypatch, _append(path, extra))
        assert import_file(path, journal, "q:int32,s:string", date="2024-03-05") == 2
        assert _rows_of(journal, "q:int32,s:string") == [(1, "a"), (2, "b")]


def test_a_file_that_shrinks_between_the_passes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"q,s\n1,a\n2,b\n")
    _on_write_pass(monkeypatch, lambda: path.write_bytes(b"q,s\n1,a\n"))
    with pytest.raises(ValueError, match=r"shrank while it was being imported.*; nothing was written"):
        import_file(path, tmp_path / "j", "q:int32,s:string", date="2024-03-05")
    assert not [f for f in (tmp_path / "j").rglob("*") if f.is_file()]


def test_a_last_line_without_a_line_break(tmp_path: Path) -> None:
    """A header alone without a line break was called an empty file; a last row without one is read, with a
    warning (a file cut short inside its last value looks so; to_csv ends every line)."""
    from pychro.errors import PychroWarning

    (tmp_path / "h.csv").write_bytes(b"q,s")
    with pytest.warns(PychroWarning, match=r"its last line has no line break"):
        assert import_file(tmp_path / "h.csv", tmp_path / "j", "q:int32,s:string", date="2024-03-05") == 0
    (tmp_path / "r.csv").write_bytes(b"q,s\n1,a\n2,49.7")
    with pytest.warns(PychroWarning, match=r"r.csv: its last line has no line break; if the file was cut short"):
        table, _ = load_file(tmp_path / "r.csv", "q:int32,s:string")
    assert table.column("s").to_pylist() == ["a", "49.7"]


def test_a_file_rewritten_during_the_import_is_caught_before_its_rows_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file rewritten in place (same size) between the passes, or while the write pass runs, had rows written
    that were never checked (a breaker: 2,650,780 rows, then a RowError saying nothing was). Pieces of the file
    are compared with what the check pass read: the error comes before a changed piece's rows, and says what was
    written."""
    rows = 400_000
    path = tmp_path / "f.csv"
    path.write_bytes(b"q,s\n" + b"".join(b"%d,abcdefgh\n" % i for i in range(rows)))

    def rewrite(at: int) -> None:
        with open(path, "r+b") as f:  # same size, other bytes: a bad int32
            f.seek(at)
            f.write(b"x")

    _on_write_pass(monkeypatch, lambda: rewrite(10))
    with pytest.raises(ValueError, match=r"changed while it was being imported .*; nothing was written"):
        import_file(path, tmp_path / "j", "q:int32,s:string", date="2024-03-05")
    assert not [f for f in (tmp_path / "j").rglob("*") if f.is_file()]

    path.write_bytes(b"q,s\n" + b"".join(b"%d,abcdefgh\n" % i for i in range(rows)))

    def during_write(f: ci.CsvFile) -> Any:
        if f.crcs:  # small blocks: pyarrow's read-ahead does not reach the end first (pieces are not blocks)
            f.block = 1 << 16
        batches = _CHECKED(f)
        if f.crcs:
            yield next(batches)
            rewrite(path.stat().st_size - 20)  # near the end: read after this
        yield from batches

    monkeypatch.setattr(ci, "csv_batches", during_write)
    with pytest.raises(ValueError, match=r"changed while it was being imported .*; (\d+) of the 400000 rows checked "
                                         r"were written before") as info:
        import_file(path, tmp_path / "k", "q:int32,s:string", date="2024-03-05")
    written = int(re.search(r"; (\d+) of the", str(info.value)).group(1))
    assert 0 < written < rows
    assert _rows_of(tmp_path / "k", "q:int32,s:string") == [(i, "abcdefgh") for i in range(written)]


def test_a_torn_last_line_of_a_growing_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer still appending: the file ends in a row without its line break when the import begins, then
    grows. The torn row was imported (with a warning)."""
    path = tmp_path / "f.csv"
    path.write_bytes(b"q,s\n1,a\n2,to")

    def appending(f: ci.CsvFile) -> Any:  # (before the check pass)
        _append(path, b"rn\n")()
        yield from _CHECKED(f)

    monkeypatch.setattr(ci, "csv_batches", appending)
    with pytest.raises(ValueError, match=r"its last line has no line break and the file has grown"):
        import_file(path, tmp_path / "j", "q:int32,s:string", date="2024-03-05")
    assert not (tmp_path / "j").exists()


def test_paths_that_are_no_regular_file(tmp_path: Path) -> None:
    """A FIFO blocked the import forever; a folder named x.csv was read by load_file as an empty table."""
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(ValueError, match=r"fifo.csv is not a regular file"):
        import_file(tmp_path / "fifo.csv", tmp_path / "j", "q:int32")
    with pytest.raises(ValueError, match=r"fifo.csv is not a regular file"):
        load_file(tmp_path / "fifo.csv", "q:int32")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match=r"is a folder of no .parquet file"):
        load_file(tmp_path / "dir.csv", "q:int32")
    assert not (tmp_path / "j").exists()


@pytest.mark.timeout(60)
def test_a_csv_of_thousands_of_columns(tmp_path: Path) -> None:
    """The write looked each column up by name in a scan of all the names: 5000 columns took 287 s."""
    names = [f"c{i}" for i in range(3000)]
    (tmp_path / "w.csv").write_text(",".join(names) + "\n" + "\n".join(",".join(["7"] * len(names))
                                                                      for _ in range(20)) + "\n")
    schema = ",".join(f"{n}:int32" for n in names)
    assert import_file(tmp_path / "w.csv", tmp_path / "j", schema, date="2024-03-05") == 20
    assert pychro.read_table(tmp_path / "j", schema).column("c2999").to_pylist() == [7] * 20


def test_a_header_without_a_schema_column_is_refused_even_without_rows(tmp_path: Path) -> None:
    """A header-only file lacking a schema column imported 0 rows without a word (with rows: 'the data has no
    column'); load_file returned a table without it."""
    (tmp_path / "h.csv").write_bytes(b"t\n")
    with pytest.raises(ValueError, match=r"h.csv: the header has no column 's' \(schema field s:string\); it names t"):
        import_file(tmp_path / "h.csv", tmp_path / "j", "t:int32,s:string", date="2024-03-05")
    (tmp_path / "r.csv").write_bytes(b"t\n1\n")
    with pytest.raises(ValueError, match=r"the header has no column 's'"):
        load_file(tmp_path / "r.csv", "t:int32,s:string")
    assert not (tmp_path / "j").exists()


def test_a_torn_last_line_completed_between_the_passes_is_not_written(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The check pass saw a last line without a line break (a warning: the file had not grown yet); the writer
    finished it before the write pass: the torn row was written, then the import failed (a breaker)."""
    from pychro.errors import PychroWarning

    path = tmp_path / "f.csv"
    path.write_bytes(b"q,s\n1,full\n2,tor")
    _on_write_pass(monkeypatch, _append(path, b"n\n3,next\n"))
    with pytest.warns(PychroWarning), pytest.raises(ValueError, match=r"that line was being written.*; nothing "
                                                                      r"was written"):
        import_file(path, tmp_path / "j", "q:int32,s:string", date="2024-03-05")
    assert not [f for f in (tmp_path / "j").rglob("*") if f.is_file()]
