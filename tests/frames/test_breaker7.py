"""Found by breaker7 (hostile tests of the one-pass decoder of message types, _decode.decode_typed)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from helpers import write_bodies

import pychro
from pychro._fields import encode_stop_bit
from pychro.frames import ReadStats

T0_MS = 1_709_596_800_000


@pytest.mark.parametrize("header,tag_bytes", [
    ("type:int8,n:stopbit", lambda v: struct.pack("<b", v)),
    ("type:uint32,n:stopbit", lambda v: struct.pack("<I", v)),
    ("ts:int64,type:stopbit,n:stopbit", lambda v: struct.pack("<q", 0) + encode_stop_bit(v)),
    ("type:int16,venue:string,n:stopbit", lambda v: struct.pack("<h", v) + encode_stop_bit(-1)),
])
def test_a_stop_bit_header_field_after_the_tag_does_not_replace_it(tmp_path: Path, header: str, tag_bytes) -> None:
    """The header walk of type_of() took every stop-bit field's value as the tag, so that a stop-bit field after
    the tag picked the type: messages went to the wrong type or were called unknown."""
    types = pychro.MessageTypes(header, "type", {1: ("a", "x:int32"), 2: ("b", "y:int32")})
    bodies, want = [], {"a": [], "b": []}
    for k in range(600):  # several chunks of 256
        tag = 1 + k % 2
        n = [2, 1, 0, 7, -1][k % 5]  # the other tag, the same one, and values that name no type
        bodies.append(tag_bytes(tag) + encode_stop_bit(n) + struct.pack("<i", k))
        want["ab"[tag - 1]].append(k)
    path = write_bodies(tmp_path / "j", bodies, T0_MS)
    stats = ReadStats()
    got = pychro.read_tables(path, types, stats=stats)
    assert got["a"].column("x").to_pylist() == want["a"]
    assert got["b"].column("y").to_pylist() == want["b"]
    assert stats.unknown_rows == 0 and stats.skipped_rows == 0


def test_the_tables_of_several_types_hold_their_own_rows_not_the_batchs(tmp_path: Path) -> None:
    """Each type's output buffers are sized for every row of the batch; the arrays over them held them whole, so
    that read_tables of k types kept k times the memory of their data (16 types: 16x)."""
    import numpy as np
    import pyarrow as pa

    n_types, n = 16, 200_000
    types = pychro.MessageTypes("ts:timestamp_ns,type:int16", "type",
                                {v: (f"t{v}", "a:int64,f:bool,s:string") for v in range(n_types)})
    kind = np.arange(n) % n_types
    ts = 1_709_596_800_000_000_000 + np.arange(n)
    frames = {}
    for v in range(n_types):
        sel = kind == v
        m = int(sel.sum())
        frames[f"t{v}"] = pa.table({"ts": pa.array(ts[sel], pa.timestamp("ns", tz="UTC")), "a": np.arange(m),
                                    "f": np.arange(m) % 3 == 0, "s": [str(i) for i in range(m)]})
    pychro.write_frames(frames, tmp_path / "j", types, date="2024-03-05")
    before = pa.total_allocated_bytes()
    got = pychro.read_tables(tmp_path / "j", types)
    held = pa.total_allocated_bytes() - before
    data = sum(t.nbytes for t in got.values())
    assert held < 1.5 * data, (held, data)
    for v in range(n_types):
        m = n // n_types
        assert got[f"t{v}"].column("a").to_pylist() == list(range(m))
        assert got[f"t{v}"].column("f").to_pylist() == [i % 3 == 0 for i in range(m)]
        assert got[f"t{v}"].column("s").to_pylist() == [str(i) for i in range(m)]
