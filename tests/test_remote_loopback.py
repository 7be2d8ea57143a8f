"""RemoteChronicleReader / RemoteChronicleWriter against pychro's own source server over loopback."""

from __future__ import annotations

import datetime as dt
import random
import select
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import FakeClock, sample_body, sample_fields

from pychro import (
    JournalNotFoundError,
    NoData,
    RemoteError,
    VanillaChronicleReader,
    VanillaChronicleWriter,
    VanillaConfig,
)
from pychro.remote import RemoteChronicleReader, RemoteChronicleWriter, serve

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]

DAY1, DAY2 = 0x40670000000000, 0x40680000000000
REPO = Path(__file__).resolve().parents[1]


def remote(port: int, where: Any = "start", **kw: Any) -> RemoteChronicleReader:
    kw.setdefault("timeout", 0.5)
    kw.setdefault("connect_timeout", 5.0)
    return RemoteChronicleReader("127.0.0.1", port, where, **kw)


def write_ints(path: Path, values: list[int], clock: Any = None, config: VanillaConfig | None = None) -> list[int]:
    with VanillaChronicleWriter(path, clock=clock, config=config) as writer:
        appender = writer.get_appender()
        out = []
        for v in values:
            appender.write_int(v)
            out.append(appender.finish())
    return out


def read_all(reader: RemoteChronicleReader) -> list[tuple[int, bytes]]:
    return [(e.index, e.body()) for e in reader]  # type: ignore[misc]


def local_all(path: Path, **kw: Any) -> list[tuple[int, bytes]]:
    with VanillaChronicleReader(path, **kw) as reader:
        return [(e.index, e.body()) for e in reader]  # type: ignore[misc]


# -- Java journals through our source ---------------------------------------------------------------------
def test_java_340_every_field_remotely(java_3_4_0: Path) -> None:
    with serve(java_3_4_0, background=True) as server, remote(server.port) as reader:
        n = 0
        for excerpt in reader:
            day, cmd = divmod(n, 10)
            assert excerpt.index == (DAY1, DAY2)[day] + cmd
            assert excerpt.body() == sample_body(cmd)
            got = [(kind, getattr(excerpt, f"read_{kind}")()) for kind, _ in sample_fields(cmd)]
            assert got == sample_fields(cmd)
            assert excerpt.remaining() == 0
            n += 1
        assert n == 20


def test_java_366_every_field_remotely(java_3_6_6: Any) -> None:
    expected = java_3_6_6.expected
    with serve(java_3_6_6.journal, background=True) as server, remote(server.port) as reader:
        n = 0
        for excerpt, row in zip(reader, expected, strict=True):
            assert excerpt.index == row["index"]
            assert excerpt.get_length() == row["len"]
            got = {
                "w": excerpt.read_byte(), "i": excerpt.read_int(), "l": excerpt.read_long(),
                "d": excerpt.read_double(), "s": excerpt.read_string(), "c": ord(excerpt.read_char()),
                "a": excerpt.read_stop_bit(), "b": excerpt.read_stop_bit(), "rem": excerpt.remaining(),
            }
            assert got == {k: row[k] for k in got}
            n += 1
        assert n == 3000


# -- where to start ---------------------------------------------------------------------------------------
def test_from_index_inclusive_and_from_the_last_one(java_3_4_0: Path) -> None:
    everything = local_all(java_3_4_0)
    with serve(java_3_4_0, background=True) as server:
        for start in (DAY1, DAY1 + 7, DAY2, DAY2 + 9):
            with remote(server.port, start) as reader:
                assert read_all(reader) == [m for m in everything if m[0] >= start]
                # only existing indexes are subscribed to; the last one comes first from the end anyway
                assert reader.subscribed_at == (start if start != DAY2 + 9 else -2)


