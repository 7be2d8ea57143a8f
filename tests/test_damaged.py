"""Damaged journals give clear pychro errors with context (path, cycle, seq, offset), never a crash or garbage."""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from helpers import FakeClock, read_slots

from pychro import (
    CorruptDataError,
    FormatError,
    Journal,
    JournalNotFoundError,
    PychroError,
    VanillaChronicleReader,
    VanillaChronicleWriter,
    VanillaConfig,
)

TID = threading.get_native_id()
DAY = 16487
FOLDER = "20150221"


def _write(root: Path, bodies: list[bytes], **kwargs: object) -> list[int]:
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(root, clock=clock, thread_id_bits=16, **kwargs) as writer:  # type: ignore[arg-type]
        appender = writer.get_appender()
        out = []
        for body in bodies:
            appender.start_excerpt()
            appender.write_bytes(body)
            out.append(appender.finish())
        return out


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """Three messages: 8, 100 and 8 bytes, one data file, one index file."""
    root = tmp_path / "j"
    _write(root, [b"A" * 8, b"B" * 100, b"C" * 8])
    return root


def _data(root: Path) -> Path:
    return root / FOLDER / f"data-{TID}-0"


def _set_slot(root: Path, slot: int, entry: int, index_file: str = "index-0") -> None:
    with open(root / FOLDER / index_file, "r+b") as fh:
        fh.seek(slot * 8)
        fh.write(struct.pack("<Q", entry))


def _set_header(path: Path, pos: int, value: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(pos)
        fh.write(struct.pack("<I", value & 0xFFFFFFFF))


def _reader(root: Path) -> VanillaChronicleReader:
    return VanillaChronicleReader(root, thread_id_bits=16)


def _first_body(reader: VanillaChronicleReader) -> bytes:
    return reader.next_reader().body()


def test_intact_journal_reads(journal: Path) -> None:
    with _reader(journal) as reader:
        assert [e.body() for e in reader] == [b"A" * 8, b"B" * 100, b"C" * 8]


def test_truncated_data_file_body_past_eof(journal: Path) -> None:
    # message 1 (100 bytes) has its header at 12 and body at 16: cut the file in the middle of the body
    os.truncate(_data(journal), 16 + 50)
    with _reader(journal) as reader:
        assert _first_body(reader) == b"A" * 8
        with pytest.raises(CorruptDataError) as info:
            reader.next_reader()
    err = info.value
    assert "100 bytes runs past the end of the data file (66 bytes)" in str(err)
    assert (err.cycle, err.seq, err.offset, err.path) == (DAY, 1, 16, str(_data(journal)))
    assert isinstance(err, FormatError) and isinstance(err, ValueError) and isinstance(err, PychroError)


def test_truncated_data_file_header_missing(journal: Path) -> None:
    os.truncate(_data(journal), 14)  # cut inside message 1's header
    with _reader(journal) as reader:
        assert _first_body(reader) == b"A" * 8
        with pytest.raises(CorruptDataError, match="past the end of the data file") as info:
            reader.next_reader()
    assert info.value.seq == 1


def test_zero_length_data_file(journal: Path) -> None:
    os.truncate(_data(journal), 0)
    with _reader(journal) as reader:
        with pytest.raises(CorruptDataError, match=r"past the end of the data file \(0 bytes\)") as info:
            reader.next_reader()
    assert (info.value.seq, info.value.offset) == (0, 4)


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_entry_points_before_first_header(journal: Path, offset: int) -> None:
    _set_slot(journal, 1, (TID << 48) + offset)
    with _reader(journal) as reader:
        assert _first_body(reader) == b"A" * 8
        with pytest.raises(CorruptDataError, match="before the first header") as info:
            reader.next_reader()
    assert (info.value.cycle, info.value.seq, info.value.offset) == (DAY, 1, offset)


@pytest.mark.parametrize("offset", [(64 << 20) - 4, (64 << 20) - 1])
def test_entry_points_past_eof(journal: Path, offset: int) -> None:
    os.truncate(_data(journal), 4096)
    _set_slot(journal, 2, (TID << 48) + offset)
    with _reader(journal) as reader:
        reader.set_index((DAY << 40) + 2)
        with pytest.raises(CorruptDataError, match="past the end of the data file") as info:
            reader.next_reader()
    assert info.value.offset == offset


@pytest.mark.parametrize(
    "header",
    [~(1 << 30), ~((1 << 31) - 1), 0x40000000, 5, 0x7FFFFFFF],
    ids=["len2^30", "len2^31-1", "pos1", "pos2", "pos3"],
)
def test_header_with_top_bits_set(journal: Path, header: int) -> None:
    _set_header(_data(journal), 12, header)
    with _reader(journal) as reader:
        assert _first_body(reader) == b"A" * 8
        with pytest.raises(CorruptDataError, match="bad header") as info:
            reader.next_reader()
    assert f"{header & 0xFFFFFFFF:#010x}" in str(info.value)
    assert (info.value.seq, info.value.offset) == (1, 16)


def test_header_length_past_block(journal: Path) -> None:
    _set_header(_data(journal), 12, ~((1 << 30) - 1))  # valid bit pattern, but longer than the file
    with _reader(journal) as reader:
        reader.set_index((DAY << 40) + 1)
        with pytest.raises(CorruptDataError, match="runs past the end"):
            reader.next_reader()


def test_zero_header_behind_set_slot(journal: Path) -> None:
    _set_header(_data(journal), 12, 0)
    with _reader(journal) as reader:
        assert _first_body(reader) == b"A" * 8
        with pytest.raises(CorruptDataError, match="uncommitted") as info:
            reader.next_reader()
        assert info.value.seq == 1
        # the error leaves the reader where it was: it can skip the message explicitly
        assert reader.get_index() == (DAY << 40) + 1
        reader.set_index((DAY << 40) + 2)
        assert _first_body(reader) == b"C" * 8


def test_missing_data_file(journal: Path) -> None:
    os.remove(_data(journal))
    with _reader(journal) as reader:
        with pytest.raises(JournalNotFoundError) as info:
            reader.next_reader()
    err = info.value
    assert f"data-{TID}-0" in str(err)
    assert "deleted" in str(err)  # the hint: thread-id bits fit (16 detected), so the file is gone
    assert isinstance(err, FileNotFoundError)
    assert (err.cycle, err.seq) == (DAY, 0)


def test_entry_naming_a_file_that_does_not_exist(journal: Path) -> None:
    _set_slot(journal, 1, (TID << 48) + (7 << 26) + 4)  # data file 7
    with _reader(journal) as reader:
        assert _first_body(reader) == b"A" * 8
        with pytest.raises(JournalNotFoundError, match=f"data-{TID}-7"):
            reader.next_reader()


def test_missing_journal_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(JournalNotFoundError) as info:
        VanillaChronicleReader(missing)
    assert info.value.path == str(missing)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(JournalNotFoundError):
        Journal(missing)
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalNotFoundError):
        VanillaChronicleReader(tmp_path / "file")


