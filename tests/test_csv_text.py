"""CSV text: what export writes, import reads back exactly (pychro/frames/csv_text.py), and head shows the same.

Timestamps outside the years ISO text holds (Java's Long.MAX_VALUE "no time" sentinel) are written as their
integer count; only an unquoted empty field is null; naive ISO text is UTC; data errors exit 1.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import pychro
from pychro.cli import main
from pychro.frames.export import import_file, load_file

T0 = 1_709_629_200_000  # 2024-03-05T09:00:00Z in ms
S = "ts:timestamp_ms,v:int32"
# Long.MAX_VALUE and MIN_VALUE (Java's "no time" sentinels), the first and last ms ISO text holds, and the ms
# either side of them
EDGES = [2**63 - 1, -(2**63), -62_135_596_800_000, 253_402_300_799_999, -62_135_596_800_001, 253_402_300_800_000]


def _journal(path: Path, stamps: list[int]) -> Path:
    with pychro.VanillaChronicleWriter(path, clock=lambda: T0) as w:
        a = w.get_appender()
        for i, ts in enumerate(stamps):
            a.write_long(ts)
            a.write_int(i)
            a.finish()
    return path


def test_timestamps_iso_cannot_hold_export_as_counts_and_import_back(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    j = _journal(tmp_path / "j", [T0, *EDGES])
    out = tmp_path / "x.csv"
    assert main(["export", str(j), "--schema", S, "--to", str(out), "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    assert lines[1].strip('"').startswith("2024-03-05 09:00:00.000Z")
    cells = [line.split(",")[0].strip('"') for line in lines[2:]]
    assert cells == [str(EDGES[0]), str(EDGES[1]), "0001-01-01 00:00:00.000Z", "9999-12-31 23:59:59.999Z",
                     str(EDGES[4]), str(EDGES[5])]
    capsys.readouterr()
    # the sentinels have no cycle of their own: import them into one day
    assert main(["import", str(out), str(tmp_path / "back"), "--schema", S, "--date", "2024-03-05"]) == 0
    back = pychro.read_table(tmp_path / "back", S)
    assert back.column("ts").cast("int64").to_pylist() == [T0, *EDGES]
    # head and tail print them as export writes them, no traceback
    capsys.readouterr()
    assert main(["head", str(j), "--schema", S]) == 0
    shown = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert shown[0] == "2024-03-05" and shown[1] == str(2**63 - 1) and shown[2] == str(-(2**63))


def test_timestamp_text_outside_iso_in_parquet_and_python(tmp_path: Path) -> None:
    """Only the text forms change: Parquet keeps the values, and to_csv writes the same counts."""
    j = _journal(tmp_path / "j", [T0, 2**63 - 1])
    pychro.to_parquet(j, S, tmp_path / "x.parquet")
    pychro.to_csv(j, S, tmp_path / "x.csv")
    assert str(2**63 - 1) in (tmp_path / "x.csv").read_text()
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "x.parquet").column("ts").cast("int64").to_pylist() == [T0, 2**63 - 1]


def test_strings_that_look_like_nulls_stay_strings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = ["NA", "null", "NaN", "N/A", "nan", "NULL", "None", "#N/A", "-NaN", "n/a", ""]
    ts = pd.to_datetime([T0 + i for i in range(len(words))], unit="ms", utc=True)
    # pandas writes strings unquoted and an empty string as an empty field: an unquoted empty field is null
    pd.DataFrame({"ts": ts, "sym": words, "u": words}).to_csv(tmp_path / "p.csv", index=False)
    assert main(["import", str(tmp_path / "p.csv"), str(tmp_path / "j"), "--schema",
                 "ts:timestamp_ms,sym:string,u:utf"]) == 1  # the empty u is a null: utf cannot hold one
    assert "row 10: column 'u' is null" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "p.csv"), str(tmp_path / "j"), "--schema",
                 "ts:timestamp_ms,sym:string,u:utf", "--drop-extra-columns"]) == 1
    pd.DataFrame({"ts": ts, "sym": words, "u": [w or "x" for w in words]}).to_csv(tmp_path / "p.csv", index=False)
    assert main(["import", str(tmp_path / "p.csv"), str(tmp_path / "j"), "--schema",
                 "ts:timestamp_ms,sym:string,u:utf"]) == 0
    got = pychro.read_table(tmp_path / "j", "ts:timestamp_ms,sym:string,u:utf")
    assert got.column("sym").to_pylist() == [*words[:-1], None]
    assert got.column("u").to_pylist() == [*words[:-1], "x"]


def test_export_import_keeps_null_empty_and_null_looking_strings(tmp_path: Path) -> None:
    schema = "ts:timestamp_ms,s:string"
    words = [None, "", "null", "NA", "NaN", "N/A", '"', " "]
    pychro.write_frame({"ts": pd.to_datetime([T0] * len(words), unit="ms", utc=True), "s": words},
                       tmp_path / "j", schema)
    pychro.to_csv(tmp_path / "j", schema, tmp_path / "x.csv")
    pychro.frames.export.import_file(tmp_path / "x.csv", tmp_path / "back", schema)
    assert pychro.read_table(tmp_path / "back", schema).column("s").to_pylist() == words


def test_head_tells_a_null_from_the_string_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = "v:int64,s:string"
    words = [None, "null", "", '"q"', " x", "plain"]
    with pychro.VanillaChronicleWriter(tmp_path / "j", clock=lambda: T0) as w:
        a = w.get_appender()
        for i, s in enumerate(words):
            a.write_long(i)
            a.write_string(s)
            a.finish()
    assert main(["head", str(tmp_path / "j"), "--schema", schema]) == 0
    cells = [line.split(None, 2)[2] if len(line.split(None, 2)) > 2 else ""
             for line in capsys.readouterr().out.splitlines()[1:]]
    assert [c.strip() for c in cells] == ["null", '"null"', '""', '"\\"q\\""', '" x"', "plain"]


@pytest.mark.parametrize("text", ["2024-03-05T09:00:00", "2024-03-05 09:00:00.000", "1709629200000",
                                  "2024-03-05T10:00:00+01:00", "2024-03-05 09:00:00.000000000Z"])
def test_csv_timestamps_naive_iso_is_utc_and_an_integer_is_a_count(tmp_path: Path, text: str) -> None:
    (tmp_path / "a.csv").write_text(f"ts,v\n{text},1\n")
    assert main(["import", str(tmp_path / "a.csv"), str(tmp_path / "j"), "--schema", S]) == 0
    assert pychro.read_table(tmp_path / "j", S).column("ts").cast("int64").to_pylist() == [T0]


def test_csv_data_errors_exit_1_with_pychros_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.csv").write_text("ts,v\n2024-03-05T09:00:00,1\nnoon,2\n")
    assert main(["import", str(tmp_path / "a.csv"), str(tmp_path / "j"), "--schema", S]) == 1
    err = capsys.readouterr().err
    assert "row 1: column 'ts': 'noon' is not an ISO date/time" in err and "assume_timezone" not in err
    (tmp_path / "b.csv").write_text("ts,v\n2024-03-05 09:00:00.0001Z,1\n")
    assert main(["import", str(tmp_path / "b.csv"), str(tmp_path / "j"), "--schema", S]) == 1
    assert "finer precision than the field's timestamp_ms" in capsys.readouterr().err
    (tmp_path / "c.csv").write_text("")
    assert main(["import", str(tmp_path / "c.csv"), str(tmp_path / "j"), "--schema", S]) == 1
    err = capsys.readouterr().err
    assert "c.csv is empty" in err and "Empty CSV file" not in err
    with pytest.raises(ValueError, match="is empty: a CSV file needs a header line"):
        pychro.frames.export.import_file(tmp_path / "c.csv", tmp_path / "j", S)
    (tmp_path / "d.csv").write_text("ts,v\n2024-03-05T09:00:00,x\n")
    assert main(["import", str(tmp_path / "d.csv"), str(tmp_path / "j"), "--schema", S]) == 1
    assert "d.csv" in capsys.readouterr().err
    assert not (tmp_path / "j").exists()
    # a usage error stays exit 2
    assert main(["import", str(tmp_path / "a.csv"), str(tmp_path / "j")]) == 2
    assert "needs --schema" in capsys.readouterr().err


def test_csv_import_names_the_first_bad_row_of_any_check(tmp_path: Path) -> None:
    """Timestamp text is parsed column by column and kind by kind (counts, then ISO), and pyarrow converts the
    other columns before any row check: each named its own first bad row (a helper found later rows named)."""
    from pychro.frames.encode import RowError

    def first_error(lines: list[str], schema: str, header: str = "ts,q") -> RowError:
        (tmp_path / "in.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
        with pytest.raises(RowError) as info:
            import_file(tmp_path / "in.csv", tmp_path / "j", schema)
        assert not (tmp_path / "j").exists()
        return info.value

    good = "2024-03-05T09:00:00Z"
    rows = [f"{good},1"] * 12
    rows[2], rows[10] = f"{good},", "not a time,1"  # a null int32 before a bad time
    assert first_error(rows, "ts:timestamp_ms,q:int32").row == 2
    rows = [f"{good},1"] * 12
    rows[5], rows[9] = "2024-03-05T09:00:00X,1", "99999999999999999999,1"  # ISO text, then an integer count
    assert first_error(rows, "ts:timestamp_ms,q:int32").row == 5
    rows = [f"{good},1"] * 12
    rows[1], rows[7] = "1960-01-01T00:00:00Z,1", "2024-03-05T09:00:00.0001Z,1"  # before 1970, then too fine
    assert "is cycle -" in str(first_error(rows, "ts:timestamp_ms,q:int32"))
    rows = [f"{good},{good}"] * 12
    rows[3], rows[8] = f"{good},bad", f"bad,{good}"  # the second timestamp column's row comes first
    err = first_error(rows, "ts:timestamp_ms,t2:timestamp_ms", "ts,t2")
    assert (err.row, str(err)[:22]) == (3, "row 3: column 't2': 'b")
    rows = [f"{good},1"] * 12
    rows[4] = f"{good},300"  # pyarrow's conversion error names the value only
    err = first_error(rows, "ts:timestamp_ms,q:int8")
    assert err.row == 4 and "column 'q': '300' is not valid for its int8 field" in str(err)


def test_csv_import_values_pyarrow_cannot_convert(tmp_path: Path) -> None:
    """pyarrow converts a whole block and names neither the row nor the rows before it it did not check; the
    import names the first bad row of the block, and " 12" (which pyarrow takes) is not blamed."""
    from pychro.frames.encode import RowError

    def first_error(text: str, schema: str) -> RowError:
        (tmp_path / "in.csv").write_text(text)
        with pytest.raises(RowError) as info:
            import_file(tmp_path / "in.csv", tmp_path / "j", schema)
        assert not (tmp_path / "j").exists()
        return info.value

    assert str(first_error("a,b\n1,1\n,2\n3,x\n", "a:int32,b:int32")).startswith("row 1: column 'a' is null")
    err = first_error("a,b\n1,1\n2, 12\n3,4\n4,x\n", "a:int32,b:int32")
    assert err.row == 3 and "column 'b': 'x' is not valid for its int32 field" in str(err)
    err = first_error("a,b\n1,1\n2,x\ny,3\n", "a:int32,b:int32")  # the first bad row of any column
    assert err.row == 1 and "column 'b': 'x'" in str(err)
    err = first_error("e\n1.5\n1e39\n", "e:float32")  # beyond float32: pyarrow's reader made it inf
    assert err.row == 1 and "does not fit in a Java float" in str(err)


def test_csv_import_bytes_that_are_not_utf8_name_their_row(tmp_path: Path) -> None:
    """pyarrow's reader refuses them for the whole block ("invalid UTF8 data", no row): the import names the
    row and the column, and an earlier bad value of another column still comes first."""
    from pychro.frames.encode import RowError

    def first_error(data: bytes) -> RowError:
        (tmp_path / "in.csv").write_bytes(data)
        with pytest.raises(RowError) as info:
            import_file(tmp_path / "in.csv", tmp_path / "j", "s:string,q:int32")
        assert not (tmp_path / "j").exists()
        return info.value

    rows = [b"a,1"] * 50_000
    rows[40_000] = b"b\xff\xfe,2"
    err = first_error(b"s,q\n" + b"\n".join(rows) + b"\n")
    assert err.row == 40_000 and "column 's': b'b\\xff\\xfe' is not UTF-8 text" in str(err)
    rows[30_000] = b"a,x"  # an int32 that does not convert, before it
    err = first_error(b"s,q\n" + b"\n".join(rows) + b"\n")
    assert err.row == 30_000 and "column 'q': 'x' is not valid for its int32 field" in str(err)
    err = first_error(b"s,q\na,1\n" + b"x" * 500 + b"\xff,2\n")  # a long value is cut short
    assert err.row == 1 and "..." in str(err) and len(str(err)) < 200
    (tmp_path / "w.csv").write_bytes(b"s,q\na,1\nb\xff,2\n")  # load_file reads a file whole: the same error
    with pytest.raises(RowError, match=r"^row 1: column 's': b'b\\xff' is not UTF-8 text"):
        load_file(tmp_path / "w.csv", "s:string,q:int32")


@pytest.mark.parametrize(("text", "schema", "why"), [
    ("2262-04-12T00:00:00Z", "ts:timestamp_ns",
     "is outside the times ISO text gives a timestamp_ns field (1677-09-21 00:12:44 to 2262-04-11 23:47:16.854775807;"),
    ("1600-01-01T00:00:00", "ts:timestamp_ns", "is outside the times ISO text gives a timestamp_ns field"),
    ("1677-09-21T00:12:43.5Z", "ts:timestamp_ns", "is outside the times ISO text gives a timestamp_ns field"),
    ("2262-04-11T23:47:16.9Z", "ts:timestamp_ns", "is outside the times ISO text gives a timestamp_ns field"),
    ("2262-04-11T23:47:16.1234567891Z", "ts:timestamp_ns", "has finer precision than the field's timestamp_ns"),
    ("2300-01-01T00:00:00.123456Z", "ts:timestamp_ms", "has finer precision than the field's timestamp_ms keeps"),
    ("2024-13-01T00:00:00Z", "ts:timestamp_ms", "is not an ISO date/time"),
    ("2024-03-05.5", "ts:timestamp_ms", "is not an ISO date/time"),
    ("2024-03-05T09:00:00.Z", "ts:timestamp_ms", "is not an ISO date/time"),
    ("99999999999999999999", "ts:timestamp_ms", "does not fit in int64 ms"),
])
def test_csv_timestamp_errors_say_why(tmp_path: Path, text: str, schema: str, why: str) -> None:
    """A time past what int64 ns holds was called "not an ISO date/time"; so was text finer than the unit
    beyond 2262."""
    from pychro.frames.encode import RowError

    (tmp_path / "in.csv").write_text(f"ts\n{text}\n")
    with pytest.raises(RowError, match=r"^row 0: column 'ts': ") as info:
        import_file(tmp_path / "in.csv", tmp_path / "j", schema)
    assert why in str(info.value)


def test_csv_timestamp_counts_may_have_a_plus_sign(tmp_path: Path) -> None:
    # '+5' matched the integer pattern, but Arrow's parser takes no '+': "does not fit in int64"
    (tmp_path / "in.csv").write_text(f"ts,v\n+{T0},1\n -{T0} ,2\n")
    assert import_file(tmp_path / "in.csv", tmp_path / "j", S, date="2024-03-05") == 2
    assert pychro.read_table(tmp_path / "j", S).column("ts").cast("int64").to_pylist() == [T0, -T0]


def test_csv_rows_are_counted_without_empty_lines_and_as_the_reader_converts(tmp_path: Path) -> None:
    """The re-read that finds a bad value's row skipped rows with pyarrow's skip_rows_after_names, which counts
    the empty lines the import skips (row 150 001 named for row 150 000); and it converted more leniently than
    the reader (' true', 'TrUe', a number with a no-break space), naming no row or a later one (a helper found
    both)."""
    from pychro.frames.encode import RowError

    def first_error(data: bytes, schema: str) -> tuple[int, str]:
        (tmp_path / "in.csv").write_bytes(data)
        rows = []
        for read in (lambda: import_file(tmp_path / "in.csv", tmp_path / "j", schema),
                     lambda: load_file(tmp_path / "in.csv", schema)):
            with pytest.raises(RowError) as info:
                read()
            rows.append((info.value.row, str(info.value)))
        assert not (tmp_path / "j").exists() and rows[0] == rows[1]
        return rows[0]

    rows = [b"a,1"] * 200_000
    rows[150_000] = b"b\xff,2"
    lines = b"s,q\n\n" + b"\n".join(rows[:1000]) + b"\n\n\n" + b"\n".join(rows[1000:]) + b"\n"
    assert first_error(lines, "s:string,q:int32")[0] == 150_000
    rows[150_000] = b"b,x"
    assert first_error(lines.replace(b"b\xff,2", b"b,x"), "s:string,q:int32")[0] == 150_000
    for value, why in ((b" true", "' true' is not valid for its bool field"), (b"TrUe", "'TrUe'"),
                       (b"\xc2\xa012", "'\\xa012' is not valid for its int32 field")):
        column = b"b" if b"12" not in value else b"q"
        schema = "b:bool,q:int32"
        cells = [b"true,1", b"true,1", b"true,x"]
        cells[1] = value + b",1" if column == b"b" else b"true," + value
        row, message = first_error(b"b,q\n" + b"\n".join(cells) + b"\n", schema)
        assert row == 1 and why in message, message
    # a bad time before a value the reader refuses: load_file (one read_csv) named the later row
    row, message = first_error(b"ts,s\ngarbage,a\n2024-03-05T09:00:00Z,\xff\n", "ts:timestamp_ms,s:string")
    assert row == 0 and "'garbage' is not an ISO date/time" in message


def test_csv_values_longer_than_a_block_and_odd_headers(tmp_path: Path) -> None:
    from pychro.config import VanillaConfig

    cfg = VanillaConfig(message_capacity=8 << 20)
    big = "x" * (5 << 20)  # longer than pyarrow's 1 MiB block: "straddling object", no row, no option to raise it
    with pychro.VanillaChronicleWriter(tmp_path / "j", config=cfg, clock=lambda: T0) as w:
        a = w.get_appender()
        for text in ("a", big, "b"):
            a.write_long(T0)
            a.write_string(text)
            a.finish()
    schema = "ts:timestamp_ms,s:string"
    pychro.to_csv(tmp_path / "j", schema, tmp_path / "x.csv", config=cfg)
    assert import_file(tmp_path / "x.csv", tmp_path / "back", schema, config=cfg) == 3
    assert pychro.read_table(tmp_path / "back", schema, config=cfg).column("s").to_pylist() == ["a", big, "b"]
    assert load_file(tmp_path / "x.csv", schema)[0].column("s").to_pylist() == ["a", big, "b"]
    (tmp_path / "h.csv").write_bytes(b"ts,s,x\xff\n1,a,1\n")  # was a UnicodeDecodeError from pyarrow
    with pytest.raises(ValueError, match=r"h\.csv: the header line is not UTF-8 text"):
        import_file(tmp_path / "h.csv", tmp_path / "k", schema)


def test_ns_times_in_the_first_second_of_int64_go_to_csv_as_counts(tmp_path: Path) -> None:
    """Arrow's ISO parser multiplies whole seconds first: 1677-09-21 00:12:43.x did not import back."""
    S_NS = "ts:timestamp_ns,v:int32"
    stamps = [-(2**63), -(2**63) + 1, -9_223_372_036_500_000_000, -9_223_372_036_000_000_000, 2**63 - 1]
    j = _journal(tmp_path / "j", stamps)
    pychro.to_csv(j, S_NS, tmp_path / "x.csv")
    cells = [line.split(",")[0].strip('"') for line in (tmp_path / "x.csv").read_text().splitlines()[1:]]
    assert cells[:3] == [str(v) for v in stamps[:3]] and cells[3] == "1677-09-21 00:12:44.000000000Z"
    assert import_file(tmp_path / "x.csv", tmp_path / "back", S_NS, date="2024-03-05") == len(stamps)
    assert pychro.read_table(tmp_path / "back", S_NS).column("ts").cast("int64").to_pylist() == stamps
    (tmp_path / "z.csv").write_text("ts,v\n2024-03-05T09:00:00z,1\n")  # a lowercase zone
    assert import_file(tmp_path / "z.csv", tmp_path / "z", S) == 1


