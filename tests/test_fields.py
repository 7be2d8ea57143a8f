"""Field encodings (vanilla-format.md §7) against the spec's tables and an independent reference, and the
Excerpt's field reads, bounds checks and round trips with the Appender."""

from __future__ import annotations

import math
import struct
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import ref_decode_java_text, ref_field, ref_java_text, ref_read_stop_bit, ref_stop_bit

from pychro import Excerpt, FormatError, VanillaChronicleReader, VanillaChronicleWriter
from pychro import _fields as F

INT64 = st.integers(-(2**63), 2**63 - 1)

# §7 stop-bit table (value, bytes)
STOP_BIT_TABLE = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (16383, "ff7f"),
    (16384, "808001"),
    (2**31 - 1, "ffffffff07"),
    (2**63 - 1, "ffffffffffffffff7f"),
    (-1, "8000"),
    (-2, "8100"),
    (-128, "ff00"),
    (-129, "808100"),
    (-(2**63), "ff" * 9 + "00"),
]

# §7 text: one 1-3 byte sequence per UTF-16 code unit; NUL is a plain 00; non-BMP as two 3-byte surrogates
TEXT_TABLE = [
    ("", ""),
    ("A", "41"),
    ("\x00", "00"),
    ("a\x00b", "610062"),
    ("\x7f", "7f"),
    ("\x80", "c280"),
    ("\u00e9", "c3a9"),
    ("\u07ff", "dfbf"),
    ("\u0800", "e0a080"),
    ("\u20ac", "e282ac"),
    ("\u4e2d", "e4b8ad"),
    ("\ud1a9", "ed86a9"),
    ("\uffff", "efbfbf"),
    ("\U0001F600", "eda0bdedb880"),
    ("\U00010000", "eda080edb080"),
    ("\U0010FFFF", "edafbfedbfbf"),
]


# -- the reference itself follows the spec tables ---------------------------------------------------------
@pytest.mark.parametrize("value, hexed", STOP_BIT_TABLE)
def test_reference_stop_bit_follows_table(value: int, hexed: str) -> None:
    assert ref_stop_bit(value).hex() == hexed
    assert ref_read_stop_bit(bytes.fromhex(hexed)) == (value, len(hexed) // 2)


@pytest.mark.parametrize("text, hexed", TEXT_TABLE)
def test_reference_text_follows_table(text: str, hexed: str) -> None:
    assert ref_java_text(text).hex() == hexed
    assert ref_decode_java_text(bytes.fromhex(hexed)) == text


# -- stop-bit ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, hexed", STOP_BIT_TABLE)
def test_encode_stop_bit_table(value: int, hexed: str) -> None:
    assert F.encode_stop_bit(value).hex() == hexed


@pytest.mark.parametrize("value, hexed", STOP_BIT_TABLE)
def test_decode_stop_bit_table(value: int, hexed: str) -> None:
    raw = b"\xee" + bytes.fromhex(hexed) + b"\xee"
    assert F.decode_stop_bit(raw, 1, len(raw)) == (value, 1 + len(hexed) // 2)
    excerpt = Excerpt(raw, 1, len(raw) - 1)
    assert excerpt.read_stop_bit() == value
    assert excerpt.remaining() == 0


def test_stop_bit_longest_is_ten_bytes() -> None:
    assert len(F.encode_stop_bit(-(2**63))) == F.MAX_STOP_BIT_BYTES == 10
    assert max(len(ref_stop_bit(v)) for v in (2**63 - 1, -(2**63), -1, 0)) == 10


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70])
def test_encode_stop_bit_out_of_range(value: int) -> None:
    with pytest.raises(OverflowError):
        F.encode_stop_bit(value)


@pytest.mark.parametrize("hexed", ["80", "ff", "8080", "ffffffff", "80" * 12])
def test_truncated_stop_bit_is_an_error(hexed: str) -> None:
    raw = bytes.fromhex(hexed)
    with pytest.raises(ValueError):
        F.decode_stop_bit(raw, 0, len(raw))
    with pytest.raises(FormatError):
        Excerpt(raw, 0, len(raw), index=5).read_stop_bit()


