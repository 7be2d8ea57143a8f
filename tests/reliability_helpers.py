"""Helpers for the reliability tests (crash, stress, fuzz, verify): self-checking messages, a child writer
process that can kill itself with SIGKILL at a chosen point, and journal readers that check every message.

Every message carries its writer number ``w``, that writer's sequence ``i``, a payload derived from (w, i)
and a CRC-32 of everything before it, so "intact" is checked twice (checksum and expected bytes), with
reference encodings from ``helpers.py``, not with pychro's.

Run as a script (``python tests/reliability_helpers.py write SPEC_JSON``) it is the child writer: it appends
``count`` messages and, after each ``finish()`` returns, appends ``(index, w, i)`` to a report file with one
``os.write`` (a record there is committed; a message not reported may or may not be).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import FakeClock, ref_read_stop_bit, ref_stop_bit

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

# Small blocks, so that a few dozen messages roll index files (32 slots each) and data files (4 KiB).
SMALL = {"index_block_size": 256, "data_block_size": 4096, "message_capacity": 256, "thread_id_bits": 16}
DAY0_MS = int(dt.datetime(2020, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)
DAY_MS = 86_400_000
REPORT = struct.Struct("<qqq")  # index, w, i
MAX_PAYLOAD = 256 - 4 - 8 - 2 - 4  # capacity minus int, long, stop-bit length (2 bytes), crc


def small_config(**overrides: Any) -> Any:
    from pychro import VanillaConfig

    return VanillaConfig(**{**SMALL, **overrides})


# -- self-checking messages ------------------------------------------------------------------------------
def payload(w: int, i: int, max_len: int = MAX_PAYLOAD) -> bytes:
    """Deterministic bytes for message (w, i); lengths vary from 0 to max_len (skewed to short)."""
    rng = random.Random(w * 1_000_003 + i)
    n = rng.choice((0, 1, 3, rng.randrange(max_len + 1), rng.randrange(40), max_len))
    return rng.randbytes(n)


def body_bytes(w: int, i: int, max_len: int = MAX_PAYLOAD) -> bytes:
    p = payload(w, i, max_len)
    head = struct.pack("<iq", w, i) + ref_stop_bit(len(p)) + p
    return head + struct.pack("<I", zlib.crc32(head))


def write_message(
    appender: Any, w: int, i: int, max_len: int = MAX_PAYLOAD, between: Callable[[], None] | None = None
) -> int:
    """Write message (w, i) field by field (``between`` runs mid-body) and commit it."""
    p = payload(w, i, max_len)
    appender.write_int(w)
    appender.write_long(i)
    if between is not None:
        between()
    appender.write_stop_bit(len(p))
    appender.write_bytes(p)
    head = struct.pack("<iq", w, i) + ref_stop_bit(len(p)) + p
    appender.write_unsigned_int(zlib.crc32(head))
    return int(appender.finish())


class NotIntact(AssertionError):
    pass


def check_body(body: bytes, index: int | None = None, max_len: int = MAX_PAYLOAD) -> tuple[int, int]:
    """(w, i) of an intact message body; raises NotIntact naming what is wrong."""
    where = f"index {index:#x}" if index is not None else "message"
    if len(body) < 17:
        raise NotIntact(f"{where}: body of {len(body)} bytes is too short")
    w, i = struct.unpack_from("<iq", body)
    try:
        n, used = ref_read_stop_bit(body, 12)
    except IndexError:
        raise NotIntact(f"{where}: payload length runs off the body") from None
    end = 12 + used + n
    if n < 0 or end + 4 != len(body):
        raise NotIntact(f"{where}: payload length {n} does not fit a body of {len(body)} bytes")
    (crc,) = struct.unpack_from("<I", body, end)
    if crc != zlib.crc32(body[:end]):
        raise NotIntact(f"{where}: checksum mismatch")
    if body != body_bytes(w, i, max_len):
        raise NotIntact(f"{where}: bytes differ from message (w={w}, i={i})")
    return w, i


def read_excerpt(excerpt: Any, max_len: int = MAX_PAYLOAD) -> tuple[int, int]:
    """Check one excerpt both as raw bytes and through the row API's field reads."""
    w, i = check_body(excerpt.body(), excerpt.index, max_len)
    assert excerpt.read_int() == w and excerpt.read_long() == i
    n = excerpt.read_stop_bit()
    assert excerpt.read_bytes(n) == payload(w, i, max_len)
    excerpt.read_unsigned_int()
    assert excerpt.remaining() == 0
    return w, i


