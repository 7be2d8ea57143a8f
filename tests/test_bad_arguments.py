"""Bad arguments and hostile inputs raise pychro errors or plain TypeError/ValueError with a clear message,
never OverflowError, struct.error, AttributeError, RecursionError or a raw OSError (issue 13)."""

from __future__ import annotations

import datetime as dt
import math
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pychro
from pychro.cli import main
from pychro.remote import wire as W

ALLOWED = (pychro.PychroError, TypeError, ValueError)
SCHEMA = pychro.Schema("ts:timestamp_ms,x:int64")


def _one_message_journal(path: Path) -> Path:
    """A journal of one message (ts, 7), for the tests to aim bad arguments at."""
    with pychro.VanillaChronicleWriter(path) as chron:
        appender = chron.get_appender()
        appender.write_long(1_709_510_400_000)
        appender.write_long(7)
        appender.finish()
    return path


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return _one_message_journal(tmp_path / "j")


def _write(path: Path, method: str, value: Any, **kw: Any) -> None:
    with pychro.VanillaChronicleWriter(path, **kw) as chron:
        appender = chron.get_appender()
        getattr(appender, method)(value)
        appender.finish()


# -- the cases listed in the issue -------------------------------------------------------------------------
def test_read_table_far_date(journal: Path) -> None:
    try:
        table = pychro.read_table(journal, SCHEMA, date=dt.date(9999, 12, 31))
    except ValueError as exc:  # either no rows or a clear error, never OverflowError
        assert "9999" in str(exc) or "cycle" in str(exc)
    else:
        assert table.num_rows == 0


@pytest.mark.parametrize("index", [2**63 - 1, 2**70, -1])
def test_reader_index_out_of_range(journal: Path, index: int) -> None:
    with pytest.raises(ValueError, match=r"full_index must be in 0\.\.0x"):
        pychro.VanillaChronicleReader(journal, full_index=index)
    with pychro.VanillaChronicleReader(journal) as reader, pytest.raises(ValueError, match="full_index"):
        reader.excerpt_at(index)


