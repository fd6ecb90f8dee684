"""Grade a class's submissions: ``python -m autograder grade``.

::

    python -m autograder grade --assignment vae SUBMISSION... --out DIR
        [--jobs N] [--device auto|cpu|cuda] [--profile smoke|cpu|full]
        [--source solutions/] [--timeout S] [--require-full-marks]
        [--memory-mb MB] [--max-procs N] [--max-size-mb MB] [--regrade]

A SUBMISSION is a notebook, a folder of notebooks or an LMS zip export
(:mod:`autograder.submissions`). For each student:

1. merge: the instructor's source with the student's graded cells, hidden checks inserted,
   seeds reset before every graded and hidden cell (:mod:`autograder.merge`);
2. execute with nbval in a fresh folder, a fixed kernel and a per-cell timeout
   (:mod:`autograder.runner`, :mod:`autograder.nbval_plugin`);
3. judge and score: each hidden check measures in the kernel and is judged here, outside the
   student's reach (:mod:`autograder.checks`); it earns its points (or the fraction its
   verdict gives) when both parts pass; one that fails or times out earns 0 for its item only;
4. report: ``DIR/<student>/results.json`` (Gradescope), ``feedback.md``/``.html``,
   ``executed.ipynb`` (instructor only: it holds the hidden checks), and
   ``DIR/gradebook.csv`` (:mod:`autograder.report`), and ``DIR/grader.log.jsonl``, the run
   log; a rerun on the same DIR skips students already graded (:mod:`autograder.state`).

Students are graded ``--jobs`` at a time, each in its own pytest subprocess and sandboxed
kernel; threads are shared out between jobs. With ``--device cuda`` each submission gets a
GPU of its own for its whole run (``CUDA_VISIBLE_DEVICES``): never two on one GPU, so jobs
beyond the number of GPUs wait for a free one.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from queue import Queue
from typing import Literal, get_args

import nbformat

from autograder.checks import run_verdict, split_check
from autograder.verdicts import start as start_verdicts
from autograder.merge import MergeResult, merge
from dgm.config import PROFILES, check_choice
from autograder.notebook_format import cell_id, cell_meta, read_notebook, source_text, validate
from autograder.release import ASSIGNMENTS
from autograder.report import (
    ItemResult,
    StudentResult,
    summary_table,
    write_gradebook,
    write_student,
)
from autograder.runner import Limits, RunResult, kernel_env, run_notebook
from autograder.submissions import Submission, collect

ROOT = Path(__file__).resolve().parent.parent
Device = Literal["auto", "cpu", "cuda"]
#: Per-cell timeout in seconds by profile: the homework contract allows 120 s per cell in
#: smoke on 2 cores; cpu and full runs train for minutes in one cell.
CELL_TIMEOUT: dict[str, float] = {"smoke": 120.0, "cpu": 900.0, "full": 900.0}
MESSAGE_LIMIT = 600
#: How many times a notebook is run again after a cell killed its kernel.
MAX_RERUNS = 3
NOT_DONE = ("Not done yet: your code raises NotImplementedError, so the FIXME is still there; "
            "replace it with your implementation.")


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda``: what ``device`` means on this machine (``auto``: cuda if present)."""
    check_choice(device, get_args(Device), "device")
    if device == "cpu":
        return "cpu"
    try:
        import torch

        available = torch.cuda.is_available()
    except ImportError:
        available = False
    if device == "cuda" and not available:
        raise ValueError("--device cuda was asked for but CUDA is not available; use auto or cpu")
    return "cuda" if available else "cpu"


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


# --- messages -------------------------------------------------------------------------------

def hidden_lines(source) -> list[str]:
    """Distinctive lines of the hidden checks, which must never reach a student."""
    lines = set()
    for cell in source.cells:
        if cell_meta(cell).get("role") == "hidden":
            for line in source_text(cell).splitlines():
                line = line.strip()
                if len(line) >= 12:
                    lines.add(line)
    return sorted(lines, key=len, reverse=True)


