"""read_table / read_frame / iter_batches: a journal as Arrow record batches (vanilla-format.md §2-§6).

The work is split into batches of at most ``batch_rows`` messages of one cycle and one index file; each is
decoded by :func:`pychro.frames.batch.decode_batch` (the compiled decoder releases the GIL, so a small
thread pool decodes batches side by side) and the results are used strictly in index order, so errors,
``errors="truncate"`` and the statistics behave exactly as a serial read would.

Only committed messages are read: the count of a cycle (first zero slot) is taken once when the cycle is
reached and nothing past it is looked at, so a result never changes when writers append later.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from .. import _layout as L
from .._optional import require
from ..config import VanillaConfig
from ..errors import PychroError, PychroWarning
from ..journal import Journal
from . import schema as S
from .args import check_rows, check_threads
from .batch import BatchOut, decode_batch, in_halves
from .decode import Plan
from .scan import CycleFiles, close_later, select_cycles
from .timerange import TimeFilter, as_date, narrow, parse_when, time_filter

pa = require("pyarrow", purpose="pychro.frames")

__all__ = ["ReadStats", "iter_batches", "read_frame", "read_table"]

Errors = Literal["raise", "skip", "truncate"]
DtypeBackend = Literal["pyarrow", "numpy_nullable", "numpy"]

METADATA_COLUMNS = {"index": "_index", "cycle": "_cycle", "seq": "_seq"}
T = TypeVar("T")
DEFAULT_BATCH_ROWS = 65_536  # iter_batches: rows per RecordBatch
TABLE_BATCH_ROWS = 131_072  # exports and read_tables: rows per batch (1 M rows: 0.9-0.95x the time of 64 Ki)
# read_table: rows per batch. Each batch costs ~0.2 ms besides its decode (its index slots copied and checked,
# buffers, a thread's turn): 1 M rows in 2 batches of 500 k read in 0.85-0.97x the time of 8 of 125 k (measured on
# every bench_shapes shape); the table holds every batch anyway, so bigger batches cost no memory
READ_TABLE_BATCH_ROWS = 524_288
EVEN_MIN_ROWS = 16_384  # smaller batches are decoded by the caller; read_table's even batches are not smaller
_ERRORS = ("raise", "skip", "truncate")
# follow=True: how long a cycle that was left stays watched for messages committed late into it (§6), and how
# long an empty index slot below filled ones is waited for before it is called damage
LATE_COMMIT_GRACE_S = L.LATE_COMMIT_GRACE_S
LIVE_HOLE_WAIT_S = 2.0


@dataclass
class ReadStats:
    """What a read did; pass one as ``stats=`` and read it afterwards.

    Attributes
    ----------
    rows : int
        Rows returned.
    batches : int
        Batches decoded.
    cycles : int
        Cycles that messages were read from.
    skipped_rows : int
        Rows dropped by ``errors="skip"`` because they did not match the schema.
    first_bad_index : int or None
        Full index of the first row that did not match the schema (skipped, or where a truncated read
        stopped).
    truncated : bool
        ``errors="truncate"`` stopped the read before the end.
    index_damage : list of str
        Damaged index files (cut short, or a lost ``index-0``) read past with ``errors="skip"`` or
        ``"truncate"``: the readable prefix of that cycle was read, the rest of it skipped, and the read went
        on; each is also warned about (:class:`~pychro.errors.PychroWarning`).
    slow_path_strings : int
        Strings holding CESU-8 (Java's encoding of characters outside the BMP, or ``C0 80`` for U+0000),
        transcoded to UTF-8 by the decoder.
    replaced_surrogates : int
        Lone UTF-16 surrogates (in strings or chars) stored as U+FFFD, which Arrow strings can hold.
    unknown_rows : int
        Message types: messages skipped with ``unknown="skip"`` because their tag names no type.
    """

    rows: int = 0
    batches: int = 0
    cycles: int = 0
    skipped_rows: int = 0
    first_bad_index: int | None = None
    truncated: bool = False
    slow_path_strings: int = 0
    replaced_surrogates: int = 0
    index_damage: list[str] = field(default_factory=list)
    unknown_rows: int = 0


# -- arguments -------------------------------------------------------------------------------------------------
def _metadata_names(index: bool, metadata: Iterable[str] | str | None) -> list[str]:
    wanted: list[str] = []
    if index:
        wanted.append("index")
    if metadata:
        items = [metadata] if isinstance(metadata, str) else list(metadata)
        for item in items:
            if item not in METADATA_COLUMNS:
                raise ValueError(f"metadata= takes names from {sorted(METADATA_COLUMNS)}, got {item!r}")
            if item not in wanted:
                wanted.append(item)
    order = list(METADATA_COLUMNS)
    return [METADATA_COLUMNS[m] for m in sorted(wanted, key=order.index)]


def _show_bound(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{value:#x}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(map(_show_bound, value)) + ")"
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)


class _Read:
    """Arguments resolved once: journal, plan, output schema, cycle ranges."""

    def __init__(
        self, path: Any, schema: Any, date: Any, start: Any, end: Any, columns: Sequence[str] | None,
        errors: str, index: bool, metadata: Iterable[str] | str | None, config: VanillaConfig | None,
        thread_id_bits: int | None, timestamp_column: str | None = None, *, time: TimeFilter | None = None,
        narrow_rows: bool = True, rest: bool = False,
    ) -> None:
        if errors not in _ERRORS:
            raise ValueError(f"errors= must be one of {_ERRORS}, got {errors!r}")
        self.errors = errors
        self.schema = schema if isinstance(schema, S.Schema) else S.Schema(schema)
        self.rest = rest  # the schema is a common header, followed by any bytes (message types)
        # a streaming read gives back the pages of journal files it has read (its resident set stays small);
        # read_table keeps them until it returns: its result is as big, and giving them back costs a little
        self.release = True
        self._mapped = 0  # bytes of journal this read has mapped, about (see release_now)
        # read_table/read_tables (all rows at once, batch_rows not given): cut each cycle's rows into alike batches
        # for this many threads (see _even_rows); 0: batches of batch_rows as asked
        self.even = 0
        self.plan = Plan(self.schema, columns, rest=rest)
        if timestamp_column is not None and time is None:  # checked even without a time bound to use it
            if not isinstance(timestamp_column, str):
                raise TypeError(f"timestamp_column must be a str, got {type(timestamp_column).__name__}")
            if timestamp_column not in self.schema:
                raise ValueError(f"timestamp_column={timestamp_column!r} is not a field of the schema "
                                 f"{self.schema.names}")
            kind = self.schema[timestamp_column].type.name
            if not kind.startswith("timestamp_"):
                raise ValueError(f"timestamp_column={timestamp_column!r} is a {kind} field, not timestamp_*")
        date, start, end = as_date(date), parse_when(start, "start"), parse_when(end, "end")
        # datetime bounds select rows by the timestamp field (``time`` given: already resolved, e.g. by Dask)
        self.time = time if time is not None else time_filter(self.schema, start, end, timestamp_column)
        self.decode_plan = self.plan
        if self.time is not None and self.time.column not in self.plan.columns:
            self.decode_plan = Plan(self.schema, [*self.plan.columns, self.time.column], rest=rest)
        self.meta = _metadata_names(index, metadata)
        if not self.plan.columns and not self.meta:
            raise ValueError("columns=[] selects nothing: name a column, or ask for metadata= columns")
        clash = [m for m in self.meta if m in self.plan.columns]
        if clash:
            raise ValueError(f"metadata columns {clash} clash with schema fields of the same name")
        self.journal = Journal(path, config, thread_id_bits)
        self.empty = self.journal.check_layout()  # a folder that is not a journal raises, naming what it holds
        self.config = self.journal.config
        self.cycles, self.end_bound = select_cycles(self.journal, date, start, end)
        self.bounds = (date, start, end)
        if narrow_rows and time is None and not self.cycles and (date, start, end) != (None, None, None):
            self._nothing_selected()
        # the timestamp column alone is fixed-size: one thread unless the message has variable-size fields
        fixed = self.plan.fixed_size is not None or (rest and self.schema.fixed_size is not None)
        self.range_threads = 1 if fixed else max(1, min(2, os.cpu_count() or 1))
        if self.time is not None and time is None and narrow_rows:
            self.cycles = self._narrow(self.time)
        arrow = self.schema.to_arrow()
        fields = [pa.field(m, pa.int64(), nullable=False) for m in self.meta]
        fields += [arrow.field(name) for name in self.plan.columns]
        self.arrow_schema = pa.schema(fields, metadata=arrow.metadata)

    def _nothing_selected(self) -> None:
        """Raise when date=/start=/end= name no cycle of a journal that has some: epoch milliseconds read as full
        indices, a day the journal has no folder for, bounds that contradict date=. An empty result would look
        like "no messages then" (follow mode waits instead: the cycle may come)."""
        cycles = self.journal.cycles()
        if not cycles:
            return  # an empty journal: reads give no rows
        cfg = self.config
        date, start, end = self.bounds
        given = ", ".join(f"{k}={_show_bound(v)}" for k, v in (("date", date), ("start", start), ("end", end))
                          if v is not None)
        ints = any(isinstance(v, (int, np.integer)) for v in (start, end))
        hint = "; full indices are not epoch times: give a time as a datetime or ISO string" if ints else ""
        raise ValueError(
            f"{given} selects no cycle of this journal, which holds {len(cycles)} cycle(s) from "
            f"{cfg.folder_name(cycles[0])} (first index {cfg.index_of(cycles[0], 0):#x}) to "
            f"{cfg.folder_name(cycles[-1])}{hint}"
        )

    def _narrow(self, tf: TimeFilter) -> list[tuple[int, int, int | None]]:
        """Cycle ranges cut down to the rows whose timestamp is in range (see :mod:`.timerange`)."""
        cfg = self.config
        ts_plan = Plan(self.schema, [tf.column], rest=self.rest)
        out: list[tuple[int, int, int | None]] = []
        for cycle, lo, hi in self.cycles:
            t0 = cfg.cycle_start_ms(cycle) * 1_000_000
            if tf.covers(t0, t0 + cfg.cycle_length_ms * 1_000_000):  # type: ignore[operator]
                out.append((cycle, lo, hi))  # the whole cycle is in range (each batch is still masked)
                continue
            files = CycleFiles(self.journal, cycle)
            files.tolerate = self.errors != "raise"
            count = files.count()
            stop = count if hi is None else min(hi, count)
            first, end, _ = narrow(files, tf, ts_plan, lo, stop, self.range_threads)
            if end > first:
                out.append((cycle, first, end))
        return out

    def release_now(self, files: CycleFiles, entries: npt.NDArray[np.uint64]) -> bool:
        """Whether the pages of this batch leave the resident set once decoded: in a streaming read, from its
        first :data:`RELEASE_AFTER` bytes of journal on. Giving pages back cost 15-20% of a 1 M-row read
        (measured); a read smaller than that gives them back when it ends anyway."""
        if not self.release:
            return False
        if self._mapped < RELEASE_AFTER and entries.size:
            codec = files.codec
            first, last = int(entries[0]), int(entries[-1])
            one_file = first >> codec.data_bits == last >> codec.data_bits
            # an estimate (decoding threads add without a lock; a batch over two files counts a whole file)
            self._mapped += ((last & codec.offset_mask) - (first & codec.offset_mask) if one_file
                             else files.config.data_block_size)
        return self._mapped >= RELEASE_AFTER

    def filter(self, batch: Any, out: BatchOut) -> Any:
        """The batch without the rows whose timestamp is out of range (as it is when there is no time range)."""
        tf = self.time
        if tf is None:
            return batch
        mask = tf.inside(tf.values(out.columns[tf.column]))
        return batch if mask is None else batch.filter(pa.array(mask))

    def record_batch(self, out: BatchOut, cycle: int, seq0: int) -> Any:
        arrays = []
        if self.meta:
            rows = np.arange(out.n, dtype=np.int64) if out.rows is None else out.rows
            seq = rows + seq0
            for m in self.meta:
                if m == "_index":
                    values = seq + (cycle << self.config.seq_bits)
                elif m == "_cycle":
                    values = np.full(out.n, cycle, dtype=np.int64)
                else:
                    values = seq
                arrays.append(pa.array(values, pa.int64()))
        arrays += [out.columns[name] for name in self.plan.columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema)


# -- the batch pipeline ------------------------------------------------------------------------------------------
def _tasks(
    r: _Read, batch_rows: int, follow: bool, poll_interval: float, stats: ReadStats
) -> Iterator[tuple[CycleFiles, int, int]]:
    """(cycle files, first seq, count) of the batches in index order; in follow mode, forever."""
    last_cycle: int | None = None
    last_seq = 0
    files: CycleFiles | None = None
    for cycle, lo, hi in r.cycles:
        files = CycleFiles(r.journal, cycle)
        files.tolerate = r.errors != "raise"
        count = files.count()  # the snapshot: nothing past it is read
        stop = count if hi is None else min(hi, count)
        rows = _even_rows(stop - lo, batch_rows, r.even) if r.even else batch_rows
        yield from ((files, seq0, n) for seq0, n in files.spans(lo, stop, rows))
        last_cycle, last_seq = cycle, stop
        if files.damage is not None:
            # errors="skip"/"truncate" (which is about messages that do not match the schema): the readable
            # prefix of the cycle was read and the read goes on; say what was not read
            stats.index_damage.append(str(files.damage))
            warnings.warn(f"{files.damage}; read the {count} messages before it and skipped the rest of that "
                          f"cycle (errors={r.errors!r})", PychroWarning, stacklevel=2)
        if hi is not None and hi <= count:
            last_seq = -1  # this cycle's end bound was reached
        # no files.close(): batches still decoding in the pool use these maps; they go with the last batch
    if not follow:
        return
    files = None  # (dropped: the follower maps the cycle anew, and would keep these maps as long as it follows)
    yield from _follow(r, batch_rows, poll_interval, stats, last_cycle, last_seq)


def _follow(
    r: _Read, batch_rows: int, poll_interval: float, stats: ReadStats, cycle: int | None, seq: int
) -> Iterator[tuple[CycleFiles, int, int]]:
    """Tail the journal: new messages of the current cycle, then of newer cycle folders as they appear.

    A cycle is left once a newer cycle folder exists and one more count of it found nothing new. A left cycle
    is still watched for :data:`LATE_COMMIT_GRACE_S` seconds: a writer commits into the cycle in which it began
    a message (vanilla-format.md §6), so such a late message comes after messages of the newer cycle.
    """
    hi = r.end_bound
    if seq < 0:
        return  # the end bound was reached before following began
    date, start, end = r.bounds

    def limit_of(files: CycleFiles) -> int | None:
        return hi[1] if hi is not None and files.cycle == hi[0] else None

    def fresh(files: CycleFiles, seq: int) -> int:
        """The cycle's committed count now (within the end bound); ``seq`` when nothing was added."""
        count = files.count()
        limit = limit_of(files)
        return max(seq, count if limit is None else min(limit, count))

    files = _live_files(r, cycle) if cycle is not None else None
    left: list[list[Any]] = []  # [files, next seq, monotonic deadline] of cycles left recently

    def watch_left() -> Generator[Task, None, bool]:
        """Tasks of messages committed late into the cycles left recently (True when there were some); those
        left longer ago than the grace are closed."""
        late = False
        for watch in left:
            stop = fresh(watch[0], watch[1])
            if stop > watch[1]:
                yield from ((watch[0], seq0, n) for seq0, n in watch[0].spans(watch[1], stop, batch_rows))
                watch[1] = stop
                late = True
        now = time.monotonic()
        for watch in [w for w in left if now >= w[2]]:
            left.remove(watch)
            watch[0].close()
        return late

    quiet_since = time.monotonic()  # when a message last arrived
    left_due = quiet_since  # when the left cycles are looked at next while new rows keep coming
    while True:
        if files is not None:
            stop = fresh(files, seq)
            if stop > seq:
                yield from ((files, seq0, n) for seq0, n in files.spans(seq, stop, batch_rows))
                seq = stop
                quiet_since = time.monotonic()
                if left and quiet_since >= left_due:
                    # a busy cycle is never quiet: its left cycles are looked at once per poll interval all the
                    # same (late commits were held back, and their maps kept, as long as rows kept coming)
                    left_due = quiet_since + poll_interval
                    yield from watch_left()
                continue
            limit = limit_of(files)
            if limit is not None and seq >= limit:
                return  # the end bound inside this cycle was reached
        if (yield from watch_left()):  # late commits into cycles left recently
            quiet_since = time.monotonic()
            continue
        now = time.monotonic()
        newer, _ = select_cycles(r.journal, date, start, end)
        newer = [c for c in newer if cycle is None or c[0] > cycle]
        if newer:
            if files is not None:
                stop = fresh(files, seq)
                if stop > seq:  # a late commit into the cycle being left
                    continue
                left.append([files, seq, now + LATE_COMMIT_GRACE_S])
            cycle, seq = newer[0][0], newer[0][1]
            files = _live_files(r, cycle)
            continue
        if hi is not None and cycle is not None and (cycle > hi[0] or (cycle == hi[0] and seq >= hi[1])):
            return  # nothing at or after the position can fall inside the end bound
        if hi is not None and files is not None and any(c > files.cycle and c >= hi[0] for c in r.journal.cycles()):
            # a folder at or past the end bound exists: the cycle being read is over once one more count of it
            # finds nothing new (as when moving on to a newer cycle), and nothing later is in range
            count = files.count()
            if count <= seq:
                return
            continue
        if (hi is not None and files is not None and now - quiet_since >= LATE_COMMIT_GRACE_S
                and _range_closed(r.journal.config, hi)):
            # the clock has left the end bound's last cycle by the grace for late commits, and nothing came for
            # as long (a writer with its own clock, a backfill, may still be adding in range): the range is final
            if files.count() <= seq:
                return
            continue
        time.sleep(poll_interval)


def _range_closed(config: Any, hi: tuple[int, int]) -> bool:
    """Has the wall clock passed the exclusive end bound ``(cycle, seq)``'s last cycle by the late-commit grace?
    Writers commit into the cycle of their clock (vanilla-format.md section 6), so after that the range is final."""
    last = hi[0] if hi[1] else hi[0] - 1  # the last cycle a message in range can be in
    if last + 1 > config.max_cycle:
        return False
    return time.time() * 1000 >= config.cycle_start_ms(last + 1) + LATE_COMMIT_GRACE_S * 1000


def _live_files(r: _Read, cycle: int) -> CycleFiles:
    """A followed cycle's files: an empty slot below filled ones waits like a message not yet committed."""
    files = CycleFiles(r.journal, cycle)
    files.hole_wait = LIVE_HOLE_WAIT_S
    return files


def _check_stats(stats: Any) -> None:
    if not isinstance(stats, ReadStats):  # stats=True used to fail with AttributeError mid-read
        raise TypeError(f"stats must be a pychro.frames.ReadStats, got {type(stats).__name__}")


RELEASE_AFTER = 64 << 20  # bytes of journal a streaming read maps before it gives pages back

Task = tuple[CycleFiles, int, int]  # cycle files, first seq, count


def _ordered(tasks: Iterator[Task], run: Callable[[CycleFiles, int, int], T], threads: int, follow: bool,
             ) -> Iterator[T]:
    """``run`` of every task, in task order; up to ``2 * threads`` tasks run ahead on a thread pool (in the
    caller's thread when ``threads <= 1`` or following: new rows arrive in small numbers and must not wait).
    Once the tasks are over, the maps of the last cycles' files are dropped in the background (not when
    following: a follower's old cycles go as it leaves them)."""
    if follow:
        yield from _run_ordered(tasks, run, threads, follow)
        return
    opened: list[Any] = []  # the last two cycles' files: those before go as their batches end, as they did (a
    # read of many cycles keeps few files mapped)

    def noted() -> Iterator[Task]:
        for task in tasks:
            if not opened or opened[-1] is not task[0]:
                opened.append(task[0])
                del opened[:-2]
            yield task

    try:
        yield from _run_ordered(noted(), run, threads, follow)
    finally:
        close_later(opened)


def _run_ordered(tasks: Iterator[Task], run: Callable[[CycleFiles, int, int], T], threads: int, follow: bool,
                 ) -> Iterator[T]:
    if threads <= 1 or follow:
        for files, seq0, n in tasks:
            yield run(files, seq0, n)
        return
    first = next(tasks, None)
    if first is None:
        return
    try:
        second = next(tasks, None)
    except PychroError:
        yield run(*first)
        raise
    if second is None:  # one batch: decoded here, not queued behind the batches of other reads in the pool
        yield run(*first)
        return
    tasks = itertools.chain((first, second), tasks)
    pool, forks = _pool(threads), _FORKS
    # (future, task, forks when submitted): after a fork, the child has none of the parent's decoding threads
    # (a child made by fork may go on with a read begun in the parent): what they had not finished runs here.
    # A task of fewer than EVEN_MIN_ROWS rows has no future: it runs here in its turn (handed to a thread, such
    # a batch cost more than it took to decode: 365 daily cycles of 100 rows read in 2.6x the time)
    pending: collections.deque[tuple[Future[T] | None, Task, int]] = collections.deque()
    try:
        exhausted = False
        # a task that could not be made (a damaged index found while looking ahead) is raised in its place,
        # after the batches before it, as a serial read would
        deferred: PychroError | None = None
        while True:
            if forks != _FORKS:
                pool, forks = _pool(threads), _FORKS
            while not exhausted and len(pending) < 2 * threads:
                try:
                    task = next(tasks, None)
                except PychroError as exc:
                    deferred, task = exc, None
                if task is None:
                    exhausted = True
                    break
                fut = None
                if task[2] >= EVEN_MIN_ROWS:
                    fut, pool = _submit(pool, threads, run, task)
                pending.append((fut, task, forks))
            if not pending:
                if deferred is not None:
                    raise deferred
                return
            fut, task, made = pending.popleft()
            # a task no thread has begun runs here rather than waited for (fut.cancel(): it had not started): a
            # read of 2 batches on 2 threads, the second thread slow to wake after the machine idled, took 1.3x
            # the time of the threads' best
            if fut is None or (made != _FORKS and not fut.done()) or fut.cancel():
                yield run(*task)
            else:
                yield fut.result()
    finally:
        for fut, _, _ in pending:
            if fut is not None:
                fut.cancel()
        # tasks already running end before the read does; not in a decoding thread (the collector may close an
        # abandoned read there, while that thread decodes one of its batches: it would wait for itself), nor
        # those of the parent's threads. The maps a task uses stay open while it holds them.
        if not getattr(_DECODING, "thread", False):
            wait([fut for fut, _, made in pending if fut is not None and made == _FORKS])


def _submit(pool: ThreadPoolExecutor, threads: int, run: Callable[[CycleFiles, int, int], T], task: Task,
            ) -> tuple[Future[T] | None, ThreadPoolExecutor]:
    """The task handed to a decoding thread, and the pool it went to: the read's pool, or, once that pool was shut
    (another thread count's read pushed it out, see :func:`_pool`), this thread count's pool made again. None (run
    it in the caller) once the interpreter is shutting down: its pools take no more work after the main thread has
    ended (atexit handlers, daemon threads still reading)."""
    try:
        return pool.submit(run, *task), pool
    except RuntimeError:
        pass
    fresh = _pool(threads)
    if fresh is not pool:
        try:
            return fresh.submit(run, *task), fresh
        except RuntimeError:
            pass
    return None, pool


_POOLS: dict[int, ThreadPoolExecutor] = {}  # by thread count, least recently used first
KEPT_POOLS = 4
_POOLS_LOCK = threading.Lock()
_DECODING = threading.local()  # .thread: True in the decoding threads
_FORKS = 0  # forks that made this process (counted in the child)


def _mark_decoding() -> None:
    _DECODING.thread = True


def _pool(threads: int) -> ThreadPoolExecutor:
    """The decoding threads for reads of ``threads`` threads, started once and shared by every read (starting
    and joining two threads per read cost 0.3 ms, 3% of a 1 M-row read); idle between reads. A child process
    made by fork starts its own. The pools of the last :data:`KEPT_POOLS` thread counts used are kept; an older
    one is shut down (its threads end once its queued batches are done; a read still using it takes its thread
    count's pool again, see :func:`_submit`): reads with ``threads=1..64`` in turn had left 234 idle threads."""
    with _POOLS_LOCK:
        pool = _POOLS.pop(threads, None)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pychro-decode",
                                      initializer=_mark_decoding)
        _POOLS[threads] = pool  # the most recently used last
        while len(_POOLS) > KEPT_POOLS:
            _POOLS.pop(next(iter(_POOLS))).shutdown(wait=False)
        return pool


