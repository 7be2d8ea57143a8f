"""Reproductions of what a hostile review of message types, repeated groups and exports by type found, kept as
tests: each was a raw low-level error, silent garbage, a mixed or incomplete folder taken as whole, or a file left
behind."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import pychro
from pychro.frames.export_types import import_folder
from pychro.frames.schema import Schema

T = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("trade", "px:float64"), 4: ("heartbeat", "")})


def _journal(path: Path, days: int = 1) -> Path:
    ts = pd.to_datetime([f"2024-03-0{4 + d} 10:00" for d in range(days)], utc=True)
    pychro.write_frames({"trade": pd.DataFrame({"ts": ts, "px": [1.0 + d for d in range(days)]}),
                         "heartbeat": pd.DataFrame({"ts": ts})}, path, T)
    return path


def test_skip_written_as_the_docs_write_it() -> None:
    assert str(Schema("a:int8,skip<3>,b:int8")) == "a:int8,skip3,b:int8"
    assert Schema("lv:list<px:float64,skip<4>>")["lv"].type.entry_size == 12


def test_a_text_tag_column_is_named() -> None:
    df = pd.DataFrame({"ts": pd.to_datetime([1, 2], utc=True), "px": [1.0, 2.0], "type": ["1", "1"]})
    with pytest.raises(ValueError, match="column 'type' must hold the type's tag 1"):
        pychro.write_frames({"trade": df}, "/nonexistent-never-made", T)


def test_a_null_entry_of_a_group_is_refused(tmp_path: Path) -> None:
    s = Schema("e:list<x:int16,y:bool>")
    t = pa.table({"e": pa.array([[None, {"x": 7, "y": True}]],
                                pa.list_(pa.struct([("x", pa.int16()), ("y", pa.bool_())])))})
    with pytest.raises(ValueError, match="row 0: column 'e' has a null entry"):
        pychro.write_frame(t, tmp_path / "j", s, date="2024-03-05")
    assert not (tmp_path / "j").exists()


def test_order_by_beyond_int64_is_named(tmp_path: Path) -> None:
    types = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("a", "x:int32")})
    t = pa.table({"ts": pa.array([1], pa.timestamp("ns", "UTC")), "x": pa.array([1], pa.int32()),
                  "k": pa.array([2**63 + 5], pa.uint64())})
    with pytest.raises(ValueError, match="fit int64"):
        pychro.write_frames({"a": t}, tmp_path / "j", types, order_by="k")


def test_an_export_never_mixes_with_an_earlier_one(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", days=2)
    pychro.to_parquet(j, T, tmp_path / "out", partition_by="date")
    before = sorted(str(p) for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(ValueError, match="not empty"):
        pychro.to_parquet(j, T, tmp_path / "out", partition_by="date", start="2024-03-05")
    assert sorted(str(p) for p in (tmp_path / "out").rglob("*")) == before


def test_a_failed_export_leaves_no_folder(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j")
    only = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {1: ("trade", "px:float64")})
    for fn in (pychro.to_parquet, pychro.to_ipc, pychro.to_csv):
        with pytest.raises(pychro.SchemaMismatchError):
            fn(j, only, tmp_path / "out")
        assert not (tmp_path / "out").exists(), fn.__name__
    with pytest.raises(pychro.SchemaMismatchError):  # a single-schema export: its new parent folders go too
        pychro.to_parquet(j, "ts:timestamp_ns,type:int8,px:float64", tmp_path / "a" / "b" / "x.parquet")
    assert not (tmp_path / "a").exists()


def test_one_export_of_message_types_into_a_folder_at_a_time(tmp_path: Path) -> None:
    """Two exports of message types into one new folder each won one type's file and failed on the other's; the
    one that had made the folder then removed it, with the other's files. An export holds a lock on the folder
    (here this test does): another is refused before it writes, and leaves the folder, even one it found empty."""
    import errno
    import fcntl

    j = _journal(tmp_path / "j")
    out = tmp_path / "out"
    out.mkdir()  # made by the export holding it, which has written nothing yet
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for fn in (pychro.to_parquet, pychro.to_ipc, pychro.to_csv):
            with pytest.raises(OSError, match="another export is writing into") as got:
                fn(j, T, out)
            assert got.value.errno == errno.EBUSY and out.is_dir() and not os.listdir(out), fn.__name__
    finally:
        os.close(fd)
    assert set(pychro.to_parquet(j, T, out)) == {"trade", "heartbeat"}
    assert sorted(os.listdir(out)) == ["heartbeat.parquet", "trade.parquet"]


def test_import_refuses_an_incomplete_folder(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j")
    pychro.to_ipc(j, T, tmp_path / "out")
    os.rename(tmp_path / "out" / "trade.arrow", tmp_path / "out" / "trade.arrow.partial")  # what kill -9 leaves
    with pytest.raises(ValueError, match="unfinished export"):
        import_folder(tmp_path / "out", tmp_path / "imp")
    os.remove(tmp_path / "out" / "trade.arrow.partial")
    with pytest.raises(ValueError, match="no file of message type 'trade'"):
        import_folder(tmp_path / "out", tmp_path / "imp")
    assert not (tmp_path / "imp").exists()


def test_import_of_a_csv_folder_says_why(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j")
    pychro.to_csv(j, T, tmp_path / "out")
    got = subprocess.run([sys.executable, "-m", "pychro", "import", str(tmp_path / "out"), str(tmp_path / "imp")],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 1 and "folder of CSV files" in got.stderr and "Parquet magic" not in got.stderr


@pytest.mark.timeout(120)
def test_a_writer_that_fails_mid_export_ends_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A type's file that cannot be written (a full disk) ends the export with that error, promptly, and leaves no
    folder: it used to hang, the failed writer waiting for batches the reader no longer sent."""
    import numpy as np
    import pyarrow.parquet as pq

    n = 300_000
    ts = pd.to_datetime(np.int64(1709596800000000000) + np.arange(n) * 1000, utc=True)
    pychro.write_frames({"trade": pd.DataFrame({"ts": ts, "px": np.arange(n) * 0.5}),
                         "heartbeat": pd.DataFrame({"ts": ts[::3]})}, tmp_path / "j", T)
    real = pq.ParquetWriter
    written = [0]

    class Full(real):  # type: ignore[misc,valid-type]
        """A disk that fills after a few row groups: every later write, and every footer, fails."""

        def write_table(self, table: Any, *args: Any, **kwargs: Any) -> None:
            written[0] += 1
            if written[0] > 3:
                raise OSError(28, "No space left on device")
            super().write_table(table, *args, **kwargs)

        def close(self) -> None:
            super().close()
            if written[0] > 3:
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "ParquetWriter", Full)
    with pytest.raises(OSError, match="No space left"):
        pychro.to_parquet(tmp_path / "j", T, tmp_path / "out", row_group_rows=1000)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("partition_by", [None, "date"])
