"""The analysis notebooks in ``notebooks/``: committed without outputs, and each one executes top to bottom.

Execution runs a real Jupyter kernel (nbclient, kernel ``python3``) with the notebooks folder as the working
directory, ``MPLBACKEND=Agg`` and every IPython/Jupyter/matplotlib directory in ``tmp_path``, so nothing is
written outside the work tree; the notebooks themselves write only under ``tempfile`` folders.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {"01_data_masks_and_key_tokens", "02_compare_evaluations", "03_ablation_curves"}
CELL_TIMEOUT_S = 120
#: Each notebook runs in well under a minute on 2 cores; the bound leaves room for a loaded CI machine.
NOTEBOOK_BUDGET_S = 90


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def test_every_notebook_is_present():
    assert EXPECTED <= {p.stem for p in NOTEBOOKS}, f"missing notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path: Path):
    """Outputs are cleared, the kernel is python3, and the first cell says what it shows and how to run it."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "jupyter lab notebooks/" in first.source and "pip install -e '.[dev]'" in first.source
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {i} has stored outputs"
    # No absolute paths of this machine in the committed JSON.
    assert "/work/" not in json.dumps(nb) and "/tmp/" not in json.dumps(nb)


@pytest.fixture
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Redirect every Jupyter/IPython/matplotlib/temp directory to ``tmp_path``; returns the kernel name to use.

    The kernel inherits this process's environment (``TL_LIGHTNING_CACHE`` from conftest included). When no
    ``python3`` kernel spec is installed, the current interpreter's is registered under ``tmp_path``.
    """
    monkeypatch.setenv("MPLBACKEND", "Agg")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebooks' tempfile folders land here too
    for var in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install

        install(prefix=str(tmp_path / "kernel"))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "kernel" / "share" / "jupyter"))
    return "python3"


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, jupyter_env: str):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    before = _snapshot(NOTEBOOKS_DIR)
    client = nbclient.NotebookClient(
        nb, kernel_name=jupyter_env, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and traceback) on the first failing cell
    elapsed = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), "a code cell did not run"
    assert _snapshot(NOTEBOOKS_DIR) == before, "the notebook wrote into the repository"
    assert elapsed < NOTEBOOK_BUDGET_S, f"{path.name} took {elapsed:.1f}s"
