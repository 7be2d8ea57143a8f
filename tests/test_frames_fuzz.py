"""Fuzzing the frames read paths (issue 6): mutate the bytes of a small journal's index and data files (the
mutations of tests/test_fuzz.py: flips, overwrites, zeroed runs, truncation, extension, deletion, a folder in
place of a file, crafted index entries and headers), then read it with ``read_table`` (``errors="raise"``,
``"skip"`` and ``"truncate"``, one and two threads, small batches) and ``iter_batches``.

Only pychro's own exceptions (PychroError subclasses) may escape; nothing may hang or kill the interpreter.
Whatever is returned must make sense:

* ``_index`` strictly increasing, rows no more than the filled slots;
* ``errors="raise"`` succeeding means ``"skip"`` returns the same rows and skips none;
* ``"truncate"`` returns exactly the ``"skip"`` rows before the first bad index;
* the same rows as the row reader (which reads every message on its own, field by field), whenever both read
  the journal without an error: the vectorised decoder never returns a row the row API would not, and never
  drops one it would read.

``test_frames_survive_mutations`` runs in-process under hypothesis (``ci`` profile: 60 examples;
``HYPOTHESIS_PROFILE=long``: 2000); ``test_frames_mutations_in_a_child_process`` replays seeded mutations in a
child, so a SIGBUS, segfault or hang fails with the seed (``PYCHRO_FRAMES_FUZZ_ROUNDS``, ``PYCHRO_FUZZ_SEED``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reliability_helpers import (
    FRAMES_SCHEMA,
    build_frames_journal,
    frames_rows_by_row_reader,
    frames_rows_of_table,
    report_line,
    run_fuzz_child,
    small_config,
)
from test_fuzz import OP, _random_ops, apply

pa = pytest.importorskip("pyarrow")

from pychro import PychroError, PychroWarning  # noqa: E402
from pychro.frames import ReadStats, iter_batches, read_table  # noqa: E402

CFG = small_config(data_block_size=1024)
pytestmark = [pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"),
              pytest.mark.timeout(3600 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 300)]
STATS = {"inputs": 0, "rows": 0, "skipped": 0, "errors": 0, "compared_with_row_reader": 0}


@pytest.fixture(scope="module", autouse=True)
def _print_stats(request: pytest.FixtureRequest) -> Any:
    yield
    if STATS["inputs"]:
        report_line(request, f"[frames fuzz] inputs tried in-process: {STATS['inputs']}; "
                             f"rows returned: {STATS['rows']}; rows skipped: {STATS['skipped']}; "
                             f"pychro errors: {STATS['errors']}; "
                             f"results equal to the row reader's: {STATS['compared_with_row_reader']}")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frames-fuzz") / "base"
    build_frames_journal(root, config=CFG)
    return root


def _surrogates_replaced(value: Any) -> Any:
    """What an Arrow string holds of a row-API str: a lone surrogate becomes U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    return value


