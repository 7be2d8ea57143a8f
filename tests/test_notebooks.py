"""Every notebook in notebooks/ runs top to bottom (nbclient), as a new user would run it: from any working
directory, with the kernel's default (inline) matplotlib backend, every plot cell showing its figure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _plots(source: str) -> bool:
    return "plt." in source or ".plot(" in source


def test_notebooks_are_present() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-live-tail.ipynb", "03-java-interop.ipynb",
                                           "04-message-types.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_do_not_force_a_backend(path: Path) -> None:
    """``matplotlib.use("Agg")`` hides every figure in a real Jupyter kernel."""
    nb = nbformat.read(path, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert not any("matplotlib.use(" in s or "MPLBACKEND" in s for s in sources)
    assert not any("Path.cwd()" in s or "os.getcwd()" in s for s in sources), "notebooks must not depend on the cwd"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "store notebooks without outputs"
    monkeypatch.chdir(tmp_path)  # neither the repository nor notebooks/
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its own (inline) backend
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # the kernel's temp folder is this test's own, so that what the notebook leaves there (02 makes a
    # pychro-live-* journal) is seen whatever else runs on the machine
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    client.execute()
    left = sorted(p.name for p in kernel_tmp.glob("pychro-*"))
    assert not left, f"{path.name} left {left} behind"
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    for cell in filter(lambda c: _plots(c.source), code):
        shown = [o.get("data", {}) for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
        assert any("image/png" in data for data in shown), f"no figure shown by:\n{cell.source}"
        # a figure printed as text ("<Figure size 800x300 with 1 Axes>") is what a non-inline backend gives
        assert all("image/png" in d for d in shown if str(d.get("text/plain", "")).startswith("<Figure size"))


def test_notebooks_extra_installs_jupyter() -> None:
    """``pip install -e ".[notebooks]"`` then ``jupyter lab``: the extra must bring JupyterLab itself."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {req.split("[")[0].split(">")[0].split("=")[0].strip() for req in extras["notebooks"]}
    assert {"jupyterlab", "matplotlib", "ipykernel"} <= names
