"""to_parquet / to_ipc / to_csv: equal to read_table, metadata for import, partitions, bounded batches."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pychro
from pychro.frames import export as X
from pychro.frames.schema import Schema

SCHEMA = "ts:timestamp_ms,sym:string,px:float64,qty:int32,side:char,venue:string"
J366 = "w:int8,i:int32,l:int64,d:float64,s:string,c:char,a:stopbit,b:stopbit"


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pychro.demo import sample_ticks

    path = tmp_path_factory.mktemp("ticks") / "j"
    pychro.write_frame(sample_ticks(30_000, days=3), path, SCHEMA)
    return path


def test_parquet_equals_read_table(ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    n = pychro.to_parquet(ticks, SCHEMA, out, row_group_rows=4096)
    expected = pychro.read_table(ticks, SCHEMA)
    got = pq.read_table(out)
    assert n == expected.num_rows == got.num_rows == 30_000
    assert got.equals(expected.cast(got.schema))
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-30_000 // 4096)
    assert not (tmp_path / "t.parquet.partial").exists()


def test_metadata_schema_and_source_range_allow_import_without_schema(ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "day.parquet"
    pychro.to_parquet(ticks, SCHEMA, out, date=dt.date(2024, 3, 5))
    meta = pq.read_schema(out).metadata
    assert Schema.from_json(meta[b"pychro.schema"]) == Schema(SCHEMA)
    source = json.loads(meta[b"pychro.source"])
    assert source["date"] == "2024-03-05"
    cycle = 19787
    assert source["first_index"] == cycle << 40
    assert source["end_index"] == (cycle << 40) + pq.read_metadata(out).num_rows
    table, schema = X.load_file(out)
    assert schema == Schema(SCHEMA)
    pychro.write_frame(table, tmp_path / "copy", schema)
    assert pychro.read_table(tmp_path / "copy", SCHEMA).equals(
        pychro.read_table(ticks, SCHEMA, date=dt.date(2024, 3, 5))
    )


def test_partition_by_date_is_a_hive_dataset(ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    n = pychro.to_parquet(ticks, SCHEMA, out, partition_by="date")
    assert sorted(os.listdir(out)) == ["date=2024-03-04", "date=2024-03-05", "date=2024-03-06"]
    ds = pq.read_table(out)
    assert ds.num_rows == n == 30_000
    assert sorted(set(ds.column("date").to_pylist())) == ["2024-03-04", "2024-03-05", "2024-03-06"]


def test_ipc_and_csv(ticks: Path, tmp_path: Path) -> None:
    expected = pychro.read_table(ticks, SCHEMA, columns=["sym", "px", "qty"])
    pychro.to_ipc(ticks, SCHEMA, tmp_path / "t.arrow", columns=["sym", "px", "qty"])
    with pa.memory_map(str(tmp_path / "t.arrow")) as src:
        got = pa.ipc.open_file(src).read_all()
    assert got.equals(expected.cast(got.schema))
    pychro.to_csv(ticks, SCHEMA, tmp_path / "t.csv", columns=["sym", "px", "qty"])
    from pyarrow import csv

    back = csv.read_csv(tmp_path / "t.csv")
    assert back.column("px").to_pylist() == expected.column("px").to_pylist()
    assert back.column("sym").to_pylist() == expected.column("sym").to_pylist()


def test_java_fixture_exports(java_3_6_6, tmp_path: Path) -> None:
    out = tmp_path / "j.parquet"
    assert pychro.to_parquet(java_3_6_6.journal, J366, out) == 3000
    got = pq.read_table(out)
    assert got.column("s").to_pylist() == [e["s"] for e in java_3_6_6.expected]
    assert got.column("b").to_pylist() == [e["b"] for e in java_3_6_6.expected]


def test_export_picks_format_from_extension(ticks: Path, tmp_path: Path) -> None:
    assert X.export(ticks, SCHEMA, tmp_path / "a.feather") == 30_000
    with pytest.raises(ValueError, match="cannot tell the format"):
        X.export(ticks, SCHEMA, tmp_path / "a.xlsx")


def test_bounded_batches(ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export streams: no batch handed to the writer is larger than a row group."""
    import pyarrow.parquet as pqm

    sizes: list[int] = []
    real = pqm.ParquetWriter.write_table

    def spy(self, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(table.num_rows)
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pqm.ParquetWriter, "write_table", spy)
    pychro.to_parquet(ticks, SCHEMA, tmp_path / "b.parquet", row_group_rows=5000)
    assert sum(sizes) == 30_000
    assert max(sizes) < 5000 + 65_536 and len(sizes) >= 3


