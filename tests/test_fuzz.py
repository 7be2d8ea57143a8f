"""Fuzzing (issue 6): mutate the bytes of a small journal's index and data files (flip, overwrite, zero,
truncate, extend, delete, a folder in place of a file; crafted index entries and headers), then read everything
with the row reader, read every field of every message, and run verify and ``Journal.info``. Only pychro's own
exceptions (PychroError subclasses) may escape; verify must never raise; nothing may hang or kill the interpreter.

* ``test_row_reader_and_verify_survive_mutations``: hypothesis, in-process (the default ``ci`` profile runs
  ~60 examples; ``HYPOTHESIS_PROFILE=long`` runs 2000).
* ``test_mutations_in_a_child_process``: seeded random mutations replayed in a child process, so a SIGBUS,
  segfault or hang shows as a failed child with the seed to replay (``PYCHRO_FUZZ_ROUNDS`` sets how many).

The frames reader is fuzzed in tests/test_frames_fuzz.py, TCP streams both ways in tests/test_remote_fuzz.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reliability_helpers import (
    build_two_writer_journal,
    check_body,
    report_line,
    run_fuzz_child,
    small_config,
)

from pychro import Journal, NoData, PychroError, VanillaChronicleReader
from pychro.verify import verify_journal

CFG = small_config()
# hypothesis' failure report touches a deprecated mypy_extensions name; keep it from hiding the failure
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
STATS = {"inputs": 0, "messages": 0, "intact": 0, "pychro_errors": 0, "field_errors": 0}
MAX_STEPS = 400  # more than the journal's slots: reading stops by itself long before


@pytest.fixture(scope="module", autouse=True)
def _print_stats(request: pytest.FixtureRequest) -> Any:
    yield
    if STATS["inputs"]:
        report_line(request, f"[fuzz] inputs tried in-process: {STATS['inputs']}; messages returned: "
                             f"{STATS['messages']} ({STATS['intact']} intact); pychro errors from the reader/journal: "
                             f"{STATS['pychro_errors']}, from field reads: {STATS['field_errors']}")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days, two writers, 3 + 1 index files, 5 data files: 45 + 12 messages."""
    root = tmp_path_factory.mktemp("fuzz") / "base"
    build_two_writer_journal(root, day_a=(15, 15, 15), day_b=(6, 6))
    return root


# -- the target: read everything ------------------------------------------------------------------------------
def _read_fields(excerpt: Any) -> None:
    """Every kind of field read over the body: each read may raise only FormatError (a PychroError)."""
    start = excerpt.get_offset()
    for plan in (("read_int", "read_long", "read_stop_bit*", "read_unsigned_int"),
                 ("read_string", "read_double", "read_compact_long", "read_utf", "read_char", "read_int48"),
                 ("read_stop_bit", "read_string", "read_string", "read_compact_double", "read_float")):
        excerpt.set_offset(start)
        try:
            for name in plan:
                if name.endswith("*"):  # a length, then that many bytes, as a careful caller reads them
                    n = getattr(excerpt, name[:-1])()
                    if n < 0:  # read_bytes(-1) is a bad argument (ValueError), not a bad journal: the caller checks
                        STATS["field_errors"] += 1
                        break
                    excerpt.read_bytes(n)
                else:
                    getattr(excerpt, name)()
        except PychroError:
            STATS["field_errors"] += 1


def read_everything(root: Path, config: Any) -> dict[str, int]:
    """Row reader over every cycle, skipping past each message that raises; then verify and info."""
    out = {"messages": 0, "intact": 0, "errors": 0}
    try:
        reader = VanillaChronicleReader(root, config=config)
    except PychroError:
        out["errors"] += 1
        reader = None
    if reader is not None:
        with reader:
            for _ in range(MAX_STEPS):
                try:
                    excerpt = reader.next_reader()
                except NoData:
                    break
                except PychroError as exc:
                    out["errors"] += 1
                    # skip what failed (the reader stays on it after an error): the message, or the rest
                    # of the cycle when one of its index files cannot be read (later ones are reached
                    # through it)
                    try:
                        at = reader.get_index()
                        cycle = reader.config.split_index(at)[0]
                        bad_index_file = os.path.basename(getattr(exc, "path", "") or "").startswith("index-")
                        reader.set_index(reader.config.index_of(cycle + 1, 0) if bad_index_file else at + 1)
                    except PychroError:
                        break
                    continue
                out["messages"] += 1
                body = excerpt.body()
                assert len(body) == excerpt.get_length() < 1 << 30
                try:
                    check_body(body)
                    out["intact"] += 1
                except AssertionError:
                    pass  # mutated bytes inside a body: the reader cannot know, and must not care
                _read_fields(excerpt)
            else:
                raise AssertionError(f"reader did not reach the end in {MAX_STEPS} steps")
    report = verify_journal(root, config=config)  # must never raise on a journal that exists
    report.summary()
    try:
        Journal(root, config).info()
    except PychroError:
        out["errors"] += 1
    return out


# -- mutations -------------------------------------------------------------------------------------------------
def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())  # folders made by "folder" are not picked again


def _used(path: Path) -> int:
    """Bytes up to the last non-zero one (mutations aim there; the rest of a block is zeros)."""
    raw = path.read_bytes()
    return len(raw.rstrip(b"\0")) + 8