def test_a_failed_export_into_a_folder_it_found_empty_leaves_it_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, partition_by: str | None,
) -> None:
    """An export into a folder that was there (and empty) failed after other files of it were published: the
    heartbeat type's, or every type's first day. Those files were left: a folder of some types, or of some days,
    that looks like a whole export of fewer messages. Now the folder is left as it was found."""
    import pyarrow.parquet as pq

    j = _journal(tmp_path / "j", days=2)
    out = tmp_path / "out"
    out.mkdir()
    real = pq.ParquetWriter
    opened: list[int] = []

    class Failing(real):  # type: ignore[misc,valid-type]
        """Whose footer cannot be written (a full disk): the trade type's file, or any file of the second day."""

        def __init__(self, where: Any, schema: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(where, schema, *args, **kwargs)
            opened.append(1)
            self.fails = "px" in schema.names if partition_by is None else len(opened) > 2

        def close(self) -> None:
            super().close()
            if self.fails:
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "ParquetWriter", Failing)
    with pytest.raises(OSError, match="No space left"):
        pychro.to_parquet(j, T, out, partition_by=partition_by)
    assert out.is_dir() and list(out.rglob("*")) == []
    monkeypatch.undo()
    assert set(pychro.to_parquet(j, T, out, partition_by=partition_by)) == {"trade", "heartbeat"}  # and again


