"""The compiled decoder (_decode.c) against the spec's encodings: stop-bit values, chars, Java text (CESU-8), nulls,
and the per-row statuses and counters it reports."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import ref_java_text, ref_stop_bit  # tests/helpers.py: reference encoders written from the spec

from pychro import _fields as F
from pychro.frames import _decode as C
from pychro.frames import schema as S
from pychro.frames.decode import Plan, Run

BITS = 40  # data_bits of the test entries: key 0, offset = the low 40 bits


def _file(bodies: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Messages back to back as the writer leaves them (header, body, padding); entries = body offsets."""
    out = bytearray()
    entries = []
    for body in bodies:
        out += struct.pack("<i", ~len(body))
        entries.append(len(out))
        out += body + b"\0" * (-len(body) % 4)
    return np.frombuffer(bytes(out), np.uint8), np.array(entries, np.uint64)


def decode(schema: str, bodies: list[bytes], stop: bool = False, columns: list[str] | None = None) -> tuple[Run, Any]:
    plan = Plan(S.Schema(schema), columns)
    buf, entries = _file(bodies)
    run = Run(plan, len(bodies))
    code, row, detail = run.decode(entries, (1 << BITS) - 1, BITS, np.zeros(1, np.int64), (buf,), 0, stop)
    assert code == C.C_DONE, (code, row, detail)
    return run, run.arrays(len(bodies))


@given(st.lists(st.integers(-(1 << 63), (1 << 63) - 1) | st.sampled_from([0, -1, 127, 128, -(1 << 63), (1 << 63) - 1]),
                min_size=1, max_size=200))
def test_stop_bit_matches_the_spec_encoding(values: list[int]) -> None:
    run, cols = decode("v:stopbit", [ref_stop_bit(v) for v in values])
    assert cols["v"].to_pylist() == values and run.bad == 0


def test_stop_bit_spec_table() -> None:
    table = {0: "00", 127: "7f", 128: "8001", 300: "ac02", 16384: "808001", -1: "8000", -2: "8100", -128: "ff00",
             (1 << 63) - 1: "ffffffffffffffff7f", -(1 << 63): "ffffffffffffffffff00"}
    _, cols = decode("v:stopbit,x:int8", [bytes.fromhex(h) + b"\x05" for h in table.values()])
    assert cols["v"].to_pylist() == list(table) and cols["x"].to_pylist() == [5] * len(table)


def test_stop_bit_longer_than_a_long_or_past_the_body() -> None:
    run, _ = decode("v:stopbit", [b"\x05", b"\xff" * 10 + b"\x01", b"\x80\x01", b"\x80\x80", b"\xff" * 11])
    assert run.status.tolist() == [C.ST_OK, C.ST_MISMATCH, C.ST_OK, C.ST_MISMATCH, C.ST_MISMATCH]
    assert run.bad == 3 and run.counts[C.N_FIRST_BAD] == 1


def test_chars_every_code_unit() -> None:
    units = np.arange(0x10000, dtype="<u2")
    run, cols = decode("c:char", [u.tobytes() for u in units])
    assert run.counts[C.N_REPLACED] == 0x800  # D800..DFFF cannot stand alone in UTF-8
    expected = ["\ufffd" if 0xD800 <= u <= 0xDFFF else chr(u) for u in range(0x10000)]
    assert cols["c"].to_pylist() == expected
    cols["c"].validate(full=True)


def _strings(raw: list[bytes | None]) -> list[bytes]:
    return [F.NULL_STRING if r is None else ref_stop_bit(len(r)) + r for r in raw]


def test_strings_java_text() -> None:
    texts = ["plain", "", "\u00fcn\u00ef-\u20ac-\u4e2d", "emoji-\U0001f600", "\U0010ffff\x00", None, "\uffff",
             "x" * 300]
    raw = [None if t is None else ref_java_text(t) for t in texts]
    assert raw[3] == b"emoji-\xed\xa0\xbd\xed\xb8\x80"  # CESU-8 on disk
    run, cols = decode("s:string", _strings(raw))
    assert cols["s"].to_pylist() == texts
    assert cols["s"].null_count == 1 and cols["s"].type == pa.string()
    cols["s"].validate(full=True)
    assert run.bad == 0 and run.counts[C.N_SLOW] == 2 and run.counts[C.N_REPLACED] == 0


def test_strings_modified_utf8_nul_and_lone_surrogates() -> None:
    raw = [b"a\xc0\x80b", ref_java_text("x\ud800y"), ref_java_text("\udc00"), b"ok",
           ref_java_text("\ud800\ud800\udc00")]
    run, cols = decode("s:string", _strings(raw))
    assert cols["s"].to_pylist() == ["a\x00b", "x\ufffdy", "\ufffd", "ok", "\ufffd\U00010000"]
    assert run.counts[C.N_SLOW] == 4 and run.counts[C.N_REPLACED] == 3 and run.bad == 0


