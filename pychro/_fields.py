"""Field encodings of Java-Lang ``Bytes`` (vanilla-format.md §7): stop-bit, CESU-8 text, compact forms.

Fixed-size kinds are described once in ``FIXED`` (struct code, size, numpy dtype string); the row reader,
the row writer and the frames decoder all take their sizes and codes from here. No numpy import: the dtype
is a string the frames package turns into a ``numpy.dtype``.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple


class Fixed(NamedTuple):
    code: str  # struct code, little-endian
    size: int
    dtype: str  # numpy dtype string


FIXED: dict[str, Fixed] = {
    "int8": Fixed("<b", 1, "i1"),
    "uint8": Fixed("<B", 1, "u1"),
    "int16": Fixed("<h", 2, "<i2"),
    "uint16": Fixed("<H", 2, "<u2"),
    "char": Fixed("<H", 2, "<u2"),  # one UTF-16 code unit
    "int32": Fixed("<i", 4, "<i4"),
    "uint32": Fixed("<I", 4, "<u4"),
    "int64": Fixed("<q", 8, "<i8"),
    "float32": Fixed("<f", 4, "<f4"),
    "float64": Fixed("<d", 8, "<f8"),
    "bool": Fixed("<B", 1, "u1"),  # Java writes 'Y' (0x59) / 0; any non-zero reads as true
}

STRUCTS = {name: struct.Struct(f.code) for name, f in FIXED.items()}

JAVA_TRUE = 0x59  # writeBoolean(true) stores 'Y'
STOP_BIT = 0x80  # continuation flag of a stop-bit group
STOP_BIT_PAYLOAD = 0x7F
NULL_STRING = b"\x80\x00"  # writeUTFΔ(null) = stop-bit(-1)
MAX_STOP_BIT_BYTES = 10  # Long.MIN_VALUE: 9 groups + 0x00 terminator
UTF_MAX_LENGTH = 0xFFFF  # writeUTF's uint16 byte length


# -- stop-bit ------------------------------------------------------------------------------------------
class FieldRangeError(OverflowError, ValueError):
    """A value that does not fit the Java field it is written as (a ValueError, and an OverflowError as before)."""


def encode_stop_bit(value: int) -> bytes:
    """Java ``writeStopBit(long)``: 7-bit groups, low first; negatives encode ``~n`` and end with 0x00.

    >>> encode_stop_bit(128).hex(), encode_stop_bit(-1).hex()
    ('8001', '8000')
    """
    if not -(1 << 63) <= value < (1 << 63):
        raise FieldRangeError(f"stop-bit value {value} does not fit in a Java long (-2**63..2**63-1)")
    if 0 <= value < 0x80:
        return bytes((value,))
    negative = value < 0
    n = ~value if negative else value
    out = bytearray()
    while n >= 0x80:
        out.append((n & STOP_BIT_PAYLOAD) | STOP_BIT)
        n >>= 7
    if negative:
        out.append(n | STOP_BIT)
        out.append(0)
    else:
        out.append(n)
    return bytes(out)


def decode_stop_bit(buf: bytes | memoryview | bytearray, pos: int, end: int) -> tuple[int, int]:
    """Decode a stop-bit value at ``pos`` (bytes before ``end``) -> (value, next pos).

    Raises ValueError when the encoding runs past ``end`` or is longer than a Java long allows.
    """
    value = 0
    shift = 0
    for i in range(pos, min(end, pos + MAX_STOP_BIT_BYTES)):
        b = buf[i]
        if b < STOP_BIT:
            if b == 0 and shift:
                # a 0x00 terminator after continued groups: the value is negative, ~accumulated
                value = ~value
            elif shift == 63:  # a 10th byte ends only a negative value (Java's readStopBit throws)
                raise ValueError("stop-bit value of 10 bytes that is not negative (Java reads at most 9 stop bits "
                                 "of a positive value)")
            else:
                value |= b << shift
            value &= (1 << 64) - 1
            if value >= 1 << 63:
                value -= 1 << 64
            return value, i + 1
        value |= (b & STOP_BIT_PAYLOAD) << shift
        shift += 7
    raise ValueError("stop-bit value runs past the end of the message")


# -- text (Java's per-UTF-16-unit encoding, i.e. CESU-8 with a plain 0x00 for U+0000) -------------------
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")


def _to_surrogates(m: re.Match[str]) -> str:
    cp = ord(m.group(0)) - 0x10000
    return chr(0xD800 | (cp >> 10)) + chr(0xDC00 | (cp & 0x3FF))


def encode_text(text: str) -> bytes:
    """Encode text as Java's writeUTFΔ does: one 1-3 byte sequence per UTF-16 code unit.

    >>> encode_text("\\U0001F600").hex()
    'eda0bdedb880'
    """
    if text.isascii():
        return text.encode("ascii")
    if _NON_BMP.search(text):
        text = _NON_BMP.sub(_to_surrogates, text)
    # surrogatepass writes any lone surrogate as its 3-byte form, exactly as Java does
    return text.encode("utf-8", "surrogatepass")


def decode_text(raw: bytes | memoryview) -> str:
    """Decode Java text bytes: plain UTF-8 when valid, else CESU-8 (surrogate pairs joined, C0 80 = NUL)."""
    data = bytes(raw)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_text_slow(data)


def decode_text_slow(data: bytes) -> str:
    """The CESU-8 path: only called for text strict UTF-8 refuses (non-BMP written as surrogates)."""
    try:
        units = data.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid Java text bytes: {exc}") from None
    # Re-join surrogate pairs into real code points; lone surrogates stay as they are (Java allows them).
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# -- compact forms (AbstractBytes writeCompact*; §7 table) ---------------------------------------------
def encode_compact_short(v: int) -> bytes:
    if -125 <= v <= 127:
        return struct.pack("<b", v)
    if v == -(1 << 15):
        return b"\x80"
    if v == (1 << 15) - 1:
        return b"\x82"
    return b"\x81" + struct.pack("<h", v)


def encode_compact_int(v: int) -> bytes:
    if -32765 <= v <= 32767:
        return struct.pack("<h", v)
    if v == -(1 << 31):
        return struct.pack("<h", -0x8000)
    if v == (1 << 31) - 1:
        return struct.pack("<h", -0x7FFE)
    return struct.pack("<hi", -0x7FFF, v)


def encode_compact_long(v: int) -> bytes:
    if -2147483645 <= v <= 2147483647:
        return struct.pack("<i", v)
    if v == -(1 << 63):
        return struct.pack("<i", -0x80000000)
    if v == (1 << 63) - 1:
        return struct.pack("<i", -0x7FFFFFFE)
    return struct.pack("<iq", -0x7FFFFFFF, v)


def encode_compact_unsigned_int(v: int) -> bytes:
    if 0 <= v < 0xFFFF:
        return struct.pack("<H", v)
    return struct.pack("<HI", 0xFFFF, v)


def encode_compact_double(v: float) -> bytes:
    """Java ``writeCompactDouble``: a float when exact, else float NaN + the double (NaN itself included)."""
    try:
        as_float = struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:
        as_float = None
    if as_float == v:
        return struct.pack("<f", v)
    return struct.pack("<fd", float("nan"), v)
