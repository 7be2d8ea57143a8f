"""One batch of index entries -> Arrow columns in index order, with the errors= policy applied.

:func:`decode_batch` hands the entries and the mapped data files they name to the compiled decoder
(:class:`~pychro.frames.decode.Run`), which walks the rows once in index order. What comes back as a code or a
per-row status becomes what the reader promises:

* a header that cannot be right (or a data file that cannot be opened) raises
  :class:`~pychro.errors.CorruptDataError` (or the open error) for its row, the first in index order; such
  damage in a batch wins over a mismatch in the same batch, whatever ``errors=`` says. A data file mapped short
  is mapped again once (it may have grown) before its row is called corrupt;
* rows that do not match the schema (or whose text is not Java text) are raised (the first one, with column
  and offset), dropped (``"skip"``) or end the read (``"truncate"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .. import _layout as L
from ..errors import CorruptDataError, SchemaMismatchError
from . import _decode as C
from .decode import Plan, Run, TypedRun, explain_mismatch
from .scan import CycleFiles

__all__ = ["BatchOut", "decode_batch", "run_batch"]

_HDR = L.HEADER_SIZE


class BatchOut(NamedTuple):
    """One decoded batch: Arrow columns of the kept rows in index order, and what happened."""

    columns: dict[str, Any]
    rows: npt.NDArray[np.int64] | None  # kept batch rows (None = all rows)
    n: int  # rows kept
    skipped: int
    first_bad: int | None  # batch row of the first row that did not match the schema
    stop: bool  # errors="truncate" met a bad row: nothing after this batch
    slow_rows: int
    replaced: int


def decode_batch(plan: Plan, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], errors: str,
                 seqs: npt.NDArray[np.int64] | None = None, release: bool = True) -> BatchOut:
    """Decode the messages of ``entries`` (index order, seqs ``seq0..``, or ``seqs`` when they are not
    consecutive) of one cycle. ``release=False`` keeps the pages read resident."""
    if seqs is not None:
        seq0 = 0  # errors name seqs[row]
    n = int(entries.size)
    run = Run(plan, n)
    # pages of journal files read here leave the resident set (a scan of a big journal stays small); never for
    # the remote reader's receive buffer, which is this process's memory
    run_batch(run, files, seq0, entries, errors != "skip", release, seqs)
    slow, replaced = int(run.counts[C.N_SLOW]), int(run.counts[C.N_REPLACED])
    if not run.bad:
        return BatchOut(run.arrays(n), None, n, 0, None, False, slow, replaced)
    first_bad = int(run.counts[C.N_FIRST_BAD])
    if errors == "raise":
        bits, mask = files.codec.data_bits, files.codec.offset_mask
        key = int(entries[first_bad]) >> bits
        _raise_mismatch(plan, files, key, int(entries[first_bad]) & mask, run, first_bad, _seq(seqs, seq0, first_bad))
    if errors == "truncate":
        return BatchOut(run.arrays(first_bad), np.arange(first_bad, dtype=np.int64), first_bad, 0, first_bad, True,
                        slow, replaced)
    good = run.status == C.ST_OK
    keep = pa.array(good)
    cols = {name: arr.filter(keep) for name, arr in run.arrays(n).items()}
    rows = np.flatnonzero(good).astype(np.int64)
    return BatchOut(cols, rows, int(rows.size), run.bad, first_bad, False, slow, replaced)


def run_batch(run: Run | TypedRun, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], stop: bool,
              release: bool, seqs: npt.NDArray[np.int64] | None = None) -> None:
    """Run the compiled decoder over every row of ``entries``, mapping data files as the rows name them: an
    open error, or a header that cannot be right, raises for its row (the first in index order). ``seqs``: as
    for :func:`decode_batch` (with ``seq0`` 0)."""
    codec = files.codec
    release = release and isinstance(files, CycleFiles)
    bits, mask = codec.data_bits, codec.offset_mask
    n = int(entries.size)
    key0 = int(entries[0]) >> bits if n else 0
    known: dict[int, Any] = {key0: files.data(key0).u1} if n else {}  # data file key -> buffer, as rows name them
    refreshed: set[int] = set()
    lo = 0
    while True:
        keys = np.fromiter(known, np.int64, len(known))
        code, row, detail = run.decode(entries, mask, bits, keys, tuple(known.values()), lo, stop, release)
        if code == C.C_DONE:
            return
        if code == C.C_TOO_BIG:
            raise ValueError(f"the text of column {run.column(detail)!r} in one batch passes 2 GiB (Arrow's string "
                             "offsets); read with a smaller batch_rows")
        key = int(entries[row]) >> bits
        if key not in known:  # the first row of another data file: map it (an open error is this row's damage)
            known[key] = files.data(key).u1
        elif key not in refreshed and files.data(key).size < files.config.data_block_size:
            refreshed.add(key)  # a short file may have grown since it was mapped
            known[key] = files.data(key, refresh=True).u1
        else:
            _raise_corrupt(files, key, int(entries[row]) & mask, detail, _seq(seqs, seq0, row))
        lo = row


def _seq(seqs: npt.NDArray[np.int64] | None, seq0: int, row: int) -> int:
    return seq0 + row if seqs is None else int(seqs[row])


def _raise_corrupt(files: CycleFiles, key: int, offset: int, why: int, seq: int) -> None:
    dm = files.data(key)
    if why == C.H_OUTSIDE:
        reason = f"index entry points outside the data file ({dm.size} bytes)"
    else:
        header = int(dm.u1[offset - _HDR : offset].view("<i4")[0])
        if why == C.H_ZERO:
            reason = "index entry points at an uncommitted (zero) header"
        elif why == C.H_HUGE:
            reason = f"bad header {header & 0xFFFFFFFF:#010x}: ~length must be below 2**30"
        else:
            reason = (f"message of {~header} bytes runs past the end of the data file ({dm.size} bytes)"
                      + files.journal.block_size_hint("data"))
    raise CorruptDataError(reason, path=files.key_path(key), cycle=files.cycle, seq=seq,
                           index=files.config.index_of(files.cycle, seq), offset=offset)


def _raise_mismatch(plan: Plan, files: CycleFiles, key: int, pos: int, run: Run, row: int, seq: int) -> None:
    dm = files.data(key)
    length = ~int(dm.u1[pos - _HDR : pos].view("<i4")[0])
    where = dict(path=files.key_path(key), cycle=files.cycle, seq=seq, index=files.config.index_of(files.cycle, seq),
                 offset=pos)
    if run.status[row] == C.ST_TEXT:
        column = plan.step_names[int(run.counts[C.N_TEXT_STEP])]
        raise SchemaMismatchError(
            f"message does not match the schema: field {column!r} holds bytes that are not Java text; "
            "use errors='skip' or 'truncate' to read past it", column=column, **where,
        )
    col, detail = explain_mismatch(plan, dm.u1, pos, length)
    raise SchemaMismatchError(
        f"message does not match the schema: {detail}; use errors='skip' or 'truncate' to read past it",
        column=col, length=length, **where,
    )

