"""Time the grader's verdicts: the zygote's start, one verdict, and one graded submission.

    python -m benchmarks.verdict_overhead [--repeats 20] [--out benchmarks/results/verdicts.json]

Measures, in this process: the start of the verdict zygote (``autograder.verdicts.start``, with
and without the smoke classifier; absent on a grader that judges in its own process); the wall
time of :func:`autograder.checks.run_verdict` on a trivial check and on DDPM's SymPy check with
right answers (median, min and max of ``--repeats`` runs after one warm-up); and the grader's
overhead on the tests' toy fixture (``tests/fixtures/grading``: the correct notebook, one job),
wall time minus the time in the notebook's cells, with the time spent judging.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIVIAL = """\
import torch
from autograder.observe import observe
from autograder.report import exact_timings
x = torch.arange(4.0)
# --- student ---
obs = observe(y=2 * x)
# --- verdict ---
assert torch.equal(obs["y"], 2 * x), "wrong"
"""
SYMPY_ANSWERS = {"mean_x2": "sqrt(alpha_1*alpha_2)*x_0", "var_x2": "1 - alpha_1*alpha_2",
                 "kl_T": "(alphabar*x_0**2 - alphabar - log(1 - alphabar))/2"}


def _series(run, repeats: int) -> dict:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from autograder.checks import run_verdict, split_check
    from autograder.observe import encode

    results: dict = {}
    try:
        from autograder import verdicts
    except ImportError:  # a grader that judges in its own process
        verdicts = None
    if verdicts is not None:
        start = time.perf_counter()
        verdicts.start(("smoke",))
        results["zygote_start_with_smoke_classifier_s"] = time.perf_counter() - start
    trivial = split_check(TRIVIAL)
    payload = [encode({"y": torch.arange(4.0) * 2})]
    results["trivial_verdict"] = _series(lambda: run_verdict(trivial, payload), args.repeats)
    nb = json.loads((ROOT / "solutions" / "ddpm.ipynb").read_text())
    sym = split_check(next("".join(c["source"]) for c in nb["cells"]
                           if c.get("id") == "ddpm-sympy-hidden"))
    sym_payload = [encode(SYMPY_ANSWERS)]
    assert run_verdict(sym, sym_payload).status == "passed"
    results["ddpm_sympy_verdict"] = _series(lambda: run_verdict(sym, sym_payload), args.repeats)

    from autograder import grade

    fixtures = ROOT / "tests" / "fixtures" / "grading"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        grade.main(["--assignment", "toy", "--source", str(fixtures / "source"),
                    str(fixtures / "students" / "correct.ipynb"), "--out", str(out), "--jobs", "1",
                    "--device", "cpu", "--profile", "smoke", "--no-progress"])
        timings = exact_timings(out / "correct")
        results["toy_submission"] = {k: timings.get(k) for k in
                                     ("wall_s", "cells_s", "judge_s", "overhead_s")}
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