def test_empty_range_writes_an_empty_file(ticks: Path, tmp_path: Path) -> None:
    last = pychro.read_table(ticks, SCHEMA, index=True, columns=[])["_index"][-1].as_py()
    n = pychro.to_parquet(ticks, SCHEMA, tmp_path / "e.parquet", start=last + 1, end=last + 100)  # no message yet
    assert n == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


def test_a_selection_of_no_cycle_is_an_error(ticks: Path, tmp_path: Path) -> None:
    """A day the journal has no folder for, or epoch milliseconds given as full indices, select no cycle: an
    error naming the cycles the journal holds, not an empty file."""
    with pytest.raises(ValueError, match="date=2030-01-01 selects no cycle of this journal"):
        pychro.to_parquet(ticks, SCHEMA, tmp_path / "e.parquet", date=dt.date(2030, 1, 1))
    with pytest.raises(ValueError, match=r"selects no cycle.*full indices are not epoch times"):
        pychro.to_parquet(ticks, SCHEMA, tmp_path / "e.parquet", start=1709629200000, end=1709659800000)
    with pytest.raises(ValueError, match=r"start index must be in 0\.\.0x"):
        pychro.read_table(ticks, SCHEMA, start=2**70)
    assert not (tmp_path / "e.parquet").exists()


def test_an_existing_file_is_replaced_only_by_a_complete_export(ticks: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    out.write_bytes(b"an older export")
    with pytest.raises(pychro.SchemaMismatchError):  # a wrong schema: the export fails part way
        pychro.to_parquet(ticks, "ts:timestamp_ms,sym:string", out)
    assert out.read_bytes() == b"an older export"
    assert not (tmp_path / "t.parquet.partial").exists()
    assert pychro.to_parquet(ticks, SCHEMA, out) == pq.read_table(out).num_rows == 30_000
    assert not (tmp_path / "t.parquet.partial").exists()


@pytest.mark.parametrize("fn", [pychro.to_parquet, pychro.to_ipc, pychro.to_csv])
def test_an_export_to_a_name_another_export_is_writing_is_refused(ticks: Path, tmp_path: Path, fn: Any) -> None:
    """Two exports to one name shared one .partial file: the second to finish removed the file the first had just
    published (its caller told of success), or a half-written file was published. The export writing holds a lock
    on its .partial file (here this test does); another is refused before it reads, leaving both files as they
    were. The lock dies with its holder (kill -9 too): the .partial file left is then taken over."""
    import fcntl

    out = tmp_path / "t.out"
    out.write_bytes(b"an older export")
    partial = tmp_path / "t.out.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"being written")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match=r"another export is writing .*t\.out.* wait for it") as got:
            fn(ticks, SCHEMA, out)
        assert got.value.errno == errno.EBUSY
        assert partial.read_bytes() == b"being written" and out.read_bytes() == b"an older export"
    finally:
        os.close(fd)  # as its process dying would
    assert fn(ticks, SCHEMA, out) == 30_000
    assert not partial.exists()
    # the file taken over is emptied first (the writers append to it): nothing of the old bytes is left
    if fn is pychro.to_ipc:
        assert pa.ipc.open_file(out).read_all().num_rows == 30_000
    elif fn is pychro.to_parquet:
        assert pq.read_table(out).num_rows == 30_000
    else:
        text = out.read_text()
        assert text.startswith('"ts","sym","px","qty","side","venue"\n') and text.count("\n") == 30_001


def test_an_export_whose_partial_file_is_renamed_before_its_lock_opens_it_again(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the open of the .partial file and its lock, the export holding it may finish and rename it to its
    final name: the lock then holds that file, not the .partial one, and the export opens the name again."""
    import fcntl

    out = tmp_path / "t.parquet"
    partial = tmp_path / "t.parquet.partial"
    real = fcntl.flock
    renamed: list[int] = []

    def flock(fd: int, op: int) -> None:
        if not renamed:  # the other export finishing: its file becomes out
            renamed.append(fd)
            os.replace(partial, out)
        real(fd, op)

    def publish(tmp: str, final: str, lock: int) -> None:  # the file written is the one locked
        fd = os.open(tmp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                real(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        locked.append(tmp)
        publish_now(tmp, final, lock)

    locked: list[str] = []
    publish_now = X._publish
    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(X, "_publish", publish)
    assert pychro.to_parquet(ticks, SCHEMA, out) == pq.read_table(out).num_rows == 30_000
    assert renamed and locked and not partial.exists()


def test_an_export_leaves_the_partial_file_of_the_next_export_alone(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once an export has renamed its .partial file, another export may claim a new one under that name: the first
    must not remove it (it did, in its cleanup, and the second's own publish then removed the first's file)."""
    import fcntl

    out = tmp_path / "t.parquet"
    partial = tmp_path / "t.parquet.partial"
    real = X._publish
    held: list[int] = []

    def publish(tmp: str, final: str, lock: int) -> None:
        real(tmp, final, lock)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT)  # the next export, claiming
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"the next export's")
        held.append(fd)

    monkeypatch.setattr(X, "_publish", publish)
    try:
        assert pychro.to_parquet(ticks, SCHEMA, out) == pq.read_table(out).num_rows == 30_000
        assert partial.read_bytes() == b"the next export's"
    finally:
        for fd in held:
            os.close(fd)


