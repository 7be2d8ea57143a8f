"""pychro.open(): the journal object, its plain repr and its notebook display."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

import pychro


def test_repr_html_of_java_journal(java_3_4_0: Path) -> None:
    journal = pychro.open(java_3_4_0)
    html = journal._repr_html_()
    for text in ("20150221", "20150222", "16487", "16488", "thread-id bits 16 (detected)", "0x40670000000000",
                 "0x40670000000009", "0x40680000000009", "<table", "20 messages", "2 cycles"):
        assert text in html, text
    assert html.count("<tr>") == 3  # header + one row per cycle
    # data files and bytes on disk per cycle (3 data files each)
    assert "<td style='text-align:right'>3</td>" in html and "MiB" in html


def test_plain_repr_and_cycle(java_3_6_6) -> None:
    journal = pychro.open(java_3_6_6.journal)
    assert "cycles=1" in repr(journal) and "thread_id_bits=16" in repr(journal)
    cycle = journal.cycle(dt.date(2026, 11, 28))
    assert repr(cycle) == "<pychro.Cycle 20261128 cycle=20785 messages=3000>"
    html = cycle._repr_html_()
    assert "3,000 messages" in html and "3 data files" in html and "20261128" in html
    entries = cycle.index_array()
    assert entries.dtype == np.dtype("<u8") and len(entries) == 3000
    assert int(entries[0] >> np.uint64(48)) in java_3_6_6.manifest["writer_tids"]


def test_empty_and_missing_cycle(tmp_path: Path) -> None:
    journal = pychro.open(tmp_path)
    assert "0 cycles" in journal._repr_html_()
    assert "0 messages" in journal.cycle(dt.date(2024, 1, 1))._repr_html_()
