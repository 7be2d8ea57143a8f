"""The compiled encoder (pychro.frames._encode through encode.Program) against the row encoders of pychro._fields."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pychro
from pychro import _fields as F
from pychro.frames import _encode as C
from pychro.frames.backfill import write_batches, write_frame
from pychro.frames.encode import Program, Step, raw_program


def messages(program: Program, rows: list[int] | None = None) -> list[bytes]:
    """The bodies ``place`` lays out for ``rows`` (default: all), checking headers and padding on the way."""
    lengths = program.lengths()
    rows_arr = np.arange(program.n, dtype=np.int64) if rows is None else np.array(rows, dtype=np.int64)
    size = int(((lengths[rows_arr] + 4 + 3) & ~3).sum())
    buf = np.full(size + 16, 0xAA, dtype=np.uint8)  # garbage after the run must stay untouched
    assert program.place(rows_arr, lengths, buf[:size]) == size
    assert (buf[size:] == 0xAA).all()
    raw, pos, bodies = buf.tobytes(), 0, []
    for r in rows_arr:
        (header,) = struct.unpack_from("<i", raw, pos)
        assert ~header == lengths[r]
        end = pos + 4 + int(lengths[r])
        bodies.append(raw[pos + 4 : end])
        assert raw[end : (end + 3) & ~3] == b"\0" * ((-end) % 4)  # zero padding to the next header
        pos = (end + 3) & ~3
    return bodies


def text_program(texts: list[str | None], kind: int = C.K_STRING, large: bool = False) -> Program:
    arr = pa.array(texts, type=pa.large_string() if large else pa.string())
    validity, offsets, data = arr.buffers()
    width = 8 if large else 4
    off = np.frombuffer(offsets, dtype=f"<i{width}")[: len(arr) + 1]
    step = Step(kind, width, data if data is not None else b"", off, validity if arr.null_count else None)
    return Program([step], len(arr), ["s"], [arr])


@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_stop_bits_equal_row_encoder(values: list[int]) -> None:
    program = Program([Step(C.K_STOPBIT, 8, np.array(values, dtype=np.int64))], len(values), ["v"], [None])
    assert messages(program) == [F.encode_stop_bit(v) for v in values]


@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), min_size=1, max_size=40), st.booleans())
def test_strings_equal_row_encoder(texts: list[str | None], large: bool) -> None:
    program = text_program(texts, large=large)
    expected = [
        F.NULL_STRING if t is None else F.encode_stop_bit(len(F.encode_text(t))) + F.encode_text(t) for t in texts
    ]
    assert messages(program) == expected
    assert program.supplementary_rows == sum(1 for t in texts if t is not None and any(ord(c) > 0xFFFF for c in t))


@given(st.lists(st.text(max_size=30), min_size=1, max_size=20))
def test_utf_equals_row_encoder(texts: list[str]) -> None:
    program = text_program(list(texts), C.K_UTF)
    assert messages(program) == [struct.pack("<H", len(F.encode_text(t))) + F.encode_text(t) for t in texts]


@pytest.mark.parametrize("seed", range(20))
def test_any_rows_in_any_order_match_the_row_encoders(seed: int) -> None:
    """Mixed steps over rows picked at random (repeats, backwards, a sliced Arrow array with nulls)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    words = ["", "a", "é€中", "emoji-\U0001F600", "x" * 130, "nul\x00in", None]
    texts = pa.array([words[k] for k in rng.integers(0, len(words), n + 3)]).slice(3)  # non-zero array offset
    px = rng.normal(size=n)
    px_valid = rng.random(n) < 0.8
    floats = pa.array(px, mask=~px_valid)
    sb = rng.integers(-(2**62), 2**62, n) >> rng.integers(0, 62, n)
    bits = pa.array(rng.random(n + 5) < 0.5).slice(5)
    chars = pa.array([chr(c) for c in rng.choice([65, 0xE9, 0x20AC, 0xFFFF], n)])
    validity, offsets, data = texts.buffers()
    steps = [
        Step(C.K_FIXED, 8, px, None, floats.buffers()[0], 0, struct.pack("<d", float("nan"))),
        Step(C.K_STRING, 4, data, np.frombuffer(offsets, "<i4")[3 : n + 4], validity, 3),
        Step(C.K_ZERO, 3),
        Step(C.K_STOPBIT, 8, sb),
        Step(C.K_BOOL_BITS, 1, bits.buffers()[1], bit_offset=5),
        Step(C.K_CHAR, 4, chars.buffers()[2], np.frombuffer(chars.buffers()[1], "<i4")),
    ]
    program = Program(steps, n, ["px", "s", "", "sb", "b", "c"], [None] * 6)
    rows = list(rng.integers(0, n, int(rng.integers(1, 3 * n))))
    expected = []
    for r in rows:
        t = texts[int(r)].as_py()
        expected.append(
            struct.pack("<d", px[r] if px_valid[r] else float("nan"))
            + (F.NULL_STRING if t is None else F.encode_stop_bit(len(F.encode_text(t))) + F.encode_text(t))
            + b"\0\0\0" + F.encode_stop_bit(int(sb[r])) + (b"Y" if bits[int(r)].as_py() else b"\0")
            + struct.pack("<H", ord(chars[int(r)].as_py()))
        )
    assert messages(program, rows) == expected


@given(st.text(max_size=4))
def test_a_char_is_one_bmp_character_or_refused(text: str) -> None:
    """Any text into a char field: one BMP character is its UTF-16 unit, as the row writer writes it; anything else
    (more characters in as many bytes as one would take, a non-BMP one, nothing) is refused by name."""
    program = text_program(["x", text], C.K_CHAR)
    if len(text) == 1 and ord(text) < 0x10000:
        assert messages(program) == [struct.pack("<H", ord("x")), struct.pack("<H", ord(text))]
    else:
        with pytest.raises(ValueError, match=r"^row 1: column 's' value .* is not one BMP character"):
            program.lengths()


@pytest.mark.parametrize("raw", [b"\xff", b"\xe4\xb8", b"\xed\xa0\x80", b"\xc0\x80", b"\xe0\x81\x81", b"\xc1\xbf"])
def test_a_char_of_bytes_that_are_not_utf8_is_refused_as_such(raw: bytes, tmp_path: Path) -> None:
    """A string column viewed from raw bytes: a char field gave a bare UnicodeDecodeError (the error message read
    the value) for FF or a cut sequence, and wrote a surrogate or an overlong form as the character it spelled.
    Each is now the RowError a string field gives."""
    texts = [b"a", b"\xc3\xa9", b"\xe0\xa0\x80", b"\xef\xbf\xbf", raw]  # a, e-acute, U+0800, U+FFFF: taken
    offsets = np.cumsum([0] + [len(t) for t in texts]).astype("<i4")
    arr = pa.Array.from_buffers(pa.string(), len(texts), [None, pa.py_buffer(offsets.tobytes()),
                                                          pa.py_buffer(b"".join(texts))])
    with pytest.raises(ValueError, match=r"^row 4: column 'c' text is not valid UTF-8$"):
        write_frame(pa.table({"c": arr}), tmp_path / "j", "c:char", date=dt.date(2024, 3, 5))
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").rglob("data-*"))
    write_frame(pa.table({"c": arr.slice(0, 4)}), tmp_path / "ok", "c:char", date=dt.date(2024, 3, 5))
    assert pychro.read_table(tmp_path / "ok", "c:char").column(0).to_pylist() == ["a", "\u00e9", "\u0800", "\uffff"]


