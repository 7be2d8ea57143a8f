"""The Parquet file of an export, written row group by row group.

Its dictionary columns are chosen at the first row group (:mod:`.dictionary`). A text column among them is handed
to pyarrow as an Arrow dictionary, built by the compiled ``_dictionary.encode`` on two threads: pyarrow then writes
that dictionary and the indices as they are, where with plain strings it hashes every value itself and compares
each one for the page statistics (about 20 ms a column per million rows). The dictionary holds the values in the
order they first appear, as pyarrow's own would, and is used only when it fits the dictionary page, where pyarrow
would not fall back to plain encoding: the file is byte for byte the one ``pq.ParquetWriter`` writes from the
plain strings (``tests/frames/test_parquet_file.py``). The file's Arrow schema (``ARROW:schema``) is the plain
one, so every reader sees string columns as before.
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import _dictionary
from ._workers import submit
from .dictionary import LIMIT, dictionary_columns

__all__ = ["ParquetFile", "encode_text"]

_ARROW_SCHEMA = b"ARROW:schema"
# told to store no schema (it would name the dictionary types), pyarrow writes no key-value metadata at all: the
# file's own, the plain Arrow schema included, is added before closing, which older pyarrows cannot (plain strings)
_CAN_STORE_OWN_SCHEMA = hasattr(pq.ParquetWriter, "add_key_value_metadata")
_TEXT_TYPES = (pa.string(), pa.binary())  # what _dictionary.encode reads: int32 offsets


class ParquetFile:
    """A Parquet file at ``path`` (a name, or a file open for writing: ``pq.ParquetWriter``'s ``where``;
    ``schema``: its Arrow schema, metadata included): :meth:`write` each row group, then :meth:`close`. Each row
    group is one table of ``schema``'s columns (plain strings)."""

    def __init__(self, path: Any, schema: Any, compression: str) -> None:
        self.path, self.schema, self.compression = path, schema, compression
        self.writer: Any = None
        self.texts: list[str] = []  # the columns written as dictionaries

    def write(self, table: Any, row_group_rows: int) -> None:
        """Write one row group: a table of the schema's columns, plain or as :meth:`prepare` returned it."""
        if self.writer is None:  # every flat text column tried; those that fit need no estimate
            texts = [f.name for f in self.schema if _CAN_STORE_OWN_SCHEMA and f.type in _TEXT_TYPES]
            with ThreadPoolExecutor(2, thread_name_prefix="pychro-dictionary") as pool:
                encoded = dict(zip(texts, _encode_all(pool, table, texts), strict=True))
            fits = [c for c in texts if encoded[c] is not None]
            self.texts = [c for c in fits if _all_in_first_page(encoded[c])]
            self._open(dictionary_columns(table, fits=fits))
            table = self._with_texts(table, encoded)
        else:
            table = self._encoded(table, threads=2)
        self.writer.write_table(table, row_group_size=row_group_rows)

    def prepare(self, table: Any) -> Any:
        """The row group with its dictionary columns encoded, once the first row group has chosen them, else as it
        is. Called by the thread gathering the next row group while this one is written (pyarrow writes on one
        thread): the encoding is then off the writing thread's path (a 10 M-row export: ten row groups)."""
        return table if self.writer is None else self._encoded(table, threads=1)

    def _encoded(self, table: Any, threads: int) -> Any:
        todo = [c for c in self.texts if not pa.types.is_dictionary(table.schema.field(c).type)]  # not prepared
        if not todo:
            return table
        with ThreadPoolExecutor(threads, thread_name_prefix="pychro-dictionary") as pool:
            return self._with_texts(table, dict(zip(todo, _encode_all(pool, table, todo), strict=True)))

    def _with_texts(self, table: Any, encoded: dict[str, Any]) -> Any:
        for name in self.texts:
            if name not in encoded:
                continue
            column = encoded[name]
            # a later row group's values overflow the page: pyarrow falls back as it would; (not None but
            # not _all_in_first_page: its pages all have the whole dictionary's index width, not the same bytes)
            if column is None:
                column = pa.table({name: pc.dictionary_encode(table.column(name))}).unify_dictionaries()[0]
            i = table.schema.get_field_index(name)
            table = table.set_column(i, self.writer.schema.field(name), column)
        return table

    def close(self) -> None:
        if self.writer is None:  # no rows
            self._open([])
        if self.texts:  # what pyarrow would have stored: the schema's metadata, then the plain Arrow schema
            stored = base64.b64encode(self.schema.serialize().to_pybytes())
            self.writer.add_key_value_metadata({**(self.schema.metadata or {}), _ARROW_SCHEMA: stored})
        self.writer.close()
        self.writer = None

    def abort(self) -> None:
        """Close the file after an error (it is left incomplete)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def forget(self) -> None:
        """Let go of pyarrow's writer unclosed (its close failed, or was never reached): its ``__del__`` would
        close it again later, on a file the caller has closed by then ("Invalid operation on closed file")."""
        if self.writer is not None:
            self.writer.is_open = False
            self.writer = None

    def _open(self, use: list[str]) -> None:
        schema = self.schema
        for name in self.texts:
            field = schema.field(name)
            schema = schema.set(schema.get_field_index(name), field.with_type(pa.dictionary(pa.int32(), field.type)))
        self.writer = pq.ParquetWriter(self.path, schema, compression=self.compression, use_dictionary=use,
                                       store_schema=not self.texts)


# rows surely inside a row group's first data page: pyarrow (26) cuts pages at 20 000 rows (max_rows_per_page),
# older ones at 1 MiB, and a page of dictionary indices takes at most 4 bytes a row
FIRST_PAGE_ROWS = 10_000


def _all_in_first_page(column: Any) -> bool:
    """Whether every value of this dictionary column first appears in its first :data:`FIRST_PAGE_ROWS` rows.

    pyarrow writes each data page's indices at the bit width of the dictionary as it stands when the page is
    flushed; handed a dictionary array, it holds the whole dictionary from the first page on. The pages are the
    same only when the dictionary is already whole at the first page's end (a helper found files that differed
    by a byte per page where symbols first appeared later in the day). The values are in first-appearance
    order, so the distinct values of the first rows are the ones up to the largest index among them."""
    head = column.slice(0, FIRST_PAGE_ROWS)
    seen = max((pc.max(c.indices).as_py() or 0 for c in head.chunks if c.null_count < len(c)), default=-1) + 1
    return seen >= len(column.chunk(0).dictionary) if column.num_chunks else True


def _encode_all(pool: ThreadPoolExecutor, table: Any, names: list[str]) -> list[Any]:
    """:func:`encode_text` of each of these columns, their chunks on the pool's threads."""
    # (submit: run here once the interpreter is shutting down, as for an export in a thread that outlived the
    # main one, where the pool takes no more work)
    jobs = {name: [submit(pool, _encode_chunk, c) for c in table.column(name).chunks] for name in names}
    return [_unified(table.column(name).type, [job.result() for job in jobs[name]]) for name in names]


