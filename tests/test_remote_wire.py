"""Wire bytes of the 3.x TCP protocol (vanilla-format.md §9, §9b) and hostile streams, with tiny fake peers.

The expected bytes are written out literally from §9/§9b (captured from real Java 3.5.3 processes), never
computed with pychro's own packing helpers.
"""

from __future__ import annotations

import datetime as dt
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pychro import NoData, RemoteError, VanillaChronicleReader, VanillaChronicleWriter, VanillaConfig
from pychro.remote import RemoteChronicleReader, RemoteChronicleWriter, serve
from pychro.remote import wire as W

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

FROM_START = bytes.fromhex("01 00 00 00 00 00 00 00 ff ff ff ff ff ff ff ff")
FROM_END = bytes.fromhex("01 00 00 00 00 00 00 00 fe ff ff ff ff ff ff ff")
FROM_2015_02_21 = bytes.fromhex("01 00 00 00 00 00 00 00 00 00 00 00 00 67 40 00")
UNSUBSCRIBE = bytes.fromhex("02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
HEARTBEAT = bytes.fromhex("80 ff ff ff 00 00 00 00 00 00 00 00")
REPLY_MINUS_1 = bytes.fromhex("82 ff ff ff ff ff ff ff ff ff ff ff")
SUBMIT = bytes.fromhex("14 00 00 00 00 00 00 00")
SUBMIT_NOACK = bytes.fromhex("15 00 00 00 00 00 00 00")
ACK = bytes.fromhex("7f ff ff ff")
DAY1 = 0x40670000000000


def le64(v: int) -> bytes:
    return struct.pack("<q", v)


def reply(index: int) -> bytes:
    return bytes.fromhex("82 ff ff ff") + le64(index)


def data_frame(index: int, body: bytes) -> bytes:
    return struct.pack("<i", len(body)) + le64(index) + body


def recv_n(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise EOFError(f"peer closed after {len(out)} of {n} bytes")
        out += chunk
    return out


class FakeSource:
    """A listening socket whose connections are handled, one after another, by ``script(conn, k)``."""

    def __init__(self, script: Callable[[socket.socket, int], None], connections: int = 1) -> None:
        self.script = script
        self.connections = connections
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []  # every 16-byte request, in order, over all connections
        self.errors: list[BaseException] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for k in range(self.connections):
                conn, _ = self.listener.accept()
                if self.stopping:
                    conn.close()
                    break
                conn.settimeout(10)
                with conn:
                    self.script(conn, k)
        except (OSError, EOFError) as exc:
            self.errors.append(exc)
        finally:
            self.listener.close()

    def request(self, conn: socket.socket) -> bytes:
        raw = recv_n(conn, 16)
        self.requests.append(raw)
        return raw

    def stop(self) -> None:
        """Stop accepting: wake a pending accept with a connection of our own."""
        self.stopping = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()


def quiet_reader(port: int, **kw: Any) -> RemoteChronicleReader:
    kw.setdefault("timeout", 0.3)
    kw.setdefault("connect_timeout", 2.0)
    return RemoteChronicleReader("127.0.0.1", port, **kw)


# -- client requests --------------------------------------------------------------------------------------
def test_subscribe_from_start_bytes_heartbeats_and_short_reads() -> None:
    bodies = [b"", b"x", bytes(range(50)), b"z" * 3000]

    def script(conn: socket.socket, k: int) -> None:
        assert fake.request(conn) == FROM_START
        stream = REPLY_MINUS_1 + HEARTBEAT
        for i, body in enumerate(bodies):
            stream += data_frame(DAY1 + i, body) + HEARTBEAT
        # one byte per send: every frame boundary and header is split across reads
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in stream[:200]:
            conn.sendall(bytes([b]))
        conn.sendall(stream[200:])
        assert fake.request(conn) == UNSUBSCRIBE

    fake = FakeSource(script)
    reader = quiet_reader(fake.port, where="start")
    got = [(e.index, e.body(), e.get_length()) for e in reader]
    reader.close()
    fake.join()
    assert got == [(DAY1 + i, b, len(b)) for i, b in enumerate(bodies)]
    assert fake.requests == [FROM_START, UNSUBSCRIBE]


def test_subscribe_from_end_drops_the_echoed_last_message() -> None:
    def script(conn: socket.socket, k: int) -> None:
        assert fake.request(conn) == FROM_END
        conn.sendall(reply(DAY1 + 9) + data_frame(DAY1 + 9, b"old") + HEARTBEAT + data_frame(DAY1 + 10, b"new"))
        fake.request(conn)

    fake = FakeSource(script)
    with quiet_reader(fake.port, where="end") as reader:
        assert [(e.index, e.body()) for e in reader] == [(DAY1 + 10, b"new")]
    fake.join()


def test_subscribe_from_end_of_empty_journal_keeps_the_first_message() -> None:
    """The source falls back to from-start and replies -1: nothing may be dropped (§10 c)."""

    def script(conn: socket.socket, k: int) -> None:
        assert fake.request(conn) == FROM_END
        conn.sendall(REPLY_MINUS_1 + HEARTBEAT + data_frame(DAY1, b"first"))
        fake.request(conn)

    fake = FakeSource(script)
    with quiet_reader(fake.port, where="now") as reader:
        assert [(e.index, e.body()) for e in reader] == [(DAY1, b"first")]
    fake.join()


def test_date_start_request_bytes_and_query() -> None:
    """2015-02-21 is index 0x40670000000000 (§9 example); it is below the last index, so it is QUERYed on a
    fresh connection before the SUBSCRIBE with exactly the §9 bytes."""
    last = DAY1 + 0x10000000000 + 4  # day 2, seq 4

    def script(conn: socket.socket, k: int) -> None:
        if k == 0:
            assert fake.request(conn) == FROM_END
            conn.sendall(reply(last) + data_frame(last, b"L"))
            assert fake.request(conn) == UNSUBSCRIBE
            return
        assert fake.request(conn) == bytes.fromhex("0a 00 00 00 00 00 00 00 00 00 00 00 00 67 40 00")
        conn.sendall(reply(DAY1 + 1))  # QUERY reply: the index after it
        assert fake.request(conn) == FROM_2015_02_21
        conn.sendall(reply(DAY1) + data_frame(DAY1, b"a") + data_frame(DAY1 + 1, b"b"))
        fake.request(conn)

    fake = FakeSource(script, connections=2)
    with quiet_reader(fake.port, where=dt.date(2015, 2, 21)) as reader:
        assert [(e.index, e.body()) for e in reader] == [(DAY1, b"a"), (DAY1 + 1, b"b")]
    fake.join()
    assert fake.requests[3] == FROM_2015_02_21


def test_remote_writer_submit_bytes_and_ack() -> None:
    def script(conn: socket.socket, k: int) -> None:
        head = recv_n(conn, 16)
        body = recv_n(conn, 7)
        received.append(head + body)
        conn.sendall(ACK + le64(DAY1 + 42))
        head = recv_n(conn, 16)
        received.append(head + recv_n(conn, 1))  # SUBMIT_NOACK: no reply expected
        head = recv_n(conn, 16)
        received.append(head + recv_n(conn, 0))
        conn.sendall(bytes.fromhex("7e ff ff ff") + le64(-4))  # NACK_LEN, IDX_NOT_SUPPORTED

    received: list[bytes] = []
    fake = FakeSource(script)
    with RemoteChronicleWriter("127.0.0.1", fake.port, timeout=5) as remote:
        appender = remote.get_appender()
        appender.write_int(7)
        appender.write_string("ab")
        assert appender.finish() == DAY1 + 42
        assert remote.submit(b"q", ack=False) is None
        with pytest.raises(RemoteError, match="does not support remote append"):
            remote.submit(b"")
    fake.join()
    assert received[0] == SUBMIT + le64(7) + bytes.fromhex("07000000") + b"\x02ab"
    assert received[1] == SUBMIT_NOACK + le64(1) + b"q"
    assert received[2] == SUBMIT + le64(0)


# -- the server's replies ---------------------------------------------------------------------------------
def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_server_subscribe_replies_and_frames(java_3_4_0: Path) -> None:
    with serve(java_3_4_0, background=True) as server, _raw(server.port) as sock:
        sock.sendall(FROM_START)
        assert recv_n(sock, 12) == REPLY_MINUS_1
        with VanillaChronicleReader(java_3_4_0) as local:
            for e in local:
                assert recv_n(sock, 12 + e.get_length()) == data_frame(e.index, e.body())  # type: ignore[arg-type]
    last = 0x40680000000009
    with serve(java_3_4_0, background=True) as server, _raw(server.port) as sock:
        sock.sendall(FROM_END)
        assert recv_n(sock, 12) == bytes.fromhex("82 ff ff ff 09 00 00 00 00 68 40 00")
        head = recv_n(sock, 12)
        assert head[4:] == le64(last)  # the last message is sent first
        recv_n(sock, struct.unpack_from("<i", head)[0])


def test_server_heartbeat_after_2_5_seconds_of_idle(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with serve(tmp_path / "empty", background=True) as server, _raw(server.port) as sock:
        sock.sendall(FROM_END)
        t0 = time.monotonic()
        assert recv_n(sock, 12) == REPLY_MINUS_1  # empty journal: from-end falls back to from-start, -1
        assert recv_n(sock, 12) == HEARTBEAT
        t1 = time.monotonic()
        assert recv_n(sock, 12) == HEARTBEAT
        t2 = time.monotonic()
    # 2.5 s after the last control frame (the subscribe reply, then each heartbeat); slack for a loaded host
    assert 2.4 <= t1 - t0 <= 4.0
    assert 2.4 <= t2 - t1 <= 4.0


def test_server_explicit_index_waits_with_heartbeats_until_it_exists(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        first = appender.finish()
        with serve(journal, background=True, heartbeat_interval=0.2) as server, _raw(server.port) as sock:
            sock.sendall(W.REQUEST.pack(1, first + 1))
            assert recv_n(sock, 12) == reply(first + 1)
            assert recv_n(sock, 12) == HEARTBEAT  # first + 1 does not exist yet
            assert recv_n(sock, 12) == HEARTBEAT
            appender.write_int(2)
            assert appender.finish() == first + 1
            deadline = time.monotonic() + 5
            while (head := recv_n(sock, 12)) == HEARTBEAT:
                assert time.monotonic() < deadline
            assert head == struct.pack("<i", 4) + le64(first + 1)
            assert recv_n(sock, 4) == struct.pack("<i", 2)
            # UNSUBSCRIBE stops the stream and its heartbeats
            sock.sendall(UNSUBSCRIBE)
            time.sleep(0.1)
            sock.settimeout(0.2)
            try:
                leftover = sock.recv(100)  # at most a heartbeat sent before the request arrived
            except TimeoutError:
                leftover = b""
            assert leftover in (b"", HEARTBEAT)
            sock.settimeout(0.7)
            with pytest.raises(TimeoutError):
                sock.recv(100)


def test_server_query_submit_and_noack(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with serve(journal, background=True, allow_submit=True) as server, _raw(server.port) as sock:
        sock.sendall(bytes.fromhex("0a 00 00 00 00 00 00 00") + le64(DAY1))
        assert recv_n(sock, 12) == HEARTBEAT  # QUERY of an absent index: IN_SYNC_LEN, 0
        sock.sendall(SUBMIT + le64(5) + b"hello")
        ack = recv_n(sock, 12)
        assert ack[:4] == ACK
        first = struct.unpack_from("<q", ack, 4)[0]
        sock.sendall(SUBMIT_NOACK + le64(3) + b"abc")
        sock.sendall(SUBMIT + le64(0))
        ack = recv_n(sock, 12)
        assert ack == ACK + le64(first + 2)  # the NOACK message took first + 1, silently
        sock.sendall(bytes.fromhex("0a 00 00 00 00 00 00 00") + le64(first))
        assert recv_n(sock, 12) == reply(first + 1)
        sock.sendall(bytes.fromhex("0a 00 00 00 00 00 00 00") + le64(first + 2))
        assert recv_n(sock, 12) == reply(first + 2)  # nothing follows yet: answered at once with itself
    with VanillaChronicleReader(journal) as local:
        assert [(e.index, e.body()) for e in local] == [(first, b"hello"), (first + 1, b"abc"), (first + 2, b"")]


def test_server_read_only_nacks_submit(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    with serve(tmp_path / "j", background=True, allow_submit=False) as server, _raw(server.port) as sock:
        sock.sendall(SUBMIT + le64(2) + b"hi")
        assert recv_n(sock, 12) == bytes.fromhex("7e ff ff ff") + le64(-4)


def test_server_survives_hostile_clients(java_3_4_0: Path) -> None:
    with serve(java_3_4_0, background=True) as server:
        hostile_requests = (
            le64(99) + le64(0),  # unknown action
            SUBMIT + le64(1 << 40),  # SUBMIT far above the 128 MiB limit
            le64(30) + le64(0),  # WITH_MAPPING: a Java object, not for Python
            le64(1) + le64(-7),  # SUBSCRIBE to a negative index other than -1/-2
            b"\x01\x02\x03",  # a partial request, then the client goes away
        )
        for hostile in hostile_requests:
            with _raw(server.port) as sock:
                sock.sendall(hostile)
                if len(hostile) == 16:
                    assert sock.recv(100) == b""  # the source closes the connection
        with quiet_reader(server.port) as reader:
            assert len(list(reader)) == 20


# -- hostile streams against the client -------------------------------------------------------------------
MAX_INDEX = VanillaConfig().max_index  # the last index a (daily) journal can hold


def _serve_after_subscribe(payload: bytes, close: bool = True) -> FakeSource:
    def script(conn: socket.socket, k: int) -> None:
        fake.request(conn)
        conn.sendall(REPLY_MINUS_1 + payload)
        if not close:
            time.sleep(0.5)

    fake = FakeSource(script)
    return fake


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack("<iq", -5, 0), "unexpected control frame"),
        (struct.pack("<iq", W.ACK_LEN, 3), "unexpected control frame ACK_LEN"),
        (struct.pack("<iq", (128 << 20) + 1, DAY1), "above the 128 MiB limit"),
        (struct.pack("<iq", 2**31 - 1, DAY1), "above the 128 MiB limit"),
        (data_frame(DAY1 + 5, b"a") + data_frame(DAY1 + 4, b"b"), "went backwards"),
        # what replicate refuses, the reader refuses too (they used to be delivered or dropped silently)
        (data_frame((1 << 62) + 5, b"a"), "outside 0..0x[0-9a-f]+ that no journal can hold.*index=0x4000000000000005"),
        (data_frame(-7, b"a"), "that no journal can hold.*index=-0x7"),
        (data_frame(DAY1, b"a") + data_frame(DAY1 + 1, b"b") + data_frame(DAY1 + 3, b"c"),
         "skipped messages.*last_index=0x"),
        (data_frame(MAX_INDEX, b"a") + data_frame(MAX_INDEX + 1, b"b"),
         "no journal can hold.*index=0x2cc09f0000000000"),
    ],
)
def test_client_rejects_hostile_frames(payload: bytes, message: str) -> None:
    fake = _serve_after_subscribe(payload, close=False)
    tracemalloc.start()
    try:
        with quiet_reader(fake.port, reconnect=True) as reader:
            with pytest.raises(RemoteError, match=message):
                while True:
                    reader.next_reader()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # a hostile size is refused before any buffer of that size exists
    fake.join()


def test_client_rejects_data_before_subscribe_reply() -> None:
    def script(conn: socket.socket, k: int) -> None:
        fake.request(conn)
        conn.sendall(data_frame(DAY1, b"x"))
        time.sleep(0.5)

    fake = FakeSource(script)
    with pytest.raises(RemoteError, match="before the subscribe reply"):
        quiet_reader(fake.port)
    fake.join()


@pytest.mark.parametrize("cut", [5, 12 + 3])
def test_client_connection_closed_mid_frame(cut: int) -> None:
    fake = _serve_after_subscribe(data_frame(DAY1, b"whole") + data_frame(DAY1 + 1, b"0123456789")[:cut])
    with quiet_reader(fake.port, reconnect=False) as reader:
        assert reader.next_reader().body() == b"whole"
        with pytest.raises(RemoteError, match="middle of a frame") as info:
            reader.next_reader()
    assert info.value.last_index == DAY1
    fake.join()


def test_client_closed_at_frame_boundary_without_reconnect() -> None:
    fake = _serve_after_subscribe(data_frame(DAY1, b"whole"))
    with quiet_reader(fake.port, reconnect=False) as reader:
        assert reader.next_reader().index == DAY1
        with pytest.raises(RemoteError, match="connection lost"):
            reader.next_reader()
    fake.join()


def test_client_gives_up_on_a_source_that_keeps_cutting_frames() -> None:
    """Reconnecting resumes at the last delivered index; a source that never completes a frame is an error."""

    def script(conn: socket.socket, k: int) -> None:
        raw = fake.request(conn)
        if k == 0:
            assert raw == FROM_START
            conn.sendall(REPLY_MINUS_1 + data_frame(DAY1, b"ok") + data_frame(DAY1 + 1, b"cut")[:14])
        else:
            assert raw == W.REQUEST.pack(1, DAY1)  # resume: subscribe to the last delivered index
            conn.sendall(reply(DAY1) + data_frame(DAY1, b"ok") + data_frame(DAY1 + 1, b"cut")[:14])

    fake = FakeSource(script, connections=10)
    with quiet_reader(fake.port, reconnect=True, reconnect_timeout=5) as reader:
        assert reader.next_reader().body() == b"ok"
        with pytest.raises(RemoteError, match="keeps dropping"):
            reader.next_reader()
    fake.stop()
    fake.join()
    assert len(fake.requests) >= 5  # it did try to resume, several times


def test_client_reconnect_timeout_when_source_is_gone() -> None:
    fake = _serve_after_subscribe(data_frame(DAY1, b"only"))
    with quiet_reader(fake.port, reconnect=True, reconnect_timeout=0.5) as reader:
        assert reader.next_reader().index == DAY1
        fake.join()  # listener closed: reconnects are refused
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match="could not resume"):
            reader.next_reader()
        assert time.monotonic() - t0 < 3


def test_client_nodata_on_heartbeats_only_then_data() -> None:
    go = threading.Event()

    def script(conn: socket.socket, k: int) -> None:
        fake.request(conn)
        conn.sendall(REPLY_MINUS_1 + HEARTBEAT)
        go.wait(5)
        conn.sendall(HEARTBEAT + data_frame(DAY1, b"late"))
        fake.request(conn)

    fake = FakeSource(script)
    with quiet_reader(fake.port, timeout=0.2) as reader:
        t0 = time.monotonic()
        with pytest.raises(NoData):
            reader.next_reader()
        assert 0.15 <= time.monotonic() - t0 < 2
        go.set()
        reader.timeout = 5
        assert reader.next_reader().body() == b"late"
    fake.join()


def test_client_no_subscribe_reply() -> None:
    def script(conn: socket.socket, k: int) -> None:
        fake.request(conn)
        time.sleep(1.0)

    fake = FakeSource(script)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="no reply"):
        RemoteChronicleReader("127.0.0.1", fake.port, connect_timeout=0.3, reconnect=False)
    assert time.monotonic() - t0 < 3
    fake.join()


def test_client_connection_refused() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(RemoteError, match="cannot"):
        RemoteChronicleReader("127.0.0.1", port, reconnect=False)
    # never connected: a wrong address fails at once (it used to be retried for reconnect_timeout, then called
    # "lost the connection"), naming host:port
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=f"nothing listens on 127.0.0.1:{port} \\(connection refused\\)"):
        RemoteChronicleReader("127.0.0.1", port, reconnect=True, reconnect_timeout=0.3)
    with pytest.raises(RemoteError, match="connection refused"):
        RemoteChronicleReader("127.0.0.1", port, reconnect=True, reconnect_timeout=30)
    assert time.monotonic() - t0 < 3