def test_raw_bodies_are_copied_as_they_are() -> None:
    data = np.frombuffer(b"..abc...defgh.", dtype=np.uint8)
    program = raw_program(data, np.array([2, 8, 0]), np.array([3, 5, 0]))
    assert messages(program) == [b"abc", b"defgh", b""]


@pytest.mark.parametrize(
    "texts,kind,message",
    [
        (["x", "ab"], C.K_CHAR, "row 1: column 's' value 'ab' is not one BMP character"),
        (["\U0001F600"], C.K_CHAR, "row 0: column 's' value '\U0001F600' is not one BMP character"),
        (["x", "ABC"], C.K_CHAR, "row 1: column 's' value 'ABC' is not one BMP character"),  # 3 bytes, 3 chars
        (["\u00e9!"], C.K_CHAR, "row 0: column 's' value '\u00e9!' is not one BMP character"),
        (["!\u00e9"], C.K_CHAR, "row 0: column 's' value '!\u00e9' is not one BMP character"),
        (["", "é" * 40_000], C.K_UTF, "row 1: column 's' text exceeds writeUTF's 65535 bytes"),
        (["a", "\U0001F600" * 16_384], C.K_UTF, "row 1: .*65535"),  # 65536 bytes once each becomes 6
        (["a", None], C.K_UTF, "row 1: column 's' is null"),
    ],
)
def test_rows_the_c_refuses_are_named(texts: list[str | None], kind: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        text_program(texts, kind).lengths()


@pytest.mark.parametrize("char_bad,utf_null,first", [(9000, 5000, 5000), (4097, 4095, 4095), (4096, 4096, 4096),
                                                     (12_287, 12_288, 12_287)])
def test_the_first_bad_row_of_any_field_is_named_across_tiles(char_bad: int, utf_null: int, first: int) -> None:
    """lengths() goes field by field over tiles of 4 096 rows: the earliest bad row is still the one named, whatever
    field and tile it is in (and a later field's earlier row wins over an earlier field's later row)."""
    n = 13_000
    chars = ["x"] * n
    chars[char_bad] = "ab"
    utf: list[str | None] = ["u"] * n
    utf[utf_null] = None
    steps = [text_program(chars, C.K_CHAR).steps[0], text_program(utf, C.K_UTF).steps[0]]
    column = "c" if first == char_bad else "u"
    with pytest.raises(ValueError, match=f"^row {first}: column '{column}'"):
        Program(steps, n, ["c", "u"], [pa.array(chars), pa.array(utf)]).lengths(workers=1)


def test_lengths_add_every_field_in_every_tile() -> None:
    n = 10_000  # tiles of 4 096 rows: two whole ones and a part
    rng = np.random.default_rng(5)
    texts = [None if v < 8 else "é" * int(v) for v in rng.integers(0, 200, n)]
    stop = rng.integers(-(1 << 62), 1 << 62, n) >> rng.integers(0, 62, n)
    bits = np.packbits(rng.random(n) < 0.5, bitorder="little")
    steps = [text_program(texts).steps[0], Step(C.K_STOPBIT, 8, stop), Step(C.K_FIXED, 4, np.zeros(n, np.int32)),
             Step(C.K_BOOL_BITS, 0, bits), Step(C.K_ZERO, 3), Step(C.K_STOPBIT, 8, stop[::-1].copy())]
    want = [(2 if t is None else len(F.encode_stop_bit(2 * len(t))) + 2 * len(t)) + len(F.encode_stop_bit(int(v)))
            + 4 + 1 + 3 + len(F.encode_stop_bit(int(w))) for t, v, w in zip(texts, stop, stop[::-1])]
    for workers in (1, 3):
        assert Program(steps, n, list("svibzw"), [None] * 6).lengths(workers).tolist() == want


@given(st.lists(st.binary(max_size=12) | st.sampled_from([b"\xc3", b"\xed\xa0\x80", b"\xc0\x80", b"\xe0\x9f\xbf",
                                                          b"\xf4\x90\x80\x80", b"\x80\x90\x80\x80", "é😀".encode()]),
                min_size=1, max_size=6))
def test_text_is_refused_exactly_where_it_is_not_utf8(texts: list[bytes]) -> None:
    """A string column viewed from binary keeps any bytes: the lengths pass refuses the row Python's strict UTF-8
    decoder refuses (found by a helper: `C3`, `ED A0 80`, `C0 80` ... were written, and read back as U+FFFD or
    refused by our reader), and otherwise counts each 4-byte sequence as Java's two surrogates."""
    arr = pa.array(texts, pa.binary()).view(pa.string())

    def valid(b: bytes) -> bool:
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False
    bad = [r for r, b in enumerate(texts) if not valid(b)]
    _, offsets, data = arr.buffers()
    step = Step(C.K_STRING, 4, data if data is not None else b"", np.frombuffer(offsets, np.int32)[: len(arr) + 1])
    program = Program([step], len(arr), ["s"], [arr])
    if bad:
        with pytest.raises(ValueError, match=f"row {bad[0]}: column 's' text is not valid UTF-8"):
            program.lengths()
    else:
        units = [len(b.decode().encode("utf-16-le")) // 2 for b in texts]
        java = [len(b) + 2 * (u - len(b.decode())) for b, u in zip(texts, units)]
        assert program.lengths().tolist() == [len(F.encode_stop_bit(j)) + j for j in java]


WORDS = ["", "a", "sym", "x" * 200, "café", "€uro", "中文", "😀", "ok 🚀", "x𐍈y", "é😀" * 30]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9000), st.sampled_from([0.0, 0.01, 0.3, 1.0]),
       st.sampled_from([0.0, 0.001, 0.2]), st.booleans(), st.integers(0, 9))
