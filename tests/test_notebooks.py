"""Every notebook executes top to bottom against the smoke run's outputs."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient
import pytest

from e2e_helpers import ROOT

pytestmark = pytest.mark.e2e

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, smoke_run, monkeypatch):
    monkeypatch.setenv("NNXAI_WORKDIR", str(smoke_run))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "test accuracy" in text and "IF " in text


def test_there_is_a_notebook():
    assert NOTEBOOKS
