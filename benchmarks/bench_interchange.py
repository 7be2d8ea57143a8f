"""pychro and DuckDB through the Arrow PyCapsule interface, side by side in one run.

    python benchmarks/bench_interchange.py [--rows N] [--repeat R]     DuckDB GROUP BY: pychro.scan vs read_parquet
    python benchmarks/bench_interchange.py --memory                   peak RSS of the two streaming paths below

* ``GROUP BY sym`` (count, sum, avg) over ``pychro.scan(journal)`` against the same query over the same rows in a
  Parquet file (snappy, in page cache) with DuckDB's ``read_parquet``; best of R rounds run one after the other.
  Goal (issue #16): <= 1x the Parquet time.
* ``--memory``: each in a child process of its own, its peak resident set (VmHWM): a 50 M-row DuckDB query result
  backfilled into a journal with ``write_batches`` and with ``write_frame`` (streamed twice: checked, then
  written; ``write_frame`` also returns every row's index; bar < 1 GiB), and an
  aggregate over a 20 M-row journal through DuckDB (bar < 500 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import duckdb
import pyarrow.parquet as pq
from bench_shapes import peak_rss_kib
from bench_write import interleaved

import pychro
from pychro.frames.backfill import write_batches

SCHEMA = "ts:timestamp_ms,sym:string,px:float64,qty:int32"
QUERY = ("SELECT TIMESTAMPTZ '2024-03-05 09:00:00+00' + to_milliseconds(i % 86400000) AS ts, "
         "['AAPL', 'MSFT', 'Nestlé', '中文', 'SAP'][1 + i % 5] AS sym, (i % 1000) / 8.0 AS px, "
         "CAST(i % 977 AS INTEGER) AS qty FROM range({n}) t(i)")
GROUP = "SELECT sym, count(*), sum(qty), avg(px) FROM {src} GROUP BY sym"


def child_backfill(rows: int, out: str, how: str = "write_batches") -> None:
    con = duckdb.connect()
    t0 = time.perf_counter()
    if how == "write_frame":  # returns every row's index too: 8 bytes a row
        written = pychro.write_frame(con.sql(QUERY.format(n=rows)), out, SCHEMA, date="2024-03-05").size
    else:
        written = write_batches(con.sql(QUERY.format(n=rows)), out, SCHEMA, date="2024-03-05")
    print(written, peak_rss_kib(), time.perf_counter() - t0)


def child_aggregate(journal: str) -> None:
    j = pychro.scan(journal, SCHEMA)
    t0 = time.perf_counter()
    got = duckdb.sql(GROUP.format(src="j")).fetchall()
    del j
    print(sum(r[1] for r in got), peak_rss_kib(), time.perf_counter() - t0)


def memory(tmp: str) -> None:
    out = os.path.join(tmp, "backfill")
    for how in ("write_batches", "write_frame"):
        got = subprocess.run([sys.executable, __file__, "--child-backfill", "50000000", out, how], check=True,
                             capture_output=True, text=True).stdout.split()
        print(f"backfill of a 50,000,000-row DuckDB result with {how}: {int(got[0]):,} rows, peak RSS "
              f"{int(got[1]) / 1024:.0f} MiB (bar < 1024), {float(got[2]):.1f} s")
        shutil.rmtree(out, ignore_errors=True)
    journal = os.path.join(tmp, "agg")
    con = duckdb.connect()
    write_batches(con.sql(QUERY.format(n=20_000_000)), journal, SCHEMA, date="2024-03-05")
    got = subprocess.run([sys.executable, __file__, "--child-aggregate", journal], check=True, capture_output=True,
                         text=True).stdout.split()
    print(f"DuckDB GROUP BY over pychro.scan of a 20,000,000-row journal: {int(got[0]):,} rows, peak RSS "
          f"{int(got[1]) / 1024:.0f} MiB (bar < 500 MB), {float(got[2]):.2f} s")


def group_by(rows: int, repeat: int, tmp: str) -> None:
    journal = os.path.join(tmp, "j")
    con = duckdb.connect()
    write_batches(con.sql(QUERY.format(n=rows)), journal, SCHEMA, date="2024-03-05")
    parquet = os.path.join(tmp, "j.parquet")
    pq.write_table(pychro.read_table(journal, SCHEMA), parquet, compression="snappy")
    j = pychro.scan(journal, SCHEMA)
    assert j.schema is not None and sorted(duckdb.sql(GROUP.format(src="j")).fetchall()) == sorted(
        duckdb.sql(GROUP.format(src=f"read_parquet('{parquet}')")).fetchall())
    # (DuckDB finds a Python object by the name in the query among the calling frame's variables: j=j)
    t_scan, t_pq = interleaved(lambda j=j: duckdb.sql(GROUP.format(src="j")).fetchall(),
                               lambda: duckdb.sql(GROUP.format(src=f"read_parquet('{parquet}')")).fetchall(),
                               repeat=repeat)
    print(f"{rows:,} rows, best of {repeat}: DuckDB GROUP BY sym over pychro.scan {t_scan * 1e3:.0f} ms, over "
          f"read_parquet {t_pq * 1e3:.0f} ms: {t_scan / t_pq:.2f}x the Parquet time (goal <= 1x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--child-backfill", nargs=3)
    ap.add_argument("--child-aggregate")
    args = ap.parse_args()
    if args.child_backfill:
        child_backfill(int(args.child_backfill[0]), args.child_backfill[1], args.child_backfill[2])
        return
    if args.child_aggregate:
        child_aggregate(args.child_aggregate)
        return
    tmp = tempfile.mkdtemp(prefix="pychro-bench-interchange-")
    try:
        if args.memory:
            memory(tmp)
        else:
            group_by(args.rows, args.repeat, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