def test_strings_that_are_not_text() -> None:
    raw = [b"fine", b"\xff\xfe", b"also fine \xe2\x82\xac", b"\xed\xa0\x80\xff", b"\x80", b"\xed\xa0", b"\xc0\x81",
           b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"plain \xf0\x9f\x98\x80"]
    run, cols = decode("s:string", _strings(raw))
    assert run.status.tolist() == [C.ST_OK, C.ST_TEXT, C.ST_OK, *[C.ST_TEXT] * 6, C.ST_OK]
    assert run.counts[C.N_TEXT_STEP] == 0 and run.counts[C.N_FIRST_BAD] == 1
    got = cols["s"].to_pylist()
    assert got[0] == "fine" and got[2] == "also fine \u20ac" and got[9] == "plain \U0001f600"
    cols["s"].validate(full=True)  # the bad rows are left empty, so a filter can drop them


def test_utf_and_projection() -> None:
    bodies = [struct.pack("<H", 3) + b"abc" + b"\x07" + ref_stop_bit(2) + b"hi", struct.pack("<H", 0) + b"\x08\x00"]
    _, cols = decode("u:utf,b:int8,s:string", bodies, columns=["s", "u"])
    assert list(cols) == ["s", "u"] and cols["s"].to_pylist() == ["hi", ""] and cols["u"].to_pylist() == ["abc", ""]


def test_stop_mode_checks_only_headers_after_the_first_bad_row() -> None:
    run, _ = decode("s:string", _strings([b"a", b"\xff", b"c"]), stop=True)
    assert run.counts[C.N_FIRST_BAD] == 1 and run.bad == 1
    assert run.arrays(1)["s"].to_pylist() == ["a"]


@pytest.mark.parametrize("n", [0, 1, 100_000])
def test_strings_sizes(n: int) -> None:
    raw = [str(i).encode() * (1 + i % 50) for i in range(n)]  # past the first guess of the text buffer's size
    if not n:
        plan = Plan(S.Schema("s:string"))
        assert len(Run(plan, 0).arrays(0)["s"]) == 0
        return
    _, cols = decode("s:string", _strings(raw))
    assert cols["s"].to_pylist() == [r.decode() for r in raw]


def test_java_true_byte() -> None:
    assert F.JAVA_TRUE == 0x59
    _, cols = decode("b:bool", [b"Y", b"\0", b"\x01", b"\xff"])
    assert cols["b"].to_pylist() == [True, False, True, True]


@given(st.lists(st.booleans() | st.none(), min_size=1, max_size=300), st.integers(0, 299))
@example([True] * 3 + [None] * 9 + [True, False] * 40, 3)  # a whole byte of a tile's bits left alone
@example([False, True] * 100, 5)
def test_fixed_prefix_tiles_from_any_row(values: list[bool | None], lo: int) -> None:
    """Leading fixed-size fields are decoded column by column in tiles of rows, bools as words of bits: a call
    starting at any row (a resumed one) writes exactly the bits of its rows; a short body (None) is a mismatch."""
    lo = min(lo, len(values) - 1)
    bodies = [b"" if v is None else struct.pack("<qB", i, v) for i, v in enumerate(values)]
    plan = Plan(S.Schema("i:int64,b:bool"))
    buf, entries = _file(bodies)
    run = Run(plan, len(bodies))
    bits = np.frombuffer(run.outs[1][0], np.uint8)
    bits[:] = 0xA5  # whatever was there before: rows below lo keep it
    before = np.unpackbits(bits.copy(), bitorder="little")
    code, _, _ = run.decode(entries, (1 << BITS) - 1, BITS, np.zeros(1, np.int64), (buf,), lo, False)
    assert code == C.C_DONE
    got = np.unpackbits(bits, bitorder="little")
    ints = np.frombuffer(run.outs[0][0], np.int64, count=len(values))
    for i, v in enumerate(values):
        if i < lo or v is None:
            assert got[i] == before[i], i
            if i >= lo:
                assert run.status[i] == C.ST_MISMATCH, i
        else:
            assert got[i] == v and ints[i] == i and run.status[i] == C.ST_OK, i
    assert (got[len(values):] == before[len(values):]).all()


