"""to_parquet hands pyarrow its dictionary text columns as Arrow dictionaries (pychro/frames/parquet_file.py,
built by _dictionary.c): the file must be byte for byte the one pyarrow writes from the plain strings with the
same options, and the dictionary builder must survive any buffers it is handed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import pychro
from pychro.frames import _dictionary, parquet_file
from pychro.frames.dictionary import LIMIT
from pychro.frames.parquet_file import ParquetFile, encode_text
from pychro.frames.schema import Schema

from .test_types import FEED

needs_own_schema = pytest.mark.skipif(not parquet_file._CAN_STORE_OWN_SCHEMA,
                                      reason="this pyarrow cannot add key-value metadata: plain strings are written")


def _dictionary_columns(path: Path) -> list[str]:
    """The columns written with a dictionary page, from the file itself."""
    md = pq.ParquetFile(path).metadata
    return sorted({md.row_group(g).column(i).path_in_schema for g in range(md.num_row_groups)
                   for i in range(md.num_columns) if md.row_group(g).column(i).has_dictionary_page})


def _plain_copy(tables: list[pa.Table], schema: pa.Schema, use: list[str], path: Path) -> bytes:
    """The file pq.ParquetWriter writes from these plain tables, one write (row group) each."""
    with pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=use) as w:
        for t in tables:
            w.write_table(t, row_group_size=1 << 20)
    return path.read_bytes()


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows handed to the compiled builder (so that a test knows the dictionary path ran)."""
    rows: list[int] = []
    real = _dictionary.encode

    def spy(*args: Any) -> Any:
        rows.append(args[4])
        return real(*args)

    monkeypatch.setattr(parquet_file._dictionary, "encode", spy)
    return rows


