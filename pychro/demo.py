"""``pychro demo``: build a sample tick journal, read it back as a DataFrame and export it to Parquet.

Also the source of sample data for notebooks and benchmarks (:func:`sample_ticks`).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Any

__all__ = ["TICK_SCHEMA", "run_demo", "sample_ticks"]

TICK_SCHEMA = "ts:timestamp_ms,sym:string,px:float64,qty:int32,side:char,venue:string"
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF")
BASE_PRICE = (1.0850, 1.2650, 148.20, 0.6550, 0.8850)


def sample_ticks(rows: int, start: _dt.datetime | None = None, days: int = 2, seed: int = 7) -> Any:
    """A realistic-looking pandas DataFrame of FX ticks spread over ``days`` UTC days (vectorised)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = start or _dt.datetime(2024, 3, 4, tzinfo=_dt.UTC)
    span_ms = days * 86_400_000
    ts = np.sort(rng.integers(0, span_ms, rows)) + int(start.timestamp() * 1000)
    sym = rng.integers(0, len(SYMBOLS), rows)
    walk = np.cumsum(rng.normal(0, 1e-5, rows))
    px = np.asarray(BASE_PRICE)[sym] * (1 + walk)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(ts, unit="ms", utc=True),
            "sym": np.asarray(SYMBOLS)[sym],
            "px": px.round(5),
            "qty": rng.integers(1, 100, rows).astype(np.int32) * 1000,
            "side": np.where(rng.random(rows) < 0.5, "B", "S"),
            "venue": np.where(rng.random(rows) < 0.7, "LDN", "NY4"),
        }
    )


MAX_ROWS = 100_000_000  # about 10 GB of pandas frame while building the sample


def run_demo(path: str, rows: int = 1_000_000) -> int:
    """Write ``rows`` sample ticks to a journal at ``path``, read them back, export to Parquet; print timings."""
    import pyarrow.parquet as pq

    import pychro

    if isinstance(rows, bool) or not isinstance(rows, int):
        raise TypeError(f"rows must be an int, got {type(rows).__name__}")
    if not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be in 1..{MAX_ROWS:,}, got {rows:,}")
    if os.path.exists(path) and os.listdir(path):
        raise ValueError(f"{path} exists and is not empty: give a new folder (pychro demo NEW_DIR)")
    df = sample_ticks(rows)
    t0 = time.perf_counter()
    pychro.write_frame(df, path, TICK_SCHEMA)
    t_write = time.perf_counter() - t0
    journal = pychro.open(path)
    print(f"wrote {rows:,} ticks into {path} in {t_write:.2f} s ({rows / t_write / 1e6:.1f} M rows/s)")
    for c in journal.cycle_infos():
        print(f"  cycle folder {c.folder}: {c.messages:,} messages, index {c.first_index:#x} .. {c.last_index:#x}")
    t0 = time.perf_counter()
    frame = pychro.read_frame(path, TICK_SCHEMA)
    t_read = time.perf_counter() - t0
    print(f"read_frame: {len(frame):,} rows in {t_read:.2f} s ({len(frame) / t_read / 1e6:.1f} M rows/s)")
    print(frame.head().to_string(index=False))
    out = os.path.join(path, "..", os.path.basename(os.path.abspath(path)) + ".parquet")
    out = os.path.normpath(out)
    t0 = time.perf_counter()
    n = pychro.to_parquet(path, TICK_SCHEMA, out)
    t_export = time.perf_counter() - t0
    print(f"to_parquet: {n:,} rows to {out} in {t_export:.2f} s")
    vwap = (
        pq.read_table(out).to_pandas().assign(notional=lambda d: d.px * d.qty).groupby("sym")[["notional", "qty"]].sum()
    )
    print("VWAP per symbol from the Parquet file:")
    print((vwap.notional / vwap.qty).round(5).to_string())
    print(f"\nnext: pychro info {path}    pychro head {path} --schema '{TICK_SCHEMA}'")
    return 0