def test_csv_import_reads_the_schemas_columns_only_and_keeps_null_lines(tmp_path: Path) -> None:
    # a column outside the schema whose type pyarrow guessed from the first block failed the import
    rows = [f"{k},{k}" for k in range(300_000)] + ["300000,text"]
    (tmp_path / "x.csv").write_text("a,extra\n" + "\n".join(rows) + "\n")
    assert import_file(tmp_path / "x.csv", tmp_path / "j", "a:int64", date="2024-03-05") \
        == 300_001
    # a one-column export writes a null as an empty line: it comes back as a row
    pychro.write_frame({"s": ["a", None, "b"]}, tmp_path / "one", "s:string", date="2024-03-05")
    pychro.to_csv(tmp_path / "one", "s:string", tmp_path / "one.csv")
    import_file(tmp_path / "one.csv", tmp_path / "back", "s:string", date="2024-03-05")
    assert pychro.read_table(tmp_path / "back", "s:string").column("s").to_pylist() == ["a", None, "b"]
    (tmp_path / "l.csv").write_text("l\n1\n")
    with pytest.raises(ValueError, match="CSV has no list columns: field 'l' is list<int8>"):
        import_file(tmp_path / "l.csv", tmp_path / "k", "l:list<int8>")
    (tmp_path / "d.csv").write_text("a,a\n1,2\n")
    with pytest.raises(ValueError, match="more than one column named 'a'"):
        import_file(tmp_path / "d.csv", tmp_path / "k", "a:int32")
    assert not (tmp_path / "k").exists()