def test_bad_arguments_are_errors_not_crashes() -> None:
    plan = Plan(S.Schema("v:int64,s:string"))
    run = Run(plan, 2)
    buf, entries = _file([b"\0" * 9, b"\0" * 9])
    args = [plan.program, entries, (1 << BITS) - 1, BITS, np.zeros(1, np.int64), (buf,), 0, 2, False, tuple(run.outs),
            run.status, run.counts]
    with pytest.raises(ValueError):
        C.decode(*args[:6], 0, 3, *args[8:])  # hi past the entries
    with pytest.raises(ValueError):
        C.decode(*args[:9], tuple(run.outs[:1]), *args[10:])  # a step's column without buffers
    with pytest.raises(TypeError):
        C.decode(((99,),), *args[1:])
    with pytest.raises(ValueError):
        C.decode(((C.D_FIXED, 8, 0),), *args[1:9], ((pa.allocate_buffer(8), None, None),), *args[10:])  # too short
    with pytest.raises(TypeError):
        C.decode(*args[:9], tuple(run.outs), b"\0\0", *args[11:])  # status must be writable


def test_rest_step_reads_a_header_ahead_of_the_message_type() -> None:
    """D_REST passes over what follows the fields asked for: a common header (ts, type) is read from messages of
    any length; a body shorter than the header is still a mismatch; a rest step must be last and column-less."""
    bodies = [struct.pack("<qb", 7, 1) + b"xyz", struct.pack("<qb", 8, 2), struct.pack("<q", 9)[:5]]
    buf, entries = _file(bodies)
    program = ((C.D_FIXED, 8, 0), (C.D_FIXED, 1, 1), (C.D_REST, 0, -1))
    outs = tuple((pa.allocate_buffer(8 * 3 + 8), None, None) for _ in range(2))
    status, counts = np.zeros(3, np.uint8), np.zeros(C.N_NULLS + 2, np.int64)
    counts[C.N_FIRST_BAD] = counts[C.N_TEXT_STEP] = -1
    got = C.decode(program, entries, (1 << BITS) - 1, BITS, np.zeros(1, np.int64), (buf,), 0, 3, False, outs, status,
                   counts)
    assert got[0] == C.C_DONE
    assert list(status) == [C.ST_OK, C.ST_OK, C.ST_MISMATCH]
    assert list(np.frombuffer(outs[0][0], np.int64, 2)) == [7, 8]
    assert list(np.frombuffer(outs[1][0], np.int8, 2)) == [1, 2]
    for bad in (((C.D_REST, 0, -1), (C.D_FIXED, 8, 0)), ((C.D_FIXED, 8, 0), (C.D_REST, 0, 1))):
        with pytest.raises(ValueError, match="rest step"):
            C.decode(bad, entries, (1 << BITS) - 1, BITS, np.zeros(1, np.int64), (buf,), 0, 3, False, outs, status,
                     counts)


def _short_texts() -> list[bytes]:
    """Every 2-byte text, every 3-byte text led by a byte from C0 on, and 16-byte-or-shorter texts built from
    pieces that sit near the edges of UTF-8 (overlong, surrogate, above U+10FFFF, cut short, C0 80)."""
    out = [bytes((a, b)) for a in range(256) for b in range(256)]
    out += [bytes((a, b, c)) for a in range(0xC0, 0x100) for b in range(0x70, 0xD0) for c in range(0x70, 0xD0, 3)]
    pieces = [
        b"a", b"\x00", b"\x7f", b"\xc2\x80", b"\xdf\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\xa0\x80", b"\xe0\x9f\xbf",
        b"\xed\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf", b"\xf0\x90\x80\x80",
        b"\xf0\x8f\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\x80",
        b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3", b"\xed\xa0\xbd\xed\xb8\x80",
    ]
    rng = np.random.default_rng(5)
    for _ in range(60_000):
        text = b"".join(pieces[k] for k in rng.integers(0, len(pieces), rng.integers(1, 9)))
        out.append(text[: rng.integers(1, 17)])
    return out


@pytest.mark.skipif(C._text_path(None) != "ssse3", reason="the SSSE3 short-text check needs an x86 CPU with SSSE3")
def test_short_text_check_agrees_with_the_scalar_decoder() -> None:
    """The SSSE3 check lets a short text be copied as it is only where java_text would have copied it: the same
    statuses, text and counters either way, over every short text shape near the edges of UTF-8."""
    raw = _short_texts()
    got = {}
    try:
        for path in ("scalar", "ssse3"):
            C._text_path(path)
            run, cols = decode("s:string", _strings(raw))
            got[path] = (run.status.copy(), cols["s"], run.counts.copy())
    finally:
        C._text_path(None)
    (st0, col0, n0), (st1, col1, n1) = got["scalar"], got["ssse3"]
    assert (st0 == st1).all() and (n0 == n1).all()
    assert col0.equals(col1)
    ok = st0 == C.ST_OK
    assert 0 < ok.sum() < len(raw)  # both kinds occur
    plain = [t.decode("utf-8", "strict") for t, good in zip(raw, ok) if good and b"\xc0\x80" not in t and
             b"\xed" not in t]
    assert plain  # texts that are plain UTF-8 came out as themselves
    assert set(plain) <= set(col0.to_pylist())
