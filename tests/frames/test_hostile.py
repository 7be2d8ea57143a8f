"""Hostile messages aimed at the compiled decoder: lengths near 2**31, stop-bit runs of 10+ bytes, a surrogate cut at
the end of a body, headers overlapping the next message, bodies ending exactly at the end of a buffer or mapping.

Each must give a clear error or a per-row status, never a read outside the buffers. The buffers handed to the C
are exactly as long as the bytes (Python heap objects), so that ``tests/test_sanitizers.py``, which runs this file
under AddressSanitizer with ``PYTHONMALLOC=malloc``, sees any byte read past them.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import ref_java_text, ref_stop_bit, ref_stop_bit_in, ref_utf_delta, write_bodies

import pychro
from pychro import VanillaChronicleReader, read_table
from pychro.errors import CorruptDataError, FormatError, SchemaMismatchError
from pychro.frames import ReadStats
from pychro.frames import _decode as C
from pychro.frames import schema as S
from pychro.frames.decode import Plan, Run

BITS = 40
SCHEMAS = ["s:string", "a:int64,s:string,b:stopbit", "u:utf,c:char,x:int32", "f:float64,g:int16,h:bool,s:string",
           "b:stopbit"]


def _exact(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), np.uint8)  # a heap object of exactly these bytes


def _run(schema: str, data: bytes, offsets: list[int], stop: bool = False) -> tuple[Run, tuple[int, int, int]]:
    plan = Plan(S.Schema(schema))
    run = Run(plan, len(offsets))
    entries = np.array(offsets, np.uint64)
    got = run.decode(entries, (1 << BITS) - 1, BITS, np.zeros(1, np.int64), (_exact(data),), 0, stop)
    if got[0] == C.C_DONE:
        for arr in run.arrays(len(offsets)).values():
            arr.validate(full=True)
    return run, got


def _message(body: bytes, length: int | None = None) -> bytes:
    return struct.pack("<i", ~(len(body) if length is None else length)) + body


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("header", [-(1 << 31), ~(1 << 30), ~((1 << 30) - 1), ~0x7FFFFFF0, 0, 1, (1 << 31) - 1])
def test_header_lengths_near_2_31(schema: str, header: int) -> None:
    data = struct.pack("<i", header) + b"\x01" * 12
    _, (code, row, detail) = _run(schema, data, [4])
    assert (code, row) == (C.C_HEADER, 0)
    assert detail == (C.H_ZERO if header == 0 else C.H_PAST if header == ~((1 << 30) - 1) else C.H_HUGE)


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("value", [(1 << 31) - 1, 1 << 31, (1 << 63) - 1, -(1 << 63), -2, 1 << 40])
def test_string_and_stop_bit_lengths_near_and_past_2_31(schema: str, value: int) -> None:
    body = ref_stop_bit(value) + b"abc"
    run, (code, _, _) = _run(schema, _message(body), [4])
    assert code == C.C_DONE and run.status[0] in (C.ST_MISMATCH, C.ST_TEXT)


@pytest.mark.parametrize("run_bytes", [b"\x80" * 10, b"\xff" * 10, b"\x80" * 11, b"\xff" * 10 + b"\x01", b"\xff" * 64])
@pytest.mark.parametrize("schema", SCHEMAS)
def test_stop_bit_runs_of_10_bytes_and_more(schema: str, run_bytes: bytes) -> None:
    for cut in (len(run_bytes), len(run_bytes) + 1, 3):  # the body ending inside, right after, well after the run
        body = (run_bytes + b"\x00" * 8)[:cut]
        run, (code, _, _) = _run(schema, _message(body), [4])
        assert code == C.C_DONE
        assert run.status[0] in (C.ST_OK, C.ST_MISMATCH, C.ST_TEXT)


@pytest.mark.parametrize("tail", [b"\xed", b"\xed\xa0", b"\xed\xa0\xbd", b"\xed\xa0\xbd\xed", b"\xed\xa0\xbd\xed\xb8",
                                  b"\xc0", b"\xe2\x82", b"\xf0\x9f\x98"])
def test_surrogate_cut_at_the_end_of_a_body_and_of_the_buffer(tail: bytes) -> None:
    text = b"x" * 5 + tail
    body = ref_stop_bit(len(text)) + text
    run, (code, _, _) = _run("s:string", _message(body), [4])  # the body ends where the buffer ends
    assert code == C.C_DONE
    assert run.status[0] == (C.ST_OK if tail == b"\xed\xa0\xbd" else C.ST_TEXT)  # a lone high surrogate is text
    # the declared length one byte longer than the body: a mismatch, not a read past it
    run, (code, _, _) = _run("s:string", _message(ref_stop_bit(len(text) + 1) + text), [4])
    assert code == C.C_DONE and run.status[0] == C.ST_MISMATCH


@pytest.mark.parametrize("schema", SCHEMAS)
def test_headers_overlapping_the_next_message(schema: str) -> None:
    first = _message(b"\x03abc" + b"\x00" * 8)
    second = _message(b"\x02hi" + b"\x00" * 10)
    data = bytearray(first + second)
    data[0:4] = struct.pack("<i", ~(len(data) - 4))  # message 0 claims everything after it, message 1's header too
    _, (code, _, _) = _run(schema, bytes(data), [4, len(first) + 4, len(first) + 2, 6])  # and entries inside bodies
    assert code in (C.C_DONE, C.C_HEADER)


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("size", range(0, 24))
def test_bodies_ending_exactly_at_the_end_of_the_buffer(schema: str, size: int) -> None:
    body = (b"\x05" + b"hello" + bytes(range(1, 30)))[:size]
    run, (code, _, _) = _run(schema, _message(body), [4])
    assert code == C.C_DONE and run.status[0] in (C.ST_OK, C.ST_MISMATCH, C.ST_TEXT)
    _, (code, _, detail) = _run(schema, _message(body, size + 1), [4])  # one byte past the buffer
    assert (code, detail) == (C.C_HEADER, C.H_PAST)
    _, (code, _, detail) = _run(schema, _message(body), [len(body) + 5, len(body) + 8, 1 << 39, 3])
    assert (code, detail) == (C.C_HEADER, C.H_OUTSIDE)


def test_a_journal_cut_right_after_a_short_string(tmp_path: Path) -> None:
    """On disk: the data file ends exactly where its last body ends (size not a multiple of 4 or 8)."""
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"a": pa.array([1, 2, 3], pa.int8()), "s": ["x", "yz", "abcdefg"]})
    pychro.write_frame(table, tmp_path, "a:int8,s:string", date=dt.date(2024, 1, 2))
    (data,) = [p for p in tmp_path.rglob("data-*")]
    raw = data.read_bytes().rstrip(b"\0")
    with open(data, "r+b") as f:
        f.truncate(len(raw))
    assert pychro.read_table(tmp_path, "a:int8,s:string").column("s").to_pylist() == ["x", "yz", "abcdefg"]
    with pytest.raises(SchemaMismatchError, match="field 't' runs past the end of the 3-byte message"):
        pychro.read_table(tmp_path, "a:int8,s:string,t:string")
    with open(data, "r+b") as f:
        f.truncate(len(raw) - 1)  # now the last body runs past the file
    with pytest.raises(CorruptDataError, match="runs past the end of the data file"):
        pychro.read_table(tmp_path, "a:int8,s:string")



def _ref_row(kinds: list[str], body: bytes) -> list[int] | None:
    """The fields of one body under the schema ``kinds`` ("i4": int32, "sb": stopbit), or None when it does not
    match: a stop-bit value must end within 10 bytes and inside the body, and the fields must fill the body."""
    pos, out = 0, []
    for kind in kinds:
        if kind == "i4":
            if pos + 4 > len(body):
                return None
            out.append(struct.unpack_from("<i", body, pos)[0])
            pos += 4
            continue
        got = ref_stop_bit_in(body, pos)
        if got is None:
            return None
        value, used = got
        out.append(value)
        pos += used
    return out if pos == len(body) else None


@pytest.fixture(params=["avx512", "avx2", "bmi2", "portable"])
def stopbit_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each stop-bit path of the decoder in turn (skipped where this CPU has not got it); the best one after."""
    try:
        C._stopbit_path(request.param)
    except ValueError:
        pytest.skip(f"no {request.param} on this CPU")
    try:
        yield request.param
    finally:
        C._stopbit_path(None)


