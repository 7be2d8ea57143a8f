"""Damaged journals served over TCP (issue 6): ``pychro.serve`` on each damaged copy of
tests/test_frames_damaged.py, read by a :class:`RemoteChronicleReader` (with and without reconnect) and by
``iter_remote_batches``.

What a client sees is decided here (vanilla-format.md §9 has no error frame):

* every intact message before the damaged one arrives, exactly, in index order;
* then the source closes the connection and logs a warning with the precise error (cycle, seq, data file,
  offset, what is wrong): the client gets :class:`RemoteError` at once (``reconnect=False``: "connection lost";
  with reconnect: it resumes after the last message, the source drops it again, and after a few tries
  "keeps dropping the connection") - never a hang;
* a zero header behind a filled slot is what a live writer may show for an instant, so the source waits there
  (heartbeats) and the client gets :class:`NoData` after its timeout, like an idle journal;
* an index file cut short, emptied or missing while a later one exists, or an emptied slot before filled ones,
  ends the session at the first seq it hides (the source never skips on to the next cycle);
* other clients of the same source keep being served.

Unreadable files and read-only copies are served from a child process that obeys file modes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from reliability_helpers import (
    FRAMES_SCHEMA,
    HERE,
    REPO,
    frames_body,
    frames_row_intact,
    frames_rows_of_table,
    journal_state,
    report_line,
)
from test_frames_damaged import (  # the damage cases and their fixtures
    CFG,
    CORRUPT,
    CUT_INDEX,
    CYCLE_A,
    READABLE,
    Base,
    Expect,
    _cut_index,
    _first_failing_seq,
    _obey_modes,
    base,  # noqa: F401 - fixture
    index_of,
    journal,  # noqa: F401 - fixture
    where,
    world_readable,  # noqa: F401 - fixture
)

pa = pytest.importorskip("pyarrow")

from pychro import NoData, PychroError, RemoteError  # noqa: E402
from pychro.remote import (  # noqa: E402
    RemoteChronicleReader,
    RemoteChronicleWriter,
    iter_remote_batches,
    serve,
)

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]
TRIED: dict[str, list[str]] = {"reader": [], "iter_remote_batches": [], "child": []}
# A zero header: the source waits for the writer to finish it (the client sees an idle journal).
WAITS = {"header_zero", "header_zero_in_index_1", "entry_into_zeros"}
# What the source's tail says (it words a few checks differently from the frames reader).
TAIL_WHAT = {
    "truncated_mid_header": "index entry points outside its data file",
    "zero_length_data_file": "index entry points outside its data file (0 bytes)",
    "entry_past_file_end": "index entry points outside its data file",
    "entry_before_first_header": "index entry points outside its data file",
    "entry_unaligned": "index entry offset is not 4-byte aligned",
}


@pytest.fixture(scope="module", autouse=True)
def _print_cases(request: pytest.FixtureRequest) -> Any:
    yield
    report_line(request,
                "[remote damaged] cases per path: " + "; ".join(f"{k}: {len(set(v))}" for k, v in TRIED.items()))


def _source_bad_seq(case: str, expect: Expect, root: Path) -> int:
    """Seq of day A the source stops at: it reads index files one after another, so a bad index-1 is met at
    seq 32 (the frames reader counts the whole cycle first)."""
    if expect.path is not None and expect.path.name.startswith("index-"):
        return 32 * int(expect.path.name[6:])
    return _first_failing_seq(expect, root)


def _dropped(caplog: pytest.LogCaptureFixture) -> list[BaseException]:
    return [r.args[1] for r in caplog.records  # type: ignore[index, misc]
            if r.name == "pychro.remote" and r.levelno == logging.WARNING and "dropped" in r.msg]


def _check_logged(errors: list[BaseException], case: str, expect: Expect, bad: int) -> None:
    assert errors, "the source did not log why it dropped the client"
    for exc in errors:  # every session met the same damage
        assert type(exc) is expect.error, repr(exc)
        assert TAIL_WHAT.get(case, expect.what) in str(exc), str(exc)
        if expect.path is not None:
            assert exc.path == str(expect.path), str(exc)  # type: ignore[attr-defined]
        if expect.error is not PychroError and expect.cycle is not None:
            assert exc.cycle == CYCLE_A, str(exc)  # type: ignore[attr-defined]
        if expect.seq is not None:
            assert (exc.seq, exc.offset) == (bad, expect.offset), str(exc)  # type: ignore[attr-defined]


def _read(port: int, **kw: Any) -> tuple[list[tuple[int, bytes]], BaseException | None, float]:
    kw.setdefault("timeout", 0.5)
    got: list[tuple[int, bytes]] = []
    t0 = time.monotonic()
    try:
        with RemoteChronicleReader("127.0.0.1", port, "start", config=CFG, connect_timeout=2, **kw) as reader:
            for excerpt in reader:
                got.append((excerpt.index, excerpt.body()))
    except (RemoteError, NoData) as exc:
        return got, exc, time.monotonic() - t0
    return got, None, time.monotonic() - t0


def _batches(port: int) -> tuple[list[tuple[Any, ...]], BaseException | None, float]:
    got: list[Any] = []
    t0 = time.monotonic()
    error: BaseException | None = None
    try:
        for batch in iter_remote_batches("127.0.0.1", port, FRAMES_SCHEMA, index=True, errors="skip", timeout=0.5,
                                         config=CFG, reconnect=False):
            got.append(batch)  # kept when the iterator raises
    except RemoteError as exc:
        error = exc
    rows = frames_rows_of_table(pa.Table.from_batches(got)) if got else []
    assert all(frames_row_intact(w, i, s, crc) for _, w, i, s, crc in rows)
    return rows, error, time.monotonic() - t0


def _expected(written: Base, upto: int) -> list[tuple[int, bytes]]:
    return [(index, frames_body(w, i)) for index, w, i in written.written[:upto]]


# every case without reconnect; with reconnect (resume after the last message, dropped again) a few kinds
RECONNECT_CASES = ("header_positive", "header_zero", "missing_data_file", "folder_for_index_file", "truncated_mid_body")


@pytest.mark.parametrize("case, reconnect",
                         [(c, False) for c in sorted(CORRUPT)] + [(c, True) for c in RECONNECT_CASES])
def test_reader_gets_every_message_before_the_damage(journal: Path, base: Base, case: str, reconnect: bool,  # noqa: F811
                                                      caplog: pytest.LogCaptureFixture) -> None:
    expect = CORRUPT[case](journal, base)
    bad = _source_bad_seq(case, expect, journal)
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    with serve(journal, config=CFG, background=True) as server:
        got, error, took = _read(server.port, reconnect=reconnect, reconnect_timeout=2)
        assert got == _expected(base, bad)
        if case in WAITS:
            assert error is None and 0.4 < took < 3  # NoData after the timeout: iteration ended
            assert _dropped(caplog) == []
        else:
            assert isinstance(error, RemoteError), error
            assert error.last_index == (got[-1][0] if got else None)  # type: ignore[attr-defined]
            assert ("keeps dropping" if reconnect else "connection lost") in str(error)
            assert took < 5
            _check_logged(_dropped(caplog), case, expect, bad)
        # the same source still serves day B (undamaged) to another client
        with RemoteChronicleReader("127.0.0.1", server.port, dt.date(2020, 3, 2), config=CFG, timeout=10) as other:
            assert [(e.index, e.body()) for e in (other.next_reader() for _ in range(12))] == _expected(base, 57)[45:]
    TRIED["reader"].append(case)


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_iter_remote_batches_gets_every_row_before_the_damage(journal: Path, base: Base, case: str,  # noqa: F811
                                                              caplog: pytest.LogCaptureFixture) -> None:
    expect = CORRUPT[case](journal, base)
    bad = _source_bad_seq(case, expect, journal)
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    got: list[Any] = []
    with serve(journal, config=CFG, background=True) as server:
        t0 = time.monotonic()
        try:
            for batch in iter_remote_batches("127.0.0.1", server.port, FRAMES_SCHEMA, index=True, errors="skip",
                                             timeout=0.5, config=CFG, reconnect=False):
                got.append(batch)  # kept when the iterator raises
            error = None
        except RemoteError as exc:
            error = exc
        took = time.monotonic() - t0
    rows = frames_rows_of_table(pa.Table.from_batches(got)) if got else []
    assert all(frames_row_intact(w, i, s, crc) for _, w, i, s, crc in rows)
    assert [(r[0], r[1], r[2]) for r in rows] == base.written[:bad]
    if case in WAITS:
        assert error is None
    else:
        assert error is not None and "connection lost" in str(error) and took < 5
        _check_logged(_dropped(caplog), case, expect, bad)
    TRIED["iter_remote_batches"].append(case)


@pytest.mark.parametrize("case", sorted(READABLE))
def test_damage_the_source_passes_over(journal: Path, base: Base, case: str) -> None:  # noqa: F811
    damage, expected = READABLE[case]
    damage(journal)
    want = expected(base.written)
    with serve(journal, config=CFG, background=True) as server:
        got, error, _ = _read(server.port, reconnect=False)
        assert error is None
        assert got == [(index, frames_body(w, i)) for index, w, i in want]
        batches = list(iter_remote_batches("127.0.0.1", server.port, FRAMES_SCHEMA, index=True, timeout=0.5,
                                           config=CFG, reconnect=False))
        rows = frames_rows_of_table(pa.Table.from_batches(batches))
        assert [(r[0], r[1], r[2]) for r in rows] == want
    TRIED["reader"].append(case)
    TRIED["iter_remote_batches"].append(case)


@pytest.mark.parametrize("case", CUT_INDEX)
def test_cut_or_holed_index_file_ends_the_session(journal: Path, base: Base, case: str,  # noqa: F811
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The source stops at the first entry it cannot reach (it never skips on to the next cycle): the client gets
    every message before it, then a RemoteError; the warning names the index file and seq."""
    error, what, seq, path = _cut_index(journal, case)
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    tail_what = {"truncated_mid_entry": "index file index-0 ends at entry 10 (83 bytes) but index-1 exists",
                 "zero_length": "index file index-0 ends at entry 0 (0 bytes) but index-1 exists",
                 "stray_later_file": "index file index-1 ends at entry 13 (256 bytes) but index-2 exists",
                 }.get(case, what)
    with serve(journal, config=CFG, background=True) as server:
        got, exc, took = _read(server.port, reconnect=False)
        assert got == _expected(base, seq)
        assert isinstance(exc, RemoteError) and "connection lost" in str(exc) and took < 5
        rows, exc2, _ = _batches(server.port)
        assert [(r[0], r[1], r[2]) for r in rows] == base.written[:seq] and isinstance(exc2, RemoteError)
    logged = _dropped(caplog)
    assert logged and all(type(e) is error and tail_what in str(e) for e in logged), logged
    assert all((e.cycle, e.seq, e.path) == (CYCLE_A, seq, str(path)) for e in logged)  # type: ignore[attr-defined]
    TRIED["reader"].append(f"index {case}")
    TRIED["iter_remote_batches"].append(f"index {case}")


