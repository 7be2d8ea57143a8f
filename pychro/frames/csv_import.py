r"""Reading a CSV file for import, in batches or whole, with the CSV rules of :mod:`.csv_text`; a bad value
raises :class:`~pychro.frames.encode.RowError` naming the first bad row of the file, whichever check finds it.

pyarrow's CSV reader converts a block (about 1 MiB) at a time and names neither the bad row nor the rows of the
block before it. So when it refuses a block, the file is read again as bytes from the block's first row (error
path only), each value checked as the reader checks it, and the rows before the first bad one are handed on
first: the write's own checks may find an earlier bad row among them. A row with too many or too few values
(which pyarrow names by its text only) is found by Python's ``csv`` module, counting rows as the reader counts
them: an empty line is no row, except in a file of one column, where it is a null.

Values may hold line breaks (to_csv writes them quoted), so the reader keeps quoted line breaks in values. It
reads through :class:`.csv_source.Source`, which works around an Arrow bug losing the ``\n`` of a quoted
``\r\n``, and notices a file cut inside a quoted value, which pyarrow reads as if the quote had closed.
"""

from __future__ import annotations

import contextlib
import csv as stdcsv
import os
import sys
from collections.abc import Generator, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from .csv_source import Source, blank_lines, cut_short, ends_inside_quotes
from .csv_text import convert_options, first_unconverted, parse_timestamps, shown
from .encode import RowError
from .schema import Schema

__all__ = ["CsvFile", "csv_batches", "errors", "read_csv", "read_header"]

_MAX_BLOCK = 1 << 30  # pyarrow reads a row within one block; a longer row is refused


class CsvFile:
    """One CSV file to import with ``schema``: its header checked, the reader's options made once."""

    def __init__(self, path: str, schema: Schema) -> None:
        self.path, self.schema = path, schema
        # the bytes read by every pass: rows appended after the check pass are not written unchecked
        self.size = os.path.getsize(path)
        self.crcs: list[int] = []  # of its pieces as first read: see Source
        names, self.block, self.blank = _header(path)  # (the block grows when a longer row is met: see grown)
        self.columns = len(names)
        twice = [n for n in schema.names if names.count(n) > 1]
        if twice:
            raise ValueError(f"{path}: the header has more than one column named {twice[0]!r}")
        missing = [f for f in schema.fields if f.is_column and f.name not in names]
        if missing:  # (else a file of no rows imported "nothing" without a word)
            raise ValueError(f"{path}: the header has no column {missing[0].name!r} (schema field "
                             f"{missing[0].name}:{missing[0].type.name}); it names {', '.join(names[:10])}"
                             f"{' ...' if len(names) > 10 else ''}")
        # the schema's columns only: pyarrow guesses a type for the others from the first block, and a later
        # value of another type failed the import; empty lines are rows in a one-column file (to_csv's nulls)
        self.convert = convert_options(schema, [n for n in schema.names if n in names] or None)
        self.parse = csv.ParseOptions(ignore_empty_lines=len(names) != 1, newlines_in_values=True)
        # error path: the rows before the first row with a wrong number of values, exactly (see _bad_row)
        self.skipping = csv.ParseOptions(ignore_empty_lines=len(names) != 1, newlines_in_values=True,
                                         invalid_row_handler=_skip)

    def read_options(self) -> Any:
        # a one-column file reads empty lines as rows (nulls): those before the header are skipped
        return csv.ReadOptions(block_size=self.block, skip_rows=self.blank if self.columns == 1 else 0)

    def open(self) -> Source:
        return Source(self.path, self.size, self.crcs)

    def grown(self, exc: BaseException) -> bool:
        """Whether pyarrow refused a row longer than its block (a value of megabytes: to_csv writes them); the
        block is then 4x larger, for a read from the start."""
        bigger = _larger_block(exc, self.block)
        if bigger is None:
            return False
        self.block = bigger
        return True


def _skip(_: Any) -> str:
    return "skip"  # (a row with a wrong number of values: found and named by _ragged when it matters)


def read_header(path: str) -> tuple[list[str], int]:
    """The column names of a CSV file's header line, and a block size in which pyarrow read it."""
    names, block, _ = _header(path)
    return names, block