@pytest.mark.parametrize("kinds", [["sb", "sb", "sb", "sb"], ["i4", "sb", "i4", "sb", "sb"], ["sb", "i4"]])
def test_stop_bit_columns_against_the_reference(kinds: list[str], stopbit_path: str) -> None:
    """Tiles of rows whose stop-bit values have 1 to 10 bytes (both signs), with hostile rows among them: runs
    without a stop, values cut by the end of the body, bodies too long. Every row's status and values match an
    independent decoder, on each stop-bit path this CPU can run (AVX-512, AVX2, BMI2, portable)."""
    rng = np.random.default_rng(len(kinds))
    data, offsets, expect = bytearray(), [], []
    for _ in range(300):
        fields = []
        for kind in kinds:
            if kind == "i4":
                fields.append(struct.pack("<i", int(rng.integers(-(1 << 31), 1 << 31))))
            else:
                value = int(rng.integers(0, 1 << 62)) >> int(rng.integers(0, 63))  # 0 to 62 bits
                if rng.random() < 0.02:
                    value = (1 << 63) - 1  # 9 bytes, and 10 for its negative (-2**63)
                if rng.random() < 0.05:  # not what Java writes: 1 to 10 bytes of any groups, any stop byte
                    fields.append(bytes(rng.integers(0x80, 0x100, int(rng.integers(0, 10)), np.uint8))
                                  + bytes([int(rng.integers(0, 0x80))]))
                    continue
                fields.append(ref_stop_bit(-value - 1 if rng.random() < 0.5 else value))
        body = b"".join(fields)
        hostile = rng.random()
        if hostile < 0.05:
            body = body[: int(rng.integers(0, len(body)))]  # cut inside a field
        elif hostile < 0.1:
            body = b"\x80" * int(rng.integers(10, 14)) + body  # a run with no stop within 10 bytes
        elif hostile < 0.13:
            body += b"\x01"  # one byte more than the fields
        offsets.append(len(data) + 4)
        data += _message(body)
        expect.append(_ref_row(kinds, body))
    data += b"\xff" * int(rng.integers(0, 12))  # a tail of continuation bytes after the last body
    schema = ",".join(f"f{k}:{'int32' if kind == 'i4' else 'stopbit'}" for k, kind in enumerate(kinds))
    run, (code, _, _) = _run(schema, bytes(data), offsets)
    assert code == C.C_DONE
    cols = run.arrays(len(offsets))
    for row, want in enumerate(expect):
        assert run.status[row] == (C.ST_MISMATCH if want is None else C.ST_OK), row
        if want is not None:
            assert [cols[f"f{k}"][row].as_py() for k in range(len(kinds))] == want, row


