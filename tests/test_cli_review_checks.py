"""Arguments checked up front with messages naming the argument (Python) or the option (CLI): a hostile review's
findings on export, schema files, iter_batches and the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

import pychro
from pychro.cli import main

T0 = 1_709_629_200_000
S = "ts:timestamp_ms,v:int32"


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    with pychro.VanillaChronicleWriter(tmp_path / "j", clock=lambda: T0) as w:
        a = w.get_appender()
        a.write_long(T0)
        a.write_int(1)
        a.finish()
    return tmp_path / "j"


def test_export_compression_is_checked_up_front(journal: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(journal), "--schema", S, "--to", str(tmp_path / "x.parquet"),
                 "--compression", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--compression 'nope' is not one of none, snappy" in err and "Traceback" not in err
    assert main(["export", str(journal), "--schema", S, "--to", str(tmp_path / "x.csv"), "--compression", "zstd"]) == 2
    assert "does not apply to CSV" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "x.csv").exists()
    with pytest.raises(ValueError, match="compression='nope'"):
        pychro.to_parquet(journal, S, tmp_path / "b.parquet", compression="nope")
    with pytest.raises(TypeError, match="compression"):
        pychro.to_parquet(journal, S, tmp_path / "c.parquet", compression=5)
    with pytest.raises(ValueError, match="compression='gzip'"):
        pychro.to_ipc(journal, S, tmp_path / "c.arrow", compression="gzip")
    assert pychro.to_ipc(journal, S, tmp_path / "d.arrow", compression="zstd") == 1


def test_export_arguments_raise_type_or_value_errors(journal: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row_group_rows"):
        pychro.to_parquet(journal, S, tmp_path / "a.parquet", row_group_rows=2**70)
    with pytest.raises(TypeError, match="row_group_rows"):
        pychro.to_parquet(journal, S, tmp_path / "a.parquet", row_group_rows=1.5)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="existing folder"):
        pychro.to_parquet(journal, S, tmp_path / "folder")
    with pytest.raises(TypeError, match="batch_rows"):
        next(iter(pychro.iter_batches(journal, S, batch_rows=1.5)))
    pytest.importorskip("dask.dataframe")
    with pytest.raises(ValueError, match="unknown columns"):
        pychro.read_dask(journal, S, columns=["x"])


@pytest.mark.parametrize("value", [-1, float("nan"), "0.1", None, 10**10])
def test_poll_interval_is_checked_before_the_stream(journal: Path, value: object) -> None:
    with pytest.raises((TypeError, ValueError), match="poll_interval"):
        pychro.iter_batches(journal, S, follow=True, poll_interval=value)


def test_export_into_the_journal_is_refused(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in journal.iterdir())
    assert main(["export", str(journal), "--schema", S, "--to", str(journal / "20240306" / "out.csv")]) == 2
    assert "inside the journal" in capsys.readouterr().err
    for kwargs in ({}, {"partition_by": "date"}):
        with pytest.raises(ValueError, match="inside the journal"):
            pychro.to_parquet(journal, S, journal / "x" if kwargs else journal / "x.parquet", **kwargs)
    assert sorted(p.name for p in journal.iterdir()) == before


@pytest.mark.parametrize("export", [pychro.to_parquet, pychro.to_ipc, pychro.to_csv])
def test_an_empty_out_is_refused_before_reading(journal: Path, export: Any, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """A breaker's case: out="" read and decoded the whole export, then failed renaming '.partial' to ''."""
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(ValueError, match="names no file"):
        export(journal, S, "")
    assert list(here.iterdir()) == []


def test_schema_fields_not_a_list(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ('{"fields": 5}', '{"fields": null}', '{"fields": "a:int8"}'):
        with pytest.raises(ValueError, match="'fields' must be a list"):
            pychro.Schema.from_json(text)
    (tmp_path / "s.json").write_text('{"fields": 5}')
    assert main(["head", str(journal), "--schema", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "s.json" in err and "'fields' must be a list" in err and "Traceback" not in err


def test_cli_options_are_not_ignored_and_errors_name_them(journal: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(journal), "--cycle-length-ms", "0"]) == 2
    assert "--cycle-length-ms" in capsys.readouterr().err
    assert main(["export", str(journal), "--schema", S, "--timestamp-column", "nope",
                 "--to", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert "--timestamp-column 'nope'" in err and "timestamp_column=" not in err
    with pytest.raises(ValueError, match="timestamp_column='nope'"):
        pychro.read_table(journal, S, timestamp_column="nope")
    assert main(["info", str(journal), "--cycle-format", "yyyyMMdd"]) == 2
    err = capsys.readouterr().err
    assert "--cycle-format" in err and "cycle_format" not in err and "cycle=None" not in err
    assert main(["head", str(journal), "--schema", S, "--columns", "ts,ts"]) == 2
    err = capsys.readouterr().err
    assert "--columns" in err and "columns=" not in err


def test_cli_warnings_are_one_line(journal: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import pychro.cli as cli

    def warn(args: object) -> int:
        warnings.warn("index-0 is missing; read past it (errors='skip')", pychro.PychroWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(cli, "cmd_info", warn)
    assert main(["info", str(journal)]) == 0
    err = capsys.readouterr().err
    assert err == "pychro: warning: index-0 is missing; read past it (--errors skip)\n"


def test_info_json_indices_in_hex_and_verify_journal_exported(journal: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(journal), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    first = hex(pychro.VanillaConfig().index_of(T0 // 86_400_000, 0))
    assert info["first_index"] == first and info["cycles"][0]["first_index"] == first
    assert info["end_index"].startswith("0x")
    assert pychro.verify_journal(journal).ok
