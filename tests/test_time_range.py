"""Datetime start/end select rows by the schema's timestamp field, in every read and export path (issue 13).

A three-day journal is read 09:00-17:30 of its middle day through read_table, read_frame, iter_batches,
to_parquet/to_ipc/to_csv (plain and partitioned), read_dask and ``pychro export --from/--until``; every result
must equal a pandas filter of the full read.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import pychro
from pychro.cli import main
from pychro.frames import ReadStats, iter_batches, read_frame, read_table, timerange
from pychro.frames.export import to_csv, to_ipc, to_parquet

S = "ts:timestamp_ms,sym:string,px:float64,ts2:timestamp_us"
DAY0 = pd.Timestamp("2024-03-04", tz="UTC")
T0 = pd.Timestamp("2024-03-05 09:00", tz="UTC")
T1 = pd.Timestamp("2024-03-05 17:30", tz="UTC")
ISO0, ISO1 = "2024-03-05T09:00", "2024-03-05T17:30"


def _frame(n: int, seed: int, shuffle_within_day: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ms = np.sort(rng.integers(0, 3 * 86_400_000, n))
    if shuffle_within_day:  # index order no longer follows time inside a day (each row still in its own day)
        day = ms // 86_400_000
        ms = np.concatenate([rng.permutation(ms[day == d]) for d in range(3)])
    ts = DAY0 + pd.to_timedelta(ms, unit="ms")
    return pd.DataFrame({"ts": ts, "sym": rng.choice(["A", "BB", None], n), "px": rng.random(n),
                         "ts2": ts + pd.to_timedelta(rng.integers(0, 999, n), unit="us")})


@pytest.fixture(autouse=True, params=["one-batch", "many-batches"])
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: each day's timestamp column searched in one batch, and in batches of 100 rows (the
    order check and the bounds then cross batch boundaries)."""
    if request.param == "many-batches":
        monkeypatch.setattr(timerange, "SCAN_ROWS", 100)
    return str(request.param)


@pytest.fixture(scope="module")
def three_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("time-range") / "j"
    pychro.write_frame(_frame(30_000, 1), root, S)
    full = read_frame(root, S)
    assert sorted(p.name for p in root.iterdir()) == ["20240304", "20240305", "20240306"]
    return root, full


def _want(full: pd.DataFrame, t0: Any = T0, t1: Any = T1, column: str = "ts") -> pd.DataFrame:
    keep = np.ones(len(full), bool)
    if t0 is not None:
        keep &= (full[column] >= t0).to_numpy()
    if t1 is not None:
        keep &= (full[column] < t1).to_numpy()
    return full[keep].reset_index(drop=True)


def _narrow(root: Path) -> tuple[int, int, bool]:
    """timerange.narrow on 2024-03-05 for 09:00-17:30: (first seq, end seq, timestamps in order)."""
    from pychro.frames.api import _Read
    from pychro.frames.decode import Plan
    from pychro.frames.scan import CycleFiles

    r = _Read(root, S, None, ISO0, ISO1, None, "raise", False, None, None, None)
    files = CycleFiles(r.journal, pychro.open(root).cycles()[1])
    assert r.time is not None
    return timerange.narrow(files, r.time, Plan(r.schema, ["ts"]), 0, files.count())


def _same(got: Any, want: pd.DataFrame) -> None:
    if isinstance(got, pa.Table):
        got = got.to_pandas(types_mapper=pd.ArrowDtype)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)


