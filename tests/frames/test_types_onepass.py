"""The one-pass decoder of message types (``_decode.decode_typed``) against what was written: random journals of
several types with unknown tags, bodies too short for the header, messages that do not match their type and long
text (text buffers that fill mid-batch), read with every ``errors=``/``unknown=`` policy, batch size and thread
count. The expected tables, counts and errors come from the messages themselves, not from the decoder.

The decoder takes a chunk's messages type by type and falls back to index order when the order matters (a stop,
a full text buffer): these journals put bad messages, unknown tags and long text at random places in chunks of
mixed types, so that both ways, and the way from one to the other, are taken.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import write_bodies

import pychro
from pychro import MessageTypes, SchemaMismatchError
from pychro._fields import encode_stop_bit, encode_text
from pychro.frames import ReadStats

T0 = 1_709_596_800_000_000_000
TYPES = MessageTypes(
    header="ts:int64,type:int8",
    tag="type",
    types={1: ("a", "s:string,x:int32"), 2: ("b", "y:float64,z:stopbit"), 3: ("c", "levels:list<p:float64>"),
           4: ("hb", "")},
)
TEXTS = ["", "AAPL", "Nestl\u00e9", "DAX\U0001F680", None]


def _journal(seed: int, n: int, bad: float = 0.01) -> tuple[list[bytes], list[tuple[str, Any]]]:
    """n message bodies and what each is: ("a"/"b"/"c"/"hb", row), ("unknown", None) or ("bad", None) (a
    share ``bad`` of the messages do not match their type)."""
    rng = np.random.default_rng(seed)
    bodies, what = [], []
    for k in range(n):
        roll = rng.random()
        head = struct.pack("<qb", T0 + k, 0)
        if roll < 0.01:
            bodies.append(b"\x01\x02\x03")  # shorter than the header
            what.append(("bad", None))
            continue
        if roll < 0.02:
            bodies.append(struct.pack("<qb", T0 + k, 9) + b"\0" * int(rng.integers(0, 5)))
            what.append(("unknown", None))
            continue
        kind = int(rng.choice(4, p=[0.4, 0.35, 0.1, 0.15]))
        tag = kind + 1
        head = struct.pack("<qb", T0 + k, tag)
        if kind == 0:
            text = "L" * int(rng.integers(200, 700)) if rng.random() < 0.05 else TEXTS[int(rng.integers(0, 5))]
            x = int(rng.integers(-(2**31), 2**31))
            raw = encode_stop_bit(-1) if text is None else encode_stop_bit(len(encode_text(text))) + encode_text(text)
            body = head + raw + struct.pack("<i", x)
            row: Any = {"ts": T0 + k, "s": text, "x": x}
        elif kind == 1:
            y, z = float(rng.normal()), int(rng.integers(-(2**62), 2**62))
            body = head + struct.pack("<d", y) + encode_stop_bit(z)
            row = {"ts": T0 + k, "y": y, "z": z}
        elif kind == 2:
            levels = [float(v) for v in rng.normal(size=int(rng.integers(0, 4)))]
            body = head + encode_stop_bit(len(levels)) + b"".join(struct.pack("<d", v) for v in levels)
            row = {"ts": T0 + k, "levels": [{"p": v} for v in levels]}
        else:
            body = head
            row = {"ts": T0 + k}
        if rng.random() < bad:  # a message that does not match its type: one byte too many
            bodies.append(body + b"\0")
            what.append(("bad", None))
            continue
        bodies.append(body)
        what.append((TYPES.names[kind], row))
    return bodies, what


def _expect(what: list[tuple[str, Any]], errors: str, unknown: str) -> tuple[Any, dict[str, list[Any]], int, int]:
    """(error seq and kind, or None; the rows of each type; rows skipped; unknown tags counted)."""
    rows: dict[str, list[Any]] = {name: [] for name in TYPES.names}
    skipped = unknowns = 0
    for seq, (kind, row) in enumerate(what):
        if kind == "unknown":
            if unknown == "raise":
                return (seq, "unknown"), rows, skipped, unknowns
            unknowns += 1
        elif kind == "bad":
            if errors == "raise":
                return (seq, "bad"), rows, skipped, unknowns
            if errors == "truncate":
                break
            skipped += 1
        else:
            rows[kind].append({"_seq": seq, **row})
    return None, rows, skipped, unknowns


def _skip_first_unknown(what: list[tuple[str, Any]]) -> Any:
    """With errors="skip" and unknown="raise": the first unknown tag, wherever it is (bad rows hide none)."""
    return next((seq for seq, (kind, _) in enumerate(what) if kind == "unknown"), None)


@pytest.mark.parametrize("seed,bad", [(1, 0.01), (2, 0.01), (3, 0.05)])
def test_one_pass_equals_what_was_written(tmp_path: Path, seed: int, bad: float) -> None:
    bodies, what = _journal(seed, 3000, bad)
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    journal = pychro.Journal(path)
    (cycle,) = [info.cycle for info in journal.cycle_infos()]
    for errors in ("raise", "skip", "truncate"):
        for unknown in ("raise", "skip"):
            error, rows, skipped, unknowns = _expect(what, errors, unknown)
            if errors == "skip" and unknown == "raise":
                first = _skip_first_unknown(what)
                error = None if first is None else (first, "unknown")
            for batch_rows, threads in ((None, 1), (257, 2), (1000, 1), (64, 3)):
                kw: dict[str, Any] = {"errors": errors, "unknown": unknown, "threads": threads}
                if batch_rows:
                    kw["batch_rows"] = batch_rows
                label = f"errors={errors} unknown={unknown} batch_rows={batch_rows} threads={threads}"
                if error is not None:
                    match = "names no message type" if error[1] == "unknown" else "does not match|common header"
                    with pytest.raises(SchemaMismatchError, match=match) as info:
                        pychro.read_tables(path, TYPES, **kw)
                    assert info.value.seq == error[0], label  # type: ignore[attr-defined]
                    continue
                stats = ReadStats()
                got = pychro.read_tables(path, TYPES, stats=stats, index=True, **kw)
                for name in TYPES.names:
                    want = [{"_index": journal.config.index_of(cycle, r["_seq"]),
                             **{k: v for k, v in r.items() if k != "_seq"}} for r in rows[name]]
                    assert got[name].to_pylist() == want, f"{label}: type {name}"
                    got[name].validate(full=True)  # (a null count that disagrees with the validity bitmap fails)
                assert stats.skipped_rows == skipped, label
                assert stats.unknown_rows == unknowns, label
                assert stats.rows == sum(len(r) for r in rows.values()), label
                first_bad = next((seq for seq, (kind, _) in enumerate(what) if kind == "bad"), None)
                if errors == "truncate" and first_bad is not None and unknown == "raise" and any(
                        kind == "unknown" for kind, _ in what[:first_bad]):
                    first_bad = None  # (raised above)
                want_index = None if first_bad is None else journal.config.index_of(cycle, first_bad)
                assert stats.first_bad_index == want_index, label
                assert stats.truncated == (errors == "truncate" and first_bad is not None), label


def test_streams_equal_the_tables(tmp_path: Path) -> None:
    """iter_batches of types: the same rows, in index order within each type, over batches of any size."""
    bodies, _ = _journal(7, 2000)
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    want = pychro.read_tables(path, TYPES, errors="skip", unknown="skip")
    for batch_rows in (1, 63, 64, 65, 700):
        got: dict[str, list[Any]] = {name: [] for name in TYPES.names}
        for name, batch in pychro.iter_batches(path, TYPES, errors="skip", unknown="skip", batch_rows=batch_rows):
            got[name] += batch.to_pylist()
        assert got == {name: t.to_pylist() for name, t in want.items()}, batch_rows


def test_a_text_tag_and_a_tag_after_text(tmp_path: Path) -> None:
    """The tag found by walking the header (a string before it) and a text tag compared as Java writes it."""
    types = MessageTypes("venue:string,kind:utf,n:stopbit", "kind",
                         {"TR\u00c9": ("trade", "px:float64"), "HB": ("beat", "")})
    bodies, want = [], {"trade": [], "beat": []}
    for k in range(300):
        venue = ["X", "LSE\u00a3", None][k % 3]
        kind = ["TR\u00c9", "HB", "??"][k % 7 % 3]
        raw = encode_text(kind)
        body = (encode_stop_bit(-1) if venue is None else encode_stop_bit(len(encode_text(venue))) + encode_text(venue))
        body += struct.pack("<H", len(raw)) + raw + encode_stop_bit(k - 150)
        if kind == "TR\u00c9":
            body += struct.pack("<d", k / 4)
            want["trade"].append({"venue": venue, "n": k - 150, "px": k / 4})
        elif kind == "HB":
            want["beat"].append({"venue": venue, "n": k - 150})
        bodies.append(body)
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    stats = ReadStats()
    got = pychro.read_tables(path, types, unknown="skip", stats=stats)
    assert {name: t.to_pylist() for name, t in got.items()} == want
    assert stats.unknown_rows == sum(1 for k in range(300) if k % 7 % 3 == 2)
    with pytest.raises(SchemaMismatchError, match="kind='\\?\\?', which names no message type") as info:
        pychro.read_tables(path, types)
    assert info.value.seq == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("tag_type,values", [("int16", [-300, 2, 1000]), ("uint32", [7, 2**32 - 1, 256]),
                                             ("stopbit", [-5, 0, 2**40]), ("int64", [-(2**63), 1, 2**63 - 1])])
def test_integer_tags_of_every_width(tmp_path: Path, tag_type: str, values: list[int]) -> None:
    types = MessageTypes(f"tag:{tag_type}", "tag", {v: (f"t{i}", "x:int8") for i, v in enumerate(values)})
    fmt = {"int16": "<h", "uint32": "<I", "int64": "<q"}.get(tag_type)
    bodies = []
    for k in range(200):
        v = values[k % 3]
        bodies.append((encode_stop_bit(v) if fmt is None else struct.pack(fmt, v)) + struct.pack("<b", k % 100))
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    got = pychro.read_tables(path, types)
    for i in range(3):
        assert got[f"t{i}"].column("x").to_pylist() == [k % 100 for k in range(200) if k % 3 == i]


def test_the_first_bad_message_is_first_in_index_order_not_in_decoding_order(tmp_path: Path) -> None:
    """Messages of a chunk are decoded type by type: a bad "b" before a bad "a" is still the first bad one, though
    the "a" messages (first seen) are decoded first."""
    a = struct.pack("<qb", T0, 1) + encode_stop_bit(1) + b"A" + struct.pack("<i", 5)
    b = struct.pack("<qb", T0, 2) + struct.pack("<d", 0.5) + encode_stop_bit(3)
    path = write_bodies(tmp_path / "j", [a, b + b"\0", a + b"\0", b, a], T0 // 1_000_000)
    journal = pychro.Journal(path)
    (cycle,) = [info.cycle for info in journal.cycle_infos()]
    stats = ReadStats()
    got = pychro.read_tables(path, TYPES, errors="skip", stats=stats)
    assert got["a"].num_rows == 2 and got["b"].num_rows == 1 and stats.skipped_rows == 2
    assert stats.first_bad_index == journal.config.index_of(cycle, 1)
    with pytest.raises(SchemaMismatchError) as info:
        pychro.read_tables(path, TYPES)
    assert info.value.seq == 1  # type: ignore[attr-defined]
    cut = pychro.read_tables(path, TYPES, errors="truncate")
    assert cut["a"].num_rows == 1 and cut["b"].num_rows == 0


def _read(path: Path, errors: str, unknown: str, **kw: Any) -> tuple[Any, ReadStats, Any]:
    stats = ReadStats()
    try:
        got = pychro.read_tables(path, TYPES, errors=errors, unknown=unknown, index=True, stats=stats, **kw)
    except pychro.PychroError as exc:
        return None, stats, exc
    return {name: t.column("_index").to_pylist() for name, t in got.items()}, stats, None


def test_damaged_bytes_give_a_clean_result_or_a_clean_error(tmp_path: Path) -> None:
    """Random bytes of the data file overwritten (tags, lengths, text, counts; headers too): only pychro's errors
    escape, and the policies agree with each other (a clean "raise" equals "skip"; "truncate" is "skip" up to
    its first bad message; each type's rows are in index order and no message is in two types). Run under
    AddressSanitizer by tests/test_sanitizers.py."""
    import os
    import shutil

    bodies, _ = _journal(11, 400, 0.0)
    base = write_bodies(tmp_path / "base", bodies, T0 // 1_000_000)
    (data,) = [p.relative_to(base) for p in base.rglob("*") if p.is_file() and p.name.startswith("data")]
    size = (base / data).stat().st_size
    used = sum(len(b) + 4 for b in bodies)
    rounds = int(os.environ.get("PYCHRO_FRAMES_FUZZ_ROUNDS", "150"))
    rng = np.random.default_rng(int(os.environ.get("PYCHRO_FUZZ_SEED", "5")))
    for k in range(rounds):
        root = tmp_path / f"r{k}"
        shutil.copytree(base, root)
        with open(root / data, "r+b") as fh:
            for _ in range(int(rng.integers(1, 12))):
                fh.seek(int(rng.integers(0, used + 8)))
                fh.write(bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8)))
            if rng.random() < 0.1:
                fh.truncate(int(rng.integers(0, size)))
        raised, _, _ = _read(root, "raise", "skip")
        skipped, s_stats, e_skip = _read(root, "skip", "skip", batch_rows=int(rng.integers(1, 300)), threads=2)
        cut, t_stats, e_cut = _read(root, "truncate", "skip", batch_rows=int(rng.integers(1, 300)))
        for rows in (raised, skipped, cut):
            if rows is not None:
                every = [i for r in rows.values() for i in r]
                assert len(every) == len(set(every)), f"round {k}: a message in two types"
                assert all(r == sorted(r) for r in rows.values()), f"round {k}: rows out of index order"
        if raised is not None:
            assert skipped == raised and s_stats.skipped_rows == 0, f"round {k}"
        if skipped is not None and cut is not None:
            stop = s_stats.first_bad_index
            assert cut == {n: [i for i in r if stop is None or i < stop] for n, r in skipped.items()}, f"round {k}"
            assert t_stats.truncated == (stop is not None), f"round {k}"
        if e_skip is not None and e_cut is None:
            assert t_stats.truncated, f"round {k}: {e_skip!r}"
        shutil.rmtree(root)


@pytest.mark.parametrize("kinds", [8, 9, 40])
def test_more_types_in_a_chunk_than_it_sorts(tmp_path: Path, kinds: int) -> None:
    """Up to 8 types in a chunk of messages are decoded type by type; more send the chunk through in index order:
    the same rows either way, and the same first bad message."""
    types = MessageTypes("ts:int64,type:int16", "type", {k: (f"t{k}", "x:int32,s:string") for k in range(kinds)})
    bodies, want = [], {f"t{k}": [] for k in range(kinds)}
    for i in range(1000):
        k = (i * 7) % kinds
        text = "x" * (i % 40)
        body = struct.pack("<qhi", T0 + i, k, i) + encode_stop_bit(len(text)) + text.encode()
        if i in (300, 301, 777):
            body += b"\0"  # does not match its type
        else:
            want[f"t{k}"].append({"ts": T0 + i, "x": i, "s": text})
        bodies.append(body)
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    journal = pychro.Journal(path)
    (cycle,) = [info.cycle for info in journal.cycle_infos()]
    stats = ReadStats()
    got = pychro.read_tables(path, types, errors="skip", stats=stats)
    assert {name: t.to_pylist() for name, t in got.items()} == want
    assert stats.skipped_rows == 3 and stats.first_bad_index == journal.config.index_of(cycle, 300)
    with pytest.raises(SchemaMismatchError) as info:
        pychro.read_tables(path, types, threads=2)
    assert info.value.seq == 300  # type: ignore[attr-defined]


def test_decode_typed_checks_its_arguments() -> None:
    """Called wrongly (these are pychro's own calls, but every buffer is checked): an error, never a crash."""
    from pychro.frames import _decode as C
    from pychro.frames.decode import Plan, TypedRun
    from pychro.frames.typed import wire_tags

    header = Plan(TYPES.header, ["type"], rest=True)
    plans = [Plan(TYPES.schema(n), TYPES.columns(n)) for n in TYPES.names]
    n = 4
    run = TypedRun(header, wire_tags(TYPES), plans, n, True)
    buf = np.zeros(64, np.uint8)
    entries = np.full(n, 8, np.uint64)
    outs = tuple(tuple(r.outs) for r in run.runs)
    statuses = tuple(r.status for r in run.runs)
    counts = tuple(r.counts for r in run.runs)

    def call(**change: Any) -> Any:
        args = dict(header=header.program, tags=run.tags, programs=run.programs, entries=entries, mask=(1 << 40) - 1,
                    bits=40, keys=np.zeros(1, np.int64), files=(buf,), lo=0, hi=n, stop=True, stop_unknown=True,
                    outs=outs, statuses=statuses, rows=tuple(run.rows), used=run.used, counts=counts, info=run.info)
        args.update(change)
        return C.decode_typed(*args.values())

    assert call()[0] == C.C_HEADER  # (a zero header: the only thing wrong)
    bad = [
        (ValueError, {"hi": n + 1}), (ValueError, {"lo": 3, "hi": 2}), (ValueError, {"tags": run.tags[:3]}),
        (ValueError, {"outs": outs[:3]}), (ValueError, {"statuses": (np.zeros(10**6, np.uint8),) * 4}),
        (ValueError, {"rows": (np.zeros(1, np.int32),) * 4}), (ValueError, {"counts": (np.zeros(1, np.int64),) * 4}),
        (ValueError, {"used": np.array([5, 0, 0, 0], np.int64)}), (ValueError, {"used": np.array([-1, 0, 0, 0])}),
        (ValueError, {"lo": 1, "used": np.array([1, 0, 0, 0]), "statuses": (np.zeros(0, np.uint8),) * 4}),
        (ValueError, {"info": np.zeros(2, np.int64)}),
        (ValueError, {"header": ((C.D_FIXED, 8, -1), (C.D_REST, 0, -1))}),  # no tag
        (ValueError, {"header": ((C.D_FIXED, 1, 0), (C.D_FIXED, 1, 0))}),  # two
        (ValueError, {"header": ((C.D_FIXED, 9, 0),)}),  # an integer tag of 9 bytes
        (ValueError, {"header": ((C.D_REST, 0, -1), (C.D_FIXED, 1, 0))}), (TypeError, {"header": ((1,),)}),
        (TypeError, {"tags": ("a", "b", "c", "d")}), (TypeError, {"tags": (b"a", b"b", b"c", b"d")}),
        (TypeError, {"header": ((C.D_STRING, 0, 0),), "tags": (1, 2, 3, 4)}), (TypeError, {"files": [buf]}),
        (TypeError, {"statuses": (b"\0" * 8,) * 4}),
    ]
    for error, change in bad:
        with pytest.raises(error):
            call(**change)


@pytest.mark.parametrize("header", ["type:int8,n:stopbit", "name:string,type:int8,n:stopbit,m:stopbit",
                                    "n:stopbit,type:stopbit,m:stopbit"])
def test_header_fields_after_the_tag_leave_it_alone(tmp_path: Path, header: str) -> None:
    """Found by helper-25: a stop-bit header field after the tag was taken for the tag."""
    types = MessageTypes(header, "type", {1: ("a", "x:int32"), 2: ("b", "y:int32")})
    fields = [f.split(":") for f in header.split(",")]
    bodies, want = [], {"a": [], "b": []}
    for k in range(300):
        tag = 1 + (k * 5 + k // 7) % 2
        row: dict[str, Any] = {}
        body = b""
        for name, kind in fields:
            value: Any = tag if name == "type" else (k * 3) % 11 if kind == "stopbit" else f"v{k % 4}"
            body += (struct.pack("<b", value) if kind == "int8" else encode_stop_bit(value) if kind == "stopbit"
                     else encode_stop_bit(len(value)) + value.encode())
            if name != "type":
                row[name] = value
        body += struct.pack("<i", k)
        row["x" if tag == 1 else "y"] = k
        want["a" if tag == 1 else "b"].append(row)
        bodies.append(body)
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    got = pychro.read_tables(path, types)
    assert {name: t.to_pylist() for name, t in got.items()} == want


@pytest.mark.parametrize("listed,raw", [
    ("A\u0000B", b"A\xc0\x80B"),  # U+0000 as Java writes it
    ("A\u0000B", b"A\x00B"),  # as plain UTF-8
    ("DAX\U0001F680", "DAX\U0001F680".encode()),  # 4-byte UTF-8, where Java writes a surrogate pair
    ("\ufffd", b"\xed\xa0\x80"),  # a lone surrogate reads as U+FFFD
])
def test_a_text_tag_matches_its_text_however_spelled(tmp_path: Path, listed: str, raw: bytes) -> None:
    """Found by helper-25: text tags were compared as the bytes Java writes only; a tag is its text, as a read of
    the header field gives it."""
    types = MessageTypes("kind:string", "kind", {listed: ("a", "x:int32"), "other": ("b", "y:int8")})
    java = encode_text(listed)
    bodies = [encode_stop_bit(len(java)) + java + struct.pack("<i", 1),
              encode_stop_bit(len(raw)) + raw + struct.pack("<i", 2)]
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    got = pychro.read_tables(path, types)
    assert got["a"].column("x").to_pylist() == [1, 2]


def test_a_text_tag_that_is_not_java_text_is_a_bad_message(tmp_path: Path) -> None:
    types = MessageTypes("kind:string", "kind", {"a": ("a", "x:int32")})
    bodies = [encode_stop_bit(1) + b"a" + struct.pack("<i", 1), encode_stop_bit(1) + b"\xff" + struct.pack("<i", 2),
              encode_stop_bit(1) + b"a" + struct.pack("<i", 3)]
    path = write_bodies(tmp_path / "j", bodies, T0 // 1_000_000)
    with pytest.raises(SchemaMismatchError, match="field 'kind' holds bytes that are not Java text") as info:
        pychro.read_tables(path, types, unknown="skip")
    assert info.value.seq == 1  # type: ignore[attr-defined]
    stats = ReadStats()
    got = pychro.read_tables(path, types, errors="skip", stats=stats)
    assert got["a"].column("x").to_pylist() == [1, 3] and stats.skipped_rows == 1 and stats.unknown_rows == 0


def test_the_number_of_types_is_bounded_and_an_unknown_tag_error_stays_short(tmp_path: Path) -> None:
    """Found by helper-25: 32768 types failed only when read, with a bare ValueError from the decoder; the error
    for an unknown tag listed every type (half a megabyte for 40 000)."""
    from pychro.frames.types import MAX_TYPES

    with pytest.raises(ValueError, match="at most 32767"):
        MessageTypes("type:int32", "type", {v: (f"t{v}", "") for v in range(MAX_TYPES + 1)})
    types = MessageTypes("type:int32", "type", {v: (f"t{v}", "x:int8") for v in range(MAX_TYPES)})
    path = write_bodies(tmp_path / "j", [struct.pack("<ib", v, 1) for v in (0, MAX_TYPES - 1, -5)], T0 // 1_000_000)
    with pytest.raises(SchemaMismatchError, match=r"type=-5, .*, \.\.\. \(32767 types\)") as info:
        pychro.read_tables(path, types)
    assert len(str(info.value)) < 1000
    got = pychro.read_tables(path, types, unknown="skip")
    assert got["t0"].num_rows == 1 and got[f"t{MAX_TYPES - 1}"].num_rows == 1