def test_reader_index_type(journal: Path) -> None:
    with pytest.raises(TypeError, match="full_index must be an int"):
        pychro.VanillaChronicleReader(journal, full_index=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("ms", [2**62, -5 * 86_400_000])
def test_writer_clock_out_of_range(tmp_path: Path, ms: int) -> None:
    """A clock far in the future, or before 1970 (a negative index no reader accepts), is refused."""
    with pytest.raises(ValueError, match=r"writer's clock .* outside the cycles a journal can hold"):
        _write(tmp_path / "j", "write_long", 1, clock=lambda: ms)
    assert not any((tmp_path / "j").iterdir())  # nothing written


def test_write_frame_pre_1970_and_far_future(tmp_path: Path) -> None:
    for when in ("1960-01-01", "2262-04-11"):
        df = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01", when]), "x": [1, 2]})
        if when.startswith("2262"):
            df["ts"] = [1_704_067_200_000, 2**62]  # ms since 1970: past year 9999
        with pytest.raises(ValueError, match=r"row 1: ts = .* outside the cycles a journal can hold"):
            pychro.write_frame(df, tmp_path / when, SCHEMA)


@pytest.mark.parametrize("method, value, error, match", [
    ("write_int", 2**40, ValueError, r"does not fit in a Java int \(-2\*\*31"),
    ("write_long", 1.5, TypeError, "takes an int, got float"),
    ("write_long", 2**64, ValueError, "does not fit in a Java long"),
    ("write_short", "1", TypeError, "takes an int, got str"),
    ("write_unsigned_int", -1, ValueError, "unsigned int"),
    ("write_byte", 1.0, TypeError, "takes an int"),
    ("write_double", "x", TypeError, "takes a float"),
    ("write_float", 1e300, ValueError, "float"),
    ("write_string", b"x", TypeError, "takes a str or None, got bytes"),
    ("write_stop_bit", 2**64, ValueError, "Java long"),
])
def test_field_values(tmp_path: Path, method: str, value: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _write(tmp_path / "j", method, value)


def test_unknown_cycle_time_zone() -> None:
    with pytest.raises(ValueError, match="cycle_time_zone 'Mars/Olympus' is not a known"):
        pychro.VanillaConfig(cycle_time_zone="Mars/Olympus")
    with pytest.raises(ValueError, match="cycle_time_zone"):
        pychro.VanillaConfig(cycle_time_zone="../../etc/passwd")
    with pytest.raises(TypeError, match="cycle_time_zone"):
        pychro.VanillaConfig(cycle_time_zone=3)  # type: ignore[arg-type]


def test_writer_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(pychro.JournalNotFoundError, match=r"is a file, not a folder|not a journal folder but a file"):
        pychro.VanillaChronicleWriter(path)
    with pytest.raises(pychro.JournalNotFoundError, match="part of its path is a file"):
        pychro.VanillaChronicleWriter(path / "below")


def test_symlink_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(pychro.JournalNotFoundError, match="symlink"):
        pychro.VanillaChronicleWriter(loop)
    with pytest.raises(pychro.PychroError):
        pychro.VanillaChronicleReader(loop).next_reader()


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of our own, remounted read-only (root ignores file modes, not a read-only mount)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        (mnt / "journal").mkdir()
        if subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode:
            pytest.skip("cannot remount the tmpfs read-only here")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_writer_on_a_read_only_mount(read_only_mount: Path) -> None:
    with pytest.raises(pychro.ReadOnlyJournalError, match="Read-only file system"):
        _write(read_only_mount / "journal", "write_long", 1)
    with pytest.raises(pychro.ReadOnlyJournalError, match="cannot create journal folder"):
        pychro.VanillaChronicleWriter(read_only_mount / "new")
    with pytest.raises(pychro.ReadOnlyJournalError, match="cannot create journal folder"):
        pychro.write_frame({"x": [1]}, read_only_mount / "new", "x:int64")  # a raw EROFS OSError before


def test_nested_schema_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    nested = b"[" * 100_000 + b"]" * 100_000
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({b"pychro.schema": nested}), path)
    with pytest.raises(ValueError, match="nested too deeply"):
        pychro.Schema.from_arrow(pq.read_schema(path))
    with pytest.raises(ValueError, match="nested too deeply"):
        from pychro.frames.export import import_file

        import_file(path, tmp_path / "j")


def test_remote_port_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"port must be in 1\.\.65535, got 70000"):
        pychro.RemoteChronicleReader("127.0.0.1", 70000)
    with pytest.raises(TypeError, match="port"):
        pychro.RemoteChronicleReader("127.0.0.1", 1.5)  # type: ignore[arg-type]