def _forget_pools() -> None:
    global _POOLS_LOCK, _FORKS
    _POOLS.clear()  # the parent's threads do not exist in a forked child
    _POOLS_LOCK = threading.Lock()
    _FORKS += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _note(stats: ReadStats, config: VanillaConfig, out: Any, cycle: int, seq0: int, seen: set[int] | None) -> None:
    """What one decoded batch (a :class:`BatchOut`, or a batch of message types alike) adds to the stats; its
    rows are counted by the caller. ``seen``: the cycles counted so far (None: cycles are not counted)."""
    if seen is not None and cycle not in seen:
        seen.add(cycle)
        stats.cycles += 1
    stats.batches += 1
    stats.slow_path_strings += out.slow_rows
    stats.replaced_surrogates += out.replaced
    stats.skipped_rows += out.skipped
    if out.first_bad is not None and stats.first_bad_index is None:
        stats.first_bad_index = config.index_of(cycle, seq0 + out.first_bad)
    if out.stop:
        stats.truncated = True


def _batches(
    r: _Read, batch_rows: int, threads: int, follow: bool, poll_interval: float, stats: ReadStats
) -> Iterator[Any]:
    """Decoded RecordBatches in index order; up to ``2 * threads`` batches decode ahead."""
    check_rows(batch_rows, "batch_rows")
    _check_stats(stats)
    plan, errors = r.decode_plan, r.errors

    def run(files: CycleFiles, seq0: int, n: int) -> tuple[list[tuple[BatchOut, int]], int, PychroError | None]:
        # the index scan of the batch runs here too, beside the decode of other batches
        entries, damage = files.load(seq0, n)

        def decode(seq: int, part: npt.NDArray[np.uint64]) -> BatchOut:
            return decode_batch(plan, files, seq, part, errors, release=r.release_now(files, part))

        return (in_halves(decode, seq0, entries) if entries.size else []), files.cycle, damage

    seen: set[int] = set()
    for outs, cycle, damage in _ordered(_tasks(r, batch_rows, follow, poll_interval, stats), run, threads, follow):
        for out, seq0 in outs:
            _note(stats, r.config, out, cycle, seq0, seen)
            batch = r.filter(r.record_batch(out, cycle, seq0), out)
            stats.rows += batch.num_rows
            if batch.num_rows:
                yield batch
            if out.stop:
                return
        if damage is not None:  # the rows before an empty index slot come first
            raise damage


