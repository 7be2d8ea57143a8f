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

from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .. import _layout as L
from ..errors import CorruptDataError, SchemaMismatchError
from . import _decode as C
from .decode import Plan, Run, TypedRun, explain_mismatch
from .scan import CycleFiles

__all__ = ["BatchOut", "TextTooBig", "decode_batch", "in_halves", "run_batch"]

_HDR = L.HEADER_SIZE
SAMPLE_ROWS = 2_048  # rows a plan's first batch decodes first to size its text buffers (batches of 8x that or more)


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


class TextTooBig(ValueError):
    """The text (or list entries) of one column in one batch pass Arrow's 32-bit offsets."""


class _Stops(Protocol):
    @property
    def stop(self) -> bool: ...


Out = TypeVar("Out", bound=_Stops)


def in_halves(decode: Callable[[int, npt.NDArray[np.uint64]], Out], seq0: int, entries: npt.NDArray[np.uint64],
              ) -> list[tuple[Out, int]]:
    """``[(decode(seq0, entries), seq0)]``; where a column's text passes 2 GiB (Arrow's offsets, as it can in big
    batches of long texts: the batch size is pychro's, not the user's mistake), the halves', in turn (the second
    not after a stop: ``.stop`` of a result)."""
    try:
        return [(decode(seq0, entries), seq0)]
    except TextTooBig:
        if entries.size < 2:
            raise
    half = entries.size // 2
    first = in_halves(decode, seq0, entries[:half])
    return first if first[-1][0].stop else first + in_halves(decode, seq0 + half, entries[half:])


def decode_batch(plan: Plan, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], errors: str,
                 seqs: npt.NDArray[np.int64] | None = None, release: bool = True, stable: bool = False) -> BatchOut:
    """Decode the messages of ``entries`` (index order, seqs ``seq0..``, or ``seqs`` when they are not
    consecutive) of one cycle. ``release=False`` keeps the pages read resident. ``stable``: ``entries`` is this
    read's own copy (else it may be a view of an index file, which another process could write)."""
    if seqs is not None:
        seq0 = 0  # errors name seqs[row]
    n = int(entries.size)
    if plan.text_guessed and n >= 8 * SAMPLE_ROWS:
        _learn_text(plan, files, seq0, entries, errors, seqs)
    run = Run(plan, n)
    # pages of journal files read here leave the resident set (a scan of a big journal stays small); never for
    # the remote reader's receive buffer, which is this process's memory
    run_batch(run, files, seq0, entries, errors != "skip", release, seqs)
    slow, replaced = int(run.counts[C.N_SLOW]), int(run.counts[C.N_REPLACED])
    if not run.bad:
        return BatchOut(run.arrays(n), None, n, 0, None, False, slow, replaced)
    first_bad = int(run.counts[C.N_FIRST_BAD])
    if errors == "raise" and not stable:  # the error names what a copy of the entries holds, decoded again
        return decode_batch(plan, files, seq0, np.array(entries), errors, seqs, release, stable=True)
    if errors == "raise":
        bits, mask = files.codec.data_bits, files.codec.offset_mask
        entry = int(entries[first_bad])
        _raise_mismatch(plan, files, entry >> bits, entry & mask, run, first_bad, _seq(seqs, seq0, first_bad))
    if errors == "truncate":
        return BatchOut(run.arrays(first_bad), np.arange(first_bad, dtype=np.int64), first_bad, 0, first_bad, True,
                        slow, replaced)
    good = run.status == C.ST_OK
    keep = pa.array(good)
    cols = {name: arr.filter(keep) for name, arr in run.arrays(n).items()}
    rows = np.flatnonzero(good).astype(np.int64)
    return BatchOut(cols, rows, int(rows.size), run.bad, first_bad, False, slow, replaced)


def _learn_text(plan: Plan, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], errors: str,
                seqs: npt.NDArray[np.int64] | None) -> None:
    """The plan's text bytes per row learnt from the first SAMPLE_ROWS rows, decoded once more after: a first
    guess too big for the batch's text buffers was given back with a copy of the text, one too small grown with
    one (a read of 1 M rows with two short strings in two batches: 0.3-0.6 ms per batch, in each thread)."""
    sample = Run(plan, SAMPLE_ROWS)
    run_batch(sample, files, seq0, entries[:SAMPLE_ROWS], errors != "skip", False,
              None if seqs is None else seqs[:SAMPLE_ROWS])
    sample.learn(SAMPLE_ROWS, lower=True)


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
            raise TextTooBig(f"the text of column {run.column(detail)!r} in one batch passes 2 GiB (Arrow's string "
                             "offsets); read with a smaller batch_rows")
        entry = int(entries[row])  # (read once: entries may be a view of an index file that another process writes)
        key = entry >> bits
        if key not in known:  # the first row of another data file: map it (an open error is this row's damage)
            known[key] = files.data(key).u1
        elif key not in refreshed and files.data(key).size < files.config.data_block_size:
            refreshed.add(key)  # a short file may have grown since it was mapped
            known[key] = files.data(key, refresh=True).u1
        else:
            _raise_corrupt(files, key, entry & mask, detail, _seq(seqs, seq0, row))
        lo = row


def _seq(seqs: npt.NDArray[np.int64] | None, seq0: int, row: int) -> int:
    return seq0 + row if seqs is None else int(seqs[row])


def _header(dm: Any, offset: int) -> int | None:
    """The header before the body at ``offset``, None where there is none (an entry that another process changed
    after the decoder read it: the index may be a view of the file)."""
    if not _HDR <= offset <= dm.size:
        return None
    return int(dm.u1[offset - _HDR : offset].view("<i4")[0])


def _raise_corrupt(files: CycleFiles, key: int, offset: int, why: int, seq: int) -> NoReturn:
    dm = files.data(key)
    header = None if why == C.H_OUTSIDE else _header(dm, offset)
    if header is None and offset < _HDR:  # (a body starts after its 4-byte header; the row reader says the same)
        reason = "index entry points before the first header"
    elif header is None:
        reason = f"index entry points outside the data file ({dm.size} bytes)"
    else:
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
    header = _header(dm, pos)
    if header is None:
        _raise_corrupt(files, key, pos, C.H_OUTSIDE, seq)
    length = ~header
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

