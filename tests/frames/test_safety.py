"""Bad bytes get precise errors, never garbage or a crash; results are snapshots; mappings are released."""

from __future__ import annotations

import gc
import os
import shutil
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pychro import (
    CorruptDataError,
    Journal,
    JournalNotFoundError,
    SchemaMismatchError,
    VanillaChronicleWriter,
    write_frame,
)
from pychro import _layout as L
from pychro.frames import ReadStats, Schema, api, iter_batches, read_frame, read_table
from pychro.frames.scan import wait_unmapped

from ._util import assert_same, row_api_read, write_journal

SCHEMA = Schema("i:int32,s:string,x:float64")
ROWS = [[i, f"row-{i}", i / 4] for i in range(50)]


@pytest.fixture()
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "j"
    write_journal(path, SCHEMA, ROWS)
    return path


def locate(path: Path, seq: int) -> tuple[Path, int]:
    """(data file, body offset) of message ``seq`` of the journal's only cycle."""
    j = Journal(path)
    (cycle,) = j.cycles()
    with open(j.index_path(cycle, 0), "rb") as fh:
        fh.seek(8 * seq)
        entry = struct.unpack("<Q", fh.read(8))[0]
    tid, file_no, offset = j.codec.unpack(entry)
    return Path(j.data_path(cycle, tid, file_no)), offset


def patch(file: Path, offset: int, data: bytes) -> None:
    with open(file, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def set_slot(path: Path, seq: int, entry: int) -> None:
    j = Journal(path)
    patch(Path(j.index_path(j.cycles()[0], 0)), 8 * seq, struct.pack("<Q", entry))


# -- headers and bounds: CorruptDataError -----------------------------------------------------------------------
def test_zero_header_is_not_committed(journal: Path) -> None:
    data, offset = locate(journal, 7)
    patch(data, offset - 4, b"\0\0\0\0")
    with pytest.raises(CorruptDataError, match="uncommitted") as info:
        read_table(journal, SCHEMA)
    err = info.value
    assert (err.seq, err.offset, err.path) == (7, offset, str(data))  # type: ignore[attr-defined]
    with pytest.raises(CorruptDataError):  # errors= is about the schema, not about damaged files
        read_table(journal, SCHEMA, errors="skip")


def test_header_too_long(journal: Path) -> None:
    data, offset = locate(journal, 3)
    patch(data, offset - 4, struct.pack("<i", ~(1 << 30)))
    with pytest.raises(CorruptDataError, match="below 2\\*\\*30") as info:
        read_table(journal, SCHEMA, columns=["x"])
    assert info.value.seq == 3  # type: ignore[attr-defined]


def test_body_past_the_end_of_a_short_copy(tmp_path: Path, journal: Path) -> None:
    """A copied journal whose data file is shorter than the block: no SIGBUS, an error at the cut message."""
    data, offset = locate(journal, 40)
    os.truncate(data, offset + 3)
    with pytest.raises(CorruptDataError, match="runs past the end of the data file") as info:
        read_table(journal, SCHEMA)
    assert info.value.seq == 40  # type: ignore[attr-defined]
    # everything before the cut reads normally
    table = read_table(journal, SCHEMA, end=Journal(journal).config.index_of(Journal(journal).cycles()[0], 40))
    assert table.num_rows == 40


def test_entry_outside_the_file(journal: Path) -> None:
    data, offset = locate(journal, 5)
    j = Journal(journal)
    entry = struct.unpack("<Q", Path(j.index_path(j.cycles()[0], 0)).read_bytes()[40:48])[0]
    os.truncate(data, 4096)
    set_slot(journal, 5, entry - offset + 60_000)  # same file, offset far past its (now short) end
    with pytest.raises(CorruptDataError, match="outside the data file") as info:
        read_table(journal, SCHEMA)
    assert info.value.seq == 5  # type: ignore[attr-defined]


def test_first_bad_row_in_index_order_across_files(tmp_path: Path) -> None:
    """Two writers: rows are decoded per data file (sorted by thread id), yet the error names the lowest seq."""
    path = tmp_path / "two"
    schema = Schema("i:int32")
    with VanillaChronicleWriter(path) as writer:
        a = writer.get_appender()
        for i in range(10):
            a.write_int(i)
            a.finish()

        def other() -> None:
            b = writer.get_appender()
            b.write_int(100)
            b.finish()

        t = threading.Thread(target=other)
        t.start()
        t.join()
        for i in range(10, 20):
            a.write_int(i)
            a.finish()
    main_file, _ = locate(path, 0)
    other_file, _ = locate(path, 10)  # seq 10 is the other thread's message
    # damage one row in each file so that the file decoded first holds the later seq
    later = L.parse_data_file_name(other_file.name) > L.parse_data_file_name(main_file.name)  # type: ignore[operator]
    bad = (10, 15) if later else (5, 10)
    for seq in bad:
        data, offset = locate(path, seq)
        patch(data, offset - 4, b"\0\0\0\0")
    with pytest.raises(CorruptDataError) as info:
        read_table(path, schema)
    assert info.value.seq == bad[0]  # type: ignore[attr-defined]


def test_short_copies_read_normally(tmp_path: Path, journal: Path) -> None:
    """Data files cut right after the last message (what copying a journal gives) read like the original."""
    expected = row_api_read(journal, SCHEMA)
    data, offset = locate(journal, 49)
    length = ~struct.unpack("<i", data.read_bytes()[offset - 4 : offset])[0]
    os.truncate(data, offset + length)  # not a multiple of 4: the decoder reads from a padded copy
    assert (offset + length) % 4
    assert_same(read_table(journal, SCHEMA, index=True), expected, SCHEMA)
    os.truncate(data, L.align4(offset + length))
    assert_same(read_table(journal, SCHEMA, index=True), expected, SCHEMA)


def test_missing_data_file(journal: Path) -> None:
    data, _ = locate(journal, 0)
    data.unlink()
    with pytest.raises(JournalNotFoundError, match=r"data file .* is missing"):
        read_table(journal, SCHEMA)


def test_missing_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFoundError):
        read_table(tmp_path / "nope", SCHEMA)


