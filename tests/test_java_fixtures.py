"""Read every message and field of the Java-written journals in tests/data/java (see the README there)."""

from __future__ import annotations

import datetime as dt
import os
import struct
from collections import defaultdict
from pathlib import Path

import pytest

from helpers import (
    FakeClock,
    read_slots,
    ref_stop_bit,
    ref_utf_delta,
    sample_body,
    sample_fields,
    sample_text,
)

import pychro
from pychro import Journal, JournalNotFoundError, NoData, VanillaChronicleReader

DAY1, DAY2 = 16487, 16488
BASE1, BASE2 = 0x40670000000000, 0x40680000000000


# -- the 3.4.0 two-day journal ------------------------------------------------------------------------------
def read_sample_message(excerpt: pychro.Excerpt) -> list[tuple[str, object]]:
    cmd = excerpt.read_int()
    out: list[tuple[str, object]] = [("int", cmd)]
    for j in range(cmd % 10):
        kind = j % 5
        if kind == 0:
            out.append(("double", excerpt.read_double()))
        elif kind == 1:
            out.append(("string", excerpt.read_string()))
        elif kind == 2:
            out.append(("unsigned_byte", excerpt.read_unsigned_byte()))
        elif kind == 3:
            out.append(("long", excerpt.read_long()))
        else:
            out.append(("char", excerpt.read_char()))
    return out


def test_sample_text_matches_readme_examples() -> None:
    assert (sample_text(2), sample_text(5), sample_text(7)) == ("2=", "5=012", "7=01234")


