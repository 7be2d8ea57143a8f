"""Row-API read and write rates (messages/s) for a one-int message and a six-field mixed message.

    python benchmarks/bench_row.py [--messages N] [--repeat R]

    python benchmarks/bench_row.py --baseline-python /path/to/venv/bin/python

Each case writes N messages with ``VanillaChronicleWriter`` (one appender, ``write_*`` + ``finish()``), then
reads them back with ``VanillaChronicleReader.next_reader()`` + ``read_*``; the best of R runs is printed.
With ``--baseline-python`` (an interpreter where the original pychro 0.8, e.g. ``pip install pychro==0.8.9``,
is installed) the same workload runs there too, in the same run, and the ratios are printed side by side;
both libraries have the same row API names. Without it, the ratios use the 0.8 figures of
performance-notes.md (read/write 0.42/0.37 M msgs/s one-int, 0.19/0.135 M mixed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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


def measure(n: int, repeat: int) -> dict[str, tuple[float, float]]:
    """{case: (write msgs/s, read msgs/s)} for whichever pychro this interpreter imports."""
    out = {}
    for name, (write, read) in CASES.items():
        best_w = best_r = float("inf")
        for _ in range(repeat):
            path = tempfile.mkdtemp(prefix="pychro-bench-")
            try:
                chron = pychro.VanillaChronicleWriter(path)
                appender = chron.get_appender()
                t0 = time.perf_counter()
                for i in range(n):
                    write(appender, i)
                best_w = min(best_w, time.perf_counter() - t0)
                chron.close()
                reader = pychro.VanillaChronicleReader(path)
                t0 = time.perf_counter()
                read(reader, n)
                best_r = min(best_r, time.perf_counter() - t0)
                reader.close()
            finally:
                shutil.rmtree(path)
        out[name] = (n / best_w, n / best_r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-python", default=os.environ.get("PYCHRO_BASELINE_PYTHON"),
                    help="interpreter with the original pychro 0.8 installed, run side by side")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure(args.messages, args.repeat)))
        return
    ours = measure(args.messages, args.repeat)
    if args.baseline_python:
        res = subprocess.run(
            [args.baseline_python, os.path.abspath(__file__), "--json", "--messages", str(args.messages),
             "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
        )
        base = {k: tuple(v) for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}
        label = "0.8 (measured now)"
    else:
        base = {k: (w, r) for k, (r, w) in ORIGINAL.items()}
        label = "0.8 (notes)"
    print(f"row API, {args.messages:,} messages per run, best of {args.repeat}; baseline: pychro {label}")
    print(f"{'case':8} {'write msg/s':>12} {'read msg/s':>12} {'0.8 write':>10} {'0.8 read':>10} "
          f"{'write x':>8} {'read x':>8}")
    for name, (w, r) in ours.items():
        bw, br = base[name]
        print(f"{name:8} {w:12,.0f} {r:12,.0f} {bw:10,.0f} {br:10,.0f} {w / bw:7.2f}x {r / br:7.2f}x")


if __name__ == "__main__":
    main()
