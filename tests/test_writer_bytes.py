"""Byte-exact writer tests against vanilla-format.md §2, §4 and §7, and against the bytes Java 3.4.0 wrote."""

from __future__ import annotations

import datetime as dt
import os
import queue
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (
    FakeClock,
    align4,
    read_bytes,
    read_slots,
    ref_field,
    ref_java_text,
    ref_stop_bit,
    ref_utf_delta,
    sample_fields,
    walk_records,
)

from pychro import VanillaChronicleReader, VanillaChronicleWriter, VanillaConfig
from pychro import _fields as F

NOON_0221 = dt.datetime(2015, 2, 21, 12, 0, 0)
DAY1 = 16487
TID = threading.get_native_id()


class Fresh:
    """A new journal written by this thread with a fixed clock on 2015-02-21."""

    def __init__(self, root: Path, **kwargs: object) -> None:
        self.root = root
        self.clock = FakeClock(NOON_0221)
        self.writer = VanillaChronicleWriter(root, clock=self.clock, **kwargs)  # type: ignore[arg-type]
        self.appender = self.writer.get_appender()
        self.folder = root / "20150221"

    def data_file(self, file_no: int = 0) -> Path:
        return self.folder / f"data-{TID}-{file_no}"

    def message(self, *fields: tuple[str, object]) -> int:
        self.appender.start_excerpt()
        for kind, value in fields:
            getattr(self.appender, f"write_{kind}")(value)
        return self.appender.finish()

    def bodies(self, file_no: int = 0) -> list[bytes]:
        """The message bodies in our data file, found by walking the headers (§4), not through pychro."""
        path = self.data_file(file_no)
        return [read_bytes(path, pos + 4, length) for pos, length in walk_records(path)]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fresh]:
    f = Fresh(tmp_path / "j", thread_id_bits=16)
    yield f
    f.writer.close()


# -- §7 fields as the Appender writes them ---------------------------------------------------------------
STOP_BITS = [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16384, "808001"),
    (2**31 - 1, "ffffffff07"), (2**63 - 1, "ffffffffffffffff7f"), (-1, "8000"), (-2, "8100"),
    (-128, "ff00"), (-(2**63), "ffffffffffffffffff00"),
]


def test_stop_bits_in_the_data_file(fresh: Fresh) -> None:
    for value, _ in STOP_BITS:
        fresh.message(("stop_bit", value))
    fresh.message(*[("stop_bit", v) for v, _ in STOP_BITS])  # the same, back to back in one message
    bodies = fresh.bodies()
    assert [b.hex() for b in bodies[:-1]] == [h for _, h in STOP_BITS]
    assert bodies[-1].hex() == "".join(h for _, h in STOP_BITS)
    for value, hexed in STOP_BITS:
        assert F.encode_stop_bit(value).hex() == hexed == ref_stop_bit(value).hex()


def test_write_stopbit_alias_and_range(fresh: Fresh) -> None:
    fresh.appender.write_stopbit(300)
    with pytest.raises(OverflowError):
        fresh.appender.write_stop_bit(2**63)
    fresh.appender.finish()
    assert fresh.bodies() == [bytes.fromhex("ac02")]


STRINGS = [
    ("plain", "hello", "0568656c6c6f"),
    ("nul", "a\x00b", "03610062"),
    ("2-byte", "\u00fcn\u00ef", "05c3bc6ec3af"),
    ("3-byte", "\u20ac\u4e2d", "06e282ace4b8ad"),
    ("non-BMP", "\U0001F600", "06eda0bdedb880"),
    ("empty", "", "00"),
    ("null", None, "8000"),
    ("128 bytes", "x" * 128, "8001" + "78" * 128),
]


@pytest.mark.parametrize("name, text, hexed", STRINGS, ids=[s[0] for s in STRINGS])
def test_string_bytes(fresh: Fresh, name: str, text: str | None, hexed: str) -> None:
    fresh.message(("string", text))
    assert fresh.bodies() == [bytes.fromhex(hexed)]
    assert ref_utf_delta(text).hex() == hexed
    with VanillaChronicleReader(fresh.root) as reader:
        assert reader.next_reader().read_string() == text


