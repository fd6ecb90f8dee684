"""What Gradescope's ``run_autograder`` does: grade ``/autograder/submission``, write results.json.

Gradescope runs ``/autograder/run_autograder`` as root, once per submission, in a container
built by the package's ``setup.sh`` (:mod:`autograder.gradescope` builds the package)::

    /autograder/source/        the package, unpacked; only root reads it after setup.sh
        gradescope.json        what the package was built for (assignment, profile, ...)
        solutions/NAME.ipynb   the instructor's source, hidden checks included
    /autograder/course/        the course packages (dgm, autograder), readable by the kernel
    /autograder/data/          Fashion-MNIST; /autograder/cache/: the evaluation classifier
    /autograder/submission/    what the student uploaded: a notebook, or a folder of files
    /autograder/results/       results.json goes here (only root may read it)

``$DGM_AUTOGRADER_ROOT`` replaces ``/autograder`` (the tests use it). The notebook to grade is
picked by :func:`autograder.submissions.collect_single`, and the results say which. It is
graded by the ordinary pipeline (:mod:`autograder.pipeline`) with the kernel run as an
unprivileged user (``dgm-student``, made by setup.sh; ``$DGM_GRADESCOPE_USER`` overrides) that
cannot read the source, the results or the grader's processes, inside the bubblewrap sandbox
where the container lets it run (``$DGM_GRADESCOPE_SANDBOX=off`` turns it off, for tests). The
results say which isolation applied.

A provisional results.json (0 points, "grading did not finish") is written first, so that a
run stopped by Gradescope's time limit still leaves results; a failure of the grader itself
leaves results that say so. Gradescope's format: ``score``, ``execution_time``, ``output``
with ``output_format`` ``md``, ``tests`` (one per item: ``name`` is the exercise's title,
``number``, ``score``, ``max_score``, ``status``, ``output``, ``visibility``; the hidden checks'
items ``visible`` or ``after_published`` as the package was built; written items are marked
for manual grading with ``max_score`` 0, to be graded in Gradescope's own manual questions).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from autograder import messages

RESULTS = "results/results.json"
VISIBILITIES = ("visible", "after_published")


#: Seconds of Gradescope's limit kept, after the notebook's budget, for the verdicts (which
#: load weights and draw samples) and for writing results.json.
VERDICT_RESERVE_S = 120.0

def gradescope_root() -> Path:
    return Path(os.environ.get("DGM_AUTOGRADER_ROOT", "/autograder"))


def _write(path: Path, data: dict) -> None:
    from autograder.report import atomic_write

    atomic_write(path, json.dumps(data, indent=2) + "\n")
    os.chmod(path, 0o600)


def provisional(reason: str, started: float) -> dict:
    """Results that say grading did not finish (written first, replaced at the end)."""
    return {"score": 0.0, "execution_time": messages.coarse_seconds(time.time() - started),
            "output": f"**Not graded:** {reason}", "output_format": "md",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": []}


def kernel_user(wanted: str | None) -> str | None:
    """The user the kernel runs as: ``wanted`` when this grader is root and it exists."""
    if os.geteuid() != 0 or not wanted:
        return None
    try:
        pwd.getpwnam(wanted)
    except KeyError:
        return None
    return wanted


def isolation_text(user: str | None, sandbox_problem: str | None) -> str:
    """What isolation applied, in words for the results."""
    who = (f"ran as the unprivileged user `{user}`, which cannot read the instructor's "
           "files, the results or the grader's processes" if user else
           "ran as the grader's own user (the grader was not root)")
    if sandbox_problem is None:
        return (f"Isolation: your notebook {who}, inside the bubblewrap sandbox (no network, "
                "a file system holding only Python, the course packages and the data).")
    return (f"Isolation: your notebook {who}; the bubblewrap sandbox could not run in this "
            f"container ({sandbox_problem.split(':')[0]}), so it had network access.")


def _test(item: dict, output: str, number: int, visibility: str, rejected: bool) -> dict:
    """One Gradescope test from an item of the grader's results."""
    title = item.get("title") or item["item"]
    if item["kind"] == "written":
        answered = item["score"] is None and not rejected
        return {"name": f"{title} (graded by hand, {item['max_score']:g} points)",
                "number": str(number), "score": 0.0, "max_score": 0.0,
                "status": "passed" if answered else "failed",
                "output": (messages.PENDING + " Your instructor grades this answer in "
                           "Gradescope's manual grading." if answered
                           else messages.REJECTED if rejected else messages.NOT_ANSWERED),
                "visibility": "visible", "extra_data": {"manual_grading": True,
                                                        "points": item["max_score"]}}
    score, top = float(item["score"] or 0.0), float(item["max_score"])
    return {"name": title, "number": str(number), "score": score, "max_score": top,
            "status": "passed" if score >= top else "failed",
            "output": output or "All checks passed.", "visibility": visibility}