def test_an_export_failing_in_its_cleanup_still_lets_go_of_its_partial_file(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error raised again by the writer's close (a full disk) skipped the rest of the cleanup: the
    .partial file stayed, locked by a descriptor never closed, and every later export to the name in the process
    was refused as busy."""
    from pychro.frames.parquet_file import ParquetFile

    def fail(self: Any, *args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (on purpose)")

    out = tmp_path / "t.parquet"
    out.write_bytes(b"an older export")
    with monkeypatch.context() as m:
        m.setattr(ParquetFile, "close", fail)
        m.setattr(ParquetFile, "abort", fail)
        with pytest.raises(OSError, match="on purpose"):
            pychro.to_parquet(ticks, SCHEMA, out)
    assert out.read_bytes() == b"an older export" and not (tmp_path / "t.parquet.partial").exists()
    assert not [f for f in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{f}").endswith(".partial")]
    assert pychro.to_parquet(ticks, SCHEMA, out) == 30_000


@pytest.mark.parametrize("kind", ["link", "dangling link", "fifo"])
def test_a_partial_name_that_is_not_a_file_is_refused(ticks: Path, tmp_path: Path, kind: str) -> None:
    """A link there made the export write over its target (and leave it half written on failure); a FIFO made it
    wait for a reader forever."""
    victim = tmp_path / "precious.txt"
    partial = tmp_path / "t.parquet.partial"
    if kind == "fifo":
        os.mkfifo(partial)
    else:
        if kind == "link":
            victim.write_bytes(b"precious")
        partial.symlink_to(victim)
    with pytest.raises(FileExistsError, match="is not a file an export left"):
        pychro.to_parquet(ticks, SCHEMA, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists() and os.path.lexists(partial)
    assert victim.read_bytes() == b"precious" if kind == "link" else not victim.exists()


def test_a_failure_after_some_row_groups_leaves_no_file_and_no_thread(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups are gathered on a thread of their own: its error reaches the caller after the row groups
    before it were written, the partial file goes, and the thread ends."""
    import threading

    from pychro.frames import api

    real = api._batches

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        for k, batch in enumerate(real(*args, **kwargs)):
            if k == 2:  # the third batch (one per cycle here), after 20 row groups
                raise pychro.CorruptDataError("damaged on purpose")
            yield batch

    monkeypatch.setattr(api, "_batches", failing)
    out = tmp_path / "t.parquet"
    with pytest.raises(pychro.CorruptDataError, match="on purpose"):
        pychro.to_parquet(ticks, SCHEMA, out, row_group_rows=1000, progress=False)
    assert not out.exists() and not (tmp_path / "t.parquet.partial").exists()
    # nothing of the export is left running: its own threads ended, and the shared decoding and unmapping threads
    # are idle
    from pychro.frames import scan

    scan.wait_unmapped()
    pools = [*api._POOLS.values()]
    shared = {t for pool in pools for t in pool._threads} | set(scan._UNMAPPER)
    left = [t for t in threading.enumerate() if t.name.startswith("pychro-") and t not in shared]
    for t in left:
        if t.name.startswith("pychro-decode"):  # a pool of an older thread count, shut: its threads are ending
            t.join(10)
    assert not [t for t in left if t.is_alive()]
    assert all(pool._work_queue.empty() for pool in pools) and scan._QUEUE.empty()


def test_numpy_columns_survive(tmp_path: Path) -> None:
    pychro.write_frame({"a": np.arange(10, dtype=np.int64)}, tmp_path / "j", "a:int64", date=dt.date(2024, 1, 1))
    pychro.to_parquet(tmp_path / "j", "a:int64", tmp_path / "a.parquet")
    assert pq.read_table(tmp_path / "a.parquet").column("a").to_pylist() == list(range(10))


# -- import_file: streaming, two passes ------------------------------------------------------------------------
def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "csv", "dataset"])
def test_import_file_in_batches_equals_write_frame_of_the_whole(ticks: Path, tmp_path: Path, fmt: str) -> None:
    """Batches of 700 rows over three days, through one appender: the journal is byte for byte what one
    write_frame of the whole table makes (same data files, same index entries)."""
    whole = pychro.read_table(ticks, SCHEMA)
    src = tmp_path / f"ticks.{'parquet' if fmt == 'dataset' else fmt}"
    if fmt == "parquet":
        pychro.to_parquet(ticks, SCHEMA, src, row_group_rows=5000)
    elif fmt == "arrow":
        pychro.to_ipc(ticks, SCHEMA, src)
    elif fmt == "csv":
        pychro.to_csv(ticks, SCHEMA, src)
    else:
        src = tmp_path / "dataset"
        pychro.to_parquet(ticks, SCHEMA, src, partition_by="date")
    schema = SCHEMA if fmt == "csv" else None
    assert X.import_file(src, tmp_path / "imported", schema, batch_rows=700) == 30_000
    pychro.write_frame(whole, tmp_path / "whole", SCHEMA)
    assert _files(tmp_path / "imported") == _files(tmp_path / "whole")