def test_lengths_count_text_tile_by_tile_as_the_reference(seed: int, n: int, non_ascii: float, nulls: float,
                                                          large: bool, cut: int) -> None:
    """lengths() takes a tile (4 096 rows) of text whose offsets rise on a fast path: every row counted as ASCII,
    then only the rows holding a byte >= 0x80 (found by one scan of the tile's bytes) checked and corrected.
    Against a plain per-row reference, over tiles of all-ASCII, rare and dense non-ASCII text, nulls (whose bytes,
    here invalid UTF-8, are never read as text), sliced arrays and both offset widths, for writeUTFΔ and writeUTF."""
    rng = np.random.default_rng(seed)
    ascii_words, other = [w for w in WORDS if w.isascii()], [w for w in WORDS if not w.isascii()]
    texts = [str(rng.choice(other)) if rng.random() < non_ascii else str(rng.choice(ascii_words)) for _ in range(n)]
    null = rng.random(n) < nulls
    raw = [b"\xff\xc3" if null[r] else t.encode() for r, t in enumerate(texts)]  # a null's bytes: junk
    arr = pa.array(raw, pa.large_binary() if large else pa.binary()).view(pa.large_string() if large else pa.string())
    if null.any():
        arr = pa.Array.from_buffers(arr.type, n, [pa.array(~null).buffers()[1], *arr.buffers()[1:]], int(null.sum()))
    arr = arr.slice(cut)  # a bit offset into the validity, offsets from the slice's first row
    texts, null = texts[cut:], null[cut:]
    width = 8 if large else 4
    validity, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=f"<i{width}")[arr.offset : arr.offset + len(arr) + 1]

    def java(t: str) -> int:  # CESU-8 bytes: each non-BMP character as two 3-byte surrogates
        return len(t.encode()) + 2 * sum(ord(c) > 0xFFFF for c in t)
    for kind in (C.K_STRING, C.K_UTF):
        if kind == C.K_UTF and null.any():
            continue  # writeUTF refuses nulls (test_the_first_bad_row_of_any_field_is_named_across_tiles)
        step = Step(kind, width, data if data is not None else b"", off, validity if null.any() else None,
                    arr.offset)
        program = Program([step], len(arr), ["s"], [arr])
        want = [2 if null[r] else (2 if kind == C.K_UTF else len(F.encode_stop_bit(java(t)))) + java(t)
                for r, t in enumerate(texts)]
        assert program.lengths(workers=2).tolist() == want
        assert program.supplementary_rows == sum(
            1 for r, t in enumerate(texts) if not null[r] and any(ord(c) > 0xFFFF for c in t))


def test_offsets_changed_by_another_thread_never_take_lengths_outside_its_buffers() -> None:
    """lengths() releases the GIL and reads a tile's offsets after checking them: another thread changing them
    meanwhile (a user's race) may give wrong lengths, never a read or write outside the data or ``out`` (found
    by a helper: the fast pass re-read o[hi] and walked rows past the tile). Here the offsets flip between a
    valid layout (an emoji in the tile's last row), one whose rows past the tile hold all the text and one whose
    tile ends far past the data. ``out``
    sits between guard words; under the sanitizers (tests/test_sanitizers.py) any read past the data fails too.
    A race: each run hits it a different number of times (the fixed code holds at any count)."""
    import threading

    n, hi = 8192, 4096
    data = np.frombuffer(b"a" * 4095 + "😀".encode() + b"b" * 8000, np.uint8)
    valid = np.full(n + 1, 4099, np.int64)
    valid[:4096] = np.arange(4096)
    past = np.zeros(n + 1, np.int64)
    past[4098:] = 4099
    beyond = valid.copy()
    beyond[hi:] = len(data) + 65536  # the tile's end far past the data
    off = valid.copy()
    guarded = np.full(hi + 16, -7, np.int64)
    out, found = guarded[8 : 8 + hi], np.zeros(1, np.int64)
    step = (C.K_STRING, 8, data, off, None, 0, None, False)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for layout in (past, valid, beyond, valid):
                np.copyto(off, layout)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(3000):
            out[:] = 0
            row, _step, status = C.lengths((step,), n, 0, hi, out, found)
            assert row == -1 or status == C.S_OFFSETS
    finally:
        stop.set()
        flipper.join()
    assert (guarded[:8] == -7).all() and (guarded[8 + hi :] == -7).all()


def test_invalid_utf8_and_offsets_are_row_errors_not_reads_outside_the_data() -> None:
    for bad in (b"ok\xf0\x9f\x98", b"\xf5\x80\x80\x80", b"\xf0\x80\x80\x80", b"a\xf0abc", b"\xc3", b"a\x80b",
                b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\x80", b"\x80\x90\x80\x80"):
        data = b"fine" + bad
        step = Step(C.K_STRING, 4, data, np.array([0, 4, len(data)], dtype=np.int32))
        with pytest.raises(ValueError, match="row 1: column 's' text is not valid UTF-8"):
            Program([step], 2, ["s"], [None]).lengths()
    for offsets in ([0, 4, 9], [0, 3, 2], [-1, 0, 1]):
        step = Step(C.K_STRING, 4, b"fine", np.array(offsets, dtype=np.int32))
        with pytest.raises(ValueError, match="Arrow offsets outside its data"):
            Program([step], 2, ["s"], [None]).lengths()


def test_the_c_checks_its_arguments() -> None:
    ok = Step(C.K_FIXED, 8, np.zeros(4, dtype=np.int64))
    program = Program([ok], 4, ["v"], [None])
    program.lengths()
    lengths = np.full(4, 8, dtype=np.int64)
    with pytest.raises(ValueError, match="does not fit"):
        program.place(np.arange(4), lengths, np.zeros(4 * 12 - 1, dtype=np.uint8))  # one byte short
    with pytest.raises(ValueError, match="not a row"):
        program.place(np.array([0, 4]), lengths, np.zeros(100, dtype=np.uint8))
    for wrong in (7, 9, -1, 1 << 31):  # a body must be exactly its length, which must be one
        with pytest.raises(ValueError, match=r"rows\[0\]"):
            program.place(np.arange(4), np.full(4, wrong, dtype=np.int64), np.zeros(1 << 12, dtype=np.uint8))
    with pytest.raises(ValueError, match="values too short"):
        Program([ok], 5, ["v"], [None]).lengths()
    with pytest.raises(ValueError, match="unknown kind"):
        Program([Step(99, 1, b"x")], 1, ["v"], [None]).lengths()
    with pytest.raises(ValueError, match="fill"):
        Program([ok._replace(validity=b"\xff")], 4, ["v"], [None]).lengths()
    with pytest.raises(TypeError, match="step 0"):
        C.lengths(((0, 1),), 1, 0, 1, np.zeros(1, np.int64), np.zeros(1, np.int64))
    with pytest.raises(TypeError, match="contiguous"):
        C.place((ok._replace(values=np.zeros(8, np.int64)[::2]),), 4, np.arange(4), lengths, np.zeros(64, np.uint8),
                None, 0)
    with pytest.raises(ValueError, match="outside"):
        C.lengths((ok,), 4, 2, 5, np.zeros(4, np.int64), np.zeros(1, np.int64))
    with pytest.raises(TypeError):
        C.place((ok,), 4, np.arange(4), lengths, b"read-only" * 10, None, 0)  # the staging buffer must be writable


def test_numbers_read_in_place_must_be_aligned_and_write_frame_aligns_foreign_offsets(tmp_path: Path) -> None:
    """The C reads offsets and stop-bit values as int32/int64 in place: a step whose buffer sits at an odd address
    is refused (UBSan flagged the misaligned loads); ``write_frame`` copies such offsets (a string array over a
    foreign buffer at an odd address, which pyarrow accepts) and writes the same rows."""
    odd = np.zeros(8 * 6 + 1, np.uint8)[1:]  # an odd address
    offsets = odd[: 4 * 4].view(np.int32)
    offsets[:] = [0, 3, 3, 8]
    for step in (Step(C.K_STRING, 4, b"abcdefgh", offsets), Step(C.K_STOPBIT, 8, odd[:24].view(np.int64)),
                 Step(C.K_RAW, 0, b"abcdefgh", odd[:48].view(np.int64))):
        with pytest.raises(ValueError, match="must be aligned"):
            Program([step], 3, ["v"], [None]).lengths()
    arr = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets), pa.py_buffer(b"abcdefgh")])
    assert arr.buffers()[1].address % 4
    write_frame(pa.table({"s": arr}), tmp_path / "j", "s:string", date=dt.date(2024, 1, 2))
    assert pychro.read_table(tmp_path / "j", "s:string").column("s").to_pylist() == ["abc", "", "defgh"]
    # no rows: nothing is read, and numpy calls an empty array aligned wherever it sits (a helper found it refused)
    empty = np.ndarray((0,), np.int64, buffer=bytearray(16), offset=1)
    assert Program([Step(C.K_STOPBIT, 8, empty)], 0, ["v"], [None]).lengths().tolist() == []


