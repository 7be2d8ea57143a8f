"""Two builds of the frames decoder side by side in one process: read_table (and read_tables of the message-types
feed) with each, rounds alternating, so that a slow spell of the machine hits both alike.

    python setup.py build_ext --inplace && cp pychro/frames/_decode*.so /tmp/old.so     # before the edit
    python setup.py build_ext --inplace && cp pychro/frames/_decode*.so /tmp/new.so     # after it
    python benchmarks/ab_decode.py /tmp/old.so /tmp/new.so [--shapes null30,stopbit4] [--rounds 9] [--types]

Build both with setup.py's flags: the decoder's speed depends on GCC's inlining and layout, and builds made with
other flags mislead. Prints the best time of each build per shape and thread setting, and new/old. Each table read
with the new build is checked equal to the old build's.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any

from bench_shapes import SHAPES
from bench_write import DAY, interleaved, shape_tables

import pychro
from pychro.frames import batch, decode, typed


def load(path: str) -> ModuleType:
    """The decoder extension built at ``path``, loaded as a module of its own."""
    loader = importlib.machinery.ExtensionFileLoader("pychro.frames._decode", path)
    spec = importlib.util.spec_from_loader("pychro.frames._decode", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def use(module: ModuleType) -> None:
    decode.C = batch.C = typed.C = module  # type: ignore[attr-defined]


def best(builds: list[ModuleType], read: Callable[[], Any], rounds: int) -> list[float]:
    """Best time of ``read`` with each build (bench_write.interleaved: a warm-up round, then the builds taking
    turns); the tables each build read last are checked equal."""
    results: list[Any] = [None] * len(builds)

    def with_build(k: int) -> None:
        use(builds[k])
        results[k] = read()

    times = interleaved(*(partial(with_build, k) for k in range(len(builds))), repeat=rounds)
    assert all(r == results[0] for r in results[1:]), "the builds read different tables"
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape names of bench_write")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--types", action="store_true", help="also read_tables of bench_types' 4-type feed")
    args = ap.parse_args()
    builds = [load(args.old), load(args.new)]
    tmp = tempfile.mkdtemp(prefix="pychro-ab-")
    try:
        print(f"{args.rows:,} rows, best of {args.rounds} rounds; new/old < 1: the new build is faster")
        for name in args.shapes.split(","):
            table, schema = shape_tables(args.rows, only=name)[name]
            path = os.path.join(tmp, name)
            pychro.write_frame(table, path, schema, date=DAY)
            for threads in (1, None):
                old, new = best(builds, partial(pychro.read_table, path, schema, threads=threads), args.rounds)
                print(f"{name:9} threads={threads!s:4} old {old * 1e3:7.2f} ms  new {new * 1e3:7.2f} ms  "
                      f"new/old {new / old:.3f}", flush=True)
            shutil.rmtree(path)
        if args.types:
            from bench_types import TYPES, feed

            path = os.path.join(tmp, "feed")
            pychro.write_frames(feed(args.rows), path, TYPES)
            for threads in (1, None):
                old, new = best(builds, partial(pychro.read_tables, path, TYPES, threads=threads), args.rounds)
                print(f"{'types':9} threads={threads!s:4} old {old * 1e3:7.2f} ms  new {new * 1e3:7.2f} ms  "
                      f"new/old {new / old:.3f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
