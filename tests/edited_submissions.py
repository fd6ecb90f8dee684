"""Submissions made from a reference solution by replacing text in its cells, and the
auto-graded results the grader wrote for them: shared by the forgery tests."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.mutations import reference_submission


def edited_reference(name: str, edits: dict[str, tuple[str, str]]):
    """The reference solution of assignment ``name`` with, in each cell id of ``edits``, the
    text ``old`` replaced by ``new``; fails when the reference no longer contains ``old``."""
    nb = reference_submission(name)
    for cell in nb.cells:
        if cell.get("id") in edits:
            old, new = edits[cell.id]
            assert old in cell.source, f"{name}/{cell.id}: the reference solution changed: {old!r}"
            cell.source = cell.source.replace(old, new)
    return nb


def auto_tests(out: Path, student: str) -> list[dict]:
    """The auto-graded items of ``student``'s results.json in the grading folder ``out``."""
    data = json.loads((out / student / "results.json").read_text())
    return [t for t in data["tests"] if "(written)" not in t["name"] and t.get("max_score", 0) > 0]
