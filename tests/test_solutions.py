"""The homework notebooks run: solutions pass under nbval, student notebooks stop at the first FIXME.

Both run in the smoke profile (each notebook well under 2 minutes on 2 cores); they need the
Fashion-MNIST files under $DGM_DATA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.notebook_format import iter_cells, read_notebook
from autograder.release import ASSIGNMENTS

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT_S = 120  # the homework contract: every cell finishes within 120 s in smoke


@pytest.fixture
def smoke_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("DGM_METRICS_DIR", raising=False)
    return {**os.environ}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_passes_nbval_in_smoke_profile(name, smoke_env):
    """Every cell of the reference solution, hidden checks included, runs without error."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", f"--nbval-cell-timeout={CELL_TIMEOUT_S}",
         "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(ROOT / "solutions" / f"{name}.ipynb")],
        cwd=ROOT, env=smoke_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_student_notebook_fails_first_at_its_first_fixme(name, smoke_env, tmp_path):
    """The generated notebook runs up to the first exercise and stops there with NotImplementedError."""
    nb = read_notebook(ROOT / "notebooks" / f"{name}.ipynb")
    first_graded = next(i for i, c in iter_cells(nb, "graded") if c.cell_type == "code")
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError", info.value
    failed = [i for i, c in enumerate(nb.cells)
              if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed and failed[0] in (first_graded, first_graded + 1), (
        f"first error in cell {failed[0] if failed else None}, expected the first exercise "
        f"(cell {first_graded}) or its self-check")
    executed = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count]
    assert all(i <= failed[0] for i in executed)
    assert all(nb.cells[i].execution_count for i in range(failed[0])
               if nb.cells[i].cell_type == "code")
