"""What the hidden checks send into the student's kernel holds no threshold.

The setup and student sections of a hidden check run in the student's kernel, where later
student code can read them (globals, IPython's history, ``linecache``) and copy them into an
exception message that reaches the feedback. Bands and other pass/fail thresholds therefore live
in the verdict, which only the grader runs.
"""

from __future__ import annotations

import ast

import pytest

from autograder.checks import split_check
from autograder.notebook_format import cell_meta, read_notebook, source_text
from autograder.release import ASSIGNMENTS

from conftest import ROOT


def _assigned(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_no_band_is_defined_where_the_students_kernel_runs(name):
    nb = read_notebook(ROOT / "solutions" / f"{name}.ipynb")
    leaks = {}
    for cell in nb.cells:
        if cell_meta(cell).get("role") != "hidden":
            continue
        parts = split_check(source_text(cell))
        kernel = _assigned(parts.setup) | _assigned(parts.student)
        found = sorted(n for n in kernel if "BAND" in n.upper() or "THRESHOLD" in n.upper())
        if found:
            leaks[cell.get("id")] = found
    assert not leaks, f"thresholds defined in kernel-side sections (move them to the verdict): {leaks}"


def test_the_rule_catches_a_band_in_a_setup():
    planted = "BANDS = {'smoke': (0, 1)}\n# --- student ---\nobs = observe(x=1)\n# --- verdict ---\nassert True\n"
    assert "BANDS" in _assigned(split_check(planted).setup)
