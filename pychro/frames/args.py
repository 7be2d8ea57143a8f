"""Checks of the arguments the frames functions share, read and write alike: each returns the value or raises a
TypeError/ValueError that names the argument and what it takes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_ROWS", "MAX_THREADS", "check_rows", "check_threads"]

MAX_ROWS = 2**31 - 1  # rows per batch or row group: beyond this one batch alone passes Arrow's 32-bit offsets
MAX_THREADS = 256  # threads= of reads and writes (decoding threads are kept per thread count: this bounds them)


def check_rows(value: Any, name: str) -> int:
    """A positive number of rows, or a TypeError/ValueError naming the argument and its range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 1 <= value <= MAX_ROWS:
        raise ValueError(f"{name} must be in 1..{MAX_ROWS}, got {value}")
    return int(value)


def check_threads(threads: Any) -> int | None:
    """``threads=`` as given (None: the default), or a TypeError/ValueError naming the allowed range."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, got {type(threads).__name__}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be in 1..{MAX_THREADS}, got {threads}")
    return threads
