"""The null count of each string column (counted from its validity bitmap once a call is done, not row by row)
against what was written: nulls at random beside bad messages (skipped, or stopping a truncated read), text
buffers that fill mid-batch (a call resumed at the row it stopped) and every batch size and thread count. Arrow
trusts the count it is given: one too few or too many is an array whose nulls disagree with its bitmap, and a
count of 0 drops the bitmap (nulls read as "")."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from helpers import write_bodies

import pychro
from pychro._fields import encode_stop_bit, encode_text

SCHEMA = "ts:int64,s:string,x:int32,t:string"
T0 = 1_709_596_800_000_000_000


def _text(value: str | None) -> bytes:
    return encode_stop_bit(-1) if value is None else encode_stop_bit(len(encode_text(value))) + encode_text(value)


def _journal(seed: int, n: int, nulls: float, bad: float) -> tuple[list[bytes], list[dict[str, Any] | None]]:
    """n bodies and the row each holds (None: a message one byte too long, which does not match)."""
    rng = np.random.default_rng(seed)
    bodies, rows = [], []
    for k in range(n):
        s, t = (None if rng.random() < nulls else w for w in
                (["AAPL", "Nestl\u00e9", "", "L" * int(rng.integers(100, 400))][int(rng.integers(0, 4))],
                 ["X", "DAX\U0001F680"][k % 2]))
        body = struct.pack("<q", T0 + k) + _text(s) + struct.pack("<i", k) + _text(t)
        if rng.random() < bad:
            bodies.append(body + b"\0")
            rows.append(None)
        else:
            bodies.append(body)
            rows.append({"ts": T0 + k, "s": s, "x": k, "t": t})
    return bodies, rows


@pytest.mark.parametrize("seed,nulls,bad", [(1, 0.3, 0.0), (2, 0.5, 0.0), (3, 0.97, 0.0), (4, 0.3, 0.002),
                                            (5, 0.5, 0.02)])
def test_null_counts_equal_the_nulls_written(tmp_path: Path, seed: int, nulls: float, bad: float) -> None:
    """(The count is the decoder's in a batch without bad rows; Arrow counts again after a filter or a cut.)"""
    bodies, rows = _journal(seed, 3000, nulls, bad)
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    first_bad = next((k for k, r in enumerate(rows) if r is None), len(rows))
    for errors in ("skip", "truncate"):
        want = [r for r in (rows if errors == "skip" else rows[:first_bad]) if r is not None]
        for batch_rows, threads in ((None, 2), (1, 1), (63, 1), (64, 3), (1000, 2)):
            kw: dict[str, Any] = {"errors": errors, "threads": threads}
            if batch_rows:
                kw["batch_rows"] = batch_rows
            table = pychro.read_table(path, SCHEMA, **kw)
            label = f"errors={errors} batch_rows={batch_rows} threads={threads}"
            table.validate(full=True)
            assert table.to_pylist() == want, label
            for name in ("s", "t"):
                column = table.column(name)
                assert column.null_count == sum(r[name] is None for r in want), f"{label}: {name}"
            # the same counts batch by batch (a batch is one decoder call or several, resumed)
            for batch in pychro.iter_batches(path, SCHEMA, **kw):
                batch.validate(full=True)


def test_a_column_of_nulls_only_and_of_none(tmp_path: Path) -> None:
    bodies = [struct.pack("<q", k) + _text(None) + struct.pack("<i", k) + _text("a" if k % 2 else "")
              for k in range(500)]
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    table = pychro.read_table(path, SCHEMA)
    table.validate(full=True)
    assert table.column("s").null_count == 500 and table.column("t").null_count == 0
    assert table.column("s").to_pylist() == [None] * 500
    assert pa.compute.count(table.column("t"), mode="only_valid").as_py() == 500