@pytest.mark.parametrize("stop", [False, True])
@pytest.mark.parametrize("schema", ["a:int32,b:stopbit", "a:int32,h:bool"])
def test_bad_rows_in_a_tile_without_text(schema: str, stop: bool) -> None:
    """Every field decoded column by column (no text): a body one byte too long, or too short, is a mismatch;
    with ``stop`` the count ends at the first one (rows after it are only header-checked)."""
    data, offsets = bytearray(), []
    for row in range(150):
        body = struct.pack("<i", row) + (ref_stop_bit(-row) if "stopbit" in schema else b"\x01")
        body = body + b"\x07" if row in (70, 80) else body[:3] if row == 130 else body
        offsets.append(len(data) + 4)
        data += _message(body)
    run, (code, _, _) = _run(schema, bytes(data), offsets, stop=stop)
    assert code == C.C_DONE
    assert int(run.counts[C.N_FIRST_BAD]) == 70
    assert run.bad == (1 if stop else 3)
    if not stop:
        bad = np.flatnonzero(run.status[:150] != C.ST_OK).tolist()
        assert bad == [70, 80, 130]
        assert run.arrays(150)["a"].to_pylist()[:70] == list(range(70))


@pytest.mark.parametrize("errors", ["skip", "truncate"])
def test_text_tiles_with_a_bad_row_are_read_row_by_row(tmp_path: Path, errors: str) -> None:
    """Tiles of rows of a number and two texts are decoded text column by text column; a tile holding a row that is
    not right (its second text not Java's bytes, a length past the body, a byte too many, a 128-byte text, nulls,
    surrogate pairs) is read again row by row, with nothing of the first try left: every good row's texts are
    exact, the bad rows skipped (or the read truncated at the first)."""
    rng = np.random.default_rng(3)
    words = ["a", "", "ok \U0001f680", "caf\u00e9", "x" * 128, "\u0000z", None]
    bodies, want = [], []
    for row in range(300):
        a, b = (words[int(rng.integers(0, len(words)))] for _ in range(2))
        body = struct.pack("<i", row) + ref_utf_delta(a) + ref_utf_delta(b)
        good = True
        if row % 97 == 50:  # the second text is not Java text (a stray continuation byte)
            body = struct.pack("<i", row) + ref_utf_delta(a) + ref_stop_bit(2) + b"\x80x"
            good = False
        elif row % 89 == 40:  # a length past the body
            body = struct.pack("<i", row) + ref_utf_delta(a) + ref_stop_bit(9) + b"abc"
            good = False
        elif row % 83 == 30:  # a byte after the last field
            body += b"\x00"
            good = False
        bodies.append(body)
        want.append((row, a, b) if good else None)
    assert ref_java_text("ok \U0001f680") != "ok \U0001f680".encode()  # a CESU-8 pair: transcoded
    write_bodies(tmp_path / "j", bodies, 1_704_186_000_000)
    table = read_table(tmp_path / "j", "row:int32,a:string,b:string", errors=errors)
    good = [w for w in want if w is not None]
    if errors == "truncate":
        good = want[: want.index(None)]
    assert list(zip(*(table.column(c).to_pylist() for c in ("row", "a", "b")))) == good


