"""Lint and type-check gate: ruff and mypy, with the configuration in pyproject.toml, must report nothing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)


def test_ruff() -> None:
    run = _run("ruff", "check", "--output-format=concise", "pychro", "tests", "benchmarks", "notebooks")
    assert run.returncode == 0, f"ruff check found problems:\n{run.stdout}{run.stderr}"


def test_mypy() -> None:
    run = _run("mypy")  # checks the pychro package ([tool.mypy] packages), using .mypy_cache when present
    assert run.returncode == 0, f"mypy found problems:\n{run.stdout}{run.stderr}"
