"""iter_remote_batches: a remote stream (vanilla-format.md §9) decoded into Arrow record batches, per batch.

The frames in a receive buffer are located and decoded without a per-message Python loop:

1. **locate** - from a data frame at ``pos`` with index ``i0``, frame ``k`` carries index ``i0 + k``. When all
   bodies have one size (fixed schemas) the frames sit at ``pos + k * (12 + size)``, checked with two strided
   views. Otherwise every byte position whose following 8 bytes equal some ``i0 + k`` is a candidate header;
   the candidates whose index runs ``0, 1, 2...`` and whose positions chain
   (``p[k+1] == p[k] + 12 + size[k]``) are the frames. Only that verified prefix is taken: a heartbeat, a new
   cycle or a body that happens to hold such bytes just ends the batch early, never produces a wrong frame.
2. **decode** - each located frame gets a Vanilla header written in place over the 4 bytes before its body (the
   high word of its index, already read), so the buffer looks like a data file to
   :func:`pychro.frames.batch.decode_batch`, which decodes it with the schema machinery of ``pychro.frames``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import _layout as L
from .._optional import require
from ..config import VanillaConfig
from ..errors import NoData
from ..frames import schema as S
from ..frames.api import ReadStats, _metadata_names, _note
from ..frames.batch import decode_batch
from ..frames.decode import Plan
from ..frames.scan import DataMap
from .client import RemoteChronicleReader, Where
from .wire import FRAME_HEADER_SIZE

pa = require("pyarrow", purpose="pychro.remote.iter_remote_batches")

__all__ = ["iter_remote_batches", "locate_frames"]

_HDR = FRAME_HEADER_SIZE
_ERRORS = ("raise", "skip", "truncate")
_MIN_EQUAL_RUN = 64  # an equal-size run shorter than this tries the general locator (maybe more frames)


def locate_frames(buf: Any, pos: int, end: int, max_rows: int, last_index: int = (1 << 63) - 1) -> tuple[Any, Any, int]:
    """Whole data frames from ``pos`` (where a complete data frame starts) in ``buf[pos:end]``.

    Returns ``(starts, sizes, first_index)``: frame start offsets relative to ``pos`` (int64), body sizes
    (int64) and the index of the first frame; frame ``k`` has index ``first_index + k``. At least one frame.
    """
    region = np.frombuffer(buf, dtype=np.uint8, count=end - pos, offset=pos)
    n = region.size
    size0 = int(region[:4].view("<i4")[0])
    i0 = int(region[4:12].view("<i8")[0])
    step = _HDR + size0
    # frames that can follow: none above ``last_index`` (the reader checks the next one: a hostile source may send
    # an index no journal can hold, up to 2**63 - 1)
    room = last_index - i0 + 1
    m = min(n // step, max_rows, room)
    # 1. one body size for all: frames at fixed steps (two strided views, no copy)
    sizes = np.ndarray((m,), dtype="<i4", buffer=region, offset=0, strides=(step,))
    indexes = np.ndarray((m,), dtype="<i8", buffer=region, offset=4, strides=(step,))
    good = (sizes == size0) & (indexes == np.arange(m, dtype=np.int64) + np.int64(i0))
    k = m if bool(good.all()) else int(good.argmin())
    if k >= _MIN_EQUAL_RUN or k == m:
        starts = np.arange(0, k * step, step, dtype=np.int64)
        return starts, np.full(k, size0, dtype=np.int64), i0
    # 2. general case: candidates by the low word of their index, then the chained prefix
    if n < _HDR + 4:
        return np.zeros(1, np.int64), np.array([size0], np.int64), i0
    # The whole 8-byte index is compared: its high word (the cycle) is what bodies rarely contain.
    longs = np.ndarray((n - _HDR + 1,), dtype="<i8", buffer=region, offset=4, strides=(1,))
    k_max = min(max_rows, n // _HDR, room)
    rel = (longs - np.int64(i0)).view(np.uint64)  # k for a header of index i0 + k; below i0 wraps huge
    cand = np.flatnonzero(rel < np.uint64(k_max))
    ks = rel[cand]
    run = ks == np.arange(ks.size, dtype=np.uint64)
    c = ks.size if bool(run.all()) else int(run.argmin())
    cand = cand[:c].astype(np.int64)
    words = np.ndarray((n - 3,), dtype="<i4", buffer=region, offset=0, strides=(1,))
    sz = words[cand].astype(np.int64)
    ends = cand + _HDR + sz
    ok = (sz >= 0) & (ends <= n)
    ok[:-1] &= cand[1:] == ends[:-1]
    k = c if bool(ok.all()) else int(ok.argmin())
    k = max(k, 1)  # the first frame was checked whole by the reader
    return cand[:k], sz[:k], i0


class _BufferMap(DataMap):
    """A receive buffer seen as a data file by the decoder (no mapping: the array owns the buffer)."""

    __slots__ = ()

    def __init__(self, u1: Any, label: str) -> None:
        self.path = label
        self.size = int(u1.size)
        self.u1 = u1


class _BufferFiles:
    """What :func:`decode_batch` asks of a cycle's files, for one located batch of frames."""

    def __init__(self, dm: _BufferMap, codec: L.EntryCodec, config: VanillaConfig, cycle: int) -> None:
        self.dm = dm
        self.codec = codec
        self.config = config
        self.cycle = cycle

    def data(self, key: int, *, refresh: bool = False) -> _BufferMap:
        return self.dm

    def key_path(self, key: int) -> str:
        return self.dm.path


