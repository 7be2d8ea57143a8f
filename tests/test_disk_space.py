"""A full disk is an OSError, never a SIGBUS (issue 12, item 3).

Which accesses to a shared mapping can SIGBUS: any access past the end of the file, a store into a page with no
disk block behind it when the file system is full, and on tmpfs even a load from a never-written page (tmpfs
allocates a page to back it). Writers reserve disk space with ``fallocate`` before storing; readers and verify
load index pages only where a filled slot shows the page was written (``pread`` probes the rest).

The real-disk tests mount a 2 MiB tmpfs and an 8 MiB loop-mounted ext4 image (root only; skipped with the
reason otherwise). Everything that touches a full file system runs in a child process: a SIGBUS there is an exit
status of -7, which the test reports, instead of the death of pytest. The unit tests below them make
``fallocate`` fail on purpose and run anywhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reliability_helpers import REPO

import pychro
import pychro._mapping as M
from pychro import VanillaChronicleReader, VanillaChronicleWriter, VanillaConfig
from pychro.verify import verify_journal

pytestmark = pytest.mark.timeout(180)

CHILD_TIMEOUT = 120


# -- small file systems ----------------------------------------------------------------------------------------
def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def _unmount(point: Path) -> None:
    if _run("umount", str(point)).returncode != 0:
        _run("umount", "-l", str(point))  # busy (a child still running): detach now, freed when it ends


@pytest.fixture(params=["tmpfs", "ext4"])
def small_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A freshly mounted tiny file system (2 MiB tmpfs, or an 8 MiB ext4 image on a loop device)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    if request.param == "tmpfs":
        cmd = ("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point))
    else:
        if shutil.which("mkfs.ext4") is None:
            pytest.skip("mkfs.ext4 is not installed")
        image = tmp_path / "ext4.img"
        with open(image, "wb") as fh:
            fh.truncate(8 << 20)
        made = _run("mkfs.ext4", "-q", "-F", str(image))
        if made.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
        cmd = ("mount", "-o", "loop", str(image), str(point))
    mounted = _run(*cmd)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {request.param} here: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        _unmount(point)


def _child(script: str, *args: Any) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter; it prints one JSON line. Fails on a signal (SIGBUS is -7)."""
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         timeout=CHILD_TIMEOUT, cwd=REPO, check=False)
    assert run.returncode == 0, f"child exited with {run.returncode} (SIGBUS is -7)\n{run.stdout}\n{run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _fill(folder: Path) -> None:
    """Take every free block of the file system holding ``folder``."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as exc:
        assert exc.errno in (errno.ENOSPC, errno.EDQUOT)
    finally:
        os.close(fd)


# What a child does after a write failed: prove from a fresh process that every committed message reads back
# intact at its index and that verify passes (a reader or verify that faults fails the test with -7).
READ_BACK = r"""
import json, sys
from pychro import VanillaChronicleReader
from pychro.verify import verify_journal
path = sys.argv[1]
seen = []
for ex in VanillaChronicleReader(path):
    seen.append([ex.index, ex.read_long(), ex.remaining()])
report = verify_journal(path)
print(json.dumps({"seen": seen, "ok": report.ok, "summary": report.summary()}))
"""

ROW_WRITER_UNTIL_FULL = r"""
import errno, json, os, sys
from pychro import VanillaChronicleWriter
path, ballast = sys.argv[1], sys.argv[2]
committed, error = [], None
with VanillaChronicleWriter(path) as writer:
    appender = writer.get_appender()
    try:
        for i in range(10**7):
            appender.write_long(i)
            appender.write_bytes(bytes(i % 700))  # sizes vary: some messages cross pages, some chunks
            committed.append([appender.finish(), i, i % 700])
    except OSError as exc:
        error = [exc.errno, str(exc), exc.filename]
    in_progress = appender.bytes_written()
    os.remove(ballast)  # space comes back: the same appender goes on, from a new message
    for j in range(3):
        appender.write_long(-1 - j)
        committed.append([appender.finish(), -1 - j, 0])
