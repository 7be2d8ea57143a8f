"""The source server holds bounded resources whatever its clients do (issue 12): many sequential remote-append
connections, more idle connections than select() can watch, a connection cap, oversized SUBMITs, journals with many
data files, a full disk under a SUBMIT, an index slot that a writer fills between two looks, read-only by default.

Servers that must be measured from outside (descriptors, threads, peak RSS) run as ``pychro serve`` children.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pychro.writer as pychro_writer
from pychro import CorruptDataError, RemoteError, VanillaChronicleWriter, VanillaConfig
from pychro.journal import Journal
from pychro.remote import RemoteChronicleWriter, serve
from pychro.remote import server as server_module
from pychro.remote import tail as tail_module
from pychro.remote.tail import JournalTail

pytestmark = [pytest.mark.network, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT = struct.pack("<iq", -128, 0)
ACK, NACK = -129, -130
SUBMIT = 20


# -- helpers -------------------------------------------------------------------------------------------------------
def recv_n(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def subscribe(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(struct.pack("<qq", 1, -1))  # SUBSCRIBE from start
    assert recv_n(sock, 12) == struct.pack("<iq", -126, -1)
    return sock


def read_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` data frames (index, body), skipping heartbeats: the exact bytes on the wire."""
    out = []
    while len(out) < count:
        size, index = struct.unpack("<iq", recv_n(sock, 12))
        if size < 0:
            assert size == -128, size
            continue
        out.append((index, recv_n(sock, size)))
    return out


def body_of(w: int, i: int) -> bytes:
    return f"writer {w} message {i} ".encode() * (1 + (w + i) % 5)