def test_from_date_and_missing_starts(tmp_path: Path) -> None:
    """Days 1 and 3 have messages, day 2 none: starts inside the gap go to day 3's first message."""
    journal = tmp_path / "j"
    d1 = write_ints(journal, [1, 2, 3], FakeClock(dt.datetime(2020, 1, 1, 12)))
    d3 = write_ints(journal, [4, 5], FakeClock(dt.datetime(2020, 1, 3, 12)))
    cfg = VanillaConfig()
    day3 = cfg.index_of(cfg.cycle_of(dt.date(2020, 1, 3)), 0)
    assert d3[0] == day3
    with serve(journal, background=True) as server:
        cases = [
            (dt.date(2020, 1, 1), d1 + d3),
            ("2020-01-01", d1 + d3),
            (dt.datetime(2020, 1, 1, 23, 59), d1 + d3),
            (dt.date(2019, 12, 25), d1 + d3),  # before the first cycle
            (dt.date(2020, 1, 2), d3),  # an empty day
            (d1[0] + 3, d3),  # past the end of a finished day
            (dt.date(2020, 1, 3), d3),
            (d3[1], d3[1:]),
        ]
        for where, want in cases:
            with remote(server.port, where) as reader:
                assert [i for i, _ in read_all(reader)] == want, where
        # a start after the end (in the past by the wall clock, but after the last message): nothing yet,
        # then exactly the messages from there on
        with remote(server.port, dt.date(2020, 1, 5)) as reader:
            with pytest.raises(NoData):
                reader.next_reader()
            write_ints(journal, [6], FakeClock(dt.datetime(2020, 1, 4, 12)))  # before the start: skipped
            d5 = write_ints(journal, [7, 8], FakeClock(dt.datetime(2020, 1, 5, 1)))
            reader.timeout = 5
            assert [reader.next_reader().index for _ in range(2)] == d5