def test_arrow_buffers_longer_than_their_values_are_written(tmp_path: Path) -> None:
    """Arrow lets a buffer run past its last value, by any number of bytes: text offsets and float values were
    viewed whole, and a buffer whose size is not a multiple of the value size was refused (found by a helper)."""
    text = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(np.array([0, 1, 3], np.int32).tobytes() + b"\0\0"),
                                                   pa.py_buffer(b"abc")])
    floats = pa.Array.from_buffers(pa.float64(), 2, [None, pa.py_buffer(np.array([1.5, 2.5]).tobytes() + b"\0\0\0")])
    text.validate(full=True)
    floats.validate(full=True)
    write_frame(pa.table({"s": text, "x": floats}), tmp_path / "j", "s:string,x:float64", date=dt.date(2024, 1, 2))
    got = pychro.read_table(tmp_path / "j", "s:string,x:float64")
    assert got.column("s").to_pylist() == ["a", "bc"] and got.column("x").to_pylist() == [1.5, 2.5]


def test_place_takes_a_range_and_writes_each_entry() -> None:
    """rows as a range lays out the same bytes as the array; entries[i] = entry_base + offset of header i."""
    rng = np.random.default_rng(5)
    n = 50
    texts = text_program(["".join("ab\u00e9\U0001f600"[j] for j in rng.integers(0, 4, k))
                          for k in rng.integers(0, 30, n)])
    program = Program([Step(C.K_FIXED, 8, np.arange(n, dtype=np.int64)), *texts.steps], n, ["v", "s"],
                      [None, texts.columns[0]])
    lengths = program.lengths()
    size = int(((lengths + 7) & ~3)[10:40].sum())
    by_array, by_range = np.zeros(size + 64, np.uint8), np.zeros(size + 64, np.uint8)
    entries = np.zeros(30, np.uint64)
    assert program.place(np.arange(10, 40), lengths, by_array) == size
    assert program.place(range(10, 40), lengths, by_range, entries, 1000) == size
    assert bytes(by_array) == bytes(by_range)
    starts = np.concatenate([[0], np.cumsum((lengths[10:39] + 7) & ~3)])
    assert entries.tolist() == (starts + 1000).tolist()
    with pytest.raises(ValueError, match="step 1"):
        program.place(range(10, 40, 2), lengths, by_range)
    with pytest.raises(ValueError, match="not a row"):
        program.place(range(n - 1, n + 1), lengths, by_range)
    with pytest.raises(ValueError, match="not a row"):
        program.place(range(-1, 2), lengths, by_range)
    with pytest.raises(ValueError, match="entries"):
        program.place(range(10, 40), lengths, by_range, np.zeros(29, np.uint64))
    with pytest.raises(ValueError, match="entries"):
        program.place(range(10, 40), lengths, by_range, np.zeros(31 * 8, np.uint8)[1:-7].view(np.uint8))
    with pytest.raises(BufferError, match="not writable"):
        program.place(range(10, 40), lengths, by_range, bytes(30 * 8))
    with pytest.raises(ValueError, match="aligned"):
        C.place(program.steps, n, np.zeros(8 * 4 + 1, np.uint8)[1:].view(np.int64), lengths, by_range, None, 0)
    # arrays of another type of 8-byte words, and entries outside uint64, are refused, not reinterpreted
    for base in (-1, 1 << 64, (1 << 64) - 1):  # the last: its second entry would pass 2**64 - 1
        with pytest.raises(OverflowError, match="entry_base"):
            program.place(range(10, 40), lengths, by_range, entries, base)
    with pytest.raises(TypeError, match="entry_base must be an int, not float"):
        program.place(range(10, 40), lengths, by_range, entries, 1.5)
    assert program.place(range(10, 40), lengths, by_range, entries, np.uint64(1000)) == size
    with pytest.raises(ValueError, match=r"rows .* must be an array of int64, not of format 'd'"):
        C.place(program.steps, n, np.arange(10, 40, dtype=np.float64), lengths, by_range, None, 0)
    with pytest.raises(TypeError, match="rows must be int64, not float64"):  # not truncated to integers
        program.place(np.arange(10, 40, dtype=np.float64) + 0.9, lengths, by_range)
    with pytest.raises(TypeError, match="lengths must be int64, not float64"):
        program.place(range(10, 40), lengths + 0.5, by_range)
    with pytest.raises(ValueError, match="lengths must be an array of int64, not of format 'd'"):
        C.place(program.steps, n, range(10, 40), lengths.astype(np.float64), by_range, None, 0)
    with pytest.raises(ValueError, match=r"lengths needs one int64 per row of the program \(50\), not 49"):
        C.place(program.steps, n, range(10, 40), lengths[:49], by_range, None, 0)
    with pytest.raises(ValueError, match="entries must be an array of uint64"):
        C.place(program.steps, n, range(10, 40), lengths, by_range, entries.view(np.int64), 0)
    with pytest.raises(ValueError, match=r"entries: .*read-only"):
        C.place(program.steps, n, range(10, 40), lengths, by_range, np.frombuffer(bytes(240), np.uint64), 0)
    with pytest.raises(ValueError, match="fit: lengths must be an array of int64, not of format 'd'"):
        C.fit(range(10, 40), lengths.astype(np.float64), 0, 1 << 20, 1 << 20)
    with pytest.raises(ValueError, match="fit: lengths must be an array of int64, not of format '>q'"):
        C.fit(range(10, 40), lengths.astype(">i8"), 0, 1 << 20, 1 << 20)
    assert C.fit(range(10, 40), lengths, 0, 1 << 20, 1 << 20) == (30, size)
    with pytest.raises(BufferError, match="entries: ") as raised:  # the exporter's error, named, as the cause
        C.place(program.steps, n, range(10, 40), lengths, by_range, bytes(240), 0)
    assert isinstance(raised.value.__cause__, BufferError)

    class Index:
        def __index__(self) -> int:
            raise KeyError("from __index__")

    with pytest.raises(KeyError, match="from __index__"):  # goes on as it is, not replaced
        program.place(range(10, 40), lengths, by_range, entries, Index())
    assert program.place([], lengths, by_range) == 0  # an empty list (numpy makes it float64) is no rows
    assert program.place(np.arange(10, 40, dtype=np.uint32), lengths, by_range) == size
    with pytest.raises(TypeError, match="rows must be int64, not bool"):
        program.place(np.ones(30, bool), lengths, by_range)
    with pytest.raises(TypeError, match="rows must be int64, not uint64 above 2"):
        program.place(np.array([1 << 63], np.uint64), lengths, by_range)
    nothing = np.zeros(9, np.uint8)[1:1].view(np.int64)  # no rows, at an odd address: nothing is read
    assert C.fit(nothing, lengths, 0, 1 << 20, 1 << 20) == (0, 0)
    assert C.place(program.steps, n, nothing, lengths, by_range, nothing.view(np.uint64), 0) == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=0, max_size=14), st.integers(0, 14),
       st.integers(1, 150), st.data())