def test_hostile_subscribes_on_a_damaged_journal(journal: Path, base: Base) -> None:  # noqa: F811
    """SUBSCRIBE/QUERY at, before and after the damaged message, and at indexes of cycles that cannot exist:
    the source answers or closes, and keeps serving."""
    CORRUPT["header_positive"](journal, base)
    requests = [
        (1, index_of(CYCLE_A, 20)),  # at the damaged message: reply, then closed
        (1, index_of(CYCLE_A, 19)),  # one before: that message, then closed
        (10, index_of(CYCLE_A, 20)),  # QUERY of it: it exists (the slot is filled)
        (1, (1 << 63) - 1),  # a cycle no date can hold
        (10, (1 << 63) - 1),
        (1, index_of(CYCLE_A, 10**9)),  # a seq far past the index files
    ]
    with serve(journal, config=CFG, background=True) as server:
        for action, arg in requests:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(struct.pack("<qq", action, arg))
                sock.settimeout(1.0)
                received = b""
                try:
                    while chunk := sock.recv(65536):
                        received += chunk
                except TimeoutError:
                    pass  # still open (waiting with heartbeats): fine
            if action == 1 and arg == index_of(CYCLE_A, 19):
                size = struct.unpack_from("<i", received, 12)[0]
                assert received[12:] == struct.pack("<iq", size, arg) + frames_body(*base.written[19][1:])
        got, error, _ = _read(server.port, reconnect=False)
        assert got == _expected(base, 20) and isinstance(error, RemoteError)
        deadline = time.monotonic() + 5
        while server.clients and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.clients == 0  # no session left behind
    TRIED["reader"].append("hostile subscribes on a damaged journal")


