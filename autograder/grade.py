"""Grade a class's submissions: ``python -m autograder grade``.

::

    python -m autograder grade --assignment vae SUBMISSION... --out DIR
        [--jobs N] [--device auto|cpu|cuda] [--profile smoke|cpu|full]
        [--source solutions/] [--timeout S] [--notebook-timeout S] [--require-full-marks]
        [--memory-mb MB] [--max-procs N] [--max-size-mb MB] [--regrade]
        [--executor local|slurm [--partition P] [--gpus-per-job N] [--time MIN]
         [--mem-gb G] [--cpus-per-task N] [--array-parallelism K]]
        [--roster CSV] [--lms-column NAME]

A SUBMISSION is a notebook, a folder of notebooks or an LMS zip export
(:mod:`autograder.submissions`). The command line becomes one frozen
:class:`autograder.config.GradeConfig`; :mod:`autograder.pipeline` grades the batch, stage by
stage: collect, inspect, merge, run, judge, score, report, record. It writes
``DIR/<student>/results.json`` (Gradescope), ``feedback.md``/``.html``,
``DIR/.instructor/<student>/executed.ipynb`` (instructor only: it holds the hidden checks), ``DIR/gradebook.csv`` and
``DIR/grader.log.jsonl``, the run log; a rerun on the same DIR skips students already graded
(:mod:`autograder.state`); and the gradebook for a learning platform, ``DIR/canvas_gradebook.csv``
and ``DIR/grades.csv`` (:mod:`autograder.lms`).

The profile defaults to the book's rule (:func:`dgm.config.get_profile`): ``$DGM_PROFILE``,
else ``full`` where CUDA is available and ``cpu`` otherwise, so that notebooks are graded in
the profile their book pages ran in. Before anything runs, the submission paths are checked,
and then the data the assignment's checks read (Fashion-MNIST under ``$DGM_DATA``): a problem
with either is one message, never a traceback.

Students are graded ``--jobs`` at a time, each in its own pytest subprocess and sandboxed
kernel; threads are shared out between jobs. With ``--device cuda`` each submission gets a
GPU of its own for its whole run (``CUDA_VISIBLE_DEVICES``): never two on one GPU, so jobs
beyond the number of GPUs wait for a free one. With ``--executor slurm`` each submission is
graded the same way by one task of a Slurm job array instead (:mod:`autograder.slurm`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from autograder import sandbox
from autograder.config import GradeConfig
from autograder.lms import Roster, write_exports
from autograder.notebook_format import source_text
from autograder.pipeline import UsageError, grade_batch, load_assignment, prepare_verdicts
from autograder.release import ASSIGNMENTS
from autograder.report import read_typed, summary_table
from autograder.scoring import columns
from autograder.submissions import DEFAULT_MAX_MB, missing_message, missing_paths
from dgm.config import PROFILES

ROOT = Path(__file__).resolve().parent.parent


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
    p.add_argument("--profile", default=None,
                   help=f"{', '.join(PROFILES)}; default: the book's rule, $DGM_PROFILE, else "
                        "full where CUDA is available and cpu otherwise. Grade in the profile "
                        "the students ran")
    p.add_argument("--source", type=Path, default=ROOT / "solutions",
                   help="folder of instructor source notebooks (default solutions/)")
    p.add_argument("--timeout", type=float, default=None,
                   help="per-cell timeout in seconds (default: 120 smoke, 900 cpu and full)")
    p.add_argument("--notebook-timeout", type=float, default=None,
                   help="time budget of a whole notebook in seconds, re-runs included; cells it "
                        "does not reach are not run, and the feedback says so (default: 600 "
                        "smoke, 2700 cpu, 3600 full)")
    p.add_argument("--kernel-name", default="python3", help="Jupyter kernel to run (python3)")
    p.add_argument("--keep-work", action="store_true", help="keep the per-submission folders")
    p.add_argument("--memory-mb", type=int, default=6144,
                   help="memory limit per submission in MiB (default 6144)")
    p.add_argument("--max-procs", type=int, default=512,
                   help="process and thread limit per submission (default 512)")
    p.add_argument("--disk-mb", type=int, default=2048,
                   help="MiB of files a submission may write in its folder, /tmp and /dev/shm "
                        "(default 2048)")
    p.add_argument("--insecure-no-sandbox", dest="insecure_no_sandbox", action="store_true",
                   help="run kernels without the bubblewrap sandbox (they can read this "
                        "machine's files and reach the network); without it, grading refuses "
                        "to start where bubblewrap cannot run. The feedback says so")
    p.add_argument("--require-full-marks", action="store_true",
                   help="exit 1 unless every submission earns every auto-graded point (CI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-size-mb", type=float, default=DEFAULT_MAX_MB,
                   help=f"largest notebook graded, in MB (default {DEFAULT_MAX_MB:g}); a larger "
                        "one is not run and its student is told why")
    p.add_argument("--regrade", action="store_true",
                   help="grade every submission again; by default a student whose results in "
                        "--out were made from the same file, source and profile is skipped")
    add_executor_options(p)
    p.add_argument("--roster", type=Path, default=None,
                   help="CSV with columns student (the grader's id) and id (the learning "
                        "platform's) for canvas_gradebook.csv and grades.csv; Canvas's own "
                        "export names carry the ids already")
    p.add_argument("--lms-column", default=None,
                   help="the assignment's column in canvas_gradebook.csv (default: the "
                        "assignment's name; Canvas creates the column when it is new)")
    return p


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """``--executor local|slurm`` and the Slurm job array's options (:mod:`autograder.slurm`)."""
    g = p.add_argument_group("where submissions are graded")
    g.add_argument("--executor", default="local",
                   help="local (default: this machine, --jobs at a time) or slurm (one task of a "
                        "Slurm job array per submission; --out and the virtual environment must "
                        "be on a file system the compute nodes see)")
    g.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
    g.add_argument("--gpus-per-job", type=int, default=None,
                   help="GPUs per task (default 1 with --device cuda, else 0)")
    g.add_argument("--time", type=int, default=60,
                   help="time limit per task in minutes (default 60); a task killed by it, by a "
                        "node failure or by preemption runs once more, then counts as a grader "
                        "error for that student")
    g.add_argument("--mem-gb", type=float, default=None,
                   help="memory per task in GB (default: the partition's)")
    g.add_argument("--cpus-per-task", type=int, default=2, help="cores per task (default 2)")
    g.add_argument("--array-parallelism", type=int, default=64,
                   help="tasks of the array running at once (default 64)")