def _header(path: str) -> tuple[list[str], int, int]:
    """:func:`read_header`, and the number of empty lines before the header."""
    block = 1 << 20  # pyarrow's default
    with errors(path):
        while True:
            try:
                with Source(path) as src, csv.open_csv(
                        src, read_options=csv.ReadOptions(block_size=block),
                        parse_options=csv.ParseOptions(newlines_in_values=True, invalid_row_handler=_skip)) as reader:
                    return list(reader.schema.names), block, blank_lines(path)
            except pa.ArrowInvalid as exc:
                bigger = _larger_block(exc, block)
                if bigger is None:
                    raise
                block = bigger
            except UnicodeDecodeError:
                raise ValueError(f"{path}: the header line is not UTF-8 text") from None


def _larger_block(exc: BaseException, block: int) -> int | None:
    """4x ``block`` when pyarrow refused a row longer than a block of that size (up to 1 GiB), else None."""
    return block * 4 if "straddl" in str(exc) and block < _MAX_BLOCK else None


@contextlib.contextmanager
def errors(path: str) -> Iterator[None]:
    """pyarrow's CSV errors as ValueErrors naming the file (an empty file, a ragged row ...)."""
    try:
        yield
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            if ends_inside_quotes(path):  # (pyarrow found no header line: it has no end)
                raise cut_short(path) from None
            raise ValueError(f"{path} is empty: a CSV file needs a header line naming its columns") from None
        raise ValueError(f"{path}: {exc}") from None


def csv_batches(f: CsvFile) -> Iterator[Any]:
    """The file's rows in record batches, timestamps parsed. A bad value raises a RowError naming the file's first
    bad row, after the batches of the rows before it."""
    row = 0  # rows handed on
    with errors(f.path):
        while True:
            try:
                for batch in _from_row(f, f.convert, f.parse, row):
                    yield from _parsed(batch, f.schema, row)
                    row += batch.num_rows
                return
            except pa.ArrowInvalid as exc:
                if f.grown(exc):
                    continue  # read again with larger blocks, from the first row not handed on
                bad = _bad_row(f, row, exc)
                if bad is None:
                    raise
                if bad.row > row:  # the rows of its block before it: the write's checks may find an earlier one
                    yield from _parsed(_rows(f, row, bad.row), f.schema, row)
                raise bad from None


def read_csv(f: CsvFile) -> Any:
    """The whole file as one table, timestamps parsed; a bad value raises a RowError naming the first bad row."""
    with errors(f.path):
        while True:
            try:
                with f.open() as src:
                    table = csv.read_csv(src, read_options=f.read_options(), convert_options=f.convert,
                                         parse_options=f.parse)
                    src.check_end()
                break
            except pa.ArrowInvalid as exc:
                if f.grown(exc):
                    continue
                bad = _bad_row(f, 0, exc)
                if bad is None:
                    raise
                if bad.row:
                    parse_timestamps(_rows(f, 0, bad.row), f.schema)  # a bad time before it comes first
                raise bad from None
    return parse_timestamps(table, f.schema)


def _parsed(batch: Any, schema: Schema, row: int) -> Iterator[Any]:
    """``batch`` (whose first row is row ``row`` of the file) with its timestamps parsed; at a bad time, the rows
    before it, then the RowError (the write's checks may find an earlier bad row among them)."""
    try:
        parsed = parse_timestamps(batch, schema, row)
    except RowError as exc:
        yield parse_timestamps(batch.slice(0, exc.row - row), schema, row)
        raise
    yield parsed


def _from_row(f: CsvFile, convert: Any, parse: Any, start: int) -> Generator[Any, None, None]:
    """Batches of the file read with ``convert`` and ``parse``, from row ``start`` on: the rows before it are read
    and dropped (pyarrow's ``skip_rows_after_names`` counts empty lines, which are no rows here). Read to its end,
    a file cut inside a quoted value raises a ValueError."""
    row = 0
    with f.open() as src, csv.open_csv(src, convert_options=convert, parse_options=parse,
                                       read_options=f.read_options()) as reader:
        for batch in reader:
            if row + batch.num_rows > start:
                yield batch.slice(max(0, start - row))
            row += batch.num_rows
        src.check_end()


def _as_bytes(convert: Any) -> Any:
    """``convert`` with every column read as bytes (nulls as it reads them): text that is not UTF-8 reads too."""
    names = list(convert.include_columns) or list(convert.column_types)
    return csv.ConvertOptions(column_types={n: pa.binary() for n in names}, include_columns=names,
                              null_values=convert.null_values, strings_can_be_null=convert.strings_can_be_null,
                              quoted_strings_can_be_null=convert.quoted_strings_can_be_null)


