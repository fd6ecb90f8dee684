"""How a batch of submissions is graded, stage by stage, in the order they run.

::

    collect  the submissions named, one per student       submissions.collect
    inspect  what is wrong with a file, before it runs     submissions.inspect_submission
    merge    the student's cells into the source           merge.merge
    run      the merged notebook in a sandboxed kernel     execute.run
    judge    each hidden check's verdict, in the grader    judge.judge
    score    points and messages per item                  scoring.score_items
    report   results.json, feedback, executed notebook     report.write_report
    record   the result with its fingerprint; the run log  state.Batch.record

:func:`grade_batch` collects, plans (students graded already by an earlier run are skipped,
:mod:`autograder.state`), runs :func:`grade_one` for each submission, ``cfg.jobs`` at a time,
and writes the gradebook. :func:`grade_one` is the other seven stages for one student:
:func:`assess` (inspect to score, what a Slurm task runs with ``--executor slurm``,
:mod:`autograder.slurm`) then :func:`report_and_record`. A file
that cannot be graded skips merge to score and gets its items from the problem found; a
grader failure on one submission is recorded for that student and never stops the batch.
Stages pass frozen dataclasses: the :class:`autograder.config.GradeConfig` and the
:class:`Assignment`, read once; then :class:`autograder.submissions.Submission`,
:class:`autograder.submissions.Inspection`, :class:`autograder.merge.MergeResult`,
:class:`autograder.execute.Execution` (typed :class:`autograder.execute.CellRecord` s),
:class:`autograder.judge.Judgement`, :class:`autograder.report.ItemResult` and
:class:`autograder.report.StudentResult`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from queue import Queue

from autograder import messages
from autograder.config import ROOT, GradeConfig
from autograder.execute import Execution, Workspace, run
from autograder.judge import Judgement, judge
from autograder.merge import MergeResult, merge
from autograder.notebook_format import (
    Item,
    cell_id,
    cell_meta,
    item_titles,
    read_notebook,
    source_text,
    validate,
)
from autograder.release import ASSIGNMENTS
from autograder.report import StudentResult, write_gradebook, write_report
from autograder.scoring import columns, crashed_items, rejected_items, score_items, written_name
from autograder.state import Batch, sha256_file
from autograder.submissions import Expected, Inspection, Submission, collect, inspect_submission
from autograder.verdicts import start as start_verdicts
from autograder.verdicts import start_in_background as start_verdicts_in_background
from dgm.config import check_choice

#: The stages, in the order they run (see the module docstring).
STAGES = ("collect", "inspect", "merge", "run", "judge", "score", "report", "record")


class UsageError(ValueError):
    """The command line named nothing gradable; the message says what was wrong."""


@dataclass(frozen=True)
class Assignment:
    """The instructor's source notebook of the assignment graded, read and checked once."""

    name: str
    path: Path
    notebook: object
    items: dict[str, Item]
    secret: tuple[str, ...]        # hidden-check lines no student may see
    expected: Expected             # what a submission of it looks like
    sha256: str
    titles: dict[str, str] = field(default_factory=dict)  # item -> the exercise's title

    @property
    def label(self) -> str:
        """How messages about the source name it."""
        return f"{self.path.parent}/{self.name}.ipynb"


def load_assignment(cfg: GradeConfig) -> Assignment:
    """Read and check the source notebook of ``cfg.assignment``; ValueError if it is missing
    or breaks the homework format."""
    path = cfg.source_path
    if Path(cfg.source_dir).resolve() == (ROOT / "solutions").resolve():
        check_choice(cfg.assignment, ASSIGNMENTS, "assignment")
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    notebook = read_notebook(path)
    items = validate(notebook, str(path))
    return Assignment(cfg.assignment, path, notebook, items,
                      tuple(messages.hidden_lines(notebook)),
                      Expected.from_source(notebook, cfg.assignment, cfg.source_dir),
                      sha256_file(path), item_titles(notebook, items))