def test_340_thread_id_bits_detected_as_16(java_3_4_0: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Make this host's default 15 (Java-Lang <= 6.8.0 on pid_max 32768), so 16 can only come from detection.
    monkeypatch.setenv("PYCHRO_THREAD_ID_BITS", "15")
    journal = Journal(java_3_4_0)
    assert journal.config.thread_id_bits == 16
    assert journal.thread_id_bits_detected
    with VanillaChronicleReader(java_3_4_0) as reader:
        assert reader.config.thread_id_bits == 16
        assert [read_sample_message(e)[0][1] for e in reader] == list(range(10)) * 2


@pytest.mark.parametrize("day, base", [(DAY1, BASE1), (DAY2, BASE2)])
def test_340_every_message_and_field(java_3_4_0: Path, day: int, base: int) -> None:
    with VanillaChronicleReader(java_3_4_0, thread_id_bits=16, full_index=base) as reader:
        for cmd in range(10):
            excerpt = reader.next_reader()
            assert excerpt.index == base + cmd
            body = sample_body(cmd)
            assert excerpt.get_length() == len(body)
            assert excerpt.body() == body  # the bytes Java wrote equal the README's description
            assert read_sample_message(excerpt) == sample_fields(cmd)
            assert excerpt.remaining() == 0
        if day == DAY1:
            # the next message is the first of day 2 (the wall clock is long past 2015-02-21)
            assert reader.next_reader().index == BASE2
        else:
            with pytest.raises(NoData):
                reader.next_reader()


def test_340_body_lengths_match_headers(java_3_4_0: Path) -> None:
    """Each excerpt's length is the ~header Java wrote 4 bytes before the index entry's offset."""
    for day in ("20150221", "20150222"):
        folder = java_3_4_0 / day
        for entry in read_slots(folder / "index-0", 10):
            tid, file_no, offset = entry >> 48, (entry >> 26) & ((1 << 22) - 1), entry & ((1 << 26) - 1)
            raw = (folder / f"data-{tid}-{file_no}").read_bytes()[: offset + 4096]
            length = ~struct.unpack_from("<i", raw, offset - 4)[0]
            cmd = struct.unpack_from("<i", raw, offset)[0]
            assert length == len(sample_body(cmd))
            assert raw[offset : offset + length] == sample_body(cmd)


def test_340_fifteen_bits_names_missing_data_file(java_3_4_0: Path) -> None:
    entry = read_slots(java_3_4_0 / "20150221" / "index-0", 1)[0]
    wrong_name = f"data-{entry >> 49}-{(entry >> 26) & ((1 << 23) - 1)}"  # what T=15 makes of slot 0
    assert not (java_3_4_0 / "20150221" / wrong_name).exists()
    with VanillaChronicleReader(java_3_4_0, thread_id_bits=15) as reader:
        with pytest.raises(JournalNotFoundError) as info:
            reader.next_reader()
    message = str(info.value)
    assert wrong_name in message
    assert "thread_id_bits=16" in message  # the hint says which value would work
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path.endswith(wrong_name)
    assert info.value.cycle == DAY1 and info.value.seq == 0


def test_340_sixteen_bits_explicit(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0, thread_id_bits=16) as reader:
        assert reader.get_index() == BASE1
        indices = [e.index for e in reader]
    assert indices == [BASE1 + k for k in range(10)] + [BASE2 + k for k in range(10)]


def test_340_end_indices(java_3_4_0: Path) -> None:
    with VanillaChronicleReader(java_3_4_0) as reader:
        assert reader.get_end_index() == BASE2 + 10
        assert reader.get_end_index_today() == 0x4067000000000A  # pychro 0.8's test value, today = first day
        reader.set_date(dt.date(2015, 2, 22))
        assert reader.get_end_index_today() == BASE2 + 10
    journal = Journal(java_3_4_0)
    assert journal.cycles() == [DAY1, DAY2]
    assert [journal.count(c) for c in journal.cycles()] == [10, 10]
    assert journal.first_index() == BASE1 and journal.end_index() == BASE2 + 10


def test_340_reader_waits_in_first_cycle_until_clock_leaves_it(java_3_4_0: Path) -> None:
    clock = FakeClock(dt.datetime(2015, 2, 21, 23, 59, 59))
    with VanillaChronicleReader(java_3_4_0, clock=clock) as reader:
        assert [e.index for e in reader] == [BASE1 + k for k in range(10)]
        with pytest.raises(NoData):
            reader.next_reader()  # day 1 is not over by this clock: day 2 must not be visited yet
        assert reader.get_index() == BASE1 + 10
        clock.set(dt.datetime(2015, 2, 22, 0, 0, 0))
        assert reader.next_reader().index == BASE2
        assert reader.get_index() == BASE2 + 1


# -- the 3.6.6 journal --------------------------------------------------------------------------------------
def _string_for(w: int, i: int) -> str | None:
    r = i % 10
    if r == 3:
        return None
    if r == 5:
        return ""
    if r == 7:
        return f"\u00fcn\u00ef-\u20ac-\u4e2d-{w}-{i}"
    if r == 9:
        return f"emoji-\U0001F600-{w}-{i}"
    return f"msg-{w}-{i}"


def _stop_bit_for(i: int) -> int:
    return [0, -1, 127, 128, -(2**63), 2**63 - 1, -i * i * 31, i << 20][i % 8]


def _wrap64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def test_366_expected_dump_agrees_with_readme(java_3_6_6) -> None:  # type: ignore[no-untyped-def]
    """The Java dump and the README's generator rules agree (so the README rules can check our bytes too)."""
    for row in java_3_6_6.expected:
        w, i = row["w"], row["i"]
        assert row["s"] == _string_for(w, i)
        assert row["b"] == _stop_bit_for(i)
        assert row["l"] == _wrap64(i * -6700417 + (w << 48))
        assert chr(row["c"]) == "AZaz09 \u00e9\u20ac\u4e2d\uffff"[i % 11]
        assert row["rem"] == 0


def test_366_every_message_field_by_field(java_3_6_6) -> None:  # type: ignore[no-untyped-def]
    expected = java_3_6_6.expected
    assert len(expected) == java_3_6_6.manifest["total"] == 3000
    with VanillaChronicleReader(java_3_6_6.journal) as reader:
        assert reader.config.thread_id_bits == java_3_6_6.manifest["thread_id_bits"] == 16
        assert reader.get_index() == expected[0]["index"]
        n = 0
        for excerpt, row in zip(reader, expected, strict=True):
            assert excerpt.index == row["index"]
            assert excerpt.get_length() == row["len"]
            got = {
                "w": excerpt.read_byte(),
                "i": excerpt.read_int(),
                "l": excerpt.read_long(),
                "d": excerpt.read_double(),
                "s": excerpt.read_string(),
                "c": ord(excerpt.read_char()),
                "a": excerpt.read_stop_bit(),
                "b": excerpt.read_stop_bit(),
                "rem": excerpt.remaining(),
            }
            assert got == {k: row[k] for k in got}, row
            assert struct.pack(">d", got["d"]).hex() == row["d_bits"]
            n += 1
        assert n == 3000
        with pytest.raises(NoData):
            reader.next_reader()


def test_366_bodies_match_reference_bytes(java_3_6_6) -> None:  # type: ignore[no-untyped-def]
    """Java's bytes for every message equal our independent encoders' bytes (null, "", CESU-8, -1 ...)."""
    with VanillaChronicleReader(java_3_6_6.journal) as reader:
        for excerpt, row in zip(reader, java_3_6_6.expected, strict=True):
            w, i = row["w"], row["i"]
            ref = (
                bytes([w])
                + struct.pack("<iqd", i, row["l"], row["d"])
                + ref_utf_delta(_string_for(w, i))
                + struct.pack("<H", row["c"])
                + ref_stop_bit(i)
                + ref_stop_bit(_stop_bit_for(i))
            )
            assert excerpt.body() == ref


def test_366_per_writer_sequences_have_no_gaps(java_3_6_6) -> None:  # type: ignore[no-untyped-def]
    manifest = java_3_6_6.manifest
    seen: dict[int, list[int]] = defaultdict(list)
    indices: dict[int, list[int]] = defaultdict(list)
    with VanillaChronicleReader(java_3_6_6.journal) as reader:
        for excerpt in reader:
            w = excerpt.read_byte()
            seen[w].append(excerpt.read_int())
            indices[w].append(excerpt.index)
    assert sorted(seen) == [0, 1, 2]
    for w in range(3):
        assert seen[w] == list(range(1000))
        assert indices[w][0] == manifest["writer_first_index"][w]
        assert indices[w][-1] == manifest["writer_last_index"][w]


def test_366_index_entries_name_writer_tids(java_3_6_6) -> None:  # type: ignore[no-untyped-def]
    """Slot k's thread id (top 16 bits) is the tid of writer w of message k, for all 3000 slots."""
    manifest = java_3_6_6.manifest
    folder = java_3_6_6.journal / "20261128"
    slots = read_slots(folder / "index-0", 3001)
    assert slots[3000] == 0 and all(slots[:3000])
    for slot, row in zip(slots, java_3_6_6.expected):
        assert slot >> 48 == manifest["writer_tids"][row["w"]]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["index-0"] + [f"data-{t}-0" for t in manifest["writer_tids"]]
    )