def test_empty_journal_folder(tmp_path: Path) -> None:
    table = read_table(tmp_path, SCHEMA, index=True)
    assert table.num_rows == 0 and table.column_names == ["_index", "i", "s", "x"]
    assert list(iter_batches(tmp_path, SCHEMA)) == []


# -- bytes that do not match the schema: SchemaMismatchError / skip / truncate ----------------------------------
def test_invalid_text_is_a_mismatch(journal: Path) -> None:
    data, offset = locate(journal, 12)
    patch(data, offset + 4 + 1, b"\xff\xfe")  # inside "row-12"
    with pytest.raises(SchemaMismatchError, match="not Java text") as info:
        read_table(journal, SCHEMA)
    assert (info.value.seq, info.value.column) == (12, "s")  # type: ignore[attr-defined]
    stats = ReadStats()
    skipped = read_table(journal, SCHEMA, errors="skip", stats=stats)
    assert skipped.column("i").to_pylist() == [i for i in range(50) if i != 12]
    assert stats.skipped_rows == 1 and stats.first_bad_index is not None and stats.first_bad_index & 0xFFFF == 12
    assert read_table(journal, SCHEMA, errors="truncate").column("i").to_pylist() == list(range(12))
    # a projection without the string still walks over it (and does not need to decode it)
    assert read_table(journal, SCHEMA, columns=["x"]).num_rows == 50


@pytest.mark.parametrize(
    "length_bytes, what",
    [(b"\x81\x00", "holds no valid string"), (b"\xff" * 10 + b"\x01", "holds no valid string"), (b"\x7f", "runs past")],
)
def test_bad_string_lengths(journal: Path, length_bytes: bytes, what: str) -> None:
    data, offset = locate(journal, 20)
    patch(data, offset + 4, length_bytes)  # the stop-bit length of s: -2, more than 10 bytes, 127
    with pytest.raises(SchemaMismatchError, match=what) as info:
        read_table(journal, SCHEMA)
    assert (info.value.seq, info.value.column) == (20, "s")  # type: ignore[attr-defined]
    assert read_table(journal, SCHEMA, errors="skip").num_rows == 49