#: What a source notebook's checks use that needs Fashion-MNIST on disk.
DATA_USERS = ("load_dataset", "dgm.evaluate", "get_classifier", "make_loader")


def data_problem(notebook) -> str | None:
    """None when the assignment needs no data or Fashion-MNIST is where ``DGM_DATA`` says;
    else what is missing and how to point the grader at it."""
    if not any(word in source_text(c) for c in notebook.cells for word in DATA_USERS):
        return None
    from dgm.data import FASHION_FILES, DataError, check_idx_file, data_root

    root = data_root()
    raw = root / "FashionMNIST" / "raw"
    missing = [name for name in FASHION_FILES if not (raw / name).is_file()]
    try:
        for name, magic in FASHION_FILES.items():
            if name not in missing:
                check_idx_file(raw / name, magic)
    except DataError as exc:
        return f"grading needs Fashion-MNIST, and {exc}"
    if not missing:
        return None
    how = ("DGM_DATA is set to it" if os.environ.get("DGM_DATA", "").strip()
           else "DGM_DATA is not set, so the default folder was looked in")
    return (f"grading needs Fashion-MNIST (the checks and the students' notebooks read it), "
            f"and {raw} lacks {', '.join(missing)} ({how}). Point DGM_DATA at the folder "
            "that holds FashionMNIST/raw/ with the four IDX files, e.g. `DGM_DATA=/path/to/"
            "data python -m autograder grade ...`, or load the data set once with internet "
            "access (`python -c \"from dgm.data import load_dataset; "
            "load_dataset('fashion_mnist')\"`)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        missing = missing_paths(args.submissions)
        if missing:
            raise ValueError(missing_message(missing))
        cfg = GradeConfig.from_args(args)
        assignment = load_assignment(cfg)
        roster = Roster.read(args.roster) if args.roster is not None else None
        problem = data_problem(assignment.notebook)
        if problem:
            raise ValueError(problem)
        if cfg.executor == "local":  # a Slurm task checks its own node (autograder.slurm)
            sandbox.require(insecure=not cfg.sandbox)
    except (ValueError, sandbox.SandboxUnavailable) as exc:
        parser.error(str(exc))
    if cfg.executor == "local":
        prepare_verdicts(cfg, assignment)
    try:
        outcome = grade_batch(cfg, assignment, argv)
    except UsageError as exc:
        parser.error(str(exc))
    batch = outcome.batch
    typed = read_typed(outcome.gradebook, columns(assignment.items))
    print(summary_table(outcome.results, batch.skipped_ids, typed=typed))
    if batch.passed_over:
        print(batch.passed_over_text())
    export = write_exports(cfg.out, cfg.assignment, roster, args.lms_column)
    for problem in export.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"\n{batch.summary()} ({cfg.profile} profile, {cfg.device}); results in {cfg.out}, "
          f"gradebook {outcome.gradebook}; for a learning platform {export.canvas.name} and "
          f"{export.plain.name}")
    if batch.interrupted:
        return 130
    if cfg.require_full_marks and any(r.auto_score < r.auto_max for r in outcome.results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