def _filled_slots(root: Path) -> int:
    return sum(p.stat().st_size // 8 for p in root.rglob("index-*") if p.is_file())


def _rows(run: Any) -> tuple[list[Any] | None, ReadStats, PychroError | None]:
    stats = ReadStats()
    try:
        table = run(stats)
    except PychroError as exc:
        return None, stats, exc
    rows = frames_rows_of_table(table)
    return rows, stats, None


def read_frames_everything(root: Path, config: Any, threads: int = 1) -> dict[str, int]:
    """Every frames read path over ``root``; checks the invariants of the module docstring."""
    out = {"rows": 0, "skipped": 0, "errors": 0, "compared": 0}

    def table(errors: str, batch_rows: int) -> Any:
        return lambda stats: read_table(root, FRAMES_SCHEMA, errors=errors, index=True, config=config,
                                        threads=threads, batch_rows=batch_rows, stats=stats)

    raised, _, e_raise = _rows(table("raise", 64))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", PychroWarning)
        skipped, s_stats, e_skip = _rows(table("skip", 7))
        cut, t_stats, e_cut = _rows(table("truncate", 5))
    # a damaged index file read past (its readable prefix) is warned about and listed, never silent
    assert len(warned) == len(s_stats.index_damage) + len(t_stats.index_damage), [str(w.message) for w in warned]
    assert all(issubclass(w.category, PychroWarning) for w in warned)
    out["errors"] += sum(e is not None for e in (e_raise, e_skip, e_cut))
    for rows in (raised, skipped, cut):
        if rows is not None:
            indexes = [r[0] for r in rows]
            assert indexes == sorted(set(indexes)), "rows out of index order or repeated"
            assert len(rows) <= _filled_slots(root)
            assert all(s is None or isinstance(s, str) for _, _, _, s, _ in rows)
    if skipped is not None:
        out["rows"] += len(skipped)
        out["skipped"] += s_stats.skipped_rows
        assert s_stats.rows == len(skipped)
    if raised is not None:
        # no message failed the schema: skipping changes nothing
        assert skipped == raised and s_stats.skipped_rows == 0, "errors='skip' differs from a clean errors='raise'"
    if skipped is not None and e_cut is None:
        assert cut is not None
        stop = s_stats.first_bad_index
        assert cut == [r for r in skipped if stop is None or r[0] < stop]
        assert t_stats.truncated == (stop is not None)
    if (e_skip is None) != (e_cut is None):
        # damage that raises (bad headers, missing files) raises in every mode, unless truncate stopped first
        assert e_skip is not None and t_stats.truncated, (e_skip, e_cut)
    # iter_batches: the same rows, in bounded batches, then the same error
    got: list[Any] = []
    error: PychroError | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PychroWarning)  # the same damage as the read_table above
            for batch in iter_batches(root, FRAMES_SCHEMA, errors="skip", index=True, config=config, batch_rows=4,
                                      threads=2):
                assert batch.num_rows <= 4
                got.append(batch)
    except PychroError as exc:
        error = exc
        out["errors"] += 1
    rows = frames_rows_of_table(pa.Table.from_batches(got)) if got else []
    if e_skip is None:
        assert error is None and rows == skipped
    else:
        assert error is not None and type(error) is type(e_skip) and str(error) == str(e_skip)
        assert skipped is None and all(r[0] < getattr(error, "index", 1 << 63) for r in rows)
    # the row reader, message by message
    if skipped is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PychroWarning)
                by_rows = frames_rows_by_row_reader(root, config=config)
        except PychroError:
            by_rows = None
        if by_rows is not None:
            expected = [tuple(_surrogates_replaced(v) for v in r) for r in by_rows if r is not None]
            assert skipped == expected, "read_table and the row reader disagree on a damaged journal"
            out["compared"] += 1
    return out


def _count(got: dict[str, int]) -> None:
    STATS["inputs"] += 1
    STATS["rows"] += got["rows"]
    STATS["skipped"] += got["skipped"]
    STATS["errors"] += got["errors"]
    STATS["compared_with_row_reader"] += got["compared"]


@given(ops=st.lists(OP, min_size=1, max_size=4), detect=st.booleans(), threads=st.sampled_from([1, 2]))
@settings(database=None)
def test_frames_survive_mutations(base: Path, ops: list[tuple[Any, ...]], detect: bool, threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "j"
        shutil.copytree(base, root)
        apply(root, ops)
        config = small_config(data_block_size=1024, thread_id_bits=None) if detect else CFG
        _count(read_frames_everything(root, config, threads))


def test_unmutated_base_reads_clean(base: Path) -> None:
    got = read_frames_everything(base, CFG)
    assert got == {"rows": 57, "skipped": 0, "errors": 0, "compared": 1}


# -- the same in a child process: crashes and hangs show as a failed child -----------------------------------------
def child_fuzz(base: str, seed: int, rounds: int) -> None:
    """Child: ``rounds`` seeded mutations of a copy of ``base``, each read by every frames path; JSON summary."""
    totals = {"inputs": 0, "rows": 0, "skipped": 0, "errors": 0, "compared": 0}
    for k in range(rounds):
        rng = random.Random(seed * 1_000_003 + k)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "j"
            shutil.copytree(base, root)
            apply(root, _random_ops(rng))
            print(f"round {k}", file=sys.stderr, flush=True)  # the last one names the culprit if we die
            config = small_config(data_block_size=1024, thread_id_bits=None) if k % 3 == 0 else CFG
            got = read_frames_everything(root, config, 1 + k % 2)
        totals["inputs"] += 1
        for key in ("rows", "skipped", "errors", "compared"):
            totals[key] += got[key]
    print(json.dumps(totals))


@pytest.mark.slow
def test_frames_mutations_in_a_child_process(base: Path, request: pytest.FixtureRequest) -> None:
    totals, seed, rounds = run_fuzz_child("test_frames_fuzz", "child_fuzz", base, "PYCHRO_FRAMES_FUZZ_ROUNDS", 300)
    assert totals["inputs"] == rounds and totals["rows"] > rounds  # most mutations leave rows to read
    report_line(request, f"[frames fuzz] inputs tried in a child process: {rounds} (seed {seed}); rows returned: "
                         f"{totals['rows']}; skipped: {totals['skipped']}; pychro errors: {totals['errors']}; "
                         f"equal to the row reader: {totals['compared']}")
