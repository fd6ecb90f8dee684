"""Grade the same batch locally (``--jobs 2``) and through a one-node Slurm cluster (a job array,
two tasks at a time): wall time, per-task overhead, and whether every grade agrees.

    python -m benchmarks.slurm_grading [--submissions 12]

Needs root and Debian's slurm-wlm and munge (``make slurm``): the cluster is the one the tests
start (tests/slurm_cluster.py: controller and node on 127.0.0.1, ``CPUs=2``). The batch is the
toy fixture class (tests/fixtures/grading: good, broken, a kernel crash) and hostile variants
(tests/fixtures/grading/hostile.py), cut or padded with correct notebooks to ``--submissions``;
the memory hog, process bomb and huge-output variants are left out (they measure the sandbox,
not where it runs). Per-task overhead is the Slurm batch's wall time minus the local one,
per submission, and the task's own start (imports, sandbox probe, verdict process) from the
run log's ``slurm_task_done`` events. Writes ``benchmarks/results/slurm_grading.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autograder import grade
from autograder.report import exact_timings
from autograder.state import read_log
from benchmarks.common import write

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(ROOT / "tests"))
from hostile import SOURCE, build  # noqa: E402
from slurm_cluster import one_node_cluster  # noqa: E402

LEFT_OUT = {"memory_hog", "process_bomb", "huge_output"}
CLASS = ("correct", "fixme", "mistake_kl", "mistake_train", "crash", "no_ids")


def make_batch(folder: Path, n: int) -> None:
    """``n`` submissions in ``folder``: the class and hostile variants, an unreadable file,
    then correct notebooks."""
    every = folder.parent / "hostile"
    every.mkdir()
    build(every, folder.parent)
    picked = [FIXTURES / "students" / f"{c}.ipynb" for c in CLASS]
    picked += [p for p in sorted(every.glob("*.ipynb")) if p.stem not in LEFT_OUT]
    picked = picked[:n - 1]
    picked += [FIXTURES / "students" / "correct.ipynb"] * (n - 1 - len(picked))
    folder.mkdir()
    for i, src in enumerate(picked):
        shutil.copy(src, folder / f"{i:02d}_{src.stem}.ipynb")
    (folder / f"{n - 1:02d}_unreadable.ipynb").write_text("{ not json")


def timed_grade(argv: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert grade.main(argv) == 0
    return time.perf_counter() - start


def grades(out: Path) -> dict[str, list]:
    found = {}
    for path in sorted(out.glob("*/results.json")):
        data = json.loads(path.read_text())
        found[path.parent.name] = [data["score"], data["tests"], data["extra_data"].get("error")]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dgm-slurm-bench-") as tmp:
        tmp = Path(tmp)
        make_batch(tmp / "class", args.submissions)
        common = ["--assignment", "toy", "--source", str(SOURCE), str(tmp / "class"),
                  "--device", "cpu", "--profile", "smoke", "--timeout", "60", "--no-progress"]
        local_s = timed_grade([*common, "--out", str(tmp / "local"), "--jobs", "2"])
        with one_node_cluster(tmp / "cluster", cpus=2):
            slurm_s = timed_grade([*common, "--out", str(tmp / "slurm"), "--executor", "slurm",
                                   "--array-parallelism", "2", "--cpus-per-task", "1",
                                   "--time", "10"])
        local, on_slurm = grades(tmp / "local"), grades(tmp / "slurm")
        done = [e for e in read_log(tmp / "slurm" / "grader.log.jsonl")
                if e["event"] == "slurm_task_done"]
        walls = {p.parent.name: exact_timings(p.parent)["wall_s"]
                 for p in (tmp / "slurm").glob("*/results.json")}
    n = len(local)
    payload = {
        "submissions": n, "local_jobs": 2, "array_parallelism": 2, "node_cpus": 2,
        "cpus_per_task": 1, "local_wall_s": round(local_s, 1), "slurm_wall_s": round(slurm_s, 1),
        "overhead_per_submission_s": round((slurm_s - local_s) / n, 2),
        "task_setup_s_median": round(statistics.median(e["setup_s"] for e in done), 2),
        "task_s_median": round(statistics.median(e["task_s"] for e in done), 2),
        "grading_in_task_s_median": round(statistics.median(
            walls[e["student"]] for e in done), 2),
        "same_grades": sum(local[s] == on_slurm.get(s) for s in local),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
    }
    path = write("slurm_grading", payload)
    print(json.dumps(payload, indent=1), f"\nwritten to {path}")
    if payload["same_grades"] != n:
        sys.exit(1)


if __name__ == "__main__":
    main()
