"""Wrong paths, wrong configurations, lost or cut index files and errors= everywhere (issue 13).

None of these may give a plausible empty or partial result with exit 0: a folder that is not a journal (a cycle
folder, the journal's parent, another cycle format or block size) is an error naming what was found and the
configuration that would match; an index-0 lost while its data files remain, or an index file cut short, is
reported by verify and raises in every reader unless ``errors=`` asks for the readable prefix.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import pychro
from pychro import CorruptDataError, FormatError, JournalNotFoundError, PychroWarning, SchemaMismatchError
from pychro.cli import main
from pychro.frames import ReadStats, read_frame, read_table
from pychro.frames.export import to_csv, to_ipc, to_parquet
from pychro.verify import verify_journal

S = "ts:timestamp_ms,sym:string,px:float64"
SMALL = pychro.VanillaConfig(index_block_size=1024)  # 128 slots per index file


def _write(root: Path, n: int, config: Any = None, days: int = 2) -> pd.DataFrame:
    ms = np.arange(n, dtype=np.int64) * (days * 86_400_000 // n)
    df = pd.DataFrame({"ts": pd.Timestamp("2024-03-04", tz="UTC") + pd.to_timedelta(ms, unit="ms"),
                       "sym": ["A", "BB"] * (n // 2), "px": np.arange(n) / 4})
    pychro.write_frame(df, root, S, config=config)
    return df


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wrong") / "j"
    _write(root, 400)
    return root


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _readers(path: Path, config: Any = None) -> dict[str, Any]:
    """Every reader the issue lists, as calls that must raise."""
    return {
        "read_table": lambda: read_table(path, S, config=config),
        "read_frame": lambda: read_frame(path, S, config=config),
        "row reader": lambda: list(pychro.VanillaChronicleReader(path, config=config)),
        "open": lambda: pychro.open(path, config=config),
        "verify": lambda: verify_journal(path, config=config),
        "to_parquet": lambda: to_parquet(path, S, path.parent / "never.parquet", config=config),
        "serve": lambda: _serve(path, config),
    }


def _serve(path: Path, config: Any) -> None:
    """pychro.serve must refuse the folder; were it to accept it, close the server so nothing leaks."""
    pychro.serve(path, port=0, config=config).close()


# -- folders that are not journals ---------------------------------------------------------------------------
def test_a_cycle_folder_is_not_a_journal(daily: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cycle = daily / "20240304"
    for call in _readers(cycle).values():
        with pytest.raises(JournalNotFoundError, match=f"a cycle folder.*the journal is its parent folder {daily}"):
            call()
    assert not (daily / "never.parquet").exists()
    for args in (["info", str(cycle)], ["verify", str(cycle)], ["head", str(cycle), "--schema", S],
                 ["export", str(cycle), "--schema", S, "--to", str(daily.parent / "x.parquet")],
                 ["serve", str(cycle), "--port", "0"]):
        rc, out, err = _cli(capsys, *args)
        assert rc == 1 and out == "" and err.count("\n") == 1 and "cycle folder" in err, (args, out, err)
    assert not (daily.parent / "x.parquet").exists()


def test_the_parent_of_a_journal_is_not_a_journal(daily: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for call in _readers(daily.parent).values():
        with pytest.raises(JournalNotFoundError, match="a folder of journals: j is a journal"):
            call()
    rc, _, err = _cli(capsys, "info", str(daily.parent))
    assert rc == 1 and "folder of journals" in err


def test_a_folder_without_cycle_folders_names_what_it_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "2024-03-05").mkdir()
    what = r"no cycle folder matches cycle_format 'yyyyMMdd'.*found 2024-03"
    for call in _readers(tmp_path).values():
        with pytest.raises(JournalNotFoundError, match=what):
            call()
    rc, out, _ = _cli(capsys, "verify", str(tmp_path))
    assert rc == 1 and "OK" not in out


def test_a_file_is_not_a_journal_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "afile"
    path.write_text("x")
    with pytest.raises(JournalNotFoundError, match="is a file, not a folder"):
        _serve(path, None)
    for args in (["verify", str(path)], ["serve", str(path), "--port", "0"]):
        rc, out, err = _cli(capsys, *args)
        assert rc == 1 and out == "" and "a file" in err, (args, out, err)


def test_writers_refuse_a_folder_that_is_something_else(daily: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A cycle folder, a folder of journals, an hourly journal written as daily: every writer refuses before
    creating anything (they used to nest a journal in the cycle folder or mix layouts); a new folder, or one with
    unrelated files only, is a new journal."""
    hourly = tmp_path / "h"
    pychro.write_frame(pd.DataFrame({"ts": pd.to_datetime(["2024-03-05 09:00"], utc=True), "sym": ["A"],
                                     "px": [1.0]}), hourly, S, config=pychro.VanillaConfig(cycle="HOURS"))
    before = {p: sorted(x.name for x in p.iterdir()) for p in (daily / "20240304", daily.parent, hourly)}
    df = pd.DataFrame({"ts": pd.to_datetime(["2024-03-05 10:00"], utc=True), "sym": ["B"], "px": [2.0]})
    df.to_parquet(tmp_path / "x.parquet")
    cases = {daily / "20240304": "a cycle folder", daily.parent: "a folder of journals", hourly: "match cycle='HOURS'"}
    for path, what in cases.items():
        with pytest.raises(JournalNotFoundError, match=what):
            pychro.write_frame(df, path, S)
        with pytest.raises(JournalNotFoundError, match=what):
            pychro.VanillaChronicleWriter(path)
        rc, _, err = _cli(capsys, "import", str(tmp_path / "x.parquet"), str(path), "--schema", S)
        assert rc == 1 and what.split("=")[0] in err, err
    assert {p: sorted(x.name for x in p.iterdir()) for p in before} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    pychro.write_frame(df, other, S)
    assert read_table(other, S).num_rows == 1


