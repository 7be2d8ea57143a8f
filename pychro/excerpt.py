"""Excerpt: one message's body, read field by field (the row API of pychro 0.8, Java-Lang semantics).

Field methods use Java-Lang ``Bytes`` names in snake case; where pychro 0.8 had another name it is kept as an
alias (``read_stopbit`` = ``read_stop_bit``; ``read_string`` = Java ``readUTFΔ``). Reads past the end of the
message raise :class:`~pychro.errors.FormatError` instead of returning the bytes that happen to follow.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

from . import _fields as F
from .errors import FormatError

__all__ = ["Excerpt"]

_b, _B, _h, _H, _i, _I, _q, _f, _d = (
    struct.Struct(c).unpack_from for c in ("<b", "<B", "<h", "<H", "<i", "<I", "<q", "<f", "<d")
)
_i24 = struct.Struct("<Bh").unpack_from
_i48 = struct.Struct("<Hi").unpack_from

_T = TypeVar("_T")


class Excerpt:
    """A committed message: ``buf[start:end]`` with a read cursor.

    ``get_offset``/``set_offset`` use absolute offsets into ``get_bytes()`` (the mapped data file), as in
    pychro 0.8. ``index`` is the message's full index (None for a detached excerpt).

    Examples
    --------
    >>> from pychro import Excerpt
    >>> e = Excerpt(bytes.fromhex("0200000080008001"), 0, 8)
    >>> e.read_int(), e.read_string(), e.read_stop_bit()
    (2, None, 128)
    """

    __slots__ = ("_buf", "_pos", "_start", "_end", "index")

    def __init__(self, buf: Any, start: int, end: int, index: int | None = None) -> None:
        self._buf = buf
        self._pos = start
        self._start = start
        self._end = end
        self.index = index

    def __repr__(self) -> str:
        return f"<Excerpt index={self.index} length={self._end - self._start} position={self._pos - self._start}>"

    # -- cursor ------------------------------------------------------------------------------------------
    def get_length(self) -> int:
        """Body length in bytes (the header's ``~length``)."""
        return self._end - self._start

    def get_offset(self) -> int:
        """Absolute read position in ``get_bytes()``."""
        return self._pos

    def set_offset(self, offset: int) -> None:
        """Move the read position to an absolute offset inside the message."""
        _check_int(offset, "offset")
        if not self._start <= offset <= self._end:
            raise ValueError(f"offset {offset} outside message [{self._start}, {self._end}]")
        self._pos = offset

    def advance(self, num_bytes: int) -> None:
        """Skip ``num_bytes`` bytes of the message."""
        _check_int(num_bytes, "num_bytes")
        self.set_offset(self._pos + num_bytes)

    def get_bytes(self) -> Any:
        """The buffer holding the message (a read-only mapping of its data file, or bytes)."""
        return self._buf

    def body(self) -> bytes:
        """A copy of the whole body."""
        return bytes(self._buf[self._start : self._end])

    def remaining(self) -> int:
        """Bytes left to read in the message."""
        return self._end - self._pos

    def _short(self, n: int) -> int:
        raise FormatError(
            "read past the end of the message",
            index=self.index, offset=self._pos, need=n, remaining=self._end - self._pos,
        )

    # -- fixed-size fields ---------------------------------------------------------------------------------
    def read_byte(self) -> int:
        """Java ``readByte``: signed 8-bit."""
        p = self._pos
        if p + 1 > self._end:
            self._short(1)
        self._pos = p + 1
        return _b(self._buf, p)[0]

    def read_unsigned_byte(self) -> int:
        """Java ``readUnsignedByte``: 0..255."""
        p = self._pos
        if p + 1 > self._end:
            self._short(1)
        self._pos = p + 1
        return _B(self._buf, p)[0]

    def read_boolean(self) -> bool:
        """Java ``readBoolean``: any non-zero byte is true (Java writes 'Y')."""
        return self.read_unsigned_byte() != 0

    def read_short(self) -> int:
        """Java ``readShort``: signed 16-bit little-endian."""
        p = self._pos
        if p + 2 > self._end:
            self._short(2)
        self._pos = p + 2
        return _h(self._buf, p)[0]

    def read_unsigned_short(self) -> int:
        """Java ``readUnsignedShort``: 0..65535."""
        p = self._pos
        if p + 2 > self._end:
            self._short(2)
        self._pos = p + 2
        return _H(self._buf, p)[0]

    def read_char(self) -> str:
        """Java ``readChar``: one UTF-16 code unit, as a one-character str (a lone surrogate stays one)."""
        return chr(self.read_unsigned_short())

    def read_int(self) -> int:
        """Java ``readInt``: signed 32-bit little-endian."""
        p = self._pos
        if p + 4 > self._end:
            self._short(4)
        self._pos = p + 4
        return _i(self._buf, p)[0]

    def read_unsigned_int(self) -> int:
        """Java ``readUnsignedInt``: 0..2**32-1."""
        p = self._pos
        if p + 4 > self._end:
            self._short(4)
        self._pos = p + 4
        return _I(self._buf, p)[0]

    def read_long(self) -> int:
        """Java ``readLong``: signed 64-bit little-endian."""
        p = self._pos
        if p + 8 > self._end:
            self._short(8)
        self._pos = p + 8
        return _q(self._buf, p)[0]

    def read_float(self) -> float:
        """Java ``readFloat``: IEEE-754 single."""
        p = self._pos
        if p + 4 > self._end:
            self._short(4)
        self._pos = p + 4
        return _f(self._buf, p)[0]

    def read_double(self) -> float:
        """Java ``readDouble``: IEEE-754 double."""
        p = self._pos
        if p + 8 > self._end:
            self._short(8)
        self._pos = p + 8
        return _d(self._buf, p)[0]

    def read_int24(self) -> int:
        """Java-Lang ``readInt24``: 3 bytes, low byte then signed short."""
        p = self._pos
        if p + 3 > self._end:
            self._short(3)
        self._pos = p + 3
        lo, hi = _i24(self._buf, p)
        return (hi << 8) | lo

    def read_int48(self) -> int:
        """Java-Lang ``readInt48``: 6 bytes, low ushort then signed int."""
        p = self._pos
        if p + 6 > self._end:
            self._short(6)
        self._pos = p + 6
        lo, hi = _i48(self._buf, p)
        return (hi << 16) | lo

    # -- variable-size fields ------------------------------------------------------------------------------
    def read_stop_bit(self) -> int:
        """Java ``readStopBit``: 7-bit groups, incl. the negative form (``80 00`` = -1)."""
        p = self._pos
        if p < self._end:
            b = self._buf[p]
            if b < 0x80:  # one-byte fast path
                self._pos = p + 1
                return b
        try:
            value, self._pos = F.decode_stop_bit(self._buf, p, self._end)
        except ValueError as exc:
            raise FormatError(str(exc), index=self.index, offset=p) from None
        return value

    read_stopbit = read_stop_bit  # pychro 0.8 name

    def _text(self, length: int) -> str:
        p = self._pos
        if length < 0 or p + length > self._end:
            raise FormatError("string length outside the message", index=self.index, offset=p, length=length)
        self._pos = p + length
        raw = self._buf[p : p + length]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                return F.decode_text_slow(raw)
            except ValueError as exc:
                raise FormatError(str(exc), index=self.index, offset=p) from None

    def read_string(self) -> str | None:
        """Java ``readUTFΔ``: stop-bit byte length then CESU-8 text; ``None`` for a Java null."""
        n = self.read_stop_bit()
        if n == -1:
            return None
        return self._text(n)

    read_utf_delta = read_string

    def read_utf(self) -> str:
        """Java-Lang ``readUTF``: uint16 little-endian byte length then the same text encoding."""
        return self._text(self.read_unsigned_short())

    def read_fixed_string(self, size: int) -> str | None:
        """A ``read_string`` that then skips to ``size`` bytes after where it began (pychro 0.8)."""
        _check_int(size, "size")
        start = self._pos
        value = self.read_string()
        self.set_offset(start + size)
        return value

    def read_enum(self) -> str | None:
        """Java ``readEnum(String.class)`` for enums/strings written with ``writeEnum``: the UTFΔ text."""
        return self.read_string()

    def read_bytes(self, n: int) -> bytes:
        """The next ``n`` raw bytes."""
        _check_int(n, "n")
        if n < 0:
            raise ValueError(f"n must be >= 0 bytes, got {n}")
        p = self._pos
        if p + n > self._end:
            self._short(n)
        self._pos = p + n
        return bytes(self._buf[p : p + n])

    # -- compact forms -------------------------------------------------------------------------------------
    def read_compact_short(self) -> int:
        """Java-Lang ``readCompactShort``."""
        b = self.read_byte()
        if b == -128:
            return -(1 << 15)
        if b == -127:
            return self.read_short()
        if b == -126:
            return (1 << 15) - 1
        return b

    def read_compact_int(self) -> int:
        """Java-Lang ``readCompactInt``."""
        s = self.read_short()
        if s == -0x8000:
            return -(1 << 31)
        if s == -0x7FFF:
            return self.read_int()
        if s == -0x7FFE:
            return (1 << 31) - 1
        return s

    def read_compact_long(self) -> int:
        """Java-Lang ``readCompactLong``."""
        i = self.read_int()
        if i == -0x80000000:
            return -(1 << 63)
        if i == -0x7FFFFFFF:
            return self.read_long()
        if i == -0x7FFFFFFE:
            return (1 << 63) - 1
        return i

    def read_compact_unsigned_int(self) -> int:
        """Java-Lang ``readCompactUnsignedInt``."""
        s = self.read_unsigned_short()
        return self.read_unsigned_int() if s == 0xFFFF else s

    def read_compact_double(self) -> float:
        """Java-Lang ``readCompactDouble``: a float, or float NaN then a double."""
        f = self.read_float()
        return self.read_double() if f != f else f

    # -- peeks: read without moving ----------------------------------------------------------------------
    def _peek(self, method: Callable[[], _T]) -> _T:
        p = self._pos
        try:
            return method()
        finally:
            self._pos = p

    def peek_int(self) -> int:
        """Like ``read_int`` without moving the read position."""
        return self._peek(self.read_int)

    def peek_short(self) -> int:
        """Like ``read_short`` without moving the read position."""
        return self._peek(self.read_short)

    def peek_long(self) -> int:
        """Like ``read_long`` without moving the read position."""
        return self._peek(self.read_long)

    def peek_double(self) -> float:
        """Like ``read_double`` without moving the read position."""
        return self._peek(self.read_double)

    def peek_float(self) -> float:
        """Like ``read_float`` without moving the read position."""
        return self._peek(self.read_float)

    def peek_char(self) -> str:
        """Like ``read_char`` without moving the read position."""
        return self._peek(self.read_char)

    def peek_byte(self) -> int:
        """Like ``read_byte`` without moving the read position."""
        return self._peek(self.read_byte)

    def peek_unsigned_byte(self) -> int:
        """Like ``read_unsigned_byte`` without moving the read position."""
        return self._peek(self.read_unsigned_byte)

    def peek_boolean(self) -> bool:
        """Like ``read_boolean`` without moving the read position."""
        return self._peek(self.read_boolean)

    def peek_stop_bit(self) -> int:
        """Like ``read_stop_bit`` without moving the read position."""
        return self._peek(self.read_stop_bit)

    def peek_string(self) -> str | None:
        """Like ``read_string`` without moving the read position."""
        return self._peek(self.read_string)

    peek_stopbit = peek_stop_bit

    def peek_string_undef_offset(self) -> str | None:
        """pychro 0.8: read a string leaving the cursor after it."""
        return self.read_string()


# pychro 0.8 name of the excerpt type.
RawByteReader = Excerpt


def _check_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