def test_mismatch_in_a_later_batch_and_cycle_position(journal: Path) -> None:
    data, offset = locate(journal, 33)
    patch(data, offset - 4, struct.pack("<i", ~3))  # header says 3 bytes
    with pytest.raises(SchemaMismatchError) as info:
        read_table(journal, SCHEMA, batch_rows=10)
    assert info.value.seq == 33  # type: ignore[attr-defined]
    t = read_table(journal, SCHEMA, batch_rows=10, errors="truncate", metadata="seq")
    assert t.column("_seq").to_pylist() == list(range(33))
    t = read_table(journal, SCHEMA, batch_rows=10, errors="skip", metadata="seq")
    assert t.column("_seq").to_pylist() == [s for s in range(50) if s != 33]


def test_any_non_zero_byte_is_true(tmp_path: Path) -> None:
    schema = Schema("b:bool,i:int8")
    write_journal(tmp_path, schema, [[True, 1], [False, 2], [True, 3], [True, 4]])
    for seq, byte in ((0, b"\x01"), (2, b"\xff"), (3, b"\x80")):
        data, offset = locate(tmp_path, seq)
        patch(data, offset, byte)
    assert read_table(tmp_path, schema).column("b").to_pylist() == [True, False, True, True]
    assert_same(read_table(tmp_path, schema, index=True), row_api_read(tmp_path, schema), schema)


def test_duplicate_and_unaligned_entries(journal: Path) -> None:
    """Hand-made index entries (not written by Java): two slots naming one message, and a body that does
    not start 4 bytes after a 4-aligned header. The frames reader agrees with the row API on both."""
    j = Journal(journal)
    index_file = Path(j.index_path(j.cycles()[0], 0))
    raw = bytearray(index_file.read_bytes()[: 8 * 50])
    entries = list(struct.unpack("<50Q", raw))
    data, offset = locate(journal, 9)
    # move message 9's header and body by 2 bytes inside the gap before message 10 (bodies are padded to 4)
    body = data.read_bytes()[offset - 4 : offset + 4 + 5 + 8]
    patch(data, offset - 4 + 64_000, body)  # far away, at an unaligned place: offset + 64_000 is 4-aligned
    patch(data, offset - 4 + 64_002, body)
    entries[9] = entries[9] + 64_002
    entries[10] = entries[11]  # a duplicate
    patch(index_file, 0, struct.pack("<50Q", *entries))
    expected = row_api_read(journal, SCHEMA)
    assert expected[9]["i"] == 9 and expected[10] == {**expected[11], "_index": expected[10]["_index"]}
    for batch_rows in (4, 100):
        assert_same(read_table(journal, SCHEMA, index=True, batch_rows=batch_rows), expected, SCHEMA)


# -- snapshots and memory ----------------------------------------------------------------------------------------
def test_result_is_a_snapshot_while_a_writer_appends(tmp_path: Path) -> None:
    schema = Schema("i:int64,s:string")
    enough = threading.Event()
    written = []
    writer = VanillaChronicleWriter(tmp_path)

    def append() -> None:
        app = writer.get_appender()
        for i in range(6000):
            app.write_long(i)
            app.write_string(str(i) * (i % 5))
            app.finish()
            written.append(i)
            if i == 500:
                enough.set()
            if i % 50 == 0:
                time.sleep(0.001)  # keep appending while the reads below run

    t = threading.Thread(target=append)
    t.start()
    try:
        assert enough.wait(30)
        tables = [read_table(tmp_path, schema, batch_rows=97) for _ in range(5)]
    finally:
        t.join()
        writer.close()
    for table in tables:
        n = table.num_rows
        assert n >= 500
        assert table.column("i").to_pylist() == list(range(n))
        assert table.column("s").to_pylist() == [str(i) * (i % 5) for i in range(n)]
    before = tables[0].to_pylist()
    assert read_table(tmp_path, schema).num_rows == 6000
    assert tables[0].to_pylist() == before


