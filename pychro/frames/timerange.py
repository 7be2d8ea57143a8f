"""Time ranges: ``start``/``end`` given as datetimes select rows by the schema's timestamp field.

A datetime bound selects the cycles overlapping ``[start, end)`` (other cycles are not opened) and, inside
them, the rows whose timestamp field is in ``[start, end)`` (``end`` exclusive, as for full indices). A cycle
the range covers whole is read whole. In a cycle the range covers only in part, the first and last row in range
are found from the timestamp column alone (decoded through the same batch decoder as every read, nothing else):
by binary search in each batch while the timestamps are non-decreasing in index order, by a filter once they
are not. Only the rows between those two are then decoded, and every batch returned is masked by the range too
(a cheap compare), so no row outside it is returned and none inside it is missed, whatever the order. The whole
timestamp column of such a cycle is read because only that proves the order: a sampled check would miss a few
rows backfilled far from the bounds.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import schema as S
from ._workers import submit

__all__ = ["TimeFilter", "as_date", "check_order", "is_time_bound", "narrow", "time_filter"]

_UTC = _dt.UTC
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_NS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_SUB_MICRO = re.compile(r"[.,]\d{7,}")  # a fraction of a second finer than microseconds
SCAN_ROWS = 1 << 18  # rows of the timestamp column decoded at once while looking for the bounds


def parse_when(value: Any, what: str) -> Any:
    """An ISO string or ``np.datetime64`` -> an aware datetime (naive = UTC); other values unchanged."""
    if isinstance(value, np.datetime64):
        import pandas as pd  # keeps the nanoseconds a datetime would drop

        value = pd.Timestamp(value)
    if value is not None and isinstance(value, _dt.date) and value != value:  # NaT: no instant to compare with
        raise ValueError(f"{what}=NaT is not a time: give a date/time, a full index (int), or None for open")
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{what}={value!r} is neither a full index (int) nor an ISO date/time") from None
        if _SUB_MICRO.search(text):  # datetime keeps microseconds: pandas parses the same text to the ns
            import pandas as pd

            moment = pd.Timestamp(text)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)
    return value


def as_date(value: Any) -> Any:
    """``date=`` argument: ISO strings (``"2024-03-05"``) and ``np.datetime64`` become dates; pairs element-wise."""
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("date=NaT is not a date")
        return _dt.date.fromisoformat(str(value.astype("datetime64[D]")))
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"date={value!r} is not an ISO date (YYYY-MM-DD)") from None
    if isinstance(value, (tuple, list)):
        return type(value)(as_date(v) for v in value)
    if isinstance(value, _dt.datetime) and value.tzinfo is not None and value.utcoffset():
        # its day in that zone spans two UTC days, and date= reads whole cycles: neither is what was meant
        raise ValueError(
            f"date={value.isoformat()} is in a time zone other than UTC, and date= selects whole cycles (UTC "
            "days): pass start=/end= for that day's hours in its zone, or date=<value>.date() for the UTC day"
        )
    return value


def is_time_bound(value: Any) -> bool:
    return isinstance(value, _dt.date)


def check_order(start: Any, end: Any) -> None:
    """Raise ``ValueError`` when ``start`` is after ``end`` (both full indices or both times, parsed).

    A reversed range is a mistake (swapped bounds, a typo in a date), not a request for nothing: reading it as
    an empty result would hide the mistake.
    """
    if start is None or end is None or isinstance(start, bool) or isinstance(end, bool):
        return
    if is_time_bound(start) and is_time_bound(end):
        a, b = _epoch_ns(start), _epoch_ns(end)
    elif isinstance(start, (int, np.integer)) and isinstance(end, (int, np.integer)):
        a, b = int(start), int(end)
    elif is_time_bound(start) != is_time_bound(end) and any(isinstance(v, (int, np.integer)) for v in (start, end)):
        # a full index beside a time is almost always an epoch count meant as a time: refuse, not guess
        raise ValueError(
            f"start={_show(start)} and end={_show(end)} mix a full index (int) with a date/time: give both as "
            "full indices or both as dates/datetimes/ISO strings"
        )
    else:
        return
    if a > b:
        raise ValueError(f"start={_show(start)} is after end={_show(end)}: swap them (end is exclusive)")
    if a == b:  # a mistake too: an inclusive reading of [d, d] meant day d
        raise ValueError(f"start=end={_show(start)} is an empty range (end is exclusive): give a later end, or "
                         "date= for a whole day")


def _show(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{int(value):#x}"
    return value.isoformat() if isinstance(value, _dt.date) else repr(value)


def _epoch_ns(value: _dt.date) -> int:
    """Nanoseconds since the epoch of a date (midnight UTC) or datetime (naive = UTC); pandas keeps its ns."""
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    delta = value - _EPOCH
    ns = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    return ns + int(getattr(value, "nanosecond", 0))


@dataclass(frozen=True)
class TimeFilter:
    """Rows whose ``column`` (epoch counts of ``unit``) is in ``[lo, hi)``; None = open. Picklable."""

    column: str
    unit: str
    lo: int | None
    hi: int | None

    def values(self, array: Any) -> np.ndarray:
        """The epoch counts of a timestamp Arrow array as int64 numpy (no copy when possible)."""
        import pyarrow as pa

        return np.asarray(array.view(pa.int64()).to_numpy(zero_copy_only=False))

    def inside(self, ts: np.ndarray) -> np.ndarray | None:
        """Boolean mask of the values in range, or None when all are."""
        mask: np.ndarray | None = None
        if self.lo is not None:
            mask = ts >= self.lo
        if self.hi is not None:
            below = ts < self.hi
            mask = below if mask is None else mask & below
        if mask is None or bool(mask.all()):
            return None
        return mask

    def covers(self, t0_ns: int, t1_ns: int) -> bool:
        """True when every instant of ``[t0_ns, t1_ns)`` is inside the range."""
        per = _NS_PER[self.unit]
        return (self.lo is None or t0_ns >= self.lo * per) and (self.hi is None or t1_ns <= self.hi * per)


def time_filter(schema: S.Schema, start: Any, end: Any, timestamp_column: str | None) -> TimeFilter | None:
    """The row filter of datetime ``start``/``end`` bounds (None when neither is a datetime)."""
    if timestamp_column is not None and not isinstance(timestamp_column, str):
        raise TypeError(f"timestamp_column must be a str, got {type(timestamp_column).__name__}")
    if not (is_time_bound(start) or is_time_bound(end)):
        return None
    if timestamp_column is not None:
        if timestamp_column not in schema:
            raise ValueError(f"timestamp_column={timestamp_column!r} is not a field of the schema {schema.names}")
        field = schema[timestamp_column]
        if not field.type.name.startswith("timestamp_"):
            raise ValueError(f"timestamp_column={timestamp_column!r} is a {field.type.name} field, not timestamp_*")
    else:
        found = [f for f in schema.fields if f.type.name.startswith("timestamp_")]
        if not found:
            raise ValueError(
                "start/end given as dates or datetimes select rows by a timestamp field, but the schema has no "
                "timestamp_ms/us/ns field: give full indices (ints), or date= to select whole cycles"
            )
        field = found[0]
    unit = field.type.name.split("_", 1)[1]
    per = _NS_PER[unit]
    # ts >= start  <=>  ts * per >= start_ns  <=>  ts >= ceil(start_ns / per); the same for ts < end
    lo = -(-_epoch_ns(start) // per) if is_time_bound(start) else None
    hi = -(-_epoch_ns(end) // per) if is_time_bound(end) else None
    return TimeFilter(field.name, unit, lo, hi)


def narrow(
    files: Any, tf: TimeFilter, plan: Any, seq_lo: int, seq_hi: int, threads: int = 1
) -> tuple[int, int, bool]:
    """``(first seq, end seq, ordered)`` of the rows of ``[seq_lo, seq_hi)`` whose timestamp is in range.

    The timestamp column of the span is decoded (alone) and searched batch by batch: binary search while it is
    non-decreasing, a filter once it is not. Rows that do not match the schema are passed over here (the read
    itself applies ``errors=`` to the rows it returns). Nothing in range gives an empty span. With
    ``threads > 1`` batches of the column decode side by side (the decoder releases the GIL), at most
    ``2 * threads`` ahead.
    """
    import collections
    from concurrent.futures import Future, ThreadPoolExecutor

    from .batch import decode_batch

    state = _State()
    tasks = files.entries(seq_lo, seq_hi, SCAN_ROWS)
    if threads <= 1:
        for seq0, entries in tasks:
            state.update(tf, seq0, decode_batch(plan, files, seq0, entries, "skip"))
    else:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="pychro-range")
        pending: collections.deque[tuple[int, Future[Any]]] = collections.deque()
        try:
            for seq0, entries in tasks:
                pending.append((seq0, submit(pool, decode_batch, plan, files, seq0, entries, "skip")))
                if len(pending) >= 2 * threads:
                    done_seq0, fut = pending.popleft()
                    state.update(tf, done_seq0, fut.result())
            while pending:
                done_seq0, fut = pending.popleft()
                state.update(tf, done_seq0, fut.result())
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
    if state.first is None:
        return seq_lo, seq_lo, state.sorted
    return state.first, state.last + 1, state.sorted


class _State:
    """What the batches of the timestamp column seen so far (in index order) say."""

    def __init__(self) -> None:
        self.first: int | None = None  # first seq in range
        self.last = -1  # last seq in range
        self.sorted = True  # non-decreasing so far
        self.prev: int | None = None  # the last value seen

    def update(self, tf: TimeFilter, seq0: int, out: Any) -> None:
        if not out.n:
            return
        ts = tf.values(out.columns[tf.column])
        rows = np.arange(out.n, dtype=np.int64) if out.rows is None else out.rows
        if self.sorted:
            self.sorted = (self.prev is None or int(ts[0]) >= self.prev) and bool((ts[1:] >= ts[:-1]).all())
        self.prev = int(ts[-1])
        if self.sorted:  # non-decreasing: binary search for the bounds
            a = 0 if tf.lo is None else int(np.searchsorted(ts, tf.lo, "left"))
            b = ts.size if tf.hi is None else int(np.searchsorted(ts, tf.hi, "left"))
            hits = (a, b - 1) if a < b else None
        else:  # a filter
            mask = np.ones(ts.size, np.bool_)
            if tf.lo is not None:
                mask &= ts >= tf.lo
            if tf.hi is not None:
                mask &= ts < tf.hi
            found = np.flatnonzero(mask)
            hits = (int(found[0]), int(found[-1])) if found.size else None
        if hits is not None:
            if self.first is None:
                self.first = seq0 + int(rows[hits[0]])
            self.last = seq0 + int(rows[hits[1]])
