"""iter_remote_batches: a remote stream decoded into Arrow batches equals read_table of the same journal."""

from __future__ import annotations

import datetime as dt
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from helpers import FakeClock  # noqa: E402

from pychro import SchemaMismatchError, VanillaChronicleWriter  # noqa: E402
from pychro.frames import ReadStats, read_table  # noqa: E402
from pychro.remote import iter_remote_batches, serve  # noqa: E402
from pychro.remote.frames import locate_frames  # noqa: E402

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]

JAVA_366 = "w:int8,i:int32,l:int64,d:float64,s:string,c:char,a:stopbit,b:stopbit"
DAY1 = 0x40670000000000


def frame(index: int, body: bytes) -> bytes:
    return struct.pack("<iq", len(body), index) + body


def remote_table(port: int, schema: str, **kw: Any) -> Any:
    kw.setdefault("timeout", 0.3)
    batches = list(iter_remote_batches("127.0.0.1", port, schema, **kw))
    return batches, pa.Table.from_batches(batches) if batches else None


# -- locating frames in a buffer ------------------------------------------------------------------------
def test_locate_equal_sizes_stops_at_a_heartbeat() -> None:
    heartbeat = bytes.fromhex("80 ff ff ff 00 00 00 00 00 00 00 00")
    buf = bytearray(b"".join(frame(DAY1 + k, bytes([k]) * 5) for k in range(100)) + heartbeat + frame(DAY1 + 100, b"x"))
    starts, sizes, i0 = locate_frames(buf, 0, len(buf), 1000)
    assert i0 == DAY1
    assert starts.tolist() == [17 * k for k in range(100)]
    assert sizes.tolist() == [5] * 100
    starts, _, _ = locate_frames(buf, 0, len(buf), 10)  # max_rows respected
    assert starts.size == 10


def test_locate_variable_sizes_incomplete_tail_and_cycle_change() -> None:
    bodies = [b"a" * (k % 7) for k in range(50)]
    stream = b"".join(frame(DAY1 + k, b) for k, b in enumerate(bodies))
    stream += frame(DAY1 + (1 << 40), b"next cycle")  # a new cycle: indexes stop being consecutive
    buf = bytearray(b"pad" + stream)
    starts, sizes, i0 = locate_frames(buf, 3, len(buf), 1000)
    expect, pos = [], 0
    for b in bodies:
        expect.append(pos)
        pos += 12 + len(b)
    assert (starts.tolist(), sizes.tolist(), i0) == (expect, [len(b) for b in bodies], DAY1)
    # the last frame cut short: not taken
    assert len(bodies[48]) == 6
    starts, _, _ = locate_frames(buf, 3, 3 + expect[48] + 12 + 2, 1000)
    assert starts.size == 48


def test_locate_never_takes_a_header_lookalike_inside_a_body() -> None:
    """Bodies that contain the bytes of a later frame's index end the batch early; frames are never wrong."""
    fake = struct.pack("<iq", 3, DAY1 + 2)  # looks like the header of frame 2, inside frame 1's body
    bodies = [b"zz", b"q" + fake + b"q", b"abc", b"d" * 9, b"", b"end"]
    stream = bytearray(b"".join(frame(DAY1 + k, b) for k, b in enumerate(bodies)))
    pos, k_done = 0, 0
    while k_done < len(bodies):
        starts, sizes, i0 = locate_frames(stream, pos, len(stream), 1000)
        assert i0 == DAY1 + k_done
        for s, n in zip(starts.tolist(), sizes.tolist()):
            assert bytes(stream[pos + s + 12 : pos + s + 12 + n]) == bodies[k_done]
            k_done += 1
        pos += int(starts[-1] + 12 + sizes[-1])
    assert pos == len(stream)


# -- against the source ---------------------------------------------------------------------------------
def test_fixed_schema_equals_read_table(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal) as w:
        a = w.get_appender()
        for i in range(50_000):
            a.write_int(i)
            a.write_double(i / 4)
            a.write_byte(i % 100)
            a.finish()
    schema = "i:int32,d:float64,b:int8"
    local = read_table(journal, schema, index=True)
    with serve(journal, background=True) as server:
        batches, table = remote_table(server.port, schema, index=True, batch_rows=7000)
        assert table.equals(local)
        assert max(b.num_rows for b in batches) <= 7000
        _, proj = remote_table(server.port, schema, columns=["d"], metadata=["seq", "cycle"])
        assert proj.column_names == ["_cycle", "_seq", "d"]
        assert proj.column("d").equals(local.column("d"))
        assert proj.column("_seq").to_pylist() == list(range(50_000))
        _, tail = remote_table(server.port, schema, where=local.column("_index")[49_990].as_py(), index=True)
        assert tail.equals(local.slice(49_990))


