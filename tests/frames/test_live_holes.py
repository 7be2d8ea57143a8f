"""Issue #12 item 7: an empty index slot below filled ones, on a live journal, is looked at again before it is
called damage (a writer can fill slots k and k+1 between two loads of the reader)."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import write_bodies

import pychro
from pychro import CorruptDataError, Journal, MessageTypes, VanillaChronicleWriter, write_frame
from pychro.frames import _decode as C
from pychro.frames import batch, scan
from pychro.frames import typed as typed_mod

DAY = dt.datetime(2024, 5, 1, 9, tzinfo=dt.UTC)


def _journal(tmp_path: Path, n: int) -> tuple[Journal, int]:
    with VanillaChronicleWriter(tmp_path, clock=lambda: int(DAY.timestamp() * 1000)) as w:
        app = w.get_appender()
        for k in range(n):
            app.write_long(k)
            app.finish()
    journal = Journal(tmp_path)
    return journal, journal.cycles()[0]


def _set_slot(journal: Journal, cycle: int, seq: int, value: int) -> int:
    with open(journal.index_path(cycle, 0), "r+b") as f:
        f.seek(seq * 8)
        old = int.from_bytes(f.read(8), "little")
        f.seek(seq * 8)
        f.write(value.to_bytes(8, "little"))
    return old


def test_a_slot_filled_between_two_loads_is_read_not_called_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, cycle = _journal(tmp_path, 50)
    files = scan.CycleFiles(journal, cycle)
    count = files.count()
    # The reader's first load sees slot 20 empty and 21.. filled (as when a writer fills 20 and 21 between
    # its loads); the writer's store to slot 20 lands while the reader pauses before looking again.
    entry = _set_slot(journal, cycle, 20, 0)
    pauses: list[float] = []

    def writer_fills(seconds: float) -> None:
        pauses.append(seconds)
        _set_slot(journal, cycle, 20, entry)

    monkeypatch.setattr(scan, "_pause", writer_fills)
    got = [e for _, batch in files.entries(0, count, 1000) for e in batch.tolist()]
    assert len(got) == 50 and all(got) and got[20] == entry
    assert len(pauses) == 1


def test_a_slot_that_stays_empty_is_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, cycle = _journal(tmp_path, 50)
    files = scan.CycleFiles(journal, cycle)
    files.hole_wait = 0.05  # a follower waits a bounded time, then reports it
    count = files.count()
    _set_slot(journal, cycle, 20, 0)
    seen: list[int] = []
    with pytest.raises(CorruptDataError, match="slot is empty") as err:
        for seq0, batch in files.entries(0, count, 1000):
            seen.extend(range(seq0, seq0 + len(batch)))
    assert seen == list(range(20))  # the messages before the hole come first
    assert err.value.context["seq"] == 20


@pytest.mark.parametrize("offset", [0, 2, 1 << 40])
def test_an_entry_changed_after_the_decoder_read_it_is_a_corrupt_data_error(tmp_path: Path, offset: int) -> None:
    """Filled index slots are a view of the index file: another process may change one between the decoder's read
    and the error path's. The error path read the header before the body at the new offset: at an offset below
    the header size, or past the file, that was a bare IndexError (~7% of reads against a process flipping a slot
    between two bad entries, found by a helper). Now a CorruptDataError, whichever reason the decoder gave."""
    write_frame({"k": np.arange(10, dtype=np.int64)}, tmp_path / "j", "k:int64", date=dt.date(2024, 1, 2))
    journal = Journal(tmp_path / "j")
    (cycle,) = journal.cycles()
    files = scan.CycleFiles(journal, cycle)
    entries, _ = files.load(0, 10)
    key = int(entries[0]) >> files.codec.data_bits
    where = "before the first header" if offset < 4 else "outside the data file"  # (no room for a header there)
    for why in (C.H_ZERO, C.H_HUGE, C.H_PAST, C.H_OUTSIDE):
        with pytest.raises(CorruptDataError, match=where):
            batch._raise_corrupt(files, key, offset, why, 0)


def _bodies_with_a_bad_row(typed: bool) -> list[bytes]:
    """40 messages k:int64,s:string (after a type byte 1 when typed); message 5 one byte too long."""
    head = b"\x01" if typed else b""
    return [head + struct.pack("<q", k) + bytes([1]) + b"x" + (b"\x07" if k == 5 else b"") for k in range(40)]


@pytest.mark.parametrize("typed", [False, True])
def test_an_error_names_what_a_copy_of_the_entries_holds(tmp_path: Path, monkeypatch: Any, typed: bool) -> None:
    """Before an error names a message, the batch is decoded again from a copy of its entries (they may be a view
    of the index file): the error path read a slot again that another process had changed since, and the typed
    read then failed an internal assertion ("a mismatching row decoded cleanly", ~6% of reads against a slot
    flipper, found by a helper). Here the flip is made by hand after the first decode: slot 5 now names message 4."""
    write_bodies(tmp_path / "j", _bodies_with_a_bad_row(typed), 1_704_186_000_000)
    types = MessageTypes(header="t:int8", tag="t", types={1: ("a", "k:int64,s:string")})
    flipped: list[int] = []
    real = batch.run_batch

    def flip(run: Any, files: Any, seq0: int, entries: Any, *args: Any, **kw: Any) -> None:
        real(run, files, seq0, entries, *args, **kw)
        if not flipped and entries.size == 40:
            flipped.append(1)
            entries.flags.writeable = True  # (a copy from the test's load below: the index file is untouched)
            entries[5] = entries[4]

    monkeypatch.setattr(batch, "run_batch", flip)
    monkeypatch.setattr(typed_mod, "run_batch", flip)
    real_load = scan.CycleFiles.load
    monkeypatch.setattr(scan.CycleFiles, "load", lambda self, seq, n: (np.array(real_load(self, seq, n)[0]), None))
    if typed:
        got = pychro.read_tables(tmp_path / "j", types, threads=1)["a"]
    else:
        got = pychro.read_table(tmp_path / "j", "k:int64,s:string", threads=1)
    assert flipped
    assert got.column("k").to_pylist() == [4 if k == 5 else k for k in range(40)]


def test_a_message_whose_bytes_change_while_it_is_read_is_a_corrupt_data_error(tmp_path: Path,
                                                                                monkeypatch: Any) -> None:
    """A typed read names a mismatch by decoding its message once more; if that now decodes cleanly (another process
    rewrote the body in between), that was a bare AssertionError. The second decode is stood in for here."""
    write_bodies(tmp_path / "j", _bodies_with_a_bad_row(True), 1_704_186_000_000)
    types = MessageTypes(header="t:int8", tag="t", types={1: ("a", "k:int64,s:string")})
    monkeypatch.setattr(typed_mod, "decode_batch", lambda *args, **kw: None)
    with pytest.raises(CorruptDataError, match="changed while it was read"):
        pychro.read_tables(tmp_path / "j", types)
