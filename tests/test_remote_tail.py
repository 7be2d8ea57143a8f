"""JournalTail: the source server's cursor, checked against the files it reads (no sockets)."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest

from helpers import FakeClock

from pychro import CorruptDataError, Journal, VanillaChronicleReader, VanillaChronicleWriter
from pychro.remote.tail import JournalTail


def frames_of(tail: JournalTail, **kw: int) -> bytes:
    out = b""
    while True:
        buffers, count = tail.next_frames(**kw)
        if not count:
            return out
        out += b"".join(bytes(b) for b in buffers)


def expected_frames(path: Path) -> bytes:
    with VanillaChronicleReader(path) as reader:
        return b"".join(struct.pack("<iq", e.get_length(), e.index) + e.body() for e in reader)  # type: ignore[arg-type]


def write(path: Path, bodies: list[bytes], when: dt.datetime | None = None) -> list[int]:
    with VanillaChronicleWriter(path, clock=FakeClock(when) if when else None) as w:
        a = w.get_appender()
        out = []
        for body in bodies:
            a.start_excerpt(max(1, len(body)))
            a.write_bytes(body)
            out.append(a.finish())
    return out


def test_frames_equal_the_journal_for_any_batch_limits(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    write(journal, [bytes([k % 256]) * (k * 37 % 300) for k in range(500)], dt.datetime(2020, 2, 1))
    write(journal, [b"day two"] * 3, dt.datetime(2020, 2, 2))
    expected = expected_frames(journal)
    for kw in ({}, {"max_messages": 7}, {"budget_bytes": 1}, {"budget_bytes": 5000}):
        tail = JournalTail(Journal(journal))
        tail.seek_start()
        assert frames_of(tail, **kw) == expected, kw
        tail.close()


def test_explicit_index_waits_and_does_not_skip_to_the_next_cycle(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    day1 = write(journal, [b"a", b"b"], dt.datetime(2020, 2, 1))
    day2 = write(journal, [b"c"], dt.datetime(2020, 2, 2))
    tail = JournalTail(Journal(journal))
    tail.seek_index(day1[-1] + 1)  # past the end of a finished day: Java would wait here forever
    assert frames_of(tail) == b""
    assert tail.next_index == day1[-1] + 1
    tail.seek_index(day1[-1])
    assert frames_of(tail) == struct.pack("<iq", 1, day1[-1]) + b"b" + struct.pack("<iq", 1, day2[0]) + b"c"
    assert tail.index_after(day1[0]) == day1[1]
    assert tail.index_after(day1[1]) == day2[0]  # the day is over: the next cycle's first message
    assert tail.index_after(day2[0]) == day2[0]  # nothing after it yet
    assert tail.index_after(day2[0] + 1) is None
    assert tail.last_index() == day2[0]
    tail.close()


def test_corrupt_and_uncommitted_headers(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    indexes = write(journal, [b"0000", b"1111", b"2222", b"3333"])
    cycle = Journal(journal).cycles()[0]
    data = next(p for p in Path(Journal(journal).cycle_path(cycle)).iterdir() if p.name.startswith("data-"))
    raw = bytearray(data.read_bytes()[:64])
    # bodies of 4 bytes at 4, 12, 20, 28: headers at 0, 8, 16, 24
    with open(data, "r+b") as fh:
        fh.seek(16)
        fh.write(struct.pack("<i", 0))  # message 2 not visible yet
    tail = JournalTail(Journal(journal))
    tail.seek_start()
    assert frames_of(tail) == b"".join(struct.pack("<iq", 4, i) + raw[4 + 8 * k : 8 + 8 * k] for k, i in
                                       enumerate(indexes[:2]))
    with open(data, "r+b") as fh:
        fh.seek(16)
        fh.write(struct.pack("<i", 5))  # positive: not a ~length
    with pytest.raises(CorruptDataError) as info:
        tail.next_frames()
    assert info.value.seq == 2 and info.value.offset == 20
    tail.close()
