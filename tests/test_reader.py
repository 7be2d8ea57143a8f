"""VanillaChronicleReader: start positions, index semantics, end index, cycle moves, random access, lifetime,
tailing, and reading a journal it may not write to (vanilla-format.md §3, §6; pychro 0.8 semantics)."""

from __future__ import annotations

import datetime as dt
import gc
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import FakeClock, chmod_read_only, chmod_writable, copy_journal, sample_fields, snapshot

from pychro import Journal, NoData, VanillaChronicleReader, VanillaChronicleWriter, VanillaConfig

BASE1, BASE2 = 0x40670000000000, 0x40680000000000
TID = threading.get_native_id()


def _cmds(reader: VanillaChronicleReader) -> list[tuple[int, int]]:
    return [(e.index, e.read_int()) for e in reader]  # type: ignore[misc]


ALL_20 = [(BASE1 + k, k) for k in range(10)] + [(BASE2 + k, k) for k in range(10)]


# -- start positions ------------------------------------------------------------------------------------
def test_start_from_start(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        assert reader.get_index() == BASE1
        assert reader.index is None
        assert reader.get_date() == dt.date(2015, 2, 21)
        assert _cmds(reader) == ALL_20


@pytest.mark.parametrize(
    "date, expected",
    [
        (dt.date(2015, 2, 21), ALL_20),
        (dt.date(2015, 2, 22), ALL_20[10:]),
        (dt.datetime(2015, 2, 22, 17, 30), ALL_20[10:]),
        (dt.date(2015, 2, 20), ALL_20),  # no folder that day: the reader moves on to the next one
        (dt.date(2015, 2, 23), []),
    ],
)
def test_start_from_date(java_3_4_0: Path, date: dt.date, expected: list[tuple[int, int]]) -> None:
    with VanillaChronicleReader(java_3_4_0, date=date) as reader:
        assert reader.get_index() == VanillaConfig().cycle_of(date) << 40
        assert _cmds(reader) == expected


@pytest.mark.parametrize("start", [BASE1, BASE1 + 3, BASE1 + 9, BASE1 + 10, BASE2, BASE2 + 9, BASE2 + 10])
def test_start_from_full_index(java_3_4_0: Path, start: int) -> None:
    with VanillaChronicleReader(java_3_4_0, full_index=start) as reader:
        assert reader.get_index() == start
        got = _cmds(reader)
    assert got == [(i, c) for i, c in ALL_20 if i >= start]


def test_date_and_full_index_exclusive(java_3_4_0: Path) -> None:
    with pytest.raises(ValueError):
        VanillaChronicleReader(java_3_4_0, date=dt.date(2015, 2, 21), full_index=BASE1)
    with VanillaChronicleReader(java_3_4_0) as reader:
        with pytest.raises(ValueError):
            reader.set_index(-1)


# -- index semantics ------------------------------------------------------------------------------------
def test_get_index_is_next_and_index_is_last(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        excerpt = reader.next_reader()
        assert excerpt.index == reader.index == BASE1
        assert reader.get_index() == BASE1 + 1  # pychro 0.8: the next index to read
        assert reader.next_index() == BASE1 + 2  # 0.8 helper: skip one, return the next to read
        assert reader.index == BASE1 + 1
        reader.set_index(BASE2 + 4)
        assert reader.index == BASE1 + 1  # moving does not change the last read
        assert reader.next_reader().read_int() == 4
        assert reader.index == BASE2 + 4


def test_set_start_and_set_end(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        reader.set_end()
        assert reader.get_index() == BASE2 + 10
        with pytest.raises(NoData):
            reader.next_reader()
        reader.set_start()
        assert reader.next_reader().index == BASE1
        reader.set_date(dt.date(2015, 2, 22))
        assert reader.next_reader().index == BASE2


def test_today_helpers(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0, full_index=BASE1 + 5) as reader:
        assert reader.get_end_index_today() == BASE1 + 10
        reader.set_end_index_today()
        assert reader.get_index() == BASE1 + 10
        reader.set_start_index_today()
        assert reader.get_index() == BASE1
        assert reader.get_end_index() == BASE2 + 10


def test_end_index_of_growing_journal(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with (
        VanillaChronicleWriter(tmp_path, clock=clock) as writer,
        VanillaChronicleReader(tmp_path, clock=clock) as reader,
    ):
        assert reader.get_end_index() is None
        appender = writer.get_appender()
        for k in range(3):
            appender.write_int(k)
            appender.finish()
            assert reader.get_end_index() == (16487 << 40) + k + 1
        clock.set(dt.datetime(2015, 2, 22, 1))
        appender.write_int(3)
        appender.finish()
        assert reader.get_end_index() == (16488 << 40) + 1


# -- cycles -----------------------------------------------------------------------------------------------
def test_one_writer_across_days_same_file_names(tmp_path: Path) -> None:
    """One thread writes every day: each day holds a data-<tid>-0; the reader must not reuse yesterday's map."""
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
        appender = writer.get_appender()
        for day in range(3):
            clock.set(dt.datetime(2015, 2, 21 + day, 12))
            for k in range(3):
                appender.write_int(day * 100 + k)
                appender.finish()
    for day in range(3):
        assert (tmp_path / f"2015022{1 + day}" / f"data-{TID}-0").exists()
    with VanillaChronicleReader(tmp_path) as reader:
        excerpts = list(reader)
        # every excerpt stays readable after the reader moved on to later cycles
        assert [(e.index, e.read_int()) for e in excerpts] == [
            ((16487 + day << 40) + k, day * 100 + k) for day in range(3) for k in range(3)
        ]


def test_reader_skips_missing_days(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        appender.finish()
        clock.set(dt.datetime(2015, 3, 2, 12))  # nothing for 8 days
        appender.write_int(2)
        appender.finish()
    (tmp_path / "20150225").mkdir()  # an empty cycle folder (a writer that never finished a message)
    with VanillaChronicleReader(tmp_path) as reader:
        assert _cmds(reader) == [(16487 << 40, 1), (16496 << 40, 2)]


def test_reader_on_empty_journal_then_first_message(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleReader(tmp_path, clock=clock) as reader:
        with pytest.raises(NoData):
            reader.get_index()
        with pytest.raises(NoData):
            reader.next_reader()
        with pytest.raises(NoData):
            reader.get_end_index_today()
        assert reader.get_date() is None
        with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
            appender = writer.get_appender()
            appender.write_int(42)
            appender.finish()
        excerpt = reader.next_reader()
        assert (excerpt.index, excerpt.read_int()) == (16487 << 40, 42)


# -- random access ----------------------------------------------------------------------------------------
def test_excerpt_at(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        for index, cmd in reversed(ALL_20):
            excerpt = reader.excerpt_at(index)
            assert excerpt.index == index
            for kind, value in sample_fields(cmd):
                assert getattr(excerpt, f"read_{kind}")() == value
            assert excerpt.remaining() == 0
        for missing in (BASE1 + 10, BASE2 + 10, BASE1 - 1, 0x40690000000000):
            with pytest.raises(NoData):
                reader.excerpt_at(missing)


def test_excerpt_at_keeps_polling_setting(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(tmp_path, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        appender.finish()
    with VanillaChronicleReader(tmp_path, polling_interval=0.001, clock=clock) as reader:
        with pytest.raises(NoData):
            reader.excerpt_at((16487 << 40) + 1)  # does not wait, even on a polling reader
        assert reader.polling_interval == 0.001


# -- lifetime ---------------------------------------------------------------------------------------------
def _mapped_paths(root: Path) -> list[str]:
    with open("/proc/self/maps") as fh:
        return [line.split(None, 5)[-1].strip() for line in fh if str(root) in line]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_context_manager_unmaps(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        assert isinstance(reader, VanillaChronicleReader)
        values = [e.read_int() for e in reader]
        assert _mapped_paths(java_3_4_0)  # index and data files are mapped while reading
    gc.collect()
    assert values == [c for _, c in ALL_20]
    assert _mapped_paths(java_3_4_0) == []


def test_max_mapped_memory_limits_maps(java_3_6_6: Any) -> None:
    """With room for one data file the reader remaps as the three writers interleave, and still reads all."""
    with VanillaChronicleReader(java_3_6_6.journal, max_mapped_memory=1) as reader:
        got = [(e.read_byte(), e.read_int()) for e in reader]
    assert got == [(row["w"], row["i"]) for row in java_3_6_6.expected]


def test_repr_and_journal(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        assert str(BASE1) in repr(reader)
        assert isinstance(reader.journal, Journal)
        assert reader.journal.cycles() == [16487, 16488]


# -- tailing ----------------------------------------------------------------------------------------------
def test_polling_reader_tails_a_writer(tmp_path: Path) -> None:
    n = 200
    got: list[int] = []
    errors: list[BaseException] = []
    (tmp_path / "j").mkdir()

    def tail() -> None:
        try:
            with VanillaChronicleReader(tmp_path / "j", polling_interval=0.0005) as reader:
                for excerpt in reader:
                    got.append(excerpt.read_int())
                    if len(got) == n:
                        return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=tail, daemon=True)
    thread.start()
    with VanillaChronicleWriter(tmp_path / "j") as writer:
        appender = writer.get_appender()
        for k in range(n):
            appender.write_int(k)
            appender.finish()
            if k % 50 == 0:
                time.sleep(0.01)
    thread.join(30)
    assert not thread.is_alive() and not errors
    assert got == list(range(n))


def test_non_polling_reader_sees_later_messages(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with (
        VanillaChronicleWriter(tmp_path, clock=clock) as writer,
        VanillaChronicleReader(tmp_path, clock=clock) as reader,
    ):
        appender = writer.get_appender()
        for k in range(5):
            with pytest.raises(NoData):
                reader.next_reader()
            appender.write_int(k)
            appender.finish()
            assert reader.next_reader().read_int() == k


# -- read-only journals -----------------------------------------------------------------------------------
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_events: list[tuple[str, tuple[Any, ...]]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _events is not None and event in ("open", "mmap.__new__", "os.truncate", "os.mkdir", "os.rename",
                                         "os.remove", "os.chmod", "os.utime", "shutil.rmtree"):
        _events.append((event, args))


sys.addaudithook(_audit)


@pytest.fixture
def audit() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    global _events
    _events = []
    try:
        yield _events
    finally:
        _events = None


@pytest.fixture
def read_only_copy(java_3_4_0: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_journal(java_3_4_0, tmp_path / "ro")
    chmod_read_only(copy)
    yield copy
    chmod_writable(copy)


def _read_everything(path: Path) -> list[tuple[int, int]]:
    with VanillaChronicleReader(path) as reader:
        out = _cmds(reader)
        reader.set_end()
        reader.set_date(dt.date(2015, 2, 22))
        out.append((reader.excerpt_at(BASE1 + 3).index, reader.get_end_index() or 0))
    return out


def test_reader_never_writes(read_only_copy: Path, audit: list[tuple[str, tuple[Any, ...]]]) -> None:
    before = snapshot(read_only_copy)
    modes = [entry[2] if entry[0] == "file" else entry[1] for entry in before.values()]
    assert modes and all(mode & 0o222 == 0 for mode in modes)  # type: ignore[operator]
    got = _read_everything(read_only_copy)
    assert got[:20] == ALL_20 and got[20] == (BASE1 + 3, BASE2 + 10)
    ours = [(e, a) for e, a in audit if str(read_only_copy) in str(a[0]) or e == "mmap.__new__"]
    opens = [a for e, a in ours if e == "open"]
    assert opens, "the audit hook saw no open: the check would be empty"
    assert all((flags or 0) & _WRITE_FLAGS == 0 and (mode in (None, "r", "rb")) for _, mode, flags in opens), opens
    import mmap

    assert all(a[2] == mmap.ACCESS_READ for e, a in ours if e == "mmap.__new__")
    assert not [e for e, _ in ours if e not in ("open", "mmap.__new__")]
    assert snapshot(read_only_copy) == before  # no file created, extended, touched or changed


_RO_SCRIPT = textwrap.dedent(
    """
    import sys, pychro
    with pychro.VanillaChronicleReader(sys.argv[1]) as reader:
        got = [(e.index, e.read_int()) for e in reader]
        print(len(got), got[0][0], got[-1][0], reader.config.thread_id_bits)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux permissions")
def test_reader_on_read_only_copy_without_root_override(read_only_copy: Path) -> None:
    """chmod -R a-w is not enforced for root: run the reader without CAP_DAC_OVERRIDE so it is."""
    cmd: list[str] = [sys.executable]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", sys.executable]
        probe = subprocess.run(
            [*cmd, "-c", f"open({str(read_only_copy / '20150221' / 'index-0')!r}, 'r+b')"], capture_output=True
        )
        if b"PermissionError" not in probe.stderr:
            pytest.skip("could not drop CAP_DAC_OVERRIDE here")
    before = snapshot(read_only_copy)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([*cmd, "-c", _RO_SCRIPT, str(read_only_copy)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["20", str(BASE1), str(BASE2 + 9), "16"]
    assert snapshot(read_only_copy) == before


def test_excerpts_outlive_close_and_eviction(java_3_6_6: Any) -> None:
    """As close() documents: excerpts already returned keep their mapping alive until they are dropped."""
    expected = [(row["w"], row["i"]) for row in java_3_6_6.expected[:300]]
    with VanillaChronicleReader(java_3_6_6.journal, max_mapped_memory=1) as reader:
        excerpts = [reader.next_reader() for _ in range(300)]  # 3 data files, room for 1: evictions
    assert [(e.read_byte(), e.read_int()) for e in excerpts] == expected  # read after evictions and close


def test_a_late_commit_into_the_cycle_the_reader_left_is_delivered(tmp_path: Path) -> None:
    # A writer begins a message in cycle C; the reader moves on to C+1 (the clock has left C and another writer
    # filled C+1); only then is the message committed, into C (vanilla-format.md §6). The reader delivers it
    # next, after the C+1 messages it already returned, then goes on in C+1.
    clock = FakeClock(dt.datetime(2024, 5, 1, 23, 59))
    with VanillaChronicleWriter(tmp_path, clock=clock) as slow, VanillaChronicleWriter(tmp_path, clock=clock) as fast, \
            VanillaChronicleReader(tmp_path, clock=clock) as reader:
        app = fast.get_appender()
        for k in range(3):
            app.write_long(k)
            app.finish()
        late = slow.get_appender()
        late.start_excerpt()
        late.write_long(99)
        first = [e.index for e in reader]
        clock.set(dt.datetime(2024, 5, 2, 0, 0, 1))
        for k in range(3, 5):
            app.write_long(k)
            app.finish()
        second = [e.index for e in reader]
        assert reader.config.split_index(second[0])[0] == reader.config.split_index(first[0])[0] + 1
        assert late.finish() == first[-1] + 1
        excerpt = reader.next_reader()
        assert (excerpt.index, excerpt.read_long()) == (first[-1] + 1, 99)
        with pytest.raises(NoData):
            reader.next_reader()
        app.write_long(5)
        app.finish()
        excerpt = reader.next_reader()
        assert (excerpt.index, excerpt.read_long()) == (second[-1] + 1, 5)
