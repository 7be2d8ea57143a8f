"""read_tables over a journal of several message types vs read_table of one schema, side by side in one run.

    python benchmarks/bench_types.py [--rows N] [--repeat R]

The multi-type journal is a feed written with ``pychro.write_frames``: 40% trades (sym string, px, qty), 40%
quotes (sym, bid, ask, two sizes), 10% book snapshots (sym and a ``list<px:float64,qty:int32>`` of 0-5 levels),
10% heartbeats, behind a ``ts:timestamp_ns,type:int8`` header; symbols ASCII, 20% of quote symbols null. The
one-schema journal holds as many messages, all of the trade shape (header + sym, px, qty), written with
``pychro.write_frame``. The bar (issue #15): ``read_tables`` reads at least as many rows per second as
``read_table``. Both are timed with default threads and with ``threads=1``, best of R rounds run one after the
other; the bytes per message of each journal are printed too (the feed's are larger: quotes and books).

The floor: each type's messages written alone into a journal of their own and read with ``read_table`` of that
type's whole schema (header and fields), the four times summed. That is the work of decoding the feed's messages
with no type to find; ``read_tables`` cannot beat it without ``read_table`` getting faster too (both decode with the
same compiled code), so where the floor is slower than the one-schema read, the bar cannot be met on this feed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from functools import partial

import numpy as np
import pyarrow as pa
from bench_write import interleaved

import pychro

TYPES = pychro.MessageTypes(
    header="ts:timestamp_ns,type:int8",
    tag="type",
    types={
        1: ("trade", "sym:string,px:float64,qty:int32"),
        2: ("quote", "sym:string,bid:float64,ask:float64,bid_size:int32,ask_size:int32"),
        3: ("book", "sym:string,levels:list<px:float64,qty:int32>"),
        4: ("heartbeat", ""),
    },
)
TRADE = "ts:timestamp_ns,type:int8,sym:string,px:float64,qty:int32"
SYMS = np.array(["AAPL", "MSFT", "IBM", "GOOGL", "AMZN", "NESN", "SAP", "TSLA"], dtype=object)
T0 = 1_709_596_800_000_000_000  # 2024-03-05


def feed(n: int, seed: int = 5) -> dict[str, pa.Table]:
    """The feed's four tables, ``n`` messages in all, timestamps interleaved at random."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, size=n, p=[0.4, 0.4, 0.1, 0.1])
    ts = T0 + np.sort(rng.integers(0, 86_400 * 10**9, n))
    out = {}
    for k, name in enumerate(["trade", "quote", "book", "heartbeat"]):
        t = pa.array(ts[kind == k], pa.timestamp("ns", tz="UTC"))
        m = len(t)
        sym = SYMS[rng.integers(0, len(SYMS), m)]
        if name == "trade":
            out[name] = pa.table({"ts": t, "sym": sym.tolist(), "px": rng.normal(100, 5, m),
                                  "qty": rng.integers(1, 1000, m).astype(np.int32)})
        elif name == "quote":
            mask = rng.random(m) < 0.2
            bid = rng.normal(100, 5, m)
            out[name] = pa.table({"ts": t, "sym": pa.array(sym.tolist(), pa.string(), mask=mask), "bid": bid,
                                  "ask": bid + 0.01, "bid_size": rng.integers(1, 1000, m).astype(np.int32),
                                  "ask_size": rng.integers(1, 1000, m).astype(np.int32)})
        elif name == "book":
            counts = rng.integers(0, 6, m)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            levels = pa.StructArray.from_arrays([pa.array(rng.normal(100, 1, offsets[-1])),
                                                 pa.array(rng.integers(1, 500, offsets[-1]).astype(np.int32))],
                                                names=["px", "qty"])
            out[name] = pa.table({"ts": t, "sym": sym.tolist(),
                                  "levels": pa.ListArray.from_arrays(pa.array(offsets), levels)})
        else:
            out[name] = pa.table({"ts": t})
    return out


def one_schema(n: int, seed: int = 6) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "ts": pa.array(T0 + np.arange(n) * 1000, pa.timestamp("ns", tz="UTC")),
        "type": pa.array(np.ones(n, np.int8)),
        "sym": SYMS[rng.integers(0, len(SYMS), n)].tolist(),
        "px": rng.normal(100, 5, n),
        "qty": rng.integers(1, 1000, n).astype(np.int32),
    })


def _bytes(path: str) -> int:
    """Bytes the journal takes on disk (data and index files, as allocated)."""
    return sum(info.bytes_on_disk for info in pychro.Journal(path).cycle_infos())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pychro-bench-types-")
    try:
        multi, single = os.path.join(tmp, "feed"), os.path.join(tmp, "trades")
        tables = feed(args.rows)
        pychro.write_frames(tables, multi, TYPES)
        pychro.write_frame(one_schema(args.rows), single, TRADE)
        assert sum(t.num_rows for t in pychro.read_tables(multi, TYPES).values()) == args.rows
        alone = []  # (journal, schema) of each type's messages on their own
        for name, table in tables.items():
            full = TYPES.schema(name)
            tag = pa.array(np.full(table.num_rows, TYPES.values[TYPES.names.index(name)], np.int8))
            table = table.add_column(1, "type", tag)
            alone.append((os.path.join(tmp, name), str(full)))
            pychro.write_frame(table, alone[-1][0], str(full))
        t_types, t_types1, t_one, t_one1, *t_alone = interleaved(
            partial(pychro.read_tables, multi, TYPES), partial(pychro.read_tables, multi, TYPES, threads=1),
            partial(pychro.read_table, single, TRADE), partial(pychro.read_table, single, TRADE, threads=1),
            *(partial(pychro.read_table, p, sch, threads=t) for t in (None, 1) for p, sch in alone),
            repeat=args.repeat,
        )
        t_floor, t_floor1 = sum(t_alone[: len(alone)]), sum(t_alone[len(alone):])
        m = args.rows / 1e6
        print(f"{args.rows:,} messages each, best of {args.repeat}; bar: read_tables rows/s >= read_table rows/s\n")
        print("| read | rows/s | threads=1 | disk bytes/message |")
        print("|---|---|---|---|")
        print(f"| read_tables, 4 types | {m / t_types:.1f} M | {m / t_types1:.1f} M | "
              f"{_bytes(multi) / args.rows:.1f} |")
        print(f"| read_table, 1 schema | {m / t_one:.1f} M | {m / t_one1:.1f} M | {_bytes(single) / args.rows:.1f} |")
        print(f"| floor: read_table of each type alone, summed | {m / t_floor:.1f} M | {m / t_floor1:.1f} M | "
              f"{sum(_bytes(p) for p, _ in alone) / args.rows:.1f} |")
        print(f"\nread_tables / read_table rows per second: {t_one / t_types:.2f}x "
              f"(threads=1: {t_one1 / t_types1:.2f}x)")
        print(f"floor / read_table rows per second: {t_one / t_floor:.2f}x (threads=1: {t_one1 / t_floor1:.2f}x); "
              f"read_tables / floor: {t_floor / t_types:.2f}x (threads=1: {t_floor1 / t_types1:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
