"""Bulk write and export rates, side by side in one run.

    python benchmarks/bench_write.py [--rows N] [--row-api-rows M] [--repeat R]
    python benchmarks/bench_write.py --shapes [--rows N] [--repeat R]

For the fixed (timestamp ts, float64 px, int32 qty, bool side) and mixed (the same + two strings of 1-7 bytes)
schemas and the values of bench_read.py, prints rows/s of:
* ``write_frame`` (bulk backfill) vs the row-API appender loop (measured on M rows), and their ratio;
* ``to_parquet`` (journal -> Parquet, decode included) vs ``pyarrow.parquet.write_table`` of the same rows
  already in memory, and the cost ratio (target: export <= 1.5x the Parquet write alone).
``--shapes`` instead times ``write_frame`` (default threads and ``threads=1``) against ``pq.write_table`` (snappy) of
the same table on each message shape of issue #14, side by side in one run (targets: <= 0.5x, and <= 1x on one
thread).
Peak memory of a large export is measured separately, in a process that only exports:
    python benchmarks/bench_write.py --build /tmp/j10m --rows 10000000
    /usr/bin/time -v python benchmarks/bench_write.py --export /tmp/j10m      (maximum resident set size)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_read import SCHEMAS, SYMBOLS, VENUES, make_values

import pychro

FIXED, MIXED = SCHEMAS["fixed"], SCHEMAS["mixed"]
DAY = dt.date(2024, 1, 2)


def make_table(n: int, mixed: bool, seed: int = 1) -> pa.Table:
    """bench_read's rows as a table (ts as int64 milliseconds, strings as Arrow strings)."""
    v = make_values(n, seed)
    cols: dict[str, Any] = {"ts": v["ts"], "px": v["px"], "qty": v["qty"], "side": v["side"]}
    if mixed:
        cols["sym"] = pa.array(np.array(SYMBOLS)[v["sym"]])
        cols["venue"] = pa.array(np.array(VENUES)[v["venue"]])
    return pa.table(cols)


def interleaved(*fns: Callable[[], Any], repeat: int, after: Callable[[], Any] | None = None) -> list[float]:
    """Best time of each function over ``repeat`` rounds that run them one after the other (after one
    warm-up round), so that a slow spell of a shared machine hits all of them alike. ``after`` runs,
    untimed, after each call (cleaning up)."""
    best_times = [float("inf")] * len(fns)
    for round_ in range(repeat + 1):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if round_:
                best_times[k] = min(best_times[k], time.perf_counter() - t0)
            if after is not None:
                after()
    return best_times


def row_api_write(cols: dict[str, list[Any]], path: str, mixed: bool) -> None:
    """The appender loop over plain Python values (``Table.to_pydict()``, converted before timing)."""
    clock = lambda: 1_704_186_000_000  # noqa: E731 - 2024-01-02 09:00 UTC, the cycle of write_frame's date
    with pychro.VanillaChronicleWriter(path, clock=clock) as chron:
        a = chron.get_appender()
        if mixed:
            for ts, px, qty, side, sym, venue in zip(*(cols[k] for k in ("ts", "px", "qty", "side", "sym", "venue"))):
                a.write_long(ts); a.write_double(px); a.write_int(qty); a.write_boolean(side)  # noqa: E702
                a.write_string(sym); a.write_string(venue); a.finish()  # noqa: E702
        else:
            for ts, px, qty, side in zip(*(cols[k] for k in ("ts", "px", "qty", "side"))):
                a.write_long(ts); a.write_double(px); a.write_int(qty); a.write_boolean(side); a.finish()  # noqa: E702


def measure(name: str, schema: str, mixed: bool, args: argparse.Namespace, tmp: str) -> str:
    """One schema's line of the table: write_frame vs the row API, to_parquet vs pq.write_table."""
    table = make_table(args.rows, mixed)
    k = [0]

    def bulk() -> None:
        k[0] += 1
        pychro.write_frame(table, os.path.join(tmp, f"{name}-bulk-{k[0]}"), schema, date=DAY)

    small = table.slice(0, args.row_api_rows).to_pydict()
    t_bulk, t_row = interleaved(
        bulk, lambda: row_api_write(small, os.path.join(tmp, f"{name}-row-{time.perf_counter_ns()}"), mixed),
        repeat=args.repeat,
    )
    src = os.path.join(tmp, f"{name}-bulk-1")
    frame = pychro.read_table(src, schema)
    t_export, t_pq = interleaved(
        lambda: pychro.to_parquet(src, schema, os.path.join(tmp, f"{name}.parquet")),
        lambda: pq.write_table(frame, os.path.join(tmp, f"{name}-pq.parquet")),
        repeat=args.repeat,
    )
    r_bulk = args.rows / t_bulk
    r_row = args.row_api_rows / t_row
    return (f"{name:6} {r_bulk / 1e6:10.2f} M {r_row / 1e6:8.3f} M {r_bulk / r_row:6.0f}x | "
            f"{args.rows / t_export / 1e6:9.2f} M {args.rows / t_pq / 1e6:8.2f} M {t_export / t_pq:9.2f}x")


# -- the message shapes of issue #14 -------------------------------------------------------------------------
BMP_WORDS = ["café", "Zürich", "€uro", "中文", "naïve", "Ελλάδα"]
EMOJI_WORDS = ["\U0001F600", "ok \U0001F680", "\U0001F1EC\U0001F1E7", "x\U00010348y"]


