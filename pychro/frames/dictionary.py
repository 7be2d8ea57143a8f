"""Which columns of a Parquet export to dictionary-encode.

Parquet's writer holds a column chunk's dictionary up to 1 MiB, then falls back to plain encoding for the rest.
A column with some 300 K or more distinct values in a row group (timestamps, random prices, ids) overflows
it whatever its width (4 bytes or more), so the dictionary is paid for (every value hashed, a dictionary page
written) and saves nothing: the file even comes out larger. ``pq.write_table`` tries it on every column;
:func:`dictionary_columns` leaves out the columns whose values (a sample of them) are nearly all distinct.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["dictionary_columns"]

SAMPLE = 32_768  # rows looked at
# Of 32 Ki rows drawn from K values, 95% are distinct at about K = 300 K: more than a 1 MiB dictionary holds of
# 4-byte values (262 K). Below it (K up to ~130 K gives <= 89%) the dictionary is kept, as pyarrow's default.
NEARLY_UNIQUE = 0.95


def dictionary_columns(table: Any) -> list[str]:
    """The Parquet column paths of ``table`` to dictionary-encode (``pq.ParquetWriter(use_dictionary=...)``):
    all but the flat columns of which :data:`SAMPLE` rows spread evenly over the table are at least
    :data:`NEARLY_UNIQUE` distinct. Nested columns (repeated groups) keep it.

    >>> t = pa.table({"ts": pa.array(range(40_000)), "side": pa.array([1, 2] * 20_000)})
    >>> dictionary_columns(t)
    ['side']
    """
    keep: list[str] = []
    step = max(1, table.num_rows // SAMPLE)  # (spread: the first rows alone need not look like the rest)
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(col.type):
            keep.extend(_leaves(name, col.type))
        elif not _nearly_unique(col, step):
            keep.append(name)
    return keep


def _nearly_unique(col: Any, step: int) -> bool:
    """Whether every ``step``-th value of ``col`` (a ChunkedArray) are at least NEARLY_UNIQUE distinct."""
    if len(col) == 0 or pa.types.is_boolean(col.type):
        return False
    width = col.type.bit_width // 8 if pa.types.is_primitive(col.type) else 0
    if width in (1, 2, 4, 8):  # the values' bytes, strided views (nulls count as whatever they hold): no copy
        sample = np.concatenate([
            np.frombuffer(c.buffers()[1], dtype=f"u{width}", count=len(c), offset=c.offset * width)[::step]
            for c in col.chunks if len(c)])
        sample.sort()  # (np.unique hashes integers: 10x slower than this at numpy 2.4)
        return bool(1 + np.count_nonzero(sample[1:] != sample[:-1]) >= NEARLY_UNIQUE * len(sample))
    sample = col.take(pa.array(np.arange(0, len(col), step)))
    return pc.count_distinct(sample, mode="all").as_py() >= NEARLY_UNIQUE * len(sample)


def _leaves(name: str, typ: Any) -> Iterator[str]:
    """The Parquet paths of a column's leaves (pyarrow's compliant list naming: ``name.list.element``)."""
    if pa.types.is_struct(typ):
        for i in range(typ.num_fields):
            yield from _leaves(f"{name}.{typ.field(i).name}", typ.field(i).type)
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        yield from _leaves(f"{name}.list.element", typ.value_type)
    else:
        yield name