def test_import_file_rejects_a_bad_row_of_a_late_batch_before_writing_anything(tmp_path: Path) -> None:
    n = 5000
    qty = np.arange(n, dtype=np.int64)
    qty[4321] = 1 << 40  # does not fit an int32, in the 7th batch of 700
    table = pa.table({"ts": np.arange(n, dtype=np.int64) + 1_704_153_600_000, "qty": qty})
    src = tmp_path / "bad.parquet"
    pq.write_table(table, src)
    with pytest.raises(ValueError, match=r"row 4321: column 'qty' value 1099511627776 does not fit in int32"):
        X.import_file(src, tmp_path / "j", "ts:timestamp_ms,qty:int32", batch_rows=700)
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").iterdir())


def test_truncate_stops_every_path_at_the_first_bad_message(tmp_path: Path) -> None:
    """One bad message at seq 51 of the first of three days: every serial path keeps the 50 rows before it;
    paths that read partitions side by side refuse errors='truncate' (each partition stopped on its own)."""
    import pyarrow.dataset as ds

    root, schema = tmp_path / "j", "ts:timestamp_ms,v:int32"
    for day in range(3):
        base = int(dt.datetime(2024, 3, 4 + day, tzinfo=dt.UTC).timestamp() * 1000)
        with pychro.VanillaChronicleWriter(root, clock=lambda b=base: b) as w:
            a = w.get_appender()
            for i in range(100):
                a.write_long(base + i)
                a.write_int(i)
                if day == 0 and i == 50:
                    a.write_int(0)  # this message does not match the schema
                a.finish()
    assert pychro.read_table(root, schema, errors="truncate").num_rows == 50
    for partition_by in ("date", None):
        out = tmp_path / f"out-{partition_by}"
        assert pychro.to_parquet(root, schema, out, errors="truncate", partition_by=partition_by) == 50
        assert ds.dataset(out, format="parquet").count_rows() == 50
    pytest.importorskip("dask")
    with pytest.raises(ValueError, match="errors='truncate' stops the whole read"):
        pychro.read_dask(root, schema, errors="truncate")
    with pytest.raises(ValueError, match="errors='truncate' stops the whole read"):
        pychro.to_parquet(root, schema, tmp_path / "p", errors="truncate", partition_by="date", parallel=True)


