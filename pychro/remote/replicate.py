"""replicate(): keep a local copy of a remote journal, as a Java ``ChronicleQueueSink`` does (vanilla-format.md §9).

The replica resumes after its own last index (subscribe to it, drop the echoed frame) and writes every message
into the cycle of its remote index, so a message lands at the same full index as on the source: with one
replicating writer, a new cycle starts at seq 0 on both sides and seqs then advance together. Each message's
local index is checked before and after the write; a replica that has diverged (another writer, other config)
raises instead of silently renumbering.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..config import VanillaConfig
from ..errors import NoData, RemoteError
from ..journal import Journal
from ..writer import VanillaChronicleWriter
from .client import RemoteChronicleReader

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
    if stop_after is not None and stop_after <= 0:
        return 0
    os.makedirs(os.fspath(path), exist_ok=True)
    journal = Journal(path, config, thread_id_bits)
    cfg = journal.config
    end = journal.end_index()
    cycle_start_ms = [0]
    # The writer starts each message in the cycle its clock names: point the clock at the remote message's cycle.
    writer = VanillaChronicleWriter(path, config=cfg, clock=lambda: cycle_start_ms[0])
    reader = RemoteChronicleReader(
        host, port, "start",
        polling_interval=None if timeout is not None else 0.0,
        timeout=timeout if timeout is not None else 1.0,
        config=cfg, reconnect=reconnect, reconnect_timeout=reconnect_timeout,
        resume_after=None if end is None else end - 1,
    )
    expected: dict[int, int] = {}  # cycle -> next local seq
    count = 0
    try:
        appender = writer.get_appender()
        while stop_after is None or count < stop_after:
            try:
                excerpt = reader.next_reader()
            except NoData:
                break
            index = excerpt.index
            assert index is not None
            cycle, seq = cfg.split_index(index)
            local_seq = expected.get(cycle)
            if local_seq is None:
                local_seq = journal.count(cycle)
            if seq != local_seq:
                raise RemoteError(
                    "replica does not line up with the source: the remote message would land at another index "
                    "(was the replica written by something else, or is the config different?)",
                    index=index, local_index=cfg.index_of(cycle, local_seq), path=journal.path,
                )
            cycle_start_ms[0] = cfg.cycle_start_ms(cycle)
            start = excerpt.get_offset()
            length = excerpt.get_length()
            appender.start_excerpt(length)
            if length:
                appender.write_bytes(memoryview(excerpt.get_bytes())[start : start + length])
            written = appender.finish()
            if written != index:  # cannot happen unless another writer raced us; stop before it spreads
                raise RemoteError("replica diverged from the source", index=index, local_index=written,
                                  path=journal.path)
            expected[cycle] = seq + 1
            count += 1
            if on_message is not None:
                on_message(index)
    finally:
        reader.close()
        writer.close()
    return count

