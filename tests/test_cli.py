"""The pychro command line, run as a user would (subprocess), and main() in-process for speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import pychro
from pychro.cli import main

J366 = "w:int8,i:int32,l:int64,d:float64,s:string,c:char,a:stopbit,b:stopbit"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pychro", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_info_on_java_fixture(java_3_4_0: Path) -> None:
    r = run("info", str(java_3_4_0))
    assert r.returncode == 0, r.stderr
    assert "thread-id bits   16 (detected)" in r.stdout
    assert "20150221" in r.stdout and "20150222" in r.stdout
    assert "0x40670000000000 .. 0x40680000000009" in r.stdout


def test_info_json(java_3_6_6, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(java_3_6_6.journal), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["messages"] == 3000 and info["thread_id_bits"] == 16
    assert info["cycles"][0]["folder"] == "20261128"


def test_head_and_tail(java_3_6_6, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["head", str(java_3_6_6.journal), "--schema", J366, "-n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].split()[:3] == ["_index", "w", "i"]
    assert main(["tail", str(java_3_6_6.journal), "--schema", J366, "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    last = java_3_6_6.expected[-1]
    assert out[-1].split()[0] == hex(last["index"])  # as `info` spells indices


def test_export_import_round_trip(java_3_6_6, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    r = run("export", str(java_3_6_6.journal), "--schema", J366, "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert "exported 3,000 rows" in r.stdout
    r = run("import", str(out), str(tmp_path / "copy"))
    assert r.returncode == 0, r.stderr
    assert pychro.read_table(tmp_path / "copy", J366).equals(pq.read_table(out).cast(pychro.Schema(J366).to_arrow()))


def test_export_schema_from_json_file(java_3_6_6, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(pychro.Schema(J366).to_json())
    r = run("export", str(java_3_6_6.journal), "--schema", str(schema_file), "--to", str(tmp_path / "x.csv"),
            "--from", str(java_3_6_6.expected[10]["index"]), "--until", str(java_3_6_6.expected[20]["index"]))
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "x.csv").read_text().splitlines()) == 11  # header + 10 rows


def test_verify_ok_and_wrong_bits(java_3_4_0: Path) -> None:
    r = run("verify", str(java_3_4_0))
    assert r.returncode == 0 and r.stdout.strip().endswith("OK")
    r = run("verify", str(java_3_4_0), "--thread-id-bits", "15")
    assert r.returncode == 1
    # seq 0's entry 0xd9d0000000000004 read with 15 bits names tid 0xd9d0 >> 1 = 27880
    assert "seq 0, data-27880-0: data file is missing" in r.stdout and "thread_id_bits=16" in r.stdout


def test_errors_are_one_line_with_exit_codes(tmp_path: Path, java_3_4_0: Path) -> None:
    r = run("info", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "journal folder not found" in r.stderr
    r = run("head", str(java_3_4_0), "--schema", "x:int32")
    assert r.returncode == 1 and "does not match the schema" in r.stderr and "Traceback" not in r.stderr
    r = run("head", str(java_3_4_0), "--schema", "x:int33")
    assert r.returncode == 2 and "unknown field type" in r.stderr
    r = run("bogus")
    assert r.returncode == 2


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    r = run("demo", str(tmp_path / "demo"), "--rows", "20000")
    assert r.returncode == 0, r.stderr
    assert "wrote 20,000 ticks" in r.stdout and "to_parquet: 20,000 rows" in r.stdout
    assert (tmp_path / "demo.parquet").exists()
    assert pychro.open(tmp_path / "demo").info()["messages"] == 20_000
    r = run("demo", str(tmp_path / "demo"))
    assert r.returncode == 2 and "not empty" in r.stderr


def test_console_script_is_installed() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "pychro")
    assert os.path.exists(exe), "pip install -e . installs the pychro console script"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "info" in r.stdout and "export" in r.stdout


@pytest.mark.network
def test_serve_and_replicate_commands(java_3_6_6, tmp_path: Path) -> None:
    import socket

    server = subprocess.Popen(
        [sys.executable, "-m", "pychro", "serve", str(java_3_6_6.journal), "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        assert "serving" in line and "127.0.0.1:" in line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        r = run("replicate", f"127.0.0.1:{port}", str(tmp_path / "copy"), "--timeout", "2")
        assert r.returncode == 0, r.stderr
        assert "replicated 3,000 messages" in r.stdout
        a = pychro.read_table(java_3_6_6.journal, J366, index=True)
        b = pychro.read_table(tmp_path / "copy", J366, index=True)
        assert a.equals(b)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # still serving after a client left
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()  # type: ignore[union-attr]
    r = run("replicate", "nohostport", str(tmp_path / "x"))
    assert r.returncode == 2


def test_output_cut_short_by_a_closed_pipe_is_not_an_error(java_3_6_6) -> None:
    """`pychro head ... | head -1`: the reader closing the pipe ends the command quietly with exit 0 (a
    BrokenPipeError is an OSError, and used to be reported as `error: [Errno 32] Broken pipe`, exit 1)."""
    with subprocess.Popen([sys.executable, "-m", "pychro", "head", str(java_3_6_6.journal), "--schema", J366,
                           "-n", "3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert proc.stdout.readline().split()[:2] == [b"_index", b"w"]
            proc.stdout.close()  # before the ~300 KB table is written: the next writes meet a closed pipe
            err = proc.stderr.read().decode()
            assert proc.wait(timeout=60) == 0 and err == "", err
        finally:
            proc.kill()


def test_a_bad_date_or_bound_names_what_it_expects(tmp_path: Path) -> None:
    r = run("verify", str(tmp_path), "--date", "5 March")
    assert r.returncode == 2 and "'5 March' is not an ISO date (YYYY-MM-DD)" in r.stderr and "_date" not in r.stderr
    r = run("export", str(tmp_path), "--schema", "x:int32", "--to", str(tmp_path / "x.csv"), "--from", "noon")
    assert r.returncode == 2 and "'noon' is neither a full index" in r.stderr and "_when" not in r.stderr
