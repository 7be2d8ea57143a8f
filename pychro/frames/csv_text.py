"""Values as CSV text, and CSV text back to values: what :func:`~pychro.frames.export.to_csv` writes, the CSV
import reads back exactly.

* **Nulls.** A null (a Java null string) is an unquoted empty field; an empty string is a quoted ``""``. Every
  other text is that text: ``NA``, ``null``, ``NaN`` or ``N/A`` in a string column are strings, not nulls.
* **Timestamps** are ISO text in UTC (``2024-03-05 09:00:00.000Z``). ISO text holds the years 0001-9999 only, so a
  value outside them (Java's ``Long.MAX_VALUE`` "no time" sentinel in a ``timestamp_ms`` field, for one) is written
  as its integer count of the field's unit since 1970 (``9223372036854775807``); so is a ``timestamp_ns`` value in
  the 0.85 s before 1677-09-21 00:12:44, whose ISO text Arrow cannot read back. Reading, a timestamp field takes
  ISO text with a zone (``Z``, ``+01:00``) or without one (taken as UTC, as everywhere in pychro), or an integer
  count of the field's unit since 1970.

``pychro head``/``tail`` show timestamps as this text too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .encode import RowError, earlier
from .schema import LIST, Schema

__all__ = ["convert_options", "first_unconverted", "outside_iso", "parse_timestamps", "shown", "timestamp_text",
           "timestamps_from_text"]

ISO_FIRST_S = -62_135_596_800  # 0001-01-01T00:00:00Z in seconds since 1970
ISO_END_S = 253_402_300_800  # 10000-01-01T00:00:00Z
_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_INTEGER = r"^[+-]?[0-9]+$"
# what timestamp_text writes (and more ISO text with Z): Arrow's cast parses it as the steps below would
_CANONICAL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"
# a time of day followed by a zone: Z, +hh, +hhmm or +hh:mm (a bare date's "-05" is not a zone)
_ZONE = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)?\s*([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$"


def outside_iso(col: Any) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    """Mask of the timestamps that ISO text cannot carry (years outside 0001-9999; ns before the first whole
    second Arrow parses back); None when there are none."""
    unit = col.type.unit
    per = _PER_S[unit]
    raw = pc.cast(col, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    mask = raw < _iso_first(unit)
    if ISO_END_S * per < 2**63:  # (ns: every int64 up to the last is inside)
        mask |= raw >= ISO_END_S * per
    return mask if mask.any() else None


def timestamp_text(col: Any) -> Any:
    """A timestamp column as CSV text: ISO in UTC, or the integer count where ISO cannot hold the value."""
    text = pc.cast(col, pa.string())
    mask = outside_iso(col)
    if mask is None:
        return text
    count = pc.cast(pc.cast(col, pa.int64()), pa.string())
    return pc.if_else(pa.array(mask), count, text)


def convert_options(schema: Schema, include: list[str] | None = None) -> Any:
    """pyarrow CSV options reading what :func:`timestamp_text` and pyarrow's writer make: only an unquoted empty
    field is null; timestamp columns come as text, for :func:`parse_timestamps`. ``include``: the columns read
    (default all)."""
    from pyarrow import csv

    lists = [f for f in schema.fields if f.kind == LIST]
    if lists:
        raise ValueError(f"CSV has no list columns: field {lists[0].name!r} is {lists[0].type.name}")
    # float32 as float64: text beyond float32 becomes inf in pyarrow's reader; the write names its row instead
    types = {f.name: (pa.string() if pa.types.is_timestamp(f.type) else
                      pa.float64() if pa.types.is_float32(f.type) else f.type) for f in schema.to_arrow()}
    return csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                              quoted_strings_can_be_null=False, include_columns=include or [])


def parse_timestamps(data: Any, schema: Schema, first_row: int = 0) -> Any:
    """``data`` (a RecordBatch or Table read with :func:`convert_options`) with its timestamp columns parsed;
    ``first_row``: the row number of its first row in the file, for messages. Text that is not a timestamp of
    its field raises :class:`RowError` for the first such row of any timestamp column."""
    first: RowError | None = None
    for f in schema.fields:
        name = f.name
        if not f.type.name.startswith("timestamp_") or name not in data.column_names:
            continue
        pos = data.column_names.index(name)
        col = data.column(pos)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if not pa.types.is_string(col.type):
            continue
        try:
            parsed = timestamps_from_text(col, f.type.name.split("_", 1)[1], name, first_row)
        except RowError as exc:  # the other timestamp columns may hold an earlier one
            first = earlier(first, exc)
            continue
        data = data.set_column(pos, data.schema.field(pos).with_type(parsed.type), parsed)
    if first is not None:
        raise first
    return data


def timestamps_from_text(col: Any, unit: str, name: str, first_row: int = 0) -> Any:
    """Text (ISO, naive = UTC, or an integer count of ``unit``) -> ``timestamp[unit, UTC]``; a RowError names
    the column and the first row that is neither (counted from ``first_row``)."""
    if pc.all(pc.match_substring_regex(col, _CANONICAL)).as_py():  # to_csv's text: one cast (8x faster)
        with contextlib.suppress(pa.ArrowInvalid, OverflowError):  # (finer than the unit, out of range ...)
            return pc.cast(col, pa.timestamp(unit, tz="UTC"))
    n = len(col)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    text = pc.utf8_trim_whitespace(col)
    is_int = pc.fill_null(pc.match_substring_regex(text, _INTEGER), False).to_numpy(zero_copy_only=False)
    aware = pc.fill_null(pc.match_substring_regex(text, _ZONE), False).to_numpy(zero_copy_only=False)
    # trailing zeros of a fraction go, so that ns text of a whole ms ("...00.123000000Z") parses at ms
    bare = pc.replace_substring_regex(text, r"\.0+([Zz+-]|$)", r"\1")
    bare = pc.replace_substring_regex(bare, r"(\.[0-9]*[1-9])0+([Zz+-]|$)", r"\1\2")
    bare = pc.replace_substring_regex(bare, r"z$", "Z")  # Arrow's parser takes the zone Z in capitals only
    signless = pc.replace_substring_regex(text, r"^\+", "")  # "+5": Arrow's integer parser takes no plus sign
    out = np.zeros(n, dtype=np.int64)
    kinds = ((is_int, pa.int64()), (valid & ~is_int & aware, pa.timestamp(unit, tz="UTC")),
             (valid & ~is_int & ~aware, pa.timestamp(unit)))  # naive: the same count, read as UTC
    first: RowError | None = None  # each kind of text is parsed on its own: the first bad row of any of them
    for mask, target in kinds:
        rows = np.flatnonzero(mask)
        if not rows.size:
            continue
        part = (signless if target == pa.int64() else bare).take(pa.array(rows))
        try:
            values = pc.cast(part, target)
        except (pa.ArrowInvalid, OverflowError):
            exc = _unparsed(part, col.take(pa.array(rows)), rows, target, unit, name, first_row)
            first = earlier(first, exc)
            continue
        out[rows] = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
    if first is not None:
        raise first
    return pa.array(out, pa.timestamp(unit, tz="UTC"), mask=None if valid.all() else ~valid)


def first_unconverted(values: Any, target: Any, cast: Callable[[Any, Any], Any] = pc.cast) -> int | None:
    """Position of the first of ``values`` that ``cast(values, target)`` refuses (``ArrowInvalid``), None when it
    takes all (error paths: the whole cast, then halves, a few dozen casts for millions of values)."""

    def converts(part: Any) -> bool:
        try:
            cast(part, target)
            return True
        except (pa.ArrowInvalid, OverflowError):
            return False

    if converts(values):
        return None
    lo, hi = 0, len(values)  # the first value that does not convert is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if converts(values.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def _unparsed(part: Any, given: Any, rows: Any, target: Any, unit: str, name: str, first_row: int) -> RowError:
    """The first value of ``part`` that does not convert, as a RowError with its column, row and text as
    ``given`` (error path only)."""
    pos = first_unconverted(part, target)
    if pos is not None:
        value = part[pos].as_py()
        row = first_row + int(rows[pos])
        why = f"does not fit in int64 {unit}" if pa.types.is_integer(target) else _not_timestamp(value, target, unit)
        return RowError(row, f"column {name!r}: {shown(given[pos].as_py())} {why}; a timestamp_{unit} field takes "
                             f"ISO text or an integer count of {unit} since 1970")
    raise ValueError(f"column {name!r}: timestamps that do not convert to timestamp_{unit}")


def _not_timestamp(value: str, target: Any, unit: str) -> str:
    """Why ISO-like ``value`` does not convert to ``target`` (timestamp[unit]): not an ISO date/time, finer than
    the unit, or outside the times ISO text gives the unit (int64 ns: 1677-2262)."""

    def seconds(text: str) -> int | None:
        try:
            return int(pc.cast(pc.cast(pa.array([text]), pa.timestamp("s", tz=target.tz)), pa.int64())[0].as_py())
        except (pa.ArrowInvalid, OverflowError):
            return None

    fraction = re.search(r"(?<=:[0-9]{2})\.([0-9]+)", value)  # of the seconds of a time of day
    whole = seconds(value if fraction is None else value[: fraction.start()] + value[fraction.end():])
    if whole is None:
        return "is not an ISO date/time (2024-03-05T09:00:00Z; naive = UTC)"
    if fraction is not None and fraction.group(1)[len(str(_PER_S[unit])) - 1:].strip("0"):
        return f"has finer precision than the field's timestamp_{unit} keeps"
    edges = pc.cast(pa.array([_iso_first(unit), 2**63 - 1]).cast(pa.timestamp(unit)), pa.string()).to_pylist()
    first, last = (re.sub(r"\.0+$", "", t) for t in edges)
    return (f"is outside the times ISO text gives a timestamp_{unit} field ({first} to {last}; an integer count may "
            "be any int64)")


def _iso_first(unit: str) -> int:
    """The first value of ``unit`` whose ISO text Arrow reads back: its parser multiplies the whole seconds by the
    unit first, so a time in the int64 range's first (partial) second does not parse."""
    per = _PER_S[unit]
    return max(ISO_FIRST_S * per, -((2**63) // per) * per)


def shown(value: Any) -> str:
    """A bad value for a message: its repr, cut short; bytes that are not UTF-8 from a little before the first bad
    byte."""
    if isinstance(value, bytes):
        try:
            value.decode()
        except UnicodeDecodeError as exc:
            if exc.start > 20:
                return "..." + shown(value[exc.start - 8 :])
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