def test_every_read_path_returns_exactly_the_rows_in_range(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    want = _want(full)
    assert 0 < len(want) < len(full[full.ts.dt.day == 5])  # a part of one day, not the whole day
    _same(read_table(root, S, start=ISO0, end=ISO1), want)
    _same(read_frame(root, S, start=T0.to_pydatetime(), end=T1.to_pydatetime()), want)
    _same(read_frame(root, S, start=T0, end=T1, batch_rows=1000, threads=2), want)  # pandas Timestamps
    _same(pa.Table.from_batches(list(iter_batches(root, S, start=ISO0, end=ISO1, batch_rows=777))), want)
    stats = ReadStats()
    read_table(root, S, start=ISO0, end=ISO1, stats=stats)
    assert stats.rows == len(want) and stats.cycles == 1
    day = int(full.ts.searchsorted(pd.Timestamp("2024-03-05", tz="UTC")))
    assert _narrow(root) == (int(full.ts.searchsorted(T0)) - day, int(full.ts.searchsorted(T1)) - day, True)


@pytest.mark.timeout(60)
def test_follow_with_a_datetime_end_ends_once_a_later_cycle_exists(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    batches = iter_batches(root, S, start=ISO0, end=ISO1, follow=True, poll_interval=0.01)
    _same(pa.Table.from_batches(list(batches)), _want(full))


def test_bounds_are_utc_when_naive_and_converted_when_aware(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    want = _want(full)
    _same(read_frame(root, S, start=dt.datetime(2024, 3, 5, 9), end=dt.datetime(2024, 3, 5, 17, 30)), want)
    paris = zoneinfo.ZoneInfo("Europe/Paris")  # UTC+1 in March
    _same(read_frame(root, S, start=dt.datetime(2024, 3, 5, 10, tzinfo=paris), end="2024-03-05T18:30+01:00"), want)


def test_open_bounds_dates_and_sub_unit_precision(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    _same(read_frame(root, S, start=ISO0), _want(full, T0, None))
    _same(read_frame(root, S, end=ISO1), _want(full, None, T1))
    _same(read_frame(root, S, start=dt.date(2024, 3, 5), end=dt.date(2024, 3, 6)),
          _want(full, pd.Timestamp("2024-03-05", tz="UTC"), pd.Timestamp("2024-03-06", tz="UTC")))
    # a bound between two milliseconds: ts >= start means ts >= the next whole millisecond
    t = full.ts.iloc[12_345]
    odd = t + pd.Timedelta(microseconds=1)
    _same(read_frame(root, S, start=odd, end=odd + pd.Timedelta(hours=1)),
          _want(full, odd, odd + pd.Timedelta(hours=1)))


def test_timestamp_column_picks_another_field(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    t0 = full.ts2.iloc[15_000]
    t1 = full.ts2.iloc[15_100]
    got = read_frame(root, S, start=t0, end=t1, timestamp_column="ts2", columns=["px"], index=True)
    want = _want(full, t0, t1, column="ts2")
    assert len(got) == len(want) == 100
    np.testing.assert_array_equal(got.px.to_numpy(), want.px.to_numpy())
    with pytest.raises(ValueError, match="timestamp_column='px' is a float64 field"):
        read_table(root, S, start=t0, timestamp_column="px")
    with pytest.raises(ValueError, match="not a field"):
        read_table(root, S, start=t0, timestamp_column="nope")


def test_projection_without_the_timestamp_column(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    got = read_frame(root, S, start=ISO0, end=ISO1, columns=["px"], metadata=["seq"])
    want = _want(full)
    assert list(got.columns) == ["_seq", "px"]
    np.testing.assert_array_equal(got.px.to_numpy(), want.px.to_numpy())


def test_full_indices_still_select_by_index_and_date_takes_iso(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    idx = read_table(root, S, index=True, columns=["px"])["_index"].to_numpy()
    got = read_table(root, S, start=int(idx[100]), end=int(idx[200]))
    assert got.num_rows == 100
    day = read_table(root, S, date="2024-03-05")
    assert day.equals(read_table(root, S, date=dt.date(2024, 3, 5)))
    assert day.num_rows == int((full.ts.dt.day == 5).sum())
    assert read_table(root, S, date=("2024-03-04", "2024-03-05")).num_rows == int((full.ts.dt.day <= 5).sum())
    with pytest.raises(ValueError, match="not an ISO date"):
        read_table(root, S, date="5 March")
    with pytest.raises(ValueError, match="neither a full index"):
        read_table(root, S, start="yesterday")


def test_a_reversed_range_is_an_error_not_an_empty_result(three_days: tuple[Path, pd.DataFrame],
                                                          tmp_path: Path) -> None:
    """start after end (swapped bounds, a typo in a date) raises, as a reversed date= pair does; so does start ==
    end (``--from D --until D`` typed as an inclusive day): an empty range is never what was meant."""
    root, _ = three_days
    idx = read_table(root, S, index=True, columns=["px"])["_index"].to_numpy()
    with pytest.raises(ValueError, match="is after end"):
        read_table(root, S, start=ISO1, end=ISO0)
    with pytest.raises(ValueError, match="is after end"):
        read_frame(root, S, start=dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC), end=dt.date(2024, 3, 5))
    with pytest.raises(ValueError, match="is after end"):
        read_table(root, S, start=int(idx[200]), end=int(idx[100]))
    with pytest.raises(ValueError, match="is after end"):
        list(iter_batches(root, S, start=ISO1, end=ISO0))
    with pytest.raises(ValueError, match="is an empty range"):
        read_table(root, S, start=ISO0, end=ISO0)
    with pytest.raises(ValueError, match="is an empty range"):
        read_table(root, S, start=int(idx[100]), end=int(idx[100]))
    assert main(["export", str(root), "--schema", S, "--to", str(out := tmp_path / "x.csv"), "--from", "2024-03-05",
                 "--until", "2024-03-05"]) == 2
    assert not out.exists()
    out = tmp_path / "never.parquet"
    assert main(["export", str(root), "--schema", S, "--to", str(out), "--from", ISO1, "--until", ISO0]) == 2
    assert not out.exists()


def test_a_schema_without_a_timestamp_field_refuses_datetime_bounds(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, _ = three_days
    with pytest.raises(ValueError, match="no timestamp_ms/us/ns field"):
        read_table(root, "t:int64,sym:string,px:float64,t2:int64", start=ISO0, end=ISO1)
    with pytest.raises(ValueError, match="no timestamp_ms/us/ns field"):
        to_parquet(root, "t:int64,sym:string,px:float64,t2:int64", "never.parquet", start=ISO0)
    assert not Path("never.parquet").exists()


def test_exports_and_cli_write_exactly_the_rows_in_range(three_days: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, full = three_days
    want = _want(full)
    assert to_parquet(root, S, tmp_path / "a.parquet", start=ISO0, end=ISO1) == len(want)
    _same(pq.read_table(tmp_path / "a.parquet"), want)
    assert to_ipc(root, S, tmp_path / "a.arrow", start=ISO0, end=ISO1) == len(want)
    with pa.memory_map(str(tmp_path / "a.arrow")) as src:
        _same(pa.ipc.open_file(src).read_all(), want)
    assert to_csv(root, S, tmp_path / "a.csv", start=ISO0, end=ISO1, columns=["px"]) == len(want)
    np.testing.assert_allclose(pacsv.read_csv(tmp_path / "a.csv")["px"].to_numpy(), want.px.to_numpy())
    assert to_parquet(root, S, tmp_path / "parts", start=ISO0, end=ISO1, partition_by="date") == len(want)
    assert [p.name for p in (tmp_path / "parts").iterdir()] == ["date=2024-03-05"]
    _same(pq.read_table(tmp_path / "parts" / "date=2024-03-05" / "part-0.parquet"), want)
    out = tmp_path / "cli.parquet"
    assert main(["export", str(root), "--schema", S, "--to", str(out), "--from", ISO0, "--until", ISO1]) == 0
    _same(pq.read_table(out), want)


def test_read_dask_and_parallel_export(three_days: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    pytest.importorskip("dask.dataframe")
    root, full = three_days
    want = _want(full)
    ddf = pychro.read_dask(root, S, start=ISO0, end=ISO1, partition_rows=1000)
    _same(ddf.compute(scheduler="sync"), want)
    import dask

    with dask.config.set(scheduler="sync"):
        n = to_parquet(root, S, tmp_path / "d", start=ISO0, end=ISO1, partition_by="date", parallel=True)
    assert n == len(want)
    _same(pq.read_table(tmp_path / "d" / "date=2024-03-05" / "part-0.parquet"), want)


def test_unordered_timestamps_fall_back_to_a_filter(tmp_path: Path) -> None:
    root = tmp_path / "j"
    pychro.write_frame(_frame(9_000, 2, shuffle_within_day=True), root, S, date=None)
    full = read_frame(root, S)
    assert not full.ts.is_monotonic_increasing
    _same(read_frame(root, S, start=ISO0, end=ISO1, batch_rows=500), _want(full))
    _same(pa.Table.from_batches(list(iter_batches(root, S, start=ISO0, end=ISO1, threads=2, batch_rows=300))),
          _want(full))


def test_disorder_near_a_bound_is_found_and_filtered(tmp_path: Path, search: str) -> None:
    """Samples in order but rows around 09:00 swapped (two writers committing out of step): the window check
    sees it and the day is filtered instead; the result is exact either way."""
    frame = _frame(9_000, 4)
    near = int(frame.ts.searchsorted(T0))
    day = int(frame.ts.searchsorted(pd.Timestamp("2024-03-05", tz="UTC")))  # seq 0 of 2024-03-05
    order = np.arange(len(frame))
    order[[near - 3, near + 2]] = order[[near + 2, near - 3]]  # one row after 09:00 now comes before one before
    root = tmp_path / "j"
    pychro.write_frame(frame.iloc[order].reset_index(drop=True), root, S)
    full = read_frame(root, S)
    _same(read_frame(root, S, start=ISO0, end=ISO1), _want(full))
    first, end, ordered = _narrow(root)
    assert not ordered and (first, end) == (near - 3 - day, int(frame.ts.searchsorted(T1)) - day)


def test_rows_backfilled_far_from_the_bounds_are_found(tmp_path: Path, search: str) -> None:
    """A day in time order but for two rows of 12:00-13:00 written among the rows of 20:00 (a late backfill): far
    from both bounds, but in range, so they are returned (a check on samples of the column would not see them)."""
    frame = _frame(9_000, 5)
    late = frame[(frame.ts >= pd.Timestamp("2024-03-05 12:00", tz="UTC"))
                 & (frame.ts < pd.Timestamp("2024-03-05 13:00", tz="UTC"))].iloc[:2]
    at = int(frame.ts.searchsorted(pd.Timestamp("2024-03-05 20:00", tz="UTC")))
    backfilled = pd.concat([frame.iloc[:at], late, frame.iloc[at:]], ignore_index=True)
    root = tmp_path / "j"
    pychro.write_frame(backfilled, root, S)
    full = read_frame(root, S)
    got = read_frame(root, S, start=ISO0, end=ISO1)
    _same(got, _want(full))
    assert len(got) == int(((backfilled.ts >= T0) & (backfilled.ts < T1)).sum())


def test_cycles_and_rows_outside_the_range_are_not_decoded(tmp_path: Path) -> None:
    """A message that does not match the schema, outside the range, fails a whole-day read but not the range read:
    only the timestamp column of the partly covered day is looked at, and the other days not at all."""
    root = tmp_path / "j"
    frame = _frame(9_000, 3)
    pychro.write_frame(frame, root, S)
    early = frame[frame.ts < pd.Timestamp("2024-03-05 01:00", tz="UTC")]
    with pychro.VanillaChronicleWriter(root, clock=lambda: int(early.ts.iloc[-1].value // 10**6)) as w:
        a = w.get_appender()
        a.write_long(int(early.ts.iloc[-1].value // 10**6))  # ts, then nothing the schema expects
        a.finish()
    with pytest.raises(pychro.SchemaMismatchError):
        read_table(root, S, date="2024-03-05")
    # day 2024-03-04 damaged beyond reading: not opened for a range inside 2024-03-05
    for data in (root / "20240304").glob("data-*"):
        data.write_bytes(b"\xff" * 64)
    full_day5 = read_frame(root, S, date="2024-03-05", errors="skip")
    _same(read_frame(root, S, start=ISO0, end=ISO1), _want(full_day5))


def test_numpy_datetime64_bounds_and_date(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    t0, t1 = np.datetime64("2024-03-05T09:00"), np.datetime64("2024-03-05T17:30:00.000000001")
    _same(read_table(root, S, start=t0, end=t1), _want(full, T0, T1 + pd.Timedelta(1, "ns")))
    day = full[(full.ts >= pd.Timestamp("2024-03-05", tz="UTC")) & (full.ts < pd.Timestamp("2024-03-06", tz="UTC"))]
    _same(read_table(root, S, date=np.datetime64("2024-03-05")), day.reset_index(drop=True))
    for bad in ({"start": np.datetime64("NaT")}, {"end": pd.NaT}, {"date": np.datetime64("NaT")}):
        with pytest.raises(ValueError, match="NaT"):
            read_table(root, S, **bad)


@pytest.mark.parametrize("start,end", [(ISO0, 0x4c000000000000), (1, T1), (T0, 10**12)])
def test_a_full_index_beside_a_time_is_an_error(three_days: tuple[Path, pd.DataFrame], start: Any, end: Any,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An int beside a datetime is most often an epoch count meant as a time: refused, not read as an index."""
    root, _ = three_days
    with pytest.raises(ValueError, match="mix a full index"):
        read_table(root, S, start=start, end=end)
    out = tmp_path / "x.parquet"
    assert main(["export", str(root), "--schema", S, "--from", str(start) if isinstance(start, int) else ISO0,
                 "--until", str(end) if isinstance(end, int) else ISO1, "--to", str(out)]) == 2  # a usage error
    assert "mix a full index" in capsys.readouterr().err
    assert not out.exists()


def test_iso_bounds_keep_nanoseconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ISO text finer than microseconds (as exports print timestamp_ns) is exact, not cut to microseconds."""
    root, schema = tmp_path / "ns", "t:timestamp_ns,v:int64"
    ts = pd.to_datetime(["2024-03-05 09:00:00.123456789", "2024-03-05 09:00:00.123456999"], utc=True)
    pychro.write_frame(pd.DataFrame({"t": ts, "v": [1, 2]}), root, schema)
    assert read_table(root, schema, start="2024-03-05T09:00:00.123456790").column("v").to_pylist() == [2]
    assert read_table(root, schema, end="2024-03-05T09:00:00.123456900").column("v").to_pylist() == [1]
    assert read_table(root, schema, end="2024-03-05T09:00:00,123456789+00:00").num_rows == 0
    out = tmp_path / "x.csv"
    assert main(["export", str(root), "--schema", schema, "--from", "2024-03-05T09:00:00.123456790",
                 "--to", str(out)]) == 0
    assert pacsv.read_csv(out).column("v").to_pylist() == [2]


def test_date_in_another_time_zone_is_an_error_not_two_days(three_days: tuple[Path, pd.DataFrame]) -> None:
    root, full = three_days
    local = pd.Timestamp("2024-03-04 22:30", tz="America/New_York")  # 03:30 UTC on 2024-03-05
    with pytest.raises(ValueError, match=r"time zone other than UTC.*start=/end="):
        read_table(root, S, date=local)
    with pytest.raises(ValueError, match="time zone other than UTC"):
        read_table(root, S, date=(local, local))
    day = full[(full.ts >= T0.normalize()) & (full.ts < T0.normalize() + pd.Timedelta(days=1))]
    _same(read_table(root, S, date=pd.Timestamp("2024-03-05 22:30", tz="UTC")), day.reset_index(drop=True))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bounds", [{"date": ("2024-03-04", "2024-03-06")}, {"end": "2024-03-07T00:00"},
                                    {"start": ISO0, "end": "2024-03-06T12:00"}])
def test_follow_ends_when_its_end_bound_is_in_the_past(three_days: tuple[Path, pd.DataFrame], bounds: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The end bound's last cycle is the journal's newest, so no later folder will ever end the follow; the clock
    has left that cycle long ago (plus the late-commit grace, here shortened), so nothing can arrive in range."""
    from pychro.frames import api

    root, full = three_days
    monkeypatch.setattr(api, "LATE_COMMIT_GRACE_S", 0.3)
    t0 = pd.Timestamp(bounds.get("start", "2024-03-04"), tz="UTC")
    t1 = pd.Timestamp(bounds.get("end", "2024-03-07"), tz="UTC")
    got = pa.Table.from_batches(list(iter_batches(root, S, follow=True, poll_interval=0.01, **bounds)))
    _same(got, _want(full, t0, t1))