def iter_remote_batches(
    host: str,
    port: int,
    schema: S.SchemaLike,
    where: Where = "start",
    columns: Sequence[str] | None = None,
    errors: str = "raise",
    *,
    batch_rows: int = 65_536,
    index: bool = False,
    metadata: Iterable[str] | str | None = None,
    follow: bool = False,
    timeout: float = 1.0,
    config: VanillaConfig | None = None,
    stats: ReadStats | None = None,
    **reader_options: Any,
) -> Iterator[Any]:
    """Subscribe to a Chronicle 3.x source and yield its messages as ``pyarrow.RecordBatch`` es.

    Each batch holds at most ``batch_rows`` consecutive messages of one cycle (fewer when that is what has
    arrived). Without ``follow`` the iterator ends once nothing arrives for ``timeout`` seconds; with it, it
    waits for more forever (close the generator to stop). ``schema``, ``columns``, ``errors``, ``index`` and
    ``metadata`` mean what they mean for :func:`pychro.read_table`; other keyword arguments go to
    :class:`RemoteChronicleReader` (``reconnect``, ``connect_timeout``...).

    Examples
    --------
    >>> for batch in iter_remote_batches("127.0.0.1", port, "px:float64,qty:int32"):   # doctest: +SKIP
    ...     total += pc.sum(batch["qty"]).as_py()
    """
    if errors not in _ERRORS:
        raise ValueError(f"errors= must be one of {_ERRORS}, got {errors!r}")
    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    from ..frames.types import MessageTypes

    unknown = reader_options.pop("unknown", "raise")
    if isinstance(schema, MessageTypes):
        return _iter_remote_types(host, port, schema, where, columns, errors, unknown, batch_rows, index, metadata,
                                  follow, timeout, config, stats, reader_options)
    if unknown != "raise":
        raise ValueError("unknown= is for message types (a pychro.MessageTypes), not a single schema")
    return _iter_remote(host, port, schema, where, columns, errors, batch_rows, index, metadata, follow, timeout,
                        config, stats, reader_options)


def _regions(reader: Any, batch_rows: int, cfg: VanillaConfig, label: str) -> Iterator[tuple[Any, int, int, int]]:
    """Each located run of frames as ``(files, seq0, entries, i0)``, the frames' bytes turned into a data file
    in place (a Vanilla header where each frame's index word was); consumed once the caller comes back."""
    while True:
        try:
            buf, pos, end = reader._next_region()
        except NoData:
            return
        starts, sizes, i0 = locate_frames(buf, pos, end, batch_rows, cfg.max_index)
        k = int(starts.size)
        last_end = int(starts[-1] + _HDR + sizes[-1])
        region = np.frombuffer(buf, dtype=np.uint8, count=last_end, offset=pos)
        # A Vanilla header (~length) in place of the index's high word, right before each body.
        if k > 1 and int(starts[1] - starts[0]) * (k - 1) == int(starts[-1]) and bool((sizes == sizes[0]).all()):
            step = int(starts[1])
            headers = np.ndarray((k,), dtype="<i4", buffer=region, offset=8, strides=(step,))
            headers[:] = ~int(sizes[0])
        else:
            words = np.ndarray((last_end - 3,), dtype="<i4", buffer=region, offset=0, strides=(1,))
            words[starts + 8] = ~sizes
        block = 1 << max(8, (last_end + 8).bit_length())
        codec = L.EntryCodec(1, block)
        cycle, seq0 = cfg.split_index(i0)
        files = _BufferFiles(_BufferMap(region, label), codec, cfg, cycle)
        entries = (starts + _HDR).astype(np.uint64)  # body offsets; tid and file number 0
        yield files, seq0, entries, i0
        reader._consumed(pos + last_end, i0 + k - 1)