def _mapped(path: Path) -> list[str]:
    with open("/proc/self/maps") as fh:
        return [line for line in fh if str(path) in line]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_mappings_are_released(tmp_path: Path, journal: Path) -> None:
    table = read_table(journal, SCHEMA)
    frame = read_frame(journal, SCHEMA)
    batches = list(iter_batches(journal, SCHEMA, batch_rows=7))
    gc.collect()
    wait_unmapped()  # a finished read's maps are dropped by a thread of their own
    assert _mapped(journal) == []  # results are copies: nothing keeps a data or index file mapped
    shutil.rmtree(journal)
    assert table.column("s").to_pylist()[:2] == ["row-0", "row-1"] and frame["i"].sum() == sum(range(50))
    assert pa.Table.from_batches(batches).equals(table)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
@pytest.mark.parametrize("threads", [1, 2])
def test_an_abandoned_or_failed_read_unmaps_its_files_too(tmp_path: Path, journal: Path, threads: int) -> None:
    it = iter_batches(journal, SCHEMA, batch_rows=5, threads=threads)
    next(it)
    assert _mapped(journal)  # (the read has them mapped while it goes on)
    it.close()
    with pytest.raises(SchemaMismatchError):
        read_table(journal, "i:int64", threads=threads)
    gc.collect()
    wait_unmapped()
    assert _mapped(journal) == []


