"""The public surface: ``pychro.__all__`` pinned, a cheap and inert ``import pychro``, documented names."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pychro

PUBLIC = [
    "Appender",
    "CorruptData",
    "CorruptDataError",
    "Cycle",
    "CycleInfo",
    "Excerpt",
    "FormatError",
    "IncompleteTailWarning",
    "Journal",
    "JournalNotFoundError",
    "MessageTooLargeError",
    "MessageTypes",
    "NoData",
    "PychroError",
    "PychroWarning",
    "RawByteReader",
    "ReadOnlyJournalError",
    "RemoteChronicleReader",
    "RemoteChronicleWriter",
    "RemoteError",
    "RowError",
    "Schema",
    "SchemaMismatchError",
    "VanillaChronicleReader",
    "VanillaChronicleWriter",
    "VanillaConfig",
    "__version__",
    "iter_batches",
    "open",
    "read_dask",
    "read_frame",
    "read_frames",
    "read_table",
    "read_tables",
    "replicate",
    "scan",
    "serve",
    "to_csv",
    "to_ipc",
    "to_journal",
    "to_parquet",
    "verify_journal",
    "write_frame",
    "write_frames",
]
# frames names need pyarrow/pandas: imported on first use
LAZY = {"MessageTypes", "RowError", "Schema", "iter_batches", "read_dask", "read_frame", "read_frames", "read_table",
        "read_tables", "replicate", "scan", "serve", "to_csv", "to_ipc", "to_journal", "to_parquet", "verify_journal",
        "write_frame", "write_frames"}
SUBMODULES = ["pychro.errors", "pychro.config", "pychro.excerpt", "pychro.journal", "pychro.reader", "pychro.writer"]
FRAMES_BUILT = (Path(pychro.__file__).parent / "frames" / "__init__.py").exists()


def test_all_is_pinned() -> None:
    assert pychro.__all__ == PUBLIC  # a change to the public surface must change this list on purpose
    assert sorted(pychro.__all__) == pychro.__all__
    assert len(set(pychro.__all__)) == len(pychro.__all__)


def test_eager_names_resolve() -> None:
    for name in PUBLIC:
        if name not in LAZY:
            assert getattr(pychro, name) is not None, name


@pytest.mark.skipif(not FRAMES_BUILT, reason="pychro.frames is not built yet")
def test_lazy_names_resolve() -> None:
    for name in sorted(LAZY):
        value = getattr(pychro, name)
        assert (value.__doc__ or "").strip(), f"pychro.{name} has no docstring"


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pychro.nope  # noqa: B018


def test_version() -> None:
    assert isinstance(pychro.__version__, str) and pychro.__version__[0].isdigit()


def test_error_tree() -> None:
    assert issubclass(pychro.JournalNotFoundError, pychro.PychroError)
    assert issubclass(pychro.JournalNotFoundError, FileNotFoundError)
    assert issubclass(pychro.CorruptDataError, pychro.FormatError)
    assert issubclass(pychro.FormatError, ValueError)
    assert issubclass(pychro.SchemaMismatchError, ValueError)
    assert issubclass(pychro.MessageTooLargeError, pychro.PychroError)
    assert issubclass(pychro.ReadOnlyJournalError, PermissionError)
    assert issubclass(pychro.RemoteError, ConnectionError)
    assert issubclass(pychro.NoData, pychro.PychroError)
    assert issubclass(pychro.IncompleteTailWarning, pychro.PychroWarning)
    assert issubclass(pychro.PychroWarning, UserWarning)
    assert pychro.CorruptData is pychro.CorruptDataError  # pychro 0.8 spelling
    assert pychro.RawByteReader is pychro.Excerpt
    err = pychro.CorruptDataError("bad header", path="/x", cycle=1, seq=2, offset=3)
    assert (err.path, err.cycle, err.seq, err.offset) == ("/x", 1, 2, 3)
    assert str(err) == "bad header (path=/x, cycle=1, seq=2, offset=3)"


def _public_objects() -> list[tuple[str, object]]:
    out = []
    for name in PUBLIC:
        if name in LAZY or name.startswith("__"):
            continue
        out.append((f"pychro.{name}", getattr(pychro, name)))
    for modname in SUBMODULES:
        module = importlib.import_module(modname)
        assert (module.__doc__ or "").strip(), f"{modname} has no module docstring"
        for name in getattr(module, "__all__", []):
            out.append((f"{modname}.{name}", getattr(module, name)))
    return out


def test_public_functions_and_classes_have_docstrings() -> None:
    missing = [
        name
        for name, obj in _public_objects()
        if (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj))
        and not (inspect.getdoc(obj) or "").strip()
    ]
    assert missing == []
    assert (pychro.__doc__ or "").strip()


_IMPORT_PROBE = """
import json, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
import pychro
print(json.dumps({
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "pyarrow")),
    "opened": [p for p in opened if not p.endswith((".py", ".pyc", ".so", ".pth"))],
}))
"""


def test_import_is_cheap_and_inert() -> None:
    """``import pychro`` in a fresh interpreter loads neither pandas nor pyarrow and opens no data file."""
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["heavy"] == []
    assert report["opened"] == []


def test_row_api_signatures_keep_pychro_08_arguments() -> None:
    reader = inspect.signature(pychro.VanillaChronicleReader)
    assert list(reader.parameters)[:7] == [
        "base_dir", "polling_interval", "date", "full_index", "max_mapped_memory", "thread_id_bits", "utcnow",
    ]
    writer = inspect.signature(pychro.VanillaChronicleWriter)
    assert list(writer.parameters)[:5] == [
        "base_dir", "polling_interval", "max_mapped_memory", "thread_id_bits", "utcnow",
    ]
    for name in ("get_appender", "close", "__enter__", "__exit__"):
        assert callable(getattr(pychro.VanillaChronicleWriter, name))
    for name in ("next_reader", "get_index", "set_index", "get_end_index", "close", "__enter__", "__exit__"):
        assert callable(getattr(pychro.VanillaChronicleReader, name))
    for name in ("write_int", "write_string", "write_double", "write_stopbit", "write_fixed_string", "finish"):
        assert callable(getattr(pychro.Appender, name))
    for name in ("read_int", "read_string", "read_double", "read_stopbit", "read_fixed_string", "get_length"):
        assert callable(getattr(pychro.Excerpt, name))
