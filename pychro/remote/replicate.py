"""replicate(): keep a local copy of a remote journal, as a Java ``ChronicleQueueSink`` does (vanilla-format.md §9).

The replica resumes after its own last index (subscribe to it, drop the echoed frame) and writes every message
into the cycle of its remote index, so a message lands at the same full index as on the source: with one
replicating writer, a new cycle starts at seq 0 on both sides and seqs then advance together. Messages are
copied in runs of consecutive frames taken straight from the receive buffer (located as
:func:`iter_remote_batches` locates them) and appended by a :class:`pychro.frames.bulk.BulkAppender`, one
``pwrite`` and one batch CAS a run. Each run's local indices are checked before and after the write; a
replica that has diverged (another writer, other config) raises instead of silently renumbering.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..config import VanillaConfig
from ..errors import NoData, RemoteError
from ..journal import Journal
from .client import RemoteChronicleReader
from .wire import FRAME_HEADER_SIZE

__all__ = ["replicate"]


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
        Stop once no message has arrived for this many seconds. ``None`` (and no ``stop_after``) runs until
        interrupted; the source's heartbeats keep the connection checked meanwhile.
    reconnect, reconnect_timeout
        Resume after a dropped connection (see :class:`RemoteChronicleReader`).
    on_message : callable, optional
        Called with each copied message's index (progress reporting).

    Examples
    --------
    >>> replicate("127.0.0.1", 5000, "/data/replica", timeout=1.0)      # doctest: +SKIP
    3000
    """
    # numpy and the frames machinery (pyarrow) load on first use: importing pychro.remote must stay light
    import numpy as np

    from ..frames import bulk
    from ..frames.encode import raw_program
    from .frames import locate_frames

    if stop_after is not None and stop_after <= 0:
        return 0
    os.makedirs(os.fspath(path), exist_ok=True)
    journal = Journal(path, config, thread_id_bits)
    cfg = journal.config
    end = journal.end_index()
    reader = RemoteChronicleReader(
        host, port, "start",
        polling_interval=None if timeout is not None else 0.0,
        timeout=timeout if timeout is not None else 1.0,
        config=cfg, reconnect=reconnect, reconnect_timeout=reconnect_timeout,
        resume_after=None if end is None else end - 1,
    )
    reader.recv_size = 4 << 20  # big receive buffers: big runs
    expected: dict[int, int] = {}  # cycle -> next local seq
    count = 0
    try:
        with bulk.BulkAppender(journal) as appender:
            while stop_after is None or count < stop_after:
                try:
                    buf, pos, stop = reader._next_region()
                except NoData:
                    break
                want = bulk.RUN_ROWS if stop_after is None else min(bulk.RUN_ROWS, stop_after - count)
                starts, sizes, first = locate_frames(buf, pos, stop, want)  # consecutive indices, one cycle
                k = len(starts)
                cycle, seq = cfg.split_index(first)
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
                reader._consumed(pos + run_end, first + k - 1)
                if int(written[0]) != first or int(written[-1]) != first + k - 1:
                    # cannot happen unless another writer raced us; stop before it spreads
                    raise RemoteError("replica diverged from the source", index=first, local_index=int(written[0]),
                                      path=journal.path)
                expected[cycle] = seq + k
                count += k
                if on_message is not None:
                    for index in range(first, first + k):
                        on_message(index)
    finally:
        reader.close()
    return count