def _resident_kib(path: Path) -> int:
    """KiB of this process's mappings of files under ``path`` that are resident (``Rss`` in smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if "-" in line.split(" ", 1)[0]:  # a mapping's first line
                inside = str(path) in line
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc")
@pytest.mark.parametrize("after_mib", [1, 64])
def test_streaming_read_gives_pages_back_past_its_first_mebibytes(tmp_path: Path, monkeypatch: Any,
                                                                   after_mib: int) -> None:
    """A streaming read keeps the journal pages it read resident for its first RELEASE_AFTER bytes only (giving
    them back costs more than a small read gains); read_table keeps them all until it returns."""
    monkeypatch.setattr(api, "RELEASE_AFTER", after_mib << 20)
    path = tmp_path / "big"
    n = 120_000  # 44-byte messages: 5 MiB of journal
    write_frame(pa.table({"a": pa.array(range(n), pa.int64()), "b": pa.array([1.5] * n), "c": pa.array(range(n)),
                          "d": pa.array(range(n)), "e": pa.array(range(n))}), path,
                "a:int64,b:float64,c:int64,d:int64,e:int64", date="2024-01-02")
    seen = []
    for batch in iter_batches(path, "a:int64,b:float64,c:int64,d:int64,e:int64", batch_rows=4096, threads=1):
        seen.append(batch.num_rows)
        resident = _resident_kib(path)  # the data file is mapped until the iterator ends
    assert sum(seen) == n
    if after_mib == 1:
        assert resident < 2048  # the first MiB, and what the last batches read
    else:
        assert resident > 4096  # all of it


def test_abandoned_iterator_releases_its_mappings(journal: Path) -> None:
    it = iter_batches(journal, SCHEMA, batch_rows=5)
    next(it)
    assert _mapped(journal)  # the open cycle's files stay mapped while the iterator is alive
    it.close()
    del it
    gc.collect()
    wait_unmapped()
    assert _mapped(journal) == []


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
@pytest.mark.parametrize("threads", [1, 2])
def test_a_read_of_many_cycles_keeps_few_files_mapped(tmp_path: Path, threads: int) -> None:
    """Files of the cycles a streaming read has left are unmapped as it goes (a journal of any number of files can
    be read), not kept until the read ends."""
    path = tmp_path / "days"
    for day in range(12):
        write_frame(pa.table({"i": pa.array(range(day * 100, day * 100 + 100), pa.int64())}), path, "i:int64",
                    date=f"2024-01-{day + 1:02d}")
    most = 0
    got = []
    for batch in iter_batches(path, "i:int64", batch_rows=30, threads=threads):
        got += batch.column("i").to_pylist()
        gc.collect()
        most = max(most, len({line.split()[-1] for line in _mapped(path)}))
    assert got == list(range(1200))
    assert most <= 3 * 2  # (an index and a data file of the cycle read and of those still decoding or just left)


# -- arguments -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(errors="ignore"), ValueError, "errors= must be one of"),
        (dict(columns=["nope"]), ValueError, "unknown columns"),
        (dict(columns="i"), TypeError, "list of names"),
        (dict(columns=["i", "i"]), ValueError, "duplicate"),
        (dict(columns=[]), ValueError, "selects nothing"),
        (dict(metadata=["time"]), ValueError, "metadata="),
        (dict(batch_rows=0), ValueError, "batch_rows"),
        (dict(threads=0), ValueError, "threads"),
        (dict(start="yesterday"), ValueError, "start='yesterday' is neither a full index"),  # ISO strings are taken
        (dict(start=1.5), TypeError, "start must be"),
        (dict(start=-1), ValueError, "start index"),
        (dict(date=(1, 2, 3)), ValueError, "date="),
    ],
)
def test_bad_arguments(journal: Path, kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        read_table(journal, SCHEMA, **kwargs)


def test_metadata_only(journal: Path) -> None:
    t = read_table(journal, SCHEMA, columns=[], metadata=["seq"])
    assert t.column_names == ["_seq"] and t.column("_seq").to_pylist() == list(range(50))


def test_metadata_name_clash(tmp_path: Path) -> None:
    write_journal(tmp_path, "_seq:int32", [[1]])
    assert read_table(tmp_path, "_seq:int32").to_pydict() == {"_seq": [1]}
    with pytest.raises(ValueError, match="clash"):
        read_table(tmp_path, "_seq:int32", metadata=["seq"])


def test_a_read_left_open_at_exit_says_nothing(tmp_path: Path, journal: Path) -> None:
    """A streaming read still open when the interpreter exits is closed quietly (its maps are dropped on the spot:
    no thread can start then), after reads whose maps the background thread was still dropping."""
    import subprocess
    import sys

    script = (
        "import pychro\n"
        f"path, schema = {str(journal)!r}, {str(SCHEMA)!r}\n"
        "def main():\n"
        "    global it\n"
        "    for _ in range(3):\n"
        "        pychro.read_table(path, schema)\n"
        "    it = pychro.iter_batches(path, schema, batch_rows=5)\n"
        "    next(it)\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""


def _decoding_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pychro-decode")]


def test_reads_with_many_thread_counts_leave_few_idle_threads(tmp_path: Path) -> None:
    """Each thread count had a pool of its own for good: reads with threads=1..64 in turn left 234 idle threads.
    Now the pools of the last api.KEPT_POOLS counts stay; an older pool's threads end."""
    n = 300_000
    write_frame({"a": np.arange(n, dtype=np.int64)}, tmp_path / "j", "a:int64")
    expected = read_table(tmp_path / "j", "a:int64", threads=1)
    try:
        for threads in range(2, 65):
            assert read_table(tmp_path / "j", "a:int64", threads=threads).equals(expected)
        kept = [*api._POOLS]
        assert len(kept) == api.KEPT_POOLS and kept[-1] == 64
        deadline = time.monotonic() + 10
        while len(_decoding_threads()) > sum(kept) and time.monotonic() < deadline:
            time.sleep(0.01)  # the threads of shut pools end once their last batches are done
        assert len(_decoding_threads()) <= sum(kept)
        # a pool shut while a read still uses it: that read takes a pool of its thread count again (its batches
        # are still decoded by threads of a pool, not in the caller's thread)
        batches = iter_batches(tmp_path / "j", "a:int64", batch_rows=api.EVEN_MIN_ROWS, threads=3)
        first = next(batches)
        shut = api._POOLS[3]
        assert shut._threads  # (batches of EVEN_MIN_ROWS rows or more go to the pool)
        for threads in range(4, 4 + api.KEPT_POOLS):
            read_table(tmp_path / "j", "a:int64", threads=threads)
        assert 3 not in api._POOLS and shut._shutdown
        assert pa.Table.from_batches([first, *batches]).equals(expected)
        assert api._POOLS[3] is not shut and api._POOLS[3]._threads
    finally:  # these big pools go: the tests after start theirs
        for threads in [*api._POOLS]:
            api._POOLS.pop(threads).shutdown(wait=True)