def test_string_aliases(fresh: Fresh) -> None:
    fresh.appender.write_utf_delta("ab")
    fresh.appender.write_enum("CD")
    fresh.appender.write_enum(None)
    fresh.appender.finish()
    assert fresh.bodies() == [bytes.fromhex("026162" "024344" "8000")]


def test_write_utf_is_uint16_le_length(fresh: Fresh) -> None:
    fresh.message(("utf", "\u00e9"), ("utf", ""), ("utf", "\U0001F600"))
    assert fresh.bodies() == [bytes.fromhex("0200c3a9" "0000" "0600eda0bdedb880")]
    fresh.appender.write_utf("x" * 0xFFFF)  # the largest that fits
    with pytest.raises(ValueError):
        fresh.appender.write_utf("x" * 0x10000)
    fresh.appender.finish()
    assert fresh.bodies()[1][:2] == b"\xff\xff"


def test_booleans(fresh: Fresh) -> None:
    fresh.message(("boolean", True), ("boolean", False), ("boolean", 1), ("boolean", 0))
    assert fresh.bodies() == [bytes.fromhex("59005900")]
    assert F.JAVA_TRUE == 0x59


def test_write_char_from_str_and_int(fresh: Fresh) -> None:
    chars: list[str | int] = ["A", 0xD1A9, "\ud1a9", "\u20ac", 0, "\uffff"]
    fresh.message(*[("char", c) for c in chars])
    assert fresh.bodies() == [bytes.fromhex("4100" "a9d1" "a9d1" "ac20" "0000" "ffff")]
    for bad in ("\U0001F600", "ab", ""):
        with pytest.raises(ValueError):
            fresh.appender.write_char(bad)


def test_fixed_size_fields(fresh: Fresh) -> None:
    fields = [
        ("byte", -1), ("byte", 255), ("unsigned_byte", 200), ("short", -2), ("unsigned_short", 0xFFFE),
        ("int", -(2**31)), ("unsigned_int", 2**32 - 1), ("long", -(2**63)), ("float", 1.5), ("double", 0.5),
        ("int24", -2), ("int48", 2**47 - 1),
    ]
    fresh.message(*fields)
    expected = (
        bytes.fromhex("ffffc8" "feff" "feff")
        + struct.pack("<iIqfd", -(2**31), 2**32 - 1, -(2**63), 1.5, 0.5)
        + bytes.fromhex("feffff" "ffffffffff7f")
    )
    assert fresh.bodies() == [expected]
    with pytest.raises(OverflowError):
        fresh.appender.write_byte(256)
    with pytest.raises(OverflowError):
        fresh.appender.write_int24(2**23)
    with pytest.raises(OverflowError):
        fresh.appender.write_int48(-(2**47) - 1)
    with pytest.raises(ValueError, match="does not fit in a Java int"):  # not struct.error (issue 13)
        fresh.appender.write_int(2**31)


def test_compact_forms(fresh: Fresh) -> None:
    fresh.message(
        ("compact_short", -32768), ("compact_short", 5), ("compact_short", 1000),
        ("compact_int", 2**31 - 1), ("compact_int", 70000),
        ("compact_long", -(2**63)), ("compact_long", 2**40),
        ("compact_unsigned_int", 0xFFFF), ("compact_double", 0.5), ("compact_double", 0.1),
    )
    expected = (
        bytes.fromhex("80" "05" "81e803" "0280" "0180" "70110100" "00000080" "01000080" "0000000000010000")
        + bytes.fromhex("ffff" "ffff0000")
        + struct.pack("<f", 0.5)
        + struct.pack("<fd", float("nan"), 0.1)
    )
    assert fresh.bodies() == [expected]
    with VanillaChronicleReader(fresh.root) as reader:
        e = reader.next_reader()
        got = [
            e.read_compact_short(), e.read_compact_short(), e.read_compact_short(), e.read_compact_int(),
            e.read_compact_int(), e.read_compact_long(), e.read_compact_long(), e.read_compact_unsigned_int(),
            e.read_compact_double(), e.read_compact_double(),
        ]
        assert got == [-32768, 5, 1000, 2**31 - 1, 70000, -(2**63), 2**40, 0xFFFF, 0.5, 0.1]
        assert e.remaining() == 0


