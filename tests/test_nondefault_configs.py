"""Round trips with non-default settings: cycle lengths, nested and zoned folder names, small blocks,
writer restarts, a message spanning a cycle boundary, and messages larger than their capacity (§1-§6, §8)."""

from __future__ import annotations

import datetime as dt
import os
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import FakeClock, read_slots, to_ms, walk_records

from pychro import (
    Journal,
    MessageTooLargeError,
    NoData,
    VanillaChronicleReader,
    VanillaChronicleWriter,
    VanillaConfig,
)

UTC = dt.UTC
START = dt.datetime(2015, 2, 21, 22, 58, 58, 500000, tzinfo=UTC)
TID = threading.get_native_id()


def _tree(root: Path) -> dict[str, list[str]]:
    """Relative folder -> sorted file names, for every folder holding files."""
    out = {}
    for folder, _, files in os.walk(root):
        if files:
            out[os.path.relpath(folder, root)] = sorted(files)
    return out


def _read_all(root: Path, **kwargs: object) -> list[tuple[int, int]]:
    with VanillaChronicleReader(root, **kwargs) as reader:  # type: ignore[arg-type]
        return [(e.index, e.read_int()) for e in reader]  # type: ignore[misc]


@pytest.mark.parametrize(
    "cycle, strftime, length_ms, seq_bits",
    [
        ("HOURS", "%Y%m%d%H", 3_600_000, 40),
        ("MINUTES", "%Y%m%d%H%M", 60_000, 34),
        ("SECONDS", "%Y%m%d%H%M%S", 1_000, 28),
    ],
)
def test_short_cycles_span_folders(tmp_path: Path, cycle: str, strftime: str, length_ms: int, seq_bits: int) -> None:
    cfg = VanillaConfig(cycle=cycle)
    clock = FakeClock(START)
    step = length_ms // 3 + 7  # about three messages per cycle, crossing several boundaries
    expected: list[tuple[int, int]] = []
    folders: dict[str, int] = {}
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        for k in range(14):
            now = dt.datetime.fromtimestamp(clock.ms / 1000, UTC)
            folder = now.strftime(strftime)
            seq = folders.get(folder, 0)
            folders[folder] = seq + 1
            appender.write_int(k)
            index = appender.finish()
            assert index == ((clock.ms // length_ms) << seq_bits) | seq
            expected.append((index, k))
            clock.advance(step)
    assert len(folders) >= 4
    tree = _tree(tmp_path)
    assert sorted(tree) == sorted(folders)
    for folder in folders:
        assert tree[folder] == sorted(["index-0", f"data-{TID}-0"])
    assert _read_all(tmp_path, config=cfg) == expected
    journal = Journal(tmp_path, cfg)
    assert [cfg.folder_name(c) for c in journal.cycles()] == sorted(folders)
    assert [journal.count(c) for c in journal.cycles()] == [folders[f] for f in sorted(folders)]
    assert journal.end_index() == expected[-1][0] + 1


def test_hourly_reader_waits_for_the_clock(tmp_path: Path) -> None:
    cfg = VanillaConfig(cycle="HOURS")
    clock = FakeClock(dt.datetime(2015, 2, 21, 10, 30))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        for k in range(3):
            appender.write_int(k)
            appender.finish()
            clock.advance(3_600_000)
    read_clock = FakeClock(dt.datetime(2015, 2, 21, 10, 59))
    with VanillaChronicleReader(tmp_path, config=cfg, clock=read_clock) as reader:
        assert reader.next_reader().read_int() == 0
        with pytest.raises(NoData):
            reader.next_reader()
        read_clock.set(dt.datetime(2015, 2, 21, 11, 0))
        assert reader.next_reader().read_int() == 1
        with pytest.raises(NoData):
            reader.next_reader()
        read_clock.set(dt.datetime(2015, 2, 21, 13, 0))
        assert reader.next_reader().read_int() == 2


def test_nested_cycle_format(tmp_path: Path) -> None:
    cfg = VanillaConfig(cycle="HOURS", cycle_format="yyyy/MM/dd/HH")
    clock = FakeClock(dt.datetime(2015, 2, 28, 22, 15))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        for k in range(4):
            appender.write_int(k)
            appender.finish()
            clock.advance(3_600_000)  # 22h, 23h, then 1 March 00h and 01h
    assert sorted(_tree(tmp_path)) == ["2015/02/28/22", "2015/02/28/23", "2015/03/01/00", "2015/03/01/01"]
    assert [v for _, v in _read_all(tmp_path, config=cfg)] == [0, 1, 2, 3]
    hours = Journal(tmp_path, cfg).cycles()
    assert hours == [to_ms(dt.datetime(2015, 2, 28, 22)) // 3_600_000 + k for k in range(4)]
    os.makedirs(tmp_path / "2015" / "02" / "notaday" / "00")  # junk inside the nesting is ignored
    assert Journal(tmp_path, cfg).cycles() == hours


def test_daily_nested_format_with_three_levels(tmp_path: Path) -> None:
    cfg = VanillaConfig(cycle=None, cycle_format="yyyy/MM/dd", cycle_length_ms=86_400_000)
    clock = FakeClock(dt.datetime(2015, 12, 31, 12))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        for k in range(2):
            appender = writer.get_appender()
            appender.write_int(k)
            assert appender.finish() == (cfg.cycle_of_ms(clock.ms) << 40)
            clock.advance(86_400_000)
    assert sorted(_tree(tmp_path)) == ["2015/12/31", "2016/01/01"]
    assert [v for _, v in _read_all(tmp_path, config=cfg)] == [0, 1]


def test_time_zone_names_folders_only(tmp_path: Path) -> None:
    cfg = VanillaConfig(cycle_time_zone="America/New_York")
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))  # cycle 16487, which starts 2015-02-20 19:00 in New York
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        assert appender.finish() == 16487 << 40
        clock.set(dt.datetime(2015, 2, 22, 1))
        appender.write_int(2)
        assert appender.finish() == 16488 << 40
    assert sorted(_tree(tmp_path)) == ["20150220", "20150221"]
    assert _read_all(tmp_path, config=cfg) == [(16487 << 40, 1), (16488 << 40, 2)]
    # the same journal read with UTC naming finds the folders under other cycles: the zone is part of the format
    assert Journal(tmp_path, VanillaConfig()).cycles() == [16486, 16487]


def test_custom_entries_per_cycle(tmp_path: Path) -> None:
    cfg = VanillaConfig(entries_per_cycle=1 << 20)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(5)
        assert appender.finish() == 16487 << 20
    assert _read_all(tmp_path, config=cfg) == [(16487 << 20, 5)]


# -- small blocks -----------------------------------------------------------------------------------------
def test_small_index_blocks_make_index_files(tmp_path: Path) -> None:
    cfg = VanillaConfig(index_block_size=64)  # 8 slots per index file
    assert cfg.slots_per_index_file == 8 and cfg.slot_bits == 3
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        indices = []
        for k in range(20):
            appender.write_int(k)
            indices.append(appender.finish())
    assert indices == [(16487 << 40) + k for k in range(20)]
    folder = tmp_path / "20150221"
    assert _tree(tmp_path)["20150221"] == sorted(["index-0", "index-1", "index-2", f"data-{TID}-0"])
    assert [os.path.getsize(folder / f"index-{n}") for n in range(3)] == [64, 64, 64]
    assert [sum(1 for s in read_slots(folder / f"index-{n}", 8) if s) for n in range(3)] == [8, 8, 4]
    # slot k of index-n holds message 8n+k: its offset is where that message's body is
    bodies = [pos + 4 for pos, _ in walk_records(folder / f"data-{TID}-0")]
    entries = [s for n in range(3) for s in read_slots(folder / f"index-{n}", 8)][:20]
    assert [e & ((1 << 26) - 1) for e in entries] == bodies
    assert _read_all(tmp_path, config=cfg) == list(zip(indices, range(20)))
    journal = Journal(tmp_path, cfg)
    assert journal.count(16487) == 20 and journal.end_index() == (16487 << 40) + 20
    with VanillaChronicleReader(tmp_path, config=cfg) as reader:
        assert reader.excerpt_at((16487 << 40) + 17).read_int() == 17
        assert reader.excerpt_at((16487 << 40) + 8).read_int() == 8


def test_exactly_full_index_file(tmp_path: Path) -> None:
    cfg = VanillaConfig(index_block_size=64)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        for k in range(8):
            appender.write_int(k)
            appender.finish()
    journal = Journal(tmp_path, cfg)
    assert journal.count(16487) == 8
    with VanillaChronicleReader(tmp_path, config=cfg, polling_interval=None) as reader:
        assert [e.read_int() for e in reader] == list(range(8))
        with pytest.raises(NoData):
            reader.next_reader()
        # a later writer continues in index-1 and the same reader picks it up
        with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
            appender = writer.get_appender()
            appender.write_int(8)
            assert appender.finish() == (16487 << 40) + 8
        assert reader.next_reader().read_int() == 8


def test_small_data_blocks_roll_files(tmp_path: Path) -> None:
    cfg = VanillaConfig(data_block_size=4096, message_capacity=256)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    payload = bytes(range(100)) * 2
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        for k in range(60):
            appender.write_int(k)
            appender.write_bytes(payload[: 100 + k % 100])
            appender.finish()
    folder = tmp_path / "20150221"
    data = sorted((p for p in folder.iterdir() if p.name.startswith("data-")), key=lambda p: int(p.name.split("-")[2]))
    assert len(data) >= 3
    assert [p.name for p in data] == [f"data-{TID}-{n}" for n in range(len(data))]
    for path in data:
        assert os.path.getsize(path) == 4096
        records = walk_records(path, 4096)
        assert records[0][0] == 0
        last_pos = records[-1][0]
        assert 4096 - last_pos >= 256 + 4  # every header starts where capacity + 4 bytes remain (§4)
    with VanillaChronicleReader(tmp_path, config=cfg) as reader:
        for k, excerpt in enumerate(reader):
            assert excerpt.read_int() == k
            assert excerpt.read_bytes(100 + k % 100) == payload[: 100 + k % 100]
            assert excerpt.remaining() == 0
    assert k == 59


def test_start_excerpt_capacity_rolls_file(tmp_path: Path) -> None:
    cfg = VanillaConfig(data_block_size=4096, message_capacity=256)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_bytes(bytes(200))
        appender.finish()  # data file 0 now at 204
        appender.start_excerpt(4000)  # 4096 - 204 < 4000 + 4: must go to file 1
        appender.write_bytes(b"\x01" * 3900)
        appender.finish()
    folder = tmp_path / "20150221"
    slots = read_slots(folder / "index-0", 3)
    assert [s & ((1 << 48) - 1) for s in slots] == [4, 4096 + 4, 0]
    with VanillaChronicleReader(tmp_path, config=cfg) as reader:
        assert [e.get_length() for e in reader] == [200, 3900]


# -- restart ----------------------------------------------------------------------------------------------
def test_restart_opens_next_data_file(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    for run in range(3):
        with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
            appender = writer.get_appender()
            for k in range(2):
                appender.write_int(run * 10 + k)
                assert appender.finish() == (16487 << 40) + 2 * run + k
    folder = tmp_path / "20150221"
    assert _tree(tmp_path)["20150221"] == sorted(["index-0"] + [f"data-{TID}-{n}" for n in range(3)])
    for n in range(3):
        assert [pos for pos, _ in walk_records(folder / f"data-{TID}-{n}")] == [0, 8]  # each starts at 0
    slots = read_slots(folder / "index-0", 7)
    assert [(s >> 26) & ((1 << 22) - 1) for s in slots[:6]] == [0, 0, 1, 1, 2, 2]
    assert [s & ((1 << 26) - 1) for s in slots[:6]] == [4, 12] * 3
    assert slots[6] == 0
    assert [v for _, v in _read_all(tmp_path)] == [0, 1, 10, 11, 20, 21]


def test_two_writers_in_one_thread(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, clock=clock) as w1, VanillaChronicleWriter(tmp_path, clock=clock) as w2:
        a1, a2 = w1.get_appender(), w2.get_appender()
        assert a1 is w1.get_appender() and a1 is not a2
        for k in range(3):
            a1.write_int(k)
            a1.finish()
            a2.write_int(100 + k)
            a2.finish()
    names = _tree(tmp_path)["20150221"]
    assert names == sorted(["index-0", f"data-{TID}-0", f"data-{TID}-1"])
    assert [v for _, v in _read_all(tmp_path)] == [0, 100, 1, 101, 2, 102]


def test_restart_continues_in_highest_index_file(tmp_path: Path) -> None:
    cfg = VanillaConfig(index_block_size=64)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    for run in range(3):
        with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
            appender = writer.get_appender()
            for k in range(5):
                appender.write_int(run * 5 + k)
                assert appender.finish() == (16487 << 40) + run * 5 + k
    assert [v for _, v in _read_all(tmp_path, config=cfg)] == list(range(15))
    assert "index-1" in _tree(tmp_path)["20150221"]


# -- cycle boundary ----------------------------------------------------------------------------------------
def test_message_spanning_midnight_lands_in_old_cycle(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 23, 59, 59, 999000))
    with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        clock.set(dt.datetime(2015, 2, 22, 0, 0, 0, 1000))  # the clock passes midnight mid-message
        appender.write_string("late")
        assert appender.finish() == 16487 << 40  # committed into the cycle it was started in
        appender.write_int(2)
        assert appender.finish() == 16488 << 40
    tree = _tree(tmp_path)
    assert tree == {"20150221": sorted(["index-0", f"data-{TID}-0"]), "20150222": sorted(["index-0", f"data-{TID}-0"])}
    with VanillaChronicleReader(tmp_path) as reader:
        first = reader.next_reader()
        assert (first.index, first.read_int(), first.read_string()) == (16487 << 40, 1, "late")
        second = reader.next_reader()
        assert (second.index, second.read_int()) == (16488 << 40, 2)


def test_utcnow_clock(tmp_path: Path) -> None:
    """pychro 0.8's ``utcnow=`` (naive UTC datetimes) still drives the cycle."""
    with VanillaChronicleWriter(tmp_path, utcnow=lambda: dt.datetime(2015, 4, 16, 8)) as writer:
        appender = writer.get_appender()
        appender.write_int(7)
        assert appender.finish() == VanillaChronicleReader.to_full_index(dt.date(2015, 4, 16), 0)
    assert sorted(_tree(tmp_path)) == ["20150416"]
    with VanillaChronicleReader(tmp_path, utcnow=lambda: dt.datetime(2015, 4, 16, 9), date=dt.date(2015, 4, 16)) as r:
        assert r.next_reader().read_int() == 7


# -- capacity ---------------------------------------------------------------------------------------------
def test_message_too_large_commits_nothing(tmp_path: Path) -> None:
    cfg = VanillaConfig(data_block_size=4096, message_capacity=256)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        assert appender.finish() == 16487 << 40
        appender.write_int(2)
        appender.write_bytes(bytes(200))
        with pytest.raises(MessageTooLargeError, match="capacity of 256"):
            appender.write_bytes(bytes(100))
        assert appender.bytes_written() == 0  # the message was dropped
        with pytest.raises(ValueError):
            appender.finish()
        with pytest.raises(MessageTooLargeError):
            appender.write_bytes(bytes(257))  # too large on its own
        appender.write_int(3)
        assert appender.finish() == (16487 << 40) + 1  # no hole in the index
        appender.start_excerpt(1000)
        appender.write_bytes(b"\x05" * 1000)
        assert appender.finish() == (16487 << 40) + 2
        with pytest.raises(MessageTooLargeError):
            appender.start_excerpt(4093)  # more than a data block can hold after its header
        appender.start_excerpt(4092)
        appender.write_int(4)
        appender.finish()
    with VanillaChronicleReader(tmp_path, config=cfg) as reader:
        got = [(e.get_length(), e.read_int()) for e in reader]
    assert got == [(4, 1), (4, 3), (1000, 0x05050505), (4, 4)]
    folder = tmp_path / "20150221"
    assert sum(1 for s in read_slots(folder / "index-0", 8) if s) == 4


def test_default_capacity_is_128k(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_bytes(bytes(128 << 10))
        with pytest.raises(MessageTooLargeError):
            appender.write_byte(0)
        appender.start_excerpt((1 << 20) + 4)
        appender.write_bytes(b"\x01" * (1 << 20))
        appender.write_int(9)
        appender.finish()
    with VanillaChronicleReader(tmp_path) as reader:
        excerpt = reader.next_reader()
        assert excerpt.get_length() == (1 << 20) + 4
        excerpt.advance(1 << 20)
        assert excerpt.read_int() == 9
        with pytest.raises(NoData):
            reader.next_reader()


def test_large_message_with_struct_view(tmp_path: Path) -> None:
    """A message filling most of a small data block reads back intact."""
    cfg = VanillaConfig(data_block_size=4096, message_capacity=4092)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    values = list(range(1023))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_bytes(struct.pack(f"<{len(values)}i", *values))
        appender.finish()
        appender.write_int(-1)
        appender.finish()  # does not fit after the first: file 1
    with VanillaChronicleReader(tmp_path, config=cfg) as reader:
        first = reader.next_reader()
        assert list(struct.unpack(f"<{len(values)}i", first.read_bytes(4092))) == values
        assert reader.next_reader().read_int() == -1
    assert _tree(tmp_path)["20150221"] == sorted(["index-0", f"data-{TID}-0", f"data-{TID}-1"])


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, 256), min_size=1, max_size=60))
def test_data_file_roll_rule(lengths: list[int]) -> None:
    """Any message lengths: a file rolls exactly when fewer than capacity + 4 bytes remain at a header (§4)."""
    import tempfile

    cfg = VanillaConfig(data_block_size=1024, message_capacity=256, thread_id_bits=16)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with VanillaChronicleWriter(root, config=cfg, clock=clock) as writer:
            appender = writer.get_appender()
            for k, n in enumerate(lengths):
                appender.start_excerpt()
                appender.write_bytes(bytes([k % 251]) * n)
                appender.finish()
        # the layout a Java appender produces, computed from the rule alone
        expected: list[tuple[int, int]] = []  # (file_no, header pos) per message
        file_no, pos = 0, 0
        for n in lengths:
            if 1024 - pos < 256 + 4:
                file_no, pos = file_no + 1, 0
            expected.append((file_no, pos))
            pos = (pos + 4 + n + 3) // 4 * 4
        slots = read_slots(root / "20150221" / "index-0", len(lengths) + 1)
        assert [(s >> 10 & 0xFFFF, (s & 1023) - 4) for s in slots[:-1]] == expected
        assert slots[-1] == 0
        with VanillaChronicleReader(root, config=cfg) as reader:
            assert [e.body() for e in reader] == [bytes([k % 251]) * n for k, n in enumerate(lengths)]
