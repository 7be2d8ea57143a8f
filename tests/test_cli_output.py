"""CLI output is consistent (hex indices, null shown as null) and CSV export/import round-trips every type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import pychro
from pychro.cli import main
from pychro.frames.export import export, import_file
from pychro.frames.schema import TYPES

NAMES = [t for t in TYPES if not t.startswith("skip")]
ALL = pychro.Schema([(f"c_{t}", t) for t in NAMES])
T0 = 1_709_510_400_000  # 2024-03-04 UTC, ms


def _column(t: str, n: int) -> Any:
    if t.startswith("timestamp"):
        return pd.to_datetime(T0 + np.arange(n) * 1000, unit="ms", utc=True)
    if t == "string":
        return ["a,b", None, 'x"y', "", "é\n"][:n]
    if t == "utf":
        return ["a,b", "n", 'x"y', "", "é"][:n]
    if t == "char":
        return ["A", "b", ",", '"', "é"][:n]
    if t == "bool":
        return [True, False, True, False, True][:n]
    if t.startswith("float"):
        return np.array([1.5, -2.25, np.nan, 0.1, 1e10][:n], dtype=t)
    dtype = np.dtype("int64" if t == "stopbit" else t)
    info = np.iinfo(dtype)
    return np.array([info.min, info.max, 0, 1, 2][:n], dtype=dtype)


@pytest.fixture
def every_type(tmp_path: Path) -> Path:
    path = tmp_path / "all"
    pychro.write_frame(pd.DataFrame({f.name: _column(f.type.name, 5) for f in ALL.fields}), path, ALL)
    return path


def test_csv_round_trips_every_type(every_type: Path, tmp_path: Path) -> None:
    assert {"string", "utf", "char", "bool", "timestamp_ns", "stopbit", "float32"} <= set(NAMES)
    out = tmp_path / "all.csv"
    export(every_type, ALL, out)
    import_file(out, tmp_path / "back", ALL)
    pd.testing.assert_frame_equal(pychro.read_frame(tmp_path / "back", ALL), pychro.read_frame(every_type, ALL))


def test_cli_csv_export_import_round_trips_every_type(every_type: Path, tmp_path: Path) -> None:
    """The same through the command line: ``pychro export --to x.csv`` then ``pychro import x.csv --schema``."""
    spec = ",".join(f"{f.name}:{f.type.name}" for f in ALL.fields)
    out = tmp_path / "cli.csv"
    assert main(["export", str(every_type), "--schema", spec, "--to", str(out), "--no-progress"]) == 0
    assert main(["import", str(out), str(tmp_path / "back"), "--schema", spec, "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pychro.read_frame(tmp_path / "back", ALL), pychro.read_frame(every_type, ALL))


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_csv_of_ns_timestamps_into_a_coarser_schema(tmp_path: Path, unit: str) -> None:
    """`export` writes ns text for a timestamp_ns field; importing it into timestamp_ms/us works when lossless
    and names the column and row when not."""
    ns = pychro.Schema("ts:timestamp_ns,x:int32")
    coarse = pychro.Schema(f"ts:timestamp_{unit},x:int32")
    whole = pd.to_datetime(T0 + np.arange(3) * 1000, unit="ms", utc=True)
    pychro.write_frame(pd.DataFrame({"ts": whole, "x": [1, 2, 3]}), tmp_path / "j", ns)
    export(tmp_path / "j", ns, tmp_path / "ns.csv")
    assert "000000000Z" in (tmp_path / "ns.csv").read_text()
    import_file(tmp_path / "ns.csv", tmp_path / "back", coarse)
    back = pychro.read_frame(tmp_path / "back", coarse)
    assert (back["ts"] == whole).all() and list(back["x"]) == [1, 2, 3]

    fine = whole + pd.to_timedelta([0, 0, 1], unit="ns")
    pychro.write_frame(pd.DataFrame({"ts": fine, "x": [1, 2, 3]}), tmp_path / "j2", ns)
    export(tmp_path / "j2", ns, tmp_path / "fine.csv")
    with pytest.raises(ValueError, match=rf"row 2: column 'ts': .*timestamp_{unit}"):
        import_file(tmp_path / "fine.csv", tmp_path / "back2", coarse)


def test_head_shows_index_in_hex_and_nulls_as_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = "name:string,px:float64"
    pychro.write_frame({"name": ["a", None], "px": [1.0, float("nan")]}, tmp_path / "j", schema,
                       clock=lambda: T0)
    assert main(["head", str(tmp_path / "j"), "--schema", schema]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["_index", "name", "px"]
    first, second = (line.split() for line in lines[1:])
    assert first[0] == hex(pychro.VanillaConfig().index_of(T0 // 86_400_000, 0))
    assert second[0].startswith("0x") and second[1] == "null"
    assert "NaN" not in lines[2].split()[1] and "None" not in lines[2]
    assert main(["info", str(tmp_path / "j")]) == 0
    assert first[0] in capsys.readouterr().out  # the same spelling as info's index range


def test_info_labels_given_thread_id_bits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pychro.write_frame({"x": [1]}, tmp_path / "j", "x:int32", clock=lambda: T0)
    for path in (tmp_path / "j",):
        assert main(["info", str(path), "--thread-id-bits", "20"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("thread-id bits"))
        assert "host default" not in line


def test_import_with_fewer_schema_fields_than_the_file(every_type: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all.csv"
    export(every_type, ALL, out)
    few = "c_int8:int8,c_string:string"
    assert main(["import", str(out), str(tmp_path / "j"), "--schema", few]) == 2
    err = capsys.readouterr().err
    assert "c_int16" in err and "c_timestamp_ns" in err and "--drop-extra-columns" in err
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").iterdir())
    assert main(["import", str(out), str(tmp_path / "j"), "--schema", few, "--drop-extra-columns"]) == 0
    assert list(pychro.read_frame(tmp_path / "j", few)["c_int8"]) == [-128, 127, 0, 1, 2]