def test_replicate_from_a_source_sending_an_index_no_journal_holds(tmp_path: Path) -> None:
    """A hostile source answers the subscription with index (1 << 62) + 5."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def source() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                W.recv_exact(conn, W.REQUEST_SIZE)
                conn.sendall(W.FRAME_HEADER.pack(W.SYNC_IDX_LEN, W.IDX_TO_START)
                             + W.FRAME_HEADER.pack(8, (1 << 62) + 5) + struct.pack("<q", 1))
                conn.recv(16)  # until the client hangs up
            except OSError:
                pass

    thread = threading.Thread(target=source, daemon=True)
    thread.start()
    try:
        with pytest.raises(pychro.RemoteError, match="index outside"):
            pychro.remote.replicate("127.0.0.1", listener.getsockname()[1], tmp_path / "replica", timeout=2,
                                    reconnect=False)
    finally:
        listener.close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_timestamp_ns_into_ms_names_column_and_row(tmp_path: Path) -> None:
    ts = pd.to_datetime([1_704_067_200_000_000_000, 1_704_067_200_000_000_001], utc=True)
    with pytest.raises(ValueError, match=r"row 1: column 'ts': .*finer precision than .*timestamp_ms") as info:
        pychro.write_frame(pd.DataFrame({"ts": ts, "x": [1, 2]}), tmp_path / "j", SCHEMA)
    assert not isinstance(info.value, pa.ArrowInvalid)


def test_cli_schema_file_not_found(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["head", str(journal), "--schema", "nosuch.json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "pychro head: error: --schema file not found: nosuch.json"


def test_cli_import_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "nosuch.parquet"), str(tmp_path / "j")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file not found" in err and "Detail" not in err


# -- random argument values at the public API ----------------------------------------------------------------
WILD = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.sampled_from([2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.binary(max_size=8),
    st.dates(), st.datetimes(),
)
WRITE_METHODS = ["write_byte", "write_boolean", "write_short", "write_unsigned_short", "write_char", "write_int",
                 "write_unsigned_int", "write_long", "write_float", "write_double", "write_int24", "write_int48",
                 "write_stop_bit", "write_string", "write_utf", "write_compact_short", "write_compact_int",
                 "write_compact_long", "write_compact_unsigned_int", "write_compact_double", "write_enum",
                 "write_bytes"]
READER_METHODS = ["set_index", "excerpt_at", "set_date"]
CONFIG_ARGS = ["cycle", "cycle_format", "cycle_length_ms", "cycle_time_zone", "entries_per_cycle",
               "index_block_size", "data_block_size", "thread_id_bits", "message_capacity"]
READ_ARGS = ["date", "start", "end", "columns", "errors", "index", "config", "thread_id_bits", "metadata", "batch_rows",
             "threads", "timestamp_column", "stats", "progress"]
WRITE_FRAME_ARGS = ["date", "timestamp_column", "config", "thread_id_bits", "clock", "progress", "threads"]


def _call(fn: Any, *args: Any, **kw: Any) -> None:
    try:
        fn(*args, **kw)
    except ALLOWED:
        pass


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _one_message_journal(tmp_path_factory.mktemp("wild") / "j")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(WRITE_METHODS), value=WILD)
def test_random_field_values(tmp_path: Path, method: str, value: Any) -> None:
    with pychro.VanillaChronicleWriter(tmp_path / "wild") as chron:
        appender = chron.get_appender()
        _call(getattr(appender, method), value)
        appender._release() if hasattr(appender, "_release") else None


@settings(max_examples=150, deadline=None)
@given(method=st.sampled_from(READER_METHODS), value=WILD)
def test_random_reader_arguments(shared: Path, method: str, value: Any) -> None:
    with pychro.VanillaChronicleReader(shared) as reader:
        try:
            getattr(reader, method)(value)
        except (*ALLOWED, pychro.NoData):
            pass


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(["full_index", "date", "polling_interval", "thread_id_bits", "config"]), value=WILD)
def test_random_reader_constructor(shared: Path, name: str, value: Any) -> None:
    try:
        pychro.VanillaChronicleReader(shared, **{name: value}).close()
    except ALLOWED:
        pass


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(CONFIG_ARGS), value=WILD)
def test_random_config(name: str, value: Any) -> None:
    _call(pychro.VanillaConfig, **{name: value})


@settings(max_examples=60, deadline=None)
@given(value=WILD)
def test_random_schema(value: Any) -> None:
    _call(pychro.Schema, value)
    _call(pychro.Schema, [("a", value)])
    _call(pychro.Schema, [(value, "int64")])


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(READ_ARGS), value=WILD)
def test_random_read_arguments(shared: Path, name: str, value: Any) -> None:
    _call(pychro.read_table, shared, SCHEMA, **{name: value})
    _call(pychro.read_frame, shared, SCHEMA, **{name: value})


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(READ_ARGS), value=WILD)
def test_random_iter_batches_arguments(shared: Path, name: str, value: Any) -> None:
    _call(lambda: list(pychro.iter_batches(shared, SCHEMA, **{name: value})))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(WRITE_FRAME_ARGS), value=WILD)
def test_random_write_frame_options(tmp_path: Path, name: str, value: Any) -> None:
    if name == "clock":
        value = (lambda v: lambda: v)(value)  # a clock that returns the wild value
    data = {"x": [1, 2]} if name == "clock" else {"ts": [1_704_067_200_000, 1_704_067_200_001], "x": [1, 2]}
    _call(pychro.write_frame, data, tmp_path / "wfo", "x:int64" if name == "clock" else SCHEMA, **{name: value})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(capacity=WILD)
def test_random_start_excerpt(tmp_path: Path, capacity: Any) -> None:
    with pychro.VanillaChronicleWriter(tmp_path / "se") as chron:
        appender = chron.get_appender()
        try:
            appender.start_excerpt(capacity)
            appender.write_long(1)  # MessageTooLargeError when the capacity is below 8 bytes
            appender.finish()
        except ALLOWED:
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ts=WILD, x=WILD, date=st.one_of(st.none(), WILD))
def test_random_write_frame(tmp_path: Path, ts: Any, x: Any, date: Any) -> None:
    if isinstance(x, float) and math.isnan(x):
        x = None
    try:
        data = pa.table({"ts": pa.array([ts]), "x": pa.array([x])})
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return  # pyarrow cannot hold the value: not pychro's input
    _call(pychro.write_frame, data, tmp_path / "wf", SCHEMA, date=date)


@settings(max_examples=40, deadline=None)
@given(host=st.one_of(st.just("127.0.0.1"), WILD), port=WILD)
def test_random_remote_arguments(host: Any, port: Any) -> None:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return  # a valid port would connect (or wait to reconnect): not an argument error
    _call(pychro.RemoteChronicleReader, host, port, reconnect=False, connect_timeout=0.5)


@settings(max_examples=120, deadline=None)
@given(method=st.sampled_from(["set_offset", "advance", "read_fixed_string", "read_bytes", "get_bytes"]),
       value=WILD)
def test_random_excerpt_arguments(shared: Path, method: str, value: Any) -> None:
    with pychro.VanillaChronicleReader(shared) as reader:
        excerpt = reader.next_reader()
        fn = getattr(excerpt, method, None)
        if fn is not None:
            _call(fn, value)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["thread_id_bits", "config", "clock", "utcnow"]), value=WILD)
def test_random_writer_constructor(tmp_path: Path, name: str, value: Any) -> None:
    if name in ("clock", "utcnow"):
        value = (lambda v: lambda: v)(value)  # a clock that returns the wild value
    try:
        with pychro.VanillaChronicleWriter(tmp_path / "w", **{name: value}) as chron:
            appender = chron.get_appender()
            appender.write_long(1)
            appender.finish()
    except ALLOWED:
        pass


# -- arguments found by the sweeps below (each once killed the process or surfaced later as a raw error) -------
def test_write_frame_threads(tmp_path: Path) -> None:
    df = pd.DataFrame({"ts": [1_704_067_200_000], "x": [1]})
    with pytest.raises(ValueError, match=r"threads must be in 1\.\.256, got 1180591620717411303424"):
        pychro.write_frame(df, tmp_path / "j", SCHEMA, threads=2**70)  # used to start threads until killed
    with pytest.raises(TypeError, match="threads must be an int, got float"):
        pychro.write_frame(df, tmp_path / "j", SCHEMA, threads=1.5)  # type: ignore[arg-type]
    assert not (tmp_path / "j").exists()


def test_write_frame_date_and_clock(tmp_path: Path) -> None:
    df = pd.DataFrame({"ts": [1_704_067_200_000], "x": [1]})
    assert pychro.write_frame(df, tmp_path / "j", SCHEMA, date="2024-03-05")[0] >> 40 == 19787  # ISO, as readers
    with pytest.raises(ValueError, match="not an ISO date"):
        pychro.write_frame(df, tmp_path / "j", SCHEMA, date="yesterday")
    with pytest.raises(TypeError, match=r"clock\(\) must return epoch milliseconds as an int, got float"):
        pychro.write_frame({"x": [1]}, tmp_path / "j", "x:int64", clock=lambda: 1.5)


@pytest.mark.parametrize("kw, error, match", [
    ({"index_block_size": 2**70}, ValueError, r"at most 2\*\*30 bytes"),
    ({"data_block_size": 2**40}, ValueError, r"at most 2\*\*30 bytes"),
    ({"data_block_size": 1.5}, TypeError, "data_block_size must be an int"),
    ({"message_capacity": "1"}, TypeError, "message_capacity must be an int"),
    ({"cycle": None, "cycle_format": "yyyy", "cycle_length_ms": 2**70}, ValueError, "leaves no cycle"),
    ({"cycle": None, "cycle_format": "yyyy", "cycle_length_ms": 1.5}, TypeError, "cycle_length_ms must be an int"),
])
def test_config_sizes(kw: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pychro.VanillaConfig(**kw)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                                          ("0.1", TypeError)])
def test_polling_interval(journal: Path, value: Any, error: type) -> None:
    """Checked at once: time.sleep raised OverflowError (inf) or ValueError (NaN, < 0) at the end of the data."""
    with pytest.raises(error, match="polling_interval"):
        pychro.VanillaChronicleReader(journal, polling_interval=value)
    with pytest.raises(error, match="polling_interval"):
        pychro.RemoteChronicleReader("127.0.0.1", 1, polling_interval=value)


@pytest.mark.parametrize("name", ["timeout", "reconnect_timeout", "connect_timeout", "idle_timeout"])
def test_remote_timeouts(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        pychro.RemoteChronicleReader("127.0.0.1", 1, **{name: math.inf})
    with pytest.raises(TypeError, match=name):
        pychro.RemoteChronicleReader("127.0.0.1", 1, **{name: "1"})


def test_serve_port_out_of_range(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"port must be in 0\.\.65535 \(0: a free port\), got 70000"):
        pychro.remote.serve(journal, port=70000)  # bind() raised OverflowError
    assert main(["serve", str(journal), "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "pychro serve: port must be in 0..65535 (0: a free port), got 70000"


def test_cli_numbers_out_of_range(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["head", str(journal), "--schema", "ts:timestamp_ms,x:int64", "-n", str(10**30)]) == 2
    assert "out of range" in capsys.readouterr().err  # one line, no OverflowError traceback
    assert main(["demo", str(tmp_path / "d"), "--rows", "-5"]) == 2
    assert capsys.readouterr().err.strip() == "pychro demo: rows must be in 1..100,000,000, got -5"


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["host", "port", "max_connections", "heartbeat_interval", "poll_interval", "config"]),
       value=WILD)
def test_random_serve_arguments(shared: Path, name: str, value: Any) -> None:
    if name == "host" and isinstance(value, str):
        return  # a name lookup of random text: DNS, not argument checking
    if name == "port" and isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return  # binding a real port may meet one in use: not argument checking
    try:
        server = pychro.remote.serve(shared, **{name: value})
    except ALLOWED:
        return
    server.close()


def test_writer_path_too_long(tmp_path: Path) -> None:
    with pytest.raises(pychro.JournalNotFoundError, match="File name too long"):
        pychro.VanillaChronicleWriter(tmp_path / ("x" * 300))  # a raw ENAMETOOLONG OSError before


def test_excerpt_lengths_and_offsets(journal: Path) -> None:
    with pychro.VanillaChronicleReader(journal) as reader:
        excerpt = reader.next_reader()
        with pytest.raises(ValueError, match="n must be >= 0 bytes, got -1"):
            excerpt.read_bytes(-1)
        with pytest.raises(TypeError, match="offset must be an int, got float"):
            excerpt.set_offset(1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="num_bytes must be an int"):
            excerpt.advance("1")  # type: ignore[arg-type]
        assert excerpt.read_long() == 1_709_510_400_000  # nothing above moved the read position


def test_reader_date_as_iso_string(journal: Path) -> None:
    with pychro.VanillaChronicleReader(journal) as reader:
        first = reader.next_reader().index  # written today, by the wall clock
    day = pychro.VanillaConfig().cycle_datetime(first >> 40).date()
    with pychro.VanillaChronicleReader(journal, date=day.isoformat()) as reader:
        assert reader.next_reader().index == first
        reader.set_date(f"{day}T12:00")
        assert reader.next_reader().index == first
        with pytest.raises(ValueError, match="not an ISO date"):
            reader.set_date("yesterday")


@pytest.mark.parametrize("fmt", ["../yyyyMMdd", "yyyy/../MM", "/yyyyMMdd", "yyyy//MM", "'..'/yyyyMMdd", "yyyy\x00"])
def test_cycle_format_that_leaves_the_journal(fmt: str) -> None:
    """Folder names are joined to the journal path: '..', an absolute or an empty part would write elsewhere."""
    with pytest.raises(ValueError, match="outside the journal folder or empty"):
        pychro.VanillaConfig(cycle=None, cycle_format=fmt, cycle_length_ms=86_400_000)


@pytest.mark.parametrize("fmt, length", [("SSS", 86_400_000), ("yyyyMMdd", 3_600_000), ("yyyyMMddHH", 60_000)])
def test_cycle_format_coarser_than_the_cycle(fmt: str, length: int) -> None:
    """Two cycles in one folder would share (and overwrite) one index-0."""
    with pytest.raises(ValueError, match=f"cycle_format '{fmt}' does not name each cycle of {length} ms"):
        pychro.VanillaConfig(cycle=None, cycle_format=fmt, cycle_length_ms=length)


def test_write_frame_float32_overflow(tmp_path: Path) -> None:
    """1e300 into a float32 field became inf silently (the row writer's write_float refuses it)."""
    with pytest.raises(ValueError, match=r"row 1: column 'f' value 1e\+300 does not fit in a Java float"):
        pychro.write_frame({"f": [1.0, 1e300]}, tmp_path / "j", "f:float32")
    assert not (tmp_path / "j").exists()
    pychro.write_frame({"f": [math.inf, 1e-50]}, tmp_path / "j", "f:float32")  # inf stays inf; underflow is 0
    assert pychro.read_table(tmp_path / "j", "f:float32").column("f").to_pylist() == [math.inf, 0.0]


@pytest.mark.parametrize("data, match", [
    ({"x": [2**63]}, "column 'x' cannot be converted to Arrow: .*too large"),
    (pd.DataFrame({"x": [2**64]}, dtype=object), "column 'x' cannot be converted to Arrow"),
    ({"x": ["\ud800"]}, "column 'x' cannot be converted to Arrow: .*surrogates"),
    ({"x": [1], "y": [1, 2]}, "cannot be converted to an Arrow table: .*length"),
])
def test_write_frame_data_arrow_cannot_hold(tmp_path: Path, data: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:  # OverflowError and UnicodeEncodeError before
        pychro.write_frame(data, tmp_path / "j", "x:int64")
    assert type(info.value) is ValueError


def test_remote_writer_and_start_arguments() -> None:
    with pytest.raises(ValueError, match=r"port must be in 1\.\.65535, got 70000"):
        pychro.remote.RemoteChronicleWriter("127.0.0.1", 70000)  # tried to connect before
    with pytest.raises(ValueError, match="timeout"):
        pychro.remote.RemoteChronicleWriter("127.0.0.1", 1, timeout=math.inf)  # OverflowError from the socket
    for kw in ({"where": 2**70}, {"resume_after": 2**70}):  # indices no journal holds: refused before connecting
        with pytest.raises(ValueError, match=r"must be in 0\.\.0x"):
            pychro.RemoteChronicleReader("127.0.0.1", 1, reconnect=False, **kw)