def test_fixed_string_advance_fill(fresh: Fresh) -> None:
    fresh.appender.write_fixed_string("abc", 10)
    fresh.appender.write_fixed_string(None, 4)
    fresh.appender.advance(3)
    fresh.appender.fill(2, b"z")
    with pytest.raises(ValueError):
        fresh.appender.write_fixed_string("abc", 3)
    fresh.appender.finish()
    assert fresh.bodies() == [b"\x03abc" + bytes(6) + b"\x80\x00" + bytes(2) + bytes(3) + b"zz"]


# -- §4 headers and alignment ------------------------------------------------------------------------------
def test_headers_and_alignment(fresh: Fresh) -> None:
    lengths = [15, 0, 1, 2, 3, 4, 5, 8, 29, 0]
    indices = [fresh.message(*[("byte", 7)] * n) for n in lengths]
    assert indices == [(DAY1 << 40) + k for k in range(len(lengths))]
    path = fresh.data_file()
    raw = read_bytes(path, 0, 4096)
    slots = read_slots(fresh.folder / "index-0", len(lengths) + 1)
    pos = 0
    for k, n in enumerate(lengths):
        assert pos % 4 == 0
        header = struct.unpack_from("<i", raw, pos)[0]
        assert header == ~n
        assert struct.unpack_from("<I", raw, pos)[0] == (0xFFFFFFFF - n)
        if n == 0:
            assert raw[pos : pos + 4] == b"\xff\xff\xff\xff"
        assert raw[pos + 4 : pos + 4 + n] == b"\x07" * n
        assert slots[k] & ((1 << 26) - 1) == pos + 4  # the entry points at the body, 4 past the header
        end = pos + 4 + n
        assert raw[end : align4(end)] == bytes(align4(end) - end)  # padding left zero
        pos = align4(end)
    assert slots[0] & ((1 << 26) - 1) == 4  # first body at offset 4
    assert slots[len(lengths)] == 0
    assert raw[pos:] == bytes(len(raw) - pos)  # nothing after the last message
    assert walk_records(path) == [(p, n) for p, n in zip(_positions(lengths), lengths)]


def _positions(lengths: list[int]) -> list[int]:
    out, pos = [], 0
    for n in lengths:
        out.append(pos)
        pos = align4(pos + 4 + n)
    return out


def test_files_are_java_sized_and_named(fresh: Fresh) -> None:
    fresh.message(("int", 1))
    assert sorted(os.listdir(fresh.root)) == ["20150221"]
    assert sorted(os.listdir(fresh.folder)) == sorted(["index-0", f"data-{TID}-0"])
    assert os.path.getsize(fresh.folder / "index-0") == 16 << 20
    assert os.path.getsize(fresh.data_file()) == 64 << 20
    # sparse like Java's: a 64 MiB data file holding one message uses only a few blocks
    assert os.stat(fresh.data_file()).st_blocks * 512 < 1 << 20


def test_discard_and_unfinished_leave_no_header(fresh: Fresh) -> None:
    fresh.appender.write_int(111)
    fresh.appender.discard()
    assert fresh.appender.bytes_written() == 0
    fresh.message(("int", 222))
    fresh.appender.write_int(333)  # never finished
    fresh.writer.close()
    assert fresh.bodies() == [struct.pack("<i", 222)]
    with VanillaChronicleReader(fresh.root) as reader:
        assert [e.read_int() for e in reader] == [222]


def test_finish_without_message_is_an_error(fresh: Fresh) -> None:
    with pytest.raises(ValueError):
        fresh.appender.finish()
    fresh.appender.start_excerpt()
    with pytest.raises(ValueError):
        fresh.appender.start_excerpt()


def test_bytes_written_and_finish_index(fresh: Fresh) -> None:
    fresh.appender.write_int(1)
    fresh.appender.write_string("ab")
    assert fresh.appender.bytes_written() == 7
    index = fresh.appender.finish()
    assert index == fresh.appender.last_index == DAY1 << 40
    assert fresh.appender.bytes_written() == 0


# -- §2 index entries -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [15, 16, 22])
def test_index_entry_bits(tmp_path: Path, bits: int) -> None:
    if TID >= 1 << bits:
        pytest.skip(f"this thread id {TID} needs more than {bits} bits")
    f = Fresh(tmp_path / "j", thread_id_bits=bits)
    try:
        lengths = [4, 9, 0]
        for n in lengths:
            f.message(*[("byte", 1)] * n)
        slots = read_slots(f.folder / "index-0", 4)
        assert slots == [(TID << (64 - bits)) + 0 * 2**26 + pos + 4 for pos in _positions(lengths)] + [0]
    finally:
        f.writer.close()
    with VanillaChronicleReader(f.root, thread_id_bits=bits) as reader:
        assert [e.get_length() for e in reader] == lengths