def _with_progress(r: _Read, batches: Iterator[Any], progress: bool | None, follow: bool) -> Iterator[Any]:
    """Pass batches through, updating a progress bar for long reads (tqdm.auto; silent for small work)."""
    from .._progress import interactive, progress_bar

    if progress is False or follow or (progress is None and not interactive()):
        yield from batches
        return
    try:
        total = _total_rows(r)
    except PychroError:
        # damage: no bar; the read itself reports it, after the rows before it, as without a bar
        yield from batches
        return
    bar = progress_bar(total, "rows", progress, big=20_000_000, desc="read")
    if bar is None:
        yield from batches
        return
    try:
        for batch in batches:
            bar.update(batch.num_rows)
            yield batch
    finally:
        bar.close()


def _total_rows(r: _Read) -> int:
    """Rows the read's cycles hold within its bounds (before a time filter); raises on index damage."""
    total = 0
    for cycle, first, stop in r.cycles:
        count = r.journal.count(cycle)
        total += max(0, (count if stop is None else min(stop, count)) - first)
    return total


def _even_rows(total: int, rows: int, threads: int) -> int:
    """Rows per batch near ``rows`` that cut ``total`` rows into alike batches, as many as a multiple of
    ``threads``: in 131 072-row batches, 1 M rows left one of two threads idle for most of the last batch, and
    300 k rows decoded as 131 k, 131 k and 38 k (measured 3-7% slower than halves). No batch has fewer than
    ``EVEN_MIN_ROWS`` rows (then fewer batches than threads); fewer than twice that stay one batch, decoded by
    the caller."""
    if threads <= 1 or total < 2 * EVEN_MIN_ROWS:
        return rows
    batches = min(max(threads, round(total / rows / threads) * threads), total // EVEN_MIN_ROWS)
    return -(-total // batches)


def _threads(threads: int | None, r: _Read) -> int:
    if threads is None:
        # the compiled decoder releases the GIL for the whole batch: two threads pay off on every shape
        # (measured 1.5x on fixed-size rows on 2 cores)
        return max(1, min(2, os.cpu_count() or 1))
    # as for writes: an int (nan made a read of no rows, 2.5 a pool of its own) in a range that bounds the
    # decoding threads a read leaves started
    return check_threads(threads) or 1  # (not None: threads is not)


# -- public functions --------------------------------------------------------------------------------------------
def iter_batches(
    path: str | os.PathLike[str],
    schema: S.SchemaLike,
    date: Any = None,
    start: Any = None,
    end: Any = None,
    columns: Sequence[str] | None = None,
    errors: Errors = "raise",
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    index: bool = False,
    metadata: Iterable[str] | str | None = None,
    follow: bool = False,
    poll_interval: float = 0.1,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    threads: int | None = None,
    stats: ReadStats | None = None,
    progress: bool | None = None,
    timestamp_column: str | None = None,
    unknown: str = "raise",
) -> Iterator[Any]:
    """Read a journal as ``pyarrow.RecordBatch`` es of at most ``batch_rows`` rows, in index order.

    With :class:`~pychro.MessageTypes` instead of a schema it yields ``(type name, RecordBatch)`` pairs (see
    :func:`pychro.read_tables` for ``columns=`` and ``unknown=``).

    Memory stays bounded by a few batches. With ``follow=True`` the iterator does not end (unless ``end``
    is reached): it waits, sleeping ``poll_interval`` seconds between looks, for writers to commit more
    messages, and moves on to a newer cycle folder once one exists and the current cycle has nothing new;
    close the generator or break out of the loop to stop. Following decodes in the calling thread. A cycle
    it has left is watched for :data:`LATE_COMMIT_GRACE_S` seconds more: messages committed late into it
    (vanilla-format.md §6) come then, after messages of the newer cycle.
    Other parameters are those of :func:`read_table`.

    Examples
    --------
    >>> for batch in iter_batches(path, "px:float64,qty:int32", batch_rows=10_000):  # doctest: +SKIP
    ...     total += pc.sum(batch["qty"]).as_py()
    """
    from ..config import check_seconds
    from .types import MessageTypes

    if isinstance(schema, MessageTypes):
        from .typed import iter_typed_batches

        return iter_typed_batches(path, schema, date, start, end, columns, errors,  # type: ignore[arg-type]
                                  unknown=unknown, batch_rows=batch_rows, index=index, metadata=metadata,
                                  follow=follow, poll_interval=poll_interval, config=config,
                                  thread_id_bits=thread_id_bits, threads=threads, stats=stats, progress=progress,
                                  timestamp_column=timestamp_column)
    if unknown != "raise":
        raise ValueError("unknown= is for message types (a pychro.MessageTypes), not a single schema")
    check_rows(batch_rows, "batch_rows")
    poll_interval = check_seconds(poll_interval, "poll_interval")  # checked before a stream, not mid-stream
    r = _Read(path, schema, date, start, end, columns, errors, index, metadata, config, thread_id_bits,
              timestamp_column, narrow_rows=not follow)  # following: new rows are masked, no end is set early
    batches = _batches(r, batch_rows, _threads(threads, r), follow, poll_interval, stats or ReadStats())
    return _with_progress(r, batches, progress, follow)


def read_table(
    path: str | os.PathLike[str],
    schema: S.SchemaLike,
    date: Any = None,
    start: Any = None,
    end: Any = None,
    columns: Sequence[str] | None = None,
    errors: Errors = "raise",
    *,
    index: bool = False,
    metadata: Iterable[str] | str | None = None,
    batch_rows: int | None = None,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    threads: int | None = None,
    stats: ReadStats | None = None,
    progress: bool | None = None,
    timestamp_column: str | None = None,
) -> Any:
    """Read a journal's committed messages into a ``pyarrow.Table``, one column per schema field.

    Parameters
    ----------
    path : str or os.PathLike
        The journal folder.
    schema : Schema, str, dict, list of pairs or pyarrow.Schema
        The fields of every message, in order (see :class:`pychro.Schema`).
    date : date, str or (date, date), optional
        Only cycles overlapping this UTC day, or these days (inclusive); ISO strings (``"2024-03-05"``) too.
    start, end : int, datetime or str, optional
        Full indices (``end`` exclusive) select by index. Datetimes, dates or ISO strings (naive = UTC) select
        the **rows** whose timestamp field (the schema's first ``timestamp_*`` field, or ``timestamp_column``)
        is in ``[start, end)`` (``end`` exclusive), looked for in the cycles overlapping that range only;
        a schema without a timestamp field then raises ValueError. Inside a cycle the range only partly
        covers, the bounds come from the timestamp column alone: binary search when it is non-decreasing
        (checked on samples and around the bounds, see :mod:`pychro.frames.timerange`), else a filter.
    columns : list of str, optional
        Columns to return, in this order. Other fields are passed over without being decoded.
    errors : {"raise", "skip", "truncate"}
        A message whose decoded length differs from its header's length (or whose string is not text)
        does not match the schema: raise :class:`~pychro.errors.SchemaMismatchError` naming its seq, drop
        it (counted in ``stats``), or stop before it. Corrupt headers always raise
        :class:`~pychro.errors.CorruptDataError`.
    index : bool
        Add the full index as an ``_index`` int64 column.
    metadata : iterable of {"index", "cycle", "seq"}, optional
        Add ``_index``, ``_cycle`` and/or ``_seq`` int64 columns (before the schema's columns).
    batch_rows : int, optional
        Rows decoded per batch (the table's chunks); default: about 524 288, in batches of equal size whose number
        is a multiple of the threads.
    config, thread_id_bits
        Journal format settings, as for :class:`pychro.Journal`.
    threads : int, optional
        Decoding threads, 1..256 (default: up to 2).
    stats : ReadStats, optional
        Filled with counts of rows, skipped rows, slow-path strings and so on.
    progress : bool, optional
        Show a progress bar (tqdm.auto, in a notebook or on a terminal). Default: only for reads of 20 M
        rows or more; ``False`` never.
    timestamp_column : str, optional
        The ``timestamp_*`` field datetime ``start``/``end`` compare with (default: the first one).

    Returns
    -------
    pyarrow.Table
        Strings are ``string`` (Java nulls are nulls), ``char`` one-character strings, ``stopbit`` int64,
        ``bool`` bool, timestamps ``timestamp(unit, tz="UTC")``. The schema metadata holds the
        pychro schema (``Schema.from_arrow(table.schema)`` recovers it).

    Raises
    ------
    JournalNotFoundError
        No such folder, a data file named by an index entry is missing, or an index file is missing while
        a later one exists.
    CorruptDataError
        A header that cannot be right, or an index file cut short (or with an emptied slot) before later
        entries (cycle, seq, path and offset in the message).
    SchemaMismatchError
        With ``errors="raise"``, the first message that does not match ``schema``.

    Examples
    --------
    >>> t = read_table(path, "w:int8,i:int32,l:int64,d:float64,s:string,c:char,a:stopbit,b:stopbit")  # doctest: +SKIP
    >>> t = read_table(path, schema, columns=["d", "s"], index=True, start=i0, end=i1)  # doctest: +SKIP
    >>> t = read_table(path, "ts:timestamp_ms,px:float64",
    ...                start="2024-03-05T09:00", end="2024-03-05T17:30")  # doctest: +SKIP
    """
    _no_types(schema, "read_table", "read_tables")
    r = _Read(path, schema, date, start, end, columns, errors, index, metadata, config, thread_id_bits,
              timestamp_column)
    r.release = False
    threads = _threads(threads, r)
    if batch_rows is None:
        r.even = threads
    rows = READ_TABLE_BATCH_ROWS if batch_rows is None else batch_rows
    batches = list(_with_progress(r, _batches(r, rows, threads, False, 0.0, stats or ReadStats()), progress, False))
    return pa.Table.from_batches(batches, schema=r.arrow_schema)


def _no_types(schema: Any, name: str, instead: str) -> None:
    from .types import MessageTypes

    if isinstance(schema, MessageTypes):
        raise TypeError(f"{name} reads one schema; for message types use pychro.{instead}(path, types), which "
                        "returns one table per type")


def _masked_dtype(pd: Any, arrow: Any) -> Any:
    """pandas' masked dtype for an Arrow column type (derived, not tabled: int64 -> Int64, uint16 -> UInt16)."""
    if pa.types.is_boolean(arrow):
        return pd.BooleanDtype()
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return pd.StringDtype()
    if pa.types.is_integer(arrow) or pa.types.is_floating(arrow):
        name = np.dtype(arrow.to_pandas_dtype()).name  # "int64", "uint16", "float32", ...
        return pd.api.types.pandas_dtype(name.replace("uint", "UInt").replace("int", "Int").replace("float", "Float"))
    return None  # timestamps keep pandas' own datetime64[unit, UTC]


def read_frame(
    path: str | os.PathLike[str],
    schema: S.SchemaLike,
    date: Any = None,
    start: Any = None,
    end: Any = None,
    columns: Sequence[str] | None = None,
    errors: Errors = "raise",
    *,
    dtype_backend: DtypeBackend = "pyarrow",
    **kwargs: Any,
) -> Any:
    """:func:`read_table` as a pandas DataFrame.

    Parameters
    ----------
    dtype_backend : {"pyarrow", "numpy_nullable", "numpy"}
        ``"pyarrow"`` (default): ``pd.ArrowDtype`` columns, no conversion. ``"numpy_nullable"``: pandas
        masked dtypes (``Int64``, ``boolean``, ``string``...). ``"numpy"``: plain numpy dtypes (strings as
        pandas' default string dtype, timestamps ``datetime64[unit, UTC]``).
    **kwargs
        Passed to :func:`read_table`.

    Examples
    --------
    >>> df = read_frame(path, "ts:timestamp_ms,px:float64,sym:string")  # doctest: +SKIP
    >>> df.dtypes.iloc[1]  # doctest: +SKIP
    double[pyarrow]
    """
    if dtype_backend not in ("pyarrow", "numpy_nullable", "numpy"):
        raise ValueError(f"dtype_backend must be 'pyarrow', 'numpy_nullable' or 'numpy', got {dtype_backend!r}")
    _no_types(schema, "read_frame", "read_frames")
    return _to_frame(read_table(path, schema, date, start, end, columns, errors, **kwargs), dtype_backend)


def _to_frame(table: Any, dtype_backend: str) -> Any:
    pd = require("pandas", purpose="read_frame")
    if dtype_backend == "pyarrow":
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    if dtype_backend == "numpy_nullable":
        return table.to_pandas(types_mapper=partial(_masked_dtype, pd))
    if dtype_backend == "numpy":
        return table.to_pandas()
    raise ValueError(f"dtype_backend must be 'pyarrow', 'numpy_nullable' or 'numpy', got {dtype_backend!r}")
