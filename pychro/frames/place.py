"""Laying out encoded rows as the bytes of a run of messages: headers, bodies and padding, exactly as the
row writer leaves them in a data file (vanilla-format.md §4).

The bulk writer builds each run of consecutive messages in a private staging buffer (positions relative to
the run's first header, at 0) and then writes it to the data file in one ``pwrite``: numpy's scatters stay in
a cache-warm buffer instead of faulting in fresh pages of a shared mapping one by one.

Variable-length fields (strings, stop-bit numbers) are the expensive part. Rather than a masked
read-modify-write per field, :func:`write_records` stores one whole 8-byte word at each variable field's
start, holding the field's bytes and then whatever follows them in the source ("spill"), and relies on order
to make the result exact:

1. the words of all variable fields are stored in one scatter, in file order (a 1-D fancy assignment stores
   in index order), so a word's spill is overwritten by the next field's word;
2. then, exactly: the bytes of fields longer than a word; the padding (4 zero bytes at each body's end,
   which also cover the start of the next header); each row's head, i.e. its header and the fixed-width
   fields before the first variable one, as one block per row; and the other fixed-width fields.

A word spills at most 7 bytes, so past its row only into the padding, the next row's header and the next
row's first 3 body bytes, which belong to the head or to the first variable field of the next row.
Spill never reaches more than 7 bytes past the last record, so the staging buffer needs 8 bytes of slack.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .. import _layout as L
from . import encode as E

__all__ = ["Workspace", "write_records", "write_uniform"]


def write_uniform(buf: npt.NDArray[np.uint8], first_hdr: int, n: int, length: int, columns: list[E.Encoded]) -> None:
    """Fixed-width fields only: messages of one size sit at a constant stride, so each field is one strided
    copy (no index arrays), then the padding and the headers the same way."""
    stride = (L.HEADER_SIZE + length + 3) & ~3
    pos = _strided_fields(buf, first_hdr + L.HEADER_SIZE, stride, n, columns)
    pad = stride - L.HEADER_SIZE - length
    if pad:
        np.ndarray((n, pad), dtype=np.uint8, buffer=buf, offset=pos, strides=(stride, 1))[:] = 0
    headers = np.ndarray((n,), dtype="<i4", buffer=buf, offset=first_hdr, strides=(stride,))
    headers[:] = ~length


def _strided_fields(buf: npt.NDArray[np.uint8], pos: int, stride: int, n: int, columns: list[E.Encoded]) -> int:
    """Fixed-width fields one after the other from byte ``pos`` of ``n`` records ``stride`` bytes apart, each
    one strided copy. Returns the position after them."""
    for enc in columns:
        assert enc.fixed is not None
        size = enc.fixed.shape[1]
        if size in (1, 2, 4, 8):
            view = np.ndarray((n,), dtype=f"<u{size}", buffer=buf, offset=pos, strides=(stride,))
            view[:] = enc.fixed.view(f"<u{size}").reshape(n)
        else:
            np.ndarray((n, size), dtype=np.uint8, buffer=buf, offset=pos, strides=(stride, 1))[:] = enc.fixed
        pos += size
    return pos


SLACK = 8  # bytes a staging buffer needs after the last record (a word's spill)


class Workspace:
    """A staging buffer and scratch arrays, reused run after run by one thread at a time.

    Why: glibc gives each worker thread its own malloc arena and hands a freed big block of it back to the
    kernel, so fresh per-run temporaries of a worker thread page-fault again on every run (measured: the
    bulk writer's mixed schema ran 1.5x slower in worker threads than with one shared arena).
    """

    _idle: ClassVar[list[Workspace]] = []  # kept between calls, so that their pages are already faulted in
    _idle_lock: ClassVar[threading.Lock] = threading.Lock()
    KEEP = 4  # workspaces kept
    KEEP_BYTES = 32 << 20  # a bigger workspace (huge messages) is dropped after use

    def __init__(self) -> None:
        self.staging = np.empty(0, dtype=np.uint8)
        self._arrays: dict[str, npt.NDArray[np.uint8]] = {}

    @classmethod
    def borrow(cls) -> Workspace:
        """A kept workspace if there is one, else a new one; return it with :meth:`give_back`."""
        with cls._idle_lock:
            return cls._idle.pop() if cls._idle else cls()

    def give_back(self) -> None:
        size = len(self.staging) + sum(len(a) for a in self._arrays.values())
        with self._idle_lock:
            if size <= self.KEEP_BYTES and len(self._idle) < self.KEEP:
                self._idle.append(self)

    def staging_for(self, size: int) -> npt.NDArray[np.uint8]:
        """The staging buffer, at least ``size`` + :data:`SLACK` bytes long; its contents are undefined."""
        if len(self.staging) < size + SLACK:
            self.staging = np.empty(size + SLACK, dtype=np.uint8)
        return self.staging

    def array(self, name: str, shape: tuple[int, ...], dtype: Any) -> npt.NDArray[Any]:
        """An uninitialised array of ``shape`` under ``name``, valid until the next call for ``name``."""
        dtype = np.dtype(dtype)
        need = int(np.prod(shape)) * dtype.itemsize
        raw = self._arrays.get(name)
        if raw is None or len(raw) < need:
            raw = self._arrays[name] = np.empty(max(need, 64), dtype=np.uint8)
        return raw[:need].view(dtype).reshape(shape)


def write_records(
    buf: npt.NDArray[np.uint8], hdr: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], columns: list[E.Encoded],
    ws: Workspace | None = None,
) -> None:
    """Messages of any sizes: body ``lengths`` at header positions ``hdr`` (see the module notes).

    ``buf`` must hold :data:`SLACK` bytes after the last record; bytes there are left undefined. Temporaries
    come from ``ws`` when given.
    """
    ws = ws or Workspace()
    n = len(hdr)
    body = np.add(hdr, L.HEADER_SIZE, out=ws.array("body", (n,), np.int64))
    ends = np.add(body, lengths, out=ws.array("ends", (n,), np.int64))
    assert int(ends[-1]) + SLACK <= len(buf)
    _check_scatter_order()
    starts: list[Any] = []  # each field's offset in the body: an int while no variable field precedes it
    cursor: Any = 0
    for k, enc in enumerate(columns):
        starts.append(cursor)
        if enc.fixed is not None:
            cursor = cursor + enc.fixed.shape[1]
        else:
            cursor = np.add(cursor, enc.lengths, out=ws.array(f"start{k + 1}", (n,), np.int64))
    var = [k for k, enc in enumerate(columns) if enc.fixed is None]
    if var:
        words = ws.array("words", (n, len(var)), np.uint64)
        at = ws.array("at", (n, len(var)), np.int64)
        tails = []
        for j, k in enumerate(var):
            tail = E.head_words(columns[k], out=words[:, j])[1]
            np.add(body, starts[k], out=at[:, j])
            if tail is not None:
                tails.append((at[tail.rows, j] + 8, tail))
        window8 = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
        window8[at.reshape(-1)] = words.reshape(-1)  # row-major = file order: later words cover spill
        for dst, tail in tails:
            E._copy_runs(buf, dst, tail.src, tail.src_starts, tail.lengths)
        window4 = np.ndarray((len(buf) - 3,), dtype="<u4", buffer=buf, strides=(1,))
        window4[ends] = 0  # padding, and the start of the next header (stored next)
    head = var[0] if var else len(columns)  # columns [0, head) sit at fixed offsets after the header
    _write_heads(buf, hdr, lengths, columns[:head], ws)
    for k in range(head, len(columns)):
        if columns[k].fixed is not None:
            E.scatter(buf, np.add(body, starts[k], out=ws.array("at_fixed", (n,), np.int64)), columns[k])


_ORDER_CHECKED = False


def _check_scatter_order() -> None:
    """Fail loudly, not with wrong bytes, if this numpy stops storing a fancy assignment in index order
    (documented as unspecified; it has always been sequential for a 1-D integer index)."""
    global _ORDER_CHECKED
    if _ORDER_CHECKED:
        return
    buf = np.zeros(4096 + 7, dtype=np.uint8)
    window = np.ndarray((4096,), dtype="<u8", buffer=buf, strides=(1,))
    # word i holds byte value i & 0xFF eight times: in order, byte j ends up as j & 0xFF (word j wrote last)
    window[np.arange(4096)] = (np.arange(4096, dtype=np.uint64) & np.uint64(0xFF)) * np.uint64(0x0101010101010101)
    if not (buf[:4096] == (np.arange(4096) & 0xFF)).all():
        raise RuntimeError(
            f"numpy {np.__version__} does not store fancy assignments in index order; pychro's bulk writer "
            "relies on it (pychro/frames/place.py). Please report this; the row writer still works."
        )
    _ORDER_CHECKED = True


def _write_heads(
    buf: npt.NDArray[np.uint8], hdr: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], columns: list[E.Encoded],
    ws: Workspace,
) -> None:
    """Each row's header and leading fixed-width fields: packed into one block per row, stored with a
    single scatter of a ``V<width>`` window (an unaligned 21-byte store costs about one 8-byte one)."""
    n = len(hdr)
    width = L.HEADER_SIZE + sum(enc.fixed.shape[1] for enc in columns)  # type: ignore[union-attr]
    block = ws.array("heads", (n, width), np.uint8)
    np.invert(lengths, out=np.ndarray((n,), dtype="<i4", buffer=block, strides=(width,)), casting="unsafe")
    _strided_fields(block, L.HEADER_SIZE, width, n, columns)
    window = np.ndarray((len(buf) - width + 1,), dtype=f"V{width}", buffer=buf, strides=(1,))
    window[hdr] = block.view(f"V{width}").reshape(n)