# -- permissions and read-only copies: the source runs in a child that obeys file modes -----------------------------
SERVE_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}]
    from reliability_helpers import small_config
    from pychro.remote import serve
    with serve({root!r}, config=small_config(data_block_size=1024), background=True, allow_submit=True) as server:
        print(server.port, flush=True)
        sys.stdin.readline()
""")


class ChildSource:
    def __init__(self, root: Path) -> None:
        code = SERVE_CHILD.format(tests=str(HERE.parent), root=str(root))
        self.proc = subprocess.Popen([*_obey_modes(), sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(self.proc.communicate(timeout=10)[1])
        self.port = int(line)

    def stop(self) -> str:
        try:
            _, err = self.proc.communicate("quit\n", timeout=30)
        finally:  # a hung child (communicate timed out) is killed, not left serving
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


def test_read_only_copy_is_served_and_stays_untouched(world_readable: Path, base: Base) -> None:  # noqa: F811
    root = world_readable
    for p in [root, *root.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    before = journal_state(root)
    source = ChildSource(root)
    try:
        got, error, _ = _read(source.port, reconnect=False)
        assert error is None and got == _expected(base, 57)
        batches = list(iter_remote_batches("127.0.0.1", source.port, FRAMES_SCHEMA, timeout=0.5, config=CFG))
        assert sum(b.num_rows for b in batches) == 57
        with RemoteChronicleWriter("127.0.0.1", source.port, timeout=5) as remote, pytest.raises(RemoteError):
            remote.submit(b"refused: the journal is read-only")
    finally:
        err = source.stop()
    assert journal_state(root) == before
    assert "SUBMIT of 33 bytes refused" in err
    TRIED["child"].append("read-only copy")


def test_unreadable_data_file_is_logged_and_ends_the_session(world_readable: Path, base: Base) -> None:  # noqa: F811
    root = world_readable
    data, _ = where(root, 20)
    os.chmod(data, 0)
    bad = min(s for s in range(45) if where(root, s)[0] == data)
    source = ChildSource(root)
    try:
        got, error, took = _read(source.port, reconnect=False)
        assert got == _expected(base, bad)
        assert isinstance(error, RemoteError) and "connection lost" in str(error) and took < 5
    finally:
        err = source.stop()
    assert "dropped" in err and "Permission denied" in err and str(data) in err, err
    TRIED["child"].append("unreadable data file")
