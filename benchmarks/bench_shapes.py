"""The frames codec against Parquet on every message shape of issue #14, side by side in one run.

    python benchmarks/bench_shapes.py [--rows N] [--repeat R] [--only fixed,wide20]
    python benchmarks/bench_shapes.py --scale            (also: 10x the rows, time ratio per shape)
    python benchmarks/bench_shapes.py --memory           (peak RSS of to_parquet on 10 M rows, child process)
    python benchmarks/bench_shapes.py --row-groups       (why to_parquet keeps 1 Mi-row row groups, see below)

For each shape (the tables of ``bench_write.shape_tables``: fixed; + 2 short ASCII strings; strings 30% null;
20% non-ASCII BMP; 1% and 12.5% non-BMP; wide ts + 20 float64; ts + 4 stop-bit fields), best of R rounds run
one after the other (a noisy shared machine hits all alike), printed as the issue's table:

* ``read_table`` (default threads and ``threads=1``) vs ``pq.read_table`` of the same rows (snappy, the file in
  page cache); bar: <= 0.5x, ``threads=1`` <= 1x;
* ``write_frame`` (default threads and ``threads=1``) vs ``pq.write_table`` of the same table;
* ``to_parquet`` (journal -> Parquet, decode included) vs ``pq.write_table`` of the table already in memory;
  bar: <= 1.2x. Below the table, both files' sizes: to_parquet does not dictionary-encode columns whose
  values are nearly all distinct (``pychro/frames/dictionary.py``), which pq.write_table's defaults try on every
  column.
Time ratios are what to compare: rates on a shared machine move from run to run.

``--row-groups`` prints, per shape, ``pq.write_table`` with smaller row groups against 1 Mi rows (pyarrow's
default and ``to_parquet``'s), and ``read_table`` with ``threads=1`` against ``pq.write_table``: an export of up to
one row group decodes it whole before pyarrow can write it (pyarrow writes a row group in one call), so its time
is at least the Parquet write plus that decode; only smaller row groups would let the two overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

import pyarrow.parquet as pq
from bench_write import DAY, interleaved, shape_tables

import pychro


def _clean(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _settle(*paths: str) -> None:
    """After a timed call: what it wrote removed and the disk written out, so that the next call starts as this one
    did (no older file beside its output, no writes in flight). Overwriting a file lets the writer take the old
    file's pages in the page cache; writing beside one needs fresh pages, which on the VM measured cost up to 3 ms
    per MB the first time (host-side, shown as kernel time in the copy); and the writeback of one export slowed the
    next one's writes. With the old file left beside it, a 10 M-row wide export took 1.4-2x pq.write_table."""
    for path in paths:
        if os.path.isdir(path):
            _clean(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    os.sync()


def one_shape(name: str, table: object, schema: str, rows: int, repeat: int, tmp: str) -> dict[str, float]:
    """Times (seconds, best of ``repeat``) of every operation on one shape."""
    journal = os.path.join(tmp, f"{name}-journal")
    pychro.write_frame(table, journal, schema, date=DAY)
    pq_file = os.path.join(tmp, f"{name}.parquet")
    pq.write_table(table, pq_file, compression="snappy")
    pq.read_table(pq_file)  # in page cache
    scratch = os.path.join(tmp, f"{name}-scratch")
    out = os.path.join(tmp, f"{name}-export.parquet")
    names = ["read", "read_t1", "pq_read", "write", "write_t1", "pq_write", "export"]
    times = interleaved(
        partial(pychro.read_table, journal, schema),
        partial(pychro.read_table, journal, schema, threads=1),
        partial(pq.read_table, pq_file),
        partial(pychro.write_frame, table, scratch, schema, date=DAY),
        partial(pychro.write_frame, table, scratch, schema, date=DAY, threads=1),
        partial(pq.write_table, table, out, compression="snappy"),
        partial(pychro.to_parquet, journal, schema, out),
        repeat=repeat, after=partial(_settle, scratch, out),
    )
    sizes = []  # the files themselves: to_parquet leaves out dictionaries that would overflow (frames/dictionary.py)
    for write in (partial(pychro.to_parquet, journal, schema, out), partial(pq.write_table, table, out)):
        write()
        sizes.append(os.path.getsize(out))
        _settle(out)
    _clean(journal)
    return {**dict(zip(names, times)), "export_mb": sizes[0] / 1e6, "pq_mb": sizes[1] / 1e6}


def print_table(results: dict[str, dict[str, float]], rows: int) -> None:
    print(f"\n{rows:,} rows, best of the rounds; Parquet snappy, in page cache; time ratios (bars: read <= 0.5x, "
          "to_parquet <= 1.2x, threads=1 <= 1x)\n")
    print("| workload | read_table | vs `pq.read_table` | threads=1 | write_frame | vs `pq.write_table` | threads=1 "
          "| `to_parquet` vs `pq.write_table` |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t in results.items():
        m = rows / 1e6
        print(f"| {name} | {m / t['read']:.1f} M rows/s | {t['read'] / t['pq_read']:.2f}x | "
              f"{t['read_t1'] / t['pq_read']:.2f}x | {m / t['write']:.1f} M rows/s | "
              f"{t['write'] / t['pq_write']:.2f}x | "
              f"{t['write_t1'] / t['pq_write']:.2f}x | {t['export'] / t['pq_write']:.2f}x |", flush=True)
    print("\nParquet file sizes, to_parquet / pq.write_table (defaults): " + ", ".join(
        f"{name} {t['export_mb']:.1f} / {t['pq_mb']:.1f} MB" for name, t in results.items()))


SHAPES = ["fixed", "ascii", "null30", "bmp20", "emoji1", "nonbmp12", "wide20", "stopbit4"]


def scale_check(only: list[str] | None, rows: int, repeat: int) -> None:
    """read_table, write_frame and to_parquet at ``rows`` and ``10 * rows``: the time ratio (bar: <= 11x), and
    beside it the ratio of the least CPU time a call took (all threads: whether the work grew with the rows, when
    the wall time grew more); pq.write_table's own time ratio (most of an export is pyarrow's write: on the VM
    measured, it grew 10.7-11.1x on its own for the wide and 12.5% non-BMP shapes); and to_parquet against
    pq.write_table at 10x the rows, where there are several row groups to overlap with the decode.

    Each shape runs in a process of its own holding only that shape's tables and journals at both sizes, and
    times them in alternating blocks: rounds at ``rows``, rounds at ``10 * rows``, then both again (each block with
    its own untimed warm-up round), best of ``repeat`` rounds in all at each size. Why blocks, and two of each: on
    the VM this was measured on, the two vCPUs sometimes run two threads at full speed and sometimes at about half
    (for minutes, then not); timed in one block per size, the sizes met different spells (a 1 M-row write, best of
    10, took 39 ms in one run and 48-51 ms in the next three, the 10 M-row write 417-556 ms), so that the ratio
    said more about the spells than about the code. Why not round by round: a 10 M-row call just before slowed the
    1 M-row one after it (a wide export of 1 M rows took 549 ms instead of 357 ms: memory the big one gave back),
    which flatters the ratio.
    The read_table rounds run on their own (then to_parquet and pq.write_table, then write_frame): on that VM
    memory the guest has not touched lately costs about 1 ms per 2 MiB page the first time (the host backs it
    then; sys time, not user time), and a 10 M-row read needs 1.7 GB of output. With pq.write_table between the
    reads, every read met such memory and took 1.8-2.4 s instead of 0.16-0.2 s (12x of sys time). Read after
    read, the process reuses its own memory, at both sizes alike.
    The to_parquet rounds run on their own too, as do the pq.write_table ones, for the same reason, which there
    hit one size only: an export decodes into buffers it makes at its start (up to 2.5 row groups: 430 MiB for
    the wide shape), and a round of pq.write_table between two exports lasts 0.5 s at 1 M rows but 5-6 s at
    10 M. So the 10 M-row export met memory the VM had taken back and the 1 M-row one did not: measured on the
    wide shape, the decoding threads spent 1.1-1.6 s making those buffers at 10 M rows, 8-104 ms at 1 M, and
    the wide export's ratio came out 10.4-12.4x (CPU time up to 12.2x). Export after export, after the first
    two rounds: 92-138 ms at 10 M rows.
    """
    print(f"\nscale: {rows:,} -> {10 * rows:,} rows, time ratio (bar <= 11x; beside it, the least CPU time's ratio, "
          f"and pq.write_table's own time ratio); to_parquet vs pq.write_table at {10 * rows:,} rows; one process "
          "per shape, the two sizes in alternating blocks")
    for name in SHAPES:
        if only and name not in only:
            continue
        got = subprocess.run([sys.executable, __file__, "--scale-child", name, str(rows), str(repeat)], check=True,
                             capture_output=True, text=True)
        print(got.stdout.strip(), flush=True)


def scale_child(name: str, rows: int, repeat: int) -> None:
    tmp = tempfile.mkdtemp(prefix="pychro-bench-scale-")
    try:
        small, big = shape_tables(rows, only=name)[name], shape_tables(10 * rows, only=name)[name]
        schema = small[1]
        journals = [os.path.join(tmp, f"scale-{name}-{k}") for k in range(2)]
        for (table, _), journal in zip((small, big), journals):
            pychro.write_frame(table, journal, schema, date=DAY)
        out = os.path.join(tmp, "scale.parquet")
        # read_table rounds on their own: see the docstring
        reads = [LeastCpu(partial(pychro.read_table, j, schema)) for j in journals]
        read = in_blocks([[f] for f in reads], repeat)
        exports = [LeastCpu(partial(pychro.to_parquet, j, schema, out)) for j in journals]
        # to_parquet's rounds and pq.write_table's in blocks of their own (see the docstring), at each size:
        # pq.write_table's own growth is the reference
        times = in_blocks([g for f, (t, _) in zip(exports, (small, big))
                           for g in ([f], [partial(pq.write_table, t, out, compression="snappy")])],
                          repeat, after=partial(_settle, out))
        export, pq_write = times[0::2], times[1::2]
        for journal in journals:
            _clean(journal)
        scratch = os.path.join(tmp, f"scale-{name}-write")
        writes = [LeastCpu(partial(pychro.write_frame, t, scratch, schema, date=DAY)) for t, _ in (small, big)]
        write = in_blocks([[f] for f in writes], repeat, after=partial(_settle, scratch))
        parts = []
        for label, (a, b), cpu in (("read_table", read, reads), ("write_frame", write, writes),
                                   ("to_parquet", export, exports)):
            grew = cpu[1].least / cpu[0].least
            parts.append(f"{label} {b / a:5.1f}x ({a * 1e3:.0f} -> {b * 1e3:.0f} ms; CPU {grew:.1f}x)")
        print(f"{name:9} " + "   ".join(parts) + f"   (pq.write_table {pq_write[1] / pq_write[0]:.1f}x)   "
              f"to_parquet vs pq.write_table {export[1] / pq_write[1]:.2f}x")
    finally:
        _clean(tmp)


class LeastCpu:
    """``fn``, noting the least CPU time (user + system, all threads of this process) that a call of it took: beside
    the wall-time ratio, whether the work itself grew with the rows (a wall time can grow with the host's spells)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn, self.least = fn, float("inf")

    def __call__(self) -> None:
        before = _cpu()
        self.fn()
        self.least = min(self.least, _cpu() - before)


def _cpu() -> float:
    """CPU seconds of this process so far (getrusage: to the microsecond, where os.times counts 10 ms ticks)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def in_blocks(groups: list[list[Callable[[], object]]], repeat: int, blocks: int = 2,
              after: Callable[[], object] | None = None) -> list[float]:
    """Best time of every function of ``groups`` over ``repeat`` rounds, run as ``blocks`` passes over the groups,
    each group's functions interleaved (:func:`interleaved`) for its share of the rounds in each pass."""
    share = -(-repeat // blocks)
    best = [float("inf")] * sum(map(len, groups))
    for _ in range(blocks):
        times = [t for group in groups for t in interleaved(*group, repeat=share, after=after)]
        best = [min(a, b) for a, b in zip(best, times)]
    return best


def thread_cpu(fn: Callable[[], object], repeat: int) -> float:
    """Least CPU time of the calling thread over ``repeat`` calls of ``fn`` (after a warm-up): single-threaded
    work measured this way hardly moves when other work shares the cores, unlike its wall time."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def row_group_check(only: list[str] | None, rows: int, repeat: int, tmp: str) -> None:
    """pq.write_table CPU time by row-group size (vs 1 Mi rows), and the decode a one-row-group export adds."""
    sizes = [1 << 19, 1 << 18, 1 << 17]
    out = os.path.join(tmp, "rg.parquet")
    print(f"\n{rows:,} rows, CPU time of one thread: pq.write_table with smaller row groups, and read_table "
          "(threads=1), vs pq.write_table with 1 Mi-row row groups\n")
    print("| workload | " + " | ".join(f"{s >> 10} k-row groups" for s in sizes) + " | read_table, threads=1 |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name, (table, schema) in shape_tables(rows).items():
        if only and name not in only:
            continue
        journal = os.path.join(tmp, f"rg-{name}")
        pychro.write_frame(table, journal, schema, date=DAY)
        t = [thread_cpu(partial(pq.write_table, table, out, compression="snappy", row_group_size=s), repeat)
             for s in [1 << 20, *sizes]]
        t.append(thread_cpu(partial(pychro.read_table, journal, schema, threads=1), repeat))
        print(f"| {name} | " + " | ".join(f"{x / t[0]:.2f}x" for x in t[1:]) + " |", flush=True)
        _clean(journal)


def memory_child(journal: str, schema: str, out: str) -> None:
    pychro.to_parquet(journal, schema, out)
    print(peak_rss_kib())


def peak_rss_kib() -> int:
    """This process's peak resident set (KiB): VmHWM on Linux. Not ``ru_maxrss``: Linux carries the peak of
    the process that started this one over into it (subprocess execs from a vfork child sharing the parent's
    memory), so a parent holding 10 M-row tables made a child look 7 GB big."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def memory_check(rows: int, tmp: str) -> None:
    """Peak RSS of a process that only runs to_parquet over ``rows`` rows of the 2-string shape."""
    journal = os.path.join(tmp, "mem-journal")
    chunk = 1_000_000
    tables = shape_tables(chunk)
    table, schema = tables["ascii"]
    for _ in range(0, rows, chunk):  # chunks keep this process's memory small too
        pychro.write_frame(table, journal, schema, date=DAY)
    t0 = time.perf_counter()
    got = subprocess.run([sys.executable, __file__, "--memory-child", journal, schema, os.path.join(tmp, "m.parquet")],
                         check=True, capture_output=True, text=True)
    peak = int(got.stdout.split()[-1])
    print(f"\nto_parquet of {rows:,} rows (ascii shape): peak RSS {peak / 1024:.0f} MiB (bar < 1024 MiB), "
          f"{time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--only", help="comma-separated shape names")
    ap.add_argument("--scale", action="store_true", help="also time 10x the rows (read_table, to_parquet)")
    ap.add_argument("--memory", action="store_true", help="also the peak memory of to_parquet on 10 M rows")
    ap.add_argument("--row-groups", action="store_true",
                    help="only pq.write_table by row-group size, and the decode share of a one-row-group export")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--scale-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.scale_child:
        scale_child(args.scale_child[0], int(args.scale_child[1]), int(args.scale_child[2]))
        return
    only = args.only.split(",") if args.only else None
    tmp = tempfile.mkdtemp(prefix="pychro-bench-shapes-")
    try:
        if args.row_groups:
            row_group_check(only, args.rows, args.repeat, tmp)
            return
        results = {}
        for name, (table, schema) in shape_tables(args.rows).items():
            if only and name not in only:
                continue
            results[name] = one_shape(name, table, schema, args.rows, args.repeat, tmp)
            print(f"{name} done", file=sys.stderr, flush=True)
        print_table(results, args.rows)
        if args.scale:
            scale_check(only, args.rows, args.repeat)
        if args.memory:
            memory_check(10_000_000, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