def read_all(
    path: str | os.PathLike[str], config: Any = None, max_len: int = MAX_PAYLOAD, **kw: Any
) -> list[tuple[int, int, int]]:
    """(index, w, i) of every committed message, in index order, each checked intact (row reader)."""
    from pychro import VanillaChronicleReader

    out = []
    with VanillaChronicleReader(path, config=config, **kw) as reader:
        for excerpt in reader:
            w, i = read_excerpt(excerpt, max_len)
            out.append((excerpt.index, w, i))
    return out


def check_sequences(rows: Iterable[tuple[int, int, int]], starts: dict[int, int] | None = None) -> dict[int, int]:
    """Each writer's messages appear once, in order, without gaps (from ``starts[w]``, default 0).

    Returns the count per writer. Indices must be strictly increasing (index order = read order).
    """
    nxt: dict[int, int] = dict(starts or {})
    base = dict(nxt)
    last = -1
    for index, w, i in rows:
        assert index > last, f"index {index:#x} read after {last:#x}"
        last = index
        expected = nxt.get(w, 0)
        assert i == expected, f"writer {w}: message {i} read where {expected} was expected (gap or duplicate)"
        nxt[w] = i + 1
    return {w: n - base.get(w, 0) for w, n in nxt.items()}


def read_report(path: str | os.PathLike[str]) -> list[tuple[int, int, int]]:
    """Records a child wrote after finish() returned (a torn last record is ignored)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    n = len(raw) // REPORT.size
    return [REPORT.unpack_from(raw, k * REPORT.size) for k in range(n)]


def journal_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Kind, size, mode, mtime and content hash of every path under ``root`` (FIFOs and links are not opened)."""
    import hashlib
    import stat as _stat

    out: dict[str, tuple[object, ...]] = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if _stat.S_ISREG(st.st_mode):
            with open(p, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            out[rel] = ("file", st.st_size, st.st_mode, st.st_mtime_ns, digest)
        else:
            out[rel] = (_stat.S_IFMT(st.st_mode), st.st_mode, st.st_mtime_ns)
    return out


def report_line(request: Any, text: str) -> None:
    """Print a summary line to the terminal from a (module-scoped) fixture, past pytest's capture."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is None:
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            terminal.write_line("\n" + text)
    else:
        terminal.write_line("\n" + text)


# -- a journal of two writer threads, written in-process ------------------------------------------------------
class _Worker:
    """A long-lived thread (one native thread id, so one appender) that runs what it is given."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        self.error: BaseException | None = None

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                self.error = exc
            self.jobs.task_done()

    def do(self, job: Callable[[], None]) -> None:
        self.jobs.put(job)
        self.jobs.join()
        if self.error:
            raise self.error

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join()


def build_two_writer_journal(root: Path, day_a: tuple[int, int, int] = (20, 20, 30), day_b: tuple[int, int] = (10, 10),
                             config: Any = None, write: Callable[[Any, int, int], int] | None = None
                             ) -> list[tuple[int, int, int]]:
    """Two writer threads, two days (2020-03-01 and -02, SMALL config); returns ``(index, w, i)`` sorted.

    Day A: writer 1 x20, writer 2 x20, writer 1 x30 (index-0..2, a data roll); day B: writer 1 x10, 2 x10.
    ``write(appender, w, i)`` writes and commits one message (default :func:`write_message`).
    """
    from pychro import VanillaChronicleWriter

    write = write or write_message
    config = config or small_config()
    clock = FakeClock(dt.datetime(2020, 3, 1, 12))
    workers = {1: _Worker(), 2: _Worker()}
    nxt = {1: 0, 2: 0}
    written: list[tuple[int, int, int]] = []
    try:
        with VanillaChronicleWriter(root, config=config, clock=clock) as writer:
            def burst(w: int, n: int) -> None:
                def job() -> None:
                    appender = writer.get_appender()
                    for _ in range(n):
                        written.append((write(appender, w, nxt[w]), w, nxt[w]))
                        nxt[w] += 1
                workers[w].do(job)

            burst(1, day_a[0]), burst(2, day_a[1]), burst(1, day_a[2])
            clock.set(dt.datetime(2020, 3, 2, 12))
            burst(1, day_b[0]), burst(2, day_b[1])
    finally:
        for worker in workers.values():
            worker.stop()
    return sorted(written)


# -- the child writer ----------------------------------------------------------------------------------------
class _Killer:
    """Kills this process with SIGKILL at the ``nth`` occurrence of ``event`` (counted from 1)."""

    def __init__(self, event: str | None, nth: int) -> None:
        self.event = event
        self.nth = nth
        self.seen = 0

    def hit(self, event: str) -> None:
        if event != self.event:
            return
        self.seen += 1
        if self.seen == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)  # never reached: SIGKILL is delivered before the syscall returns


