"""The *judge* stage: decide each hidden check's verdict in the grader, from what it measured.

A hidden check whose student section ran in the kernel without an exception sent its
measurements; :func:`autograder.checks.run_verdict` re-runs the check's setup and runs its
verdict on them, outside the student's reach. A check whose cell did not pass gets no verdict
(scoring explains why from the cell's record).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from autograder.checks import Verdict, run_verdict, split_check
from autograder.execute import Execution
from autograder.notebook_format import cell_id, cell_meta, source_text


@dataclass(frozen=True)
class Judgement:
    """The verdicts of one submission's hidden checks, by cell id."""

    verdicts: Mapping[str, Verdict]
    seconds: float                 # spent judging, all checks together


def judge(source, execution: Execution | None) -> Judgement:
    """The verdict of every hidden check of ``source`` whose cell passed in ``execution``."""
    hidden = {cell_id(c): c for c in source.cells if cell_meta(c).get("role") == "hidden"}
    verdicts: dict[str, Verdict] = {}
    start = time.perf_counter()
    for rec in execution.cells if execution is not None else ():
        cell = hidden.get(rec.id)
        if cell is None or rec.status != "passed":
            continue
        verdicts[rec.id] = run_verdict(split_check(source_text(cell)), list(rec.observations))
    return Judgement(verdicts, time.perf_counter() - start)