def _iter_remote_types(
    host: str, port: int, types: Any, where: Where, columns: Any, errors: str, unknown: str, batch_rows: int,
    index: bool, metadata: Iterable[str] | str | None, follow: bool, timeout: float, config: VanillaConfig | None,
    stats: ReadStats | None, reader_options: dict[str, Any],
) -> Iterator[Any]:
    """iter_remote_batches with message types: ``(type name, RecordBatch)`` pairs."""
    from types import SimpleNamespace

    from ..frames.typed import _decode, columns_by_type, type_plans, typed_batches_of

    if unknown not in ("raise", "skip"):
        raise ValueError(f"unknown= must be one of ('raise', 'skip'), got {unknown!r}")
    meta = _metadata_names(index, metadata)
    kinds, tags = type_plans(types, columns_by_type(types, columns), meta, None)
    header = Plan(types.header, [types.tag], rest=True)
    stats = stats if stats is not None else ReadStats()
    reader = _open(host, port, where, follow, timeout, config, reader_options)
    cfg = reader.config
    # what the typed decoder asks of a read (pages are this process's receive buffer: never released)
    tr = SimpleNamespace(r=SimpleNamespace(decode_plan=header, errors=errors, meta=meta, config=cfg, time=None,
                                           release_now=lambda files, entries: False),
                         types=types, kinds=kinds, unknown=unknown, tags=tags)

    def pairs() -> Iterator[Any]:
        try:
            for files, seq0, entries, _ in _regions(reader, batch_rows, cfg, f"<remote {host}:{port}>"):
                out = _decode(tr, files, seq0, entries, stable=True)  # type: ignore[arg-type]
                yield from typed_batches_of(tr, out, files.cycle, seq0, stats, None)
                if out.stop:
                    return
        finally:
            reader.close()

    return pairs()


def _open(host: str, port: int, where: Where, follow: bool, timeout: float, config: VanillaConfig | None,
          reader_options: dict[str, Any]) -> RemoteChronicleReader:
    """The subscription, with big receive buffers (bigger batches)."""
    reader = RemoteChronicleReader(
        host, port, where, polling_interval=0.0 if follow else None, timeout=timeout, config=config,
        **reader_options,
    )
    reader.recv_size = 4 << 20
    return reader


def _iter_remote(
    host: str, port: int, schema: Any, where: Where, columns: Sequence[str] | None, errors: str, batch_rows: int,
    index: bool, metadata: Iterable[str] | str | None, follow: bool, timeout: float, config: VanillaConfig | None,
    stats: ReadStats | None, reader_options: dict[str, Any],
) -> Iterator[Any]:
    schema = schema if isinstance(schema, S.Schema) else S.Schema(schema)
    plan = Plan(schema, columns)
    meta = _metadata_names(index, metadata)
    clash = [m for m in meta if m in plan.columns]
    if clash:
        raise ValueError(f"metadata columns {clash} clash with schema fields of the same name")
    arrow = schema.to_arrow()
    fields = [pa.field(m, pa.int64(), nullable=False) for m in meta]
    fields += [arrow.field(name) for name in plan.columns]
    arrow_schema = pa.schema(fields, metadata=arrow.metadata)
    stats = stats if stats is not None else ReadStats()
    reader = _open(host, port, where, follow, timeout, config, reader_options)
    cfg = reader.config
    label = f"<remote {host}:{port}>"
    try:
        for files, seq0, entries, i0 in _regions(reader, batch_rows, cfg, label):
            cycle = files.cycle
            # _BufferFiles has what decode_batch uses of CycleFiles (codec, config, cycle, data, key_path)
            out = decode_batch(plan, files, seq0, entries, errors, stable=True)  # type: ignore[arg-type]
            _note(stats, cfg, out, cycle, seq0, None)
            stats.rows += out.n
            if out.n:
                yield _record_batch(out, meta, plan, arrow_schema, i0, cycle, seq0, cfg)
            if out.stop:
                return
    finally:
        reader.close()


def _record_batch(out: Any, meta: list[str], plan: Plan, arrow_schema: Any, i0: int, cycle: int, seq0: int,
                  cfg: VanillaConfig) -> Any:
    arrays = []
    if meta:
        rows = np.arange(out.n, dtype=np.int64) if out.rows is None else out.rows
        for m in meta:
            if m == "_index":
                values = rows + i0
            elif m == "_cycle":
                values = np.full(out.n, cycle, dtype=np.int64)
            else:
                values = rows + seq0
            arrays.append(pa.array(values, pa.int64()))
    arrays += [out.columns[name] for name in plan.columns]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)