def _install_hooks(killer: _Killer) -> None:
    """Wrap the functions the writer calls (module globals, so the writer picks the wrappers up).

    Events: ``before_header`` (body written), ``before_commit``/``after_commit`` (around the CAS),
    ``{create,truncate,mapped}_{index,data}`` (before creating a file, after creating it but before it is
    extended to its block size, after it is mapped).
    """
    import importlib

    import pychro._mapping as M
    import pychro.writer as W

    real_header, real_commit, real_open = W._pack_header, M.commit, M.MappedFile.open_write.__func__  # type: ignore[attr-defined]
    # every module that calls the CAS through a module-level name (the appender, and the shared commit path
    # that handles index-file rolls)
    callers = [W]
    for name in ("pychro._commit",):
        try:
            callers.append(importlib.import_module(name))
        except ImportError:
            pass
    callers = [mod for mod in callers if getattr(mod, "commit", None) is real_commit]
    assert W in callers, "the appender no longer calls pychro._mapping.commit by the name 'commit'"
    real_ftruncate = os.ftruncate
    opening: list[str] = []

    def pack_header(buf: Any, pos: int, value: int) -> None:
        killer.hit("before_header")
        real_header(buf, pos, value)

    def commit(mm: Any, start: int, entry: int) -> int:
        killer.hit("before_commit")
        off = real_commit(mm, start, entry)
        if off >= 0:
            killer.hit("after_commit")
        return off

    def ftruncate(fd: int, size: int) -> None:
        if opening:
            killer.hit(f"truncate_{opening[-1]}")
        real_ftruncate(fd, size)

    def open_write(cls: Any, path: str, size: int, *, exclusive: bool = False) -> Any:
        kind = "index" if os.path.basename(path).startswith("index-") else "data"
        killer.hit(f"create_{kind}")
        opening.append(kind)
        try:
            mf = real_open(cls, path, size, exclusive=exclusive)
        finally:
            opening.pop()
        killer.hit(f"mapped_{kind}")
        return mf

    W._pack_header = pack_header  # type: ignore[attr-defined]
    for mod in callers:
        mod.commit = commit  # type: ignore[attr-defined]
    M.MappedFile.open_write = classmethod(open_write)  # type: ignore[method-assign, assignment]
    os.ftruncate = ftruncate


