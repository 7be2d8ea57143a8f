"""Stubs of the compiled frames decoder (_decode.c); pychro.frames.decode and .batch are its only callers."""

from typing import Any

Buffer = Any
Program = tuple[tuple[int, int, int], ...]

D_FIXED: int
D_BOOL: int
D_SKIP: int
D_STOPBIT: int
D_STRING: int
D_UTF: int
D_CHAR: int
D_REST: int
D_LIST: int
C_DONE: int
C_HEADER: int
C_NEED_MORE: int
C_TOO_BIG: int
ST_OK: int
ST_MISMATCH: int
ST_TEXT: int
H_OUTSIDE: int
H_ZERO: int
H_HUGE: int
H_PAST: int
N_SLOW: int
N_REPLACED: int
N_BAD: int
N_FIRST_BAD: int
N_TEXT_STEP: int
N_NULLS: int
I_UNKNOWN: int
I_FIRST_UNKNOWN: int
I_HEAD_BAD: int
I_FIRST_BAD: int
I_BAD_TYPE: int
I_COUNT: int

def decode(
    program: Program, entries: Buffer, offset_mask: int, data_bits: int, keys: Buffer, files: tuple[Buffer, ...],
    lo: int, hi: int, stop: bool, outs: tuple[tuple[Any, Any, Any], ...], status: Buffer, counts: Buffer,
    release: bool = ..., /,
) -> tuple[int, int, int]: ...
def decode_typed(
    header: Program, tags: tuple[Any, ...], programs: tuple[Program, ...], entries: Buffer, offset_mask: int,
    data_bits: int, keys: Buffer, files: tuple[Buffer, ...], lo: int, hi: int, stop: bool, stop_unknown: bool,
    outs: tuple[tuple[tuple[Any, Any, Any], ...], ...], statuses: tuple[Buffer, ...], rows: tuple[Buffer, ...],
    used: Buffer, counts: tuple[Buffer, ...], info: Buffer, release: bool = ..., /,
) -> tuple[int, int, int, int]: ...
def _stopbit_path(name: str | None, /) -> str: ...
def _text_path(name: str | None, /) -> str: ...