class ServeChild:
    """``pychro serve`` in a child process (so its descriptors, threads and memory can be read in /proc)."""

    def __init__(self, journal: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pychro", "serve", str(journal), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "127.0.0.1:" not in line:
            self.stop()
            raise AssertionError(f"no serving line: {line!r}")
        self.port = int(line.split("127.0.0.1:")[1].split()[0])
        self.pid = self.proc.pid
        self.stderr = ""

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def status(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def mappings_of(self, folder: Path) -> int:
        with open(f"/proc/{self.pid}/maps") as f:
            return sum(str(folder) in line for line in f)

    def settle(self, threads_at_most: int, timeout: float = 10.0) -> None:
        """Wait for ended sessions' threads to finish (they end right after their client closes)."""
        deadline = time.monotonic() + timeout
        while self.status("Threads") > threads_at_most and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        _, err = self.proc.communicate(timeout=20)
        self.stderr = err
        return err


@pytest.fixture
def children() -> Iterator[list[ServeChild]]:
    started: list[ServeChild] = []
    try:
        yield started
    finally:
        for child in started:
            child.stop()


def report(name: str, child: ServeChild) -> None:
    print(f"\n{name}: server fds={child.fds()} threads={child.status('Threads')} "
          f"rss={child.status('VmRSS') / 1024:.1f} MB peak={child.status('VmHWM') / 1024:.1f} MB")


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"needs {need} descriptors; RLIMIT_NOFILE hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


# -- 1. remote appends: one appender for all sessions ----------------------------------------------------------------
@pytest.mark.slow
def test_2000_sequential_remote_append_connections(tmp_path: Path, children: list[ServeChild]) -> None:
    """Was: one appender (a data file, a descriptor, a 64 MiB mapping) per connection, never released; after
    ~1,020 connections select() failed and subscribers got nothing."""
    journal = tmp_path / "j"
    child = ServeChild(journal, "--allow-append")
    children.append(child)
    indexes = []
    for i in range(2000):
        with RemoteChronicleWriter("127.0.0.1", child.port, timeout=10) as remote:
            indexes.append(remote.submit(b"message %d" % i))
    assert indexes == sorted(set(indexes))
    sock = subscribe(child.port)
    try:
        got = read_frames(sock, 2000)
    finally:
        sock.close()
    assert got == [(index, b"message %d" % i) for i, index in enumerate(indexes)]
    child.settle(threads_at_most=3)
    report("after 2,000 remote-append connections", child)
    assert child.fds() < 100
    assert child.status("Threads") <= 3  # main, the acceptor's caller, at most one session finishing
    assert child.mappings_of(journal) <= 2  # the one appender's data file and the index file
    assert all(len(list(cycle.glob("data-*"))) == 1 for cycle in journal.iterdir())  # one appender's file
    assert child.status("VmRSS") < 300 * 1024


# -- 2. poll instead of select(); a connection cap ------------------------------------------------------------------
@pytest.mark.slow
def test_1100_idle_connections_while_a_subscriber_streams(tmp_path: Path, children: list[ServeChild]) -> None:
    """Was: descriptors above 1023 broke select() in every new session."""
    raise_nofile(2600)
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal) as writer:
        appender = writer.get_appender()
        first = [(appender.write_bytes(body_of(0, i)), appender.finish())[1] for i in range(10)]
    child = ServeChild(journal, "--max-connections", "1200")
    children.append(child)
    good = subscribe(child.port)
    idle: list[socket.socket] = []
    try:
        assert read_frames(good, 10) == [(index, body_of(0, i)) for i, index in enumerate(first)]
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", child.port), timeout=10)
            sock.sendall(b"\x01")  # a sixteenth of a request: the session waits for the rest
            idle.append(sock)
        deadline = time.monotonic() + 30
        while child.fds() < 1100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.fds() >= 1100  # the server really holds them all (descriptor numbers beyond 1024)
        with VanillaChronicleWriter(journal) as writer:
            appender = writer.get_appender()
            more = [(appender.write_bytes(body_of(1, i)), appender.finish())[1] for i in range(10)]
        assert read_frames(good, 10) == [(index, body_of(1, i)) for i, index in enumerate(more)]
        late = subscribe(child.port)  # a session whose descriptor is above 1024 streams too
        try:
            got = read_frames(late, 20)
        finally:
            late.close()
        assert [index for index, _ in got] == first + more
        report("with 1,100 idle connections", child)
    finally:
        good.close()
        for sock in idle:
            sock.close()
    child.settle(threads_at_most=3, timeout=30)
    report("after the 1,100 idle connections closed", child)
    assert child.fds() < 100


def test_connections_beyond_the_cap_are_refused_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal) as writer:
        appender = writer.get_appender()
        appender.write_bytes(b"first")
        index = appender.finish()
    with serve(journal, background=True, max_connections=2) as server:
        a = subscribe(server.port)
        b = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            deadline = time.monotonic() + 10
            while server.clients < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as refused:
                assert refused.recv(1) == b""  # closed at once
            deadline = time.monotonic() + 10
            while not any("max_connections=2" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "no log line for the refused client"
                time.sleep(0.01)
            assert read_frames(a, 1) == [(index, b"first")]  # the existing ones keep working
            b.sendall(struct.pack("<qq", 10, index))  # QUERY
            assert struct.unpack("<iq", recv_n(b, 12)) == (-126, index)
        finally:
            a.close()
            b.close()
        deadline = time.monotonic() + 10
        while server.clients and time.monotonic() < deadline:
            time.sleep(0.01)
        with subscribe(server.port) as again:  # room again once clients left
            assert read_frames(again, 1) == [(index, b"first")]
    with pytest.raises(ValueError, match="max_connections"):
        serve(journal, max_connections=0)


# -- 3. a SUBMIT above the message capacity is refused before its body is buffered ----------------------------------
def test_oversized_submit_is_refused_and_the_session_goes_on(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    config = VanillaConfig(data_block_size=1 << 16, index_block_size=1 << 12, message_capacity=4096)
    with serve(tmp_path / "j", config=config, allow_submit=True, background=True) as server:
        with RemoteChronicleWriter("127.0.0.1", server.port, timeout=10) as remote:
            with pytest.raises(RemoteError, match="refused"):
                remote.submit(b"x" * (1 << 16))  # one byte more than a block can hold with its header
            assert any("above the largest message" in r.getMessage() for r in caplog.records)
            index = remote.submit(b"y" * ((1 << 16) - 4))  # the largest message fits
            assert remote.submit(b"z") == index + 1


@pytest.mark.slow
def test_12_concurrent_oversized_submits_keep_the_server_small(tmp_path: Path, children: list[ServeChild]) -> None:
    """Was: each body (up to 128 MiB) was read into memory before it was checked: 1.86 GB for 12 x 120 MiB."""
    child = ServeChild(tmp_path / "j", "--allow-append")
    children.append(child)
    declared = 120 << 20
    chunk = b"\xab" * (1 << 20)
    replies: list[Any] = []

    def client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", child.port), timeout=60) as sock:
                sock.sendall(struct.pack("<qq", SUBMIT, declared))
                for _ in range(declared // len(chunk)):
                    sock.sendall(chunk)
                replies.append(struct.unpack("<iq", recv_n(sock, 12))[0])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            replies.append(exc)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert replies == [NACK] * 12
    with RemoteChronicleWriter("127.0.0.1", child.port, timeout=10) as remote:
        index = remote.submit(b"after")
    with subscribe(child.port) as sock:
        assert read_frames(sock, 1) == [(index, b"after")]
    report("after 12 concurrent 120 MiB SUBMITs", child)
    assert child.status("VmHWM") < 300 * 1024  # peak RSS, kB
    assert "above the largest message" in child.stop()


# -- 4. journals with many data files -------------------------------------------------------------------------------
SMALL = VanillaConfig(data_block_size=1 << 16, index_block_size=1 << 12, message_capacity=4096, thread_id_bits=22)


def _check_streamed(journal: Path, expected: dict[int, bytes]) -> None:
    with serve(journal, config=SMALL, background=True) as server, subscribe(server.port) as sock:
        got = read_frames(sock, len(expected))
    assert got == sorted(expected.items())


@pytest.mark.slow
def test_serve_100_writer_restarts_in_one_cycle(tmp_path: Path) -> None:
    """Was: tail.py kept 32 data files mapped and closed the oldest while a batch still used it (TypeError)."""
    journal = tmp_path / "j"
    expected = {}
    for w in range(100):
        with VanillaChronicleWriter(journal, config=SMALL) as writer:
            appender = writer.get_appender()
            for i in range(3):
                appender.write_bytes(body_of(w, i))
                expected[appender.finish()] = body_of(w, i)
    assert len(list(journal.rglob("data-*"))) == 100
    _check_streamed(journal, expected)


@pytest.mark.slow
def test_serve_40_writer_threads(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    expected: dict[int, bytes] = {}
    lock = threading.Lock()
    with VanillaChronicleWriter(journal, config=SMALL) as writer:
        def run(w: int) -> None:
            appender = writer.get_appender()
            for i in range(50):
                appender.write_bytes(body_of(w, i))
                index = appender.finish()
                with lock:
                    expected[index] = body_of(w, i)

        threads = [threading.Thread(target=run, args=(w,)) for w in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(expected) == 2000
    assert len(list(journal.rglob("data-*"))) >= 40
    _check_streamed(journal, expected)


def test_tail_keeps_a_bounded_number_of_mappings_across_batches(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    expected = {}
    for w in range(tail_module._MAX_MAPPED_DATA_FILES + 8):
        with VanillaChronicleWriter(journal, config=SMALL) as writer:
            appender = writer.get_appender()
            appender.write_bytes(body_of(w, 0))
            expected[appender.finish()] = body_of(w, 0)
    tail = JournalTail(Journal(journal, SMALL))
    try:
        tail.seek_start()
        got = 0
        while got < len(expected):
            buffers, count = tail.next_frames(max_messages=5)
            assert count
            got += count
            del buffers
            assert len(tail._data) <= tail_module._MAX_MAPPED_DATA_FILES + 5
        assert len(tail._data) <= tail_module._MAX_MAPPED_DATA_FILES
    finally:
        tail.close()


# -- 6. an empty slot followed by filled ones is re-read before it is called corruption -----------------------------
def test_empty_slot_seen_before_a_writer_filled_it_is_not_corruption(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The first look at the index reads slot k empty and slot k+1 filled (a writer filled both in between):
    the tail reads slot k again and streams, instead of raising CorruptDataError."""
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal, config=SMALL) as writer:
        appender = writer.get_appender()
        indexes = []
        for i in range(5):
            appender.write_bytes(body_of(0, i))
            indexes.append(appender.finish())
    real = JournalTail._slots
    looks = []

    def racy(mf: Any, slot: int, count: int) -> Any:
        view = real(mf, slot, count)
        if not looks:  # the first look: slot 0 not yet written, the later ones already
            view = view.copy()
            view[0] = 0
        looks.append(slot)
        return view

    monkeypatch.setattr(JournalTail, "_slots", staticmethod(racy))
    tail = JournalTail(Journal(journal, SMALL))
    try:
        tail.seek_start()
        assert tail.next_frames()[1] == 5
        assert len(looks) == 2
    finally:
        tail.close()


def test_a_slot_that_stays_empty_is_corruption_after_a_grace(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal, config=SMALL) as writer:
        appender = writer.get_appender()
        for i in range(5):
            appender.write_bytes(body_of(0, i))
            appender.finish()
    index_file = next(journal.rglob("index-0"))
    with open(index_file, "r+b") as f:
        f.seek(16)
        f.write(bytes(8))  # slot 2 emptied: a real hole
    tail = JournalTail(Journal(journal, SMALL))
    try:
        tail.seek_start()
        assert tail.next_frames()[1] == 2  # the messages before the hole
        assert tail.next_frames()[1] == 0  # the hole: wait for the grace
        time.sleep(tail_module._HOLE_GRACE_S + 0.05)
        with pytest.raises(CorruptDataError, match="later slots are filled"):
            tail.next_frames()
    finally:
        tail.close()


# -- 5. read-only by default -----------------------------------------------------------------------------------------
def test_serve_is_read_only_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    (tmp_path / "j").mkdir()
    with serve(tmp_path / "j", background=True) as server:
        with RemoteChronicleWriter("127.0.0.1", server.port, timeout=10) as remote:
            for _ in range(3):
                with pytest.raises(RemoteError, match="does not support remote append"):
                    remote.submit(b"x" * 1000)
    assert not list((tmp_path / "j").rglob("data-*"))
    assert sum("read-only" in r.getMessage() for r in caplog.records) == 1  # once per session


def test_serve_warns_beyond_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    assert server_module._is_loopback("127.0.0.1") and server_module._is_loopback("::1")
    assert server_module._is_loopback("127.8.0.1") and server_module._is_loopback("localhost")
    assert not server_module._is_loopback("0.0.0.0") and not server_module._is_loopback("::")
    assert not server_module._is_loopback("10.1.2.3")
    (tmp_path / "j").mkdir()
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    with serve(tmp_path / "j"):  # bound on loopback: no warning
        pass
    assert not caplog.records
    monkeypatch.setattr(server_module, "_is_loopback", lambda host: False)  # as if bound to 0.0.0.0
    with serve(tmp_path / "j", allow_submit=True):
        pass
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "beyond loopback" in text and "no authentication" in text


def test_cli_serve_options(tmp_path: Path, children: list[ServeChild]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "pychro", "serve", "--help"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert "--allow-append" in r.stdout and "--max-connections" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pychro", "serve", str(tmp_path / "j"), "--max-connections", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "positive number of connections" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pychro", "serve", str(tmp_path / "j"), "--port", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "no such journal folder" in r.stderr and "--allow-append" in r.stderr
    assert not (tmp_path / "j").exists()
    (tmp_path / "j").mkdir()
    read_only = ServeChild(tmp_path / "j")
    children.append(read_only)
    with RemoteChronicleWriter("127.0.0.1", read_only.port, timeout=10) as remote:
        with pytest.raises(RemoteError, match="does not support remote append"):
            remote.submit(b"x")
    writable = ServeChild(tmp_path / "j", "--allow-append")
    children.append(writable)
    with RemoteChronicleWriter("127.0.0.1", writable.port, timeout=10) as remote:
        assert remote.submit(b"x") >= 0


# -- 7. a full disk under a SUBMIT ------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["start_excerpt", "write_bytes", "finish"])
def test_submit_on_a_full_disk_is_refused_and_readers_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture, where: str) -> None:
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    journal = tmp_path / "j"
    with serve(journal, allow_submit=True, background=True) as server:
        with RemoteChronicleWriter("127.0.0.1", server.port, timeout=10) as remote:
            first = remote.submit(b"before")
            sub = subscribe(server.port)
            try:
                assert read_frames(sub, 1) == [(first, b"before")]
                real = getattr(pychro_writer.Appender, where)

                def full(self: Any, *args: Any) -> Any:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                monkeypatch.setattr(pychro_writer.Appender, where, full)
                with pytest.raises(RemoteError, match="refused"):
                    remote.submit(b"on a full disk")
                assert any("No space left" in r.getMessage() for r in caplog.records)
                monkeypatch.setattr(pychro_writer.Appender, where, real)
                second = remote.submit(b"after")  # the same session goes on
                assert read_frames(sub, 1) == [(second, b"after")]  # and so does the subscriber
                assert server.clients == 2
            finally:
                sub.close()


TINY_FS_CHILD = """
import sys
from pychro import VanillaChronicleWriter, VanillaConfig
cfg = VanillaConfig(data_block_size=1 << 20, index_block_size=1 << 16)
with VanillaChronicleWriter(sys.argv[1], config=cfg) as w:
    a = w.get_appender()
    try:
        for i in range(100_000):
            a.write_bytes(b"x" * 4000)
            a.finish()
    except OSError:
        print("clean", flush=True)
"""


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_submit_on_a_real_full_filesystem(tiny_fs: Path, children: list[ServeChild]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = subprocess.run([sys.executable, "-c", TINY_FS_CHILD, str(tiny_fs / "probe")], capture_output=True,
                           text=True, env=env, timeout=120)
    if probe.returncode == -signal.SIGBUS:
        pytest.skip("the row writer does not reserve disk space yet (SIGBUS on a full tmpfs): issue 12, item 3")
    assert probe.stdout.strip() == "clean", probe.stderr
    subprocess.run(["rm", "-rf", str(tiny_fs / "probe")], check=True)
    journal = tiny_fs / "j"
    child = ServeChild(journal, "--allow-append", "--data-block-size", str(1 << 20), "--index-block-size",
                       str(1 << 16))
    children.append(child)
    acked = []
    with RemoteChronicleWriter("127.0.0.1", child.port, timeout=10) as remote:
        for i in range(10_000):  # 4 MiB of 4 kB messages cannot all fit
            try:
                acked.append((remote.submit(bytes([i % 256]) * 4000), bytes([i % 256]) * 4000))
            except RemoteError as exc:
                assert "refused" in str(exc)
                break
        else:
            raise AssertionError("the disk never filled up")
        with pytest.raises(RemoteError, match="refused"):
            remote.submit(b"y" * 4000)  # still full, still refused, still connected
    assert child.proc.poll() is None
    with subscribe(child.port) as sock:
        assert read_frames(sock, len(acked)) == acked  # everything acknowledged is there
    assert "No space left" in child.stop()
    assert child.proc.returncode == 130  # stopped by SIGINT: the Ctrl-C exit code (issue 13), not a crash