def test_stop_bit_never_reads_past_message_end() -> None:
    # the continuation byte is the last of the message; the next byte (outside it) would complete the value
    raw = bytes.fromhex("0180" + "01")
    with pytest.raises(FormatError):
        Excerpt(raw, 1, 2).read_stop_bit()


@given(INT64)
def test_stop_bit_matches_reference(value: int) -> None:
    enc = F.encode_stop_bit(value)
    assert enc == ref_stop_bit(value)
    assert F.decode_stop_bit(enc, 0, len(enc)) == (value, len(enc))
    assert Excerpt(enc, 0, len(enc)).read_stop_bit() == value


@given(st.binary(min_size=1, max_size=12))
def test_stop_bit_decode_of_any_bytes_matches_reference_or_fails_cleanly(raw: bytes) -> None:
    try:
        got = F.decode_stop_bit(raw, 0, len(raw))
    except ValueError:
        # only when the groups run off the end or past a Java long's 10 bytes
        cont = 0
        while cont < len(raw) and raw[cont] & 0x80:
            cont += 1
        assert cont == len(raw) or cont >= F.MAX_STOP_BIT_BYTES
        return
    value, n = ref_read_stop_bit(raw)
    assert got == (value, n)


# -- text --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, hexed", TEXT_TABLE)
def test_encode_text_table(text: str, hexed: str) -> None:
    assert F.encode_text(text).hex() == hexed


@pytest.mark.parametrize("text, hexed", TEXT_TABLE)
def test_decode_text_table(text: str, hexed: str) -> None:
    assert F.decode_text(bytes.fromhex(hexed)) == text


def test_decode_text_modified_utf8_nul() -> None:
    # Java's reader takes the modified-UTF-8 form C0 80 as U+0000 too
    assert F.decode_text(bytes.fromhex("41c08042")) == "A\x00B"
    assert F.decode_text(bytes.fromhex("c080eda0bdedb880")) == "\x00\U0001F600"


def test_lone_surrogates_round_trip() -> None:
    for text in ("\ud800", "a\udfffb", "\udc00\ud800"):  # unpaired or reversed: stay as they are
        raw = F.encode_text(text)
        assert raw == ref_java_text(text)
        assert F.decode_text(raw) == text


def test_four_byte_utf8_is_read_leniently() -> None:
    # Java rejects 4-byte UTF-8, but pychro 0.8 wrote non-BMP text that way (§10.8): reading it is kept.
    assert F.decode_text(bytes.fromhex("41f09f9880")) == "A\U0001F600"


@pytest.mark.parametrize("hexed", ["ff", "c3", "e282", "f09f98", "80", "c328"])
def test_invalid_text_bytes(hexed: str) -> None:
    raw = bytes.fromhex(hexed)
    with pytest.raises(ValueError):
        F.decode_text(raw)
    message = bytes([len(raw)]) + raw
    with pytest.raises(FormatError):
        Excerpt(message, 0, len(message), index=3).read_string()


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(TEXT)
def test_text_matches_reference(text: str) -> None:
    enc = F.encode_text(text)
    assert enc == ref_java_text(text)
    assert F.decode_text(enc) == text
    assert ref_decode_java_text(enc) == text


@given(TEXT | st.none())
def test_read_string_of_reference_bytes(text: str | None) -> None:
    raw = ref_field("string", text)
    excerpt = Excerpt(raw, 0, len(raw))
    assert excerpt.read_string() == text
    assert excerpt.remaining() == 0


def test_null_and_empty_string_bytes() -> None:
    assert F.NULL_STRING == bytes.fromhex("8000") == ref_stop_bit(-1)
    e = Excerpt(bytes.fromhex("8000" + "00" + "0141"), 0, 5)
    assert e.read_string() is None
    assert e.read_string() == ""
    assert e.read_string() == "A"


