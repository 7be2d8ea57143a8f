"""head/tail: -n is how many rows are shown (not a batch size), work is bounded, and --errors skip/truncate
say what they left out (a result with every row left out is an error, not an empty table)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pychro
from pychro.cli import main

T0 = 1_709_629_200_000
S = "v:int64"


def _journal(path: Path, n: int) -> Path:
    pychro.write_frame({"v": list(range(n))}, path, S, clock=lambda: T0)
    return path


def test_skip_and_truncate_say_what_they_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    j = _journal(tmp_path / "j", 1000)
    wrong = "v:int64,extra:int64"  # matches no message
    for cmd in ("head", "tail"):
        assert main([cmd, str(j), "--schema", wrong, "--errors", "skip"]) == 1
        err = capsys.readouterr().err
        assert "do not match the schema" in err and "no row to show" in err
    assert main(["head", str(j), "--schema", wrong, "--errors", "skip"]) == 1
    assert "skipped 1,000 messages" in capsys.readouterr().err
    assert main(["head", str(j), "--schema", wrong, "--errors", "truncate"]) == 1
    assert "stopped at index 0x" in capsys.readouterr().err
    assert main(["export", str(j), "--schema", wrong, "--errors", "skip", "--to", str(tmp_path / "x.parquet")]) == 1
    err = capsys.readouterr().err
    assert "skipped 1,000 messages" in err and "no row" in err
    # rows that match: exit 0, nothing said
    assert main(["head", str(j), "--schema", S, "--errors", "skip", "-n", "3"]) == 0
    assert capsys.readouterr().err == ""


def test_head_counts_only_what_it_passed_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    j = tmp_path / "j"
    with pychro.VanillaChronicleWriter(j, clock=lambda: T0) as w:
        a = w.get_appender()
        for i in range(200):
            a.write_long(i)
            if i % 2:
                a.write_int(0)  # every odd message is longer than the schema
            a.finish()
    assert main(["head", str(j), "--schema", S, "--errors", "skip", "-n", "3"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["0", "2", "4"]
    assert "skipped 2 messages" in err


def test_head_n_small_is_bounded_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-n 2 used to decode in batches of 2 messages: 110 s on 1 M messages."""
    j = _journal(tmp_path / "j", 300_000)
    t = time.monotonic()
    assert main(["head", str(j), "--schema", "v:int64,extra:int64", "-n", "2", "--errors", "skip"]) == 1
    assert time.monotonic() - t < 20
    assert "skipped 300,000 messages" in capsys.readouterr().err


def test_an_index_field_name_is_refused_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    j = _journal(tmp_path / "j", 3)
    assert main(["head", str(j), "--schema", "_index:int64"]) == 2
    err = capsys.readouterr().err
    assert "--schema names a field '_index'" in err and "another name" in err


def _follow(cmd: str, journal: Path, out: Any, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pychro", cmd, "-f", str(journal), "--schema", S, "-n", str(n),
                             "--no-progress"], stdout=out, stderr=subprocess.DEVNULL)


def _wait_lines(out: Path, want: int, seconds: float = 30) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines()
        if len(lines) >= want:
            return lines
        time.sleep(0.1)
    return out.read_text().splitlines()


@pytest.mark.parametrize("cmd", ["tail", "head"])
def test_follow_n_is_the_rows_shown_first_not_a_batch_size(tmp_path: Path, cmd: str) -> None:
    """tail -f -n 1 decoded one message per batch and fell behind a live journal; head -f -n 2 printed the
    whole journal 2 rows at a time. -n is how many existing rows are shown, then every new message is."""
    j = _journal(tmp_path / "j", 5_000)
    out = tmp_path / "out.txt"
    first = [0, 1] if cmd == "head" else [4_999]
    with out.open("wb") as sink:
        child = _follow(cmd, j, sink, len(first))
        try:
            assert len(_wait_lines(out, 1 + len(first))) == 1 + len(first)  # header + the first rows only
            time.sleep(0.5)
            assert len(out.read_text().splitlines()) == 1 + len(first)
            pychro.write_frame({"v": list(range(100_000, 120_000))}, j, S, clock=lambda: T0)
            lines = _wait_lines(out, 1 + len(first) + 20_000, seconds=8)  # the old 1-row batches: ~20 s
            values = [int(line.split()[1]) for line in lines[1:]]
            assert values == [*first, *range(100_000, 120_000)]
        finally:
            child.kill()
            child.wait(timeout=30)
