"""One batch of index entries -> Arrow columns in index order, with the errors= policy applied.

:func:`decode_batch` splits a batch by data file (:func:`~pychro.frames.scan.split_groups`), walks every
file's rows (:class:`~pychro.frames.decode.Walk`), raises :class:`~pychro.errors.CorruptDataError` for the
damaged row that comes first in index order, applies ``errors=`` to the rows that do not match the schema,
gathers the kept rows and puts them back in index order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..errors import CorruptDataError, PychroError, SchemaMismatchError
from . import schema as S
from .decode import _HDR, I64, Plan, Step, Strided, Walk, _Corrupt
from .scan import CycleFiles, empty, split_groups
from .text import build_chars

__all__ = ["BatchOut", "decode_batch"]


# -- a batch --------------------------------------------------------------------------------------------------
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


def decode_batch(plan: Plan, files: CycleFiles, seq0: int, entries: npt.NDArray[np.uint64], errors: str) -> BatchOut:
    """Decode the messages of ``entries`` (index order, seqs ``seq0..``) of one cycle."""
    codec = files.codec
    groups = split_groups(entries, codec.data_bits)
    mask = np.uint64(codec.offset_mask)
    walks: list[Walk] = []
    failed: _Failed | None = None
    for key, (a, b) in zip(groups.keys, groups.bounds):
        part = groups.sorted_entries[a:b]
        h: npt.NDArray[np.int64] | Strided
        if groups.step is not None and groups.step > 0:
            h = Strided((int(part[0]) & codec.offset_mask) - _HDR, groups.step, b - a)
        else:
            pos = np.bitwise_and(part, mask, out=empty(b - a, np.uint64)).view(I64)
            pos -= _HDR
            h = pos
        try:
            walk = _walk(plan, files, key, h, groups, a)
        except PychroError as exc:
            # the data file cannot be opened (missing, not a file): it fails at its first row in index order,
            # so the error reported is the first damage in index order whatever the batch size
            first = a if groups.order is None else int(groups.order[a:b].min())
            walk = _Failed(first, key, str(exc), -1, exc)
        if isinstance(walk, _Failed):
            failed = walk if failed is None or walk.row < failed.row else failed
        else:
            walks.append(walk)
    if failed is not None:  # the damaged row that comes first in index order, over all data files
        _raise_corrupt(files, failed, seq0)
    n = entries.size
    bad_rows = _bad_rows(walks, groups)
    first_bad = int(bad_rows[0]) if bad_rows.size else None
    keep_rows: npt.NDArray[np.int64] | None = None
    stop = False
    if first_bad is not None:
        if errors == "raise":
            _raise_mismatch(plan, files, walks, groups, first_bad, seq0)
        if errors == "truncate":
            keep_rows = np.arange(first_bad, dtype=I64)
            stop = True
        else:
            good = np.ones(n, np.bool_)
            good[bad_rows] = False
            keep_rows = np.flatnonzero(good)
    cols, slow, replaced, text_bad, text_column = _assemble(plan, walks, groups, keep_rows, n)
    skipped = 0 if errors == "truncate" else int(bad_rows.size)
    if text_bad is not None:  # bytes that are not Java text: more rows that do not match the schema
        rows_now = keep_rows if keep_rows is not None else np.arange(n, dtype=I64)
        first_text = int(rows_now[text_bad][0])
        if errors == "raise":
            _raise_text(files, walks, groups, first_text, seq0, text_column)
        first_bad = first_text if first_bad is None else min(first_bad, first_text)
        if errors == "truncate":
            cut = int(np.flatnonzero(text_bad)[0])
            cols = {k: v.slice(0, cut) for k, v in cols.items()}
            keep_rows = rows_now[:cut]
            stop = True
        else:
            keep = ~text_bad
            sel = pa.array(keep)
            cols = {k: v.filter(sel) for k, v in cols.items()}
            keep_rows = rows_now[keep]
            skipped += int(np.count_nonzero(text_bad))
    kept = n if keep_rows is None else int(keep_rows.size)
    return BatchOut(cols, keep_rows, kept, skipped, first_bad, stop, slow, replaced)


class _Failed(NamedTuple):
    """A data file's rows whose headers failed: the first such row in index order, and why."""

    row: int  # batch row (index order)
    key: int
    reason: str
    offset: int
    error: PychroError | None = None  # raised as it is (a data file that cannot be opened)