@pytest.mark.parametrize("length_hex", ["8100", "05", "ff00"])
def test_string_length_outside_message(length_hex: str) -> None:
    raw = bytes.fromhex(length_hex) + b"abc"
    with pytest.raises(FormatError, match="string length"):
        Excerpt(raw, 0, len(raw)).read_string()


def test_read_utf_bytes() -> None:
    raw = ref_field("utf", "h\u00e9\U0001F600")
    assert raw[:2] == struct.pack("<H", 1 + 2 + 6)
    e = Excerpt(raw + b"\x07", 0, len(raw) + 1)
    assert e.read_utf() == "h\u00e9\U0001F600"
    assert e.read_byte() == 7


# -- fixed-size fields -------------------------------------------------------------------------------------
def test_fixed_table_matches_java_sizes() -> None:
    sizes = {name: f.size for name, f in F.FIXED.items()}
    assert sizes == {
        "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "char": 2, "int32": 4, "uint32": 4,
        "int64": 8, "float32": 4, "float64": 8, "bool": 1,
    }
    for f in F.FIXED.values():
        assert struct.calcsize(f.code) == f.size
        assert f.code.startswith("<") or f.size == 1


def test_fixed_reads() -> None:
    raw = (
        bytes.fromhex("ff" "ff" "feff" "feff" "a9d1")
        + struct.pack("<iIqfd", -5, 2**32 - 1, -(2**63), 1.5, -0.25)
        + bytes.fromhex("59" "00" "02" "fe7fff" "010000800000")
    )
    e = Excerpt(raw, 0, len(raw))
    assert e.read_byte() == -1
    assert e.read_unsigned_byte() == 255
    assert e.read_short() == -2
    assert e.read_unsigned_short() == 0xFFFE
    assert e.read_char() == "\ud1a9"
    assert e.read_int() == -5
    assert e.read_unsigned_int() == 2**32 - 1
    assert e.read_long() == -(2**63)
    assert e.read_float() == 1.5
    assert e.read_double() == -0.25
    assert e.read_boolean() is True
    assert e.read_boolean() is False
    assert e.read_boolean() is True  # any non-zero byte is true in Java's readBoolean
    assert e.read_int24() == -129 * 256 + 0xFE  # bytes fe 7f ff: low byte 0xfe, then short 0xff7f = -129
    assert e.read_int48() == 0x8000 * 65536 + 1  # bytes 01 00 00 80 00 00: ushort 1, then int 0x8000
    assert e.remaining() == 0


def test_int24_int48_reference_bytes() -> None:
    for value in (0, 1, -1, 2**23 - 1, -(2**23), 0x123456 - 2**23):
        raw = ref_field("int24", value)
        assert Excerpt(raw, 0, 3).read_int24() == value
    for value in (0, 1, -1, 2**47 - 1, -(2**47), 0x123456789A):
        raw = ref_field("int48", value)
        assert Excerpt(raw, 0, 6).read_int48() == value


@pytest.mark.parametrize(
    "method, size",
    [
        ("read_byte", 1), ("read_unsigned_byte", 1), ("read_boolean", 1), ("read_short", 2),
        ("read_unsigned_short", 2), ("read_char", 2), ("read_int", 4), ("read_unsigned_int", 4),
        ("read_float", 4), ("read_long", 8), ("read_double", 8), ("read_int24", 3), ("read_int48", 6),
    ],
)
def test_read_past_end_of_message(method: str, size: int) -> None:
    raw = bytes(range(1, 17))  # more bytes follow the message in the buffer: they must not be read
    excerpt = Excerpt(raw, 2, 2 + size - 1, index=77)
    with pytest.raises(FormatError, match="past the end") as info:
        getattr(excerpt, method)()
    assert info.value.index == 77
    assert excerpt.get_offset() == 2  # the cursor did not move
    whole = Excerpt(raw, 2, 2 + size)
    getattr(whole, method)()
    assert whole.remaining() == 0