def prepare_verdicts(cfg: GradeConfig, assignment: Assignment) -> None:
    """What verdicts need before any student code runs: the profile their setup reads, and
    the grader's own copy of the evaluation classifier (loaded now, before any kernel could
    write a forged one into the cache)."""
    os.environ["DGM_PROFILE"] = cfg.profile  # verdicts re-run the checks' setup here
    profiles: tuple[str, ...] = ()
    if any("dgm.evaluate" in source_text(c) for c in assignment.notebook.cells
           if cell_meta(c).get("role") == "hidden"):
        from dgm.evaluate import get_classifier

        profiles = tuple(sorted({cfg.profile, "smoke"}))  # checks may pin the smoke one
        for profile in profiles:
            get_classifier(profile=profile)
    # The verdicts' zygote loads its own copy too. Its start (imports of torch and SymPy, some
    # seconds) overlaps with the first notebook where no kernel can write the cache it reads:
    # in the sandbox, whose view of the cache is read-only, or when it loads no classifier.
    if cfg.sandbox or not profiles:
        start_verdicts_in_background(profiles)
    else:
        start_verdicts(profiles)  # before any kernel runs


# --- one submission -------------------------------------------------------------------------

@dataclass(frozen=True)
class Graded:
    """What :func:`assess` found for one submission, before it is reported and recorded."""

    result: StudentResult
    executed: object | None        # the executed notebook (instructors only), if it ran
    rejected: bool                 # the file could not be graded


def grade_one(sub: Submission, cfg: GradeConfig, assignment: Assignment, batch: Batch,
              work: Workspace) -> StudentResult:
    """Grade one collected submission: inspect, merge, run, judge, score, report, record."""
    return report_and_record(assess(sub, cfg, assignment, work), cfg, batch)


def assess(sub: Submission, cfg: GradeConfig, assignment: Assignment,
           work: Workspace) -> Graded:
    """The stages that grade: inspect, merge, run, judge, score (what a Slurm task runs,
    :mod:`autograder.slurm`); nothing is written to ``cfg.out``."""
    start = time.perf_counter()
    inspection = inspect_submission(sub, assignment.expected, cfg.max_bytes)
    merged = execution = judgement = merge_s = None
    if inspection.problem is None:
        merged = merge(assignment.notebook, inspection.notebook, assignment.label)
        merge_s = time.perf_counter() - start  # with reading and inspecting the file
        execution = run(merged.notebook, sub.student, cfg, work)
        judgement = judge(assignment.notebook, execution)
        items = score_items(merged, execution.cells, judgement.verdicts, cfg.timeout,
                            list(assignment.secret), _stopped(execution))
    else:
        items = rejected_items(assignment.items)
    items = _titled(items, assignment)
    result = _result(sub, cfg, inspection, merged, execution, judgement, items, start, merge_s)
    return Graded(result, execution.executed if execution is not None else None,
                  inspection.problem is not None)


def report_and_record(graded: Graded, cfg: GradeConfig, batch: Batch) -> StudentResult:
    """The *report* and *record* stages of one graded submission."""
    write_report(cfg.out, graded.result, graded.executed)
    batch.record(graded.result, rejected=graded.rejected)
    return graded.result


def _titled(items: list, assignment: Assignment) -> list:
    return [replace(i, title=assignment.titles.get(i.item, "")) for i in items]


def _stopped(execution: Execution) -> str | None:
    return messages.grading_stopped(execution.error) if execution.error else None


def _result(sub: Submission, cfg: GradeConfig, inspection: Inspection,
            merged: MergeResult | None, execution: Execution | None,
            judgement: Judgement | None, items: list, start: float,
            merge_s: float | None) -> StudentResult:
    """The student's result: items, notes (collecting, inspecting, merging, the sandbox),
    written answers and timings."""
    notes = [*sub.notes, *(n for n in inspection.notes if n not in sub.notes)]
    platform = {"lms_id": sub.lms_id, "late": sub.late}
    if merged is None:
        return StudentResult(sub.student, cfg.assignment, items, notes, {}, cfg.profile,
                             cfg.device, {"wall_s": time.perf_counter() - start},
                             inspection.problem, **platform)
    notes += merged.notes.get("", [])
    if execution.outside_sandbox:
        notes.append(messages.OUTSIDE_SANDBOX)
    written = {written_name(name, item): "\n\n".join(merged.written.get(w, "")
                                                     for w in item.written)
               for name, item in merged.items.items() if item.written}
    own = {cell_id(c) for c in merged.notebook.cells
           if cell_meta(c).get("role") != "hidden"
           and "grader" not in c.get("metadata", {}).get("tags", [])}
    wall = time.perf_counter() - start
    timings = {"merge_s": merge_s, "judge_s": judgement.seconds, "run_s": execution.wall_s,
               "cells_s": execution.cells_s,
               "student_cells_s": sum(c.duration for c in execution.cells if c.id in own),
               "wall_s": wall, "overhead_s": wall - execution.cells_s}
    return StudentResult(sub.student, cfg.assignment, items, notes, written, cfg.profile,
                         cfg.device, timings, _stopped(execution), **platform)