@pytest.mark.parametrize("cut", [False, True])
def test_text_tiles_of_good_rows_with_every_length(tmp_path: Path, cut: bool) -> None:
    """Tiles whose every row is right, read text column by text column: texts of 0 to 17 bytes (one word, two, more),
    of exactly 16, of 127 (the longest one-byte length), 128 and 16384 bytes (longer lengths: 0x80 first, as a
    null's), nulls, non-ASCII and surrogate pairs, at random. ``cut``: the data file ends where its last body does,
    so that the last tiles have less than 16 bytes readable past their bodies (read row by row). Every value is
    what was written."""
    rng = np.random.default_rng(11)
    words = ["", "a", "abcdefgh", "x" * 15, "y" * 16, "z" * 17, "caf\u00e9", "\U0001f680 go", "q" * 127,
             "r" * 128, "s" * 16384, None]
    rows, bodies = [], []
    for row in range(700):
        a, b = (words[int(rng.integers(0, len(words)))] for _ in range(2))
        rows.append((row, a, b))
        bodies.append(struct.pack("<i", row) + ref_utf_delta(a) + ref_utf_delta(b))
    write_bodies(tmp_path / "j", bodies, 1_704_186_000_000)
    if cut:
        (data,) = (tmp_path / "j").rglob("data-*")
        raw = data.read_bytes().rstrip(b"\0")
        assert raw.endswith(bodies[-1].rstrip(b"\0"))
        with open(data, "r+b") as f:
            f.truncate(len(raw))
    table = read_table(tmp_path / "j", "row:int32,a:string,b:string")
    assert list(zip(*(table.column(c).to_pylist() for c in ("row", "a", "b")))) == rows
    assert table.column("a").null_count == sum(a is None for _, a, _ in rows)