def test_read_bytes_bounds() -> None:
    e = Excerpt(b"abcdef", 1, 4)
    assert e.read_bytes(2) == b"bc"
    with pytest.raises(FormatError):
        e.read_bytes(2)
    with pytest.raises(ValueError, match="n must be >= 0 bytes") as info:  # a bad argument, not bad bytes
        e.read_bytes(-1)
    assert not isinstance(info.value, FormatError)
    assert e.read_bytes(1) == b"d"


def test_cursor_methods() -> None:
    raw = bytes(3) + struct.pack("<iq", 7, 9) + bytes(2)
    e = Excerpt(raw, 3, 15, index=1)
    assert (e.get_length(), e.get_offset(), e.remaining()) == (12, 3, 12)
    assert e.peek_int() == 7 and e.get_offset() == 3
    assert e.read_int() == 7
    assert e.peek_long() == 9 and e.remaining() == 8
    e.advance(8)
    assert e.remaining() == 0
    e.set_offset(7)
    assert e.read_long() == 9
    with pytest.raises(ValueError):
        e.set_offset(16)
    with pytest.raises(ValueError):
        e.set_offset(2)
    with pytest.raises(ValueError):
        e.advance(1)
    assert e.body() == raw[3:15]
    assert e.get_bytes() is raw
    assert "index=1" in repr(e)


def test_peeks_do_not_move() -> None:
    raw = bytes.fromhex("8001") + b"\x02hi"
    e = Excerpt(raw, 0, len(raw))
    assert e.peek_stop_bit() == 128 and e.peek_stopbit() == 128
    assert e.peek_byte() == -128 and e.peek_unsigned_byte() == 128 and e.peek_boolean() is True
    assert e.get_offset() == 0
    e.advance(2)
    assert e.peek_string() == "hi" and e.get_offset() == 2
    assert e.read_string() == "hi"


def test_read_fixed_string_skips_to_size() -> None:
    raw = b"\x03abc" + bytes(6) + struct.pack("<i", 99)
    e = Excerpt(raw, 0, len(raw))
    assert e.read_fixed_string(10) == "abc"
    assert e.read_int() == 99
    null = F.NULL_STRING + bytes(3)
    assert Excerpt(null, 0, 5).read_fixed_string(5) is None


# -- compact forms (§7 table) -----------------------------------------------------------------------------
COMPACT = [
    ("short", 0, "00"), ("short", -125, "83"), ("short", 127, "7f"), ("short", -126, "81" + "82ff"),
    ("short", 128, "818000"), ("short", -32768, "80"), ("short", 32767, "82"),
    ("int", 0, "0000"), ("int", -32765, "0380"), ("int", 32767, "ff7f"), ("int", -32766, "0180" + "0280ffff"),
    ("int", -(2**31), "0080"), ("int", 2**31 - 1, "0280"), ("int", 65536, "0180" + "00000100"),
    ("long", 0, "00000000"), ("long", -2147483645, "03000080"), ("long", 2**31 - 1, "ffffff7f"),
    ("long", -(2**63), "00000080"), ("long", 2**63 - 1, "02000080"),
    ("long", 2**31, "01000080" + "0000008000000000"),
    ("unsigned_int", 0, "0000"), ("unsigned_int", 0xFFFE, "feff"), ("unsigned_int", 0xFFFF, "ffff" + "ffff0000"),
    ("unsigned_int", 2**32 - 1, "ffff" + "ffffffff"),
]


@pytest.mark.parametrize("kind, value, hexed", COMPACT)
def test_compact_bytes_and_read_back(kind: str, value: int, hexed: str) -> None:
    raw = getattr(F, f"encode_compact_{kind}")(value)
    assert raw.hex() == hexed
    e = Excerpt(raw, 0, len(raw))
    assert getattr(e, f"read_compact_{kind}")() == value
    assert e.remaining() == 0


