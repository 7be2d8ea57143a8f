"""RemoteChronicleReader: subscribe to a Chronicle 3.3-3.6 TCP source and read messages as :class:`Excerpt`s.

Speaks the wire protocol of vanilla-format.md §9 exactly (16-byte requests, 12-byte frames, heartbeats
ignored, short reads looped) and adds what the original pychro lacked (§9, "Comparison"): a correct date start,
from-end on an empty journal, a start index that does not exist, resuming after a dropped connection without a
gap or a duplicate (subscribe to the last delivered index and drop that echoed frame, as the Java sink does), and
clear :class:`~pychro.errors.RemoteError`s for anything the protocol does not allow.

Speed: bytes are received in large chunks into a fresh buffer, frames are parsed out of it with one
``unpack_from`` each, and every :class:`Excerpt` is a view of that buffer (no copy per message). A chunk is never
reused, so an excerpt stays valid after later reads, like the local reader's.
"""

from __future__ import annotations

import datetime as _dt
import socket
import time
from collections.abc import Iterator
from typing import Any

from ..config import VanillaConfig, as_int, check_seconds, resolve_config
from ..errors import NoData, RemoteError
from ..excerpt import Excerpt
from . import wire as W

__all__ = ["RemoteChronicleReader", "Where", "start_index_of"]

Where = str | int | _dt.date | _dt.datetime

_unpack_header = W.FRAME_HEADER.unpack_from
_HDR = W.FRAME_HEADER_SIZE
_RECV_SIZE = 1 << 20  # bytes asked of the kernel per receive (a fresh buffer each time: excerpts stay valid)
_MAX_CYCLE_PROBES = 1024  # QUERYs spent looking for the next non-empty cycle before streaming from the start