@needs_own_schema
def test_java_feed_exports_are_the_files_pyarrow_writes(java_feed: Any, tmp_path: Path, encoded: list[int],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    written = pychro.to_parquet(java_feed.journal, FEED, tmp_path / "ours")
    assert sum(encoded) == sum(rows for name, rows in written.items() if name != "heartbeat")  # every sym column
    monkeypatch.setattr(parquet_file, "_CAN_STORE_OWN_SCHEMA", False)  # as before: plain strings to pyarrow
    assert pychro.to_parquet(java_feed.journal, FEED, tmp_path / "plain") == written
    assert sum(encoded) < 2 * sum(written.values())
    for name, rows in written.items():
        ours, plain = tmp_path / "ours" / f"{name}.parquet", tmp_path / "plain" / f"{name}.parquet"
        assert ours.read_bytes() == plain.read_bytes()
        table = pq.read_table(ours)
        assert table.num_rows == rows
        if name != "heartbeat":
            assert "sym" in _dictionary_columns(ours)
            assert table.schema.field("sym").type == pa.string()


def _every_type(n: int, seed: int) -> pa.Table:
    """Columns of every frames type (Schema.to_arrow), texts with nulls, empty and non-ASCII values, long values
    sharing their first 8 bytes, and one text column of all-distinct values."""
    rng = np.random.default_rng(seed)
    schema = Schema("a:int8,b:uint16,c:int64,f:float32,g:float64,ok:bool,s:string,u:utf,ch:char,sb:stopbit,"
                    "t:timestamp_us,id:string,e:string,levels:list<px:float64,qty:int32>").to_arrow()
    words = np.array(["AAPL", "", "Nestl\u00e9", "DAX\U0001F680", "abcdefgh-long-1", "abcdefgh-long-2", "abcdefgh"])
    cols: dict[str, Any] = {}
    for field in schema:
        kind = field.type
        if field.name == "s":
            cols["s"] = pa.array(rng.choice(words, n), mask=rng.random(n) < 0.3)
        elif field.name == "u":
            cols["u"] = pa.array(rng.choice(words[:4], n))
        elif field.name == "ch":
            cols["ch"] = pa.array(rng.choice(np.array(["x", "\u00e9", "Z"]), n))
        elif field.name == "id":
            cols["id"] = pa.array([f"order-{seed}-{i:09d}-" + "x" * 40 for i in range(n)])  # 64 bytes a page
        elif field.name == "e":
            cols["e"] = pa.nulls(n, pa.string())
        elif field.name == "levels":
            cols["levels"] = pa.array([[{"px": 1.5 * i, "qty": i}] * (i % 3) for i in range(n)], kind)
        elif pa.types.is_boolean(kind):
            cols[field.name] = pa.array(rng.random(n) < 0.5)
        elif pa.types.is_timestamp(kind):
            cols[field.name] = pa.array(1_709_629_200_000_000 + np.arange(n), kind)
        elif pa.types.is_floating(kind):
            cols[field.name] = pa.array(rng.integers(0, 50, n).astype(kind.to_pandas_dtype()))
        else:
            cols[field.name] = pa.array(rng.integers(0, 100, n), kind)
    return pa.table([cols[f.name].cast(f.type) for f in schema], schema=schema)


@needs_own_schema
@pytest.mark.parametrize("prepared", [False, True], ids=["plain", "prepared"])
def test_every_type_row_groups_chunks_and_slices(tmp_path: Path, encoded: list[int], prepared: bool) -> None:
    whole = _every_type(60_000, 1)
    meta = {**whole.schema.metadata, b"pychro.source": b'{"test": 1}'}
    schema = whole.schema.with_metadata(meta)
    # row groups of several chunks, two of them slices starting mid-byte (their validity bitmaps are offset)
    groups = [pa.Table.from_batches(whole.slice(0, 25_000).to_batches(max_chunksize=7_001), schema=schema),
              pa.concat_tables([whole.slice(25_003, 20_000), whole.slice(45_005, 10_000)]),
              whole.slice(55_005)]
    groups = [g.replace_schema_metadata(meta) for g in groups]
    f = ParquetFile(str(tmp_path / "ours.parquet"), schema, "snappy")
    for k, g in enumerate(groups):  # prepared: as the export's gathering thread hands them over
        ready = f.prepare(g) if prepared else g
        assert ready is g or (k and pa.types.is_dictionary(ready.schema.field("s").type))
        f.write(ready, 1 << 20)
    f.close()
    assert sorted(f.texts) == ["ch", "e", "s", "u"]  # "id" is all distinct: too big for the page, left plain
    assert sum(encoded) > 0
    ours = tmp_path / "ours.parquet"
    assert _plain_copy(groups, schema, _dictionary_columns(ours), tmp_path / "plain.parquet") == ours.read_bytes()
    back, want = pq.read_table(tmp_path / "ours.parquet"), pa.concat_tables(groups).replace_schema_metadata(meta)
    assert back.schema.metadata == meta and [f.metadata for f in back.schema] == [f.metadata for f in schema]
    # the texts are plain strings again; the list comes back as pyarrow reads any list (its item named element)
    assert back.drop_columns(["levels"]).equals(want.drop_columns(["levels"]), check_metadata=True)
    assert back["levels"].to_pylist() == want["levels"].to_pylist()


@needs_own_schema
def test_an_export_of_many_row_groups_encodes_them_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 ) -> None:
    """to_parquet's gathering thread encodes each row group after the first (ParquetFile.prepare); the file is
    still the one pyarrow writes from plain strings."""
    n = 50_000
    rng = np.random.default_rng(3)
    table = pa.table({"ts": pa.array(np.arange(n), pa.int64()),
                      "sym": pa.array(rng.choice(np.array(["AAPL", "MSFT", "Nestl\u00e9", "\U0001F680"]), n)),
                      "venue": pa.array(rng.choice(np.array(["X", "Y"]), n), mask=rng.random(n) < 0.2)})
    pychro.write_frame(table, tmp_path / "j", "ts:int64,sym:string,venue:string", date="2024-01-02")
    prepared: list[bool] = []
    real = ParquetFile.prepare

    def spy(self: ParquetFile, group: Any) -> Any:
        got = real(self, group)
        prepared.append(pa.types.is_dictionary(got.schema.field("sym").type))
        return got

    monkeypatch.setattr(ParquetFile, "prepare", spy)
    args = (tmp_path / "j", "ts:int64,sym:string,venue:string")
    assert pychro.to_parquet(*args, tmp_path / "ours.parquet", row_group_rows=7_000) == n
    assert len(prepared) == 8 and sum(prepared) >= 6  # the first never (nothing chosen yet); the second may not be
    monkeypatch.setattr(parquet_file, "_CAN_STORE_OWN_SCHEMA", False)
    assert pychro.to_parquet(*args, tmp_path / "plain.parquet", row_group_rows=7_000) == n
    assert (tmp_path / "ours.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "ours.parquet").metadata.num_row_groups == 8


@needs_own_schema
def test_a_column_whose_values_outgrow_the_page_in_a_later_row_group(tmp_path: Path) -> None:
    """Chosen as a dictionary at the first row group, too many values in the second: still the same values."""
    n = 80_000
    first = pa.table({"s": pa.array(["a", "b"] * (n // 2))})
    second = pa.table({"s": pa.array([f"value-{i:012d}" for i in range(n)])})  # ~1.6 MiB as a page
    f = ParquetFile(str(tmp_path / "x.parquet"), first.schema, "snappy")
    f.write(first, 1 << 20)
    f.write(second, 1 << 20)
    f.close()
    assert f.texts == ["s"]
    back = pq.read_table(tmp_path / "x.parquet")
    assert back.schema.field("s").type == pa.string()
    assert back.equals(pa.concat_tables([first, second]))


def test_a_dictionary_too_big_for_the_page_is_not_built() -> None:
    # each chunk's values fit the page, both together do not (pyarrow would fall back part way)
    half = (LIMIT // 2) // 24 + 10
    chunks = [[f"{k}-{i:020d}" for i in range(half)] for k in (1, 2)]
    assert encode_text(pa.chunked_array(chunks[:1])) is not None
    assert encode_text(pa.chunked_array(chunks)) is None
    # the page limit itself: values of 12 bytes take 16 bytes each
    fits = [f"{i:012d}" for i in range(LIMIT // 16 - 1)]
    got = encode_text(pa.chunked_array([fits + fits[::-1]]))  # 65 k values: the table grows 9 times
    assert got.chunk(0).dictionary.to_pylist() == fits
    assert got.chunk(0).indices.to_pylist() == list(range(len(fits))) + list(range(len(fits)))[::-1]
    assert encode_text(pa.chunked_array([fits + ["one-more-val", "and-one-more"]])) is None


def _reference(values: list[str | None]) -> tuple[list[str], list[int]]:
    seen: dict[str, int] = {}
    indices = [seen.setdefault(v, len(seen)) if v is not None else 0 for v in values]
    return list(seen), indices


texts = st.lists(st.one_of(st.none(), st.sampled_from(["", "a", "ab", "abcdefgh", "abcdefgh1", "abcdefgh2",
                                                       "\u00e9t\u00e9", "\U0001F680x"]),
                           st.text(max_size=20)), max_size=300)


@given(texts, st.integers(0, 12), st.booleans())
@example(["abcdefgh1", "abcdefgh2", "abcdefgh1", None, ""], 1, True)
def test_builder_matches_first_appearance_order(values: list[str | None], cut: int, binary: bool) -> None:
    array = pa.array(values, pa.binary() if binary else pa.string()) if values else pa.array([], pa.string())
    array = array.slice(min(cut, len(array)))  # offsets, validity and data from a mid-array row
    got = encode_text(pa.chunked_array([array], type=array.type))
    want_values, want_indices = _reference(array.to_pylist())
    assert got is not None
    chunk = got.chunk(0)
    assert chunk.dictionary.to_pylist() == want_values
    assert [i if v is not None else 0 for i, v in zip(chunk.indices.fill_null(0).to_pylist(), array.to_pylist(),
                                                       strict=True)] == want_indices
    assert chunk.indices.null_count == array.null_count
    assert got.cast(array.type).to_pylist() == array.to_pylist()


def _encode(offsets: Any, data: Any, validity: Any = None, first: int = 0, n: int | None = None,
            limit: int = LIMIT) -> Any:
    offs = np.asarray(offsets, np.int32)
    n = len(offs) - 1 - first if n is None else n
    return _dictionary.encode(offs.tobytes(), data, validity, first, n, np.empty(max(n, 0), np.int32), limit)


def test_builder_rejects_buffers_that_do_not_hold_the_rows() -> None:
    with pytest.raises(ValueError, match="go back or past the data"):
        _encode([0, 3, 9], b"abcdefgh")  # past the data
    with pytest.raises(ValueError, match="go back or past the data"):
        _encode([0, 5, 2], b"abcdefgh")  # going back
    with pytest.raises(ValueError, match="go back or past the data"):
        _encode([-4, 2], b"abcdefgh")
    with pytest.raises(ValueError, match="shorter than the rows"):
        _encode([0, 1, 2], b"ab", n=3)
    with pytest.raises(ValueError, match="shorter than the rows"):
        _encode([0, 1, 2], b"ab", first=5, n=0)
    with pytest.raises(ValueError, match="shorter than the rows"):
        _encode([0, 1] * 9, b"ab", validity=b"\x01")  # 17 rows, 8 validity bits
    with pytest.raises(ValueError, match="shorter than the rows"):
        _dictionary.encode(np.array([0, 1, 2], np.int32).tobytes(), b"ab", None, 0, 2, np.empty(1, np.int32), 9)
    with pytest.raises(ValueError, match="shorter than the rows"):
        _dictionary.encode(b"\0" * 8, b"a", None, 0, 2**63 - 1, np.empty(1, np.int32), LIMIT)
    with pytest.raises(ValueError, match="shorter than the rows"):
        _encode([0, 1], b"a", validity=b"", n=1)
    with pytest.raises(ValueError, match="aligned"):
        _dictionary.encode(memoryview(b"\0" * 9)[1:], b"a", None, 0, 1, np.empty(1, np.int32), LIMIT)
    with pytest.raises(ValueError, match="aligned"):
        _dictionary.encode(b"\0" * 8, b"a", None, 0, 1, memoryview(bytearray(9))[1:], LIMIT)
    with pytest.raises(ValueError, match=">= 0"):
        _encode([0, 1], b"a", first=-1, n=1)
    with pytest.raises(BufferError):
        _dictionary.encode(b"\0" * 8, b"a", None, 0, 1, b"read-only", LIMIT)  # indices must be writable
    # a null row's offsets are not read as a value (whatever they hold), and values may end at the data's end
    assert _encode([7, 2, 2, 8], b"abcdefgh", validity=b"\x06")[0] == 2
    assert _encode([0, 7, 8], b"abcdefgh")[0] == 2
    assert _encode([0, 0, 0], b"")[0] == 1  # empty values in an empty buffer
    assert _encode([0, 4], b"abcd", limit=7) is None  # 4 + 4 bytes as a page
    assert _encode([0, 4], b"abcd", limit=8)[0] == 1


def test_empty_chunks_and_columns() -> None:
    column = pa.chunked_array([pa.array([], pa.string()), pa.array(["a", None, "b"]).slice(3), pa.array(["x", "a"])])
    got = encode_text(column)
    assert [len(c) for c in got.chunks] == [0, 0, 2] and got.chunk(2).dictionary.to_pylist() == ["x", "a"]
    assert got.cast(pa.string()).to_pylist() == ["x", "a"]
    assert encode_text(pa.chunked_array([], pa.string())).num_chunks == 0


@needs_own_schema
@pytest.mark.parametrize("step", [1, 20, 2_000])
def test_values_first_seen_after_the_first_page_stay_plain(tmp_path: Path, step: int) -> None:
    """pyarrow writes a page's indices at the width of the dictionary as it stands at that page: a dictionary
    still growing after the first page (symbols first seen later in the day) is left to pyarrow (a helper's case:
    one byte a page differed)."""
    n = 100_000
    late = pa.table({"s": pa.array([f"v{i // step:07d}" for i in range(n)]),
                     "early": pa.array(["a", "b", "c"] * (n // 3) + ["a"])})
    f = ParquetFile(str(tmp_path / "ours.parquet"), late.schema, "snappy")
    f.write(late, 1 << 20)
    f.close()
    assert f.texts == ["early"]
    ours = tmp_path / "ours.parquet"
    assert "s" in _dictionary_columns(ours)  # its dictionary still chosen: pyarrow builds it
    assert _plain_copy([late], late.schema, _dictionary_columns(ours), tmp_path / "plain.parquet") == ours.read_bytes()


@pytest.mark.parametrize("kind", [pa.large_string(), pa.large_binary(), pa.string_view(), pa.int32()])
def test_encode_text_names_the_types_it_takes(kind: Any) -> None:
    """A breaker's case: large strings gave "offsets go back or past the data"."""
    with pytest.raises(TypeError, match="string or binary"):
        encode_text(pa.chunked_array([pa.array(["a"] if kind != pa.int32() else [1]).cast(kind)]))
