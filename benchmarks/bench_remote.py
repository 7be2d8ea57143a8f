"""Remote-journal rates over loopback: subscriber rows, Arrow batches, replication, remote append.

    python benchmarks/bench_remote.py [--messages N] [--repeat R] [--in-process]

A journal of N small messages (int32 + int64, a 12-byte body: 24 bytes a frame on the wire) is written, then
served by ``pychro serve``'s server in a separate process (``--in-process``: a thread of this process, which
then shares the GIL with the client). Printed, best of R runs:

* ``next_reader()``: messages/s through the row API, one ``read_int`` each (target >= 500 k msgs/s);
* ``iter_remote_batches``: rows/s decoded into Arrow record batches (target >= 5 M rows/s);
* ``raw socket``: frames/s a bare ``recv_into`` loop gets from the source (the server's own rate);
* ``replicate``: messages/s copied into a fresh local journal;
* ``remote append``: SUBMIT with an ACK per message, and pipelined ``submit_many``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import pychro
from pychro.remote import RemoteChronicleReader, RemoteChronicleWriter, iter_remote_batches, replicate, serve

_SERVER = """
import sys
from pychro.remote import serve
server = serve(sys.argv[1], allow_submit=True)
print(server.port, flush=True)
server.serve_forever()
"""


def make_journal(path: str, n: int) -> None:
    with pychro.VanillaChronicleWriter(path) as writer:
        appender = writer.get_appender()
        for i in range(n):
            appender.write_int(i)
            appender.write_long(i * 3)
            appender.finish()


def best(runs: int, fn: Callable[[], float]) -> float:
    return max(fn() for _ in range(runs))


def rows_api(port: int, n: int) -> float:
    with RemoteChronicleReader("127.0.0.1", port, "start", timeout=5) as reader:
        nxt = reader.next_reader
        t0 = time.perf_counter()
        total = 0
        for _ in range(n):
            total += nxt().read_int()
        elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2
    return n / elapsed


def arrow_batches(port: int, n: int) -> float:
    t0 = time.perf_counter()
    rows = 0
    for batch in iter_remote_batches("127.0.0.1", port, "i:int32,l:int64", timeout=5, follow=True):
        rows += batch.num_rows
        if rows >= n:
            break
    elapsed = time.perf_counter() - t0
    assert rows == n
    return n / elapsed


def raw_socket(port: int, n: int) -> float:
    want = 12 + n * 24
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(struct.pack("<qq", 1, -1))
        buf = bytearray(4 << 20)
        got = 0
        t0 = time.perf_counter()
        while got < want:
            got += sock.recv_into(buf)
        return n / (time.perf_counter() - t0)


def replication(port: int, n: int) -> float:
    target = tempfile.mkdtemp(prefix="pychro-bench-replica-")
    try:
        t0 = time.perf_counter()
        count = replicate("127.0.0.1", port, target, stop_after=n)
        elapsed = time.perf_counter() - t0
        assert count == n
        return n / elapsed
    finally:
        shutil.rmtree(target, ignore_errors=True)


def remote_append(n: int, pipelined: bool) -> float:
    target = tempfile.mkdtemp(prefix="pychro-bench-append-")
    try:
        with serve(target, background=True, allow_submit=True) as server, \
                RemoteChronicleWriter("127.0.0.1", server.port) as w:
            t0 = time.perf_counter()
            if pipelined:
                w.submit_many(struct.pack("<iq", i, i) for i in range(n))
            else:
                appender = w.get_appender()
                for i in range(n):
                    appender.write_int(i)
                    appender.write_long(i)
                    appender.finish()
            return n / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="serve from a thread of this process")
    args = parser.parse_args()
    n = args.messages
    workdir = tempfile.mkdtemp(prefix="pychro-bench-remote-")
    journal = os.path.join(workdir, "journal")
    proc = None
    server = None
    try:
        t0 = time.perf_counter()
        make_journal(journal, n)
        print(f"journal: {n:,} messages of 12 bytes written in {time.perf_counter() - t0:.1f} s")
        if args.in_process:
            server = serve(journal, background=True)
            port = server.port
        else:
            proc = subprocess.Popen([sys.executable, "-c", _SERVER, journal], stdout=subprocess.PIPE, text=True)
            port = int(proc.stdout.readline())  # type: ignore[union-attr]
        where = "in-process thread" if args.in_process else "separate process"
        print(f"source: {where} on 127.0.0.1:{port}; best of {args.repeat} runs")
        rate = best(args.repeat, lambda: rows_api(port, n))
        print(f"  next_reader() + read_int : {rate / 1e6:6.2f} M msgs/s   (target >= 0.5)")
        rate = best(args.repeat, lambda: arrow_batches(port, n))
        print(f"  iter_remote_batches      : {rate / 1e6:6.2f} M rows/s   (target >= 5)")
        rate = best(args.repeat, lambda: raw_socket(port, n))
        print(f"  raw socket (server rate) : {rate / 1e6:6.2f} M frames/s")
        m = min(n, 500_000)
        rate = best(args.repeat, lambda: replication(port, m))
        print(f"  replicate ({m:,} msgs): {rate / 1e6:6.2f} M msgs/s")
        m = min(n, 20_000)
        rate = best(1, lambda: remote_append(m, pipelined=False))
        print(f"  remote append, ACK each  : {rate / 1e3:6.1f} k msgs/s")
        m = min(n, 200_000)
        rate = best(1, lambda: remote_append(m, pipelined=True))
        print(f"  remote append, pipelined : {rate / 1e3:6.1f} k msgs/s")
    finally:
        if server is not None:
            server.close()
        if proc is not None:
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