def test_366_random_access(java_3_6_6) -> None:  # type: ignore[no-untyped-def]
    expected = java_3_6_6.expected
    with VanillaChronicleReader(java_3_6_6.journal) as reader:
        for k in (2999, 0, 1234, 7, 2998):
            excerpt = reader.excerpt_at(expected[k]["index"])
            assert excerpt.index == expected[k]["index"]
            assert (excerpt.read_byte(), excerpt.read_int()) == (expected[k]["w"], expected[k]["i"])
            assert reader.get_index() == expected[k]["index"] + 1
        with pytest.raises(NoData):
            reader.excerpt_at(expected[-1]["index"] + 1)


def test_340_detection_is_made_again_for_other_files_in_the_same_place(
        java_3_4_0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Detected thread-id bits are kept per cycle folder for the next read, but only while the folder holds the
    same files: the journal's index copied over in place (same names, same inodes) with entries of 24-bit thread
    ids is detected again, as 24."""
    import shutil

    monkeypatch.setenv("PYCHRO_THREAD_ID_BITS", "15")
    copy = tmp_path / "j"
    shutil.copytree(java_3_4_0, copy)
    assert Journal(copy).config.thread_id_bits == 16
    assert Journal(copy).config.thread_id_bits == 16  # (from what was kept)
    for index in copy.glob("*/index-*"):
        raw = bytearray(index.read_bytes())
        slots = struct.unpack_from(f"<{len(raw) // 8}Q", raw)
        low = (1 << 48) - 1
        moved = [((e >> 48) << 40) | (e & low) if e else 0 for e in slots]  # tid from bits 48.. to 40..
        assert any(moved)
        mtime = index.stat().st_mtime_ns
        with open(index, "r+b") as fh:  # in place: the inode stays
            fh.write(struct.pack(f"<{len(moved)}Q", *moved))
        os.utime(index, ns=(mtime + 10**9, mtime + 10**9))  # (a clock of coarse granularity would hide the write)
    journal = Journal(copy)
    assert journal.config.thread_id_bits == 24 and journal.thread_id_bits_detected
