"""RemoteChronicleWriter: append to a journal through a Chronicle 3.4+ TCP source (``SUBMIT``, vanilla-format.md §9).

A message is built locally with the same ``write_*`` methods as the local :class:`~pychro.writer.Appender` (the
:class:`RemoteAppender` subclass only swaps the buffer: a growable bytearray instead of the data file), then sent
as ``SUBMIT size`` + body. The source appends it as one excerpt and replies ``ACK_LEN, index``; that index is what
:meth:`RemoteAppender.finish` returns. ``SUBMIT_NOACK`` (``ack=False``) gets no reply.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any

from ..config import check_seconds
from ..errors import MessageTooLargeError, RemoteError
from ..writer import Appender
from . import wire as W

__all__ = ["RemoteAppender", "RemoteChronicleWriter"]

_INITIAL_CAPACITY = 256


class RemoteChronicleWriter:
    """A connection to a Chronicle 3.4+ source used to append messages remotely.

    Parameters
    ----------
    host, port : str, int
        The source's address (a Java ``SourceTcpAcceptor`` over a Vanilla chronicle, or ``pychro serve``).
    ack : bool
        Send SUBMIT and wait for the ACK with the written index (default); False sends SUBMIT_NOACK and
        ``finish()``/``submit()`` return None.
    timeout : float
        Seconds to wait for an ACK (and to connect).

    Examples
    --------
    >>> with RemoteChronicleWriter("127.0.0.1", port) as remote:      # doctest: +SKIP
    ...     appender = remote.get_appender()
    ...     appender.write_int(42)
    ...     appender.write_string("hello")
    ...     index = appender.finish()                                   # the index the source wrote
    """

    def __init__(self, host: str, port: int, *, ack: bool = True, timeout: float = 10.0) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int in 1..65535, got {type(port).__name__}")
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be in 1..65535, got {port}")
        self.host = host
        self.port = port
        self.ack = ack
        self.timeout = check_seconds(timeout, "timeout", zero=False)
        self._lock = threading.Lock()
        self._appenders: dict[int, RemoteAppender] = {}
        try:
            self._sock: socket.socket | None = socket.create_connection((host, self.port), timeout=timeout)
        except OSError as exc:
            raise RemoteError(f"cannot connect: {exc}", host=host, port=self.port) from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> RemoteChronicleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RemoteChronicleWriter {self.host}:{self.port} ack={self.ack}>"

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def get_appender(self) -> RemoteAppender:
        """The calling thread's appender (messages of different threads are submitted whole, never mixed)."""
        tid = threading.get_ident()
        appender = self._appenders.get(tid)
        if appender is None:
            appender = self._appenders[tid] = RemoteAppender(self)
        return appender

    # -- raw submits -----------------------------------------------------------------------------------------
    def submit(self, body: bytes | bytearray | memoryview, ack: bool | None = None) -> int | None:
        """Append one message body remotely; returns the index the source wrote (None with ``ack=False``)."""
        ack = self.ack if ack is None else ack
        n = len(body)
        if n > W.MAX_FRAME_BODY:
            raise MessageTooLargeError(f"message of {n} bytes is above the 128 MiB wire limit")
        action = W.ACTION_SUBMIT if ack else W.ACTION_SUBMIT_NOACK
        with self._lock:
            sock = self._connected()
            try:
                if n < 65536:  # one send for small messages (TCP_NODELAY would otherwise split them)
                    sock.sendall(W.request(action, n) + bytes(body))
                else:
                    sock.sendall(W.request(action, n))
                    sock.sendall(body)
            except OSError as exc:
                self.close()
                raise RemoteError(f"SUBMIT failed: {exc}", host=self.host, port=self.port) from None
            return self._read_ack() if ack else None

    def submit_many(self, bodies: Iterable[bytes | bytearray | memoryview]) -> list[int]:
        """Append many bodies with SUBMIT, sending them all before reading the ACKs (one round trip).

        Returns the written indexes in order.
        """
        out = bytearray()
        count = 0
        for body in bodies:
            if len(body) > W.MAX_FRAME_BODY:
                raise MessageTooLargeError(f"message of {len(body)} bytes is above the 128 MiB wire limit")
            out += W.request(W.ACTION_SUBMIT, len(body))
            out += body
            count += 1
        with self._lock:
            sock = self._connected()
            # Read ACKs on a helper thread while sending, so neither side's socket buffer can fill up and
            # block both peers (the source stops reading while its ACKs are not read).
            result: list[Any] = []
            reader = threading.Thread(target=self._read_acks, args=(count, result), daemon=True)
            reader.start()
            try:
                sock.sendall(out)
            except OSError as exc:
                self.close()
                reader.join(self.timeout)
                raise RemoteError(f"SUBMIT failed: {exc}", host=self.host, port=self.port) from None
            reader.join()
        if result and isinstance(result[-1], BaseException):
            raise result[-1]
        return result

    def _read_acks(self, count: int, result: list[Any]) -> None:
        try:
            for _ in range(count):
                result.append(self._read_ack())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result.append(exc)

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise RemoteError("remote writer is closed", host=self.host, port=self.port)
        return self._sock

    def _read_ack(self) -> int:
        sock = self._connected()
        while True:
            try:
                sock.settimeout(self.timeout)
                size, index = W.FRAME_HEADER.unpack(W.recv_exact(sock, W.FRAME_HEADER_SIZE, "an ACK frame"))
            except TimeoutError:
                self.close()
                raise RemoteError(f"no ACK within {self.timeout:g} s", host=self.host, port=self.port) from None
            except OSError as exc:
                self.close()
                raise RemoteError(f"connection lost waiting for an ACK: {exc}", host=self.host,
                                  port=self.port) from None
            if size == W.ACK_LEN:
                return index
            if size == W.NACK_LEN:
                why = "the source does not support remote append" if index == W.IDX_NOT_SUPPORTED else "refused"
                raise RemoteError(f"SUBMIT rejected: {why}", host=self.host, port=self.port, code=index)
            if size in (W.IN_SYNC_LEN, W.PADDED_LEN):
                continue
            self.close()
            raise RemoteError(f"unexpected frame instead of an ACK: {W.describe_size(size)}", host=self.host,
                              port=self.port, size=size, index=index)