def test_from_end_only_new_messages(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    old = write_ints(journal, list(range(5)))
    with serve(journal, background=True) as server, remote(server.port, "end") as reader:
        with pytest.raises(NoData):
            reader.next_reader()
        new = write_ints(journal, [10, 11, 12])
        reader.timeout = 5
        got = [(reader.next_reader().index, ) for _ in range(3)]
        assert [g[0] for g in got] == new
        assert new[0] == old[-1] + 1


def test_empty_journal_from_start_and_from_end(tmp_path: Path) -> None:
    journal = tmp_path / "empty"
    journal.mkdir()  # an empty journal: a folder with nothing in it yet
    with serve(journal, background=True) as server:
        start = remote(server.port, "start", timeout=0.3)
        end = remote(server.port, "end", timeout=0.3)
        for reader in (start, end):
            with pytest.raises(NoData):
                reader.next_reader()
        written = write_ints(journal, [41, 42])
        for reader in (start, end):
            reader.timeout = 5
            got = [reader.next_reader() for _ in range(2)]
            assert [e.index for e in got] == written  # from-end on an empty journal drops nothing
            assert [e.read_int() for e in got] == [41, 42]
            reader.close()


def test_a_missing_folder_is_served_only_to_append_to(tmp_path: Path) -> None:
    """A read-only server of a mistyped path would wait forever for messages: refused, and nothing created."""
    missing = tmp_path / "typo"
    with pytest.raises(JournalNotFoundError, match=r"no such journal folder.*--allow-append"):
        serve(missing, background=True)
    assert not missing.exists()
    with serve(missing, background=True, allow_submit=True):
        assert missing.is_dir()


def test_hourly_cycles_with_config(tmp_path: Path) -> None:
    hourly = VanillaConfig(cycle="HOURS")
    journal = tmp_path / "hourly"
    h1 = write_ints(journal, [1, 2], FakeClock(dt.datetime(2021, 6, 1, 10, 5)), hourly)
    h3 = write_ints(journal, [3], FakeClock(dt.datetime(2021, 6, 1, 12, 59)), hourly)
    assert [i >> 40 for i in h1 + h3] == [hourly.cycle_of(dt.datetime(2021, 6, 1, h)) for h in (10, 10, 12)]
    with serve(journal, background=True, config=hourly) as server:
        with remote(server.port, dt.datetime(2021, 6, 1, 11, 30), config=hourly) as reader:
            assert [i for i, _ in read_all(reader)] == h3
        with remote(server.port, dt.datetime(2021, 6, 1, 10, 0), config=hourly) as reader:
            assert [i for i, _ in read_all(reader)] == h1 + h3


# -- bodies of every size, several writers --------------------------------------------------------------------
def test_random_sizes_and_interleaved_writers(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    rng = random.Random(5)
    sizes = [rng.choice([0, 1, 3, 17, 100, 1000, 5000, 70_000]) for _ in range(600)] + [300_000, 2, 1_000_000, 0]
    with VanillaChronicleWriter(journal) as writer:

        def work(part: list[int]) -> None:
            appender = writer.get_appender()
            for n in part:
                appender.start_excerpt(max(n, 1))
                appender.write_bytes(bytes([n % 251]) * n)
                appender.finish()

        threads = [threading.Thread(target=work, args=(sizes[k::3],)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    expected = local_all(journal)
    assert len(expected) == len(sizes)
    with serve(journal, background=True) as server, remote(server.port) as reader:
        assert read_all(reader) == expected


def test_excerpts_stay_valid_after_later_reads(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    write_ints(journal, list(range(100_000)))
    with serve(journal, background=True) as server, remote(server.port) as reader:
        first = reader.next_reader()
        rest = sum(1 for _ in reader)
        assert rest == 99_999
        assert first.read_int() == 0 and first.index is not None


# -- live appends, other processes, several clients ---------------------------------------------------------------
_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pychro import VanillaChronicleWriter
    path, n = sys.argv[1], int(sys.argv[2])
    with VanillaChronicleWriter(path) as w:
        a = w.get_appender()
        for i in range(n):
            a.write_int(i)
            a.write_string(f"m{i}")
            a.finish()
            if i % 100 == 99:
                time.sleep(0.01)
    """
)


def test_live_appends_by_another_process(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    journal.mkdir()
    with serve(journal, background=True) as server, remote(server.port, timeout=10) as reader:
        proc = subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(journal), "3000"], cwd=REPO)
        try:
            got = []
            for _ in range(3000):
                e = reader.next_reader()
                got.append((e.read_int(), e.read_string()))
            assert got == [(i, f"m{i}") for i in range(3000)]
            assert proc.wait(30) == 0
        finally:
            proc.kill()
            proc.wait(10)


def test_three_clients_at_once_with_live_appends(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    write_ints(journal, list(range(20_000)))
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    with serve(journal, background=True) as server:
        started = threading.Barrier(4, timeout=10)

        def client(k: int) -> None:
            try:
                with remote(server.port, timeout=10) as reader:
                    started.wait()
                    results[k] = [reader.next_reader().read_int() for _ in range(25_000)]
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        started.wait()
        assert server.clients == 3
        write_ints(journal, list(range(20_000, 25_000)))
        for t in threads:
            t.join(60)
    assert not errors
    assert [results[k] for k in range(3)] == [list(range(25_000))] * 3


# -- a source killed and restarted mid-stream -------------------------------------------------------------------
_SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pychro.remote import serve
    server = serve(sys.argv[1], port=int(sys.argv[2]))
    print(server.port, flush=True)
    server.serve_forever()
    """
)


def _start_source(journal: Path, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    deadline = time.monotonic() + 30
    while True:
        proc = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT, str(journal), str(port)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if line.strip().isdigit():
            return proc, int(line)
        err = proc.stderr.read() if ready else ""  # type: ignore[union-attr]
        _stop(proc)
        if time.monotonic() > deadline:  # e.g. the port is not free again yet
            raise AssertionError(f"source did not start: {err}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def test_source_killed_and_restarted_mid_stream(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    n = 400_000
    with VanillaChronicleWriter(journal) as writer:
        appender = writer.get_appender()
        for i in range(n):
            appender.write_int(i)
            appender.write_bytes(b"p" * 60)  # ~76 bytes a frame: far more than the socket buffers hold
            appender.finish()
    proc, port = _start_source(journal)
    try:
        with remote(port, timeout=20, reconnect_timeout=30) as reader:
            got = [reader.next_reader().read_int() for _ in range(50_000)]
            _stop(proc)
            proc, _ = _start_source(journal, port)
            more = write_ints(journal, [n, n + 1])
            for _ in range(n + 2 - 50_000):
                got.append(reader.next_reader().read_int())
            assert reader.reconnects >= 1
            assert reader.index == more[-1]
            with pytest.raises(NoData):
                reader.timeout = 0.3
                reader.next_reader()
        assert got == list(range(n + 2))  # every message exactly once, in order
    finally:
        _stop(proc)


def test_server_close_disconnects_clients(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    write_ints(journal, [1])
    server = serve(journal, background=True)
    reader = remote(server.port, reconnect_timeout=0.5)
    assert reader.next_reader().read_int() == 1
    t0 = time.monotonic()
    server.close()
    assert time.monotonic() - t0 < 3
    assert server.clients == 0
    with pytest.raises(RemoteError):
        reader.next_reader()
    reader.close()


# -- remote append ---------------------------------------------------------------------------------------
def test_remote_append_with_ack(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with serve(journal, background=True, allow_submit=True) as server, \
            RemoteChronicleWriter("127.0.0.1", server.port) as remote_w:
        appender = remote_w.get_appender()
        appender.write_long(-5)
        appender.write_double(2.5)
        appender.write_string("h\u00e9llo \U0001F600")
        appender.write_string(None)
        appender.write_boolean(True)
        appender.write_stop_bit(-1)
        appender.write_char("\u20ac")
        appender.write_bytes(b"\x00" * 300)  # grows the buffer past its first size
        first = appender.finish()
        assert appender.last_index == first
        indexes = remote_w.submit_many([bytes([k % 256]) * k for k in range(1000)])
        assert indexes == list(range(first + 1, first + 1001))
        with remote(server.port, first) as reader:
            e = reader.next_reader()
            assert e.index == first
            assert (e.read_long(), e.read_double(), e.read_string(), e.read_string(), e.read_boolean(),
                    e.read_stop_bit(), e.read_char(), e.read_bytes(300), e.remaining()) == (
                -5, 2.5, "h\u00e9llo \U0001F600", None, True, -1, "\u20ac", b"\x00" * 300, 0)
            assert [x.body() for x in reader] == [bytes([k % 256]) * k for k in range(1000)]
    with VanillaChronicleReader(journal) as local:
        e = local.excerpt_at(first)
        assert e.read_long() == -5
        assert local.get_end_index() == first + 1001


def test_remote_append_refused_and_discard(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()  # an empty journal: a read-only server does not create one
    with serve(tmp_path / "j", background=True, allow_submit=False) as server:
        with RemoteChronicleWriter("127.0.0.1", server.port) as remote_w:
            appender = remote_w.get_appender()
            appender.write_int(1)
            with pytest.raises(RemoteError, match="does not support"):
                appender.finish()
            appender.write_int(2)
            appender.discard()
            with pytest.raises(ValueError):
                appender.finish()
    assert not any((tmp_path / "j").iterdir())


def test_remote_append_seen_by_a_subscriber(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with serve(journal, background=True, allow_submit=True) as server:
        with remote(server.port, "end", timeout=5) as reader, RemoteChronicleWriter("127.0.0.1", server.port) as w:
            appender = w.get_appender()
            written = []
            for i in range(50):
                appender.write_int(i)
                written.append(appender.finish())
            got = [reader.next_reader() for _ in range(50)]
            assert [e.index for e in got] == written
            assert [e.read_int() for e in got] == list(range(50))


def test_reader_resumes_after_source_restart_without_messages_in_between(tmp_path: Path) -> None:
    """A subscriber from 'end' that has delivered nothing resumes at the end it was given, not a new end."""
    journal = tmp_path / "j"
    write_ints(journal, [1, 2])
    proc, port = _start_source(journal)
    try:
        with remote(port, "end", timeout=0.3, reconnect_timeout=30) as reader:
            with pytest.raises(NoData):
                reader.next_reader()
            _stop(proc)
            new = write_ints(journal, [3])  # written while no source runs
            proc, _ = _start_source(journal, port)
            reader.timeout = 10
            assert reader.next_reader().index == new[0]
    finally:
        _stop(proc)