def _walk(plan: Plan, files: CycleFiles, key: int, h: Any, groups: Any, a: int) -> Walk | _Failed:
    dm = files.data(key)
    try:
        return Walk(plan, dm, h)
    except _Corrupt as exc:
        error = exc
    if dm.size < files.config.data_block_size:
        dm = files.data(key, refresh=True)  # a short file may have grown since it was mapped
        try:
            return Walk(plan, dm, h)
        except _Corrupt as exc:
            error = exc
    rows = np.flatnonzero(error.mask)
    batch_rows = rows + a if groups.order is None else groups.order[a + rows]
    first = int(np.argmin(batch_rows))
    local = int(rows[first])
    harr = h.array() if isinstance(h, Strided) else h
    reason = dict(error.reasons).get(local) or error.reasons[0][1]
    return _Failed(int(batch_rows[first]), key, reason, int(harr[local]) + _HDR)


def _raise_corrupt(files: CycleFiles, failed: _Failed, seq0: int) -> None:
    if failed.error is not None:
        raise failed.error
    seq = seq0 + failed.row
    raise CorruptDataError(
        failed.reason, path=files.key_path(failed.key), cycle=files.cycle, seq=seq,
        index=files.config.index_of(files.cycle, seq), offset=failed.offset,
    )


def _bad_rows(walks: list[Walk], groups: Any) -> npt.NDArray[np.int64]:
    """Batch rows (index order, ascending) that do not match the schema."""
    found = []
    for w, (a, _) in zip(walks, groups.bounds):
        if w.bad is not None:
            local = np.flatnonzero(w.bad)
            found.append(local + a if groups.order is None else groups.order[a + local])
    if not found:
        return np.zeros(0, I64)
    return np.sort(np.concatenate(found)).astype(I64)


def _locate(walks: list[Walk], groups: Any, row: int) -> tuple[int, int]:
    """Batch row -> (group number, group-local row)."""
    pos = row if groups.order is None else int(np.flatnonzero(groups.order == row)[0])
    for g, (a, b) in enumerate(groups.bounds):
        if a <= pos < b:
            return g, pos - a
    raise AssertionError("row outside every group")


def _raise_mismatch(plan: Plan, files: CycleFiles, walks: list[Walk], groups: Any, row: int, seq0: int) -> None:
    g, local = _locate(walks, groups, row)
    w = walks[g]
    harr = w.h.array() if isinstance(w.h, Strided) else w.h
    pos = int(harr[local]) + _HDR
    length = int(w.rend[local]) - pos if w.rend is not None else int(~w.dm.window("<i4", 0)[pos - _HDR])
    column = None
    detail = ""
    for name, wrong in w.why.items():
        if wrong[local]:
            column, detail = name, f"field {name!r} holds no valid {plan.steps[name].type.name} value"
            break
    if column is None:
        # the first variable field whose bytes run past the body, else the schema's total length
        for name, (_, end, _, _) in w.var.items():
            if int(end[local]) > pos + length:
                column, detail = name, f"field {name!r} runs past the end of the {length}-byte message"
                break
    if column is None:
        decoded = plan.fixed_size
        if decoded is None:
            last = plan.segments[-1]
            ends = [v for v in w.var.values()]
            decoded = int(ends[-1][1][local]) + last.size - pos if ends else last.size
        detail = f"the schema decodes {decoded} bytes but the header says {length}"
    seq = seq0 + row
    raise SchemaMismatchError(
        f"message does not match the schema: {detail}; use errors='skip' or 'truncate' to read past it",
        path=files.key_path(groups.keys[g]), cycle=files.cycle, seq=seq,
        index=files.config.index_of(files.cycle, seq), offset=pos, column=column, length=length,
    )