def redact(text: str, secret_lines: list[str]) -> str:
    """``text`` without any hidden-check source line, one line, at most MESSAGE_LIMIT chars."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    for line in secret_lines:
        if line in text:
            text = text.replace(line, "[hidden check]")
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."


def _describe(rec: dict | None, what: str, timeout: float, secret: list[str]) -> str | None:
    """A student-facing sentence about a cell that did not pass (None if it passed)."""
    if rec is None:
        return f"{what} did not run (the notebook stopped before reaching it)."
    status = rec["status"]
    if status == "passed":
        return None
    if status == "timeout":
        return (f"{what} did not finish within {timeout:g} s and was stopped: is a loop not "
                "ending, or is it too slow for this profile?")
    if status == "crashed":
        return (f"{what} stopped the Python kernel (a crash, or it ran out of memory); the "
                "cells after it were run again without it.")
    if status == "skipped":
        return f"{what} was skipped."
    if status == "error":
        return (f"{what} could not run: the Python kernel had stopped (it crashed, ran out of "
                "memory, or did not recover from an earlier timeout).")
    ename, evalue = rec.get("ename") or "Error", redact(rec.get("evalue") or "", secret)
    if ename == "NotImplementedError":
        return f"{what} raised NotImplementedError. {NOT_DONE}"
    if ename == "AssertionError":
        return f"{what} failed: {evalue}" if evalue else f"{what} failed (no message)."
    if ename == "NameError":
        return (f"{what} raised NameError: {evalue}. Did the cell that defines it run without "
                "errors, and does it keep the name the notebook asks for?")
    return f"{what} raised {ename}: {evalue}"


def _culprit(cells: list[dict]) -> int | None:
    """Index of the cell after which the kernel was dead, if it died before the end."""
    for n, rec in enumerate(cells):
        if rec["status"] == "error" and n > 0 and cells[n - 1]["status"] in ("crashed",
                                                                          "timeout"):
            return cells[n - 1]["index"]
    return None


def sandbox_limits(args) -> Limits:
    """The kernel's limits, and the folders it must not see: the instructor's source (hidden
    checks), the output folder (everyone's results), the unpacked and submitted files."""
    hide = {Path(args.source).resolve(), Path(args.out).resolve()}
    hide |= {Path(s).resolve().parent if Path(s).is_file() else Path(s).resolve()
             for s in args.submissions}
    if getattr(args, "unpack_dir", None):
        hide.add(Path(args.unpack_dir).resolve())
    # Never a folder the kernel needs: the course packages, Python, the data, temporary files.
    from dgm.data import data_root
    from dgm.evaluate import default_cache_dir

    needed = [ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
              Path(tempfile.gettempdir()).resolve(), data_root(), default_cache_dir().resolve()]
    hide = {h for h in hide if not any(n == h or h in n.parents for n in needed)}
    return Limits(memory_mb=getattr(args, "memory_mb", 6144) or None,
                  nproc=getattr(args, "max_procs", 512) or None,
                  isolate=not getattr(args, "no_sandbox", False),
                  hide=tuple(sorted(str(h) for h in hide)))


def run_until_done(nb, workdir: Path, args, env: dict, attempts: int = MAX_RERUNS) -> RunResult:
    """Execute ``nb``; when a cell kills the kernel, run again without it (at most
    ``attempts`` times), so that later items that do not depend on it are still graded.

    The records of the cells up to the culprit come from the first run, those after it from
    the re-run; timings add up.
    """
    code = [c for c in nb.cells if c.cell_type == "code"]
    total = args.timeout * len(code) + 120.0
    limits = sandbox_limits(args)
    run = run_notebook(nb, workdir / "run0", cell_timeout=args.timeout, total_timeout=total,
                       env=env, kernel_name=args.kernel_name, limits=limits)
    for attempt in range(1, attempts + 1):
        culprit = _culprit(run.cells)
        if culprit is None:
            break
        nb = copy.deepcopy(nb)
        [c for c in nb.cells if c.cell_type == "code"][culprit].source = (
            "raise RuntimeError('not run again: this cell stopped the kernel before')")
        again = run_notebook(nb, workdir / f"run{attempt}", cell_timeout=args.timeout,
                             total_timeout=total, env=env, kernel_name=args.kernel_name,
                             limits=limits)
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


def judge(source, run: RunResult) -> None:
    """Decide, in this process, the verdict of every hidden check whose student section ran
    in the kernel without an exception (:mod:`autograder.checks`); store it in its record."""
    hidden = {cell_id(c): c for c in source.cells if cell_meta(c).get("role") == "hidden"}
    for rec in run.cells:
        cell = hidden.get(rec.get("id"))
        if cell is None or rec.get("status") != "passed":
            continue
        start = time.perf_counter()
        verdict = run_verdict(split_check(source_text(cell)), rec.get("observations") or [])
        rec["verdict"] = {"status": verdict.status, "message": verdict.message,
                          "fraction": verdict.fraction}
        rec["judge_s"] = time.perf_counter() - start


def score_items(merged: MergeResult, run: RunResult | None, timeout: float,
                secret: list[str], error: str | None = None) -> list[ItemResult]:
    """Points and messages per item, from what each cell of the merged notebook did."""
    records = {c["id"]: c for c in (run.cells if run else [])}
    points = {cell_id(c): cell_meta(c).get("points", 0) for c in merged.notebook.cells}
    results: list[ItemResult] = []
    for name, item in merged.items.items():
        if item.hidden:
            res = ItemResult(name, "auto", float(item.hidden_points), 0.0)
            res.messages += merged.notes.get(name, [])
            cells = [*item.graded, *item.selfchecks, *item.hidden]
            if any((records.get(c) or {}).get("ename") == "NotImplementedError" for c in cells):
                res.messages.append(NOT_DONE)
            broken = []
            for gid in item.graded:
                msg = _describe(records.get(gid), f"Your cell `{gid}`", timeout, secret)
                if msg and records.get(gid) is not None:
                    broken.append(gid)
                    if NOT_DONE not in msg:
                        res.messages.append(msg)
            for sid in item.selfchecks:
                rec = records.get(sid)
                if rec is not None and rec["status"] == "failed":
                    msg = _describe(rec, f"Self-check `{sid}`", timeout, secret)
                    if NOT_DONE not in msg and not (broken and rec.get("ename") == "NameError"):
                        res.messages.append(msg)
            for n, hid in enumerate(item.hidden, start=1):
                rec, pts = records.get(hid), float(points.get(hid, 0))
                label = f"Check {n} of {len(item.hidden)} ({pts:g} point{'s' * (pts != 1)})"
                earned, msg = 0.0, _describe(rec, label, timeout, secret)
                if error and rec is None:
                    msg = f"{label} did not run: {error}."
                elif msg and broken and rec and rec.get("ename") == "NameError":
                    msg = (f"{label} could not run: your cell `{broken[0]}` did not complete, "
                           "so a name it defines is missing (see above).")
                elif msg and NOT_DONE in msg:
                    msg = f"{label}: 0 points (NotImplementedError, see above)."
                if msg is None:
                    verdict = rec.get("verdict") or {"status": "error", "fraction": 0.0,
                                                     "message": "the check was not judged"}
                    fraction = float(verdict.get("fraction", 0.0))
                    if verdict["status"] != "passed":
                        fraction = 0.0
                        text = redact(verdict.get("message") or "", secret)
                        msg = (f"{label} failed: {text}" if verdict["status"] == "failed"
                               else f"{label} could not be judged: {text}")
                    elif fraction < 1.0:
                        msg = f"{label}: partial credit. " + redact(
                            verdict.get("message") or "", secret)
                    earned = pts * fraction
                res.checks.append({"id": hid, "points": pts, "earned": earned,
                                   "status": rec["status"] if rec else "not run"})
                res.score += earned
                if msg and msg not in res.messages:
                    res.messages.append(msg)
            results.append(res)
        if item.written:
            res = ItemResult(name if not item.hidden else f"{name} (written)", "written",
                             float(item.written_points), None)
            res.messages += merged.notes.get(name, [])
            answered = [merged.written.get(w, "") for w in item.written]
            if not any("YOUR ANSWER HERE" not in a for a in answered):
                res.messages.append("No answer found (the placeholder is still there).")
            res.messages.append("Pending: graded by hand.")
            results.append(res)
    return results


# --- one submission -------------------------------------------------------------------------

def grade_submission(sub: Submission, source, args, out: Path, workroot: Path,
                     secret: list[str], gpus: Queue | None = None) -> StudentResult:
    """Merge, execute, score and write the reports of one submission."""
    start = time.perf_counter()
    source_name = f"{args.source}/{args.assignment}.ipynb"
    timings: dict[str, float] = {}
    executed, run, error = None, None, None
    try:
        student_nb = read_notebook(sub.path)
        if not isinstance(student_nb.get("cells"), list):
            raise ValueError("no cells")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the student's, not ours
        student_nb = nbformat.v4.new_notebook()
        error = f"Your notebook could not be read ({type(exc).__name__}); nothing was graded"
    merged = merge(source, student_nb, source_name)
    timings["merge_s"] = time.perf_counter() - start

    if error is None:
        gpu = gpus.get() if gpus is not None else None
        try:
            extra = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}
            env = kernel_env(args.profile, args.resolved_device, args.threads, extra)
            workdir = Path(tempfile.mkdtemp(prefix=f"{sub.student}-", dir=workroot))
            run = run_until_done(merged.notebook, workdir, args, env)
            if not args.keep_work:
                shutil.rmtree(workdir, ignore_errors=True)
        finally:
            if gpu is not None:
                gpus.put(gpu)
        judge(source, run)
        if run.sandbox and run.sandbox.get("network", True):
            notes_sandbox = ("The notebook ran outside the grader's sandbox (this machine has no "
                             "Linux user namespaces, or the instructor turned it off): it had "
                             "network access and no read-only file system. Your grade is not "
                             "affected.")
            merged.note("", notes_sandbox)
        timings["judge_s"] = sum(c.get("judge_s", 0.0) for c in run.cells)
        executed = run.executed
        if run.error:
            error = f"Grading stopped early: {run.error}"
        timings["run_s"] = run.wall_s
        timings["cells_s"] = run.cells_s
        own = {cell_id(c) for c in merged.notebook.cells
               if cell_meta(c).get("role") != "hidden" and "grader" not in
               c.get("metadata", {}).get("tags", [])}
        timings["student_cells_s"] = sum(c["duration"] for c in run.cells if c["id"] in own)

    items = score_items(merged, run, args.timeout, secret, error)
    notes = list(sub.notes) + merged.notes.get("", [])
    written = {}
    for name, item in merged.items.items():
        if item.written:
            written[name if not item.hidden else f"{name} (written)"] = "\n\n".join(
                merged.written.get(w, "") for w in item.written)
    result = StudentResult(sub.student, args.assignment, items, notes, written, args.profile,
                           args.resolved_device, timings, error)
    write_student(out, result, executed)
    timings["wall_s"] = time.perf_counter() - start
    timings["overhead_s"] = timings["wall_s"] - timings.get("cells_s", 0.0)
    write_student(out, result, None)  # again, with the final timings
    return result