def _text(rng: np.random.Generator, n: int, null: float = 0.0, bmp: float = 0.0, emoji: float = 0.0) -> pa.Array:
    """Short strings (bench_read's symbols), a share of them null, non-ASCII BMP or holding non-BMP code points."""
    words = np.array(SYMBOLS + BMP_WORDS + EMOJI_WORDS, dtype=object)
    code = rng.integers(0, len(SYMBOLS), n)
    u = rng.random(n)
    code = np.where(u < bmp, len(SYMBOLS) + rng.integers(0, len(BMP_WORDS), n), code)
    code = np.where((u >= bmp) & (u < bmp + emoji), len(SYMBOLS) + len(BMP_WORDS) + rng.integers(0, 4, n), code)
    return pa.array(words[code], type=pa.string(), mask=rng.random(n) < null if null else None)


def shape_tables(n: int, seed: int = 7, only: str | None = None) -> dict[str, tuple[pa.Table, str]]:
    """name -> (table, schema) for each workload of the issue's table (our own data); ``only``: that one shape
    (other random draws, the same kind of data), without the memory of the others."""
    rng = np.random.default_rng(seed)
    v = make_values(n, seed)
    ts = pa.array(v["ts"], pa.timestamp("ms", tz="UTC"))
    fixed = {"ts": ts, "px": v["px"], "qty": v["qty"], "side": v["side"]}
    strs = "ts:timestamp_ms,px:float64,qty:int32,side:bool,sym:string,venue:string"
    out: dict[str, tuple[pa.Table, str]] = {}
    if only in (None, "fixed"):
        out["fixed"] = (pa.table(fixed), FIXED)
    for name, kw in (("ascii", {}), ("null30", {"null": 0.3}), ("bmp20", {"bmp": 0.2}), ("emoji1", {"emoji": 0.01}),
                     ("nonbmp12", {"emoji": 0.125})):
        if only in (None, name):
            out[name] = (pa.table({**fixed, "sym": _text(rng, n, **kw), "venue": _text(rng, n, **kw)}), strs)
    if only in (None, "wide20"):
        wide = {"ts": ts, **{f"f{k}": rng.normal(100, 5, n) for k in range(20)}}
        out["wide20"] = (pa.table(wide), "ts:timestamp_ms," + ",".join(f"f{k}:float64" for k in range(20)))
    if only in (None, "stopbit4"):
        scale = [1 << 6, 1 << 13, 1 << 27, 1 << 50]  # 1, 2, 4 and 8 stop-bit bytes
        stop = {"ts": ts, **{f"s{k}": rng.integers(-scale[k], scale[k], n) for k in range(4)}}
        out["stopbit4"] = (pa.table(stop), "ts:timestamp_ms," + ",".join(f"s{k}:stopbit" for k in range(4)))
    if only is not None and not out:
        raise ValueError(f"no shape {only!r}")
    return out


def shapes(args: argparse.Namespace, tmp: str) -> None:
    print(f"{args.rows:,} rows, best of {args.repeat}; pq.write_table with snappy; time ratios (target <= 0.5x, "
          "threads=1 <= 1x)")
    print(f"{'shape':9} {'write_frame':>12} {'threads=1':>10} {'pq.write':>10} {'ratio':>7} {'ratio t=1':>10}")
    path = os.path.join(tmp, "shape")

    def bulk(table: pa.Table, schema: str, threads: int | None) -> None:
        pychro.write_frame(table, path, schema, date=DAY, threads=threads)

    def clean() -> None:  # untimed: both writers start from an empty folder and free page cache
        shutil.rmtree(path, ignore_errors=True)
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))

    for name, (table, schema) in shape_tables(args.rows).items():
        pq_path = os.path.join(tmp, f"{name}.parquet")
        t_w, t_1, t_pq = interleaved(
            partial(bulk, table, schema, None), partial(bulk, table, schema, 1),
            partial(pq.write_table, table, pq_path, compression="snappy"), repeat=args.repeat, after=clean,
        )
        r = args.rows / 1e6
        print(f"{name:9} {r / t_w:10.2f} M {r / t_1:8.2f} M {r / t_pq:8.2f} M {t_w / t_pq:6.2f}x {t_1 / t_pq:9.2f}x",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--row-api-rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", metavar="DIR", help="only write a mixed-schema journal of --rows rows (in chunks)")
    ap.add_argument("--export", metavar="DIR", help="only export a journal made by --build to DIR.parquet")
    ap.add_argument("--shapes", action="store_true", help="write_frame vs pq.write_table on every message shape")
    args = ap.parse_args()
    if args.shapes:
        tmp = tempfile.mkdtemp(prefix="pychro-bench-shapes-")
        try:
            shapes(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    if args.build:
        for start in range(0, args.rows, 1_000_000):  # chunks keep this process's memory small too
            chunk = make_table(min(1_000_000, args.rows - start), True)
            pychro.write_frame(chunk, args.build, MIXED, date=DAY)
        print(f"built {args.rows:,} rows in {args.build}")
        return
    if args.export:
        t0 = time.perf_counter()
        n = pychro.to_parquet(args.export, MIXED, args.export.rstrip("/") + ".parquet")
        print(f"exported {n:,} rows in {time.perf_counter() - t0:.2f} s")
        return
    tmp = tempfile.mkdtemp(prefix="pychro-bench-write-")
    try:
        print(f"{args.rows:,} rows per run (row API: {args.row_api_rows:,}), best of {args.repeat}")
        print(f"{'schema':6} {'write_frame':>12} {'row API':>10} {'ratio':>7} | {'to_parquet':>11} "
              f"{'pq.write':>10} {'cost ratio':>10}")
        for name, schema, mixed in (("fixed", FIXED, False), ("mixed", MIXED, True)):
            print(measure(name, schema, mixed, args, tmp))
            for d in os.listdir(tmp):
                if d.startswith(f"{name}-") and d != f"{name}-bulk-1":
                    shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
