"""replicate(): a local copy of a remote journal, message for message at the same indexes."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import FakeClock

from pychro import Journal, RemoteError, VanillaChronicleReader, VanillaChronicleWriter
from pychro.frames import bulk
from pychro.remote import replicate, serve

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]


def messages(path: Path, config: Any = None) -> list[tuple[int, bytes]]:
    with VanillaChronicleReader(path, config=config) as reader:
        return [(e.index, e.body()) for e in reader]  # type: ignore[misc]


def test_replicates_java_340_two_days_at_the_same_indexes(java_3_4_0: Path, tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    with serve(java_3_4_0, background=True) as server:
        assert replicate("127.0.0.1", server.port, replica, timeout=0.5) == 20
    source = messages(java_3_4_0)
    assert messages(replica) == source
    assert Journal(replica).cycles() == Journal(java_3_4_0).cycles()
    assert [c.folder for c in Journal(replica).cycle_infos()] == ["20150221", "20150222"]


def test_replicates_java_366_and_resumes_without_duplicates(java_3_6_6: Any, tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    source = messages(java_3_6_6.journal)
    with serve(java_3_6_6.journal, background=True) as server:
        assert replicate("127.0.0.1", server.port, replica, stop_after=1234) == 1234
        assert messages(replica) == source[:1234]
        # resumes after the local end index: drops the echoed frame, no gap
        assert replicate("127.0.0.1", server.port, replica, timeout=0.5) == 3000 - 1234
        assert replicate("127.0.0.1", server.port, replica, timeout=0.3) == 0
    assert messages(replica) == source


def test_replicates_live_appends_and_several_cycles(tmp_path: Path) -> None:
    source = tmp_path / "source"
    replica = tmp_path / "replica"
    with VanillaChronicleWriter(source, clock=FakeClock(dt.datetime(2022, 3, 1, 9))) as w:
        a = w.get_appender()
        for i in range(100):
            a.write_int(i)
            a.finish()
    counts: list[int] = []
    with serve(source, background=True) as server:
        worker = threading.Thread(
            target=lambda: counts.append(replicate("127.0.0.1", server.port, replica, timeout=3.0)))
        worker.start()
        with VanillaChronicleWriter(source, clock=FakeClock(dt.datetime(2022, 3, 4, 9))) as w:
            a = w.get_appender()
            for i in range(5000):
                a.write_long(i)
                a.write_bytes(b"x" * (i % 50))
                a.finish()
        worker.join(60)
        assert not worker.is_alive()
    assert counts == [5100]
    assert messages(replica) == messages(source)
    assert len(Journal(replica).cycles()) == 2


def _foreign_write(replica: Path, when: dt.datetime) -> None:
    with VanillaChronicleWriter(replica, clock=FakeClock(when)) as w:
        a = w.get_appender()
        a.write_int(-1)
        a.finish()


@pytest.mark.parametrize(
    "after_index, foreign_day, message",
    [
        (0x40670000000003, 21, "diverged"),  # a foreign message in the cycle being replicated
        (0x40670000000009, 22, "does not line up"),  # one in the cycle the source moves to next
    ],
)
def test_replica_written_by_someone_else_is_refused(
    java_3_4_0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_index: int, foreign_day: int,
    message: str,
) -> None:
    replica = tmp_path / "replica"
    # runs of one message, so that the foreign write lands between two messages of the source's cycle
    # (with longer runs it lands between two runs: the same checks, later)
    monkeypatch.setattr(bulk, "RUN_ROWS", 1)

    def meddle(index: int) -> None:
        if index == after_index:
            _foreign_write(replica, dt.datetime(2015, 2, foreign_day, 12))

    with serve(java_3_4_0, background=True) as server:
        with pytest.raises(RemoteError, match=message):
            replicate("127.0.0.1", server.port, replica, timeout=0.5, on_message=meddle)
    got = messages(replica)
    source = messages(java_3_4_0)
    # everything before the clash is a faithful copy; then exactly one foreign message and nothing more
    clash = [k for k, (i, body) in enumerate(got) if body == b"\xff\xff\xff\xff"]
    assert len(clash) == 1
    assert got[: clash[0]] == source[: clash[0]]
    assert len(got) == clash[0] + (2 if message == "diverged" else 1)


def test_runs_of_any_sizes_roll_data_files_and_match_the_row_writer_byte_for_byte(tmp_path: Path) -> None:
    """Bodies of 0 to 300 bytes (word path, masked tails, byte tails) over two cycles, copied in runs into a
    replica whose small data blocks roll often: the replica's files equal what the row writer makes of the
    same messages in the same cycles."""
    import os

    import pychro

    source, replica, expected = tmp_path / "source", tmp_path / "replica", tmp_path / "expected"
    small = pychro.VanillaConfig(data_block_size=1 << 14, message_capacity=1024)
    days = [dt.datetime(2022, 3, 1, 9), dt.datetime(2022, 3, 2, 9)]
    bodies = [bytes((i + j) % 256 for j in range((i * 37) % 301)) for i in range(3000)]
    for target, cfg in ((source, None), (expected, small)):  # expected: the row writer, in this thread
        for day, part in ((days[0], bodies[:2000]), (days[1], bodies[2000:])):
            with VanillaChronicleWriter(target, config=cfg, clock=FakeClock(day)) as w:
                a = w.get_appender()
                for body in part:
                    a.write_bytes(body)
                    a.finish()
    with serve(source, background=True) as server:
        assert replicate("127.0.0.1", server.port, replica, config=small, timeout=0.5) == 3000
    assert messages(replica, small) == messages(source)
    for folder in ("20220301", "20220302"):
        names = sorted(os.listdir(expected / folder))
        assert names == sorted(os.listdir(replica / folder)) and len(names) > 5
        for name in names:
            assert (replica / folder / name).read_bytes() == (expected / folder / name).read_bytes(), name


def test_a_late_commit_into_a_left_cycle_is_copied_at_its_own_index(tmp_path: Path) -> None:
    # A writer starts a message on day 1, the clock passes midnight, another writer fills day 2 and the
    # replica follows it there; only then is the day-1 message committed (into day 1, §6).
    source = tmp_path / "source"
    replica = tmp_path / "replica"
    clock = FakeClock(dt.datetime(2022, 3, 1, 23, 59))
    counts: list[int] = []
    with VanillaChronicleWriter(source, clock=clock) as early, VanillaChronicleWriter(source, clock=clock) as w:
        a = w.get_appender()
        for i in range(10):
            a.write_int(i)
            a.finish()
        late = early.get_appender()
        late.start_excerpt()
        late.write_bytes(b"late message")
        with serve(source, background=True, clock=clock) as server:
            worker = threading.Thread(target=lambda: counts.append(
                replicate("127.0.0.1", server.port, replica, timeout=2.0, late_grace=30.0)))
            worker.start()
            try:
                day1 = Journal(source).config.cycle_of_ms(clock())
                _wait(lambda: (replica / "20220301").is_dir() and Journal(replica).count(day1) == 10)
                clock.set(dt.datetime(2022, 3, 2, 0, 0, 1))
                for i in range(10):
                    a.write_int(100 + i)
                    a.finish()
                _wait(lambda: Journal(replica).count(day1 + 1) == 10)  # the stream has left day 1
                assert late.finish() == Journal(source).config.index_of(day1, 10)
                for i in range(5):
                    a.write_int(200 + i)
                    a.finish()
            finally:
                worker.join(60)
    assert not worker.is_alive()
    assert counts == [26]
    assert messages(replica) == messages(source)
    assert Journal(replica).count(day1) == 11


def _wait(condition: Any, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_left_cycle_the_source_no_longer_holds_is_reported(tmp_path: Path) -> None:
    # The replica copied 5 messages of day 1; the source it resumes from holds only 3 there (another journal
    # behind the same address): the copy cannot be complete, and replicate says which cycle and seq.
    def journal(path: Path, day1: int, day2: int) -> None:
        clock = FakeClock(dt.datetime(2022, 3, 1, 9))
        with VanillaChronicleWriter(path, clock=clock) as w:
            a = w.get_appender()
            for i in range(day1 + day2):
                if i == day1:
                    clock.set(dt.datetime(2022, 3, 2, 9))
                a.write_int(i)
                a.finish()

    first, second, replica = tmp_path / "first", tmp_path / "second", tmp_path / "replica"
    journal(first, 5, 5)
    journal(second, 3, 10)
    with serve(first, background=True) as server:
        assert replicate("127.0.0.1", server.port, replica, stop_after=5) == 5
    with serve(second, background=True) as server:
        with pytest.raises(RemoteError, match="no longer holds") as err:
            replicate("127.0.0.1", server.port, replica, timeout=1.0)
    day1 = Journal(replica).cycles()[0]
    assert (err.value.context["cycle"], err.value.context["seq"]) == (day1, 4)
    assert err.value.context["index"] == Journal(replica).config.index_of(day1, 4)


def _days(path: Path, values: range, day: int = 1) -> None:
    with VanillaChronicleWriter(path, clock=FakeClock(dt.datetime(2022, 3, day, 9))) as w:
        a = w.get_appender()
        for v in values:
            a.write_long(v)
            a.finish()


def test_replica_of_another_journal_is_refused(tmp_path: Path) -> None:
    # a folder holding a different journal (same day, same sizes) used to get the source's messages appended
    # after its own last index, exit 0
    source, other = tmp_path / "source", tmp_path / "other"
    _days(source, range(100))
    _days(other, range(-10, 0))
    before = messages(other)
    with serve(source, background=True) as server:
        with pytest.raises(RemoteError, match=r"does not line up.*last message \(8 bytes\) differs") as err:
            replicate("127.0.0.1", server.port, other, timeout=0.5)
        assert err.value.context["index"] == before[-1][0]
        assert messages(other) == before  # nothing appended
        # a faithful partial copy resumes
        replica = tmp_path / "replica"
        assert replicate("127.0.0.1", server.port, replica, stop_after=40) == 40
        assert replicate("127.0.0.1", server.port, replica, timeout=0.5) == 60
    assert messages(replica) == messages(source)


def test_replica_whose_last_index_the_source_lacks_is_refused(tmp_path: Path) -> None:
    source, other = tmp_path / "source", tmp_path / "other"
    _days(source, range(5))
    _days(other, range(20), day=2)  # later day: the source has no such index
    with serve(source, background=True) as server:
        with pytest.raises(RemoteError, match="no longer holds message seq 19"):
            replicate("127.0.0.1", server.port, other, timeout=0.5)


def test_replicate_with_another_cycle_length_is_refused(tmp_path: Path) -> None:
    import pychro

    source, replica = tmp_path / "source", tmp_path / "replica"
    _days(source, range(5))
    with serve(source, background=True) as server:
        # daily indices read as hourly name 1972: refused, and the folder made for the copy is not left behind
        with pytest.raises(RemoteError, match=r"cycle 1972.*give replicate the source's config"):
            replicate("127.0.0.1", server.port, replica, timeout=0.5, config=pychro.VanillaConfig(cycle="HOURS"))
    assert not replica.exists()


@pytest.mark.parametrize("timeout", [0, 0.0, -1])
def test_replicate_timeout_must_be_positive(tmp_path: Path, timeout: float) -> None:
    # timeout=0 used to stop before the source was caught up to and report a partial copy as done
    with pytest.raises(ValueError, match="timeout must be above 0"):
        replicate("127.0.0.1", 1, tmp_path / "r", timeout=timeout)
    assert not (tmp_path / "r").exists()


def test_replicate_to_a_dead_port_fails_at_once_and_leaves_no_folder(tmp_path: Path) -> None:
    import socket

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=f"nothing listens on 127.0.0.1:{port}"):
        replicate("127.0.0.1", port, tmp_path / "replica", timeout=2.0)
    assert time.monotonic() - t0 < 3
    assert not (tmp_path / "replica").exists()


def test_replicate_to_a_silent_source_is_bounded_by_timeout(tmp_path: Path) -> None:
    # a port that accepts connections (the kernel's backlog) but never answers: the connect and the retries are
    # bounded by timeout, not by the 5 s connect timeout and 30 s reconnect_timeout
    import socket

    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match=r"could not resume within 0.5 s|no reply"):
            replicate("127.0.0.1", silent.getsockname()[1], tmp_path / "replica", timeout=0.5)
        assert time.monotonic() - t0 < 4
    assert not (tmp_path / "replica").exists()