@pytest.mark.parametrize("bits", [15, 16, 22])
def test_index_entry_bits_with_file_number(tmp_path: Path, bits: int) -> None:
    """With 4 KiB data blocks and 256-byte capacity, file n's messages have entries tid<<(64-T) + n*4096 + off."""
    if TID >= 1 << bits:
        pytest.skip(f"this thread id {TID} needs more than {bits} bits")
    cfg = VanillaConfig(data_block_size=4096, message_capacity=256, thread_id_bits=bits)
    f = Fresh(tmp_path / "j", config=cfg)
    try:
        for k in range(40):
            f.message(("bytes", bytes([k]) * 200))
        # a 200-byte body takes 204 bytes: the file rolls when fewer than 256 + 4 bytes remain (§4)
        per_file = 0
        while 4096 - per_file * 204 >= 260:
            per_file += 1
        assert per_file == 19
        slots = read_slots(f.folder / "index-0", 41)
        expected = [(TID << (64 - bits)) + (k // per_file) * 4096 + (k % per_file) * 204 + 4 for k in range(40)]
        assert slots == expected + [0]
        assert sorted(p.name for p in f.folder.iterdir()) == sorted(["index-0"] + [f"data-{TID}-{n}" for n in range(3)])
        assert [os.path.getsize(f.data_file(n)) for n in range(3)] == [4096] * 3
    finally:
        f.writer.close()


def test_thread_id_too_large_for_bits(tmp_path: Path) -> None:
    if TID < 1 << 8:
        pytest.skip("thread id fits in 8 bits")
    with VanillaChronicleWriter(tmp_path / "j", thread_id_bits=8) as writer:
        with pytest.raises(ValueError, match="thread_id_bits"):
            writer.get_appender()


# -- the SAMPLE: the same messages written by our Appender give Java's bytes ------------------------------
class _Writer(threading.Thread):
    """A writer thread (its own tid, like one of the Java writer threads) that writes what it is sent."""

    def __init__(self, writer: VanillaChronicleWriter) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.inbox: queue.Queue[list[tuple[str, object]] | None] = queue.Queue()
        self.outbox: queue.Queue[int | BaseException] = queue.Queue()
        self.tid = -1

    def run(self) -> None:
        self.tid = threading.get_native_id()
        while (fields := self.inbox.get()) is not None:
            try:
                appender = self.writer.get_appender()
                for kind, value in fields:
                    getattr(appender, f"write_{kind}")(value)
                self.outbox.put(appender.finish())
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                self.outbox.put(exc)

    def write(self, fields: list[tuple[str, object]]) -> int:
        self.inbox.put(fields)
        result = self.outbox.get(timeout=30)
        if isinstance(result, BaseException):
            raise result
        return result


def test_sample_reproduced_byte_for_byte(java_3_4_0: Path, tmp_path: Path) -> None:
    """Write the 20 SAMPLE messages from 3 threads in Java's index order; data and index bytes must match."""
    clock = FakeClock(NOON_0221)
    ours = tmp_path / "ours"
    pos_mask = (1 << 48) - 1
    with VanillaChronicleWriter(ours, clock=clock, thread_id_bits=16) as writer:
        workers = [_Writer(writer) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            for day, folder in ((16487, "20150221"), (16488, "20150222")):
                clock.set(dt.datetime(2015, 2, 21 + day - 16487, 12))
                java_slots = read_slots(java_3_4_0 / folder / "index-0", 11)
                assert java_slots[10] == 0
                worker_of: dict[int, _Writer] = {}
                for k, entry in enumerate(java_slots[:10]):
                    java_tid = entry >> 48
                    if java_tid not in worker_of:
                        worker_of[java_tid] = workers[len(worker_of)]
                    worker = worker_of[java_tid]
                    java_data = java_3_4_0 / folder / f"data-{java_tid}-0"
                    cmd = struct.unpack("<i", read_bytes(java_data, entry & pos_mask, 4))[0]
                    assert cmd == k
                    assert worker.write(sample_fields(cmd)) == (day << 40) + k
                our_slots = read_slots(ours / folder / "index-0", 11)
                assert our_slots[10] == 0
                for java_entry, our_entry in zip(java_slots[:10], our_slots[:10]):
                    assert our_entry & pos_mask == java_entry & pos_mask  # file number and offset
                    assert our_entry >> 48 == worker_of[java_entry >> 48].tid
                for java_tid, worker in worker_of.items():
                    java_bytes = read_bytes(java_3_4_0 / folder / f"data-{java_tid}-0", 0, 1 << 16)
                    our_bytes = read_bytes(ours / folder / f"data-{worker.tid}-0", 0, 1 << 16)
                    assert our_bytes == java_bytes, (folder, java_tid)
                    assert os.path.getsize(ours / folder / f"data-{worker.tid}-0") == 64 << 20
                assert sorted(p.name for p in (ours / folder).iterdir()) == sorted(
                    ["index-0"] + [f"data-{w.tid}-0" for w in workers]
                )
                assert read_bytes(ours / folder / "index-0", 0, 1 << 16) != bytes(1 << 16)
        finally:
            for w in workers:
                w.inbox.put(None)
                w.join(10)


def test_sample_hex_dump_of_spec(java_3_4_0: Path) -> None:
    """vanilla-format.md §4 shows the start of 20150221/data-55724-0; our reference bytes give the same."""
    dump = bytes.fromhex(
        "f0ffffff02000000000000000000e03f"
        "02323d00e2ffffff050000009a999999"
        "9999c93f05353d303132050000000005"
        "000000a9d1000000cdffffff08000000"
    )
    assert read_bytes(java_3_4_0 / "20150221" / "data-55724-0", 0, 64) == dump
    body2 = struct.pack("<id", 2, 0.5) + ref_field("string", "2=")
    assert dump[:4] == struct.pack("<i", ~len(body2)) and dump[4:19] == body2
    assert dump[19] == 0 and dump[20:24] == struct.pack("<i", ~29)
    assert dump[24:53] == b"".join(ref_field(k, v) for k, v in sample_fields(5))
    assert ref_java_text("5=012") == b"5=012"


def test_appender_of_closed_writer(fresh: Fresh) -> None:
    fresh.message(("int", 1))
    fresh.writer.close()
    before = sorted(os.listdir(fresh.folder))
    with pytest.raises(ValueError, match="closed"):
        fresh.appender.write_int(2)
    with pytest.raises(ValueError, match="closed"):
        fresh.writer.get_appender()
    assert sorted(os.listdir(fresh.folder)) == before  # no new data file was claimed
    with VanillaChronicleReader(fresh.root) as reader:
        assert [e.read_int() for e in reader] == [1]


def test_clock_across_cycles_each_message(tmp_path: Path) -> None:
    """The writer keeps the last cycle's window of epoch ms so that most messages skip the clock checks: every
    message must still land in its own clock's cycle, the clock moving forward, back, and by other int types;
    a reading of the wrong type is refused on every message, not only the first."""
    import numpy as np

    import pychro

    day = 86_400_000
    readings: list[object] = [5 * day, 5 * day + 1, np.int64(6 * day), 6 * day + day - 1, 5 * day + 7, 7 * day]
    feed = iter(readings)
    with VanillaChronicleWriter(tmp_path / "j", clock=lambda: next(feed)) as chron:
        appender = chron.get_appender()
        cycles = []
        for k in range(len(readings)):
            appender.write_int(k)
            cycles.append(chron.config.split_index(appender.finish())[0])
        assert cycles == [5, 5, 6, 6, 5, 7]
        for bad in (float(7 * day), True, 7 * day):  # the last: the window still works after refusals
            feed = iter([bad])
            if bad is True or isinstance(bad, float):
                with pytest.raises(TypeError, match="clock must return epoch milliseconds as an int"):
                    appender.write_int(0)
            else:
                appender.write_int(0)
                assert chron.config.split_index(appender.finish())[0] == 7
    with VanillaChronicleReader(tmp_path / "j") as reader:
        got = []
        while True:
            try:
                got.append(reader.next_reader().read_int())
            except pychro.NoData:
                break
    assert got == [0, 1, 4, 2, 3, 5, 0]  # in cycle order: 5, 5, 5 (the clock went back), 6, 6, 7, 7
