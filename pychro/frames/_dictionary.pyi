"""Stubs of the compiled text-column dictionary builder (_dictionary.c); pychro.frames.parquet_file is its caller."""

from typing import Any

Buffer = Any

def encode(
    offsets: Buffer, data: Buffer, validity: Buffer | None, first: int, n: int, indices: Buffer, limit: int, /
) -> tuple[int, bytes, bytes] | None: ...