def test_where_argument_parsing() -> None:
    from pychro.remote import start_index_of

    assert start_index_of("start") == -1
    assert start_index_of("end") == start_index_of("now") == -2
    assert start_index_of("2015-02-21") == start_index_of(dt.date(2015, 2, 21)) == DAY1
    assert start_index_of(dt.datetime(2015, 2, 21, 23, 59)) == DAY1
    assert start_index_of(DAY1 + 3) == DAY1 + 3
    from pychro import VanillaConfig

    hourly = VanillaConfig(cycle="HOURS")
    assert start_index_of(dt.datetime(2015, 2, 21, 13, 30), hourly) == (395701 << 40)
    with pytest.raises(ValueError):
        start_index_of("yesterday-ish")
    with pytest.raises(ValueError):
        start_index_of(-3)


def test_import_adds_no_heavy_modules() -> None:
    """``import pychro.remote`` loads nothing of numpy/pandas/pyarrow beyond what ``import pychro`` does."""
    import subprocess
    import sys

    def heavy(statement: str) -> str:
        code = (
            f"import sys\n{statement}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pandas', 'pyarrow')))"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              check=True).stdout

    remote = heavy("import pychro.remote\nfrom pychro.remote import RemoteChronicleReader, replicate")
    assert remote == heavy("import pychro")
    assert "pandas" not in remote and "pyarrow" not in remote