class RemoteAppender(Appender):
    """An :class:`~pychro.writer.Appender` whose message goes to a bytearray, then to the source on ``finish()``.

    Every ``write_*`` method is the local appender's own; only the buffer management differs: the body grows as
    needed (up to the 128 MiB wire limit) instead of being bounded by a reserved capacity.
    """

    __slots__ = ("_remote",)

    def __init__(self, remote: RemoteChronicleWriter) -> None:  # no local writer or data file
        self._remote = remote
        self._writer = None  # type: ignore[assignment]
        self._tid = 0
        self._cycle = None
        self._file_no = -1
        self._mf = None
        self._mm = bytearray(_INITIAL_CAPACITY)  # the message body being built
        self._pos = 0
        self._p = 0
        self._start = -1
        self._lim = -1
        self._base = 0
        self.last_index = None

    def __repr__(self) -> str:
        return f"<RemoteAppender {self._remote.host}:{self._remote.port} bytes={self.bytes_written()}>"

    def start_excerpt(self, capacity: int | None = None) -> None:
        """Begin a message; ``capacity`` only pre-sizes the buffer (it grows on demand)."""
        if self._start >= 0:
            raise ValueError("a message is already in progress: finish() it first")
        if capacity is not None:
            if not 0 <= capacity <= W.MAX_FRAME_BODY:
                raise MessageTooLargeError(f"capacity {capacity} is above the 128 MiB wire limit")
            if capacity > len(self._mm):
                self._mm = bytearray(capacity)
        self._start = self._p = 0
        self._lim = len(self._mm)

    def _reserve(self, n: int) -> int:
        """Every write's slow path: start a message, or grow the buffer."""
        if self._start < 0:
            self.start_excerpt()
        need = self._p + n
        if need > self._lim:
            if need > W.MAX_FRAME_BODY:
                self.discard()
                raise MessageTooLargeError("message exceeds the 128 MiB wire limit; nothing was sent")
            grown = bytearray(min(max(need, 2 * len(self._mm)), W.MAX_FRAME_BODY))
            grown[: self._p] = memoryview(self._mm)[: self._p]
            self._mm = grown
            self._lim = len(grown)
        return self._p

    def finish(self) -> int:
        """Submit the message; returns the index the source wrote it at (None when the writer has ``ack=False``)."""
        if self._start < 0:
            raise ValueError("no message in progress: write a field (or start_excerpt()) before finish()")
        body = bytes(memoryview(self._mm)[: self._p])
        self._start = self._lim = -1
        self._p = 0
        index = self._remote.submit(body)
        self.last_index = index
        return index  # type: ignore[return-value]

    def discard(self) -> None:
        self._p = 0
        self._start = self._lim = -1

    def _release(self) -> None:
        self.discard()
