"""Time a clean build of the book and a no-change rebuild, and each chapter's execution.

    python -m benchmarks.book_build [--profile smoke|cpu|full]

Builds into a fresh temporary folder (never the reader's _build/), then builds again with nothing
changed. Writes benchmarks/results/book_build_<profile>.json. Targets (2 cores): smoke, clean
build of the foundation chapters under 2 minutes and a no-change rebuild under 5 seconds (issue
2); cpu, the default build, under 20 minutes (issue 14). ``--jobs`` as for ``make book``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

from benchmarks.chapters import LIMITS_MINUTES
from benchmarks.common import RESULTS, write
from dgm.build import build_book
from dgm.config import PROFILES, get_profile

EXECUTED = re.compile(r"(?P<doc>\S+?)\.md: Executed notebook in (?P<sec>[\d.]+) seconds")


def chapter_times(log: str) -> dict[str, float]:
    return {Path(m["doc"]).stem: float(m["sec"]) for m in EXECUTED.finditer(log)}


def record_chapters(profile: str, result, metrics_dir: Path) -> None:
    """Merge the side-by-side chapter runs of ``result`` into chapters_<profile>.json."""
    path = RESULTS / f"chapters_{profile}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    chapters = data.get("chapters", {})
    for run in result.executed:
        if run.error is not None:
            continue
        folder = metrics_dir / run.name
        chapters[run.name] = {
            "seconds": round(run.seconds, 1),
            "under_target": run.seconds < 60 * LIMITS_MINUTES[profile],
            "metrics": {f.stem: json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))},
            "note": f"timed in a whole book build, {result.jobs} chapters at a time, one math "
                    "thread each (python -m benchmarks.book_build --record-chapters)",
        }
    write(f"chapters_{profile}", {"profile": profile, "target_minutes": LIMITS_MINUTES[profile],
                                  "command": f"python -m benchmarks.book_build --profile {profile} "
                                             "--record-chapters",
                                  "chapters": chapters})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="smoke")
    parser.add_argument("--jobs", type=int, default=None, help="chapters executed at once")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build into this new folder and keep it (default: a temporary one)")
    parser.add_argument("--record-chapters", action="store_true",
                        help="also write each chapter's time and figures into chapters_<profile>.json "
                             "(the estimates make book prints, and the records chapters quote)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dgm-bench-") as tmp:
        if args.keep is not None:  # a fresh folder that outlives the run, to look at the pages
            if args.keep.exists() and any(args.keep.iterdir()):
                parser.error(f"--keep {args.keep}: the folder is not empty; give a new one")
            tmp = str(args.keep.resolve())
        metrics_dir = Path(tmp) / "metrics"  # each chapter run side by side records here
        os.environ["DGM_METRICS_DIR"] = str(metrics_dir)
        try:
            clean = build_book(profile, Path(tmp), echo=False, jobs=args.jobs)
        finally:  # the rebuild below must not record into the same folder
            del os.environ["DGM_METRICS_DIR"]
        if args.record_chapters:
            record_chapters(profile, clean, metrics_dir)
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