@pytest.mark.parametrize(
    "value, hexed",
    [
        (1.5, struct.pack("<f", 1.5).hex()),
        (0.0, "00000000"),
        (float("inf"), struct.pack("<f", float("inf")).hex()),
        (0.1, struct.pack("<fd", float("nan"), 0.1).hex()),
        (1e300, struct.pack("<fd", float("nan"), 1e300).hex()),
    ],
)
def test_compact_double(value: float, hexed: str) -> None:
    raw = F.encode_compact_double(value)
    assert raw.hex() == hexed
    assert Excerpt(raw, 0, len(raw)).read_compact_double() == value


def test_compact_double_nan() -> None:
    raw = F.encode_compact_double(float("nan"))
    assert len(raw) == 12  # a float NaN is the escape, so NaN itself goes as float NaN + double NaN
    assert math.isnan(Excerpt(raw, 0, 12).read_compact_double())


@given(st.integers(-(2**15), 2**15 - 1), st.integers(-(2**31), 2**31 - 1), INT64, st.integers(0, 2**32 - 1))
def test_compact_round_trip(short: int, int_: int, long: int, uint: int) -> None:
    raw = (
        F.encode_compact_short(short) + F.encode_compact_int(int_)
        + F.encode_compact_long(long) + F.encode_compact_unsigned_int(uint)
    )
    e = Excerpt(raw, 0, len(raw))
    assert (e.read_compact_short(), e.read_compact_int(), e.read_compact_long(), e.read_compact_unsigned_int()) == (
        short, int_, long, uint,
    )
    assert e.remaining() == 0


# -- Appender -> Excerpt round trips of random field sequences ----------------------------------------------
FIELD = st.one_of(
    st.tuples(st.just("byte"), st.integers(-128, 127)),
    st.tuples(st.just("boolean"), st.booleans()),
    st.tuples(st.just("short"), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just("unsigned_short"), st.integers(0, 2**16 - 1)),
    st.tuples(st.just("char"), st.characters(max_codepoint=0xFFFF)),
    st.tuples(st.just("int"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("unsigned_int"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("long"), INT64),
    st.tuples(st.just("float"), st.floats(width=32, allow_nan=False)),
    st.tuples(st.just("double"), st.floats(allow_nan=False)),
    st.tuples(st.just("stop_bit"), INT64),
    st.tuples(st.just("string"), TEXT | st.none()),
    st.tuples(st.just("utf"), TEXT),
    st.tuples(st.just("int24"), st.integers(-(2**23), 2**23 - 1)),
    st.tuples(st.just("int48"), st.integers(-(2**47), 2**47 - 1)),
)


@pytest.fixture(scope="module")
def journal_pair() -> Iterator[tuple[VanillaChronicleWriter, VanillaChronicleReader]]:
    with tempfile.TemporaryDirectory() as path:
        writer = VanillaChronicleWriter(path)
        reader = VanillaChronicleReader(path)
        yield writer, reader
        reader.close()
        writer.close()


@given(fields=st.lists(FIELD, max_size=25))
def test_random_fields_round_trip_through_a_journal(
    journal_pair: tuple[VanillaChronicleWriter, VanillaChronicleReader], fields: list[tuple[str, object]]
) -> None:
    writer, reader = journal_pair
    appender = writer.get_appender()
    appender.start_excerpt()  # an empty field list is still a message (of length 0)
    for kind, value in fields:
        getattr(appender, f"write_{kind}")(value)
    index = appender.finish()
    excerpt = reader.excerpt_at(index)
    expected = b"".join(ref_field(kind, value) for kind, value in fields)
    assert excerpt.body() == expected  # the bytes, not only the values
    for kind, value in fields:
        got = getattr(excerpt, f"read_{kind}")()
        if kind == "float":
            value = struct.unpack("<f", struct.pack("<f", value))[0]  # type: ignore[arg-type]
        if kind in ("float", "double") and value == 0:
            assert math.copysign(1, got) == math.copysign(1, value)  # type: ignore[arg-type]
        assert got == value, kind
    assert excerpt.remaining() == 0
