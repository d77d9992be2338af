"""The analysis notebooks: committed without outputs, and each one runs against a sandbox-built warehouse."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from pipelines.settings import PROJECT_ROOT

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
REQUIRED = {"warehouse_tour.ipynb", "dora_deep_dive.ipynb", "feature_adoption_and_value.ipynb"}
KERNEL_NAME = "opsmap-test-python"
CELL_TIMEOUT_S = 300  # a generous bound per cell on a loaded 2-core machine; a cell normally takes < 2 s


def test_the_promised_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= REQUIRED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and (cell.outputs or cell.execution_count)
    ]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    assert nb.metadata.get("kernelspec", {}).get("language") == "python"


@pytest.fixture(scope="module")
def kernel_spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec that runs *this* interpreter, so a user's or the system's `python3` kernel is never picked."""
    folder = tmp_path_factory.mktemp("kernels")
    spec = folder / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "opsmap (test interpreter)",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    return folder


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_against_the_published_warehouse(
    path: Path, built_warehouse: dict, kernel_spec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: Path = built_warehouse["paths"].published
    assert built_warehouse["result"].success, "the session's nightly run failed; no warehouse to read"
    before = published.stat()
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(published))  # the kernel inherits this environment

    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys\nprint(sys.executable)\nprint(WAREHOUSE)")
    nb.cells.append(probe)
    specs = KernelSpecManager(kernel_dirs=[str(kernel_spec_dir)])
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    NotebookClient(
        nb, km=manager, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    ).execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    charts = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert charts, f"{path.name} drew no chart"
    assert all("<svg" in o["data"]["image/svg+xml"] for o in charts)
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert tables, f"{path.name} showed no table"
    executable, warehouse = "".join(probe.outputs[0]["text"]).split()
    assert executable == sys.executable, "the kernel ran another interpreter"
    assert Path(warehouse) == published
    after = published.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns), "a notebook wrote to it"