print(json.dumps({"committed": committed, "error": error, "in_progress": in_progress}))
"""


def test_row_writer_on_a_full_disk_raises_oserror(small_fs: Path) -> None:
    journal = small_fs / "j"
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\xff" * (256 << 10))
    out = _child(ROW_WRITER_UNTIL_FULL, journal, ballast)
    err_no, message, filename = out["error"]
    assert err_no == errno.ENOSPC, message
    assert "cannot reserve disk space for" in message and filename.startswith(str(journal)), message
    assert out["in_progress"] == 0, "the message that did not fit must be dropped, not left half-written"
    committed = out["committed"]
    assert len(committed) > 100
    back = _child(READ_BACK, journal)
    assert back["ok"], back["summary"]
    assert [[i, v] for i, v, _ in back["seen"]] == [[i, v] for i, v, _ in committed], "committed != read back"
    assert [n for *_, n in back["seen"]] == [n for *_, n in committed]


WRITE_FRAME_UNTIL_FULL = r"""
import datetime as dt, json, sys
import numpy as np
import pychro
path = sys.argv[1]
total, error = 0, None
try:
    for k in range(1000):
        rows = np.arange(total, total + 20000, dtype=np.int64)
        pychro.write_frame({"x": rows}, path, [("x", "int64")], date=dt.date(2024, 1, 2))
        total += len(rows)
except OSError as exc:
    error = [exc.errno, str(exc), exc.filename]
print(json.dumps({"total": total, "error": error}))
"""

READ_FRAME_BACK = r"""
import json, sys
import numpy as np
import pychro
from pychro.verify import verify_journal
path = sys.argv[1]
x = pychro.read_table(path, [("x", "int64")]).column("x").to_numpy()
report = verify_journal(path)
print(json.dumps({"n": len(x), "in_order": bool((x == np.arange(len(x))).all()), "ok": report.ok,
                  "summary": report.summary()}))
"""


def test_write_frame_on_a_full_disk_raises_oserror(small_fs: Path) -> None:
    journal = small_fs / "j"
    out = _child(WRITE_FRAME_UNTIL_FULL, journal)
    err_no, message, filename = out["error"]
    assert err_no == errno.ENOSPC, message
    assert filename.startswith(str(journal)) and "bytes at offset" in message, message
    back = _child(READ_FRAME_BACK, journal)
    assert back["ok"], back["summary"]
    # every completed call is there, in order; of the failed one, at most whole runs before the failure
    assert back["in_order"] and back["n"] >= out["total"] > 0


ONE_BIG_WRITE_FRAME = r"""
import datetime as dt, json, sys
import numpy as np
import pychro
from pychro.verify import verify_journal
path = sys.argv[1]
schema = [("x", "int64"), ("y", "int64")]  # 20-byte records: a 64 k-row run takes 1.25 MiB, two do not fit 2 MiB
x = np.arange(1_000_000, dtype=np.int64)
error = None
try:
    pychro.write_frame({"x": x, "y": -x}, path, schema, date=dt.date(2024, 1, 2), threads=2)
except OSError as exc:
    error = [exc.errno, str(exc), exc.filename]
back = pychro.read_table(path, schema)
n, ok = back.num_rows, verify_journal(path).ok
in_order = bool((back.column("x").to_numpy() == x[:n]).all() and (back.column("y").to_numpy() == -x[:n]).all())
print(json.dumps({"error": error, "n": n, "ok": ok, "in_order": in_order}))
"""


def test_one_write_frame_on_two_threads_commits_the_runs_that_fit(small_fs: Path) -> None:
    """Runs are written side by side ahead of their commits: each run's index slots and data blocks are
    reserved in row order first, so the runs that fit are committed (later runs used to take the last blocks
    first, and then the whole frame failed with nothing committed)."""
    out = _child(ONE_BIG_WRITE_FRAME, small_fs / "j")
    assert out["error"] is not None and out["error"][0] == errno.ENOSPC, out
    assert out["ok"] and out["in_order"], out
    assert out["n"] > 0 and out["n"] % 65536 == 0, out  # whole runs


SERVE_UNTIL_FULL = r"""
import json, sys
import pychro
from pychro import RemoteError
path = sys.argv[1]
server = pychro.serve(path, allow_submit=True, background=True)
try:
    n, refused = 0, None
    with pychro.RemoteChronicleWriter("127.0.0.1", server.port) as writer:
        appender = writer.get_appender()
        try:
            for i in range(10**7):
                appender.write_long(i)
                appender.write_bytes(bytes(i % 500))
                appender.finish()
                n += 1
        except RemoteError as exc:
            refused = str(exc)
    reader = pychro.RemoteChronicleReader("127.0.0.1", server.port, where="start")
    rows = [reader.next_reader().read_long() for _ in range(n)]  # the source still serves, all of it
    reader.close()
