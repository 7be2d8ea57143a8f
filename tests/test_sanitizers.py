"""Memory safety of the C extensions, tested: every extension of the package is built with
``-fsanitize=address,undefined`` into a temporary copy of the package, and the journal and frames fuzzers, the
encoder and backfill tests and the hostile messages aimed at the decoder run against that copy in a child process
with the ASan runtime preloaded. Any read or write outside a buffer, and any undefined behaviour, fails the child.

Skipped (with the reason) only when there is no C compiler or no ASan/UBSan runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# module path -> source: every C file of the package (setup.py builds each as the module of the same path)
EXTENSIONS = {
    str(c.relative_to(ROOT).with_suffix("")): str(c.relative_to(ROOT)) for c in sorted((ROOT / "pychro").rglob("*.c"))
}
TESTS = ["tests/test_fuzz.py", "tests/test_frames_fuzz.py", "tests/test_encode.py", "tests/test_backfill.py",
         "tests/frames/test_hostile.py", "tests/frames/test_kernels.py", "tests/frames/test_lists.py",
         "tests/frames/test_types.py", "tests/frames/test_types_onepass.py", "tests/frames/test_null_counts.py",
         "tests/frames/test_parquet_file.py"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g", "-O1"]


def _runtime(name: str) -> str | None:
    cc = shutil.which("gcc")
    if cc is None:
        return None
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def test_setup_builds_exactly_these_extensions() -> None:
    """The sanitized build covers every extension setup.py builds, and setup.py builds every C file."""
    setup = (ROOT / "setup.py").read_text()
    assert sorted(src for src in EXTENSIONS.values()) == sorted(
        line.split('["')[1].split('"]')[0] for line in setup.splitlines() if "Extension(" in line and '["' in line
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzzers_under_address_and_undefined_sanitizers(tmp_path: Path) -> None:
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if asan is None or ubsan is None:
        pytest.skip("no gcc with the ASan/UBSan runtimes (libasan.so, libubsan.so)")
    # a copy of the package and the tests, so that the child imports only the sanitized extensions
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "pychro", tmp_path / "pychro", ignore=ignore)
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    include = sysconfig.get_paths()["include"]
    for module, source in EXTENSIONS.items():
        got = subprocess.run(
            ["gcc", "-shared", "-fPIC", "-std=c11", *SANITIZE, f"-I{include}", str(ROOT / source), "-o",
             str(tmp_path / f"{module}{suffix}")],
            capture_output=True, text=True,
        )
        assert got.returncode == 0, got.stderr
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=f"{asan}:{ubsan}",
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        PYTHONMALLOC="malloc",  # every Python object in malloc'd memory, where ASan sees its bounds
        # the decoder's output buffers too (Arrow's own pool, mimalloc or jemalloc, hides their bounds from ASan: a
        # helper testing the decoder found it)
        ARROW_DEFAULT_MEMORY_POOL="system",
        PYTHONPATH=str(tmp_path),
        PYCHRO_FUZZ_ROUNDS="40",  # the child-process fuzzers, shortened: everything runs several times slower
        PYCHRO_FRAMES_FUZZ_ROUNDS="40",
        HYPOTHESIS_PROFILE="ci",
    )
    env.pop("PYTEST_ADDOPTS", None)
    modules = [m.replace("/", ".") for m in EXTENSIONS]
    check = (f"import importlib; [print(importlib.import_module(m).__file__) for m in {modules!r}]; "
             "assert 'libasan' in open('/proc/self/maps').read(), 'the ASan runtime is not loaded'; "
             "import pyarrow; assert pyarrow.default_memory_pool().backend_name == 'system', 'Arrow pool'")
    where = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-3000:]
    assert len(where.stdout.split()) == len(modules), where.stdout
    assert all(line.startswith(str(tmp_path)) for line in where.stdout.split()), where.stdout
    got = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider", *TESTS],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )
    tail = (got.stdout[-4000:] + got.stderr[-6000:])
    assert got.returncode == 0, tail
    assert "ERROR: AddressSanitizer" not in tail and "runtime error:" not in tail, tail
