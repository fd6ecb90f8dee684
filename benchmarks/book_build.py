"""Time a clean build of the book and a no-change rebuild, and each chapter's execution.

    python -m benchmarks.book_build [--profile smoke|cpu|full]

Builds into a fresh temporary folder (never the reader's _build/), then builds again with nothing
changed. Writes benchmarks/results/book_build_<profile>.json. Targets (2 cores): smoke, clean
build of the foundation chapters under 2 minutes and a no-change rebuild under 5 seconds (issue
2); cpu, the default build, under 20 minutes (issue 14). ``--jobs`` as for ``make book``.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from benchmarks.common import write
from dgm.build import build_book
from dgm.config import PROFILES, get_profile

EXECUTED = re.compile(r"(?P<doc>\S+?)\.md: Executed notebook in (?P<sec>[\d.]+) seconds")


def chapter_times(log: str) -> dict[str, float]:
    return {Path(m["doc"]).stem: float(m["sec"]) for m in EXECUTED.finditer(log)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="smoke")
    parser.add_argument("--jobs", type=int, default=None, help="chapters executed at once")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dgm-bench-") as tmp:
        clean = build_book(profile, Path(tmp), echo=False, jobs=args.jobs)
        if clean.returncode != 0:
            raise SystemExit("clean build failed:\n" + clean.log[-3000:])
        load_after = os.getloadavg()[0]
        rebuild = build_book(profile, Path(tmp), echo=False, jobs=args.jobs)
    side_by_side = {run.name: round(run.seconds, 1) for run in clean.executed if run.error is None}
    payload = {
        "profile": profile,
        "jobs": clean.jobs,
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "clean_build_seconds": round(clean.seconds, 1),
        "no_change_rebuild_seconds": round(rebuild.seconds, 1),
        "rebuild_executed_chapters": len(chapter_times(rebuild.log)),
        # side by side (dgm/preexecute.py), and any chapter myst-nb executed itself
        "chapter_execution_seconds": {**side_by_side, **chapter_times(clean.log)},
    }
    path = write(f"book_build_{profile}", payload)
    print(path.read_text())


if __name__ == "__main__":
    main()
