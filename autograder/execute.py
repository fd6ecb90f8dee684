"""The *run* stage: execute one merged notebook in a sandboxed kernel and type what came back.

:func:`run` gives the submission a GPU of its own (when grading on CUDA), a fresh work folder,
the kernel's environment and limits (:mod:`autograder.runner`, :mod:`autograder.sandbox`), and
runs the notebook again without a cell that killed the kernel (:func:`run_until_done`), so
that later items are still graded. The cell records the nbval plugin sends as JSON become
:class:`CellRecord` objects here, at the one place runner results are read.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Literal, get_args

from autograder.config import GradeConfig
from autograder.runner import Limits, RunResult, kernel_env, run_notebook

#: How many times a notebook is run again after a cell killed its kernel.
MAX_RERUNS = 3
#: The source of a cell that killed the kernel, in the runs after it.
NOT_RUN_AGAIN = "raise RuntimeError('not run again: this cell stopped the kernel before')"

Status = Literal["passed", "failed", "timeout", "crashed", "error", "skipped"]
STATUSES: tuple[str, ...] = get_args(Status)


@dataclass(frozen=True)
class CellRecord:
    """What nbval saw one code cell do (sent by :mod:`autograder.nbval_plugin`).

    ``status``: passed; failed (the cell raised ``ename: evalue``); timeout; crashed (the
    kernel died while running it); error (the kernel was already dead, or nbval failed);
    skipped. ``observations``: the payloads a hidden check published, still encoded.
    """

    id: str | None
    status: Status
    duration: float = 0.0          # seconds
    ename: str | None = None
    evalue: str | None = None
    observations: tuple = ()

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown cell status {self.status!r}; choose one of "
                             f"{', '.join(STATUSES)}")

    @classmethod
    def from_plugin(cls, rec: dict) -> CellRecord:
        """The record from the plugin's JSON dict (keys as in ``pytest_runtest_makereport``)."""
        return cls(id=rec.get("id"), status=rec["status"],
                   duration=float(rec.get("duration") or 0.0), ename=rec.get("ename"),
                   evalue=rec.get("evalue"), observations=tuple(rec.get("observations") or ()))


@dataclass(frozen=True)
class Execution:
    """What running one submission gave: a record per executed code cell, in notebook order."""

    cells: tuple[CellRecord, ...]
    executed: object | None        # the executed notebook (instructor's copy), if any came back
    wall_s: float                  # the pytest subprocesses, start to end
    error: str | None = None       # why the run stopped early, if it did
    outside_sandbox: bool = False  # the kernel had network and a writable file system

    @property
    def cells_s(self) -> float:
        """Seconds spent executing cells (the submission's own work and the checks)."""
        return sum(c.duration for c in self.cells)

    @classmethod
    def from_run(cls, run: RunResult) -> Execution:
        return cls(tuple(CellRecord.from_plugin(c) for c in run.cells), run.executed,
                   run.wall_s, run.error,
                   bool(run.sandbox) and bool(run.sandbox.get("network", True)))


@dataclass(frozen=True)
class Workspace:
    """Where a batch runs its submissions."""

    root: Path                     # a fresh work folder per submission is made in it
    unpacked: Path                 # the zip exports' notebooks (hidden from kernels)
    gpus: Queue | None = None      # free GPU ids, one taken per running submission


def sandbox_limits(cfg: GradeConfig) -> Limits:
    """The kernel's limits, and whether it runs in the bubblewrap sandbox (whose view of the
    file system is built from nothing, so no folder needs hiding: see :mod:`autograder.sandbox`)."""
    return Limits(memory_mb=cfg.memory_mb or None, nproc=cfg.max_procs or None,
                  disk_mb=cfg.disk_mb or None,
                  isolate=cfg.sandbox, user=cfg.run_as, cpus=float(cfg.threads))


def _culprit(cells: list[dict]) -> int | None:
    """Index of the cell after which the kernel was dead, if it died before the end."""
    for n, rec in enumerate(cells):
        if rec["status"] == "error" and n > 0 and cells[n - 1]["status"] in ("crashed",
                                                                          "timeout"):
            return cells[n - 1]["index"]
    return None


def run_until_done(nb, workdir: Path, cfg: GradeConfig, env: dict, limits: Limits,
                   attempts: int = MAX_RERUNS) -> RunResult:
    """Execute ``nb``; when a cell kills the kernel, run again without it (at most
    ``attempts`` times), so that later items that do not depend on it are still graded.

    The records of the cells up to the culprit come from the first run, those after it from
    the re-run; timings add up.
    """
    budget = cfg.notebook_budget  # shared by the first run and the re-runs
    run = run_notebook(nb, workdir / "run0", cell_timeout=cfg.timeout, budget=budget,
                       env=env, kernel_name=cfg.kernel_name, limits=limits)
    for attempt in range(1, attempts + 1):
        culprit = _culprit(run.cells)
        if culprit is None:
            break
        nb = copy.deepcopy(nb)
        [c for c in nb.cells if c.cell_type == "code"][culprit].source = NOT_RUN_AGAIN
        again = run_notebook(nb, workdir / f"run{attempt}", cell_timeout=cfg.timeout,
                             budget=max(budget - run.wall_s, 1.0), env=env,
                             kernel_name=cfg.kernel_name, limits=limits, budget_total=budget)
        first = [c for c in run.cells if c["index"] <= culprit]
        later = [c for c in again.cells if c["index"] > culprit]
        executed = again.executed
        if executed is not None and run.executed is not None:
            for n, cell in enumerate(c for c in executed.cells if c.cell_type == "code"):
                if n <= culprit:
                    old = [c for c in run.executed.cells if c.cell_type == "code"][n]
                    cell.outputs, cell.execution_count = old.outputs, old.execution_count
                    cell.source = old.source
        run = RunResult(first + later, executed or run.executed, run.wall_s + again.wall_s,
                        again.returncode, run.log + again.log, again.error, env, again.sandbox)
    return run


def run(nb, student: str, cfg: GradeConfig, work: Workspace) -> Execution:
    """Execute the merged notebook ``nb`` of ``student`` in a fresh folder of ``work``, on a
    GPU of its own when grading on CUDA (given back when done)."""
    gpu = work.gpus.get() if work.gpus is not None else None
    try:
        extra = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}
        env = kernel_env(cfg.profile, cfg.device, cfg.threads, extra)
        workdir = Path(tempfile.mkdtemp(prefix=f"{student}-", dir=work.root))
        result = run_until_done(nb, workdir, cfg, env, sandbox_limits(cfg))
        if not cfg.keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if gpu is not None:
            work.gpus.put(gpu)
    return Execution.from_run(result)
