"""The ``pychro`` command line. ``main()`` parses arguments and calls the public API, nothing else.

Exit codes: 0 success, 1 the journal or data has a problem (errors, failed verify), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from . import _layout as L
from .config import VanillaConfig
from .errors import PychroError, PychroWarning

__all__ = ["main"]


def _config(args: argparse.Namespace) -> VanillaConfig:
    kw: dict[str, Any] = {}
    if args.cycle_format is not None or args.cycle_length_ms is not None:  # 0 or "" too: VanillaConfig refuses them
        kw.update(cycle=None, cycle_format=args.cycle_format, cycle_length_ms=args.cycle_length_ms)
    elif args.cycle:
        kw["cycle"] = args.cycle
    for name in ("cycle_time_zone", "entries_per_cycle", "index_block_size", "data_block_size",
                 "thread_id_bits", "message_capacity"):
        value = getattr(args, name)
        if value is not None:
            kw[name] = value
    return VanillaConfig(**kw)


def _when(text: str) -> int | _dt.datetime:
    """A full index (decimal or 0x hex) or an ISO date/time (UTC when naive)."""
    try:
        return int(text, 0)
    except ValueError:
        pass
    from .frames.timerange import parse_when  # the Python API's parser: the same instants, to the ns

    try:
        moment: _dt.datetime = parse_when(text, "bound")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a full index (decimal or 0x hex) nor an ISO date/time (2024-03-05T09:00)"
        ) from None
    return moment


def _date(text: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (YYYY-MM-DD)") from None


def _schema(text: str) -> Any:
    from .frames.schema import Schema

    if os.path.isfile(text):
        with open(text) as fh:
            try:
                return Schema.from_json(fh.read())
            except ValueError as exc:
                raise ValueError(f"--schema file {text}: {exc}") from None
    if text.lower().endswith(".json") or (os.sep in text and ":" not in text):
        raise FileNotFoundError(f"--schema file not found: {text}")  # a path, not "name:type,..." text
    return Schema.parse(text) if hasattr(Schema, "parse") else Schema(text)


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None  # None: automatic (a terminal and long work)


# -- commands ---------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from .journal import Journal

    journal = Journal(args.dir, _config(args))
    if journal.check_layout():
        print(f"journal          {journal.path}\nempty journal: no cycle folder yet")
        return 0
    info = journal.info()
    if args.json:
        out = dict(info, cycles=[{k: _json_value(k, v) for k, v in vars(c).items()} for c in info["cycles"]])
        out.update({k: _json_value(k, v) for k, v in info.items() if k != "cycles"})
        print(json.dumps(out, indent=2, default=str))
        return 0
    if info["thread_id_bits_detected"]:
        bits = "detected"
    else:
        bits = "given by --thread-id-bits" if args.thread_id_bits is not None else "host default"
    print(f"journal          {info['path']}")
    print(f"thread-id bits   {info['thread_id_bits']} ({bits})")
    print(f"messages         {info['messages']:,} in {len(info['cycles'])} cycles, "
          f"{info['bytes_on_disk']:,} bytes on disk")
    first, end = info["first_index"], info["end_index"]
    print(f"index range      {'-' if first is None else hex(first)} .. {'-' if end is None else hex(end - 1)}")
    if info["cycles"]:
        print(f"{'folder':<16} {'cycle':>8} {'messages':>12} {'index':>6} {'data':>6} {'bytes':>14}  first .. last")
    for c in info["cycles"]:
        span = "-" if c.first_index is None else f"{c.first_index:#x} .. {c.last_index:#x}"
        print(f"{c.folder:<16} {c.cycle:>8} {c.messages:>12,} {c.index_files:>6} {c.data_files:>6} "
              f"{c.bytes_on_disk:>14,}  {span}")
    return 0


def _json_value(key: str, value: Any) -> Any:
    """``info --json`` values: indices as hex strings (as everywhere in the CLI), times in ISO."""
    if key.endswith("_index") and isinstance(value, int) and not isinstance(value, bool):
        return hex(value)
    return value.isoformat() if isinstance(value, _dt.datetime) else value


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_journal

    cfg = _config(args)
    report = verify_journal(args.dir, config=cfg, date=args.date)
    print(report.summary())
    return 0 if report.ok else 1


# head with --errors skip stops looking after this many messages without one that matches the schema
HEAD_GIVE_UP = 1 << 20
_READ_BATCH = 65_536  # messages decoded per batch, whatever -n is (-n only says how many rows are shown)


def cmd_head_tail(args: argparse.Namespace) -> int:
    from functools import partial

    from . import frames
    from .frames.api import ReadStats
    from .journal import Journal

    if args.n < 0:
        raise ValueError("-n must be >= 0")
    if args.types:
        return _head_tail_types(args)
    if args.unknown != "raise":
        raise ValueError("--unknown is for --types")
    schema = _schema(args.schema)
    if "_index" in (args.columns or schema.names):
        raise ValueError("--schema names a field '_index', the name of the index column head and tail show: give "
                         "the field another name (messages carry no field names), or leave it out with --columns")
    journal = Journal(args.dir, _config(args))
    if journal.check_layout() and not args.follow:
        print(f"pychro {args.command}: empty journal: no cycle folder yet", file=sys.stderr)
        return 0
    strict = args.errors == "raise"
    stats = ReadStats()
    small = args.n <= _READ_BATCH and not args.follow  # one decoding thread: no work ahead of what is shown
    read = partial(frames.iter_batches, journal.path, schema, config=journal.config, index=True,
                   columns=args.columns, errors=args.errors, stats=stats, progress=False,
                   threads=1 if small else None,
                   batch_rows=_READ_BATCH if args.follow else min(_READ_BATCH, max(4_096, args.n)))
    out = _Rows(args.command, stats)
    if args.command == "tail":
        start = _tail_start(journal, args.n, strict)
        if args.follow:
            out.follow(read(start=start, follow=True, poll_interval=0.2))
            return 0
        out.show(read(start=start), args.n)
        return out.report(args.n, None)
    # head: the first n rows; -f then follows the messages committed after head started
    end = _end_index(journal, strict)
    rc = 0
    if end is not None:  # else no message yet: nothing to show before following
        out.show(read(end=end), args.n, give_up=HEAD_GIVE_UP)
        rc = out.report(args.n, lambda index: _messages_through(journal, index))
    if args.follow:
        if out.shown >= args.n and out.last_index is not None and end is not None and out.last_index + 1 < end:
            print(f"pychro head: following the messages committed from now on (from index {end:#x})",
                  file=sys.stderr, flush=True)
        out.follow(read(start=end, follow=True, poll_interval=0.2))
    return rc


def _types(path: str) -> Any:
    from .frames.types import MessageTypes

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--types file not found: {path}")
    return MessageTypes.from_json(path)


def _head_tail_types(args: argparse.Namespace) -> int:
    """head/tail with message types: the messages in index order, each as ``index type field=value ...``."""
    from . import frames
    from .frames.api import ReadStats
    from .journal import Journal

    types = _types(args.types)
    if args.columns:
        raise ValueError("--columns is for --schema; with --types every field of each type is shown")
    journal = Journal(args.dir, _config(args))
    if journal.check_layout() and not args.follow:
        print(f"pychro {args.command}: empty journal: no cycle folder yet", file=sys.stderr)
        return 0
    strict = args.errors == "raise"
    stats = ReadStats()
    read = partial(frames.iter_batches, journal.path, types, config=journal.config, index=True, errors=args.errors,
                   unknown=args.unknown, stats=stats, progress=False, threads=1)
    end = _end_index(journal, strict)
    if args.command == "tail":
        start = _tail_start(journal, args.n, strict)
    else:
        start, end = None, _nth_index(journal, args.n, strict)
    shown = 0
    if end is not None and args.n:
        shown += _print_typed(read(start=start, end=end), args.n)
    if args.follow:
        try:
            for name, batch in read(start=_end_index(journal, strict), follow=True, poll_interval=0.2):
                shown += _print_typed(iter([(name, batch)]), batch.num_rows)
        except KeyboardInterrupt:
            pass
    left_out = stats.skipped_rows + stats.unknown_rows
    if left_out:
        print(f"pychro {args.command}: skipped {stats.skipped_rows:,} messages that do not match their type"
              f"{' and ' + format(stats.unknown_rows, ',') + ' of no listed type' if stats.unknown_rows else ''}",
              file=sys.stderr)
    if left_out and not shown and args.n:  # as with --schema: every message read was left out
        print(f"pychro {args.command}: error: no row to show: every message read was left out", file=sys.stderr)
        return 1
    return 0


def _nth_index(journal: Any, n: int, strict: bool) -> int | None:
    """Full index one past the n-th message from the start (or past the last one)."""
    last = None
    for cycle in journal.cycles():
        count = journal.count(cycle, strict=strict)
        if count >= n:
            return int(journal.config.index_of(cycle, n))
        n -= count
        if count:
            last = int(journal.config.index_of(cycle, count))
    return last


def _print_typed(pairs: Any, n: int) -> int:
    """The first ``n`` rows of ``(type, batch)`` pairs in index order, one line each; returns how many."""
    rows: list[tuple[int, str]] = []
    for name, batch in pairs:
        text = _text(batch)
        keys = list(text.columns[1:])
        for index, values in zip(batch.column(0).to_pylist(), text.itertuples(index=False)):
            fields = "  ".join(f"{k}={v}" for k, v in zip(keys, values[1:]))
            rows.append((index, f"{index:#x}  {name}  {fields}".rstrip()))
    shown = sorted(rows)[:n]
    for _, line in shown:
        print(line, flush=True)
    return len(shown)


class _Rows:
    """Prints batches as one table (header once) and says what ``--errors skip``/``truncate`` left out."""

    def __init__(self, command: str, stats: Any) -> None:
        self.command, self.stats = command, stats
        self.shown = 0
        self.last_index: int | None = None
        self.gave_up = False
        self._header = True
        self._reported = 0

    def _print(self, batch: Any) -> None:
        if batch.num_rows:
            print(_text(batch).to_string(index=False, header=self._header), flush=True)
            self._header = False
            self.shown += batch.num_rows
            self.last_index = int(batch.column(0)[-1].as_py())

    def show(self, batches: Any, n: int, give_up: int | None = None) -> None:
        """Print the first ``n`` rows of ``batches``, then stop reading."""
        try:
            for batch in batches:
                if self.shown >= n:
                    break
                self._print(batch.slice(0, n - self.shown))
                if self.shown >= n:
                    break
                if give_up is not None and not self.shown and self.stats.skipped_rows >= give_up:
                    self.gave_up = True
                    break
        finally:
            batches.close()  # no decoding goes on after the rows are shown

    def follow(self, batches: Any) -> None:
        """Print every batch as it comes, and each time more messages were skipped, how many (until Ctrl-C)."""
        try:
            for batch in batches:
                self._print(batch)
                skipped = self.stats.skipped_rows
                if skipped > self._reported:
                    print(f"pychro {self.command}: skipped {skipped - self._reported:,} more messages that do not "
                          f"match the schema ({skipped:,} in all; --errors skip)", file=sys.stderr, flush=True)
                    self._reported = skipped
        finally:
            batches.close()

    def report(self, n: int, through: Any) -> int:
        """Say on stderr what was left out; 1 when rows were left out and none was shown."""
        stats, name = self.stats, f"pychro {self.command}"
        first = "" if stats.first_bad_index is None else f" (the first at index {stats.first_bad_index:#x})"
        if self.gave_up:
            print(f"{name}: error: none of the first {stats.skipped_rows:,} messages read matches the schema "
                  f"(--errors skip passed over them all){first}: stopped looking; check --schema", file=sys.stderr)
            return 1
        skipped = stats.skipped_rows
        if through is not None and self.shown >= n and self.last_index is not None and skipped:
            skipped = max(0, through(self.last_index) - self.shown)  # not those after the last row shown
            first = first if skipped else ""
        if skipped:
            print(f"{name}: skipped {skipped:,} messages that do not match the schema{first} (--errors skip)",
                  file=sys.stderr)
        if stats.truncated and self.shown < n:
            print(f"{name}: stopped at index {stats.first_bad_index:#x}, the first message that does not match the "
                  "schema (--errors truncate): the messages from there on are not shown", file=sys.stderr)
        if (skipped or (stats.truncated and self.shown < n)) and not self.shown and n:
            how = "skip" if skipped else "truncate"
            print(f"{name}: error: no row to show: every message read was left out by --errors {how}", file=sys.stderr)
            return 1
        return 0


def _end_index(journal: Any, strict: bool) -> int | None:
    """Full index one past the last committed message now (None for a journal with no message)."""
    for cycle in reversed(journal.cycles()):
        count = journal.count(cycle, strict=strict)
        if count:
            return int(journal.config.index_of(cycle, count))
    return None


def _messages_through(journal: Any, index: int) -> int:
    """Messages from the journal's first up to and including ``index``."""
    cycle, seq = journal.config.split_index(index)
    return sum(journal.count(c, strict=False) for c in journal.cycles() if c < cycle) + seq + 1


