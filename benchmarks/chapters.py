"""Execute chapters in one run profile and record their times and the figures they measured.

    python -m benchmarks.chapters --profile cpu [--chapters vae diffusion ...]
    python -m benchmarks.chapters --profile full --jobs 9 --executed DIR --log FILE   # one GPU

Each chapter (a MyST notebook under book/) runs in a fresh kernel with book/ as its working
folder, exactly as the book build runs it, with ``$DGM_METRICS_DIR`` set so that the chapter's
``dgm.results.record(...)`` calls land beside the timing. Writes
benchmarks/results/chapters_<profile>.json (merged with what earlier runs of other chapters
wrote), after each chapter, so a run cut short keeps what finished. Targets: every chapter under
3 minutes in smoke and under 15 in cpu on 2 cores, and under 15 in full on one GPU.

``--jobs N`` runs N chapters at once (each in its own kernel; on a GPU machine they share the
GPU, which small models leave mostly idle), after training the evaluation classifier once so
that the chapters do not all train it together. ``--executed DIR`` keeps each executed notebook
(with its figures) as ``DIR/<chapter>.ipynb``; ``--log FILE`` appends one line per executed cell
(chapter, cell number, seconds), which shows where a chapter that ran out of time was.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

from benchmarks.common import RESULTS, write
from dgm.build_progress import toc_chapters
from dgm.config import PROFILES, get_profile

ROOT = Path(__file__).resolve().parent.parent
LIMITS_MINUTES = {"smoke": 3, "cpu": 15, "full": 15}
_LOG_LOCK = threading.Lock()


def kernel_env(profile: str, metrics_dir: Path, threads: int | None = None) -> dict[str, str]:
    """The chapter kernel's environment: this process's, with the profile and metrics folder."""
    env = dict(os.environ, DGM_PROFILE=profile, DGM_METRICS_DIR=str(metrics_dir), DGM_PROGRESS="0")
    env.pop("MPLBACKEND", None)  # figures come from the kernel's inline backend
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return env


def run_chapter(name: str, profile: str, metrics_dir: Path, timeout: int,
                threads: int | None = None, log: Path | None = None):
    """Execute book/<name>.md; return (seconds, executed notebook)."""
    nb = jupytext.read(ROOT / "book" / f"{name}.md")
    start = time.perf_counter()

    def on_cell_executed(cell, cell_index, execute_reply):
        if log is not None:
            with _LOG_LOCK, log.open("a") as f:
                f.write(f"{name}\tcell {cell_index}\t{time.perf_counter() - start:.1f} s\n")

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "book")}},
                            on_cell_executed=on_cell_executed)
    client.execute(env=kernel_env(profile, metrics_dir, threads))
    return time.perf_counter() - start, nb


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (the chapter kernels)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default=None)
    parser.add_argument("--chapters", nargs="*", default=None, help="default: every chapter with code")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at once")
    parser.add_argument("--threads", type=int, default=None, help="math threads per kernel")
    parser.add_argument("--executed", type=Path, default=None, help="keep executed notebooks here")
    parser.add_argument("--log", type=Path, default=None, help="append a line per executed cell")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    profile = get_profile(args.profile)
    chapters = args.chapters or toc_chapters()
    unknown = [c for c in chapters if not (ROOT / "book" / f"{c}.md").exists()]
    if unknown:
        parser.error(f"no chapter book/<name>.md for {unknown}; choose from {toc_chapters()}")
    path = RESULTS / f"chapters_{profile}.json"
    results = json.loads(path.read_text()).get("chapters", {}) if path.exists() else {}
    lock = threading.Lock()
    if args.executed:
        args.executed.mkdir(parents=True, exist_ok=True)
    if args.jobs > 1:  # train (or load) the evaluation classifier once, before the chapters
        from dgm.evaluate import get_classifier

        os.environ["DGM_PROFILE"] = profile
        get_classifier()

    def one(name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"[{profile}] executing {name} ...", flush=True)
            cpu_before, load_before = children_cpu_seconds(), os.getloadavg()[0]
            try:
                seconds, nb = run_chapter(name, profile, Path(tmp), args.timeout, args.threads,
                                          args.log)
                error = None
            except Exception as exc:  # noqa: BLE001 - record it and go on with the others
                seconds, nb, error = None, None, f"{type(exc).__name__}: {str(exc)[-2000:]}"
            metrics = {f.stem: json.loads(f.read_text()) for f in Path(tmp).glob("*.json")}
        if nb is not None and args.executed:
            nbformat.write(nb, args.executed / f"{name}.ipynb")
        entry = {"seconds": None if seconds is None else round(seconds, 1),
                 "under_target": seconds is not None and seconds < 60 * LIMITS_MINUTES[profile],
                 "metrics": metrics}
        if args.jobs == 1:  # the kernel has exited: its CPU time is in RUSAGE_CHILDREN
            entry["kernel_cpu_seconds"] = round(children_cpu_seconds() - cpu_before, 1)
            entry["threads"] = args.threads
            entry["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        if error:
            entry["error"] = error
        with lock:
            results[name] = entry
            write(f"chapters_{profile}", {"profile": profile, "target_minutes": LIMITS_MINUTES[profile],
                                          "chapters": results})
        print(f"[{profile}] {name}: {'failed: ' + error if error else f'{seconds:.1f} s'}",
              flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in as_completed([pool.submit(one, name) for name in chapters]):
            future.result()


if __name__ == "__main__":
    main()
