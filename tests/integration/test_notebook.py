"""examples/colab.ipynb executes top to bottom on CPU with the demo config (the Drive and
TensorBoard cells switched off by its parameters), so it never rots."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import REPO

NOTEBOOK = REPO / "examples" / "colab.ipynb"
QUICK = {
    "data": {"synthetic": {"n_per_class": 20}},
    "training": {"epochs": 1, "save_steps": 0},
    "stacking": {"meta": ["vote", "lr"]},
}


@pytest.mark.slow
def test_the_colab_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (at,) = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    # as papermill does: the run's values in a cell right after the parameters cell
    overrides = (
        f"USE_DRIVE = False\nSHOW_TENSORBOARD = False\nCONFIG = 'demo'\n"
        f"RUN_NAME = {str(tmp_path / 'run')!r}\nSETTINGS = {QUICK!r}\n"
    )
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(overrides))
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises on the first cell that fails

    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "selected on validation:" in text
    assert "scanned 1 file, 2 functions" in text
    assert (tmp_path / "run" / "stack" / "bundle" / "manifest.json").is_file()
    assert (tmp_path / "example.c").is_file()  # the scan cell wrote where the notebook runs