def _text(batch: Any) -> Any:
    """A batch as pandas for printing: ``_index`` in hex as ``info`` shows it, timestamps as CSV export writes
    them, nulls as ``null`` and a string that could be mistaken for one (``null``, empty, starting with a quote
    or with spaces at either end) in double quotes, JSON-style."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .frames.csv_text import timestamp_text

    df = batch.to_pandas()
    for pos, name in enumerate(batch.schema.names):
        col = batch.column(pos)
        if name == "_index":
            df[name] = [f"{int(i):#x}" for i in col.to_numpy(zero_copy_only=False)]  # at most -n rows
            continue
        if pa.types.is_list(col.type):  # a repeated group: its entries as JSON
            df[name] = [json.dumps(v, default=str, ensure_ascii=False) for v in col.to_pylist()]  # at most -n rows
            continue
        if pa.types.is_timestamp(col.type):
            col = timestamp_text(col)
        elif pa.types.is_string(col.type):
            escaped = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
            quoted = pc.binary_join_element_wise('"', escaped, '"', "")
            col = pc.if_else(pc.match_substring_regex(col, r'^(null)?$|^"|^\s|\s$'), quoted, col)
        elif not col.null_count:
            continue
        df[name] = col.cast(pa.string()).fill_null("null").to_numpy(zero_copy_only=False)
    return df


def _tail_start(journal: Any, n: int, strict: bool = True) -> int | None:
    """Full index of the n-th message from the end (None when the journal holds fewer)."""
    remaining = n
    for cycle in reversed(journal.cycles()):
        count = journal.count(cycle, strict=strict)
        if count >= remaining:
            return int(journal.config.index_of(cycle, count - remaining))
        remaining -= count
    return None


def cmd_export(args: argparse.Namespace) -> int:
    from .frames import export
    from .journal import Journal

    cfg = _config(args)
    if Journal(args.dir, cfg).check_layout():
        print("pychro export: empty journal: no cycle folder yet", file=sys.stderr)
    from .frames.api import ReadStats

    stats = ReadStats()
    if args.types:
        types = _types(args.types)
        columns: dict[str, list[str]] | None = None
        if args.columns:  # type.column names: the columns of each type named
            columns = {}
            for item in args.columns:
                name, _, col = item.partition(".")
                if not name or not col:
                    raise ValueError(f"with --types, --columns names type.column (e.g. trade.px), got {item!r}")
                columns.setdefault(name, []).append(col)
        fmt = args.format or "parquet"
        writer: Any = {"parquet": export.to_parquet, "ipc": export.to_ipc, "csv": export.to_csv}[fmt]
        got: dict[str, int] = writer(
            args.dir, types, args.to, date=args.date, start=args.start, end=args.end, config=cfg,
            partition_by=args.partition_by, progress=_progress(args), columns=columns, errors=args.errors,
            timestamp_column=args.timestamp_column, stats=stats, unknown=args.unknown,
            **({} if args.compression is None else {"compression": args.compression}),
        )
        rows = sum(got.values())
        print(f"exported {rows:,} rows to {args.to}: " + ", ".join(f"{n} {r:,}" for n, r in got.items()))
        if stats.unknown_rows:
            print(f"pychro export: skipped {stats.unknown_rows:,} messages whose tag names no type (--unknown skip)",
                  file=sys.stderr)
    else:
        if args.unknown != "raise":
            raise ValueError("--unknown is for --types")
        rows = export.export(
            args.dir, _schema(args.schema), args.to, fmt=args.format, date=args.date, start=args.start,
            end=args.end, config=cfg, partition_by=args.partition_by, compression=args.compression,
            progress=_progress(args), columns=args.columns, errors=args.errors,
            timestamp_column=args.timestamp_column, stats=stats,
        )
        print(f"exported {rows:,} rows to {args.to}")
    out = _Rows("export", stats)
    out.shown = rows
    return out.report(rows + 1, None)  # every row it read was exported: report all it left out


class _DataError(Exception):
    """The data given to a command is wrong (exit 1, as a journal problem), not the way it was called (exit 2)."""


def cmd_import(args: argparse.Namespace) -> int:
    from .frames import export

    if not os.path.exists(args.file):
        raise FileNotFoundError(f"file not found: {args.file}")
    from .frames.export_types import import_folder, is_types_folder

    if is_types_folder(args.file):  # written by export --types: every type, merged back in the journal's order
        if args.schema or args.date:
            raise ValueError("a --types export folder carries its message types: give neither --schema nor --date")
        try:
            got = import_folder(args.file, args.dir, config=_config(args), progress=_progress(args))
        except ValueError as exc:  # an incomplete or mixed folder, a row that does not fit ...
            if isinstance(exc, PychroError):
                raise
            raise _DataError(str(exc)) from None
        print(f"imported {sum(got.values()):,} rows into {args.dir}: "
              + ", ".join(f"{n} {r:,}" for n, r in got.items()))
        return 0
    schema = args.schema and _schema(args.schema)
    if os.path.isdir(args.file):
        try:
            export.check_parquet_folder(args.file)
        except ValueError as exc:
            raise _DataError(str(exc)) from None
    if export.file_format(args.file) is None:
        raise ValueError(f"cannot tell the format of {args.file!r}: use .parquet, .arrow, .feather or .csv")
    try:
        columns = _file_columns(args.file)
    except ValueError as exc:  # an empty or unreadable file
        raise _DataError(str(exc)) from None
    if schema is not None and not args.drop_extra_columns:
        named = {f.name for f in schema.fields} | {"_index", "_cycle", "_seq"}  # pychro's own columns go
        extra = [c for c in columns if c not in named]
        if extra:
            raise ValueError(f"{args.file} has columns that --schema does not name: {', '.join(extra)}; add them "
                             "to --schema, or pass --drop-extra-columns to leave them out")
    if export.file_format(args.file) == "csv" and schema is None:
        raise ValueError("importing CSV needs --schema: CSV files carry no pychro metadata")
    cfg = _config(args)
    try:
        rows = export.import_file(args.file, args.dir, schema, date=args.date, config=cfg, progress=_progress(args))
    except ValueError as exc:  # a row that does not fit the schema, a text that is not a time ...
        if isinstance(exc, PychroError) or "(schema=)" in str(exc):
            raise
        raise _DataError(str(exc)) from None
    print(f"imported {rows:,} rows into {args.dir}")
    return 0


def _file_columns(path: str) -> list[str]:
    """Column names of a file ``import`` takes, read from its header or footer only."""
    import pyarrow as pa

    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) or ext in (".parquet", ".pq"):
        import pyarrow.dataset as ds

        return list(ds.dataset(path, format="parquet").schema.names)
    if ext in (".arrow", ".feather", ".ipc"):
        with pa.memory_map(path) as source:
            return list(pa.ipc.open_file(source).schema.names)
    if ext == ".csv":
        from .frames.csv_import import read_header

        return read_header(path)[0]
    return []  # import_file names the formats it takes


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir, rows=args.rows)


def _connections(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of connections, got {text!r}")
    return n


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .remote import serve

    # the server's log lines (refused clients and SUBMITs, dropped sessions) go to stderr with a time
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    limits = {} if args.max_connections is None else {"max_connections": args.max_connections}
    with serve(args.dir, host=args.host, port=args.port, config=_config(args), allow_submit=args.allow_append,
               **limits) as server:
        mode = "read-write: any client may append" if args.allow_append else "read-only"
        print(f"serving {args.dir} on {args.host}:{server.port} ({mode}; Ctrl-C to stop)", flush=True)
        server.serve_forever()  # Ctrl-C: main() reports it, the with block stops the server
    return 0


def cmd_replicate(args: argparse.Namespace) -> int:
    from .remote import replicate

    host, _, port = args.source.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"source must be HOST:PORT, got {args.source!r}")
    count = replicate(host, int(port), args.dir, config=_config(args), timeout=args.timeout,
                      late_grace=args.late_grace)
    # replicate returns only once nothing new came for --timeout seconds (> 0): the copy had caught up then
    print(f"replicated {count:,} messages into {args.dir} (caught up: nothing new for {args.timeout:g} s)")
    return 0


# -- parser ---------------------------------------------------------------------------------------------------
def _columns(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--columns needs at least one field name")
    return names


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", type=_columns, help="comma-separated fields to show/export (default: all)")
    p.add_argument("--errors", choices=["raise", "skip", "truncate"], default="raise",
                   help="messages that do not match the schema: fail (default), drop them, or stop before the first")


def _add_config(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("journal format (defaults equal Java's)")
    g.add_argument("--cycle", choices=["DAYS", "HOURS", "MINUTES", "SECONDS"])
    g.add_argument("--cycle-format", help="Java SimpleDateFormat of folder names (custom cycle)")
    g.add_argument("--cycle-length-ms", type=int, help="cycle length in ms (custom cycle)")
    g.add_argument("--cycle-time-zone")
    g.add_argument("--entries-per-cycle", type=int)
    g.add_argument("--index-block-size", type=int)
    g.add_argument("--data-block-size", type=int)
    g.add_argument("--thread-id-bits", type=int, help="default: detected from the journal")
    g.add_argument("--message-capacity", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pychro", description="Chronicle-Queue 3.x (Vanilla) journals from the shell."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="cycles, messages, files, thread-id bits, index range")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check every committed message; exit 1 when anything is wrong")
    p.add_argument("dir")
    p.add_argument("--date", type=_date)
    p.set_defaults(func=cmd_verify)

    for name in ("head", "tail"):
        p = sub.add_parser(name, help=f"print the {'first' if name == 'head' else 'last'} messages with a schema")
        p.add_argument("dir")
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--schema", help='"ts:timestamp_ms,px:float64,..." or a JSON file')
        g.add_argument("--types", help="a message types JSON file (pychro.MessageTypes.to_json): each message is "
                                       "shown with its type's name and fields")
        p.add_argument("-n", type=int, default=10)
        p.add_argument("-f", "--follow", action="store_true", help="keep printing new messages")
        p.add_argument("--unknown", choices=["raise", "skip"], default="raise",
                       help="with --types: messages whose tag names no type: fail (default) or skip them")
        _add_read_options(p)
        p.set_defaults(func=cmd_head_tail)

    p = sub.add_parser("export", help="write messages to .parquet, .arrow/.feather or .csv")
    p.add_argument("dir")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--schema")
    g.add_argument("--types", help="a message types JSON file: one file per type, in the --to folder")
    p.add_argument("--to", required=True, help="output file (format from its extension) or folder")
    p.add_argument("--format", choices=["parquet", "ipc", "csv"],
                   help="output format (default: from --to's extension; parquet for a folder)")
    p.add_argument("--unknown", choices=["raise", "skip"], default="raise",
                   help="with --types: messages whose tag names no type: fail (default) or skip them")
    p.add_argument("--date", type=_date)
    p.add_argument("--from", dest="start", type=_when,
                   help="full index, or ISO date/time (UTC when naive): rows whose timestamp field is at or after it")
    p.add_argument("--to-index", "--until", dest="end", type=_when,
                   help="end (exclusive): full index, or ISO date/time (UTC when naive) compared with the "
                        "timestamp field")
    p.add_argument("--timestamp-column", help="the timestamp_* field --from/--until compare with (default: the first)")
    _add_read_options(p)
    p.add_argument("--partition-by", choices=["date"])
    p.add_argument("--compression", default=None)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="append rows of a .parquet/.arrow/.csv file (or a --types export folder) "
                                      "to a journal")
    p.add_argument("file")
    p.add_argument("dir")
    p.add_argument("--schema", help="default: the schema stored in the file by pychro export")
    p.add_argument("--date", type=_date, help="target cycle (default: per row from the first timestamp column)")
    p.add_argument("--drop-extra-columns", action="store_true",
                   help="leave out the file's columns that --schema does not name (default: an error)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("demo", help="build a sample journal, read it and export it to Parquet")
    p.add_argument("dir", nargs="?", default="pychro-demo")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="serve a journal to Chronicle 3.x TCP clients (Java sinks, pychro)")
    p.add_argument("dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--allow-append", action="store_true",
                   help="accept remote appends (SUBMIT) from any client: there is no authentication")
    p.add_argument("--max-connections", type=_connections, metavar="N",
                   help="most clients served at once; later ones are disconnected and logged (default 256)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("replicate", help="keep a local copy of a remote journal")
    p.add_argument("source", metavar="HOST:PORT")
    p.add_argument("dir")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop once nothing new has come for S seconds (S > 0: the copy has caught up then); "
                        "without it replicate runs until interrupted")
    p.add_argument("--late-grace", type=float, default=L.LATE_COMMIT_GRACE_S, metavar="S",
                   help="seconds a cycle the stream has left is still checked for late commits (default %(default)g)")
    p.set_defaults(func=cmd_replicate)

    for action in sub.choices.values():
        if action.prog.split()[-1] != "demo":
            _add_config(action)
        else:
            action.set_defaults(**{k: None for k in ("cycle", "cycle_format", "cycle_length_ms", "cycle_time_zone",
                                                     "entries_per_cycle", "index_block_size", "data_block_size",
                                                     "thread_id_bits", "message_capacity")})
        action.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    return parser


# library messages name Python arguments; the CLI's name its options (the keys are matched as words)
_OPTIONS = [
    ("a custom cycle (cycle=None) needs", "a custom cycle needs"),
    ("errors='skip' or 'truncate'", "--errors skip or --errors truncate"),
    ("errors='skip'", "--errors skip"), ("errors='truncate'", "--errors truncate"),
    ("unknown='skip'", "--unknown skip"),
    ("needs cycle_format and cycle_length_ms", "needs --cycle-format and --cycle-length-ms"),
    ("timestamp_column=", "--timestamp-column "), ("timestamp_column", "--timestamp-column"),
    ("columns=", "--columns "), ("compression=", "--compression "), ("(schema=)", "(--schema)"),
    ("partition_by=", "--partition-by "), ("out=", "--to "),
]


def _cli_words(text: str) -> str:
    import re

    for python, option in _OPTIONS:
        text = re.sub(rf"(?<![\w-]){re.escape(python)}", option.replace("\\", "\\\\"), text)
    return re.sub(r"(--[\w-]+)  ", r"\1 ", text)  # "columns= names ...": one space after the option


def _warn(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"pychro: warning: {_cli_words(str(message))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pychro`` console script."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default", PychroWarning)  # shown (once each), not raised
        warnings.showwarning = _warn  # one line, no source line (e.g. a damaged index read past)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. `pychro head ... | head -1`: the reader has all it wanted
        # stdout may still hold output that Python would flush at exit into the closed pipe: point it elsewhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (PychroError, OSError, _DataError) as exc:
        # advice in library messages names the Python argument; here the option is --errors
        print(f"pychro {args.command}: error: {_cli_words(str(exc))}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pychro {args.command}: {_cli_words(str(exc))}", file=sys.stderr)
        return 2
    except OverflowError as exc:  # a number too large for where it goes (e.g. -n 10**30): a usage error too
        print(f"pychro {args.command}: a number is out of range: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback, the shell's 128 + SIGINT
        print(f"pychro {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
