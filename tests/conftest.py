"""Shared fixtures: the Java-written journals of tests/data/java, unpacked once per session."""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
JAVA = DATA / "java"

try:
    from hypothesis import HealthCheck, settings

    # the test command is deterministic: the same examples every run (a property test that fails once in ten
    # runs is a flaky test); HYPOTHESIS_PROFILE=long explores new random examples each run
    settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass


def _unzip(name: str, dest: Path) -> Path:
    """Extract a fixture, writing the 64 MiB mostly-zero data files sparse (as Java leaves them)."""
    chunk = 1 << 20
    with zipfile.ZipFile(JAVA / name) as zf:
        for member in zf.infolist():
            target = dest / member.filename
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                while block := src.read(chunk):
                    if block.count(0) == len(block):
                        out.seek(len(block), os.SEEK_CUR)
                    else:
                        out.write(block)
                out.truncate(member.file_size)
    return dest


@pytest.fixture(scope="session")
def java_3_4_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Journal `PychroTestChron3.Small2day` (Chronicle 3.4.0, thread-id bits 16, two daily cycles)."""
    return _unzip("java-3.4.0-two-days.zip", tmp_path_factory.mktemp("java340")) / "PychroTestChron3.Small2day"


class Java366:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.manifest: dict[str, Any] = json.loads((root / "manifest.json").read_text())
        with gzip.open(root / "expected.jsonl.gz", "rt") as fh:
            self.expected: list[dict[str, Any]] = [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def java_3_6_6(tmp_path_factory: pytest.TempPathFactory) -> Java366:
    """Chronicle 3.6.6 journal: 3 writers x 1000 messages, with the Java reader's own dump (`expected`)."""
    return Java366(_unzip("java-3.6.6-3x1000.zip", tmp_path_factory.mktemp("java366")) / "java-3.6.6-3x1000")


class JavaFeed:
    """The multi-type feed: ``dump`` is the Java tailer's listing (index, len, body bytes) in index order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.manifest: dict[str, Any] = json.loads((root / "manifest.json").read_text())
        with gzip.open(root / "dump.jsonl.gz", "rt") as fh:
            self.dump: list[dict[str, Any]] = [json.loads(line) for line in fh]
        for d in self.dump:
            d["body"] = bytes.fromhex(d["hex"])


@pytest.fixture(scope="session")
def java_feed(tmp_path_factory: pytest.TempPathFactory) -> JavaFeed:
    """Chronicle 3.5.3 feed of trades, quotes, books (a repeated group) and heartbeats behind an int8 tag."""
    root = _unzip("java-3.5.3-feed-3x2000.zip", tmp_path_factory.mktemp("javafeed"))
    return JavaFeed(root / "java-3.5.3-feed-3x2000")
