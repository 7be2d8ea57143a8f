"""Arrow interchange: any Arrow data in (the PyCapsule interface), a lazy Arrow stream of a journal out.

polars, DuckDB, pandas (>= 2.2) and pyarrow produce and consume ``__arrow_c_stream__`` without copies. On the
way in, :func:`as_source` turns such an object into record batches (a stream is read batch by batch); on the way
out, :func:`scan` gives a :class:`JournalScan`, whose ``__arrow_c_stream__`` starts a fresh
:func:`pychro.iter_batches` read each time it is called, so that DuckDB, polars and
``pyarrow.RecordBatchReader.from_stream`` read a journal larger than memory a batch at a time. Everything here is
pyarrow's own machinery (``RecordBatchReader``, ``from_stream``); nothing is converted by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._optional import require

__all__ = ["JournalScan", "as_source", "is_arrow_stream", "scan", "stream_schema"]


def is_arrow_stream(obj: Any) -> bool:
    """An object that exports the Arrow C stream interface (and is not a pyarrow Table or pandas frame, which
    pychro takes directly)."""
    return hasattr(obj, "__arrow_c_stream__") and not _is_pyarrow_table(obj) and not _is_pandas(obj)


def _is_pyarrow_table(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyarrow") and type(obj).__name__ in ("Table", "RecordBatch")


def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.startswith("pandas")


def as_source(obj: Any) -> Callable[[], Iterable[Any]] | None:
    """A function giving ``obj``'s record batches afresh on each call (the two passes of a checked write), or
    None when ``obj`` is not an Arrow stream or array export. A stream that can be read only once (a
    ``RecordBatchReader``) is read into memory on the first call."""
    pa = require("pyarrow", purpose="Arrow interchange")
    if is_arrow_stream(obj):
        if isinstance(obj, pa.RecordBatchReader):
            return _once(obj)

        def batches() -> Iterator[Any]:
            reader = pa.RecordBatchReader.from_stream(obj)
            try:
                yield from reader
            finally:
                reader.close()

        return batches
    if hasattr(obj, "__arrow_c_array__") and not _is_pyarrow_table(obj) and not _is_pandas(obj):
        batch = pa.record_batch(obj)
        return lambda: [batch]
    return None


def stream_schema(obj: Any) -> Any:
    """The Arrow schema of an object with the PyCapsule interface, without reading its data."""
    pa = require("pyarrow", purpose="Arrow interchange")
    if isinstance(obj, pa.RecordBatchReader):
        return obj.schema
    if hasattr(obj, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(obj)
        try:
            return reader.schema
        finally:
            reader.close()
    return pa.record_batch(obj).schema


def _once(reader: Any) -> Callable[[], Iterable[Any]]:
    """A one-shot stream, kept for two passes only if it is small: the batches are read into memory once."""
    pa = require("pyarrow", purpose="Arrow interchange")
    table: list[Any] = []

    def batches() -> Iterable[Any]:
        if not table:
            table.append(pa.Table.from_batches(list(reader), schema=reader.schema))
        return table[0].to_batches()

    return batches


_OPTIONS = ("date", "start", "end", "columns", "errors", "index", "metadata", "config", "thread_id_bits",
            "timestamp_column", "batch_rows", "threads", "stats", "unknown")


class JournalScan:
    """A journal read lazily, as an Arrow stream: hand it to DuckDB, polars or pyarrow.

    Each ``__arrow_c_stream__`` call starts a new read (as :func:`pychro.iter_batches` with the options given
    to :func:`scan`), so a scan can be queried again and again; memory holds a few batches, whatever the
    journal's size. With message types, ``scan[name]`` is the stream of one type.

    Examples
    --------
    >>> j = pychro.scan(path, "ts:timestamp_ms,sym:string,px:float64")            # doctest: +SKIP
    >>> duckdb.sql("SELECT sym, avg(px) FROM j GROUP BY sym")                        # doctest: +SKIP
    >>> polars.from_arrow(j)                                                        # doctest: +SKIP
    >>> pa.RecordBatchReader.from_stream(j).read_all()                              # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], schema: Any, type_name: str | None = None,
                 **options: Any) -> None:
        from .types import MessageTypes

        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"scan() got unknown options {unknown}; it takes {', '.join(_OPTIONS)}")
        self.path = os.fspath(path)
        self.source = schema
        self.type_name = type_name
        self.options = options
        self.types = schema if isinstance(schema, MessageTypes) else None
        if self.types is None and options.get("unknown", "raise") != "raise":
            raise ValueError("unknown= is for message types (a pychro.MessageTypes), not a single schema")
        # every argument resolved (and checked) now: a wrong path or column fails at scan(), not in a query
        self.schema = self._resolve()[1] if self.types is None or type_name is not None else None

    def __getitem__(self, name: str) -> JournalScan:
        if self.types is None:
            raise TypeError("scan[name] is for message types; this scan reads one schema")
        self.types.schema(name)  # a KeyError naming the types
        return JournalScan(self.path, self.types, name, **self.options)

    @property
    def names(self) -> list[str]:
        """The message types' names (message types only)."""
        if self.types is None:
            raise TypeError("names is for message types; this scan reads one schema")
        return list(self.types.names)

    def _resolve(self) -> tuple[Any, Any]:
        """(the resolved read, the stream's Arrow schema)."""
        o = self.options
        if self.types is None:
            from .api import _Read

            r = _Read(self.path, self.source, o.get("date"), o.get("start"), o.get("end"), o.get("columns"),
                      o.get("errors", "raise"), o.get("index", False), o.get("metadata"), o.get("config"),
                      o.get("thread_id_bits"), o.get("timestamp_column"))
            return r, r.arrow_schema
        from .typed import _TypedRead

        if self.type_name is None:
            raise TypeError(f"a scan of message types is one stream per type: scan[name], name one of {self.names}")
        tr = _TypedRead(self.path, self.types, o.get("date"), o.get("start"), o.get("end"), o.get("columns"),
                        o.get("errors", "raise"), o.get("unknown", "raise"), o.get("index", False),
                        o.get("metadata"), o.get("config"), o.get("thread_id_bits"), o.get("timestamp_column"))
        return tr, tr.schemas()[self.type_name]

    def to_reader(self) -> Any:
        """A ``pyarrow.RecordBatchReader`` over a fresh read of the journal."""
        pa = require("pyarrow", purpose="pychro.scan")
        from .api import DEFAULT_BATCH_ROWS, ReadStats, _batches, _threads

        o = self.options
        rows = o.get("batch_rows", DEFAULT_BATCH_ROWS)
        stats = o.get("stats") or ReadStats()
        read, schema = self._resolve()
        if self.types is None:
            batches = _batches(read, rows, _threads(o.get("threads"), read), False, 0.0, stats)
            return pa.RecordBatchReader.from_batches(schema, batches)
        from .typed import _typed_batches

        name = self.type_name
        pairs = _typed_batches(read, rows, _threads(o.get("threads"), read.r), False, 0.0, stats)
        return pa.RecordBatchReader.from_batches(schema, (b for n, b in pairs if n == name))

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """A fresh read of the journal as an Arrow C stream (the PyCapsule interface)."""
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def to_table(self) -> Any:
        """The whole read as one ``pyarrow.Table`` (in memory)."""
        return self.to_reader().read_all()

    def __repr__(self) -> str:
        what = f"[{self.type_name!r}]" if self.type_name else ""
        return f"<pychro.JournalScan {self.path!r}{what}>"


def scan(path: str | os.PathLike[str], schema: Any, **options: Any) -> JournalScan:
    """A lazy Arrow stream of a journal (see :class:`JournalScan`); ``options`` are those of
    :func:`pychro.iter_batches` (``columns=``, ``start=``/``end=``, ``date=``, ``errors=``, ``index=`` ...).

    Examples
    --------
    >>> j = pychro.scan(path, "ts:timestamp_ms,sym:string,px:float64", columns=["sym", "px"])  # doctest: +SKIP
    >>> duckdb.sql("SELECT sym, count(*) FROM j GROUP BY sym").fetchall()            # doctest: +SKIP
    """
    if "follow" in options:
        raise TypeError("scan() reads what is committed when each stream starts; follow= is for iter_batches")
    return JournalScan(path, schema, **options)
