"""Ctrl-C on the long-running commands exits 130 with one line on stderr and no traceback (issue 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pychro

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "ts:timestamp_ms,px:float64"


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "j"
    with pychro.VanillaChronicleWriter(path) as chron:
        appender = chron.get_appender()
        for i in range(3):
            appender.write_long(1_709_510_400_000 + i)
            appender.write_double(i / 2)
            appender.finish()
    return path


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by a test; killed at the end whatever happened."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


def _start(children: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "pychro", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a child of a non-interactive shell may inherit SIGINT ignored; Ctrl-C reaches a terminal's processes
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    children.append(child)
    return child


def _wait_for_output(child: subprocess.Popen[str], stream: str, timeout: float = 30) -> str:
    """The first line the child prints on ``stream``: it is running (and has its SIGINT handler)."""
    line = getattr(child, stream).readline()
    assert line, f"child ended early, rc={child.wait(timeout=timeout)}"
    return str(line)


def _interrupt(child: subprocess.Popen[str], settle: float = 0.3) -> tuple[int, str]:
    time.sleep(settle)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=20)
    return child.returncode, err


def _check(rc: int, err: str, command: str) -> None:
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == f"pychro {command}: interrupted", err
    assert len([line for line in err.splitlines() if "interrupted" in line]) == 1


def _rows(path: Path) -> int:
    try:
        return len(pychro.read_frame(path, SCHEMA))
    except pychro.PychroError:  # not created yet, or no cycle folder yet
        return 0


def test_tail_follow(journal: Path, spawn: list[subprocess.Popen[str]]) -> None:
    child = _start(spawn, "tail", "-f", str(journal), "--schema", SCHEMA, "-n", "1")
    _wait_for_output(child, "stdout")
    _check(*_interrupt(child), "tail")


def test_serve(journal: Path, spawn: list[subprocess.Popen[str]]) -> None:
    child = _start(spawn, "serve", str(journal), "--port", "0")
    assert "serving" in _wait_for_output(child, "stdout")
    _check(*_interrupt(child), "serve")


def test_replicate(journal: Path, tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    server = _start(spawn, "serve", str(journal), "--port", "0")
    port = _wait_for_output(server, "stdout").split(":")[1].split()[0]
    child = _start(spawn, "replicate", f"127.0.0.1:{port}", str(tmp_path / "replica"))
    deadline = time.monotonic() + 30
    while _rows(tmp_path / "replica") < 3:
        assert time.monotonic() < deadline and child.poll() is None, "replica never caught up"
        time.sleep(0.05)
    _check(*_interrupt(child), "replicate")


def test_export(tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    big = tmp_path / "big"
    n = 2_000_000  # long enough to be interrupted midway on a slow machine
    pychro.write_frame({"ts": [1_709_510_400_000] * n, "px": [0.5] * n}, big, SCHEMA)
    out = tmp_path / "out.csv"
    child = _start(spawn, "export", str(big), "--schema", SCHEMA, "--to", str(out))
    partial = out.with_name(out.name + ".partial")
    deadline = time.monotonic() + 60
    while not partial.exists():  # pandas and pyarrow imported, the journal opened: now it writes rows
        assert child.poll() is None and time.monotonic() < deadline, "export never started writing"
        time.sleep(0.005)
    _check(*_interrupt(child, settle=0.05), "export")
    assert not partial.exists() and not out.exists()  # no half-written file left under either name
