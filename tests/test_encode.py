"""Vectorised encoders of the bulk writer against the row encoders of pychro._fields."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pychro import _fields as F
from pychro.frames.encode import _copy_runs, encode_stop_bits, encode_strings, materialize, stop_bit_lengths


@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_stop_bits_equal_row_encoder(values: list[int]) -> None:
    enc = materialize(encode_stop_bits(np.array(values, dtype=np.int64)))
    assert enc.data is not None and enc.offsets is not None
    for i, v in enumerate(values):
        assert bytes(enc.data[enc.offsets[i] : enc.offsets[i + 1]]) == F.encode_stop_bit(v)
    assert list(stop_bit_lengths(np.array(values, dtype=np.int64))) == [len(F.encode_stop_bit(v)) for v in values]


@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), min_size=1, max_size=40))
def test_strings_equal_row_encoder(texts: list[str | None]) -> None:
    arr = pa.array(texts, type=pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    enc = materialize(encode_strings(data, offsets, np.array(arr.is_valid())))
    assert enc.data is not None and enc.offsets is not None
    for i, t in enumerate(texts):
        expected = F.NULL_STRING if t is None else F.encode_stop_bit(len(F.encode_text(t))) + F.encode_text(t)
        assert bytes(enc.data[enc.offsets[i] : enc.offsets[i + 1]]) == expected
    assert enc.slow_rows == sum(1 for t in texts if t is not None and any(ord(c) > 0xFFFF for c in t))


@pytest.mark.parametrize("seed", range(40))
def test_copy_runs_matches_a_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    lens = rng.integers(0, 100, n)  # short (word path) and long (byte path) runs, empty ones too
    gaps = rng.integers(0, 6, n)
    dst_starts = np.cumsum(gaps + np.concatenate(([0], lens[:-1])))
    size = int(dst_starts[-1] + lens[-1] + rng.integers(0, 3))  # runs may end at the very end of dst
    src = rng.integers(0, 256, int(lens.sum()) + 30).astype(np.uint8)
    src_starts = np.minimum(rng.integers(0, 30, n) + np.concatenate(([0], np.cumsum(lens)[:-1])), len(src) - lens)
    dst = rng.integers(0, 256, size).astype(np.uint8)
    expected = dst.copy()
    for i in range(n):
        expected[dst_starts[i] : dst_starts[i] + lens[i]] = src[src_starts[i] : src_starts[i] + lens[i]]
    _copy_runs(dst, dst_starts.astype(np.int64), src, src_starts.astype(np.int64), lens.astype(np.int64))
    assert (dst == expected).all()