def child_write(spec: dict[str, Any]) -> None:
    """Append messages as ``spec`` says (see :func:`run_writer`)."""
    from pychro import VanillaChronicleWriter

    killer = _Killer(spec.get("kill_event"), spec.get("kill_nth", 0))
    if killer.event and killer.event != "mid_body":
        _install_hooks(killer)
    cfg = small_config(**spec.get("config", {}))
    change_at = spec.get("cycle_change_at")
    state = {"i": spec["start"]}

    def clock() -> int:  # the cycle moves one day forward at message ``change_at``
        day = 1 if change_at is not None and state["i"] >= change_at else 0
        return DAY0_MS + day * DAY_MS + state["i"]

    use_clock = spec.get("clock", "fake") == "fake"
    fd = os.open(spec["report"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    writer = VanillaChronicleWriter(spec["dir"], config=cfg, clock=clock if use_clock else None,
                                    synchronous=spec.get("synchronous", False))
    threads = spec.get("threads", 1)
    count = spec["count"]  # per thread; -1: until killed
    max_len = spec.get("max_len", MAX_PAYLOAD)
    pause = spec.get("pause", 0)

    def mid_body() -> None:
        killer.hit("mid_body")

    t_end = time.monotonic() + spec["duration"] if "duration" in spec else None
    if "go" in spec:  # start together with the other processes of a stress run
        while not os.path.exists(spec["go"]):
            time.sleep(0.001)

    def run(w: int) -> None:
        appender = writer.get_appender()
        i = spec["start"] if threads == 1 else spec["starts"][str(w)]
        stop = i + count if count >= 0 else None
        while (stop is None or i < stop) and (t_end is None or time.monotonic() < t_end):
            state["i"] = i
            index = write_message(appender, w, i, max_len, mid_body)
            os.write(fd, REPORT.pack(index, w, i))
            i += 1
            if pause and i % 16 == 0:  # bursts: readers catch up with the head and wait at it
                time.sleep(pause)

    ws = [spec["w"] + t for t in range(threads)]
    if threads == 1:
        run(ws[0])
    else:
        ts = [threading.Thread(target=run, args=(w,)) for w in ws]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    writer.close()
    os.close(fd)


def run_fuzz_child(module: str, function: str, base: str | os.PathLike[str], rounds_env: str, default_rounds: int,
                   seconds_per_round: float = 1.0) -> tuple[dict[str, Any], int, int]:
    """Run ``<module>.<function>(base, seed, rounds)`` (a test module beside this one) in a child process, so a
    SIGBUS, segfault or hang fails with the seed to replay. Returns (the child's last JSON line, seed, rounds)."""
    rounds = int(os.environ.get(rounds_env, str(default_rounds)))
    seed = int(os.environ.get("PYCHRO_FUZZ_SEED", "20261128"))
    code = (f"import sys; sys.path[:0] = [{str(HERE.parent)!r}]; import {module}; "
            f"{module}.{function}({str(base)!r}, {seed}, {rounds})")
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                         timeout=60 + seconds_per_round * rounds)
    last = run.stderr.strip().splitlines()[-12:]
    assert run.returncode == 0, f"child died (rc={run.returncode}, seed={seed}): {last}"
    return json.loads(run.stdout.strip().splitlines()[-1]), seed, rounds


def run_child(command: str, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start a child of this script (``read`` or ``verify``, see :func:`main`) with stdout/stderr piped."""
    return subprocess.Popen([sys.executable, str(HERE), command, json.dumps(spec)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_writer(tmp: Path, journal: Path, *, w: int, start: int = 0, count: int, wait: bool = True,
               **spec: Any) -> subprocess.Popen[bytes] | subprocess.CompletedProcess[bytes]:
    """Start the child writer; with ``wait`` run it to its end (or its own SIGKILL) and return the result.

    ``spec`` keys: kill_event, kill_nth, config (VanillaConfig overrides of SMALL), cycle_change_at,
    clock ("fake"/"real"), synchronous, threads, starts ({w: first i} when threads > 1), max_len, report.
    """
    spec = dict(spec, dir=str(journal), w=w, start=start, count=count)
    spec.setdefault("report", str(tmp / f"report-{w}-{start}.bin"))
    cmd = [sys.executable, str(HERE), "write", json.dumps(spec)]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=REPO, check=False, capture_output=True, timeout=120)


# -- child readers (stress) ----------------------------------------------------------------------------------
def child_read(spec: dict[str, Any]) -> None:
    """Tail a journal until ``expect`` messages per writer are read; print a JSON summary on stdout."""
    from pychro import NoData, VanillaChronicleReader

    cfg = small_config(**spec.get("config", {}))
    expect = {int(k): v for k, v in spec["expect"].items()} if spec.get("expect") else None
    done_file = Path(spec["done"])
    nxt: dict[int, int] = {}
    last = -1
    n = 0
    deadline = time.monotonic() + spec.get("timeout", 120)
    with VanillaChronicleReader(spec["dir"], config=cfg) as reader:
        while True:
            try:
                excerpt = reader.next_reader()
            except NoData:
                if expect is None and done_file.exists():
                    expect = {int(k): v for k, v in json.loads(done_file.read_text()).items()}
                if expect is not None and all(nxt.get(w, 0) >= c for w, c in expect.items()):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"reader timed out: {nxt} of {expect}") from None
                time.sleep(0.002)
                continue
            w, i = read_excerpt(excerpt, spec.get("max_len", MAX_PAYLOAD))
            if excerpt.index <= last:
                raise SystemExit(f"index {excerpt.index:#x} after {last:#x}")
            last = excerpt.index
            if i != nxt.get(w, 0):
                raise SystemExit(f"writer {w}: read {i}, expected {nxt.get(w, 0)}")
            nxt[w] = i + 1
            n += 1
    print(json.dumps({"read": n, "per_writer": nxt}))


def child_verify_loop(spec: dict[str, Any]) -> None:
    """Run verify_journal repeatedly until the done file appears; print what it saw as JSON."""
    from pychro.verify import verify_journal

    cfg = small_config(**spec.get("config", {}))
    done_file = Path(spec["done"])
    runs = 0
    transient: list[str] = []
    while True:
        finished = done_file.exists()
        report = verify_journal(spec["dir"], config=cfg)
        runs += 1
        for c in report.cycles:
            if c.valid != c.messages:
                raise SystemExit(f"live verify: {c.messages - c.valid} bad messages: {report.summary()}")
        problems = report.problems + [p for c in report.cycles for p in c.problems]
        for p in problems:
            # A writer creates index-N empty and then extends it: a verify between the two sees it short.
            if "index file is 0 bytes" in p.what and p.seq is None:
                transient.append(str(p))
            else:
                raise SystemExit(f"live verify: {report.summary()}")
        if finished:
            break
    print(json.dumps({"runs": runs, "transient": transient}))


def main(argv: list[str]) -> None:
    command, spec = argv[0], json.loads(argv[1])
    {"write": child_write, "read": child_read, "verify": child_verify_loop}[command](spec)


if __name__ == "__main__":
    main(sys.argv[1:])


# -- self-checking messages the frames reader can decode (frames and remote reliability tests) ----------------
# Every message is ``w:int32, i:int64, s:string (writeUTFΔ), crc:uint32``: a schema the frames reader
# decodes, with a text derived from (w, i) (lengths 4..240 bytes, so one- and two-byte stop-bit lengths, and
# non-ASCII characters) and a CRC-32 of everything before it. References come from helpers.py, not pychro.
FRAMES_SCHEMA = "w:int32,i:int64,s:string,crc:uint32"


def frames_text(w: int, i: int) -> str:
    """Deterministic text of message (w, i): ids, then 0..114 more characters, some of them two-byte UTF-8
    (at most 240 bytes in all, so a body fits the SMALL config's 256-byte capacity)."""
    rng = random.Random(w * 7_000_003 + i)
    n = rng.choice((0, 3, rng.randrange(60), rng.randrange(100, 115)))
    return f"{w}/{i}:" + "".join(rng.choice("abcXYZ019 é-") for _ in range(n))


def frames_body(w: int, i: int) -> bytes:
    """The exact body bytes of frames message (w, i)."""
    raw = frames_text(w, i).encode("utf-8")  # BMP text without NUL: writeUTFΔ bytes are plain UTF-8
    head = struct.pack("<iq", w, i) + ref_stop_bit(len(raw)) + raw
    return head + struct.pack("<I", zlib.crc32(head))


def write_frames_message(appender: Any, w: int, i: int) -> int:
    """Write frames message (w, i) with the row writer and commit it; returns its index."""
    text = frames_text(w, i)
    raw = text.encode("utf-8")
    appender.write_int(w)
    appender.write_long(i)
    appender.write_string(text)
    appender.write_unsigned_int(zlib.crc32(struct.pack("<iq", w, i) + ref_stop_bit(len(raw)) + raw))
    return int(appender.finish())


def frames_row_intact(w: int, i: int, s: str | None, crc: int) -> bool:
    """Is a decoded row exactly message (w, i)?"""
    return s == frames_text(w, i) and crc == struct.unpack_from("<I", frames_body(w, i), len(frames_body(w, i)) - 4)[0]


def build_frames_journal(root: Path, day_a: tuple[int, int, int] = (15, 15, 15), day_b: tuple[int, int] = (6, 6),
                         config: Any = None) -> list[tuple[int, int, int]]:
    """:func:`build_two_writer_journal` with frames messages; returns ``(index, w, i)`` in index order.

    With the SMALL config index files roll every 32 messages and data files every 4 KiB, so the default sizes
    give 2 + 1 index files and several data files per writer.
    """
    return build_two_writer_journal(root, day_a, day_b, config, write=write_frames_message)


def frames_rows_of_table(table: Any) -> list[tuple[int, int, int, str | None, int]]:
    """``(_index, w, i, s, crc)`` of every row of a table read with ``FRAMES_SCHEMA`` and ``index=True``."""
    cols = [table.column(name).to_pylist() for name in ("_index", "w", "i", "s", "crc")]
    return list(zip(*cols))


def frames_rows_by_row_reader(path: str | os.PathLike[str], config: Any = None,
                              **kw: Any) -> list[tuple[int, int, int, str | None, int] | None]:
    """The row API's reading of every message with ``FRAMES_SCHEMA``: a tuple per message that decodes to
    exactly its length, None for one that does not (what ``errors="skip"`` drops). PychroErrors propagate."""
    from pychro import VanillaChronicleReader

    out: list[tuple[int, int, int, str | None, int] | None] = []
    with VanillaChronicleReader(path, config=config, **kw) as reader:
        for e in reader:
            try:
                row = (e.index, e.read_int(), e.read_long(), e.read_string(), e.read_unsigned_int())
            except Exception:  # noqa: BLE001 - a field running past the body, or bytes that are not text
                out.append(None)
                continue
            out.append(row if e.remaining() == 0 else None)
    return out


# -- a child writer of frames messages that kills itself (crash tests of the frames and remote read paths) --------
def child_write_frames(spec: dict[str, Any]) -> None:
    """Append frames messages (w, start..start+count) with one thread; SIGKILL at ``kill_event``/``kill_nth``.

    Events are those of :func:`_install_hooks`, plus ``mid_body`` (after the int and the long). Each message
    is reported with one ``os.write`` after ``finish()`` returns, as :func:`child_write` does. The clock moves
    one day on at message ``cycle_change_at``.
    """
    from pychro import VanillaChronicleWriter

    killer = _Killer(spec.get("kill_event"), spec.get("kill_nth", 0))
    if killer.event and killer.event != "mid_body":
        _install_hooks(killer)
    cfg = small_config(**spec.get("config", {}))
    change_at = spec.get("cycle_change_at")
    state = {"i": spec["start"]}

    def clock() -> int:
        day = 1 if change_at is not None and state["i"] >= change_at else 0
        return DAY0_MS + day * DAY_MS + state["i"]

    fd = os.open(spec["report"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    w = spec["w"]
    with VanillaChronicleWriter(spec["dir"], config=cfg, clock=clock) as writer:
        appender = writer.get_appender()
        for i in range(spec["start"], spec["start"] + spec["count"]):
            state["i"] = i
            text = frames_text(w, i)
            raw = text.encode("utf-8")
            appender.write_int(w)
            appender.write_long(i)
            killer.hit("mid_body")
            appender.write_string(text)
            appender.write_unsigned_int(zlib.crc32(struct.pack("<iq", w, i) + ref_stop_bit(len(raw)) + raw))
            index = int(appender.finish())
            os.write(fd, REPORT.pack(index, w, i))
    os.close(fd)


def run_frames_writer(journal: Path, report: Path, *, w: int, start: int, count: int,
                      **spec: Any) -> subprocess.CompletedProcess[bytes]:
    """Run :func:`child_write_frames` in a child process to its end (or its own SIGKILL)."""
    spec = dict(spec, dir=str(journal), w=w, start=start, count=count, report=str(report))
    code = (f"import sys, json; sys.path.insert(0, {str(HERE.parent)!r}); import reliability_helpers as R; "
            f"R.child_write_frames(json.loads(sys.argv[1]))")
    return subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=REPO, check=False,
                          capture_output=True, timeout=120)