@pytest.mark.parametrize("consumer_waits", [False, True])
def test_a_row_group_is_let_go_before_the_one_two_after_it_is_gathered(consumer_waits: bool) -> None:
    """An export holds at most two row groups: one being written, one being gathered. The one written is let go
    before the gatherer may begin the next: its buffers are then free for the decoder to use again. The iteration
    itself held the last group it handed out while it waited for the next one, so that a third was decoded into
    new buffers (fresh memory: a page fault per page)."""
    import gc
    import time
    import weakref

    schema = pa.schema([("x", pa.float64())])
    per_group, groups = 2, 6
    refs: list[weakref.ref[np.ndarray]] = []
    held_at_start: list[list[int]] = []

    def batches() -> Any:
        for k in range(per_group * groups):
            if k % per_group == 0:  # the first batch of row group g: every batch of groups < g - 1 is let go
                g = k // per_group
                held_at_start.append([i for i, r in enumerate(refs[: per_group * max(0, g - 1)]) if r() is not None])
            values = np.arange(4, dtype=np.float64) + k
            refs.append(weakref.ref(values))
            batch = pa.RecordBatch.from_arrays([pa.Array.from_buffers(pa.float64(), 4, [None, pa.py_buffer(values)])],
                                               schema=schema)
            del values
            if consumer_waits:  # a slow decoder: the writer waits for each row group
                time.sleep(0.01)
            yield batch

    gc.disable()  # only references count here
    try:
        rows = X._RowGroups(batches(), schema, 4 * per_group)
        rows.start()
        written = 0
        for table in rows:
            written += table.num_rows
            del table  # as the export does: the table is let go before the next one is asked for
        rows.stop()
    finally:
        gc.enable()
    assert written == 4 * per_group * groups
    assert held_at_start == [[]] * groups


