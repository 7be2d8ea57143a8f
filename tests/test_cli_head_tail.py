"""head/tail: -n is how many rows are shown (not a batch size), work is bounded, and --errors skip/truncate
say what they left out (a result with every row left out is an error, not an empty table)."""

from __future__ import annotations

import time
from pathlib import Path

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