class _Disconnected(Exception):
    """Internal: the connection broke (EOF, reset, or silence); ``mid_frame`` when part of a frame was read."""

    def __init__(self, reason: str, mid_frame: bool = False, refused: bool = False, **context: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.mid_frame = mid_frame
        self.refused = refused
        self.context = context


def start_index_of(where: Where, config: VanillaConfig | None = None) -> int:
    """The SUBSCRIBE argument for ``where``: -1 (start), -2 (end) or a full index.

    ``where`` is ``"start"``, ``"end"`` (or ``"now"``), a full index, a date or datetime (first message of its
    cycle: ``cycle_of(date) << seq_bits``), ``"today"``, or a ``"YYYY-MM-DD"`` string.

    >>> hex(start_index_of(_dt.date(2015, 2, 21)))
    '0x40670000000000'
    """
    cfg = resolve_config(config, None)
    if isinstance(where, bool):
        raise TypeError("where must be 'start', 'end', an index, a date or a datetime")
    if not isinstance(where, (str, _dt.date)) and hasattr(where, "__index__"):  # numpy ints: df["_index"]
        where = as_int(where, "where")
    if isinstance(where, int):
        if where < 0:
            raise ValueError(f"a full index must be >= 0, got {where}")
        return cfg.check_index(where, "where")
    if isinstance(where, (_dt.date, _dt.datetime)):
        return cfg.index_of(cfg.cycle_of(where), 0)
    if isinstance(where, str):
        key = where.strip().lower()
        if key == "start":
            return W.IDX_TO_START
        if key in ("end", "now"):
            return W.IDX_TO_END
        if key == "today":
            return cfg.index_of(cfg.cycle_of_ms(time.time_ns() // 1_000_000), 0)
        try:
            return start_index_of(_dt.date.fromisoformat(key), cfg)
        except ValueError:
            pass
        try:
            return start_index_of(int(key, 0), cfg)
        except ValueError:
            raise ValueError(
                f"where must be 'start', 'end', 'now', 'today', an index, a date or 'YYYY-MM-DD'; got {where!r}"
            ) from None
    raise TypeError(f"where must be a str, int, date or datetime, got {type(where).__name__}")


class RemoteChronicleReader:
    """Read a remote journal from a Chronicle 3.x TCP source (Java ``SourceTcpAcceptor`` or ``pychro serve``).

    Parameters
    ----------
    host, port : str, int
        The source's address.
    where : str, int, date or datetime
        Where to start: ``"start"``, ``"end"``/``"now"`` (only messages after the last one), a full index
        (inclusive), a date/datetime (its cycle's first message), ``"today"`` or ``"YYYY-MM-DD"``. A start index
        that does not exist is resolved to the first message at or after it (see Notes).
    polling_interval : float or None
        As for the local reader: ``None`` makes :meth:`next_reader` raise :class:`~pychro.errors.NoData` when no
        message arrives within ``timeout`` seconds; a number makes it wait for the next message however long it
        takes (the source's heartbeats prove the link alive).
    timeout : float
        Seconds to wait for a message before :class:`NoData` (``polling_interval=None`` only).
    config : VanillaConfig, optional
        The source journal's format (cycle length, entries per cycle): used for date starts.
    reconnect : bool
        After a dropped connection, reconnect and resume after the last delivered message (no gap, no
        duplicate). When False a dropped connection raises :class:`~pychro.errors.RemoteError`.
    reconnect_timeout : float
        Give up (RemoteError) when no connection succeeds for this many seconds.
    connect_timeout : float
        Seconds allowed to connect and get the subscribe reply.
    idle_timeout : float
        No byte at all (not even a heartbeat, sent every 2.5 s when idle) for this long means a dead link.
    resume_after : int, optional
        Start after this full index instead of at ``where`` (how a replica resumes: subscribe to it, drop the
        echoed frame).

    Notes
    -----
    A Java source stalls on a SUBSCRIBE to an index that does not exist (it only sends heartbeats until it
    does). So for an explicit start the reader first subscribes from the end to learn the last index ``L``:
    a start after ``L`` (or an empty journal) keeps that subscription and skips what comes before the start; a
    start before ``L`` is checked with QUERY and, when absent, moved to the first message of the next non-empty
    cycle found by QUERY (or, past 1024 cycles, streamed from the start with earlier messages skipped).

    Examples
    --------
    >>> with RemoteChronicleReader("127.0.0.1", 5000, "start") as chron:     # doctest: +SKIP
    ...     for excerpt in chron:
    ...         print(excerpt.index, excerpt.read_int(), excerpt.read_string())
    """

    def __init__(
        self,
        host: str,
        port: int,
        where: Where = "start",
        *,
        polling_interval: float | None = None,
        timeout: float = 1.0,
        config: VanillaConfig | None = None,
        thread_id_bits: int | None = None,
        reconnect: bool = True,
        reconnect_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        idle_timeout: float = 4 * W.HEARTBEAT_INTERVAL_S,
        resume_after: int | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, str) and port.isdigit():  # pychro 0.8 took int(port)
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int in 1..65535, got {type(port).__name__}")
        if not 1 <= port <= 65535:  # fail now, not after reconnect_timeout of refused connections
            raise ValueError(f"port must be in 1..65535, got {port}")
        self.host = host
        self.port = port
        self.config = resolve_config(config, thread_id_bits)
        self._max_index = self.config.max_index
        self.polling_interval = None if polling_interval is None else check_seconds(polling_interval,
                                                                                    "polling_interval")
        self.timeout = check_seconds(timeout, "timeout")
        self.reconnect = reconnect
        self.reconnect_timeout = check_seconds(reconnect_timeout, "reconnect_timeout")
        self.connect_timeout = check_seconds(connect_timeout, "connect_timeout", zero=False)
        self.idle_timeout = check_seconds(idle_timeout, "idle_timeout", zero=False)
        self._where = where
        if resume_after is not None:
            resume_after = as_int(resume_after, "resume_after")
            if resume_after < 0:
                raise ValueError(f"resume_after must be a full index >= 0, got {resume_after}")
            self.config.check_index(resume_after, "resume_after")
            self._start = resume_after
            self._first_min = resume_after + 1
        else:
            self._start = start_index_of(where, self.config)
            self._first_min = max(self._start, 0)
        self._sock: socket.socket | None = None
        self._buf: Any = b""
        self._pos = 0
        self._end = 0
        self._min = self._first_min  # frames below this index are dropped (echoes, skipped starts)
        self._floor = self._min - 1  # fast path: deliver only indexes above this (max of _min - 1, _last)
        self._last: int | None = None  # last delivered index
        self._anchor: int | None = None  # from-end subscribe reply: resume point before anything is delivered
        self._last_rx = time.monotonic()
        self._failures = 0  # consecutive reconnects that delivered nothing
        self.reconnects = 0
        self.subscribed_at: int | None = None  # the SUBSCRIBE argument of the current connection
        self.recv_size = _RECV_SIZE  # bytes of each fresh receive buffer
        self.resume_echo: tuple[int, bytes] | None = None  # (index, body) of the first echoed resume frame
        self._closed = False
        self._open_initial()

    # -- lifetime ------------------------------------------------------------------------------------------
    def __enter__(self) -> RemoteChronicleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._drop_socket(unsubscribe=False)
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        return f"<RemoteChronicleReader {self.host}:{self.port} where={self._where!r} last_index={self._last}>"

    def close(self) -> None:
        """Send UNSUBSCRIBE (as the Java remote tailer does on close) and close the connection."""
        self._closed = True
        self._drop_socket(unsubscribe=True)

    def _drop_socket(self, unsubscribe: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if unsubscribe:
            try:
                sock.settimeout(0.2)
                sock.sendall(W.request(W.ACTION_UNSUBSCRIBE, W.IDX_NONE))
            except OSError:
                pass
        try:
            sock.close()
        except OSError:
            pass

    # -- positions -----------------------------------------------------------------------------------------
    @property
    def index(self) -> int | None:
        """Full index of the last message returned by :meth:`next_reader` (Java ``index()``), or None."""
        return self._last

    def get_index(self) -> int | None:
        """Full index of the last message read (pychro 0.8's remote reader semantics), or None."""
        return self._last

    # -- reading -------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Excerpt]:
        """Excerpts as they arrive; ends when :meth:`next_reader` raises NoData (``polling_interval=None``)."""
        while True:
            try:
                yield self.next_reader()
            except NoData:
                return

    def next_reader(self) -> Excerpt:
        """The next message as an :class:`Excerpt` (``excerpt.index`` is its full index).

        Raises :class:`NoData` when ``polling_interval`` is None and nothing arrives within ``timeout``;
        :class:`RemoteError` for a protocol violation or a connection that cannot be resumed.
        """
        buf = self._buf
        pos = self._pos
        if self._end - pos >= _HDR:
            size, index = _unpack_header(buf, pos)
            stop = pos + _HDR + size
            if size >= 0 and stop <= self._end and index == self._floor + 1 and index <= self._max_index:
                # (others are checked, and refused or dropped, in _frame_ready)
                self._pos = stop
                self._floor = self._last = index
                return Excerpt(buf, pos + _HDR, stop, index)
        return self._next_slow()

    def _next_slow(self) -> Excerpt:
        self._wait_for_frame()
        pos = self._pos
        size, index = _unpack_header(self._buf, pos)
        stop = pos + _HDR + size
        self._pos = stop
        self._floor = self._last = index
        return Excerpt(self._buf, pos + _HDR, stop, index)

    def _wait_for_frame(self, greedy: bool = False) -> None:
        """Receive (resuming after drops) until a complete, deliverable data frame starts at ``_pos``.

        Control frames and dropped frames before it are consumed. ``greedy`` also takes whatever else the
        kernel holds already (bulk readers want big buffers). Raises NoData / RemoteError like next_reader.
        """
        deadline = None if self.polling_interval is not None else time.monotonic() + self.timeout
        while True:
            if self._closed:
                raise RemoteError("reader is closed", host=self.host, port=self.port)
            try:
                if self._frame_ready():
                    self._failures = 0
                    if greedy:
                        self._fill_more()
                    return
                self._fill(self._need(), deadline)
            except _Disconnected as exc:
                self._on_disconnect(exc)

    def _need(self) -> int:
        """Bytes needed from ``_pos`` to complete the frame there (already validated by _frame_ready)."""
        if self._end - self._pos < _HDR:
            return _HDR
        return _HDR + max(0, _unpack_header(self._buf, self._pos)[0])

    def _frame_ready(self) -> bool:
        """Consume control frames and dropped frames; True when a deliverable data frame is complete at _pos."""
        buf = self._buf
        while self._end - self._pos >= _HDR:
            pos = self._pos
            size, index = _unpack_header(buf, pos)
            if size < 0:
                self._pos = pos + _HDR
                self._on_control(size, index)
                continue
            if size > W.MAX_FRAME_BODY:
                raise self._protocol_error("frame size above the 128 MiB limit", size=size, index=index)
            stop = pos + _HDR + size
            if stop > self._end:
                return False
            if not 0 <= index <= self._max_index:  # as replicate refuses it: no journal can hold it
                raise self._protocol_error(
                    f"the source sent an index outside 0..{self._max_index:#x} that no journal can hold",
                    index=index, last_index=self._last)
            if index < self._min:
                if index == self._min - 1 and self.resume_echo is None:  # what replicate compares with its copy
                    self.resume_echo = (index, bytes(buf[pos + _HDR : stop]))
                self._pos = stop
                continue  # the echoed last message of a resume, or before a resolved start
            last = self._last
            if last is not None:
                if index <= last:
                    raise self._protocol_error("source went backwards", index=index, last_index=last)
                if index != last + 1 and self.config.split_index(index)[1] != 0:
                    # a source sends every message of a cycle in order; only a new cycle starts elsewhere (seq 0)
                    raise self._protocol_error(
                        "the source skipped messages (a gap in the indices that does not start a new cycle; "
                        "or config differs from the source's)", index=index, last_index=last)
            return True
        return False

    # -- bulk access (used by pychro.remote.frames) ----------------------------------------------------------
    def _next_region(self) -> tuple[Any, int, int]:
        """Wait for a complete data frame; return ``(buffer, pos, end)``: buffered bytes, a data frame at pos.

        The caller parses whole frames from ``pos`` and calls :meth:`_consumed` with where it stopped.
        """
        self._wait_for_frame(greedy=True)
        return self._buf, self._pos, self._end

    def _consumed(self, pos: int, last_index: int) -> None:
        """Bulk reader: frames before ``pos`` were delivered, the last of them at ``last_index``."""
        if not self._pos < pos <= self._end:
            raise ValueError(f"consumed position {pos} outside the buffered frames [{self._pos}, {self._end}]")
        self._pos = pos
        self._floor = self._last = last_index

    def _on_control(self, size: int, index: int) -> None:
        if size == W.IN_SYNC_LEN or size == W.PADDED_LEN:
            return  # heartbeat / Indexed padding
        if size == W.SYNC_IDX_LEN:
            return  # a repeated subscribe reply: nothing to do
        raise self._protocol_error(f"unexpected control frame {W.describe_size(size)}", size=size, index=index)

    def _protocol_error(self, what: str, **context: Any) -> RemoteError:
        self._drop_socket(unsubscribe=False)
        return RemoteError(what, host=self.host, port=self.port, **context)

    # -- receiving -----------------------------------------------------------------------------------------
    def _fill(self, need: int, deadline: float | None) -> None:
        """Receive until ``need`` bytes are buffered from ``_pos``, into a fresh buffer (excerpts stay valid).

        Raises NoData at ``deadline``; _Disconnected on EOF, reset, or ``idle_timeout`` of silence.
        """
        sock = self._sock
        if sock is None:
            raise _Disconnected("not connected")
        have = self._end - self._pos
        new = bytearray(max(self.recv_size, need))  # need <= 12 + 128 MiB: checked by _frame_ready
        if have:
            new[:have] = memoryview(self._buf)[self._pos : self._end]
        self._buf, self._pos, self._end = new, 0, have
        view = memoryview(new)
        try:
            while self._end < need:
                now = time.monotonic()
                wait = self._last_rx + self.idle_timeout - now
                if deadline is not None:
                    if now >= deadline:
                        raise NoData("no message from the source in time", host=self.host, port=self.port,
                                     timeout=self.timeout)
                    wait = min(wait, deadline - now)
                if wait <= 0:
                    raise _Disconnected(f"nothing received for {self.idle_timeout:g} s (no heartbeat)",
                                        mid_frame=self._end > 0)
                sock.settimeout(wait)
                try:
                    n = sock.recv_into(view[self._end :])
                except TimeoutError:
                    continue
                except OSError as exc:
                    raise _Disconnected(f"connection error: {exc}", mid_frame=self._end > 0) from None
                if n == 0:
                    raise _Disconnected("connection closed by the source", mid_frame=self._end > 0,
                                        received=self._end, frame_bytes=need)
                self._end += n
                self._last_rx = time.monotonic()
        finally:
            view.release()

    def _fill_more(self) -> None:
        """Take what the kernel already holds, without waiting, into the room left in the buffer."""
        sock = self._sock
        room = len(self._buf) - self._end
        if sock is None or room < (64 << 10) or not isinstance(self._buf, bytearray):
            return
        view = memoryview(self._buf)
        sock.settimeout(0.0)  # (with a timeout set, Python would poll() and wait despite MSG_DONTWAIT)
        try:
            while room >= (64 << 10):
                try:
                    n = sock.recv_into(view[self._end :], room)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return  # the next blocking receive reports it
                if n == 0:
                    return
                self._end += n
                room -= n
                self._last_rx = time.monotonic()
        finally:
            view.release()

    # -- connecting ----------------------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except ConnectionRefusedError:
            raise _Disconnected(f"nothing listens on {self.host}:{self.port} (connection refused)",
                                refused=True) from None
        except TimeoutError:
            raise _Disconnected(f"cannot connect to {self.host}:{self.port} within {self.connect_timeout:g} s "
                                "(connect_timeout)") from None
        except OSError as exc:
            raise _Disconnected(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buf, self._pos, self._end = b"", 0, 0
        self._last_rx = time.monotonic()
        return sock

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(self.connect_timeout)
            self._sock.sendall(data)
        except OSError as exc:
            raise _Disconnected(f"cannot send request: {exc}") from None

    def _control_reply(self) -> tuple[int, int]:
        """Next control frame before the stream starts (heartbeats included)."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            if self._end - self._pos >= _HDR:
                size, index = _unpack_header(self._buf, self._pos)
                if size >= 0:
                    raise self._protocol_error("data frame before the subscribe reply", size=size, index=index)
                self._pos += _HDR
                return size, index
            try:
                self._fill(_HDR, deadline)
            except NoData:
                raise _Disconnected("no reply from the source in time") from None

    def _subscribe(self, arg: int) -> int:
        """Send SUBSCRIBE and return the index in its SYNC_IDX_LEN reply."""
        self._send(W.subscribe_request(arg))
        while True:
            size, index = self._control_reply()
            if size == W.SYNC_IDX_LEN:
                self.subscribed_at = arg
                return index
            if size != W.IN_SYNC_LEN:
                raise self._protocol_error(f"expected the subscribe reply, got {W.describe_size(size)}",
                                           size=size, index=index)

    def _query(self, index: int) -> bool:
        """QUERY: does ``index`` exist? Only asked for indexes below the last one, which a Java source answers
        at once (it blocks the session when asked about the very last message)."""
        self._send(W.request(W.ACTION_QUERY, index))
        size, reply = self._control_reply()
        if size == W.SYNC_IDX_LEN:
            return True
        if size == W.IN_SYNC_LEN:
            return False
        raise self._protocol_error(f"unexpected reply to QUERY: {W.describe_size(size)}", size=size, index=reply)

    def _open_initial(self) -> None:
        try:
            self._open(first=True)
        except _Disconnected as exc:
            self._drop_socket(unsubscribe=False)
            if not self.reconnect or exc.refused:  # never connected: a wrong address fails now, not after retries
                raise RemoteError(f"cannot subscribe: {exc.reason}", host=self.host, port=self.port) from None
            self._retry(exc)

    def _open(self, first: bool) -> None:
        """Connect and subscribe: at the resume point after a drop, else at the requested start."""
        self._subscribe_somewhere(first)
        self._floor = max(self._min - 1, -1 if self._last is None else self._last)

    def _subscribe_somewhere(self, first: bool) -> None:
        if not first:
            resume = self._last if self._last is not None else self._anchor
            if resume is not None:
                self._connect()
                self._min = resume + 1
                self._subscribe(resume)  # the source echoes `resume` first; _min drops it (Java sink idiom)
                return
        start = self._start
        self._connect()
        if start == W.IDX_TO_START:
            self._min = 0
            self._subscribe(W.IDX_TO_START)
        elif start == W.IDX_TO_END:
            last = self._subscribe(W.IDX_TO_END)
            if last >= 0:
                self._anchor = last
                self._min = last + 1  # "end" means after the last message: drop its echo
            else:
                self._min = 0  # empty journal: the source streams from the start (reply -1)
        else:
            self._open_at(start, self._first_min)

    def _open_at(self, target: int, minimum: int) -> None:
        """Start at ``target`` (delivering indexes >= ``minimum``) without ever subscribing to a missing index."""
        self._min = minimum
        last = self._subscribe(W.IDX_TO_END)
        if last < 0 or target >= last:
            # Empty journal, the last message itself, or the future: this stream (last message, then live
            # ones) holds everything from the target on; earlier frames are dropped by _min.
            return
        self._drop_socket(unsubscribe=True)
        self._connect()
        if self._query(target):
            self._subscribe(target)
            return
        # A gap in the past (e.g. a date with no messages): the first message after it starts a later cycle.
        cfg = self.config
        cycle = cfg.split_index(target)[0]
        last_cycle = cfg.split_index(last)[0]
        for later in range(cycle + 1, min(last_cycle, cycle + _MAX_CYCLE_PROBES) + 1):
            first = cfg.index_of(later, 0)
            if first == last or (first < last and self._query(first)):
                self._subscribe(first)
                return
        self._subscribe(W.IDX_TO_START)  # too many empty cycles to probe: skip up to the target instead

    def _on_disconnect(self, exc: _Disconnected) -> None:
        self._drop_socket(unsubscribe=False)
        if not self.reconnect:
            what = "connection closed in the middle of a frame" if exc.mid_frame else "connection lost"
            raise RemoteError(f"{what}: {exc.reason}", host=self.host, port=self.port, last_index=self._last,
                              **exc.context) from None
        self._retry(exc)

    def _retry(self, cause: _Disconnected) -> None:
        self._failures += 1
        if self._failures > 8:
            raise RemoteError(
                f"the source keeps dropping the connection without delivering a message: {cause.reason}",
                host=self.host, port=self.port, last_index=self._last,
            ) from None
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.02
        while True:
            if self._closed:
                raise RemoteError("reader is closed", host=self.host, port=self.port)
            try:
                self._open(first=self._last is None and self._anchor is None)
                self.reconnects += 1
                return
            except _Disconnected as exc:
                self._drop_socket(unsubscribe=False)
                cause = exc
            if time.monotonic() + delay > deadline:
                raise RemoteError(
                    f"lost the connection and could not resume within {self.reconnect_timeout:g} s: {cause.reason}",
                    host=self.host, port=self.port, last_index=self._last,
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