finally:
    server.close()
print(json.dumps({"n": n, "refused": refused, "rows_ok": rows == list(range(n))}))
"""


def test_server_refuses_a_submit_on_a_full_disk_and_keeps_serving(small_fs: Path) -> None:
    journal = small_fs / "j"
    run = subprocess.run([sys.executable, "-c", SERVE_UNTIL_FULL, str(journal)], capture_output=True, text=True,
                         timeout=CHILD_TIMEOUT, cwd=REPO, check=False)
    assert run.returncode == 0, f"child exited with {run.returncode} (SIGBUS is -7)\n{run.stdout}\n{run.stderr}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["refused"] and out["n"] > 100 and out["rows_ok"], out
    assert "SUBMIT of" in run.stderr and "cannot reserve disk space" in run.stderr  # the server's log line
    assert _child(READ_BACK, journal)["ok"]


# -- readers on a full tmpfs -------------------------------------------------------------------------------------
def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy a journal as Java leaves it: each file at its full size, but only up to its last non-zero byte
    written, the rest a hole (a plain copy would write the zeros too)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        data = np.fromfile(path, dtype=np.uint8)
        used = int(np.flatnonzero(data)[-1]) + 1 if data.any() else 0
        with open(target, "wb") as fh:
            fh.write(data[:used].tobytes())
            fh.truncate(len(data))


READ_ALL_WAYS = r"""
import json, sys
import pychro
from pychro import VanillaChronicleReader, NoData
from pychro.journal import Journal
from pychro.verify import verify_journal
path = sys.argv[1]
out = {}
reader = VanillaChronicleReader(path)
out["rows"] = [ex.read_long() for ex in reader]
try:  # past the end: the next slot may be the first of a page that was never written
    reader.next_reader()
    out["after_end"] = "message"
except NoData:
    out["after_end"] = "NoData"
