"""Benchmark: pychro.read_table against the row API and against Parquet, on the same 2 M rows.

Two schemas: *fixed* (int64 ts, float64 px, int32 qty, bool side) and *mixed* (the same plus two short
strings). The journal bytes are laid out with numpy exactly as the row writer lays them out (the
``--check`` step proves it on a small journal byte for byte), because writing 2 M rows with the row writer
takes minutes. Reported: rows/s of ``read_table``, of a row-API loop (on the first ``--row-api-rows`` rows),
and of ``pyarrow.parquet.read_table`` on the same rows saved as snappy Parquet, with ratios measured in the
same run.

Usage::

    python benchmarks/bench_read.py [--rows 2000000] [--repeat 5] [--row-api-rows 200000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import pychro
from pychro import VanillaChronicleReader, VanillaChronicleWriter, VanillaConfig
from pychro import _layout as L

DAY = dt.datetime(2024, 1, 2, 9, 30, tzinfo=dt.UTC)
THREAD_ID_BITS = 16
SCHEMAS = {
    "fixed": "ts:timestamp_ms,px:float64,qty:int32,side:bool",
    "mixed": "ts:timestamp_ms,px:float64,qty:int32,side:bool,sym:string,venue:string",
}
SYMBOLS = ["A", "MS", "IBM", "AAPL", "GOOGL", "BRK.B", "TSLA", "NVDA"]
VENUES = ["XNAS", "XNYS", "ARCX", "BATS", "IEXG", "EDGX", "LSE", "XETRA-F"]


# -- data ------------------------------------------------------------------------------------------------------
def make_values(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t0 = int(DAY.timestamp() * 1000)
    return {
        "ts": t0 + np.cumsum(rng.integers(0, 3, n)),
        "px": np.round(100 + np.cumsum(rng.normal(0, 0.01, n)), 4),
        "qty": rng.integers(1, 10_000, n).astype(np.int32),
        "side": rng.integers(0, 2, n).astype(np.bool_),
        "sym": rng.integers(0, len(SYMBOLS), n),
        "venue": rng.integers(0, len(VENUES), n),
    }


def _strings(codes: np.ndarray, words: list[str]) -> tuple[np.ndarray, list[bytes]]:
    raw = [w.encode() for w in words]
    return np.array([len(r) for r in raw], np.int64)[codes], raw


def build_journal(root: Path, kind: str, v: dict[str, np.ndarray], tid: int, cfg: VanillaConfig | None = None) -> int:
    """Write the rows with numpy in the row writer's layout; returns bytes of message data.

    One writer thread, one cycle, rows in index-0 only; data files roll as the writer rolls them.
    """
    n = v["ts"].size
    cfg = cfg or VanillaConfig(thread_id_bits=THREAD_ID_BITS)
    assert n <= cfg.slots_per_index_file
    codec = L.EntryCodec(THREAD_ID_BITS, cfg.data_block_size)
    body = np.full(n, 21, np.int64)
    if kind == "mixed":
        l1, raw1 = _strings(v["sym"], SYMBOLS)
        l2, raw2 = _strings(v["venue"], VENUES)
        body += 2 + l1 + l2  # one stop-bit length byte each (all < 128)
    record = (L.HEADER_SIZE + body + 3) & ~3
    cycle = cfg.cycle_of(DAY)
    folder = root / cfg.folder_name(cycle)
    folder.mkdir(parents=True)
    limit = cfg.data_block_size - cfg.message_capacity - L.HEADER_SIZE  # the writer rolls past this
    entries = np.empty(n, np.uint64)
    first = 0
    file_no = 0
    while first < n:
        pos = np.concatenate([[0], np.cumsum(record[first:])])
        count = int(np.searchsorted(pos, limit, side="right"))  # messages starting at or below the limit
        count = min(count, n - first)
        rows = slice(first, first + count)
        hpos = pos[:count]
        buf = np.zeros(cfg.data_block_size, np.uint8)
        def view(dtype: str, off: int, buf: np.ndarray = buf) -> np.ndarray:
            """Element i = the value at byte i + off (an overlapping window view, writable)."""
            return np.ndarray((buf.size - off - np.dtype(dtype).itemsize + 1,), dtype, buf, off, (1,))

        view("<i4", 0)[hpos] = ~body[rows].astype(np.int32)
        view("<i8", 4)[hpos] = v["ts"][rows]
        view("<f8", 12)[hpos] = v["px"][rows]
        view("<i4", 20)[hpos] = v["qty"][rows]
        buf[hpos + 24] = np.where(v["side"][rows], pychro._fields.JAVA_TRUE, 0)
        if kind == "mixed":
            c = hpos + 25
            for lens, codes, raw in ((l1, v["sym"], raw1), (l2, v["venue"], raw2)):
                ln = lens[rows]
                buf[c] = ln
                table = np.zeros((len(raw), 16), np.uint8)
                for i, r in enumerate(raw):
                    table[i, : len(r)] = np.frombuffer(r, np.uint8)
                k = codes[rows]
                for j in range(int(ln.max())):  # bytes j of every string at once
                    has = ln > j
                    buf[c[has] + 1 + j] = table[k[has], j]
                c = c + 1 + ln
        with open(folder / L.data_file_name(tid, file_no), "wb") as fh:
            fh.truncate(cfg.data_block_size)  # sparse, full size, like the writer
            fh.write(buf[: int(pos[count])].tobytes())
        entries[rows] = np.uint64(codec.pack(tid, file_no, 0)) + (hpos + L.HEADER_SIZE).astype(np.uint64)
        first += count
        file_no += 1
    with open(folder / L.index_file_name(0), "wb") as fh:
        fh.truncate(cfg.index_block_size)
        fh.write(entries.tobytes())
    return int(record.sum())


def write_with_row_api(root: Path, kind: str, v: dict[str, np.ndarray], cfg: VanillaConfig) -> None:
    with VanillaChronicleWriter(root, config=cfg, clock=lambda: int(DAY.timestamp() * 1000)) as w:
        app = w.get_appender()
        for i in range(v["ts"].size):
            app.write_long(int(v["ts"][i]))
            app.write_double(float(v["px"][i]))
            app.write_int(int(v["qty"][i]))
            app.write_boolean(bool(v["side"][i]))
            if kind == "mixed":
                app.write_string(SYMBOLS[v["sym"][i]])
                app.write_string(VENUES[v["venue"][i]])
            app.finish()


def check_layout(tmp: Path) -> None:
    """The numpy builder and the row writer produce the same bytes (small journals, both schemas, with the
    default blocks and with 16 KiB data blocks so that the data files roll several times)."""
    v = make_values(3000, seed=7)
    small = VanillaConfig(thread_id_bits=THREAD_ID_BITS, data_block_size=16 << 10, message_capacity=1024)
    for kind, cfg in [(k, c) for k in SCHEMAS for c in (VanillaConfig(thread_id_bits=THREAD_ID_BITS), small)]:
        a, b = tmp / f"check-{kind}-writer", tmp / f"check-{kind}-numpy"
        write_with_row_api(a, kind, v, cfg)
        build_journal(b, kind, v, threading.get_native_id(), cfg)
        files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        assert files_a == files_b, (files_a, files_b)
        assert cfg is not small or len(files_a) > 5  # the small blocks really rolled
        for rel in files_a:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{kind}: {rel} differs"
        shutil.rmtree(a)
        shutil.rmtree(b)
    print("layout check: numpy-built journals equal row-writer journals byte for byte "
          "(3000 rows, both schemas, 64 MiB and 16 KiB data blocks)")


# -- timing ----------------------------------------------------------------------------------------------------
def best(fn, repeat: int) -> float:
    fn()  # warm-up (page cache, lazy imports)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def row_api_rate(root: Path, kind: str, rows: int) -> float:
    def loop() -> None:
        with VanillaChronicleReader(root, thread_id_bits=THREAD_ID_BITS) as r:
            k = 0
            for e in r:
                e.read_long()
                e.read_double()
                e.read_int()
                e.read_boolean()
                if kind == "mixed":
                    e.read_string()
                    e.read_string()
                k += 1
                if k == rows:
                    break

    return rows / best(loop, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--row-api-rows", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=None, help="read_table threads (default: up to 2)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--no-check", action="store_true", help="skip the byte-for-byte layout check")
    args = ap.parse_args()
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pychro-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if not args.no_check:
            check_layout(tmp)
        v = make_values(args.rows)
        tid = threading.get_native_id() & ((1 << THREAD_ID_BITS) - 1)
        print(f"rows: {args.rows:,}; best of {args.repeat}; threads: {args.threads or 'default'}; "
              f"cpus: {os.cpu_count()}")
        header = (f"{'schema':<7} {'read_table':>12} {'parquet':>12} {'row API':>12} "
                  f"{'vs parquet':>11} {'vs row API':>11}")
        lines = [header, "-" * len(header)]
        for kind, spec in SCHEMAS.items():
            root = tmp / f"journal-{kind}"
            if root.exists():
                shutil.rmtree(root)
            nbytes = build_journal(root, kind, v, tid)
            table = pychro.read_table(root, spec, thread_id_bits=THREAD_ID_BITS, threads=args.threads)
            assert table.num_rows == args.rows
            assert np.array_equal(table["qty"].to_numpy(), v["qty"]) and np.array_equal(table["px"].to_numpy(), v["px"])
            if kind == "mixed":
                assert table["venue"].to_pylist()[:50] == [VENUES[i] for i in v["venue"][:50]]
            parquet = tmp / f"{kind}.parquet"
            pq.write_table(table, parquet, compression="snappy")
            t_ours = best(partial(pychro.read_table, root, spec, thread_id_bits=THREAD_ID_BITS, threads=args.threads),
                          args.repeat)
            t_pq = best(partial(pq.read_table, parquet), args.repeat)
            ours, pqr = args.rows / t_ours, args.rows / t_pq
            rowapi = row_api_rate(root, kind, min(args.row_api_rows, args.rows))
            lines.append(
                f"{kind:<7} {ours / 1e6:>9.1f} M/s {pqr / 1e6:>9.1f} M/s {rowapi / 1e6:>9.3f} M/s "
                f"{ours / pqr:>10.2f}x {ours / rowapi:>10.0f}x"
            )
            print(f"{kind}: {nbytes / 1e6:.0f} MB of messages, parquet file {parquet.stat().st_size / 1e6:.0f} MB")
            shutil.rmtree(root)
        print("\n".join(lines))
        print("rows/s: read_table and parquet on all rows, row API on the first "
              f"{min(args.row_api_rows, args.rows):,} rows; ratios from this run")
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