def _converted(text: Any, target: Any, convert: Any) -> Any:
    """UTF-8 text converted as pyarrow's CSV reader converts it, raising ``ArrowInvalid`` where it would: numbers
    with spaces and tabs around them (not other white space), booleans only as its true and false values."""
    if target == pa.string():
        return text
    if pa.types.is_boolean(target):
        known = pc.is_in(text, value_set=pa.array(convert.true_values + convert.false_values))
        if not pc.all(pc.or_(known, pc.is_null(text))).as_py():
            raise pa.ArrowInvalid("not one of the CSV reader's true and false values")
        return pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()),
                          pc.is_in(text, value_set=pa.array(convert.true_values)))
    return pc.cast(pc.utf8_trim(text, " \t"), target)


def _first_bad(col: Any, name: str, f: CsvFile) -> tuple[int, str] | None:
    """The first value of a column read by :func:`_as_bytes` that the reader refuses, with why."""
    target = f.convert.column_types[name]
    lo = first_unconverted(col, pa.string())  # bytes that are not UTF-8 text
    found = None if lo is None else (lo, f"{shown(col[lo].as_py())} is not UTF-8 text")
    text = pc.cast(col if lo is None else col.slice(0, lo), pa.string())
    bad = first_unconverted(text, target, lambda v, t: _converted(v, t, f.convert))  # an earlier value of its type
    if bad is not None:
        found = (bad, f"{shown(text[bad].as_py())} is not valid for its {f.schema[name].type.name} field")
    return found


def _bad_row(f: CsvFile, start: int, exc: BaseException) -> RowError | None:
    """The first row from ``start`` that pyarrow's reader refuses: a value it cannot convert, or a row with a wrong
    number of values; None when ``exc`` is neither or the row is not found."""
    if "CSV conversion error" not in str(exc) and "CSV parse error: Expected" not in str(exc):
        return None
    bad = _bad_value(f, start)  # (rows counted exactly up to the first ragged row: the read skips those)
    ragged = _ragged(f, None if bad is None else bad.row + 1)
    return ragged if ragged is not None and (bad is None or ragged.row <= bad.row) else bad


def _bad_value(f: CsvFile, start: int) -> RowError | None:
    """The first row from ``start`` holding a value pyarrow's reader refuses, in any column, counting the rows of
    the file read again as bytes from ``start``, without its ragged rows; the first batch with a bad value holds
    the first one."""
    text = _as_bytes(f.convert)
    row = start
    for batch in _from_row(f, text, f.skipping, start):
        first: RowError | None = None
        for name in text.include_columns:
            found = _first_bad(batch.column(name), name, f)
            if found is not None and (first is None or row + found[0] < first.row):
                first = RowError(row + found[0], f"column {name!r}: {found[1]} ({f.path})")
        if first is not None:
            return first
        row += batch.num_rows
    return None


def _ragged(f: CsvFile, stop: int | None) -> RowError | None:
    """The first row (before row ``stop``) whose number of values is not the header's, found by Python's csv
    module, rows counted as pyarrow's reader counts them; None if there is none."""
    limit = stdcsv.field_size_limit()
    stdcsv.field_size_limit(sys.maxsize)  # (to_csv writes values of megabytes)
    try:
        with open(f.path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = stdcsv.reader(fh)
            next((r for r in reader if r), None)  # the header (after any empty lines)
            for row, record in enumerate(r for r in reader if r or f.columns == 1):
                if stop is not None and row >= stop:
                    return None
                if record and len(record) != f.columns:
                    got = ",".join(record)
                    return RowError(row, f"has {len(record)} values where the header names {f.columns} columns: "
                                         f"{shown(got)} ({f.path})")
    except stdcsv.Error:
        return None  # (a file Python's module reads otherwise than pyarrow's: its message stands)
    finally:
        stdcsv.field_size_limit(limit)
    return None


def _rows(f: CsvFile, start: int, stop: int) -> Any:
    """Rows ``start..stop`` as the reader converts them, where a later row of their block does not convert or
    has a wrong number of values (read as bytes, then converted column by column)."""
    text = _as_bytes(f.convert)
    batches, got = [], 0
    reader = _from_row(f, text, f.skipping, start)
    try:
        for batch in reader:
            batches.append(batch)
            got += batch.num_rows
            if got >= stop - start:
                break
    finally:
        reader.close()
    table = pa.Table.from_batches(batches).slice(0, stop - start)
    return pa.table({name: _converted(pc.cast(table.column(name), pa.string()), f.convert.column_types[name], f.convert)
                     for name in table.column_names})