def test_a_long_text_whose_length_starts_like_a_null(tmp_path: Path) -> None:
    """A 128-byte text's length is 0x80 0x01; a null's is 0x80 0x00. Taken for a null, this row's bytes after it
    would read as two more texts ending exactly where the body does (100 x's, then 26 y's and the two empty
    texts' lengths): a plausible wrong row, not a mismatch. Every tile of such rows must read the text."""
    a = chr(100) + "x" * 100 + chr(28) + "y" * 26
    assert ref_utf_delta(a)[:2] == b"\x80\x01" and len(ref_utf_delta(a)) == 130
    bodies = [struct.pack("<i", row) + ref_utf_delta(a) + ref_utf_delta("") * 2 for row in range(200)]
    write_bodies(tmp_path / "j", bodies, 1_704_186_000_000)
    table = read_table(tmp_path / "j", "row:int32,a:string,b:string,c:string")
    assert table.to_pydict() == {"row": list(range(200)), "a": [a] * 200, "b": [""] * 200, "c": [""] * 200}


def test_a_run_of_stop_bit_fields_with_columns_left_out(tmp_path: Path, stopbit_path: str) -> None:
    """A run of stop-bit fields of which some are not asked for (decoded, not kept): the columns asked for hold the
    values Java wrote, on every path, with values of 1 to 10 bytes side by side, and over many tiles (rows of 4
    at a time on the AVX2 path, a short last tile)."""
    rng = np.random.default_rng(5)
    values = [[int(rng.integers(0, 1 << 62)) >> int(rng.integers(0, 63)) for _ in range(4)] for _ in range(203)]
    values = [[-v - 1 if (k + row) % 3 == 0 else v for k, v in enumerate(vs)] for row, vs in enumerate(values)]
    values[7][2] = -(1 << 63)  # 10 bytes
    bodies = [struct.pack("<i", row) + b"".join(ref_stop_bit(v) for v in vs) for row, vs in enumerate(values)]
    write_bodies(tmp_path / "j", bodies, 1_704_186_000_000)
    schema = "row:int32," + ",".join(f"s{k}:stopbit" for k in range(4))
    for columns in (["s1", "s3"], ["row", "s0"], ["s2"]):
        table = read_table(tmp_path / "j", schema, columns=columns)
        for name in columns:
            want = list(range(203)) if name == "row" else [vs[int(name[1])] for vs in values]
            assert table.column(name).to_pylist() == want, (columns, name)


def test_a_ten_byte_stop_bit_value_that_is_not_negative_is_a_mismatch(tmp_path: Path, stopbit_path: str) -> None:
    """Java's readStopBit reads at most 9 bytes of a positive value ("Cannot read more than 9 stop bits of positive
    value"); a 10th byte other than the 0x00 of a negative value was read, keeping its lowest bit (a helper found
    it). Now the row does not match, on every decoder path and in the row API; -2**63 (ff x9 00) still reads."""
    ten = b"\xff" * 9 + b"\x01"  # positive, 10 bytes
    bodies = [struct.pack("<q", k) + (ten if k == 20 else ref_stop_bit(-(1 << 63) + k)) for k in range(40)]
    write_bodies(tmp_path / "j", bodies, 1_704_186_000_000)
    stats = ReadStats()
    table = read_table(tmp_path / "j", "k:int64,v:stopbit", errors="skip", stats=stats)
    assert stats.skipped_rows == 1 and table.column("k").to_pylist() == [k for k in range(40) if k != 20]
    assert table.column("v").to_pylist() == [-(1 << 63) + k for k in range(40) if k != 20]
    with pytest.raises(SchemaMismatchError, match="holds no valid stopbit value"):
        read_table(tmp_path / "j", "k:int64,v:stopbit")
    with VanillaChronicleReader(str(tmp_path / "j")) as chron:
        for k in range(40):
            r = chron.next_reader()
            assert r.read_long() == k
            if k == 20:
                with pytest.raises(FormatError, match="at most 9 stop bits"):
                    r.read_stop_bit()
            else:
                assert r.read_stop_bit() == -(1 << 63) + k