def test_missing_index_file(journal: Path) -> None:
    # issue 13: the data files hold committed messages, so index-0 was lost: an error, not an empty cycle
    os.remove(journal / FOLDER / "index-0")
    with _reader(journal) as reader:
        with pytest.raises(JournalNotFoundError, match=r"index-0 is missing but data-.* holds committed messages"):
            reader.next_reader()
    with pytest.raises(JournalNotFoundError, match="index-0 is missing"):
        Journal(journal, thread_id_bits=16).count(DAY)
    assert Journal(journal, thread_id_bits=16).count(DAY, strict=False) == 0


@pytest.mark.parametrize("size, visible", [(0, 0), (7, 0), (8, 1), (13, 1), (16, 2), (24, 3)])
def test_short_index_file(journal: Path, size: int, visible: int) -> None:
    # issue 13: an index file cut inside its filled slots hides the messages after the cut: the readers
    # return the messages before it, then raise (an empty index-0 with committed data is a lost index)
    os.truncate(journal / FOLDER / "index-0", size)
    error = (JournalNotFoundError, r"index-0 is empty but") if size == 0 else (CorruptDataError, r"index-0 is cut")
    with _reader(journal) as reader:
        for _ in range(visible):
            reader.next_reader()
        with pytest.raises(error[0], match=error[1]):
            reader.next_reader()
    with pytest.raises(error[0], match=error[1]):
        Journal(journal, thread_id_bits=16).count(DAY)
    assert Journal(journal, thread_id_bits=16).count(DAY, strict=False) == visible


def _twenty_in_small_index_files(tmp_path: Path) -> tuple[Path, VanillaConfig]:
    """20 one-int messages in index files of 8 slots: index-0, index-1, index-2."""
    root = tmp_path / "j"
    cfg = VanillaConfig(index_block_size=64, thread_id_bits=16)
    clock = FakeClock(dt.datetime(2015, 2, 21, 12))
    with VanillaChronicleWriter(root, clock=clock, config=cfg) as writer:
        appender = writer.get_appender()
        for k in range(20):
            appender.write_int(k)
            appender.finish()
    return root, cfg