def gradescope_results(graded: dict, notes: list[str], visibility: str,
                       seconds: float, rejected: bool = False) -> dict:
    """Gradescope's results.json from the grader's own results.json of the student."""
    extra = graded["extra_data"]
    outputs = {t["name"]: t["output"] for t in graded["tests"]}
    tests = [_test(item, outputs.get(item["item"], ""), n, visibility, rejected)
             for n, item in enumerate(extra["items"], start=1)]
    lines = graded["output"].splitlines()
    summary, rest = (lines[0], lines[1:]) if lines else ("", [])
    rest = [line for line in rest if line != messages.OUTSIDE_SANDBOX]
    shown = [summary] if visibility == "visible" else []
    body = [*shown, "", *[f"- {line}" for line in [*notes, *rest]]]
    return {"score": float(graded["score"]), "execution_time": messages.coarse_seconds(seconds),
            "output": "\n".join(body).strip() + "\n", "output_format": "md",
            "test_output_format": "md", "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests,
            "extra_data": {"assignment": extra["assignment"], "profile": extra["profile"],
                           "error": extra.get("error"), "timings": extra.get("timings", {})}}


def grade_submission(root: Path, started: float) -> dict:
    """Grade the notebook in ``root/submission`` as the package in ``root/source`` says."""
    from autograder import sandbox
    from autograder.config import CELL_TIMEOUT, GradeConfig
    from autograder.pipeline import grade_batch, load_assignment
    from autograder.report import StudentResult, gradescope_json
    from autograder.scoring import rejected_items
    from autograder.submissions import collect_single

    package = json.loads((root / "source" / "gradescope.json").read_text())
    visibility = package["hidden_visibility"]
    sub = collect_single(root / "submission", package["assignment"])
    user = kernel_user(os.environ.get("DGM_GRADESCOPE_USER", package.get("user")))
    forced_off = os.environ.get("DGM_GRADESCOPE_SANDBOX", "").lower() == "off"
    problem = "turned off for this run" if forced_off else sandbox.bwrap_problem(user)
    notes = [*sub.notes, isolation_text(user, problem)]
    with tempfile.TemporaryDirectory(prefix="dgm-gradescope-") as tmp:
        out = Path(tmp) / "out"
        left = package["time_limit_s"] - (time.time() - started) - 30
        cfg = GradeConfig(
            assignment=package["assignment"], submissions=(str(sub.path),), out=out,
            source_dir=root / "source" / "solutions", jobs=1, profile=package["profile"],
            device="cpu", timeout=max(10.0, min(CELL_TIMEOUT[package["profile"]], left)),
            # the notebook stops in time for the verdicts and results.json (VERDICT_RESERVE_S)
            notebook_timeout=max(10.0, left - VERDICT_RESERVE_S),
            memory_mb=package["kernel_memory_mb"], max_procs=256,
            disk_mb=package["kernel_disk_mb"], sandbox=problem is None, progress=False,
            run_as=user, max_threads=package["threads"])
        assignment = load_assignment(cfg)
        if sub.problem is not None:  # nothing to run
            items = [replace(i, title=assignment.titles.get(i.item, ""))
                     for i in rejected_items(assignment.items)]
            graded = gradescope_json(StudentResult(sub.student, cfg.assignment, items, [], {},
                                                   cfg.profile, cfg.device, {}, sub.problem))
            return gradescope_results(graded, notes, visibility, time.time() - started,
                                      rejected=True)
        # No prepare_verdicts: the verdicts' zygote starts when the kernel is done, so the two
        # never hold memory at once (768 MB in all). Loading the classifier before any kernel
        # runs is not needed here: its cache is root's, which the kernel's user cannot write.
        os.environ["DGM_PROFILE"] = cfg.profile
        outcome = grade_batch(cfg, assignment, [])
        (result,) = outcome.results
        graded = json.loads((out / result.student / "results.json").read_text())
    return gradescope_results(graded, notes, visibility, time.time() - started,
                              rejected=result.error is not None and not result.timings.get("run_s"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope_run",
                                     description="Gradescope's run_autograder: grade "
                                                 "$DGM_AUTOGRADER_ROOT/submission")
    parser.parse_args(argv)
    started = time.time()
    root = gradescope_root()
    results = root / RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(results.parent, 0o700)  # the kernel's user must not read or forge them
    _write(results, provisional("grading did not finish (it was stopped, or ran past "
                                "Gradescope's time limit); ask your instructor.", started))
    try:
        data = grade_submission(root, started)
    except Exception as exc:  # noqa: BLE001 - never leave Gradescope without results
        import traceback

        traceback.print_exc()
        data = provisional(f"the autograder failed ({type(exc).__name__}); your instructor "
                           "can see why in the autograder's output.", started)
    _write(results, data)
    print(f"results written to {results}: {data['score']:g} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
