"""Row API, remote and config arguments: numpy integers are ints (``df["_index"]`` gives them), bools, floats and
strings are refused with a TypeError naming the argument, and environment/file-system problems name their cause
(breaker review of issue 13)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

import pychro
from pychro.cli import main
from pychro.remote import start_index_of

DAY_MS = 1_709_629_200_000  # 2024-03-05 09:00 UTC


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    with pychro.VanillaChronicleWriter(tmp_path / "j", clock=lambda: DAY_MS) as w:
        a = w.get_appender()
        for v in (1, 2):
            a.write_long(DAY_MS)
            a.write_int(v)
            a.finish()
    return tmp_path / "j"


def test_numpy_integers_are_indices(journal: Path) -> None:
    index = pychro.read_frame(journal, "ts:timestamp_ms,v:int32", index=True)["_index"].to_numpy()[1]
    assert isinstance(index, np.integer)
    with pychro.VanillaChronicleReader(journal) as reader:
        excerpt = reader.excerpt_at(index)
        assert excerpt.index == int(index) and type(excerpt.index) is int
    with pychro.VanillaChronicleReader(journal, full_index=index) as reader:
        assert reader.get_index() == int(index) and type(reader.get_index()) is int
        assert reader.next_reader().read_long() == DAY_MS
    assert start_index_of(index) == int(index)


@pytest.mark.parametrize("name", ["data_block_size", "index_block_size", "message_capacity", "thread_id_bits"])
@pytest.mark.parametrize("make", [np.int64, np.int32, np.uint32], ids=["int64", "int32", "uint32"])
def test_numpy_integers_are_config_sizes(name: str, make: type) -> None:
    value = {"data_block_size": 1 << 20, "index_block_size": 1 << 16, "message_capacity": 1000,
             "thread_id_bits": 16}[name]
    cfg = pychro.VanillaConfig(**{name: make(value)})
    assert getattr(cfg, name) == value and type(getattr(cfg, name)) is int


def test_numpy_int8_thread_id_bits_reads(journal: Path) -> None:
    # np.int8 arithmetic overflowed (OverflowError) inside the entry layout before
    table = pychro.read_table(journal, "ts:timestamp_ms,v:int32", thread_id_bits=np.int8(16))
    assert table.num_rows == 2


@pytest.mark.parametrize("value", [True, np.bool_(True), 16.0, "16"])
def test_thread_id_bits_refuses_non_integers(value: object) -> None:
    with pytest.raises(TypeError, match=f"thread_id_bits must be an int, got {type(value).__name__}"):
        pychro.VanillaConfig(thread_id_bits=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, np.float64(3.0)])
def test_full_index_refuses_non_integers(journal: Path, value: object) -> None:
    with pytest.raises(TypeError, match="full_index must be an int"):
        pychro.VanillaChronicleReader(journal, full_index=value)  # type: ignore[arg-type]


def _boolean_bytes(tmp_path: Path, values: list[object]) -> list[bool]:
    with pychro.VanillaChronicleWriter(tmp_path / "b", clock=lambda: DAY_MS) as w:
        a = w.get_appender()
        for v in values:
            a.write_boolean(v)  # type: ignore[arg-type]
        a.finish()
    with pychro.VanillaChronicleReader(tmp_path / "b") as reader:
        excerpt = reader.next_reader()
        body = excerpt.body()
    assert set(body) <= {0, 0x59}  # Java's 'Y' or 0, whatever the input
    return [b == 0x59 for b in body]


def test_write_boolean_takes_bools_and_numbers(tmp_path: Path) -> None:
    # as the frames writer's bool fields: booleans, or numbers (nonzero is true)
    values = [True, False, np.bool_(True), np.bool_(False), 1, 0, 2, np.int64(0), 0.5]
    assert _boolean_bytes(tmp_path, values) == [True, False, True, False, True, False, True, False, True]


@pytest.mark.parametrize("value", ["no", "", None, b"\x00", [False]])
def test_write_boolean_refuses_other_values(tmp_path: Path, value: object) -> None:
    with pychro.VanillaChronicleWriter(tmp_path / "b", clock=lambda: DAY_MS) as w:
        a = w.get_appender()
        with pytest.raises(TypeError, match=f"write_boolean takes a bool .*got {type(value).__name__}"):
            a.write_boolean(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 5, "text"])
def test_write_bytes_refuses_non_bytes(tmp_path: Path, value: object) -> None:
    with pychro.VanillaChronicleWriter(tmp_path / "b", clock=lambda: DAY_MS) as w:
        a = w.get_appender()
        with pytest.raises(TypeError, match=f"write_bytes takes bytes, bytearray or memoryview \\(data\\), got "
                                            f"{type(value).__name__}"):
            a.write_bytes(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("env", ["abc", "0", "33", "1.5"])
def test_thread_id_bits_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       env: str) -> None:
    monkeypatch.setenv("PYCHRO_THREAD_ID_BITS", env)
    with pytest.raises(ValueError, match=f"PYCHRO_THREAD_ID_BITS environment variable must be an int in "
                                         f"1..32, got '{env}'"):
        pychro.VanillaChronicleWriter(tmp_path / "w").get_appender()


def test_thread_id_bits_environment_variable_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCHRO_THREAD_ID_BITS", "20")
    with pychro.VanillaChronicleWriter(tmp_path / "w") as w:
        assert w.config.thread_id_bits == 20


def _read_only_makedirs(path: object, *args: object, **kwargs: object) -> None:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))  # type: ignore[arg-type]


def _serve_and_close(path: Path) -> None:
    """serve(allow_submit=True), closed at once should it not raise (the test then fails without a leak)."""
    pychro.remote.serve(path, port=0, allow_submit=True).close()


def test_serve_allow_append_on_a_read_only_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # a missing folder on a read-only mount: os.makedirs raises EROFS (simulated: no mount here)
    monkeypatch.setattr(os, "makedirs", _read_only_makedirs)
    with pytest.raises(pychro.ReadOnlyJournalError, match="cannot create journal folder: Read-only file system"):
        _serve_and_close(tmp_path / "new")
    assert main(["serve", str(tmp_path / "new"), "--port", "0", "--allow-append"]) == 1
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "Errno" not in err