def _fail_on_day(monkeypatch: pytest.MonkeyPatch, day: str, remove_fails: str | None = None) -> None:
    """Every type's file of ``day`` fails (a full disk); removing the file named ``remove_fails``, once it is there,
    fails too."""
    from pychro.frames import export_types

    real_write, real_remove = export_types._write, os.remove

    def write(fmt: str, out: str, *args: Any, **kwargs: Any) -> int:
        if day in out:
            raise OSError(28, "No space left on device")
        return real_write(fmt, out, *args, **kwargs)

    def remove(path: Any) -> None:
        if remove_fails is not None and os.fspath(path).endswith(remove_fails) and os.path.exists(path):
            raise PermissionError(13, "Permission denied", path)
        real_remove(path)

    monkeypatch.setattr(export_types, "_write", write)
    monkeypatch.setattr(os, "remove", remove)


@pytest.mark.parametrize("spelling", [".", "./", "link/../out"])
def test_the_clean_up_of_a_failed_export_takes_out_as_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str,
) -> None:
    """out spelled "." left the folders it made (they were compared as text with "./"); "link/../out" (link: a
    folder elsewhere) had the clean-up remove folders of ./out, which the export never wrote, and the export
    itself failed (its folders were made after the text of the path, not where the kernel put its files)."""
    j = _journal(tmp_path / "j", days=2)
    real = tmp_path / "far" / "out"
    real.mkdir(parents=True)
    (tmp_path / "far" / "deep").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "far" / "deep")
    decoy = tmp_path / "out" / "trade" / "date=2024-03-04"  # what the text of "link/../out/..." names
    decoy.mkdir(parents=True)
    monkeypatch.chdir(real if spelling != "link/../out" else tmp_path)
    _fail_on_day(monkeypatch, "2024-03-05")
    with pytest.raises(OSError, match="No space left"):
        pychro.to_parquet(j, T, spelling, partition_by="date")
    assert list(real.rglob("*")) == [] and decoy.is_dir()


def test_the_clean_up_of_a_failed_export_goes_on_past_a_file_it_cannot_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file the clean-up could not remove raised from it: its error replaced the export's own, and the files
    after it were left."""
    j = _journal(tmp_path / "j", days=3)
    out = tmp_path / "out"
    out.mkdir()
    _fail_on_day(monkeypatch, "2024-03-06", remove_fails=os.path.join("heartbeat", "date=2024-03-04", "part-0.parquet"))
    with pytest.raises(OSError, match="No space left") as got:
        pychro.to_parquet(j, T, out, partition_by="date")
    assert got.value.errno == 28
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["heartbeat", "heartbeat/date=2024-03-04", "heartbeat/date=2024-03-04/part-0.parquet"]


def test_a_failed_export_by_type_removes_the_parent_folders_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parents of out it had to make were left after a failure (made from the text of its absolute path: with
    out "link/../new/x", in the wrong place)."""
    j = _journal(tmp_path / "j", days=2)
    monkeypatch.chdir(tmp_path)
    _fail_on_day(monkeypatch, "2024-03-05")
    with pytest.raises(OSError, match="No space left"):
        pychro.to_parquet(j, T, "n1/n2/out", partition_by="date")
    assert not Path("n1").exists()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other" / "sub").mkdir(parents=True)
    Path("link").symlink_to(tmp_path / "other" / "sub")
    assert set(pychro.to_parquet(j, T, "link/../new/x")) == {"trade", "heartbeat"}
    assert sorted(os.listdir(tmp_path / "other" / "new" / "x")) == ["heartbeat.parquet", "trade.parquet"]
    assert not Path("new").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("made", [False, True])
