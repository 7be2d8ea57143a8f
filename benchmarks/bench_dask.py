"""Parallel export with Dask: rows/s with 1 and 2 worker processes on a multi-cycle journal, side by side.

    python benchmarks/bench_dask.py [--rows-per-cycle N] [--cycles C] [--repeat R]

Builds a daily journal of C cycles (the demo's tick schema), then times
``to_parquet(..., partition_by="date", parallel=True)`` on a ``LocalCluster`` of 1 and of 2 single-threaded
worker processes, and prints the speed-up (target: >= 1.6x with 2 workers on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time

from distributed import Client, LocalCluster

import pychro
from pychro.demo import TICK_SCHEMA, sample_ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows-per-cycle", type=int, default=1_000_000)
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pychro-bench-dask-")
    try:
        path = f"{tmp}/j"
        rows = args.rows_per_cycle * args.cycles
        pychro.write_frame(sample_ticks(rows, start=dt.datetime(2024, 3, 4, tzinfo=dt.UTC), days=args.cycles),
                           path, TICK_SCHEMA)
        print(f"journal: {rows:,} rows in {args.cycles} daily cycles")
        rates = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster, Client(cluster):
                best = float("inf")
                for k in range(args.repeat):
                    out = f"{tmp}/out-{workers}-{k}"
                    t0 = time.perf_counter()
                    n = pychro.to_parquet(path, TICK_SCHEMA, out, partition_by="date", parallel=True)
                    best = min(best, time.perf_counter() - t0)
                    assert n == rows
                    shutil.rmtree(out)
            rates[workers] = rows / best
            print(f"{workers} worker process(es): {rates[workers] / 1e6:6.2f} M rows/s")
        print(f"speed-up with 2 workers: {rates[2] / rates[1]:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
