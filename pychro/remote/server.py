"""ChronicleSourceServer: the source side of the Chronicle 3.3-3.6 TCP protocol over a local journal.

Implements what a Java ``SourceTcpAcceptor`` over a Vanilla chronicle does (vanilla-format.md §9, §9b):

* ``SUBSCRIBE -1`` replies ``SYNC_IDX_LEN, -1`` and streams from the first message; ``SUBSCRIBE -2`` replies
  with the last index and sends that last message first (an empty journal falls back to from-start and replies
  -1); ``SUBSCRIBE idx`` echoes ``idx`` and streams from exactly that message, waiting (with heartbeats) until it
  exists, as Java does;
* ``UNSUBSCRIBE`` stops the stream (and its heartbeats); ``QUERY idx`` answers ``SYNC_IDX_LEN`` with the index
  after ``idx``, or ``IN_SYNC_LEN, 0`` when ``idx`` is absent. Where Java 3.4-3.6 would block the session until a
  message follows ``idx``, this source answers at once with ``idx`` itself;
* ``SUBMIT``/``SUBMIT_NOACK`` append the body through the server's one appender (shared by all sessions under a
  lock, so remote appends hold one data file whatever the number of clients) and (SUBMIT) reply ``ACK_LEN,
  index``. Without ``allow_submit=True`` the server is read-only and every SUBMIT gets ``NACK_LEN,
  IDX_NOT_SUPPORTED``. A SUBMIT larger than a message can be (the data block size minus its header) and one the
  writer fails to append (a full disk) get ``NACK_LEN, IDX_NONE`` and a log line; a refused body is read and
  dropped in small chunks, never buffered, so the session stays in step with the client;
* ``IN_SYNC_LEN`` heartbeats go out when a subscription is idle and 2.5 s have passed since the last control
  frame. Messages committed by any process are found by polling the journal.

One thread per client, waiting on its socket with ``poll`` (no ``select()`` descriptor limit); at most
``max_connections`` clients at once (later ones are accepted and closed at once, with a log line). The stream is
built in batches (:class:`~pychro.remote.tail.JournalTail`) and written with one ``sendall`` per batch of many
frames.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _layout as L
from .._mapping import make_folder
from ..config import VanillaConfig, check_seconds
from ..errors import JournalNotFoundError, MessageTooLargeError, PychroError, RemoteError
from ..journal import Journal
from ..writer import Appender, VanillaChronicleWriter
from . import wire as W
from .tail import JournalTail

__all__ = ["ChronicleSourceServer", "serve"]

log = logging.getLogger("pychro.remote")

_RECV_CHUNK = 1 << 16
_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_IDLE_WAIT_S = 0.5  # longest wait of a session that is not subscribed (close() also wakes it at once)
_REFUSAL_LOG_S = 5.0  # at most one "connection refused" log line per this many seconds
DEFAULT_MAX_CONNECTIONS = 256


class ChronicleSourceServer:
    """Serve a journal to Chronicle 3.x TCP clients (Java sinks, remote tailers, :class:`RemoteChronicleReader`).

    Parameters
    ----------
    path : str or os.PathLike
        Journal folder. A missing folder is an error (a mistyped path would look like a journal with no
        messages yet) unless ``allow_submit`` is on, which starts a new journal there. An existing empty folder
        is served as an empty journal: clients wait for its first message.
    host : str
        Address to bind; loopback unless told otherwise.
    port : int
        Port to bind; 0 picks a free one (read it back from :attr:`port`).
    config : VanillaConfig, optional
        Format settings of the journal.
    thread_id_bits : int, optional
        Shortcut for ``config.thread_id_bits``.
    allow_submit : bool
        Accept remote appends (SUBMIT); off by default. There is no authentication: with it on, anyone who can
        connect can append, so bind to loopback unless you trust the network. When False, SUBMITs get
        ``NACK_LEN, IDX_NOT_SUPPORTED``.
    max_connections : int
        Most clients served at once (default 256); a client beyond it is disconnected at once and logged.
    heartbeat_interval : float
        Seconds between heartbeats of an idle subscription (Java: 2.5).
    poll_interval : float
        Longest sleep between two looks at the journal when a subscriber is up to date.
    clock : callable, optional
        Epoch milliseconds; decides when a cycle is over (default: the wall clock).

    Examples
    --------
    >>> with ChronicleSourceServer(journal_dir) as server:      # doctest: +SKIP
    ...     server.start()                                    # serve in a background thread
    ...     reader = RemoteChronicleReader("127.0.0.1", server.port)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: VanillaConfig | None = None,
        thread_id_bits: int | None = None,
        allow_submit: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        heartbeat_interval: float = W.HEARTBEAT_INTERVAL_S,
        poll_interval: float = 0.005,
        clock: Callable[[], int] | None = None,
        backlog: int = 64,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive integer, got {max_connections!r}")
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, got {type(host).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int in 0..65535, got {type(port).__name__}")
        if not 0 <= port <= 65535:  # bind() raised OverflowError
            raise ValueError(f"port must be in 0..65535 (0: a free port), got {port}")
        heartbeat_interval = check_seconds(heartbeat_interval, "heartbeat_interval", zero=False)
        poll_interval = check_seconds(poll_interval, "poll_interval")
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not os.path.isdir(self.path):  # before makedirs: its EEXIST says less
            raise JournalNotFoundError("the journal path is a file, not a folder", path=self.path)
        if not os.path.isdir(self.path):
            if not allow_submit:  # a mistyped path would be served as an empty journal that never gets a message
                raise JournalNotFoundError(
                    "no such journal folder (a read-only server creates nothing; allow_submit=True, "
                    "pychro serve --allow-append, starts a new journal there)", path=self.path)
            make_folder(self.path)  # a read-only mount: ReadOnlyJournalError, not a raw EROFS OSError
        self.journal = Journal(self.path, config, thread_id_bits)
        # a cycle folder, a folder of journals or folders another config names would be served as an empty
        # journal that never gets a message: refuse it, naming what is there, as every reader does
        self.journal.check_layout()
        self.config = self.journal.config
        self.allow_submit = allow_submit
        self.max_connections = max_connections
        # the largest body one message can hold: a data block less its header (the appender checks it too)
        self.max_submit = self.config.data_block_size - L.HEADER_SIZE
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        self.clock = clock
        self._writer: VanillaChronicleWriter | None = None
        self._appender: Appender | None = None  # the one appender of all remote appends
        self._writer_lock = threading.Lock()
        self._refused = 0  # connections refused since the last log line about it
        self._refused_logged = 0.0
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener = socket.create_server((host, port), backlog=backlog)
        self.host, self.port = self._listener.getsockname()[:2]
        if not _is_loopback(self.host):
            log.warning("serving %s on %s:%d, beyond loopback: anyone who can reach it can read the journal%s",
                        self.path, self.host, self.port,
                        " and append to it (allow_submit, no authentication)" if allow_submit else "")

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else f"{len(self._sessions)} clients"
        return f"<ChronicleSourceServer {self.path!r} on {self.host}:{self.port} ({state})>"

    def __enter__(self) -> ChronicleSourceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def clients(self) -> int:
        """Number of connected clients."""
        return len(self._sessions)

    # -- lifetime ------------------------------------------------------------------------------------------
    def start(self) -> ChronicleSourceServer:
        """Run :meth:`serve_forever` in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name=f"pychro-source-{self.port}", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept clients until :meth:`close` (one thread per client, at most ``max_connections``)."""
        listener = self._listener
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(listener, selectors.EVENT_READ)
            except (OSError, ValueError):  # closed before we started
                return
            while not self._closed.is_set():
                try:
                    ready = sel.select(0.2)
                except (OSError, ValueError):  # listener closed under us
                    break
                if ready and not self._accept(listener):
                    break

    def _accept(self, listener: socket.socket) -> bool:
        """Accept one client; False when the server is closing."""
        try:
            conn, peer = listener.accept()
        except OSError as exc:
            if self._closed.is_set():
                return False
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("cannot accept a client: %s", exc)
                time.sleep(0.1)  # the listener stays readable: do not spin while descriptors are short
            return True
        with self._lock:
            if self._closed.is_set():
                conn.close()
                return False
            full = len(self._sessions) >= self.max_connections
            if not full:
                session = _Session(self, conn, peer)
                self._sessions.add(session)
        if full:
            conn.close()
            self._log_refusal(peer)
            return True
        try:
            session.thread.start()
        except RuntimeError as exc:  # no thread can be started (out of memory or a thread limit)
            log.warning("cannot serve client %s: %s", peer, exc)
            conn.close()
            self._forget(session)
        return True

    def _log_refusal(self, peer: Any) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= _REFUSAL_LOG_S:
            log.warning("refused client %s: max_connections=%d clients are connected (%d refused since the last "
                        "such line)", peer, self.max_connections, self._refused)
            self._refused = 0
            self._refused_logged = now

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, disconnect every client, join the threads (at most ``timeout`` seconds in all)."""
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.abort()
        deadline = time.monotonic() + timeout
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
        for s in sessions:
            # ident is None for a session accepted in the instant before close(): aborted, it ends on its own
            if s.thread is not threading.current_thread() and s.thread.ident is not None:
                s.thread.join(max(0.0, deadline - time.monotonic()))
        with self._writer_lock:
            self._drop_writer()

    # -- used by sessions ----------------------------------------------------------------------------------
    def _forget(self, session: _Session) -> None:
        with self._lock:
            self._sessions.discard(session)

    def _append(self, body: bytes) -> int:
        """Append one message through the server's single appender (serialised: one data file for all clients)."""
        with self._writer_lock:
            if self._closed.is_set():
                raise RemoteError("server is closing")
            if self._appender is None:
                if self._writer is None:
                    self._writer = VanillaChronicleWriter(self.path, config=self.config, clock=self.clock)
                self._appender = self._writer.get_appender()
            appender = self._appender
            try:
                appender.start_excerpt(len(body))
                if body:
                    appender.write_bytes(body)
                return appender.finish()
            except (OSError, PychroError):
                # e.g. no disk space for the next chunk: this message is dropped, not committed; the appender
                # stays usable (a fresh writer per failure would claim a new data file each time on a full disk)
                appender.discard()
                raise
            except BaseException:  # anything else leaves the appender in no known state: start afresh next time
                self._drop_writer()
                raise

    def _drop_writer(self) -> None:
        """Close the writer and its appender (data file unmapped); caller holds ``_writer_lock``."""
        writer, self._writer, self._appender = self._writer, None, None
        if writer is not None:
            try:
                writer.close()
            except (OSError, PychroError) as exc:
                log.warning("closing the writer of %s: %s", self.path, exc)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


class _Session:
    """One client connection, served by its own thread."""

    def __init__(self, server: ChronicleSourceServer, conn: socket.socket, peer: Any) -> None:
        self.server = server
        self.sock = conn
        self.peer = peer
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tail: JournalTail | None = None
        self.subscribed = False
        self.heartbeat_due = 0.0
        self.pending = bytearray()  # request bytes received but not yet processed
        self._poll = select.poll()  # poll, not select(): no limit on the descriptor's number
        self._poll.register(conn, _POLL_IN)
        self._aborted = False
        self._told_read_only = False
        self.thread = threading.Thread(target=self.run, name=f"pychro-source-session-{peer}", daemon=True)

    def abort(self) -> None:
        """Called from another thread: unblock any send/recv and end the session."""
        self._aborted = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self) -> None:
        try:
            self._loop()
        except PychroError as exc:  # before ConnectionError: RemoteError is one (a request the protocol forbids)
            if not self._aborted:
                log.warning("client %s dropped: %s", self.peer, exc)
        except (ConnectionError, BrokenPipeError, TimeoutError):
            pass  # client went away
        except OSError as exc:
            if not self._aborted:  # not a broken connection (caught above): a journal file that cannot be read
                log.warning("client %s dropped: %s", self.peer, exc)
        except Exception:  # a bad session must not take the server down
            log.exception("client %s: unexpected error", self.peer)
        finally:
            if self.tail is not None:
                self.tail.close()
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._forget(self)

    # -- main loop -----------------------------------------------------------------------------------------
    def _readable(self, timeout: float) -> bool:
        """Has the client sent something (or hung up) within ``timeout`` seconds?"""
        return bool(self._poll.poll(max(0, int(timeout * 1000 + 0.999))))

    def _loop(self) -> None:
        server = self.server
        sock = self.sock
        sleep = 0.0
        while not (self._aborted or server._closed.is_set()):
            if self.subscribed:
                assert self.tail is not None
                buffers, count = self.tail.next_frames()
                if count:
                    for buf in buffers:
                        sock.sendall(buf)
                    del buffers  # may view a mapping the tail will close or remap: let it go first
                    sleep = 0.0
                    # between batches, look at requests only when some arrived (no blocking)
                    if self._readable(0) and not self._read_requests():
                        return
                    continue
                now = time.monotonic()
                if now >= self.heartbeat_due:
                    self._control(W.IN_SYNC_LEN, W.IDX_NONE)
                # Poll the journal again soon: back off from 0.2 ms up to poll_interval while idle.
                sleep = min(max(sleep * 2, 0.0002), server.poll_interval)
                timeout = min(sleep, max(0.0, self.heartbeat_due - now))
            else:
                timeout = _IDLE_WAIT_S
            if self._readable(timeout):
                if not self._read_requests():
                    return

    def _control(self, size: int, index: int) -> None:
        self.sock.sendall(W.control_frame(size, index))
        self.heartbeat_due = time.monotonic() + self.server.heartbeat_interval

    def _read_requests(self) -> bool:
        """Receive and act on whole requests; False when the client closed the connection."""
        data = self.sock.recv(_RECV_CHUNK)
        if not data:
            return False
        pending = self.pending
        pending += data
        pos = 0
        while len(pending) - pos >= W.REQUEST_SIZE:
            action, arg = W.REQUEST.unpack_from(pending, pos)
            pos += W.REQUEST_SIZE
            if action in (W.ACTION_SUBMIT, W.ACTION_SUBMIT_NOACK):
                if not 0 <= arg <= W.MAX_FRAME_BODY:
                    raise RemoteError("SUBMIT size out of range", size=arg, peer=self.peer)
                have = min(arg, len(pending) - pos)
                ack = action == W.ACTION_SUBMIT
                refusal = self._refusal(arg)
                if refusal is not None:  # refused before its body is buffered: read the body and drop it
                    if ack:
                        self._control(W.NACK_LEN, refusal)
                    pos += have
                    self._skip(arg - have)
                    continue
                body = bytes(pending[pos : pos + have])
                pos += have
                if have < arg:  # the rest of the body is still on its way: read exactly that much
                    body += W.recv_exact(self.sock, arg - have, "a SUBMIT body")
                self._submit(body, ack)
            else:
                self._request(action, arg)
        del pending[:pos]
        return True

    # -- requests ------------------------------------------------------------------------------------------
    def _request(self, action: int, arg: int) -> None:
        if action == W.ACTION_SUBSCRIBE:
            self._subscribe(arg)
        elif action == W.ACTION_UNSUBSCRIBE:
            self.subscribed = False
        elif action == W.ACTION_QUERY:
            tail = self._tail()
            try:
                after = tail.index_after(arg) if arg >= 0 else None
            except (OverflowError, ValueError):  # a cycle no date can name: no such message
                after = None
            if after is None:
                self._control(W.IN_SYNC_LEN, W.IDX_NONE)
            else:
                self._control(W.SYNC_IDX_LEN, after)
        elif action == W.ACTION_WITH_MAPPING:
            raise RemoteError("WITH_MAPPING (a Java-serialised MappingFunction) is not supported", peer=self.peer)
        else:
            # Java closes the connection on an unknown action (IOException in onRead)
            raise RemoteError("unknown action received", action=action, peer=self.peer)

    def _tail(self) -> JournalTail:
        if self.tail is None:
            self.tail = JournalTail(self.server.journal, self.server.clock)
        return self.tail

    def _subscribe(self, arg: int) -> None:
        tail = self._tail()
        if arg == W.IDX_TO_END:
            last = tail.last_index()
            if last is None:  # empty journal: from start, reply -1 (Java >= 3.3)
                tail.seek_start()
                reply = W.IDX_TO_START
            else:
                tail.seek_index(last)  # the last message is sent first
                reply = last
        elif arg == W.IDX_TO_START:
            tail.seek_start()
            reply = W.IDX_TO_START
        elif arg < 0:  # Java would wait forever for such an index; say so and hang up instead
            raise RemoteError("SUBSCRIBE to a negative index other than -1 (start) or -2 (end)", index=arg,
                              peer=self.peer)
        elif not self._dated(arg):  # likewise: no cycle folder can ever hold it
            raise RemoteError("SUBSCRIBE to an index whose cycle no date can name", index=arg, peer=self.peer)
        else:
            tail.seek_index(arg)
            reply = arg
        self.subscribed = True
        self._control(W.SYNC_IDX_LEN, reply)

    def _dated(self, index: int) -> bool:
        cfg = self.server.config
        try:
            cfg.folder_name(cfg.split_index(index)[0])
        except (OverflowError, ValueError):
            return False
        return True

    def _refusal(self, size: int) -> int | None:
        """The NACK index for a SUBMIT of ``size`` bytes that is refused before its body is read, else None."""
        server = self.server
        if not server.allow_submit:
            if not self._told_read_only:  # one line per session, however many SUBMITs it sends
                self._told_read_only = True
                log.warning("client %s: SUBMIT refused: the server is read-only (allow_submit=False; pychro serve "
                            "--allow-append)", self.peer)
            return W.IDX_NOT_SUPPORTED
        if size > server.max_submit:
            log.warning("client %s: SUBMIT of %d bytes refused: above the largest message (%d bytes, the data "
                        "block size less its header)", self.peer, size, server.max_submit)
            return W.IDX_NONE
        return None

    def _skip(self, n: int) -> None:
        """Read and drop ``n`` body bytes in small chunks (memory does not grow with ``n``)."""
        scratch = bytearray(min(n, _RECV_CHUNK))
        while n > 0:
            got = self.sock.recv_into(scratch, min(n, len(scratch)))
            if not got:
                raise RemoteError("connection closed in the middle of a refused SUBMIT body", peer=self.peer)
            n -= got

    def _submit(self, body: bytes, ack: bool) -> None:
        try:
            index = self.server._append(body)
        except (MessageTooLargeError, RemoteError, OSError, PychroError) as exc:
            # e.g. ENOSPC: this SUBMIT is refused, the session and every reader go on
            log.warning("client %s: SUBMIT of %d bytes refused: %s", self.peer, len(body), exc)
            if ack:
                self._control(W.NACK_LEN, W.IDX_NONE)
            return
        if ack:
            self._control(W.ACK_LEN, index)


def serve(
    path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: VanillaConfig | None = None,
    thread_id_bits: int | None = None,
    allow_submit: bool = False,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    background: bool = False,
    **kwargs: Any,
) -> ChronicleSourceServer:
    """Create a :class:`ChronicleSourceServer` bound to ``host:port`` (loopback and a free port by default).

    Call ``.serve_forever()`` to serve in this thread, or pass ``background=True`` (or call ``.start()``) to
    serve from a daemon thread; ``.close()`` (or leaving the ``with`` block) stops it. The server is read-only
    unless ``allow_submit=True`` (which lets any client append: there is no authentication); at most
    ``max_connections`` clients are served at once.

    Examples
    --------
    >>> with serve("/data/journal", background=True) as server:    # doctest: +SKIP
    ...     print(server.port)
    """
    server = ChronicleSourceServer(
        path, host, port, config=config, thread_id_bits=thread_id_bits, allow_submit=allow_submit,
        max_connections=max_connections, **kwargs
    )
    if background:
        server.start()
    return server
