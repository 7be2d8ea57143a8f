"""Row-API read and write rates (messages/s) for a one-int message and a six-field mixed message.

    python benchmarks/bench_row.py [--messages N] [--repeat R]

Each case writes N messages with ``VanillaChronicleWriter`` (one appender, ``write_*`` + ``finish()``), then
reads them back with ``VanillaChronicleReader.next_reader()`` + ``read_*``. The best of R runs is printed, with
the ratio to the original pychro 0.8 figures measured on the same kind of machine (performance-notes.md:
read/write 0.42/0.37 M msgs/s one-int, 0.19/0.135 M msgs/s mixed).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable

import pychro

ORIGINAL = {"one-int": (0.42e6, 0.37e6), "mixed": (0.19e6, 0.135e6)}  # pychro 0.8 (read, write) msgs/s


def write_one_int(appender: pychro.Appender, i: int) -> None:
    appender.write_int(i)
    appender.finish()


def write_mixed(appender: pychro.Appender, i: int) -> None:
    appender.write_long(1_700_000_000_000 + i)
    appender.write_double(100.25 + i)
    appender.write_int(i)
    appender.write_boolean(i & 1 == 1)
    appender.write_string("EURUSD")
    appender.write_string("venue-1")
    appender.finish()


def read_one_int(reader: pychro.VanillaChronicleReader, n: int) -> int:
    total = 0
    nxt = reader.next_reader
    for _ in range(n):
        total += nxt().read_int()
    return total


def read_mixed(reader: pychro.VanillaChronicleReader, n: int) -> int:
    total = 0
    nxt = reader.next_reader
    for _ in range(n):
        e = nxt()
        e.read_long()
        e.read_double()
        total += e.read_int()
        e.read_boolean()
        e.read_string()
        e.read_string()
    return total


CASES: dict[str, tuple[Callable[..., None], Callable[..., int]]] = {
    "one-int": (write_one_int, read_one_int),
    "mixed": (write_mixed, read_mixed),
}


def run(n: int, repeat: int) -> None:
    print(f"row API, {n:,} messages per run, best of {repeat}")
    print(f"{'case':8} {'write msg/s':>12} {'read msg/s':>12} {'write x0.8':>10} {'read x0.8':>10}")
    for name, (write, read) in CASES.items():
        best_w = best_r = float("inf")
        for _ in range(repeat):
            path = tempfile.mkdtemp(prefix="pychro-bench-")
            try:
                with pychro.VanillaChronicleWriter(path) as chron:
                    appender = chron.get_appender()
                    t0 = time.perf_counter()
                    for i in range(n):
                        write(appender, i)
                    best_w = min(best_w, time.perf_counter() - t0)
                with pychro.VanillaChronicleReader(path) as chron:
                    t0 = time.perf_counter()
                    read(chron, n)
                    best_r = min(best_r, time.perf_counter() - t0)
            finally:
                shutil.rmtree(path)
        w, r = n / best_w, n / best_r
        orig_r, orig_w = ORIGINAL[name]
        print(f"{name:8} {w:12,.0f} {r:12,.0f} {w / orig_w:9.2f}x {r / orig_r:9.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    run(args.messages, args.repeat)


if __name__ == "__main__":
    main()