def test_an_empty_journal_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".keep").write_text("")  # dotfiles do not count
    assert read_table(tmp_path, S).num_rows == 0
    report = verify_journal(tmp_path)
    assert report.ok and report.empty and "empty journal" in report.summary() and "OK" not in report.summary()
    for args in (["info", str(tmp_path)], ["verify", str(tmp_path)]):
        rc, out, _ = _cli(capsys, *args)
        assert rc == 0 and "empty journal" in out
    rc, out, err = _cli(capsys, "head", str(tmp_path), "--schema", S)
    assert rc == 0 and out == "" and "empty journal" in err


def test_another_cycle_format_names_the_configuration_that_matches(daily: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    hourly = pychro.VanillaConfig(cycle="HOURS")
    what = r"match cycle='DAYS' \(e.g. 20240304\).*VanillaConfig\(cycle='DAYS'\)"
    for call in _readers(daily, hourly).values():
        with pytest.raises(JournalNotFoundError, match=what):
            call()
    rc, out, err = _cli(capsys, "verify", str(daily), "--cycle", "HOURS")
    assert rc == 1 and out == "" and "--cycle DAYS" in err
    rc, out, err = _cli(capsys, "head", str(daily), "--schema", S, "--cycle", "HOURS")
    assert rc == 1 and out == "" and "cycle='DAYS'" in err
    # and the other way round: hourly folders read as daily ones
    root = tmp_path / "h"
    pychro.write_frame(pd.DataFrame({"ts": pd.to_datetime(["2024-03-05 09:00", "2024-03-05 10:00"], utc=True),
                                     "sym": ["A", "B"], "px": [1.0, 2.0]}), root, S, config=hourly)
    with pytest.raises(JournalNotFoundError, match=r"2 match cycle='HOURS' \(e.g. 2024030509\)"):
        read_table(root, S)
    assert read_table(root, S, config=hourly).num_rows == 2


def test_folders_of_the_format_that_start_no_cycle_are_an_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Hourly folders read with the hourly format but a daily cycle length: only the folder at midnight names
    a cycle, so the others used to be left out silently (a verify "OK" of a quarter of the journal)."""
    root = tmp_path / "h"
    hours = pd.to_datetime(["2024-03-04 22:00", "2024-03-04 23:00", "2024-03-05 00:00", "2024-03-05 01:00"], utc=True)
    pychro.write_frame(pd.DataFrame({"ts": hours, "sym": list("ABCD"), "px": [1.0, 2, 3, 4]}), root, S,
                       config=pychro.VanillaConfig(cycle="HOURS"))
    odd = pychro.VanillaConfig(cycle=None, cycle_format="yyyyMMddHH", cycle_length_ms=86_400_000)
    what = r"3 folder\(s\) named by cycle_format 'yyyyMMddHH' start no cycle.*VanillaConfig\(cycle='HOURS'\)"
    for call in _readers(root, odd).values():
        with pytest.raises(JournalNotFoundError, match=what):
            call()
    rc, out, err = _cli(capsys, "verify", str(root), "--cycle-format", "yyyyMMddHH", "--cycle-length-ms", "86400000")
    assert rc == 1 and "OK" not in out and "--cycle HOURS" in err
    assert read_table(root, S, config=pychro.VanillaConfig(cycle="HOURS")).num_rows == 4


def test_a_wrong_index_block_size_names_the_one_that_matches(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _write(root, 600, config=SMALL, days=1)  # 600 messages in one day: index-0 .. index-4 of 1 KiB
    hint = r"index_block_size=1024 \(pass config=VanillaConfig\(index_block_size=1024\)"
    assert read_table(root, S, config=SMALL).num_rows == 600
    for config in (None, pychro.VanillaConfig(index_block_size=512)):
        for name, call in _readers(root, config).items():
            if name in ("open", "verify", "serve"):  # these read no index file before a client asks
                continue
            with pytest.raises((CorruptDataError, FormatError), match=hint):
                call()
    report = verify_journal(root)
    assert not report.ok and "index_block_size=1024" in str(report.first_problem)


@pytest.mark.parametrize("configured", [None, 32 * 1024])  # 64 MiB, the default; or half the real size
def test_a_wrong_data_block_size_names_the_one_that_matches(tmp_path: Path, configured: int | None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Data files of 64 KiB read as 64 MiB (entries of file 1 would point past file 0's end) or as 32 KiB
    (entries would land inside another file: plausible garbage): refused up front, naming the size that fits."""
    root = tmp_path / "j"
    small = {"data_block_size": 64 * 1024}
    want = _write(root, 6000, config=pychro.VanillaConfig(**small), days=1)
    assert len(os.listdir(next(root.iterdir()))) > 2  # several data files
    config = pychro.VanillaConfig(data_block_size=configured) if configured else None
    hint = r"data_block_size=65536 \(pass config=VanillaConfig\(data_block_size=65536\), pychro --data-block-size 65536"
    for call in _readers(root, config).values():
        with pytest.raises(JournalNotFoundError, match=hint):
            call()
    rc, out, err = _cli(capsys, "verify", str(root), *(["--data-block-size", str(configured)] if configured else []))
    assert rc == 1 and "OK" not in out and "--data-block-size 65536" in err
    got = read_frame(root, S, config=pychro.VanillaConfig(**small))
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_too_small_entries_per_cycle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """300 messages in a day read with entries_per_cycle=256: the indices of seq 256.. would be the next cycle's
    (info showed overlapping ranges, tail printed nothing, verify said OK)."""
    root = tmp_path / "j"
    want = _write(root, 300, days=1)
    small = pychro.VanillaConfig(entries_per_cycle=256)
    for call in _readers(root, small).values():
        with pytest.raises(FormatError, match="holds more than entries_per_cycle=256 messages"):
            call()
    for args in (["info", str(root)], ["verify", str(root)], ["tail", str(root), "--schema", S, "-n", "2"]):
        rc, out, err = _cli(capsys, *args, "--entries-per-cycle", "256")
        assert rc == 1 and "entries_per_cycle=256" in err and "OK" not in out, (args, out, err)
    fits = pychro.VanillaConfig(entries_per_cycle=512)
    pd.testing.assert_frame_equal(read_frame(root, S, config=fits), want, check_dtype=False)


# -- lost and cut index files ----------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tail(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return _cli(capsys, "tail", str(root), "--schema", S, "-n", "5", *extra)


def test_a_lost_index_0_is_an_error_everywhere(daily: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(daily, tmp_path / "j")
    (root / "20240304" / "index-0").unlink()
    what = "index-0 is missing but data-.* holds committed messages"
    for name, call in _readers(root).items():
        if name in ("open", "verify", "serve"):  # the source drops its clients instead (test below)
            continue
        with pytest.raises(JournalNotFoundError, match=what):
            call()
    report = verify_journal(root)
    assert not report.ok and "index-0 is missing" in str(report.first_problem)
    rc, out, _ = _cli(capsys, "verify", str(root))
    assert rc == 1 and "index-0 is missing" in out
    rc, _, err = _cli(capsys, "export", str(root), "--schema", S, "--to", str(tmp_path / "x.parquet"))
    assert rc == 1 and "index-0 is missing" in err and not (tmp_path / "x.parquet").exists()
    # errors="skip": the other day is read, with a warning and ReadStats saying what was skipped
    stats = ReadStats()
    with pytest.warns(PychroWarning, match="index-0 is missing"):
        table = read_table(root, S, errors="skip", stats=stats)
    assert table.num_rows == 200 and len(stats.index_damage) == 1


@pytest.mark.parametrize("damage", ["lost index-0", "cut index"])
def test_the_source_does_not_skip_a_damaged_cycle(daily: Path, tmp_path: Path, damage: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber from the start never gets the next day's messages as if the damaged day had ended: the
    source drops it with the readers' error (a lost index-0 used to be served as an absent day)."""
    import logging

    root = _copy(daily, tmp_path / "j")
    index_0 = root / "20240304" / "index-0"
    if damage == "lost index-0":
        index_0.unlink()
        what = "index-0 is missing but data-.* holds committed messages"
    else:
        os.truncate(index_0, 8 * 200)  # a short copy filled to its end: entries after the 200th may be lost
        what = "index-0 is cut: 1600 of"
    caplog.set_level(logging.WARNING, logger="pychro.remote")
    got = []
    with pychro.serve(root, background=True) as server:
        with pytest.raises(pychro.RemoteError):
            with pychro.RemoteChronicleReader("127.0.0.1", server.port, "start", timeout=5, reconnect=False) as r:
                for excerpt in r:
                    got.append(excerpt.index)
    day1 = pychro.VanillaConfig().cycle_of(dt.date(2024, 3, 4))
    assert all(i >> 40 == day1 for i in got) and len(got) == (0 if damage == "lost index-0" else 200)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped and all(re.search(what, m) for m in dropped), dropped


def test_a_cycle_with_one_uncommitted_data_file_is_not_damage(tmp_path: Path) -> None:
    """A writer that created its data file and header but was stopped before creating index-0 (Java creates
    index-0 at the first commit): one header, no index - nothing was committed, nothing is lost."""
    root = tmp_path / "j"
    folder = root / "20240305"
    folder.mkdir(parents=True)
    (folder / "data-77-0").write_bytes((~8 & 0xFFFFFFFF).to_bytes(4, "little") + bytes(60))
    assert read_table(root, S).num_rows == 0
    assert verify_journal(root).ok


def test_a_cut_index_file_is_an_error_unless_errors_reads_the_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "j"
    _write(root, 300, config=SMALL, days=1)  # index-0 (128), index-1 (128), index-2 (44)
    os.truncate(root / "20240304" / "index-2", 8 * 20)  # a short copy: entries after the 20th lost
    what = "index-2 is cut: 160 of 1024 bytes"
    for name, call in _readers(root, SMALL).items():
        if name in ("open", "verify", "serve"):  # the source drops its clients instead
            continue
        with pytest.raises(CorruptDataError, match=what):
            call()
    rc, out, err = _tail(root, capsys, "--index-block-size", "1024")
    assert rc == 1 and out == "" and what in err
    rc, out, _ = _cli(capsys, "verify", str(root), "--index-block-size", "1024")
    assert rc == 1 and "index file is 160 bytes, expected 1024" in out
    for errors in ("skip", "truncate"):
        stats = ReadStats()
        with pytest.warns(PychroWarning, match=what):
            assert read_table(root, S, config=SMALL, errors=errors, stats=stats).num_rows == 276
        assert stats.index_damage and not stats.truncated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PychroWarning)
        rc, out, _ = _tail(root, capsys, "--index-block-size", "1024", "--errors", "skip")
    assert rc == 0 and len(out.splitlines()) == 6


# -- errors= wherever a schema is applied -------------------------------------------------------------------
@pytest.fixture
def mismatched(daily: Path, tmp_path: Path) -> Path:
    """The daily journal plus one message on 2024-03-05 that is only a long (no sym, no px)."""
    root = _copy(daily, tmp_path / "m")
    day = dt.datetime(2024, 3, 5, 23, tzinfo=dt.UTC)
    with pychro.VanillaChronicleWriter(root, clock=lambda: int(day.timestamp() * 1000)) as w:
        a = w.get_appender()
        a.write_long(int(day.timestamp() * 1000))
        a.finish()
    return root


def test_errors_option_on_every_export(mismatched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SchemaMismatchError, match="errors='skip' or 'truncate'"):
        to_parquet(mismatched, S, tmp_path / "a.parquet")
    for fn, ext in ((to_parquet, "parquet"), (to_ipc, "arrow"), (to_csv, "csv")):
        stats = ReadStats()
        assert fn(mismatched, S, tmp_path / f"s.{ext}", errors="skip", stats=stats) == 400
        assert stats.skipped_rows == 1
        assert fn(mismatched, S, tmp_path / f"t.{ext}", errors="truncate") == 400
    rc, _, err = _cli(capsys, "export", str(mismatched), "--schema", S, "--to", str(tmp_path / "c.parquet"))
    assert rc == 1 and "--errors skip or --errors truncate" in err and "errors='skip'" not in err
    rc, out, _ = _cli(capsys, "export", str(mismatched), "--schema", S, "--to", str(tmp_path / "c.parquet"),
                      "--errors", "skip", "--columns", "px,ts")
    assert rc == 0 and pq.read_table(tmp_path / "c.parquet").column_names == ["px", "ts"]
    rc, out, _ = _cli(capsys, "tail", str(mismatched), "--schema", S, "-n", "2", "--errors", "skip", "--columns", "px")
    # the last two messages, of which the mismatched one is dropped
    assert rc == 0 and out.split("\n")[0].split() == ["_index", "px"] and len(out.splitlines()) == 2
    rc, _, err = _cli(capsys, "head", str(mismatched), "--schema", S, "--columns", "nope")
    assert rc == 2 and "nope" in err


def test_errors_option_in_read_dask(mismatched: Path) -> None:
    pytest.importorskip("dask.dataframe")
    with pytest.raises(SchemaMismatchError):
        pychro.read_dask(mismatched, S).compute(scheduler="sync")
    assert len(pychro.read_dask(mismatched, S, errors="skip").compute(scheduler="sync")) == 400


@pytest.mark.parametrize("check", ["check_layout", "check_target"])
def test_a_first_cycle_folder_created_during_the_check_is_not_called_foreign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    """A writer creates the first cycle folder while a reader checks an empty journal (seen in the stress test
    as 'no cycle folder matches ... (found 20200301)'): the folder is listed, or its cycle is seen, never the
    one without the other."""
    root = tmp_path / "j"
    root.mkdir()
    journal = pychro.Journal(root)
    real = pychro.Journal.cycles
    calls = []

    def cycles_then_writer(self: pychro.Journal) -> list[int]:
        found = real(self)
        if not calls:  # the writer's mkdir lands right after the first look for cycles
            (root / "20200301").mkdir()
        calls.append(found)
        return found

    monkeypatch.setattr(pychro.Journal, "cycles", cycles_then_writer)
    getattr(journal, check)()  # an empty journal, or one with its first cycle: no error either way


def test_an_index_created_while_the_data_files_are_read_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live reader saw no index-0, then read data files that a writer filled meanwhile (it created index-0 and
    committed in between; seen in test_stress_frames): that is a young journal, not a lost index."""
    root = tmp_path / "j"
    with pychro.VanillaChronicleWriter(root, clock=lambda: 1_700_000_000_000) as w:
        a = w.get_appender()
        for i in range(2):
            a.write_int(i)
            a.finish()
    journal = pychro.Journal(root)
    (cycle,) = journal.cycles()
    index0 = Path(journal.index_path(cycle, 0))
    hidden = tmp_path / "index-0.later"
    index0.rename(hidden)  # the reader looks before the writer has created it
    real = pychro.Journal._unindexed_messages

    def writer_commits_meanwhile(self: pychro.Journal, c: int) -> str | None:
        found = real(self, c)
        hidden.rename(index0)
        return found

    monkeypatch.setattr(pychro.Journal, "_unindexed_messages", writer_commits_meanwhile)
    assert journal.index_damage(cycle, 0, 0, 0) is None
    monkeypatch.undo()
    index0.rename(hidden)  # and a really lost index-0 is still reported
    assert isinstance(journal.index_damage(cycle, 0, 0, 0), JournalNotFoundError)
