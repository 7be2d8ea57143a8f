"""The encoder's field program: columns of a table -> the bytes Java-Lang writes (vanilla-format.md §4, §7).

:mod:`.backfill` turns each schema field and its column into a :class:`Step` (numpy arrays and Arrow buffers,
no copies where the column already has the field's layout); a :class:`Program` runs the steps in the compiled
loop of ``_encode.c``: :meth:`Program.lengths` measures and checks every row (so that a bad row is rejected
before anything is written), :meth:`Program.place` lays out runs of messages in a staging buffer for the bulk
appender, byte for byte as the row writer would: ``~length`` headers, 4-byte aligned, zero padding, stop-bit
numbers, Java's CESU-8 text (non-BMP characters as two 3-byte surrogates), ``80 00`` null strings.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _encode as C
from ._workers import submit
from .scan import empty

__all__ = ["Program", "RowError", "Step", "earlier", "raw_program"]


class RowError(ValueError):
    """Row ``row`` of a table cannot be written: ``str()`` is ``"row N: why"`` (write_frames: ``"frame 'name':
    row N: why"``). A ValueError, as before; the row is an attribute so that callers need not parse the message
    (write_batches counts it from the stream's start; write_frame looks for an earlier bad row that a check run
    later would have found)."""

    def __init__(self, row: int, why: str, frame: str | None = None) -> None:
        super().__init__(f"row {row}: {why}" if frame is None else f"frame {frame!r}: row {row}: {why}")
        self.row = row
        self.why = why
        self.frame = frame  # write_frames: the frame (message type) whose row it is

    def __reduce__(self) -> tuple[type[RowError], tuple[int, str, str | None]]:  # pickled (process pools), copied
        return type(self), (self.row, self.why, self.frame)


def earlier(first: RowError | None, exc: RowError) -> RowError:
    """Of two row errors (the first may be None), the one of the earlier row (``first`` on a tie)."""
    return exc if first is None or exc.row < first.row else first


class Step(NamedTuple):
    """One field of every row, as ``_encode.c`` reads it (a tuple: the C takes it as it is)."""

    kind: int  # C.K_*
    size: int = 0  # K_FIXED: bytes per value; K_ZERO: bytes; text kinds: 4 or 8 (Arrow offset width)
    values: Any = None  # numbers (K_FIXED, K_STOPBIT int64, K_BOOL_BITS bits) or the UTF-8 data of text
    offsets: Any = None  # text: Arrow offsets (n + 1, from the array's first row); K_RAW: (start, end) pairs
    validity: Any = None  # Arrow validity bitmap, or None when the column has no nulls
    bit_offset: int = 0  # bit of row 0 in ``validity`` (and in K_BOOL_BITS values): the array's offset
    fill: bytes | None = None  # K_FIXED: the value written for a null (a float NaN)
    supplementary: bool = False  # text holding 4-byte UTF-8 sequences (set by Program.lengths)


class Program:
    """The steps of one table's ``n`` rows; ``names[k]`` and ``columns[k]`` are step k's column (messages)."""

    def __init__(self, steps: list[Step], n: int, names: list[str], columns: list[Any]) -> None:
        self.steps = tuple(steps)
        self.n = n
        self.names = names
        self.columns = columns
        self.supplementary_rows = 0  # rows whose text was re-encoded with surrogates (after lengths())

    def lengths(self, workers: int = 1) -> npt.NDArray[np.int64]:
        """Body bytes of every row; raises :class:`RowError` naming the first row the C refuses.

        Also marks the text steps that hold non-BMP characters, which :meth:`place` then re-encodes.
        """
        n = self.n
        out = empty(n, np.int64)  # in Arrow's pool: 10 M rows' 80 MB are reused call after call, not fresh pages
        parts = max(1, min(workers, n // 65536))  # a thread only pays off for big tables
        bounds = [n * j // parts for j in range(parts + 1)]
        found = np.zeros((parts, len(self.steps)), dtype=np.int64)

        def run(j: int) -> tuple[int, int, int]:
            lo, hi = bounds[j], bounds[j + 1]
            return C.lengths(self.steps, n, lo, hi, out[lo:hi], found[j])

        if parts == 1:
            results = [run(0)]
        else:
            with ThreadPoolExecutor(parts, thread_name_prefix="pychro-encode") as pool:
                results = [f.result() for f in [submit(pool, run, j) for j in range(parts)]]
        bad = [r for r in results if r[0] >= 0]
        if bad:
            raise self._error(*min(bad))
        rows = found.sum(axis=0)
        self.steps = tuple(s._replace(supplementary=bool(rows[k])) for k, s in enumerate(self.steps))
        self.supplementary_rows = int(rows.sum())
        return out

    def place(
        self, rows: range | npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], buf: npt.NDArray[np.uint8],
        entries: npt.NDArray[np.uint64] | None = None, entry_base: int = 0,
    ) -> int:
        """Lays out the messages of ``rows`` back to back from ``buf[0]``; returns the bytes used.

        ``lengths`` are the body sizes :meth:`lengths` returned (indexed by row). ``rows`` may be a ``range``
        (step 1). ``entries``, when given (one uint64 per row), receives each message's index entry:
        ``entry_base`` plus the offset of its header in ``buf``."""
        if not isinstance(rows, range):
            rows = _int64(rows, "rows")
        return C.place(self.steps, self.n, rows, _int64(lengths, "lengths"), buf, entries, entry_base)

    def _error(self, row: int, step: int, status: int) -> RowError:
        name = self.names[step]
        if status == C.S_CHAR:
            value = self.columns[step][row].as_py()
            long = isinstance(value, str) and len(value) > 40
            shown = f"{value[:20]!r}... ({len(value)} characters)" if long else repr(value)
            return RowError(row, f"column {name!r} value {shown} is not one BMP character (a Java char)")
        if status == C.S_UTF_LONG:
            return RowError(row, f"column {name!r} text exceeds writeUTF's 65535 bytes")
        if status == C.S_UTF8:
            return RowError(row, f"column {name!r} text is not valid UTF-8")
        if status == C.S_NULL:
            return RowError(row, f"column {name!r} is null; this field type cannot hold nulls")
        return RowError(row, f"column {name!r} has Arrow offsets outside its data")


def _int64(values: Any, name: str) -> npt.NDArray[np.int64]:
    """``values`` as contiguous int64 (no copy when they are): integers (an empty list too), not floats, which a
    cast would truncate, nor bools; unsigned ones only below 2**63."""
    a = np.asarray(values)
    if a.size and (a.dtype.kind not in "iu" or (a.dtype == np.uint64 and int(a.max()) >= 1 << 63)):
        raise TypeError(f"{name} must be int64, not {a.dtype}" + (" above 2**63 - 1" if a.dtype.kind == "u" else ""))
    return np.ascontiguousarray(a, dtype=np.int64)


def raw_program(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]) -> Program:
    """Whole message bodies copied as they are: ``data[starts[i] : starts[i] + sizes[i]]`` (replication)."""
    pairs = np.empty((len(starts), 2), dtype=np.int64)
    pairs[:, 0] = starts
    np.add(starts, sizes, out=pairs[:, 1])
    return Program([Step(C.K_RAW, 0, data, pairs)], len(starts), ["body"], [None])