def _raise_text(files: CycleFiles, walks: list[Walk], groups: Any, row: int, seq0: int, column: str | None) -> None:
    g, local = _locate(walks, groups, row)
    w = walks[g]
    harr = w.h.array() if isinstance(w.h, Strided) else w.h
    seq = seq0 + row
    raise SchemaMismatchError(
        f"message does not match the schema: field {column!r} holds bytes that are not Java text; "
        "use errors='skip' or 'truncate' to read past it",
        path=files.key_path(groups.keys[g]), cycle=files.cycle, seq=seq,
        index=files.config.index_of(files.cycle, seq), offset=int(harr[local]) + _HDR, column=column,
    )


# -- numpy -> Arrow ---------------------------------------------------------------------------------------------
def _to_arrow(step: Step, raw: Any, arrow: Any) -> tuple[Any, int]:
    """A gathered raw column as an Arrow array (zero-copy for numbers), and the count of replaced chars."""
    t = step.type
    if t.kind in (S.STRING, S.UTF):
        return raw.array, 0
    n = raw.size
    if t.name == "bool":
        bits = np.packbits(np.not_equal(raw, 0, out=empty(n, np.bool_)), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)]), 0
    if t.name == "char":
        return build_chars(raw)
    data = np.ascontiguousarray(raw)
    return pa.Array.from_buffers(arrow, n, [None, pa.py_buffer(data)]), 0


def _assemble(
    plan: Plan, walks: list[Walk], groups: Any, keep_rows: npt.NDArray[np.int64] | None, n: int
) -> tuple[dict[str, Any], int, int, npt.NDArray[np.bool_] | None, str | None]:
    """Gather every data file's kept rows and put them back in index order."""
    slow = replaced = 0
    per_group: list[dict[str, Any]] = []
    text_bad_parts: list[npt.NDArray[np.bool_]] = []
    any_text_bad = False
    text_column: str | None = None
    keep_sorted: list[npt.NDArray[np.int64] | None] = []
    if keep_rows is not None:
        keep_mask = np.zeros(n, np.bool_)
        keep_mask[keep_rows] = True
        sorted_keep = keep_mask if groups.order is None else keep_mask[groups.order]
    for w, (a, b) in zip(walks, groups.bounds):
        local_keep = None
        if keep_rows is not None:
            local_keep = np.flatnonzero(sorted_keep[a:b])
        keep_sorted.append(local_keep)
        raw, texts = w.gather(plan, local_keep)
        cols: dict[str, Any] = {}
        m = w.n if local_keep is None else local_keep.size
        tb = np.zeros(m, np.bool_)
        for name, text in texts:
            slow += text.slow_rows
            replaced += text.replaced
            if text.bad is not None:
                tb |= text.bad
                any_text_bad = True
                text_column = text_column or name
        for name in plan.columns:
            arr, rep = _to_arrow(plan.steps[name], raw[name], plan.arrow_types[name])
            replaced += rep
            cols[name] = arr
        per_group.append(cols)
        text_bad_parts.append(tb)
    if groups.order is None:  # one data file, already in index order
        out = per_group[0]
        text_bad = text_bad_parts[0] if any_text_bad else None
        return out, slow, replaced, text_bad, text_column
    # several data files: concatenate in sorted order, then take back into index order
    sorted_rows = []
    for (a, b), local_keep in zip(groups.bounds, keep_sorted):
        idx = np.arange(a, b, dtype=I64) if local_keep is None else local_keep + a
        sorted_rows.append(groups.order[idx])
    batch_rows = np.concatenate(sorted_rows)  # index-order row of each concatenated row
    back = np.argsort(batch_rows, kind="stable")
    take = pa.array(back)
    out = {name: pa.concat_arrays([c[name] for c in per_group]).take(take) for name in plan.columns}
    text_bad = np.concatenate(text_bad_parts)[back] if any_text_bad else None
    return out, slow, replaced, text_bad, text_column
