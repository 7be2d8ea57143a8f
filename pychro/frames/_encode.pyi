"""Stubs of the compiled frames encoder (_encode.c); pychro.frames.encode is its only caller."""

from typing import Any

Buffer = Any
Program = tuple[tuple[Any, ...], ...]

K_FIXED: int
K_BOOL_BITS: int
K_ZERO: int
K_STOPBIT: int
K_STRING: int
K_UTF: int
K_CHAR: int
K_RAW: int
S_OK: int
S_CHAR: int
S_UTF_LONG: int
S_UTF8: int
S_NULL: int
S_OFFSETS: int

def lengths(program: Program, n: int, lo: int, hi: int, out: Buffer, found: Buffer, /) -> tuple[int, int, int]: ...
def place(
    program: Program, n: int, rows: Buffer | range, lengths: Buffer, buf: Buffer, entries: Buffer | None,
    entry_base: int, /,
) -> int: ...
def fit(rows: Buffer | range, lengths: Buffer, pos: int, roll_at: int, limit: int, /) -> tuple[int, int]: ...
