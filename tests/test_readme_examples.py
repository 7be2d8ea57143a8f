"""The usage examples of pychro 0.8's README still run unchanged (bar its typos), and so does this README's."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_pychro_08_readme_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writing and reading as the 0.8 README shows them. Its typos are fixed: it imported ``tempdir`` (meant
    ``tempfile``) and read from an undefined ``chron_dir`` (the folder just written, ``tempdir``)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # mkdtemp() below lands in pytest's tmp_path

    # -- "Writing": 3 messages, with 3 fields each - an int, string and double
    import tempfile as _tempfile  # the README's ``import tempdir``, fixed

    import pychro

    tempdir = _tempfile.mkdtemp()
    print("Chronicle location: %s" % tempdir)

    with pychro.VanillaChronicleWriter(tempdir) as write_chron:
        appender = write_chron.get_appender()
        for i in range(1, 4):
            appender.write_int(i)
            appender.write_string("1/%s=%s" % (i, 1 / i))
            appender.write_double(1 / i)
            appender.finish()

    # -- "Reading": from the earliest message until pychro.NoData
    chron_dir = tempdir
    with pychro.VanillaChronicleReader(chron_dir) as read_chron:
        while True:
            print("Next read index:%s" % read_chron.get_index())
            try:
                reader = read_chron.next_reader()
            except pychro.NoData:
                break
            print(reader.read_int())
            print(reader.read_string())
            print(reader.read_double())

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Chronicle location: {tempdir}"
    assert Path(tempdir).parent == tmp_path
    first = int(lines[1].removeprefix("Next read index:"))
    assert first & ((1 << 40) - 1) == 0  # seq 0 of today's cycle
    assert lines[1:] == [
        f"Next read index:{first}", "1", "1/1=1.0", "1.0",
        f"Next read index:{first + 1}", "2", "1/2=0.5", "0.5",
        f"Next read index:{first + 2}", "3", f"1/3={1 / 3}", f"{1 / 3}",
        f"Next read index:{first + 3}",
    ]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.skipif(not README.exists(), reason="no README.md next to tests/")
def test_readme_first_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every self-contained example of this project's README (one that imports pychro itself) runs."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    blocks = [b for b in _python_blocks(README.read_text()) if "import pychro" in b]
    assert blocks, "README.md has no self-contained example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    if "reader.read_double()" in blocks[0]:
        assert "1/2=0.5" in out


@pytest.mark.skipif(not README.exists(), reason="no README.md next to tests/")
def test_readme_blocks_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every Python block of the README runs as printed, in order, in one namespace (each continues from the
    one before), after ``pychro demo /tmp/pychro-demo`` as the quick start says. Only that folder is moved into
    tmp_path (with fewer rows), and files the examples write land in tmp_path (the working directory)."""
    pytest.importorskip("dask")
    from pychro.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    text = README.read_text()
    assert "pychro demo /tmp/pychro-demo" in text
    demo = tmp_path / "pychro-demo"
    assert main(["demo", str(demo), "--rows", "20000", "--no-progress"]) == 0
    blocks = _python_blocks(text)
    assert len(blocks) >= 10
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in blocks:
        code = block.replace('"/tmp/pychro-demo"', repr(str(demo)))
        try:
            exec(compile(code, str(README), "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README block failed: {exc!r}\n{block}") from exc
    out = capsys.readouterr().out
    assert "1/2=0.5" in out
    assert isinstance(namespace["index"], int) and isinstance(namespace["excerpt"].index, int)  # both ran
    import_file = namespace["import_file"]
    with pytest.raises(ValueError, match=r"\(schema=\)") as info:  # a Python caller is told the argument
        import_file("ticks.csv", namespace["copy"])  # type: ignore[operator]
    assert "--schema" not in str(info.value)
    table = namespace["table"]
    assert table.num_rows > 0 and table.column("ts")[0].as_py().hour == 9  # rows from 09:00, not the whole day


@pytest.mark.skipif(not README.exists(), reason="no README.md next to tests/")
def test_readme_command_synopsis_names_real_options() -> None:
    """Each ``--option`` in the README's command synopsis is one its command accepts (the block is text, not
    run: this keeps it from naming options that do not exist)."""
    import argparse

    from pychro.cli import build_parser

    (synopsis,) = [b for b in re.findall(r"```text\n(.*?)```", README.read_text(), flags=re.S) if "pychro info" in b]
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    command = ""
    for line in synopsis.splitlines():
        if line.startswith("pychro "):
            command = line.split()[1].split("|")[0]
        if line.startswith("pychro "):
            usage = line.split("   ")[0]  # the description follows after a run of spaces
        else:  # a continued usage line, or a description line (no options to check)
            usage = line.strip() if line.startswith(" " * 18 + "[") else ""
        accepted = set(subparsers.choices[command]._option_string_actions)
        for option in re.findall(r"--[a-z][a-z-]*", usage):
            assert option in accepted, f"README synopsis: pychro {command} has no {option}"
            checked += 1
    assert checked >= 10
