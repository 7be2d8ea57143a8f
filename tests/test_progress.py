"""Progress bars: shown when asked (or for long work on a terminal), silent for small work and when disabled."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

import pychro
from pychro import _progress

pytest.importorskip("tqdm")
SCHEMA = "a:int64,b:float64"


@pytest.fixture()
def journal(tmp_path: Path) -> Path:
    n = 50_000
    pychro.write_frame({"a": np.arange(n), "b": np.arange(n) / 2}, tmp_path / "j", SCHEMA, date=dt.date(2024, 1, 1))
    return tmp_path / "j"


def run_all(journal: Path, out: Path, progress: bool | None) -> None:
    pychro.read_table(journal, SCHEMA, progress=progress)
    pychro.to_parquet(journal, SCHEMA, out / "x.parquet", progress=progress)
    pychro.write_frame({"a": np.arange(10), "b": np.zeros(10)}, out / "k", SCHEMA, date=dt.date(2024, 1, 1),
                       progress=progress)


def test_bars_when_asked(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_all(journal, tmp_path, True)
    err = capsys.readouterr().err
    assert "read" in err and "export" in err and "rows" in err


def test_silent_for_small_work_and_when_disabled(
    journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_progress, "interactive", lambda: True)  # as on a terminal
    run_all(journal, tmp_path / "auto", None)  # 50k rows: far below the thresholds
    run_all(journal, tmp_path / "off", False)
    assert capsys.readouterr().err == ""


def test_automatic_bar_for_long_work_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "interactive", lambda: True)
    bar = _progress.progress_bar(10_000_000, "rows", None, big=5_000_000)
    assert bar is not None
    bar.close()
    monkeypatch.setattr(_progress, "interactive", lambda: False)
    assert _progress.progress_bar(10_000_000, "rows", None, big=5_000_000) is None  # not a terminal: silent