def test_ctrl_c_while_a_writer_finishes_its_file_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                made: bool) -> None:
    """Ctrl-C while the export waited for its writers (every batch handed over), one of them still writing its
    file's footer: the clean-up ran, then that writer published its file (a folder of fewer types). Now a writer
    publishes only while the export is not interrupted, and the clean-up waits for one publishing."""
    import signal

    import pyarrow.parquet as pq

    j = _journal(tmp_path / "j")
    out = tmp_path / "out"
    if not made:
        out.mkdir()
    real = pq.ParquetWriter
    closing, go_on = threading.Event(), threading.Event()

    class Slow(real):  # type: ignore[misc,valid-type]
        """The trade type's footer is written once the test says so (a slow disk)."""

        def close(self) -> None:
            if "px" in self.schema.names:
                closing.set()
                go_on.wait(30)
            super().close()

    def ctrl_c() -> None:
        closing.wait(30)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    monkeypatch.setattr(pq, "ParquetWriter", Slow)
    interrupter = threading.Thread(target=ctrl_c)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pychro.to_parquet(j, T, out)
    finally:
        go_on.set()  # the writer goes on once the clean-up is done
        interrupter.join()
    for t in threading.enumerate():
        if t.name.startswith("pychro-export"):
            t.join(30)
    assert (list(out.rglob("*")) == []) if not made else not out.exists(), list(out.rglob("*"))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_export_by_type_onto_a_full_disk(tmp_path: Path) -> None:
    """The same on a real full file system (a 3 MiB tmpfs; needs root to mount): the export fails promptly with
    the disk-full error (it used to hang forever) and leaves nothing in the target."""
    import numpy as np

    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(full)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        n = 600_000
        ts = pd.to_datetime(np.int64(1709596800000000000) + np.arange(n) * 1000, utc=True)
        pychro.write_frames({"trade": pd.DataFrame({"ts": ts, "px": np.arange(n) * 0.5}),
                             "heartbeat": pd.DataFrame({"ts": ts})}, tmp_path / "j", T)
        (tmp_path / "t.json").write_text(T.to_json())
        got = subprocess.run([sys.executable, "-m", "pychro", "export", str(tmp_path / "j"), "--types",
                              str(tmp_path / "t.json"), "--to", str(full / "out")], capture_output=True, text=True,
                             timeout=120)
        assert got.returncode == 1 and "No space left" in got.stderr, got.stderr
        assert not (full / "out").exists()
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


@pytest.mark.timeout(120)
def test_an_interrupt_while_the_writers_are_told_to_end_leaves_none_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C landing while the reader queues the writers' end markers (a second Ctrl-C, in practice): the export
    raises it and its writer threads end, leaving no file. They used to wait for ever for the markers that were
    never queued, and the process could not exit (found by sending two SIGINTs 0.3 s apart)."""
    import queue
    import threading

    from pychro.frames import export_types

    _journal(tmp_path / "j", days=3)

    class Interrupted(queue.Queue):  # type: ignore[type-arg]
        def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
            if item is export_types._DONE:
                raise KeyboardInterrupt
            super().put(item, *args, **kwargs)

    monkeypatch.setattr(export_types.queue, "Queue", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        pychro.to_parquet(tmp_path / "j", T, tmp_path / "out", row_group_rows=1)
    writers = [t for t in threading.enumerate() if t.name.startswith("pychro-export-")]
    for t in writers:
        t.join(10)
    assert not [t.name for t in writers if t.is_alive()]
    assert not [f for _, _, fs in os.walk(tmp_path / "out") for f in fs]


def test_a_halted_writer_stops_at_its_next_batch() -> None:
    """Once the reader has ended early, a type's writer takes no more of its queue (with small row groups it had
    written every queued batch first: Ctrl-C took 14 s to end an export)."""
    import queue
    import threading

    from pychro.frames import export_types

    q: queue.Queue[Any] = queue.Queue()
    halt = threading.Event()
    feed = export_types._Feed(q, halt)
    for k in range(3):
        q.put(k)
    assert next(feed) == 0
    halt.set()
    with pytest.raises(export_types._Abort):
        next(feed)
    assert q.qsize() == 2


def test_a_folder_left_by_a_killed_export_says_so(tmp_path: Path) -> None:
    """A folder holding only the .partial files a killed export of message types left is refused with what they
    are and what to do; while an export holds the folder's lock, the same files are that export's: refused as
    busy."""
    import errno
    import fcntl

    j = _journal(tmp_path / "j")
    out = tmp_path / "out"
    (out / "trade").mkdir(parents=True)
    (out / "trade" / "part-0.parquet.partial").write_bytes(b"PAR1")  # what kill -9 leaves
    with pytest.raises(ValueError, match=r"only the \.partial files .* did not finish .* remove the folder"):
        pychro.to_parquet(j, T, out)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match="another export is writing into") as got:
            pychro.to_parquet(j, T, out)
        assert got.value.errno == errno.EBUSY
    finally:
        os.close(fd)
    (out / "trade" / "other.csv").write_text("x")
    with pytest.raises(ValueError, match="is a folder that is not empty"):
        pychro.to_parquet(j, T, out)