def encode_text(column: Any) -> Any:
    """A string (or binary) ChunkedArray as a dictionary ChunkedArray (int32 indices, one dictionary shared by
    every chunk, values in the order they first appear), or None when that dictionary would not fit pyarrow's
    dictionary page (:data:`LIMIT` bytes as 4 + length per value).

    >>> encode_text(pa.chunked_array([["b", "a"], [None, "b", "c"]])).chunk(1).dictionary.to_pylist()
    ['b', 'a', 'c']
    """
    if column.type not in _TEXT_TYPES:
        raise TypeError(f"encode_text takes string or binary columns (int32 offsets), not {column.type}")
    return _unified(column.type, [_encode_chunk(c) for c in column.chunks])


def _encode_chunk(array: Any) -> Any:
    n = len(array)
    kind = pa.dictionary(pa.int32(), array.type)
    if n == 0:  # (its buffers may be missing)
        return pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), pa.array([], array.type))
    _, offsets, data = array.buffers()
    # the validity as a bitmap from the array's first row (the array may be a slice starting mid-byte)
    validity = pc.is_valid(array).buffers()[1] if array.null_count else None
    indices = pa.allocate_buffer(4 * n)  # Arrow's pool keeps freed memory: no page faults row group after row group
    got = _dictionary.encode(offsets, data if data is not None else b"", validity, array.offset, n, indices, LIMIT - 1)
    if got is None:
        return None
    count, dict_offsets, dict_data = got
    values = pa.Array.from_buffers(array.type, count, [None, pa.py_buffer(dict_offsets), pa.py_buffer(dict_data)])
    return pa.DictionaryArray.from_buffers(kind, n, [validity, indices], values)


def _unified(value_type: Any, chunks: list[Any]) -> Any:
    """The chunks (from :func:`_encode_chunk`) over one dictionary (each chunk's values in first-appearance order,
    so the union's are too), or None when a chunk's or the union's is too big for the page (pyarrow would fall back
    to plain part way: not the same file)."""
    if any(c is None for c in chunks):
        return None
    kind = pa.dictionary(pa.int32(), value_type)
    column = pa.table({"c": pa.chunked_array(chunks, type=kind)}).unify_dictionaries()[0]
    if not column.num_chunks:
        return column
    values = column.chunk(0).dictionary
    page = 4 * len(values) + (pc.sum(pc.binary_length(values)).as_py() or 0)
    return column if page < LIMIT else None
