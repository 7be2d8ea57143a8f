"""replicate(): keep a local copy of a remote journal, as a Java ``ChronicleQueueSink`` does (vanilla-format.md §9).

The replica resumes after its own last index (subscribe to it, drop the echoed frame) and writes every message
into the cycle of its remote index, so a message lands at the same full index as on the source: with one
replicating writer, a new cycle starts at seq 0 on both sides and seqs then advance together. Messages are
copied in runs of consecutive frames taken straight from the receive buffer (located as
:func:`iter_remote_batches` locates them) and appended by a :class:`pychro.frames.bulk.BulkAppender`, one
``pwrite`` and one batch CAS a run. Each run's local indices are checked before and after the write; a
replica that has diverged (another writer, other config) raises instead of silently renumbering.

A writer commits a message into the cycle in which it began it, even after others moved on (§6), and the
source's stream never goes back. So a cycle the stream has left stays watched for ``late_grace`` seconds: every
0.1 s a second connection asks QUERY for the index after the replica's last message of that cycle, and when
the source holds it, the late messages are fetched (a subscription resuming there, cut at the cycle's end) and
written at their own indices.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import _layout as L
from ..config import VanillaConfig, check_seconds
from ..errors import NoData, RemoteError
from ..journal import Journal
from . import wire as W
from .client import RemoteChronicleReader
from .wire import FRAME_HEADER_SIZE

__all__ = ["replicate"]

_PROBE_INTERVAL_S = 0.1  # how often the cycles left recently are asked for late commits
_FETCH_WAIT_S = 0.5  # a late-message fetch ends when nothing more of its cycle comes for this long
_PROBE_TIMEOUT_S = 5.0  # QUERY is answered at once by a live source
_CONNECT_TIMEOUT_S = 5.0  # to connect and get the subscribe reply (at most ``timeout`` when one is given)
_ECHO_WAIT_S = 1.0  # a source sends the resume message right after the subscribe reply


def replicate(
    host: str,
    port: int,
    path: str | os.PathLike[str],
    *,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    stop_after: int | None = None,
    timeout: float | None = None,
    reconnect: bool = True,
    reconnect_timeout: float = 30.0,
    on_message: Callable[[int], None] | None = None,
    late_grace: float = L.LATE_COMMIT_GRACE_S,
) -> int:
    """Copy messages from a Chronicle 3.x source into the local journal at ``path``; returns how many.

    Parameters
    ----------
    host, port : str, int
        The source (Java ``SourceTcpAcceptor`` or ``pychro serve``).
    path : str or os.PathLike
        The local replica (created when missing). It must only ever be written by replication.
    config : VanillaConfig, optional
        Format of the replica; its cycle length and entries per cycle must equal the source's.
    thread_id_bits : int, optional
        Thread-id bits of the replica's own entries (default: detected, else this host's rule).
    stop_after : int, optional
        Stop after copying this many messages.
    timeout : float, optional
        Stop once no message has arrived for this many seconds (> 0: the replica has then caught up with the
        source as it was a moment ago). It also bounds the wait to connect. ``None`` (and no ``stop_after``)
        runs until interrupted; the source's heartbeats keep the connection checked meanwhile.
    reconnect, reconnect_timeout
        Resume after a dropped connection (see :class:`RemoteChronicleReader`); with ``timeout``, for at most
        ``timeout`` seconds (then :class:`RemoteError`: the copy is incomplete).
    on_message : callable, optional
        Called with each copied message's index (progress reporting).
    late_grace : float
        Seconds a cycle the stream has left is still watched for late commits (a writer commits a message
        into the cycle in which it started it, even after the others moved on, vanilla-format.md §6). Late
        messages are fetched on a second connection and written at their own indices; replicate looks once
        more at every watched cycle before it returns. Messages committed into a cycle later than that are
        not copied by this run (a restarted replicate checks its last cycle again).

    Examples
    --------
    >>> replicate("127.0.0.1", 5000, "/data/replica", timeout=1.0)      # doctest: +SKIP
    3000
    """
    if stop_after is not None and stop_after <= 0:
        return 0
    if late_grace < 0:
        raise ValueError(f"late_grace must be >= 0 seconds, got {late_grace}")
    if timeout is not None:
        # 0 would stop before the first message arrives and leave a partial copy that looks complete
        timeout = check_seconds(timeout, "timeout", zero=False)
    Journal(path, config, thread_id_bits, must_exist=False).check_target()
    created = not os.path.lexists(path)
    os.makedirs(os.fspath(path), exist_ok=True)
    try:
        journal = Journal(path, config, thread_id_bits)
        cfg = journal.config
        end = journal.end_index()
        wait = _PROBE_INTERVAL_S if timeout is None else min(timeout, _PROBE_INTERVAL_S)
        connect = _CONNECT_TIMEOUT_S if timeout is None else min(timeout, _CONNECT_TIMEOUT_S)
        if timeout is not None:  # nothing arriving for `timeout` seconds ends the copy, a dead link included
            reconnect_timeout = min(check_seconds(reconnect_timeout, "reconnect_timeout"), timeout)
        reader = RemoteChronicleReader(
            host, port, "start", polling_interval=None, timeout=wait,
            config=cfg, reconnect=reconnect, reconnect_timeout=reconnect_timeout, connect_timeout=connect,
            resume_after=None if end is None else end - 1,
        )
    except BaseException:
        if created:
            _remove_if_empty(path)
        raise
    try:
        if end is not None:
            _check_lines_up(reader, journal, end - 1, host, port)
        return _copy(reader, host, port, journal, stop_after, timeout, on_message, late_grace)
    except BaseException:
        if created:
            _remove_if_empty(path)
        raise
    finally:
        reader.close()


def _remove_if_empty(path: str | os.PathLike[str]) -> None:
    """Remove the folder replicate made for a copy that failed before writing anything (not left behind)."""
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (something was copied) or gone


def _copy(reader: RemoteChronicleReader, host: str, port: int, journal: Journal, stop_after: int | None,
          timeout: float | None, on_message: Callable[[int], None] | None, late_grace: float) -> int:
    """The copy loop of :func:`replicate` (``reader`` subscribed after the replica's last message)."""
    # numpy and the frames machinery (pyarrow) load on first use: importing pychro.remote must stay light
    import numpy as np

    from ..frames import bulk
    from ..frames.encode import raw_program
    from .frames import locate_frames

    cfg = journal.config
    end = journal.end_index()
    path = journal.path
    reader.recv_size = 4 << 20  # big receive buffers: big runs
    expected: dict[int, int] = {}  # cycle -> next local seq
    # Cycles the stream has left, still watched for late commits (§6): cycle -> monotonic deadline
    watched: dict[int, float] = {}
    if end is not None:  # a resumed replica: its last cycle may have been left by the source meanwhile
        watched[cfg.split_index(end - 1)[0]] = time.monotonic() + late_grace
    current: int | None = None
    count = 0

    def copy_run(source: RemoteChronicleReader, appender: bulk.BulkAppender, buf: Any, pos: int, stop: int,
                 want: int, only_cycle: int | None = None) -> int:
        """Copy the consecutive frames at ``pos`` (one cycle) into the replica at the same indices; returns
        how many, 0 when they belong to a cycle other than ``only_cycle``."""
        starts, sizes, first = locate_frames(buf, pos, stop, want, cfg.max_index)  # consecutive indices
        k = len(starts)
        cycle, seq = cfg.split_index(first)
        if only_cycle is not None and cycle != only_cycle:
            return 0
        local_seq = expected.get(cycle)
        if local_seq is None:
            local_seq = journal.count(cycle)
        if seq != local_seq:
            raise RemoteError(
                "replica does not line up with the source: the remote message would land at another "
                "index (was the replica written by something else, or is the config different?)",
                index=first, local_index=cfg.index_of(cycle, local_seq), path=journal.path,
            )
        if int(sizes.max()) > cfg.message_capacity:
            big = int(np.argmax(sizes > cfg.message_capacity))
            raise RemoteError(
                f"a message of {int(sizes[big])} bytes exceeds the replica's message capacity of "
                f"{cfg.message_capacity} bytes (give replicate a config with a larger one)",
                index=first + big, path=journal.path,
            )
        run_end = int(starts[-1] + FRAME_HEADER_SIZE + sizes[-1])
        data = np.frombuffer(buf, np.uint8, count=run_end, offset=pos)
        bodies = raw_program(data, starts + FRAME_HEADER_SIZE, sizes)  # each body in the receive buffer
        written = np.empty(k, dtype=np.int64)
        appender.append(cycle, range(k), bodies, sizes, written)
        source._consumed(pos + run_end, first + k - 1)
        if int(written[0]) != first or int(written[-1]) != first + k - 1:
            # cannot happen unless another writer raced us; stop before it spreads
            raise RemoteError("replica diverged from the source", index=first, local_index=int(written[0]),
                              path=journal.path)
        expected[cycle] = seq + k
        if on_message is not None:
            for index in range(first, first + k):
                on_message(index)
        return k

    def fill_late(appender: bulk.BulkAppender, cycle: int) -> int:
        """Copy messages committed into ``cycle`` after the stream left it (fetched on a second connection
        that resumes after the replica's last message of that cycle); returns how many."""
        have = expected.get(cycle)
        if have is None:
            have = expected[cycle] = journal.count(cycle)
        if have == 0:
            return 0  # nothing to resume after (the stream never copied into this cycle)
        target = cfg.index_of(cycle, have)
        try:
            if not probe.follows(target - 1, target):
                return 0
        except _Absent:
            raise RemoteError(
                f"the source no longer holds message seq {have - 1} of cycle {cycle}, which the replica copied: "
                "the replica cannot be kept equal to it (did the source's journal change?)",
                cycle=cycle, seq=have - 1, index=target - 1, host=host, port=port, path=journal.path,
            ) from None
        copied = 0
        late = RemoteChronicleReader(host, port, "start", polling_interval=None, timeout=_FETCH_WAIT_S,
                                     config=cfg, reconnect=False, resume_after=target - 1)
        try:
            while True:
                try:
                    buf, pos, stop = late._next_region()
                except NoData:
                    break
                k = copy_run(late, appender, buf, pos, stop, bulk.RUN_ROWS, only_cycle=cycle)
                if k == 0:
                    break  # the stream went on to the next cycle: this one is complete for now
                copied += k
        finally:
            late.close()
        if copied == 0:
            raise RemoteError(
                f"the source holds messages of cycle {cycle} from seq {have} on that the replica could not "
                "fetch: the replica lacks them", cycle=cycle, seq=have, path=journal.path)
        return copied

    def check_left(appender: bulk.BulkAppender, final: bool) -> int:
        """Probe the watched cycles for late commits; forget those whose grace has passed (after a last look)."""
        copied = 0
        now = time.monotonic()
        for cycle in sorted(watched):
            if current is None or cycle >= current:
                continue  # the stream itself still delivers this cycle
            copied += fill_late(appender, cycle)
            if final or now >= watched[cycle]:
                del watched[cycle]
                expected.pop(cycle, None)  # never written again
        return copied

    probe = _Probe(host, port)
    next_probe = time.monotonic() + _PROBE_INTERVAL_S
    last_rx = time.monotonic()
    try:
        with bulk.BulkAppender(journal) as appender:
            while stop_after is None or count < stop_after:
                if watched and time.monotonic() >= next_probe:
                    count += check_left(appender, final=False)
                    next_probe = time.monotonic() + _PROBE_INTERVAL_S
                try:
                    buf, pos, stop = reader._next_region()
                except NoData:
                    if timeout is not None and time.monotonic() - last_rx >= timeout:
                        break
                    continue
                last_rx = time.monotonic()
                want = bulk.RUN_ROWS if stop_after is None else min(bulk.RUN_ROWS, stop_after - count)
                run_index = _first_index(buf, pos)
                cycle = cfg.split_index(run_index)[0]
                if not 0 <= cycle <= cfg.max_cycle:  # no folder can be named for it: a hostile or broken source
                    raise RemoteError(
                        f"the source sent an index outside 0..{cfg.max_index:#x} that no journal can hold",
                        index=run_index, path=os.fspath(path),
                    )
                if cycle != current:
                    _check_cycle_date(cfg, cycle, run_index, journal.path)
                if current is not None and cycle != current:
                    for left in expected:
                        if left < cycle and left not in watched:
                            watched[left] = time.monotonic() + late_grace
                current = cycle
                count += copy_run(reader, appender, buf, pos, stop, want)
            if watched and (stop_after is None or count < stop_after):
                count += check_left(appender, final=True)
    finally:
        probe.close()
    return count


def _check_lines_up(reader: RemoteChronicleReader, journal: Journal, last: int, host: str, port: int) -> None:
    """Refuse to resume unless the source holds the replica's last message ``last`` with the same bytes.

    The reader subscribed to ``last``: the source sends it first (the echo the reader drops). A replica of
    another journal, or written with another config, fails here instead of getting the source's messages
    appended after its own."""
    cycle, seq = journal.config.split_index(last)
    ctx = dict(cycle=cycle, seq=seq, index=last, host=host, port=port, path=journal.path)
    deadline = time.monotonic() + _ECHO_WAIT_S
    while reader.resume_echo is None and time.monotonic() < deadline:
        try:
            reader._next_region()  # a frame after the echo is ready: the echo came first, if at all
            break
        except NoData:
            pass
    echo = reader.resume_echo
    if echo is None:
        # No echo, so ``last`` is not the source's last message: QUERY is answered at once (even by Java)
        probe = _Probe(host, port)
        try:
            probe.follows(last, last + 1)
            held = True
        except _Absent:
            held = False
        finally:
            probe.close()
        raise RemoteError(
            (f"the source no longer holds message seq {seq} of cycle {cycle}, which the replica copied" if not held
             else "the source did not send the replica's last message when asked to resume after it")
            + ": the replica does not line up with the source (is the folder a copy of another journal, or the "
            "config not the source's?)", **ctx)
    from ..reader import VanillaChronicleReader

    with VanillaChronicleReader(journal.path, config=journal.config) as local:
        mine = local.excerpt_at(last).body()
    if mine != echo[1]:
        raise RemoteError(
            f"the replica does not line up with the source: its last message ({len(mine)} bytes) differs from the "
            f"source's at the same index ({len(echo[1])} bytes"
            + (")" if len(mine) != len(echo[1]) else ", other bytes)")
            + ": is the folder a copy of another journal?", **ctx)


def _check_cycle_date(cfg: VanillaConfig, cycle: int, index: int, path: str) -> None:
    """Refuse a cycle that, in the replica's config, starts before 2000 or after the next cycle: the index was
    written with another cycle length (a daily journal read as hourly names 1972, an hourly one read as daily
    a date centuries ahead)."""
    start = cfg.cycle_datetime(cycle)
    now = cfg.cycle_of_ms(time.time_ns() // 1_000_000)
    if start.year < 2000 or cycle > now + 1:
        raise RemoteError(
            f"the source's message lands in cycle {cfg.folder_name(cycle)} ({start:%Y-%m-%d %H:%M} UTC) with the "
            "replica's config: the source's cycle length (or entries per cycle) differs; give replicate the "
            "source's config", index=index, cycle=cycle, path=path)


def _first_index(buf: Any, pos: int) -> int:
    return int.from_bytes(bytes(buf[pos + 4:pos + FRAME_HEADER_SIZE]), "little", signed=True)


class _Absent(Exception):
    """QUERY answered that the asked index does not exist."""


class _Probe:
    """A second connection that asks QUERY (never subscribes, so the source sends nothing unasked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None

    def follows(self, index: int, after: int) -> bool:
        """Does the source hold ``after`` (= ``index + 1``), the message after the replica's ``index``?
        Raises _Absent when it does not hold ``index`` itself."""
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=_PROBE_TIMEOUT_S)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.sendall(W.request(W.ACTION_QUERY, index))
            size, reply = W.FRAME_HEADER.unpack(W.recv_exact(self.sock, W.FRAME_HEADER_SIZE, "QUERY reply"))
        except (OSError, RemoteError):
            self.close()  # a dropped probe is retried on the next look
            return False
        if size == W.IN_SYNC_LEN:
            raise _Absent
        if size != W.SYNC_IDX_LEN:
            self.close()
            raise RemoteError(f"unexpected reply to QUERY: {W.describe_size(size)}", index=index,
                              host=self.host, port=self.port)
        return reply == after

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
