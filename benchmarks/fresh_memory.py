"""What new memory costs on this machine, beside memory already in use, side by side in one run.

    python benchmarks/fresh_memory.py [--sizes 48,480] [--repeat 5]

A 1 M-row ``write_frame`` of the string shapes puts about 48 MB in new page-cache pages (data and index files), a
10 M-row one about 480 MB; ``bench_shapes.py --scale`` removes the journal after each round, so each round needs
those pages again. Per size this prints the best time per MB of:

* writing a new file (``pwrite`` of 2.5 MiB runs, as ``write_frame`` does) after removing the one before, against
  overwriting the same file's pages still in the page cache;
* touching freshly mapped anonymous memory (one byte per 4 KiB page), against touching memory already touched.

Where the cost per MB is the same at both sizes, new pages alone do not make 10x the rows cost more than 10x
the time. On the development VM (2026-12-06): a new file 0.24 ms per MB at 48 and at 480 MB (2.5x overwriting);
fresh anonymous memory 0.9 ms per MB at both sizes, about 200x memory already touched: a big temporary that the
allocator maps anew on each call (``np.empty`` above glibc's 32 MiB threshold) costs that on every call.
"""

from __future__ import annotations

import argparse
import mmap
import os
import tempfile
import time
from functools import partial

import numpy as np

RUN = 5 << 19  # 2.5 MiB: about one run of 64 k messages of the string shapes


def write_file(path: str, mb: int, block: bytes) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        t0 = time.perf_counter()
        for pos in range(0, mb << 20, RUN):
            os.pwrite(fd, block, pos)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def new_file(path: str, mb: int, block: bytes) -> float:
    if os.path.exists(path):
        os.remove(path)
    os.sync()
    return write_file(path, mb, block)


def touch(mem: np.ndarray) -> float:
    t0 = time.perf_counter()
    mem[:: mmap.PAGESIZE] += 1
    return time.perf_counter() - t0


def fresh_anonymous(mb: int) -> float:
    m = mmap.mmap(-1, mb << 20)
    try:
        mem = np.frombuffer(m, np.uint8)
        took = touch(mem)
        del mem
        return took
    finally:
        m.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="48,480", help="MB, comma-separated")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    block = np.random.default_rng(1).integers(0, 255, RUN, dtype=np.uint8).tobytes()
    tmp = tempfile.mkdtemp(prefix="pychro-bench-fresh-")
    path = os.path.join(tmp, "data")
    print("ms per MB, best of the rounds: new pages vs pages in use (ratio)")
    try:
        for mb in (int(s) for s in args.sizes.split(",")):
            held = np.zeros(mb << 20, np.uint8)
            touch(held)
            best = [float("inf")] * 4
            timed = (partial(new_file, path, mb, block), partial(write_file, path, mb, block),
                     partial(fresh_anonymous, mb), partial(touch, held))
            for _ in range(args.repeat):  # one after the other: a slow spell hits all four alike
                for k, fn in enumerate(timed):
                    best[k] = min(best[k], fn() * 1e3 / mb)
            os.remove(path)
            del held
            print(f"{mb:5d} MB  new file {best[0]:.3f} vs overwrite {best[1]:.3f} ({best[0] / best[1]:.1f}x)   "
                  f"fresh memory {best[2]:.3f} vs touched {best[3]:.3f} ({best[2] / best[3]:.0f}x)", flush=True)
    finally:
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
