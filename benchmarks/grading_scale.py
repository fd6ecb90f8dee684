"""Grade a large mixed batch on one machine: wall time, throughput per core, peak memory, and
that every score is the expected one.

    python -m benchmarks.grading_scale [--copies 2] [--jobs 1 2] [--memory-mb 768]

The batch is the toy fixture class (tests/fixtures/grading: correct, the released notebook,
one typical mistake per item, cells without ids, reordered cells, a kernel crash, a
never-ending loop, an unreadable file) and every hostile or faulty variant of
tests/fixtures/grading/hostile.py (builtins redefined, forged checks, writes outside the
folder, network, segfault, memory hog, process bomb, huge output...), each ``--copies`` times
under distinct student names, padded with correct notebooks to at least 50 submissions. It
is graded once per ``--jobs`` value; peak memory is the largest total resident memory of the
grader and everything it started, sampled every 0.2 s. Writes
``benchmarks/results/grading_scale.json`` and exits 1 if any score differs from the expected.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from autograder import grade
from benchmarks.common import write

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import FULL, SOURCE, build  # noqa: E402

#: Scores of the fixture class (tests/fixtures/grading/make_fixtures.py).
CLASS = {
    "correct": FULL, "no_ids": FULL, "reordered": FULL,
    "fixme": {"kl": 0.0, "train": 0.0, "alpha_bar": 0.0},
    "mistake_kl": {**FULL, "kl": 0.0}, "mistake_train": {**FULL, "train": 0.0},
    "mistake_alpha_bar": {**FULL, "alpha_bar": 0.0}, "crash": {**FULL, "train": 0.0},
    "timeout": {**FULL, "train": 0.0},
}
LOOP_TIMEOUT = 10.0


def make_batch(folder: Path, out: Path, copies: int, minimum: int) -> dict[str, dict]:
    one = folder / "_one"
    one.mkdir(parents=True)
    expected = build(one, out)
    for name in CLASS:
        shutil.copy(FIXTURES / "students" / f"{name}.ipynb", one / f"{name}.ipynb")
    expected.update(CLASS)
    (one / "unreadable.ipynb").write_text("{ not json")
    expected["unreadable"] = {"kl": 0.0, "train": 0.0, "alpha_bar": 0.0}
    batch: dict[str, dict] = {}
    for n in range(copies):
        for name, scores in expected.items():
            student = f"{name}-{n}"
            shutil.copy(one / f"{name}.ipynb", folder / f"{student}.ipynb")
            batch[student] = scores
    n = 0
    while len(batch) < minimum:
        shutil.copy(one / "correct.ipynb", folder / f"extra-correct-{n}.ipynb")
        batch[f"extra-correct-{n}"] = FULL
        n += 1
    shutil.rmtree(one)
    return batch


class PeakMemory:
    """Largest total RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(jobs: int, copies: int, minimum: int, memory_mb: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dgm-scale-") as tmp:
        folder, out = Path(tmp) / "subs", Path(tmp) / "out"
        folder.mkdir()
        batch = make_batch(folder, out, copies, minimum)
        argv = ["--assignment", "toy", "--source", str(SOURCE), str(folder), "--out", str(out),
                "--jobs", str(jobs), "--device", "cpu", "--profile", "smoke", "--timeout",
                str(LOOP_TIMEOUT), "--memory-mb", str(memory_mb), "--max-procs", "64",
                "--no-progress"]
        start = time.perf_counter()
        with PeakMemory() as mem, contextlib.redirect_stdout(io.StringIO()):
            code = grade.main(argv)
        wall = time.perf_counter() - start
        wrong = {}
        for student, want in batch.items():
            try:
                data = json.loads((out / student / "results.json").read_text())
                got = {t["name"]: t["score"] for t in data["tests"]}
            except (OSError, ValueError) as exc:
                got = {"missing": str(exc)}
            if got != want:
                wrong[student] = {"got": got, "expected": want}
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return {"jobs": jobs, "submissions": len(batch), "exit_code": code,
                "wall_s": round(wall, 1),
                "per_submission_s": round(wall / len(batch), 2),
                "throughput_per_min": round(60 * len(batch) / wall, 1),
                "throughput_per_core_per_min": round(60 * len(batch) / wall / cores, 1),
                "peak_memory_mb": round(mem.peak / 2**20),
                "scores_as_expected": len(batch) - len(wrong), "wrong": wrong}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--minimum", type=int, default=50)
    p.add_argument("--jobs", type=int, nargs="+", default=[2, 1])
    p.add_argument("--memory-mb", type=int, default=768)
    args = p.parse_args(argv)
    rows = []
    for jobs in args.jobs:
        row = run(jobs, args.copies, args.minimum, args.memory_mb)
        rows.append(row)
        print(f"jobs {jobs}: {row['submissions']} submissions in {row['wall_s']} s "
              f"({row['throughput_per_min']}/min, peak {row['peak_memory_mb']} MiB), "
              f"{row['scores_as_expected']} scores as expected", flush=True)
    path = write("grading_scale", {"assignment": "toy (tests/fixtures/grading)",
                                   "memory_limit_mb": args.memory_mb, "runs": rows})
    print("wrote", path)
    return 1 if any(r["wrong"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