@pytest.mark.timeout(120)
def test_an_export_in_a_thread_that_outlives_the_main_one(ticks: Path, tmp_path: Path) -> None:
    """Python runs a non-daemon thread on after the main thread's script has ended, but its thread pools then take
    no more work: the dictionary encoding of the second row group on failed ("cannot schedule new futures after
    interpreter shutdown"). It now runs in the export's own thread. (The frames API is imported before: imported
    first in such a thread, ``concurrent.futures.thread`` itself refuses to load, a limit of Python's.)"""
    import subprocess
    import sys

    out = tmp_path / "t.parquet"
    code = f"""
import threading, pychro
pychro.to_parquet  # the frames API imported here (see the docstring)
def run():
    threading.main_thread().join()  # the interpreter is shutting down
    print('rows', pychro.to_parquet({str(ticks)!r}, {SCHEMA!r}, {str(out)!r}, row_group_rows=1000), flush=True)
threading.Thread(target=run).start()
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert got.returncode == 0 and "rows 30000" in got.stdout, got.stderr[-2000:]
    assert pq.read_table(out).num_rows == 30_000  # complete: its footer reads


@pytest.mark.parametrize("swap", ["removed", "symlink"])
def test_a_partial_file_removed_or_replaced_while_the_export_runs_leaves_the_older_file(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """Publishing removed the older file first, then found the .partial gone (removed by hand while the export
    ran): both were lost. Replaced by a link, the link was published as the export's file, and the export reported
    success. The export now fails before touching the older file, and leaves the name it does not hold alone."""
    from pychro.frames.parquet_file import ParquetFile

    out = tmp_path / "t.parquet"
    out.write_bytes(b"an older export")
    partial = tmp_path / "t.parquet.partial"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    real = ParquetFile.write

    def write(self: Any, *args: Any) -> None:
        real(self, *args)
        if partial.exists() and not partial.is_symlink():
            partial.unlink()
            if swap == "symlink":
                partial.symlink_to(victim)

    monkeypatch.setattr(ParquetFile, "write", write)
    with pytest.raises(FileNotFoundError, match="was removed or replaced while it ran"):
        pychro.to_parquet(ticks, SCHEMA, out, row_group_rows=10_000)
    assert out.read_bytes() == b"an older export" and victim.read_bytes() == b"precious"
    assert partial.is_symlink() == (swap == "symlink")


def test_a_partial_name_that_is_a_hard_link_is_refused(ticks: Path, tmp_path: Path) -> None:
    """A .partial name hard-linked to another file: emptied and written over, that file was lost."""
    other = tmp_path / "notes.txt"
    other.write_bytes(b"precious")
    os.link(other, tmp_path / "t.csv.partial")
    with pytest.raises(FileExistsError, match="is not a file an export left"):
        pychro.to_csv(ticks, SCHEMA, tmp_path / "t.csv")
    assert other.read_bytes() == b"precious" and not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("fn", ["to_parquet", "to_ipc", "to_csv"])
def test_an_export_into_a_folder_it_cannot_write_writes_nothing(ticks: Path, tmp_path: Path, fn: str) -> None:
    """A folder the user cannot write, holding a writable stale .partial (a killed export's): the export filled the
    .partial with the whole export, then could neither rename nor remove it, and said only "Permission denied" on
    the .partial. It now fails first, naming the folder, and leaves the folder as it was. Run as an unprivileged
    user (root: in a child without the capabilities that let it write anywhere)."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("run as root, this test needs setpriv (util-linux) to drop root's override of permissions")
    folder = tmp_path / "ro"
    folder.mkdir()
    out = folder / "t.out"
    (folder / "t.out.partial").write_bytes(b"\0" * 1000)
    os.chmod(folder / "t.out.partial", 0o666)
    os.chmod(folder, 0o555)
    code = (f"import pychro\ntry:\n    pychro.{fn}({str(ticks)!r}, {SCHEMA!r}, {str(out)!r})\n"
            "except PermissionError as exc:\n    print(exc)\n")
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
    try:
        got = subprocess.run([*drop, sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    finally:
        os.chmod(folder, 0o755)
    assert "cannot create or rename files in the folder of out" in got.stdout, got.stdout + got.stderr[-2000:]
    assert sorted(os.listdir(folder)) == ["t.out.partial"] and (folder / "t.out.partial").read_bytes() == b"\0" * 1000


def test_a_failed_export_removes_only_the_folders_it_made(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """out "new/../existing/f.parquet": "new/../existing" did not exist as text while "new" was missing, so a
    failed export removed the user's (empty) folder "existing" with the "new" it made. And out "newdir/" made
    "newdir", wrote "newdir/.partial" and failed on a rename, leaving the folder."""
    from pychro.frames.parquet_file import ParquetFile

    monkeypatch.chdir(tmp_path)
    Path("existing").mkdir()

    def full(self: Any, *args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ParquetFile, "write", full)
    with pytest.raises(OSError, match="No space left"):
        pychro.to_parquet(ticks, SCHEMA, "new/../existing/f.parquet")
    assert sorted(os.listdir(".")) == ["existing"] and os.listdir("existing") == []
    with pytest.raises(ValueError, match="names a folder: give a file name"):
        pychro.to_parquet(ticks, SCHEMA, "newdir/")
    assert sorted(os.listdir(".")) == ["existing"]



def test_a_dangling_link_or_a_file_where_a_folder_of_out_goes_is_named(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """out "gone/f.parquet" with "gone" a symbolic link to nothing raised a bare FileExistsError on "gone" (the
    opposite of what is wrong); a file in the way did the same. Both now say what is there, and write nothing
    (exports of message types: tests/frames/test_types_export.py)."""
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path / "nowhere", "gone")
    Path("afile").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"symbolic link to '.*nowhere', which leads nowhere") as got:
        pychro.to_parquet(ticks, SCHEMA, "gone/sub/f.parquet")
    assert got.value.filename == "gone"
    with pytest.raises(NotADirectoryError, match="a file of that name is in the way") as got2:
        pychro.to_csv(ticks, SCHEMA, "afile/f.csv")
    assert got2.value.filename == "afile"
    os.symlink("afile", "tofile")  # a link to a file that is there: a file in the way, not a link to nothing
    with pytest.raises(NotADirectoryError, match=r"a file of that name is in the way \(a symbolic link to one\)"):
        pychro.to_parquet(ticks, SCHEMA, "tofile/f.parquet")
    os.symlink("loop", "loop")
    with pytest.raises(FileNotFoundError, match=r"symbolic link to 'loop', which leads nowhere \(missing, or a loop"):
        pychro.to_parquet(ticks, SCHEMA, "loop/f.parquet")
    assert sorted(os.listdir(".")) == ["afile", "gone", "loop", "tofile"] and not os.path.exists(tmp_path / "nowhere")


@pytest.mark.parametrize("whose", ["partial", "out"])
def test_another_users_file_in_a_sticky_folder_is_refused_first(ticks: Path, tmp_path: Path, whose: str) -> None:
    """A folder like /tmp (sticky, world-writable) holding another user's stale, world-writable .partial: the
    export emptied it, filled it with the whole export, then could neither rename nor remove it (the sticky bit).
    Likewise another user's ``out``, which the rename cannot replace. Both are now refused before anything is
    written, naming the file. As root: in a child without CAP_FOWNER (which overrides the sticky bit)."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root, to give files to another user")
    if shutil.which("setpriv") is None:
        pytest.fail("run as root, this test needs setpriv (util-linux) to drop CAP_FOWNER")
    folder = tmp_path / "sticky"
    folder.mkdir()
    out = folder / "t.parquet"
    theirs = folder / ("t.parquet.partial" if whose == "partial" else "t.parquet")
    theirs.write_bytes(b"\1" * 1000)
    os.chmod(theirs, 0o666)
    for p in (theirs, folder):
        os.chown(p, 1, 1)
    os.chmod(folder, 0o1777)
    code = (f"import pychro\ntry:\n    pychro.to_parquet({str(ticks)!r}, {SCHEMA!r}, {str(out)!r})\n"
            "except PermissionError as exc:\n    print(exc)\n")
    got = subprocess.run(["setpriv", "--bounding-set=-fowner", sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=100)
    assert "sticky bit keeps this process from replacing or removing it" in got.stdout, got.stdout + got.stderr[-2000:]
    assert repr(theirs.name) in got.stdout
    assert os.listdir(folder) == [theirs.name] and theirs.read_bytes() == b"\1" * 1000


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failed_partitioned_export_leaves_no_empty_folder(
    ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """partition_by="date": a day's write failing (a full disk) left that day's empty date= folder, and the
    dataset folder itself when it was the first day. The days written before it stay, each file whole."""
    from pychro.frames.parquet_file import ParquetFile

    real = ParquetFile.write
    files: set[int] = set()

    def write(self: Any, *args: Any) -> None:
        files.add(id(self))
        if len(files) == fail_at:
            raise OSError(28, "No space left on device")
        real(self, *args)

    monkeypatch.setattr(ParquetFile, "write", write)
    out = tmp_path / "new" / "ds"
    with pytest.raises(OSError, match="No space left"):
        pychro.to_parquet(ticks, SCHEMA, out, partition_by="date")
    if fail_at == 1:
        assert os.listdir(tmp_path) == []
    else:
        (day,) = os.listdir(out)
        assert os.listdir(out / day) == ["part-0.parquet"]
        first = pychro.read_table(ticks, SCHEMA, date=dt.date.fromisoformat(day.removeprefix("date=")))
        assert pq.read_table(out / day / "part-0.parquet").select(first.column_names).equals(first)