def test_java_366_strings_and_stop_bits_equal_read_table(java_3_6_6: Any) -> None:
    local = read_table(java_3_6_6.journal, JAVA_366, index=True)
    stats = ReadStats()
    with serve(java_3_6_6.journal, background=True) as server:
        _, table = remote_table(server.port, JAVA_366, index=True, stats=stats, batch_rows=1000)
    assert table.equals(local)
    assert stats.rows == 3000 and stats.slow_path_strings == 300  # the non-BMP strings, as locally
    assert table.column("s").to_pylist()[:4] == [row["s"] for row in java_3_6_6.expected[:4]]


def test_two_cycles_never_share_a_batch(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    for day in (1, 2):
        with VanillaChronicleWriter(journal, clock=FakeClock(dt.datetime(2021, 5, day, 8))) as w:
            a = w.get_appender()
            for i in range(1000):
                a.write_int(i * day)
                a.finish()
    local = read_table(journal, "v:int32", metadata=["cycle", "seq"])
    with serve(journal, background=True) as server:
        batches, table = remote_table(server.port, "v:int32", metadata=["cycle", "seq"])
    assert table.equals(local)
    assert all(len(set(b.column("_cycle").to_pylist())) == 1 for b in batches)
    assert len({b.column("_cycle")[0].as_py() for b in batches}) == 2


def test_schema_mismatch_raise_and_skip(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    with VanillaChronicleWriter(journal) as w:
        a = w.get_appender()
        for i in range(100):
            a.write_int(i)
            if i == 40:
                a.write_int(0)  # one message too long for the schema
            a.finish()
    with serve(journal, background=True) as server:
        with pytest.raises(SchemaMismatchError):
            remote_table(server.port, "i:int32")
        stats = ReadStats()
        _, table = remote_table(server.port, "i:int32", errors="skip", index=True, stats=stats)
        assert table.column("i").to_pylist() == [i for i in range(100) if i != 40]
        assert stats.skipped_rows == 1
        assert stats.first_bad_index == table.column("_index")[0].as_py() + 40
        _, table = remote_table(server.port, "i:int32", errors="truncate")
        assert table.column("i").to_pylist() == list(range(40))


def test_follow_receives_live_appends(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    journal.mkdir()
    with serve(journal, background=True) as server:
        stream = iter_remote_batches("127.0.0.1", server.port, "i:int32", where="start", follow=True)
        got: list[int] = []
        done = threading.Event()

        def consume() -> None:
            for batch in stream:
                got.extend(batch.column("i").to_pylist())
                if len(got) >= 3000:
                    break
            done.set()

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        with VanillaChronicleWriter(journal) as w:
            a = w.get_appender()
            for i in range(3000):
                a.write_int(i)
                a.finish()
        assert done.wait(30)
        t.join(5)
        stream.close()
    assert got[:3000] == list(range(3000))
    assert np.all(np.diff(got) == 1)


def test_java_feed_by_message_type_equals_read_tables(java_feed: Any) -> None:
    """A multi-type Java feed served over TCP: (type, batch) pairs whose tables equal read_tables'."""
    from frames.test_types import FEED

    import pychro

    local = pychro.read_tables(java_feed.journal, FEED, index=True)
    stats = ReadStats()
    with serve(java_feed.journal, background=True) as server:
        pairs = list(iter_remote_batches("127.0.0.1", server.port, FEED, index=True, timeout=0.3, stats=stats,
                                         batch_rows=700))
    for name in FEED.names:
        got = pa.Table.from_batches([b for n, b in pairs if n == name], schema=local[name].schema)
        assert got.equals(local[name]), name
    assert stats.rows == 6000 and stats.unknown_rows == 0
    two = pychro.MessageTypes("ts:timestamp_ns,type:int8", "type", {4: ("heartbeat", "")})
    with serve(java_feed.journal, background=True) as server:
        beats = list(iter_remote_batches("127.0.0.1", server.port, two, unknown="skip", timeout=0.3, stats=stats))
        assert sum(b.num_rows for _, b in beats) == 600
        with pytest.raises(SchemaMismatchError, match="names no message type"):
            list(iter_remote_batches("127.0.0.1", server.port, two, timeout=0.3))