def _crashed(sub: Submission, cfg: GradeConfig, assignment: Assignment,
             exc: BaseException) -> StudentResult:
    return StudentResult(sub.student, cfg.assignment,
                         _titled(crashed_items(assignment.items), assignment), [], {},
                         cfg.profile, cfg.device, {"wall_s": 0.0},
                         messages.internal_error(exc), sub.lms_id, sub.late)


# --- the batch ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchOutcome:
    """What a batch graded: every result (skipped students' included), the batch's state, and
    the gradebook written."""

    results: list[StudentResult]
    batch: Batch
    gradebook: Path


def grade_batch(cfg: GradeConfig, assignment: Assignment,
                argv: list[str] | None = None) -> BatchOutcome:
    """Collect the submissions of ``cfg``, grade those not graded already, write the
    gradebook. UsageError when the submissions name nothing to grade."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    shared = cfg.slurm_folder if cfg.executor == "slurm" else None  # seen by compute nodes
    if shared is not None:
        shared.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dgm-grade-", dir=shared) as tmp:
        unpacked, warnings, passed_over = Path(tmp) / "unpacked", [], []
        try:
            subs = collect(list(cfg.submissions), cfg.assignment, unpacked,
                           max_bytes=cfg.max_bytes, warnings=warnings, passed_over=passed_over)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        if not subs:
            raise UsageError("no notebooks found in the given submissions")
        batch = Batch(cfg, assignment.sha256, argv, warnings, passed_over)
        todo = batch.plan(subs)  # without those graded already by an earlier run
        root = Path(tmp)
        if cfg.keep_work:
            root = Path(tempfile.mkdtemp(prefix="dgm-grade-work-"))
            print(f"work folders kept under {root}", file=sys.stderr)
        work = Workspace(root, unpacked, _gpu_queue(cfg))
        if cfg.executor == "slurm":  # the same grading, one Slurm array task per submission
            from autograder.slurm import run_array

            results = run_array(todo, cfg, assignment, batch, work)
        else:
            results = _run_jobs(todo, cfg, assignment, batch, work)
    results = batch.finish(results)  # with the skipped students' results
    gradebook = write_gradebook(cfg.out, cfg.assignment, columns(assignment.items),
                                batch.gradebook_rows(results))
    return BatchOutcome(results, batch, gradebook)


def _gpu_queue(cfg: GradeConfig) -> Queue | None:
    """One submission per GPU at a time: jobs beyond the GPUs wait for a free one."""
    if cfg.device != "cuda" or not cfg.gpus:
        return None
    gpus: Queue = Queue()
    for gpu in cfg.gpus:
        gpus.put(gpu)
    return gpus


def _run_jobs(todo: list[Submission], cfg: GradeConfig, assignment: Assignment, batch: Batch,
              work: Workspace) -> list[StudentResult | None]:
    """:func:`grade_one` for each submission, ``cfg.jobs`` at a time, with a progress bar."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = (tqdm(total=len(todo), desc=f"grading {cfg.assignment}", unit="nb", file=sys.stderr,
                disable=not cfg.progress) if tqdm else None)

    def job(sub: Submission) -> StudentResult | None:
        if not batch.start(sub):  # interrupted: nothing new starts
            return None
        return grade_one(sub, cfg, assignment, batch, work)

    results: list[StudentResult | None] = []
    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        futures = {pool.submit(job, s): s for s in todo}
        for fut in as_completed(futures):
            sub = futures[fut]
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - one bad submission never stops a batch
                traceback.print_exc()
                crashed = _crashed(sub, cfg, assignment, exc)
                batch.record(crashed, complete=False)
                results.append(crashed)
            if bar is not None:
                bar.set_postfix_str(sub.student)
                bar.update(1)
    if bar is not None:
        bar.close()
    return results
