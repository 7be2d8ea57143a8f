"""read_table equals the row API, field by field, on journals the row writer wrote (hypothesis).

Schemas and rows are generated: every field type, extremes, NaN and signed zero, Java nulls, empty strings,
non-BMP text (CESU-8 on disk), lone surrogates (stored as U+FFFD by the frames reader), stop-bit extremes;
configs with HOURS cycles and with index/data blocks small enough to need index-1 and data-<tid>-1.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pychro import VanillaChronicleWriter, VanillaConfig
from pychro.frames import ReadStats, Schema, iter_batches, read_table

from ._util import assert_same, row_api_read, write_rows

INT = {
    "int8": (-(1 << 7), (1 << 7) - 1), "int16": (-(1 << 15), (1 << 15) - 1), "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1), "uint8": (0, 255), "uint16": (0, 65535), "uint32": (0, (1 << 32) - 1),
    "stopbit": (-(1 << 63), (1 << 63) - 1), "timestamp_ms": (-(1 << 63), (1 << 63) - 1),
    "timestamp_us": (-(1 << 63), (1 << 63) - 1), "timestamp_ns": (-(1 << 63), (1 << 63) - 1),
}
TYPE_NAMES = [*INT, "float32", "float64", "bool", "char", "string", "utf", "skip1", "skip3", "skip8"]

text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),  # any code point except surrogates, non-BMP included
        st.sampled_from(["\x00", "\u00e9", "\u20ac", "\uffff", "\U0001f600", "\U0010ffff"]),
        st.characters(categories=["Cs"]),  # lone surrogates: Java writes them as 3 bytes
    ),
    max_size=12,
)


def values_for(type_name: str) -> st.SearchStrategy[Any]:
    if type_name in INT:
        lo, hi = INT[type_name]
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, -1 if lo < 0 else 1, 127, 128]))
    if type_name == "float64":
        return st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 5e-324, float("nan")])
    if type_name == "float32":
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if type_name == "bool":
        return st.booleans()
    if type_name == "char":
        return st.integers(0, 0xFFFF).map(chr)
    if type_name == "string":
        return st.none() | text | st.just("")
    if type_name == "utf":
        return text
    return st.binary(min_size=int(type_name[4:]), max_size=int(type_name[4:]))  # skip<N>


@st.composite
def schemas_and_rows(draw: st.DrawFn, max_rows: int = 40) -> tuple[Schema, list[list[Any]]]:
    types = draw(st.lists(st.sampled_from(TYPE_NAMES), min_size=1, max_size=7))
    if all(t.startswith("skip") for t in types):
        types.append("int32")
    schema = Schema([(None if t.startswith("skip") else f"f{i}", t) for i, t in enumerate(types)])
    row = st.tuples(*(values_for(t) for t in types)).map(list)
    rows = draw(st.lists(row, min_size=0, max_size=max_rows))
    return schema, rows


def check(
    path: Path, schema: Schema, config: VanillaConfig | None = None, **kw: Any
) -> tuple[ReadStats, list[dict[str, Any]]]:
    stats = ReadStats()
    table = read_table(path, schema, index=True, config=config, stats=stats, **kw)
    expected = row_api_read(path, schema, config=config)
    assert_same(table, expected, schema)
    assert stats.rows == len(expected)
    # projections: every column alone, reversed order
    for name in schema.names:
        alone = read_table(path, schema, columns=[name], config=config, **kw)
        assert_same(alone, [{name: e[name]} for e in expected], schema)
    backwards = read_table(path, schema, columns=schema.names[::-1], config=config, **kw)
    assert backwards.column_names == schema.names[::-1]
    return stats, expected


@given(schemas_and_rows())
def test_default_config(case: tuple[Schema, list[list[Any]]]) -> None:
    schema, rows = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        with VanillaChronicleWriter(path) as writer:
            write_rows(writer.get_appender(), schema, rows)
        stats, expected = check(path, schema)
        # lone surrogates as the row API returns them (a written pair reads back as one code point)
        surrogates = sum(
            1 for row in expected for v in row.values() if isinstance(v, str) for ch in v if 0xD800 <= ord(ch) <= 0xDFFF
        )
        assert stats.replaced_surrogates == surrogates


SMALL = VanillaConfig(index_block_size=64, data_block_size=1024, message_capacity=256)  # 8 slots per index file


@settings(max_examples=25)
@given(schemas_and_rows(max_rows=60))
def test_small_blocks_roll_index_and_data_files(case: tuple[Schema, list[list[Any]]]) -> None:
    schema, rows = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        with VanillaChronicleWriter(path, config=SMALL) as writer:
            write_rows(writer.get_appender(), schema, rows)
        check(path, schema, SMALL, batch_rows=5)


def test_small_blocks_really_roll(tmp_path: Path) -> None:
    schema = Schema("a:int64,s:string")
    rows = [[i, "x" * (i % 50)] for i in range(200)]
    with VanillaChronicleWriter(tmp_path, config=SMALL) as writer:
        write_rows(writer.get_appender(), schema, rows)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    names = {p.name for p in folder.iterdir()}
    assert "index-1" in names and any(n.startswith("data-") and n.endswith("-1") for n in names)
    for batch_rows in (1, 3, 8, 1000):
        check(tmp_path, schema, SMALL, batch_rows=batch_rows)


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@settings(max_examples=15)
@given(schemas_and_rows(max_rows=30), st.lists(st.integers(0, 3), min_size=1, max_size=5))
def test_hourly_cycles(case: tuple[Schema, list[list[Any]]], hops: list[int]) -> None:
    """Rows spread over several HOURS cycles (some skipped): one table across the cycle folders."""
    schema, rows = case
    cfg = VanillaConfig(cycle="HOURS")
    clock = Clock(int(dt.datetime(2024, 3, 1, 22, tzinfo=dt.UTC).timestamp() * 1000))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        with VanillaChronicleWriter(path, config=cfg, clock=clock) as writer:
            app = writer.get_appender()
            for k, row in enumerate(rows):
                if k % 4 == 0:
                    clock.ms += hops[k // 4 % len(hops)] * 3_600_000
                write_rows(app, schema, [row])
        check(path, schema, cfg)


def test_several_writer_threads_interleave(tmp_path: Path) -> None:
    """Three threads append at once: entries of three data files interleave in one index."""
    schema = Schema("w:int8,i:int32,s:string,x:float64")
    with VanillaChronicleWriter(tmp_path) as writer:
        barrier = threading.Barrier(3)

        def work(w: int) -> None:
            app = writer.get_appender()
            barrier.wait()
            write_rows(app, schema, [[w, i, None if i % 7 == 0 else f"w{w}-{i}" * (i % 4), i / 3] for i in range(700)])

        threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    expected = row_api_read(tmp_path, schema)
    assert len({e["w"] for e in expected[:100]}) > 1 or len({e["w"] for e in expected}) == 3
    for batch_rows in (64, 65536):
        for threads_ in (1, 2):
            table = read_table(tmp_path, schema, index=True, batch_rows=batch_rows, threads=threads_)
            assert_same(table, expected, schema)
    got = [b for b in iter_batches(tmp_path, schema, batch_rows=500, index=True)]
    assert [b.num_rows for b in got] == [500] * 4 + [100]


@pytest.mark.parametrize("value", [0, 1, -1, 127, 128, -128, -129, 16383, 16384, (1 << 63) - 1, -(1 << 63)])
def test_stop_bit_extremes(tmp_path: Path, value: int) -> None:
    schema = Schema("a:stopbit,s:string,b:stopbit")
    rows = [[value, None, -value - 1 if value > -(1 << 63) else 0], [value, "", value]]
    with VanillaChronicleWriter(tmp_path) as writer:
        write_rows(writer.get_appender(), schema, rows)
    table = read_table(tmp_path, schema)
    assert table.to_pylist() == [dict(zip(schema.names, r)) for r in rows]


@pytest.mark.parametrize(
    "cfg",
    [
        VanillaConfig(cycle="MINUTES"),
        VanillaConfig(cycle="SECONDS"),
        VanillaConfig(cycle=None, cycle_format="yyyy/MM/dd/HH", cycle_length_ms=3_600_000),
        VanillaConfig(cycle="HOURS", cycle_time_zone="America/New_York"),
        VanillaConfig(entries_per_cycle=1 << 20, index_block_size=256),
    ],
    ids=["minutes", "seconds", "nested-folders", "zoned-folders", "small-index"],
)
def test_other_cycle_settings(tmp_path: Path, cfg: VanillaConfig) -> None:
    schema = Schema("i:int32,s:string,t:timestamp_us")
    clock = Clock(int(dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=dt.UTC).timestamp() * 1000))
    with VanillaChronicleWriter(tmp_path, config=cfg, clock=clock) as writer:
        app = writer.get_appender()
        for k in range(120):
            write_rows(app, schema, [[k, f"k{k}" if k % 3 else None, clock.ms * 1000]])
            clock.ms += 1_500 if cfg.cycle in ("MINUTES", "SECONDS") else 700_000
    stats, expected = check(tmp_path, schema, cfg)
    assert stats.cycles >= 2 and len(expected) == 120
    # the metadata columns agree with the config's index arithmetic
    t = read_table(tmp_path, schema, config=cfg, metadata=("index", "cycle", "seq"), columns=["i"])
    for index, cycle, seq in zip(*(t.column(c).to_pylist() for c in ("_index", "_cycle", "_seq"))):
        assert cfg.split_index(index) == (cycle, seq)