def test_wide_fixed_groups_lay_out_each_row_as_the_row_writer(sizes: list[int], split: int, n: int, data: Any) -> None:
    """Groups of fixed-width columns (six or more go through the C's tiles of 64 rows), split by a text field,
    for a range of rows and for rows in any order: header, every value's bytes in field order, padding."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    cols = [rng.integers(0, 256, n * size, dtype=np.uint8) for size in sizes]
    words = ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, int(k))) for k in rng.integers(0, 20, n)]
    text = text_program(words)
    split = min(split, len(sizes))
    steps = [Step(C.K_FIXED, size, col) for size, col in zip(sizes, cols)]
    steps.insert(split, text.steps[0])
    program = Program(steps, n, [f"c{k}" for k in range(len(steps))], [None] * len(steps))
    lengths = program.lengths()

    def body(r: int) -> bytes:
        fixed = [bytes(col[r * size : (r + 1) * size]) for size, col in zip(sizes, cols)]
        word = F.encode_stop_bit(len(words[r])) + words[r].encode()
        return b"".join(fixed[:split]) + word + b"".join(fixed[split:])

    in_order = data.draw(st.booleans())
    rows: Any = range(n) if in_order else np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1,
                                                                       max_size=200)), dtype=np.int64)
    expected = b""
    for r in rows:
        b = body(int(r))
        assert len(b) == lengths[r]
        expected += struct.pack("<i", ~len(b)) + b + b"\0" * (-(len(b) + 4) % 4)
    buf = np.full(len(expected) + 32, 0xAA, dtype=np.uint8)
    assert program.place(rows, lengths, buf[: len(expected)]) == len(expected)
    assert bytes(buf[: len(expected)]) == expected and (buf[len(expected) :] == 0xAA).all()


def test_a_group_wider_than_a_tile_and_a_bad_row_inside_one() -> None:
    """A group of 2100 int64 columns (more than a tile's 16 KiB in one row); an unknown row in the middle of a
    tile is the error, named by its position."""
    n, width = 3, 2100
    cols = [np.arange(n, dtype=np.int64) + 10 * k for k in range(width)]
    program = Program([Step(C.K_FIXED, 8, c) for c in cols], n, ["c"] * width, [None] * width)
    lengths = program.lengths()
    size = 3 * (4 + 8 * width)
    buf = np.zeros(size, np.uint8)
    assert program.place(range(3), lengths, buf) == size
    got = buf.reshape(3, -1)[:, 4:].copy().view(np.int64)
    assert (got == np.stack(cols, axis=1)).all()
    wide = Program([Step(C.K_FIXED, 8, np.arange(100, dtype=np.int64)) for _ in range(8)], 100, ["c"] * 8, [None] * 8)
    with pytest.raises(ValueError, match=r"rows\[70\] is not a row"):
        wide.place(np.r_[np.arange(70), 100, np.arange(5)], wide.lengths(), np.zeros(1 << 16, np.uint8))


def _fit_reference(rows: Any, lengths: Any, pos: int, roll_at: int, limit: int) -> tuple[int, int]:
    """The run rule as whole-array numpy (what bulk.py computed before the C did)."""
    rec = (lengths[np.asarray(rows, dtype=np.int64)] + 7) & ~3
    ends = pos + np.cumsum(rec)
    starts = ends - rec
    fit = int(np.searchsorted(starts, roll_at, side="right"))
    if fit == 0:
        return 0, 0
    fit = min(fit, max(1, int(np.searchsorted(ends, limit, side="right"))))
    return fit, int(ends[fit - 1]) - pos


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=40), st.integers(0, 2000), st.integers(0, 3000),
       st.integers(0, 5000), st.booleans())
def test_fit_is_the_run_rule(sizes: list[int], pos: int, roll_at: int, span: int, as_range: bool) -> None:
    lengths = np.array(sizes, dtype=np.int64)
    rows: Any = range(len(sizes)) if as_range else np.arange(len(sizes))[::-1].copy()
    assert C.fit(rows, lengths, pos, roll_at, pos + span) == _fit_reference(rows, lengths, pos, roll_at, pos + span)


def test_fit_checks_its_arguments() -> None:
    lengths = np.full(4, 8, dtype=np.int64)
    assert C.fit(range(0), lengths, 0, 100, 100) == (0, 0)
    assert C.fit(range(4), lengths, 0, 100, 0) == (1, 12)  # at least one message, whatever the limit
    assert C.fit(range(4), lengths, 101, 100, 1000) == (0, 0)  # past roll_at: the file must roll first
    for rows in (range(3, 5), np.array([0, -1]), range(-1, 1)):
        with pytest.raises(ValueError, match="not a row"):
            C.fit(rows, lengths, 0, 1000, 1000)
    with pytest.raises(ValueError, match="not a row"):
        C.fit(range(2), np.array([8, 1 << 31], dtype=np.int64), 0, 1000, 1000)
    with pytest.raises(ValueError, match="positions"):
        C.fit(range(2), lengths, -1, 1000, 1000)
    with pytest.raises(ValueError, match="step 1"):
        C.fit(range(0, 4, 2), lengths, 0, 1000, 1000)
    with pytest.raises(ValueError, match="aligned"):
        C.fit(np.zeros(17, np.uint8)[1:].view(np.int64), lengths, 0, 1000, 1000)
    with pytest.raises(OverflowError):
        C.fit(range(1 << 64), lengths, 0, 1000, 1000)
    with pytest.raises(ValueError, match="too long"):
        C.fit(range(-(1 << 62), 1 << 62), lengths, 0, 1000, 1000)
    program = Program([Step(C.K_FIXED, 8, np.zeros(4, np.int64))], 4, ["v"], [None])
    with pytest.raises(ValueError, match="too long"):
        program.place(range(-(1 << 63), (1 << 63) - 1), lengths, np.zeros(64, np.uint8), np.zeros(4, np.uint64))


def test_write_frame_reads_sliced_arrow_columns_in_place(tmp_path: Path) -> None:
    """Slices (a non-zero array offset: bitmaps at a bit offset, offsets mid-buffer) and both string widths."""
    n = 300
    full = pa.table({
        "b": pa.array([k % 3 == 0 for k in range(n)]),
        "f": pa.array([None if k % 4 == 1 else k / 2 for k in range(n)], pa.float64()),
        "s": pa.array([None if k % 5 == 2 else f"é{k}\U0001F600" * (k % 3) for k in range(n)]),
        "t": pa.array([f"t{k}" for k in range(n)], pa.large_string()),
    })
    table = full.slice(13, 250)
    schema = "b:bool,f:float64,s:string,t:utf"
    write_frame(table, tmp_path, schema, date=dt.date(2024, 1, 2))
    back = pychro.read_table(tmp_path, schema)
    assert back.column("b").to_pylist() == table.column("b").to_pylist()
    assert back.column("s").to_pylist() == table.column("s").to_pylist()
    assert back.column("t").to_pylist() == table.column("t").to_pylist()
    f = back.column("f").to_numpy(zero_copy_only=False)
    want = table.column("f").to_numpy(zero_copy_only=False)
    assert np.array_equal(f, want, equal_nan=True)


def test_write_frame_rejects_invalid_utf8_before_writing(tmp_path: Path) -> None:
    data = pa.py_buffer(b"ok" + b"\xf0\x9f\x98")  # a 4-byte sequence cut short: Arrow's from_buffers does not check
    bad = pa.StringArray.from_buffers(2, pa.py_buffer(np.array([0, 2, 5], dtype=np.int32).tobytes()), data)
    with pytest.raises(ValueError, match="row 1: column 's' text is not valid UTF-8"):
        write_frame(pa.table({"s": bad}), tmp_path / "j", "s:string", date=dt.date(2024, 1, 2))
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").rglob("index-*"))


@pytest.mark.parametrize("seed", range(60))
def test_hostile_programs_raise_or_write_inside_the_buffer(seed: int) -> None:
    """Random bytes as text, offsets out of order or past the data, lengths that lie, huge stop-bit values:
    the C either refuses (ValueError) or lays out exactly the bytes the lengths say, never outside the buffer
    (run under -fsanitize=address to see a stray access)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    data = rng.integers(0, 256, int(rng.integers(0, 200))).astype(np.uint8)
    data[rng.random(len(data)) < 0.3] = 0xF0 + rng.integers(0, 16)  # 4-byte leads, valid or not
    offsets = np.sort(rng.integers(0, len(data) + 1, n + 1)).astype(np.int32)
    if seed % 3 == 0:
        offsets[rng.integers(0, n + 1)] = rng.integers(-5, len(data) + 50)  # out of order or outside
    validity = rng.integers(0, 256, n // 8 + 2).astype(np.uint8).tobytes() if seed % 2 else None
    steps = [
        Step(C.K_STRING, 4, data, offsets, validity, int(rng.integers(0, 8)) if validity else 0),
        Step(C.K_STOPBIT, 8, rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)),
        Step([C.K_UTF, C.K_CHAR, C.K_STRING][seed % 3], 4, data, offsets),
    ]
    program = Program(steps, n, ["a", "b", "c"], [pa.array([None] * n)] * 3)
    try:
        lengths = program.lengths()
    except ValueError:
        lengths = rng.integers(0, 300, n)  # the C must still refuse, not overrun, when handed made-up lengths
    rows = rng.integers(0, n, int(rng.integers(1, 2 * n)))
    size = int(((lengths[rows] + 4 + 3) & ~3).sum())
    buf = np.full(size + 32, 0xAA, dtype=np.uint8)
    try:
        assert program.place(rows, lengths, buf[: size - int(rng.integers(0, 2)) * 4]) == size
    except ValueError:
        pass
    assert (buf[size:] == 0xAA).all()


def test_write_frame_names_the_earliest_bad_row_whichever_check_finds_it(tmp_path: Path) -> None:
    """Nulls and ranges are checked in Python, field by field, text and chars in C over whole rows: a null in
    row 4999 of a later field was named before a bad char in row 3 (a helper found it)."""
    n = 5000
    chars, utf = ["x"] * n, ["ok"] * n
    chars[3] = "\U0001F600"  # not one UTF-16 unit
    utf[4999] = None  # writeUTF has no null
    qty = np.arange(n) % 100
    qty[2500] = 300  # not an int8
    with pytest.raises(ValueError, match=r"^row 3: column 'a' value '\U0001F600' is not one BMP character"):
        write_frame(pa.table({"q": qty, "a": chars, "u": utf}), tmp_path / "j", "q:int8,a:char,u:utf",
                    date=dt.date(2024, 1, 2))
    chars[3] = "x"
    with pytest.raises(ValueError, match=r"^row 2500: column 'q' value 300 does not fit in int8"):
        write_frame(pa.table({"q": qty, "a": chars, "u": utf}), tmp_path / "j", "q:int8,a:char,u:utf",
                    date=dt.date(2024, 1, 2))
    ts = pa.array([1_704_153_600_000] * n, pa.timestamp("ms", tz="UTC")).to_numpy(zero_copy_only=False).copy()
    ts[7] = np.datetime64(-5, "ms")  # before 1970: no cycle holds it (checked after the lengths)
    with pytest.raises(ValueError, match=r"^row 7: ts = -5 .ms since 1970. is cycle -1"):
        write_frame(pa.table({"ts": ts, "q": qty, "a": chars, "u": utf}), tmp_path / "j",
                    "ts:timestamp_ms,q:int8,a:char,u:utf")
    assert not (tmp_path / "j").exists()


def test_a_bad_entry_of_a_repeated_group_names_its_row_and_entry(tmp_path: Path) -> None:
    levels = pa.array([[{"q": 1}], [{"q": 2}, {"q": 3}, {"q": 300}]], pa.list_(pa.struct([("q", pa.int32())])))
    with pytest.raises(ValueError, match=r"^row 1: column 'lv.q' value 300 does not fit in int8 \(entry 2 of the "):
        write_frame(pa.table({"lv": levels}), tmp_path / "j", "lv:list<q:int8>", date=dt.date(2024, 1, 2))
    floats = pa.array([[1.5], [], [2.0, 1e39]], pa.list_(pa.float64()))
    with pytest.raises(ValueError, match=r"^row 2: column 'lv' value 1e\+39 does not fit in a Java float .*\(entry 1 "):
        write_frame(pa.table({"lv": floats}), tmp_path / "j", "lv:list<float32>", date=dt.date(2024, 1, 2))


def test_write_batches_counts_a_bad_row_from_the_start_of_the_stream(tmp_path: Path) -> None:
    good = pa.table({"q": np.arange(10, dtype=np.int64), "u": ["a"] * 10})
    bad = pa.table({"q": np.array([1, 2, 999], dtype=np.int64), "u": ["a", None, "c"]})
    with pytest.raises(ValueError, match=r"^row 11: column 'u' is null") as info:
        write_batches(lambda: iter([good, bad]), tmp_path / "j", "q:int8,u:utf", date=dt.date(2024, 1, 2))
    assert info.value.row == 11  # type: ignore[attr-defined]
    assert not (tmp_path / "j").exists()


def test_values_that_do_not_fit_are_refused_not_wrapped(tmp_path: Path) -> None:
    """An integer into a char field was checked against int64 (70000 written as U+1170, -1 as U+FFFF), a float
    2**63 into int64 against 2**63 - 1 rounded up to 2**63 (written as -2**63); the row writer refuses both."""
    day = dt.date(2024, 1, 2)
    for schema, values, row in [("c:char", pa.array([65, 70000, -1]), 1), ("c:char", pa.array([-1, 65], pa.int8()), 0),
                                ("c:int64", pa.array([1.0, 2.0**63]), 1), ("c:stopbit", pa.array([2.0**63]), 0),
                                ("c:timestamp_ns", pa.array([0.0, 2.0**63]), 1), ("c:int64", pa.array([-2.0**64]), 0)]:
        with pytest.raises(ValueError, match=rf"^row {row}: column 'c' value .* does not fit in {schema[2:]}"):
            write_frame(pa.table({"c": values}), tmp_path / "j", schema, date=day)
    write_frame(pa.table({"c": pa.array([65, 0xFFFF]), "i": pa.array([-(2.0**63), 2.0**62])}), tmp_path / "j",
                "c:char,i:int64", date=day)
    back = pychro.read_table(tmp_path / "j", "c:char,i:int64")
    assert back.column("c").to_pylist() == ["A", "\uffff"] and back.column("i").to_pylist() == [-(2**63), 2**62]
    with pytest.raises(ValueError, match=r"^row 1: column 'c' value 2.5 is not an integer"):  # the first of both
        write_frame(pa.table({"c": pa.array([1.0, 2.5, 1e30])}), tmp_path / "k", "c:int32", date=day)


def test_half_floats_into_integer_fields_are_checked_without_warnings(tmp_path: Path) -> None:
    import warnings

    import numpy as np

    day = "2024-01-02"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the int32 bounds as float16 overflowed: a RuntimeWarning
        write_frame(pa.table({"q": pa.array(np.array([1, -2, 60000], np.float16))}), tmp_path / "j", "q:int32",
                    date=day)
        assert pychro.read_table(tmp_path / "j", "q:int32").column("q").to_pylist() == [1, -2, 60000]
        for values, why in (([1, 2.5], "is not an integer"), ([1, 60000], "does not fit in int16")):
            with pytest.raises(ValueError, match=rf"^row 1: column 'q' value [0-9.]+ {why}"):
                write_frame(pa.table({"q": pa.array(np.array(values, np.float16))}), tmp_path / "k", "q:int16",
                            date=day)


def test_columns_outside_the_schema_are_ignored_whatever_they_hold(tmp_path: Path) -> None:
    # the docstring says so; an extra object, long double or duplicated column failed the conversion
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"px": [1.0, 2.0], "junk": [object(), object()], "dup": [1, 2]})
    df.insert(3, "dup", [3, 4], allow_duplicates=True)
    df["ld"] = np.array([1, 2], dtype=np.longdouble)
    write_frame(df, tmp_path / "j", "px:float64", date="2024-01-02")
    write_frame({"px": [3.0], 7: ["x"], "o": [object()]}, tmp_path / "j", "px:float64", date="2024-01-02")
    write_frame(pd.DataFrame({1: [10, 20], 2: [3, 4]}), tmp_path / "n", "1:int32", date="2024-01-02")  # names as str
    assert pychro.read_table(tmp_path / "n", "1:int32").column("1").to_pylist() == [10, 20]
    assert pychro.read_table(tmp_path / "j", "px:float64").column("px").to_pylist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"^the DataFrame has more than one column named 'dup'"):
        write_frame(df, tmp_path / "k", "px:float64,dup:int32", date="2024-01-02")
    with pytest.raises(ValueError, match=r"^column 'junk' cannot be converted to Arrow"):
        write_frame(df, tmp_path / "k", "px:float64,junk:int32", date="2024-01-02")
    assert not (tmp_path / "k").exists()