def test_gap_in_index_file_numbers(tmp_path: Path) -> None:
    root, cfg = _twenty_in_small_index_files(tmp_path)
    os.remove(root / FOLDER / "index-1")
    # index-2 exists, so index-1 was lost (index files are created in order): an error, not a silent end
    with pytest.raises(JournalNotFoundError, match="index-1 is missing but index-2 exists") as err:
        Journal(root, cfg).count(DAY)
    assert err.value.seq == 8
    with VanillaChronicleReader(root, config=cfg) as reader:
        assert [reader.next_reader().read_int() for _ in range(8)] == list(range(8))
        with pytest.raises(JournalNotFoundError, match="index-1 is missing but index-2 exists") as err:
            reader.next_reader()
        assert err.value.seq == 8 and err.value.cycle == DAY


@pytest.mark.parametrize("cut", [0, 8 * 3 + 5])
def test_cut_index_file_followed_by_another(tmp_path: Path, cut: int) -> None:
    root, cfg = _twenty_in_small_index_files(tmp_path)
    os.truncate(root / FOLDER / "index-0", cut)
    with VanillaChronicleReader(root, config=cfg) as reader:
        assert [reader.next_reader().read_int() for _ in range(cut // 8)] == list(range(cut // 8))
        with pytest.raises(CorruptDataError, match=r"index-0 ends at entry .* but index-1 exists") as err:
            reader.next_reader()
        assert err.value.seq == cut // 8
    with pytest.raises(CorruptDataError, match="the index is cut"):
        Journal(root, cfg).count(DAY)


def test_stray_files_and_folders_are_ignored(journal: Path) -> None:
    (journal / "notes.txt").write_text("hello")
    (journal / "tmp").mkdir()
    (journal / "20150221.bak").mkdir()  # Java's lenient parser takes this as a cycle; we do not
    (journal / "2015022").mkdir()
    (journal / "20150222").write_text("a file named like a cycle")
    (journal / "20150220").mkdir()  # an empty cycle folder before the real one
    (journal / "20150220" / "README").write_text("x")
    folder = journal / FOLDER
    (folder / "index-0.bak").write_bytes(b"\xff" * 64)
    (folder / "index-x").write_bytes(b"\xff" * 64)
    (folder / "data-1-x").write_bytes(b"\xff" * 64)
    (folder / "data-99999").write_bytes(b"\xff" * 64)
    (folder / "sub").mkdir()
    (folder / "sub" / "index-0").write_bytes(b"\xff" * 64)
    j = Journal(journal)
    assert j.cycles() == [16486, DAY]
    assert j.index_files(DAY) == [0]
    assert j.data_files(DAY) == [(TID, 0)]
    assert j.config.thread_id_bits == 16 and j.thread_id_bits_detected
    assert j.count(16486) == 0 and j.count(DAY) == 3
    with VanillaChronicleReader(journal) as reader:
        assert [e.body() for e in reader] == [b"A" * 8, b"B" * 100, b"C" * 8]
    # a writer still claims the right next data file among the junk
    clock = FakeClock(dt.datetime(2015, 2, 21, 13))
    with VanillaChronicleWriter(journal, clock=clock) as writer:
        appender = writer.get_appender()
        appender.write_int(1)
        assert appender.finish() == (DAY << 40) + 3
    assert (folder / f"data-{TID}-1").exists()


def test_garbage_index_slots_after_the_end_are_not_read(journal: Path) -> None:
    _set_slot(journal, 4, 0xFFFFFFFFFFFFFFFF)  # slot 3 is 0, so slot 4 is never delivered
    with _reader(journal) as reader:
        assert [e.body() for e in (reader.next_reader() for _ in range(3))] == [b"A" * 8, b"B" * 100, b"C" * 8]
        # a set slot after the empty one is damage (slots fill in order), as verify reports it: not the end
        with pytest.raises(CorruptDataError, match="later slots are filled") as err:
            reader.next_reader()
        assert err.value.context["seq"] == 3
    # (Journal.count binary-searches the first zero slot, which assumes contiguous slots: on an index
    # damaged like this it may count past the hole, so it is not checked here.)


def test_all_ones_entry(journal: Path) -> None:
    _set_slot(journal, 3, 0xFFFFFFFFFFFFFFFF)
    with _reader(journal) as reader:
        reader.set_index((DAY << 40) + 3)
        with pytest.raises(JournalNotFoundError, match="data-65535-"):
            reader.next_reader()


def test_thread_id_bits_detection_gives_up_on_junk_entries(tmp_path: Path) -> None:
    root = tmp_path / "j"
    (root / FOLDER).mkdir(parents=True)
    with open(root / FOLDER / "index-0", "wb") as fh:
        fh.write(struct.pack("<QQ", 0x1234_5678_9ABC_DEF0, 0x0FED_CBA9_8765_4321) + bytes(48))
    (root / FOLDER / "data-1-0").write_bytes(bytes(64))
    journal = Journal(root)
    assert not journal.thread_id_bits_detected
    with VanillaChronicleReader(root) as reader:
        with pytest.raises(JournalNotFoundError):
            reader.next_reader()


def test_bad_text_in_a_message(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _write(root, [b"\x03\xff\xfe\xfd", b"\x05ab"])
    with _reader(root) as reader:
        e = reader.next_reader()
        with pytest.raises(FormatError, match="invalid Java text") as info:
            e.read_string()
        assert info.value.index == DAY << 40
        with pytest.raises(FormatError, match="string length outside"):
            reader.next_reader().read_string()


_CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, pychro
    try:
        with pychro.VanillaChronicleReader(sys.argv[1], thread_id_bits=16) as reader:
            for e in reader:
                e.read_string()
    except pychro.PychroError as exc:
        print(type(exc).__name__)
    """
)


@pytest.mark.parametrize("damage", ["truncate", "zero", "entry", "header"])
def test_damage_never_crashes_the_process(journal: Path, damage: str) -> None:
    """In a child process, so a SIGBUS or segfault would show as a signal instead of killing pytest."""
    if damage == "truncate":
        os.truncate(_data(journal), 30)
    elif damage == "zero":
        os.truncate(_data(journal), 0)
    elif damage == "entry":
        _set_slot(journal, 1, (TID << 48) + (64 << 20) - 1)
    else:
        _set_header(_data(journal), 12, 0x40000000)
    out = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(journal)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("CorruptDataError", "FormatError"), out.stdout


def test_slots_unchanged_by_reading_damage(journal: Path) -> None:
    before = read_slots(journal / FOLDER / "index-0", 4)
    os.truncate(_data(journal), 0)
    with _reader(journal) as reader:
        with pytest.raises(CorruptDataError):
            reader.next_reader()
    assert read_slots(journal / FOLDER / "index-0", 4) == before
    assert os.path.getsize(_data(journal)) == 0  # the reader never extends a short file


def _hole_at(root: Path, seq: int) -> int:
    """Zero index slot ``seq`` (later slots stay filled); returns the entry it held."""
    entry = struct.unpack("<Q", (root / FOLDER / "index-0").read_bytes()[seq * 8 : seq * 8 + 8])[0]
    _set_slot(root, seq, 0)
    return entry


@pytest.mark.parametrize("polling_interval", [None, 0.001])
def test_row_reader_raises_at_a_hole_in_the_index(tmp_path: Path, polling_interval: float | None) -> None:
    # an empty slot with filled ones after it used to end the cycle silently (the rest of it was skipped)
    root = tmp_path / "j"
    _write(root, [b"%08d" % i for i in range(700)])
    _hole_at(root, 500)
    with VanillaChronicleReader(root, polling_interval, thread_id_bits=16) as reader:
        got = [reader.next_reader().body() for _ in range(500)]
        assert got[-1] == b"00000499"
        with pytest.raises(CorruptDataError, match="later slots are filled") as err:
            reader.next_reader()
    ctx = err.value.context
    assert (ctx["cycle"], ctx["seq"], ctx["index"]) == (DAY, 500, (DAY << 40) + 500)
    assert ctx["path"].endswith(os.path.join(FOLDER, "index-0"))


def test_row_reader_waits_for_a_slot_a_live_writer_fills_late(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # a reader can load slot k empty and then see k+1 filled: the writer of k committed in between. The slot
    # is re-read (with short pauses) before it is called damage: here it is filled during the first pause.
    import pychro.reader as reader_module

    root = tmp_path / "j"
    _write(root, [b"%08d" % i for i in range(700)])
    entry = _hole_at(root, 500)
    real_sleep = reader_module.time.sleep
    pauses = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        _set_slot(root, 500, entry)  # the late commit
        real_sleep(seconds)

    monkeypatch.setattr(reader_module.time, "sleep", sleep)
    with VanillaChronicleReader(root, thread_id_bits=16) as reader:
        got = [e.body() for e in reader]
    assert got == [b"%08d" % i for i in range(700)]
    assert len(pauses) == 1