def apply(root: Path, ops: list[tuple[Any, ...]]) -> None:
    """Apply mutation ops; each picks a file by number (modulo the files that exist) and a position in it."""
    for op in ops:
        files = _files(root)
        if not files:
            return
        kind, pick, a, b = op
        path = files[pick % len(files)]
        size = path.stat().st_size
        used = max(1, min(size, _used(path)))
        if kind == "delete":
            path.unlink()
        elif kind == "folder":  # a folder where the file was
            path.unlink()
            path.mkdir()
        elif kind == "truncate":
            os.truncate(path, a % (size + 1))
        elif kind == "extend":
            with open(path, "ab") as fh:
                fh.write(bytes([b & 0xFF]) * (a % 5000))
        elif size == 0:
            continue
        elif kind == "flip":
            pos = a % used
            with open(path, "r+b") as fh:
                fh.seek(pos)
                byte = fh.read(1)[0]
                fh.seek(pos)
                fh.write(bytes([byte ^ (1 << (b % 8))]))
        elif kind == "overwrite":  # b: the new bytes
            pos = a % used
            with open(path, "r+b") as fh:
                fh.seek(pos)
                fh.write(b[: max(0, size - pos)])
        elif kind == "zero":
            pos = a % used
            with open(path, "r+b") as fh:
                fh.seek(pos)
                fh.write(bytes(min(b % 64 + 1, size - pos)))
        elif kind == "slot":  # an index slot gets a crafted entry: a real one with tid/file/offset changed
            if not path.name.startswith("index-"):
                continue
            n_slots = size // 8
            slot = a % max(1, min(n_slots, used // 8 + 2))
            raw = path.read_bytes()
            real = [struct.unpack_from("<Q", raw, 8 * k)[0] for k in range(n_slots)]
            real = [e for e in real if e] or [1]
            entry = real[b % len(real)]
            tweak = (b >> 8) % 6
            entry = [entry + 1, entry - 4, entry ^ (1 << 12), entry ^ (1 << 48), entry & ~0xFFF | 0xFFC,
                     b & 0xFFFF_FFFF_FFFF_FFFF][tweak] & 0xFFFF_FFFF_FFFF_FFFF
            if slot * 8 + 8 <= size:
                with open(path, "r+b") as fh:
                    fh.seek(slot * 8)
                    fh.write(struct.pack("<Q", entry))
        elif kind == "header":  # a header word somewhere in the used part of a data file
            if not path.name.startswith("data-"):
                continue
            pos = (a % used) & ~3
            value = [0, -1, ~(1 << 30), 0x7FFFFFFF, ~4096, ~(b % 300), b & 0x7FFFFFFF][b % 7]
            if pos + 4 <= size:
                with open(path, "r+b") as fh:
                    fh.seek(pos)
                    fh.write(struct.pack("<i", value))


OP = st.one_of(
    st.tuples(st.sampled_from(["flip", "zero", "truncate", "extend", "delete", "folder", "slot", "header"]),
              st.integers(0, 63), st.integers(0, 1 << 20), st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("overwrite"), st.integers(0, 63), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=12)),
)


@given(ops=st.lists(OP, min_size=1, max_size=4), detect=st.booleans())
@settings(database=None)
def test_row_reader_and_verify_survive_mutations(base: Path, ops: list[tuple[Any, ...]], detect: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "j"
        shutil.copytree(base, root)
        apply(root, ops)
        config = small_config(thread_id_bits=None) if detect else CFG
        got = read_everything(root, config)
    STATS["inputs"] += 1
    STATS["messages"] += got["messages"]
    STATS["intact"] += got["intact"]
    STATS["pychro_errors"] += got["errors"]


def test_unmutated_base_reads_clean(base: Path) -> None:
    """The target itself finds nothing wrong in the untouched journal (so the fuzz runs read real messages)."""
    got = read_everything(base, CFG)
    assert got == {"messages": 57, "intact": 57, "errors": 0}
    assert verify_journal(base, config=CFG).ok


# -- the same in a child process: crashes and hangs show as a failed child -----------------------------------
def _random_ops(rng: random.Random) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["flip", "zero", "truncate", "extend", "delete", "folder", "slot", "header", "overwrite",
                           "flip", "slot"])
        b: Any = rng.randbytes(rng.randint(1, 12)) if kind == "overwrite" else rng.getrandbits(64)
        ops.append((kind, rng.randrange(64), rng.randrange(1 << 20), b))
    return ops


def child_fuzz(base: str, seed: int, rounds: int) -> None:
    """Child: ``rounds`` seeded mutations of a copy of ``base``, each read in full; prints a JSON summary."""
    totals = {"inputs": 0, "messages": 0, "intact": 0, "errors": 0}
    for k in range(rounds):
        rng = random.Random(seed * 1_000_003 + k)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "j"
            shutil.copytree(base, root)
            apply(root, _random_ops(rng))
            print(f"round {k}", file=sys.stderr, flush=True)  # the last one names the culprit if we die
            got = read_everything(root, small_config(thread_id_bits=None) if k % 3 == 0 else CFG)
        totals["inputs"] += 1
        for key in ("messages", "intact", "errors"):
            totals[key] += got[key]
    print(json.dumps(totals))


@pytest.mark.slow
def test_mutations_in_a_child_process(base: Path, request: pytest.FixtureRequest) -> None:
    totals, seed, rounds = run_fuzz_child("test_fuzz", "child_fuzz", base, "PYCHRO_FUZZ_ROUNDS", 500)
    assert totals["inputs"] == rounds and totals["messages"] > rounds  # most mutations leave messages to read
    report_line(request, f"[fuzz] inputs tried in a child process: {rounds} (seed {seed}); messages returned: "
                         f"{totals['messages']} ({totals['intact']} intact); pychro errors: {totals['errors']}")