def test_nan_into_a_bool_field_is_refused(tmp_path: Path) -> None:
    import numpy as np

    for dtype in (np.float16, np.float64):  # NaN != 0: it was written as true
        col = pa.array(np.array([0, 1, np.nan], dtype))
        with pytest.raises(ValueError, match=r"^row 2: column 'b' value nan is not true or false"):
            write_frame(pa.table({"b": col}), tmp_path / "j", "b:bool", date="2024-01-02")
    assert not (tmp_path / "j").exists()


def test_row_errors_pickle_and_name_their_frame(tmp_path: Path) -> None:
    import copy
    import pickle

    from pychro.frames.encode import RowError

    for err in (RowError(3, "column 'q' is null"), RowError(2, "why", frame="trade")):
        for back in (pickle.loads(pickle.dumps(err)), copy.copy(err)):
            assert (type(back), back.row, back.why, back.frame, str(back)) == (RowError, err.row, err.why, err.frame,
                                                                                str(err))
    types = pychro.MessageTypes("ts:timestamp_ms,type:int8", "type", {1: ("trade", "q:int8"), 2: ("quote", "b:int8")})
    ts = pa.array([1_704_153_600_000 + k for k in range(3)], pa.timestamp("ms", tz="UTC"))
    frames = {"trade": pa.table({"ts": ts, "q": [1, 2, 300]}), "quote": pa.table({"ts": ts, "b": [1, 2, 3]})}
    with pytest.raises(RowError, match=r"^frame 'trade': row 2: column 'q' value 300 does not fit in int8") as info:
        pychro.write_frames(frames, tmp_path / "j", types)
    assert (info.value.frame, info.value.row) == ("trade", 2)
    assert not (tmp_path / "j").exists()
    # errors before any row is checked name their frame too (they did not)
    import pandas as pd

    dup = pd.DataFrame([[ts[0].as_py(), 1, 2]], columns=["ts", "q", "q"])
    with pytest.raises(ValueError, match=r"^frame 'trade': the DataFrame has more than one column named 'q'"):
        pychro.write_frames({"quote": frames["quote"], "trade": dup}, tmp_path / "j", types)
    with pytest.raises(TypeError, match=r"^frame 'quote': write_frame takes a pandas DataFrame"):
        pychro.write_frames({"trade": frames["trade"].slice(0, 2), "quote": [1, 2]}, tmp_path / "j", types)
    with pytest.raises(ValueError, match=r"^frame 'quote': column 'b' cannot be converted to Arrow"):
        pychro.write_frames({"quote": {"ts": [1], "b": [object()]}}, tmp_path / "j", types)
    for not_a_frame in (pd.Series([1, 2]), pd.Index([1, 2])):  # raised AttributeError from inside pyarrow
        with pytest.raises((TypeError, ValueError), match=r"^frame 'trade': "):
            pychro.write_frames({"trade": not_a_frame}, tmp_path / "j", types)
    twice = frames["trade"].append_column("type", pa.array([1, 1, 1], pa.int8()))
    twice = twice.append_column("type", pa.array([1, 1, 1], pa.int8()))  # a KeyError from pyarrow
    with pytest.raises(ValueError, match=r"^frame 'trade': the data has more than one column named 'type'"):
        pychro.write_frames({"trade": twice}, tmp_path / "j", types)
    keyed = frames["trade"].slice(0, 2).append_column("k", pa.array([1, 2])).append_column("k", pa.array([1, 2]))
    with pytest.raises(ValueError, match=r"^frame 'trade' has more than one column named 'k' \(order_by=\)"):
        pychro.write_frames({"trade": keyed}, tmp_path / "j", types, order_by="k")
    assert not (tmp_path / "j").exists()