def _crashed(sub: Submission, args, merged_items, exc: BaseException) -> StudentResult:
    items = [ItemResult(name, "auto", float(it.hidden_points), 0.0,
                        ["Not graded: the grader failed on this submission; your instructor "
                         "has been told."]) for name, it in merged_items.items() if it.hidden]
    items += [ItemResult(name, "written", float(it.written_points), None, ["Pending."])
              for name, it in merged_items.items() if it.written]
    return StudentResult(sub.student, args.assignment, items, [], {}, args.profile,
                         args.resolved_device, {"wall_s": 0.0},
                         f"Internal grader error ({type(exc).__name__}).")


# --- command line ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder grade",
                                description="Grade submitted notebooks of one assignment.")
    p.add_argument("--assignment", required=True,
                   help=f"assignment name: {', '.join(ASSIGNMENTS)} (any notebook name of "
                        "--source when it is given)")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                   help="notebook, folder of notebooks, or zip export (one notebook per student)")
    p.add_argument("--out", required=True, type=Path, help="folder for the results")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    p.add_argument("--profile", default="smoke", help="smoke, cpu or full (default smoke)")
    p.add_argument("--source", type=Path, default=ROOT / "solutions",
                   help="folder of instructor source notebooks (default solutions/)")
    p.add_argument("--timeout", type=float, default=None,
                   help="per-cell timeout in seconds (default: 120 smoke, 900 cpu and full)")
    p.add_argument("--kernel-name", default="python3", help="Jupyter kernel to run (python3)")
    p.add_argument("--keep-work", action="store_true", help="keep the per-submission folders")
    p.add_argument("--memory-mb", type=int, default=6144,
                   help="memory limit per submission in MiB (default 6144)")
    p.add_argument("--max-procs", type=int, default=512,
                   help="process and thread limit per submission (default 512)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run kernels without namespaces (no network isolation, no read-only "
                        "file system): only for debugging the grader")
    p.add_argument("--require-full-marks", action="store_true",
                   help="exit 1 unless every submission earns every auto-graded point (CI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from autograder.submissions import DEFAULT_MAX_MB

    p.add_argument("--max-size-mb", type=float, default=DEFAULT_MAX_MB,
                   help=f"largest notebook graded, in MB (default {DEFAULT_MAX_MB:g}); a larger "
                        "one is not run and its student is told why")
    p.add_argument("--regrade", action="store_true",
                   help="grade every submission again; by default a student whose results in "
                        "--out were made from the same file, source and profile is skipped")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_choice(args.profile, PROFILES, "profile")
        args.resolved_device = resolve_device(args.device)
        if args.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        if not args.max_size_mb > 0:
            raise ValueError("--max-size-mb must be positive")
        args.max_bytes = int(args.max_size_mb * 2**20)
        source_path = args.source / f"{args.assignment}.ipynb"
        if args.source.resolve() == (ROOT / "solutions").resolve():
            check_choice(args.assignment, ASSIGNMENTS, "assignment")
        if not source_path.is_file():
            raise ValueError(f"{source_path} does not exist")
        source = read_notebook(source_path)
        validate(source, str(source_path))
    except ValueError as exc:
        parser.error(str(exc))
    args.source = str(args.source)
    os.environ["DGM_PROFILE"] = args.profile  # verdicts re-run the checks' setup here
    profiles: tuple[str, ...] = ()
    if any("dgm.evaluate" in source_text(c) for c in source.cells
           if cell_meta(c).get("role") == "hidden"):
        # Verdicts judge samples with the evaluation classifier: load the grader's copy now,
        # before any student kernel could write a forged one into the cache.
        from dgm.evaluate import get_classifier

        profiles = tuple(sorted({args.profile, "smoke"}))  # checks may pin the smoke one
        for profile in profiles:
            get_classifier(profile=profile)
    start_verdicts(profiles)  # the verdicts' zygote loads its copy too, before any kernel runs
    if args.timeout is None:
        args.timeout = CELL_TIMEOUT[args.profile]
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    gpus = None
    if args.resolved_device == "cuda":
        ids = _gpu_ids()
        if ids:  # one submission per GPU at a time: jobs beyond the GPUs wait for a free one
            gpus = Queue()
            for g in ids:
                gpus.put(g)
            args.threads = max(1, (os.cpu_count() or 1) // min(args.jobs, len(ids)))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    secret = hidden_lines(source)
    items_meta = validate(source, args.source)

    with tempfile.TemporaryDirectory(prefix="dgm-grade-") as tmp:
        workroot = Path(tmp)
        try:
            args.unpack_dir = workroot / "unpacked"
            warnings: list[str] = []
            subs = collect(args.submissions, args.assignment, args.unpack_dir,
                           max_bytes=args.max_bytes, warnings=warnings)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        if not subs:
            parser.error("no notebooks found in the given submissions")
        from autograder.state import Batch

        batch = Batch(out, args, source_path, source, items_meta, argv, warnings)
        subs = batch.plan(subs)  # without those graded already by an earlier run
        if args.keep_work:
            workroot = Path(tempfile.mkdtemp(prefix="dgm-grade-work-"))
            print(f"work folders kept under {workroot}", file=sys.stderr)
        results: list[StudentResult] = []
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
        bar = (tqdm(total=len(subs), desc=f"grading {args.assignment}", unit="nb",
                    file=sys.stderr, disable=args.no_progress) if tqdm else None)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(batch.grade, s, grade_submission, source, args, out,
                                   workroot, secret, gpus): s for s in subs}
            for fut in as_completed(futures):
                sub = futures[fut]
                try:
                    results.append(fut.result())
                except Exception as exc:  # noqa: BLE001 - one bad submission never stops a batch
                    traceback.print_exc()
                    crashed = _crashed(sub, args, items_meta, exc)
                    batch.record(crashed, complete=False)
                    results.append(crashed)
                if bar is not None:
                    bar.set_postfix_str(sub.student)
                    bar.update(1)
        if bar is not None:
            bar.close()

    results = batch.finish(results)  # with the skipped students' results
    columns = []
    for name, it in items_meta.items():
        if it.hidden:
            columns.append((name, "auto", float(it.hidden_points)))
        if it.written:
            columns.append((name if not it.hidden else f"{name} (written)", "written",
                            float(it.written_points)))
    gradebook = write_gradebook(out, args.assignment, columns, batch.gradebook_rows(results))
    print(summary_table(results, batch.skipped_ids))
    print(f"\n{batch.summary()} ({args.profile} profile, "
          f"{args.resolved_device}); results in {out}, gradebook {gradebook}")
    if batch.interrupted:
        return 130
    if args.require_full_marks and any(r.auto_score < r.auto_max for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
