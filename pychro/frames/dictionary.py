"""Which columns of a Parquet export to dictionary-encode.

Parquet's writer holds a column chunk's dictionary up to 1 MiB, then falls back to plain encoding for the rest.
A column whose distinct values in a row group need well over that (a day's timestamps, random prices, ids) is
paid for twice: every value hashed until the dictionary is full, a dictionary page written, and the file comes
out larger than plain. ``pq.write_table`` tries the dictionary on every column; :func:`dictionary_columns` leaves
it out where an estimate of the distinct values, times their size, is at least twice the limit.

The estimate is the smaller of two, each from a sample of :data:`SAMPLE` values, so that neither kind of data
fools it: the distinct fraction of the first rows, times the rows (right for sorted or clustered data, such as
times with several rows per millisecond, whose values repeat in runs); and the number of equally likely values
that a sample of rows drawn at random would come from (right for data in no order or in cycles, such as 100 K
order ids shuffled, whose first rows look all distinct). Skewed data makes both smaller: the dictionary is kept.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["dictionary_columns"]

SAMPLE = 16_384  # values in each sample
LIMIT = 1 << 20  # pyarrow's dictionary page limit (dictionary_pagesize_limit), bytes


def dictionary_columns(table: Any, fits: Collection[str] = ()) -> list[str]:
    """The Parquet column paths of ``table`` to dictionary-encode (``pq.ParquetWriter(use_dictionary=...)``):
    all but the flat columns whose estimated distinct values would fill at least twice pyarrow's 1 MiB
    dictionary. Nested columns (repeated groups) keep it, and so do the columns named in ``fits`` (their
    dictionary is known to fit: no estimate).

    >>> t = pa.table({"ts": pa.array(range(300_000)), "side": pa.array([1, 2] * 150_000)})
    >>> dictionary_columns(t)
    ['side']
    """
    n = table.num_rows
    # the same rows of every column, drawn at random (seeded: an export is repeatable); a strided sample was
    # fooled by values repeating in a cycle (i % 100000 looked all distinct)
    drawn = np.sort(np.random.default_rng(n).choice(n, size=min(SAMPLE, n), replace=False))
    keep: list[str] = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(col.type):
            keep.extend(_leaves(name, col.type))
        elif name in fits or pa.types.is_boolean(col.type) or n == 0 or _dictionary_bytes(col, drawn) < 2 * LIMIT:
            keep.append(name)
    return keep


def _dictionary_bytes(col: Any, drawn: Any) -> float:
    """An estimate of the bytes of ``col``'s dictionary (a ChunkedArray): distinct values times their size;
    ``drawn``: the sorted positions of the random sample."""
    n = len(col)
    width = col.type.bit_width // 8 if pa.types.is_primitive(col.type) and col.type.bit_width in (8, 16, 32, 64) else 0
    if width:  # the values' bytes (nulls count as what their slots hold), read in place
        views = [np.frombuffer(c.buffers()[1], dtype=f"u{width}", count=len(c), offset=c.offset * width)
                 for c in col.chunks if len(c)]
        starts, picks = _in_chunks([len(v) for v in views], drawn)
        spread = np.concatenate([v[pick] for v, pick in zip(views, picks, strict=True)])
        first = np.concatenate([v[: max(0, SAMPLE - int(starts[k]))] for k, v in enumerate(views)])  # its own rows
        d_first, d_spread, size = _sorted_distinct(first), _sorted_distinct(spread), float(width)
    else:
        first = col.slice(0, SAMPLE)
        # taken chunk by chunk: the same values, in half the time of a take over the chunked array
        _, picks = _in_chunks([len(c) for c in col.chunks], drawn)
        spread = pa.chunked_array([c.take(pa.array(pick)) for c, pick in zip(col.chunks, picks, strict=True)],
                                  type=col.type)
        d_first, d_spread = pc.count_distinct(first, mode="all").as_py(), pc.count_distinct(spread, mode="all").as_py()
        text = pa.types.is_binary(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        size = 4 + (pc.mean(pc.binary_length(spread)).as_py() or 0.0) if text else 8.0
    distinct = min(d_first / len(first) * n, _population(d_spread, len(spread)), n)
    return distinct * size


def _in_chunks(lengths: list[int], drawn: Any) -> tuple[Any, list[Any]]:
    """The first row of each chunk of these ``lengths``, and the sorted positions ``drawn`` split by chunk, each
    part counted from its chunk's first row."""
    starts = np.cumsum([0] + lengths)
    cut = np.searchsorted(drawn, starts)  # drawn[cut[k]:cut[k + 1]] fall in chunk k
    return starts, [drawn[cut[k] : cut[k + 1]] - starts[k] for k in range(len(lengths))]


def _sorted_distinct(values: Any) -> int:
    """Distinct values of an integer array, by a sort (np.unique hashes integers: 10x slower at numpy 2.4)."""
    values = np.sort(values)
    return 1 + int(np.count_nonzero(values[1:] != values[:-1])) if len(values) else 0


def _population(d: int, s: int) -> float:
    """How many equally likely values ``s`` draws come from when ``d`` of them are distinct: K with
    K (1 - exp(-s/K)) = d (infinite when all are)."""
    if d >= s:
        return math.inf
    lo, hi = float(d), float(d)
    while hi * -math.expm1(-s / hi) < d:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * -math.expm1(-s / mid) < d else (lo, mid)
    return hi


def _leaves(name: str, typ: Any) -> Iterator[str]:
    """The Parquet paths of a column's leaves (pyarrow's compliant list naming: ``name.list.element``)."""
    if pa.types.is_struct(typ):
        for i in range(typ.num_fields):
            yield from _leaves(f"{name}.{typ.field(i).name}", typ.field(i).type)
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        yield from _leaves(f"{name}.list.element", typ.value_type)
    else:
        yield name