def test_the_rows_before_a_bad_row_are_checked_again_a_few_times_not_once_per_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Column k's only bad value in row n - 1 - k: checking the rows before each error found the next column's,
    one round per column (200 columns x 200 k rows: 9 s to fail, 0.3 s to write; a helper found it)."""
    from pychro.frames import backfill

    rounds = []
    prepare_rows = backfill._prepare_rows
    monkeypatch.setattr(backfill, "_prepare_rows", lambda table, *a: rounds.append(table.num_rows) or
                        prepare_rows(table, *a))
    k, n = 50, 1000
    cols = {}
    for j in range(k):
        v = np.zeros(n, np.int64)
        v[n - 1 - j] = 1000
        cols[f"c{j}"] = v
    cols["u"] = ["x"] * n
    cols["u"][100] = "ab"  # a char the C refuses, before all of them
    schema = ",".join(f"c{j}:int8" for j in range(k)) + ",u:char"
    with pytest.raises(ValueError, match=r"^row 100: column 'u'"):
        write_frame(pa.table(cols), tmp_path / "j", schema, date=dt.date(2024, 1, 2))
    assert rounds == [n, n - k, 100]  # every field; the rows before the first field error (the C's); before it


def test_timestamps_past_the_fields_unit_name_their_row(tmp_path: Path) -> None:
    day = dt.date(2024, 1, 2)
    t = pa.table({"ts": pa.array([0, 10**17], pa.timestamp("s", tz="UTC")), "q": pa.array([None, 1], pa.int32())})
    with pytest.raises(ValueError, match=r"^row 0: column 'q' is null"):  # not raised before the null, with no row
        write_frame(t, tmp_path / "j", "ts:timestamp_ns,q:int32", date=day)
    with pytest.raises(ValueError, match=r"^row 1: column 'ts': 100000000000000000 s since 1970 does not fit in the "
                                         "field's timestamp_ns"):
        write_frame(t.drop_columns(["q"]), tmp_path / "j", "ts:timestamp_ns", date=day)
    dates = pa.table({"d": pa.array([dt.date(2000, 1, 1), dt.date(3000, 1, 1)], pa.date32())})
    with pytest.raises(ValueError, match=r"^row 1: column 'd': 32503680000000 ms since 1970 does not fit"):
        write_frame(dates, tmp_path / "j", "d:timestamp_ns", date=day)
    g = pa.table({"g": pa.array([[0], [1, 10**17]], pa.list_(pa.timestamp("s")))})
    with pytest.raises(ValueError, match=r"^row 1: column 'g': .* does not fit .*\(entry 1 of the row\)$"):
        write_frame(g, tmp_path / "j", "g:list<timestamp_ns>", date=day)
    assert not (tmp_path / "j").exists()


def test_pandas_frames_arrow_cannot_type_are_written_or_refused_clearly(tmp_path: Path) -> None:
    import pandas as pd

    day = dt.date(2024, 1, 2)
    twice = pd.concat([pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3, 4]})], axis=1)
    with pytest.raises(ValueError, match=r"^the DataFrame has more than one column named 'a'"):
        write_frame(twice, tmp_path / "j", "a:int32", date=day)
    # all None, or lists all empty: Arrow infers a null type; a float takes nulls (NaN), an empty group is empty
    frame = pd.DataFrame({"px": [None, None], "g": [[], []], "h": [[], [{"p": None, "q": 1}]]})
    write_frame(frame, tmp_path / "j", "px:float64,g:list<int64>,h:list<p:float64,q:int32>", date=day)
    back = pychro.read_table(tmp_path / "j", "px:float64,g:list<int64>,h:list<p:float64,q:int32>").to_pylist()
    assert [r["g"] for r in back] == [[], []] and back[1]["h"][0]["q"] == 1
    assert all(r["px"] != r["px"] for r in back) and back[1]["h"][0]["p"] != back[1]["h"][0]["p"]  # NaN
    with pytest.raises(ValueError, match=r"^row 0: column 'q' is null; int32 fields cannot hold nulls"):
        write_frame(pd.DataFrame({"q": [None, None]}), tmp_path / "k", "q:int32", date=day)


def test_null_entries_of_a_group_name_the_entry(tmp_path: Path) -> None:
    st_type = pa.struct([("px", pa.float64()), ("qty", pa.int64())])
    one = {"px": 1.0, "qty": 1}
    for schema, col, message in [
        ("h:list<int16>", pa.array([[1], [2, 3, None]], pa.list_(pa.int64())), "'h' has a null entry.*entry 2 "),
        ("g:list<px:float64,qty:int32>", pa.array([[one], [one, None]], pa.list_(st_type)),
         "'g' has a null entry.*entry 1 "),
        ("g:list<px:float64,qty:int32>", pa.array([[one], [{"px": 1.0, "qty": None}]], pa.list_(st_type)),
         "'g.qty' has a null entry.*entry 0 "),
    ]:
        with pytest.raises(ValueError, match=rf"^row 1: column {message}of the row\)$"):
            write_frame(pa.table({schema[0]: col}), tmp_path / "j", schema, date=dt.date(2024, 1, 2))


def test_a_null_typed_entry_field_does_not_make_text_numbers(tmp_path: Path) -> None:
    """One entry field all None (Arrow's null type) had the whole struct cast: text "12" was written as 12."""
    day = dt.date(2024, 1, 2)
    entries = pa.array([[{"px": None, "qty": "12"}]], pa.list_(pa.struct([("px", pa.null()), ("qty", pa.string())])))
    with pytest.raises(ValueError, match=r"column 'l.qty': int32 fields take integers, not string"):
        write_frame(pa.table({"l": entries}), tmp_path / "j", "l:list<px:float64,qty:int32>", date=day)
    # the first bad entry of any entry field, in one round (not one per entry field)
    st_type = pa.struct([("a", pa.int64()), ("b", pa.int64())])
    lists = pa.array([[{"a": 1, "b": 1}], [{"a": 1, "b": 1000}], [{"a": 1000, "b": 1}]], pa.list_(st_type))
    with pytest.raises(ValueError, match=r"^row 1: column 'l.b' value 1000 does not fit in int8 \(entry 0 "):
        write_frame(pa.table({"l": lists}), tmp_path / "j", "l:list<a:int8,b:int8>", date=day)
