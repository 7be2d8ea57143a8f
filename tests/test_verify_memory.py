"""verify's memory is bounded by its batch size, not by the cycle's message count (issue 12, item 8).

Peak memory is measured in a child process as its ``VmHWM`` (the high-water mark of the child's own image).
``ru_maxrss`` is not used: Linux carries the pre-exec high-water mark across ``exec``, and subprocess starts
children with vfork, so a child's ``ru_maxrss`` starts at the parent's (here: the test that built a large
journal) resident size.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reliability_helpers import REPO, build_two_writer_journal, report_line, small_config

import pychro
import pychro.verify as V
from pychro.verify import verify_journal

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc"),
]

VERIFY_PEAK = r"""
import json, sys
from pychro.verify import verify_journal
report = verify_journal(sys.argv[1])
status = open("/proc/self/status").read()
peak_kib = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"ok": report.ok, "valid": sum(c.valid for c in report.cycles), "peak_kib": peak_kib}))
"""


def _build(path: Path, n: int) -> None:
    """One cycle of ``n`` 4-byte messages, written in runs of 5 M rows."""
    for lo in range(0, n, 5_000_000):
        rows = np.arange(lo, min(n, lo + 5_000_000), dtype=np.int32)
        pychro.write_frame({"x": rows}, path, [("x", "int32")], date=dt.date(2024, 1, 2))


def _verify_peak(path: Path, n: int) -> int:
    run = subprocess.run([sys.executable, "-c", VERIFY_PEAK, str(path)], capture_output=True, text=True,
                         timeout=240, cwd=REPO, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["ok"] and out["valid"] == n
    return int(out["peak_kib"])


def _compare(tmp_path: Path, small: int, large: int) -> tuple[int, int]:
    peaks = []
    for n in (small, large):
        path = tmp_path / f"j{n}"
        _build(path, n)
        peaks.append(_verify_peak(path, n))
        shutil.rmtree(path)
    return peaks[0], peaks[1]


def test_verify_memory_does_not_grow_with_the_cycle(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Before batching, verify kept ~90 bytes per message: 2 M messages took ~330 MB against ~80 MB for 200 k.
    small, large = _compare(tmp_path, 200_000, 2_000_000)
    report_line(request, f"[verify memory] peak 200 k messages {small / 1024:.0f} MiB, 2 M {large / 1024:.0f} MiB")
    assert large <= 1.5 * small, (small, large)


@pytest.mark.slow
def test_verify_memory_20m_vs_2m(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # the bar of issue 12: 20 M messages (320 MB of journal) within 1.5x of 2 M
    small, large = _compare(tmp_path, 2_000_000, 20_000_000)
    report_line(request, f"[verify memory] peak 2 M messages {small / 1024:.0f} MiB, 20 M {large / 1024:.0f} MiB")
    assert large <= 1.5 * small, (small, large)


# -- batches change nothing in the report ------------------------------------------------------------------------
def _damage(root: Path) -> None:
    """Several kinds of damage in one cycle, spread over the batches of a tiny batch size."""
    cfg = small_config()
    day = root / "20200301"
    index0 = day / "index-0"
    slots = np.fromfile(index0, dtype="<u8")
    data_mask = (1 << 12) - 1
    first = slots[3]
    slots[5] = first  # overlaps an earlier message of its file
    slots[9] = (int(slots[9]) & ~data_mask) | 4092  # past the end of its data file (offset near the block end)
    slots.tofile(index0)
    # a zeroed header behind a filled slot, in the second index file
    slots1 = np.fromfile(day / "index-1", dtype="<u8")
    entry = int(slots1[4])
    tid, file_no, offset = entry >> 48, (entry >> 12) & 0xFFFFFFFFF, entry & data_mask
    data = day / f"data-{tid}-{file_no}"
    raw = bytearray(data.read_bytes())
    raw[offset - 4 : offset] = bytes(4)
    data.write_bytes(bytes(raw))
    assert cfg.index_block_size == 256


def test_batch_size_does_not_change_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_two_writer_journal(tmp_path)
    _damage(tmp_path)
    cfg = small_config()
    whole = verify_journal(tmp_path, config=cfg)
    assert not whole.ok and len(whole.cycles[0].problems) >= 3
    for batch in (1, 2, 3, 7, 31):
        monkeypatch.setattr(V, "BATCH_ROWS", batch)
        split = verify_journal(tmp_path, config=cfg)
        assert _facts(split) == _facts(whole), batch


def _facts(report: Any) -> list[Any]:
    return [(c.cycle, c.messages, c.valid, [str(p) for p in c.problems]) for c in report.cycles]