journal = Journal(path)
out["count"] = journal.count(journal.cycles()[0])
tail = VanillaChronicleReader(path)
tail.set_end()
out["end"] = tail.get_index() - journal.config.index_of(journal.cycles()[0], 0)
out["frame"] = pychro.read_table(path, [("x", "int64")]).num_rows
out["verify"] = verify_journal(path).ok
print(json.dumps(out))
"""


@pytest.mark.parametrize("messages", [512, 50_000])  # the index ends exactly at a page / far inside the file
def test_readers_and_verify_on_a_full_tmpfs_journal_with_holes(small_fs: Path, tmp_path: Path,
                                                               messages: int) -> None:
    source = tmp_path / "source"
    with VanillaChronicleWriter(source) as writer:
        appender = writer.get_appender()
        for i in range(messages):
            appender.write_long(i)
            appender.finish()
    journal = small_fs / "j"
    _sparse_copy(source, journal)
    _fill(small_fs)
    out = _child(READ_ALL_WAYS, journal)
    assert out["rows"] == list(range(messages))
    assert out["after_end"] == "NoData"
    assert out["count"] == out["end"] == out["frame"] == messages
    assert out["verify"]
    cli = subprocess.run([sys.executable, "-m", "pychro", "verify", str(journal)], capture_output=True, text=True,
                         timeout=CHILD_TIMEOUT, cwd=REPO, check=False)
    assert cli.returncode == 0 and cli.stdout.rstrip().endswith("OK"), (cli.returncode, cli.stdout, cli.stderr)


# -- reservations, without a full disk ---------------------------------------------------------------------------
SMALL = VanillaConfig(index_block_size=1 << 16, data_block_size=1 << 20, message_capacity=4096,
                      thread_id_bits=16)


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_short_lived_writers_stay_about_as_small_as_sparse_files(tmp_path: Path) -> None:
    # 50 writer restarts of one message each: 50 data files of the full block size (as Java), few blocks each
    for i in range(50):
        with VanillaChronicleWriter(tmp_path, config=SMALL) as writer:
            appender = writer.get_appender()
            appender.write_long(i)
            appender.finish()
    (cycle,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    data = sorted(cycle.glob("data-*"))
    assert len(data) == 50
    for path in data:
        assert os.path.getsize(path) == SMALL.data_block_size  # the file size Java maps
        assert _allocated(path) <= 16 << 10, f"{path.name}: {_allocated(path)} bytes allocated for one message"
    assert _allocated(cycle / "index-0") <= 16 << 10


def test_reservation_is_ahead_of_every_store(tmp_path: Path) -> None:
    with VanillaChronicleWriter(tmp_path, config=SMALL) as writer:
        appender = writer.get_appender()
        for i in range(3000):
            appender.write_long(i)
            appender.write_bytes(bytes(i % 300))
            appender.finish()
            mf = appender._mf
            assert mf is not None and appender._pos <= mf.reserved  # every byte stored so far is reserved
        ci = appender._ci
        assert ci is not None and ci.hint <= ci.mf.reserved == len(ci.win)
        # reservations grow in chunks: far fewer fallocate calls than messages, and not the whole file
        assert mf.reserved < SMALL.data_block_size
        assert _allocated(Path(mf.path)) >= appender._pos


class _FailingAllocate:
    """Stands in for fallocate: ENOSPC for files whose name starts with ``prefix`` while ``full``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.full = False
        self.real = M._allocate
        self.calls = 0

    def __call__(self, fd: int, offset: int, length: int) -> bool:
        self.calls += 1
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if self.full and os.path.basename(name).startswith(self.prefix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(fd, offset, length)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to tell files apart")
@pytest.mark.parametrize("prefix", ["index-", "data-"])
def test_row_writer_when_reserving_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    fake = _FailingAllocate(prefix)
    monkeypatch.setattr(M, "_allocate", fake)
    expected: list[tuple[int, int]] = []
    with VanillaChronicleWriter(tmp_path, config=SMALL) as writer:
        appender = writer.get_appender()
        for i in range(2000):
            if i == 1000:
                fake.full = True
            try:
                appender.write_long(i)
                appender.write_bytes(bytes(500))
                expected.append((appender.finish(), i))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC and os.path.basename(exc.filename).startswith(prefix)
                assert "cannot reserve disk space for" in str(exc)
                assert appender.bytes_written() == 0  # dropped, not committed
                with pytest.raises(ValueError, match="no message in progress"):
                    appender.finish()
                break
        else:
            pytest.fail("the reservation never ran out")
        fake.full = False
        for i in range(-1, -4, -1):  # space again: the same appender goes on, with no gap in the index
            appender.write_long(i)
            expected.append((appender.finish(), i))
    with VanillaChronicleReader(tmp_path, config=SMALL) as reader:
        assert [(ex.index, ex.read_long()) for ex in reader] == expected
    indices = [i for i, _ in expected]
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    assert verify_journal(tmp_path, config=SMALL).ok


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to tell files apart")
def test_write_frame_fails_before_committing_a_run_without_index_space(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    day = dt.date(2024, 1, 2)
    schema = [("x", "int64")]
    pychro.write_frame({"x": np.arange(1000)}, tmp_path, schema, date=day, config=SMALL)
    fake = _FailingAllocate("index-")
    fake.full = True
    monkeypatch.setattr(M, "_allocate", fake)
    with pytest.raises(OSError, match="cannot reserve disk space") as info:
        pychro.write_frame({"x": np.arange(1000, 6000)}, tmp_path, schema, date=day, config=SMALL)
    assert info.value.errno == errno.ENOSPC and "index-0" in info.value.filename
    x = pychro.read_table(tmp_path, schema, config=SMALL).column("x").to_numpy()
    assert (x == np.arange(1000)).all()  # nothing of the failed run was committed
    assert verify_journal(tmp_path, config=SMALL).ok


def test_without_fallocate_data_gets_zeros_and_the_index_stays_sparse(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "_fallocate", None)  # a file system without fallocate (or not Linux)
    with VanillaChronicleWriter(tmp_path, config=SMALL) as writer:
        appender = writer.get_appender()
        for i in range(500):
            appender.write_long(i)
            appender.finish()
        mf, ci = appender._mf, appender._ci
        assert mf is not None and ci is not None
        assert appender._pos <= mf.reserved < SMALL.data_block_size
        assert ci.mf.reserved == SMALL.index_block_size  # no safe way to reserve a shared file: as before
    with VanillaChronicleReader(tmp_path, config=SMALL) as reader:
        assert [ex.read_long() for ex in reader] == list(range(500))


def test_count_filled_probes_unwritten_pages_with_pread(tmp_path: Path) -> None:
    # an index whose filled slots end at every interesting place, read through a mapping: the count must
    # match a plain scan, and `written` must never claim a page past the filled slots
    per_page = M._SLOTS_PER_PAGE
    for filled in [0, 1, per_page - 1, per_page, per_page + 1, 5 * per_page, 8 * per_page - 1, 8 * per_page]:
        path = tmp_path / f"index-{filled}"
        slots = np.zeros(8 * per_page, dtype="<u8")
        slots[:filled] = np.arange(1, filled + 1)
        with open(path, "wb") as fh:
            fh.write(slots[:filled].tobytes())
            fh.truncate(slots.nbytes)
        mf = M.MappedFile.open_read(str(path))
        try:
            assert mf.count_filled() == filled
            assert mf.written <= -(-filled // per_page) * per_page * 8
            assert mf.count_filled(filled) == filled
            for lo in (0, filled // 3, filled):  # from any known-filled prefix, with no page known written
                assert M.count_filled(mf.u64_view(), str(path), lo, 0) == (filled, mf.written)
            assert mf.read_slot(filled) == 0
            if filled:
                assert mf.read_slot(filled - 1) == filled
        finally:
            mf.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_reserving_keeps_no_descriptor_of_a_rolled_file(tmp_path: Path) -> None:
    # 300 index files (32 slots each) and 40 data files: a descriptor kept per file would pile up
    cfg = VanillaConfig(index_block_size=256, data_block_size=4096, message_capacity=256, thread_id_bits=16)
    before = len(os.listdir("/proc/self/fd"))
    with VanillaChronicleWriter(tmp_path, config=cfg) as writer:
        appender = writer.get_appender()
        for i in range(300 * 32):
            appender.write_long(i)
            appender.finish()
        assert len(os.listdir("/proc/self/fd")) - before <= 6
    assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_a_file_that_shrinks_while_it_is_mapped_for_reading_is_a_pychro_error(tmp_path: Path, monkeypatch: Any) -> None:
    """Between fstat and mmap another process may truncate the file: mmap then raised a bare ValueError ("mmap
    length is greater than file size", found by a helper). The size is looked at again; a file that keeps
    shrinking is a CorruptDataError."""
    import os as _os

    from pychro import _mapping
    from pychro.errors import CorruptDataError

    path = tmp_path / "f"
    path.write_bytes(b"x" * 4096)
    real = _os.fstat
    calls = []

    def stale(fd: int) -> Any:  # the size before a truncation, once
        st = real(fd)
        calls.append(fd)
        if len(calls) > 1:
            return st
        return _os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 8192,
                                int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    monkeypatch.setattr(_mapping.os, "fstat", stale)
    mf = _mapping.MappedFile.open_read(str(path))
    assert mf.size == 4096 and len(calls) == 2

    def always(fd: int) -> Any:
        st = real(fd)
        return _os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 8192,
                                int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    monkeypatch.setattr(_mapping.os, "fstat", always)
    with pytest.raises(CorruptDataError, match="kept shrinking"):
        _mapping.MappedFile.open_read(str(path))
