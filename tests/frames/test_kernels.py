"""The vectorised kernels against the spec's encodings: stop-bit decoding, chars, Java text (CESU-8)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import ref_java_text, ref_stop_bit  # tests/helpers.py: reference encoders written from the spec

from pychro import _fields as F
from pychro.frames.decode import stop_bit
from pychro.frames.text import build_chars, build_strings


def _packed(chunks: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.cumsum([0] + [len(c) for c in chunks[:-1]]).astype(np.int64)
    return np.frombuffer(b"".join(chunks) + b"\0" * 16, np.uint8), starts


@given(st.lists(st.integers(-(1 << 63), (1 << 63) - 1) | st.sampled_from([0, -1, 127, 128, -(1 << 63), (1 << 63) - 1]),
                min_size=1, max_size=200))
def test_stop_bit_matches_the_spec_encoding(values: list[int]) -> None:
    chunks = [ref_stop_bit(v) for v in values]
    buf, starts = _packed(chunks)
    got, used, too_long = stop_bit(buf, starts)
    assert got.tolist() == values
    assert used.tolist() == [len(c) for c in chunks]
    assert too_long is None


def test_stop_bit_spec_table() -> None:
    table = {0: "00", 127: "7f", 128: "8001", 300: "ac02", 16384: "808001", -1: "8000", -2: "8100", -128: "ff00",
             (1 << 63) - 1: "ffffffffffffffff7f", -(1 << 63): "ffffffffffffffffff00"}
    chunks = [bytes.fromhex(h) for h in table.values()]
    buf, starts = _packed(chunks)
    got, used, _ = stop_bit(buf, starts)
    assert got.tolist() == list(table)
    assert used.tolist() == [len(c) for c in chunks]


def test_stop_bit_longer_than_a_long() -> None:
    buf, starts = _packed([b"\x05", b"\xff" * 10 + b"\x01", b"\x80\x01"])
    values, _used, too_long = stop_bit(buf, starts)
    assert too_long is not None and too_long.tolist() == [False, True, False]
    assert values[[0, 2]].tolist() == [5, 128]


def test_chars_every_code_unit() -> None:
    units = np.arange(0x10000, dtype=np.uint16)
    arr, replaced = build_chars(units)
    assert replaced == 0x800  # D800..DFFF cannot stand alone in UTF-8
    expected = ["\ufffd" if 0xD800 <= u <= 0xDFFF else chr(u) for u in range(0x10000)]
    assert arr.to_pylist() == expected
    arr.validate(full=True)
    ascii_only, n = build_chars(np.frombuffer(b"A\x00z", np.uint8).astype(np.uint16))
    assert ascii_only.to_pylist() == ["A", "\x00", "z"] and n == 0


def _strings(raw: list[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    chunks = [b"\x07" + (r or b"") for r in raw]  # one junk byte before each string, as a length byte would be
    buf, starts = _packed(chunks)
    start = starts + 1
    end = start + np.array([len(r or b"") for r in raw], np.int64)
    return buf, start, end, np.array([r is None for r in raw])


def test_strings_java_text() -> None:
    texts = ["plain", "", "\u00fcn\u00ef-\u20ac-\u4e2d", "emoji-\U0001f600", "\U0010ffff\x00", None, "\uffff"]
    raw = [None if t is None else ref_java_text(t) for t in texts]
    assert raw[3] == b"emoji-\xed\xa0\xbd\xed\xb8\x80"  # CESU-8 on disk
    buf, start, end, null = _strings(raw)
    text = build_strings(buf, start, end, null)
    assert text.array.to_pylist() == texts
    assert text.array.null_count == 1 and text.array.type == pa.string()
    assert text.bad is None and text.slow_rows == 2 and text.replaced == 0


def test_strings_modified_utf8_nul_and_lone_surrogates() -> None:
    raw = [b"a\xc0\x80b", ref_java_text("x\ud800y"), ref_java_text("\udc00"), b"ok"]
    buf, start, end, _null = _strings(raw)
    text = build_strings(buf, start, end, None)
    assert text.array.to_pylist() == ["a\x00b", "x\ufffdy", "\ufffd", "ok"]
    assert text.slow_rows == 3 and text.replaced == 2 and text.bad is None


def test_strings_that_are_not_text() -> None:
    raw = [b"fine", b"\xff\xfe", b"also fine \xe2\x82\xac", b"\xed\xa0\x80\xff", b"\x80"]
    buf, start, end, _null = _strings(raw)
    text = build_strings(buf, start, end, None)
    assert text.bad is not None and text.bad.tolist() == [False, True, False, True, True]
    assert text.array.to_pylist()[0] == "fine" and text.array.to_pylist()[2] == "also fine \u20ac"
    text.array.validate(full=True)


@pytest.mark.parametrize("n", [0, 1, 100_000])
def test_strings_sizes(n: int) -> None:
    raw = [str(i).encode() for i in range(n)]
    if not n:
        text = build_strings(np.zeros(8, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))
        assert len(text.array) == 0
        return
    buf, start, end, null = _strings(raw)
    assert build_strings(buf, start, end, null).array.to_pylist() == [r.decode() for r in raw]


def test_java_true_byte() -> None:
    assert F.JAVA_TRUE == 0x59
