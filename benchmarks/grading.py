"""Time the grader: one submission of each assignment, and a batch with one job against two.

    python -m benchmarks.grading [--profiles smoke cpu] [--assignments vae ddpm flow contrastive]
        [--batch 20] [--cores 2] [--source DIR --students DIR]

For each assignment whose ``solutions/<name>.ipynb`` exists, grades the reference solution (the
generated student notebook with every exercise filled in from the solution) and the generated
student notebook ``notebooks/<name>.ipynb`` once per profile and records the
wall time, the time spent in the notebook's own cells (the student's training), the time in
the checks, and the grader's overhead (wall time minus cell time: merge, pytest and kernel
start-up, reports). Then, for ``--batch-assignments`` in ``--batch-profiles``, grades a batch of ``--batch``
submissions (copies of the reference and the generated notebook, alternating) with ``--jobs 1``
and ``--jobs 2`` and records the throughput. ``--cores 2`` pins the run to two cores, as on a student laptop.
Targets (issue "Autograder"): under 60 s per submission in smoke, dominated by the student's
training; grader overhead under 10 s.

``--source``/``--students`` time another assignment, e.g. the tests' fixture:
``--source tests/fixtures/grading/source --students tests/fixtures/grading/students
--assignments toy``. Writes ``benchmarks/results/grading_<profiles>.json`` (with the
assignment names in front when ``--source`` is not solutions/); ``--merge-into grading_smoke_cpu``
adds the entries of the assignments timed to that file instead, keeping the others.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from autograder import grade
from autograder.release import render
from autograder.report import exact_timings
from benchmarks.common import dated, previous, stamped, write
from benchmarks.mutations import reference_submission

ROOT = Path(__file__).resolve().parent.parent


def _grade(assignment: str, source: Path, subs: list[Path], out: Path, profile: str,
           jobs: int) -> float:
    argv = ["--assignment", assignment, "--source", str(source), *map(str, subs),
            "--out", str(out), "--jobs", str(jobs), "--profile", profile, "--device", "auto",
            "--no-progress"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = grade.main(argv)
    if code != 0:
        raise SystemExit(f"grading {assignment} failed with exit code {code}")
    return time.perf_counter() - start


def _timings(out: Path, student: str) -> dict:
    data = json.loads((out / student / "results.json").read_text())
    t = exact_timings(out / student)
    return {"score": data["score"], "max_score": data["max_score"],
            "wall_s": round(t["wall_s"], 2), "cells_s": round(t.get("cells_s", 0.0), 2),
            "student_cells_s": round(t.get("student_cells_s", 0.0), 2),
            "checks_s": round(t.get("cells_s", 0.0) - t.get("student_cells_s", 0.0), 2),
            "overhead_s": round(t["overhead_s"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["smoke", "cpu"])
    parser.add_argument("--assignments", nargs="+", default=list(grade.ASSIGNMENTS))
    parser.add_argument("--batch", type=int, default=20, help="batch size (0: no batch)")
    parser.add_argument("--batch-assignments", nargs="+", default=["vae"],
                        help="assignments graded as a batch too (default: vae)")
    parser.add_argument("--batch-profiles", nargs="+", default=["smoke"],
                        help="profiles in which the batch is graded (default: smoke)")
    parser.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    parser.add_argument("--merge-into", metavar="NAME",
                        help="merge the entries into benchmarks/results/NAME.json (e.g. grading_smoke_cpu), "
                             "keeping its other assignments")
    parser.add_argument("--source", type=Path, default=ROOT / "solutions")
    parser.add_argument("--students", type=Path, default=None,
                        help="folder of student notebooks (default: notebooks/<name>.ipynb)")
    args = parser.parse_args()
    if args.cores and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:args.cores])  # inherited by pytest and the kernels

    results: dict = {"profiles": {}}
    with tempfile.TemporaryDirectory(prefix="dgm-bench-grading-") as tmp:
        tmp = Path(tmp)
        for profile in args.profiles:
            per = results["profiles"].setdefault(profile, {})
            for name in args.assignments:
                reference = args.source / f"{name}.ipynb"
                if not reference.is_file():
                    per[name] = "no source notebook yet"
                    continue
                generated = (args.students / "fixme.ipynb" if args.students
                             else ROOT / "notebooks" / f"{name}.ipynb")
                subs = tmp / profile / name / "subs"
                subs.mkdir(parents=True)
                if args.students:
                    shutil.copy(args.students / "correct.ipynb", subs / "reference.ipynb")
                else:  # what a student who got everything right hands in
                    (subs / "reference.ipynb").write_text(render(reference_submission(name)))
                shutil.copy(generated, subs / "generated.ipynb")
                out = tmp / profile / name / "out"
                entry = {}
                for student in ("reference", "generated"):
                    _grade(name, args.source, [subs / f"{student}.ipynb"], out, profile, 1)
                    entry[student] = _timings(out, student)
                if (args.batch and name in args.batch_assignments
                        and profile in args.batch_profiles):
                    batch = tmp / profile / name / "batch"
                    batch.mkdir()
                    for i in range(args.batch):
                        kind = "reference" if i % 2 == 0 else "generated"
                        shutil.copy(subs / f"{kind}.ipynb", batch / f"s{i:02d}_{kind}.ipynb")
                    for jobs in (1, 2):
                        wall = _grade(name, args.source, [batch], tmp / profile / name /
                                      f"batch_out{jobs}", profile, jobs)
                        entry[f"batch{args.batch}_jobs{jobs}"] = {
                            "wall_s": round(wall, 1),
                            "submissions_per_minute": round(60 * args.batch / wall, 2)}
                    entry["speedup_jobs2"] = round(entry[f"batch{args.batch}_jobs1"]["wall_s"]
                                                   / entry[f"batch{args.batch}_jobs2"]["wall_s"], 2)
                per[name] = entry
                print(profile, name, json.dumps(entry))
    results["load_average_at_end"] = os.getloadavg()
    tag = "" if args.source.resolve() == (ROOT / "solutions").resolve() else (
        "_".join(args.assignments) + "_")
    if args.merge_into and (old := previous(args.merge_into)) is not None:
        for entries in old["profiles"].values():
            entries.update({n: dated(e, old) for n, e in entries.items() if isinstance(e, dict)})
        for profile, entries in results["profiles"].items():
            old["profiles"].setdefault(profile, {}).update(
                {name: stamped(e) if isinstance(e, dict) else e for name, e in entries.items()})
        results = {"profiles": old["profiles"], "load_average_at_end": results["load_average_at_end"],
                   "partial_run": list(args.assignments)}
    path = write(args.merge_into or ("grading_" + tag + "_".join(args.profiles)), results)
    print(path)


if __name__ == "__main__":
    main()
