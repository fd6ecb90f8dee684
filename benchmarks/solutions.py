"""Time the reference solutions end to end under nbval, per profile.

    python -m benchmarks.solutions [--profile cpu] [--assignments vae ddpm flow contrastive]

Runs ``pytest --nbval-lax solutions/<name>.ipynb`` (every cell, hidden checks included, as
tests/test_solutions.py does in smoke) and records the wall time and whether every cell
passed. Targets (issue "Homework"): under 2 minutes
per notebook in smoke and under 15 minutes in cpu on 2 cores, under 15 minutes in full on one
GPU. Writes ``benchmarks/results/solutions_<profile>.json``; a run of some assignments only
replaces their rows in it (stamped with the date and load of that run) and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from autograder.release import ASSIGNMENTS
from benchmarks.common import dated, previous, stamped, write

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = {"smoke": 120, "cpu": 900, "full": 900}


def run(name: str, profile: str) -> dict:
    env = {**os.environ, "DGM_PROFILE": profile, "MPLBACKEND": "Agg", "DGM_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=1800", "-q",
           "-p", "no:cacheprovider", "-p", "no:xdist", str(ROOT / "solutions" / f"{name}.ipynb")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"assignment": name, "wall_s": round(wall, 1), "passed": proc.returncode == 0,
            "pytest": last, "target_s": TARGET_S[profile], "within_target": wall <= TARGET_S[profile]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=sorted(TARGET_S))
    p.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS))
    args = p.parse_args(argv)
    rows = []
    for name in args.assignments:
        row = run(name, args.profile)
        rows.append(row)
        print(f"{name:12s} {row['wall_s']:7.1f} s  passed={row['passed']}  {row['pytest']}",
              flush=True)
    if set(args.assignments) == set(ASSIGNMENTS):
        print("wrote", write(f"solutions_{args.profile}", {"profile": args.profile, "runs": rows}))
    elif (old := previous(f"solutions_{args.profile}")) is not None:
        # a partial run: its rows (stamped with their date) replace those of the same assignments
        new = {r["assignment"]: stamped(r) for r in rows}
        runs = [new.pop(r["assignment"], dated(r, old)) for r in old["runs"]] + list(new.values())
        print("merged into", write(f"solutions_{args.profile}", {
            "profile": args.profile, "runs": runs, "partial_run": list(args.assignments)}))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
