"""Build the executed book with jupyter-book 1.x, keeping one execution cache per run profile.

``python -m dgm.build [--profile smoke|cpu|full] [--out DIR]`` runs
``jupyter-book build . -W -n --keep-going``: every Sphinx warning is an error and a chapter cell
that raises fails the build. jupyter-cache re-executes a chapter only when its code changed, but
it sees only the chapters' own code: not the run profile, and not the `dgm` package the chapters
import. Both are fingerprinted beside the cache, and a cache made with another profile or another
version of the package is cleared first.

Chapters that must execute run first, ``jobs`` at a time (default: one per core;
``$DGM_BUILD_JOBS`` or ``--jobs`` to change), each kernel with its share of the cores, and land
in the execution cache (dgm/preexecute.py); Sphinx then only writes the pages. One at a time
(``--jobs 1``) is jupyter-book's own way: myst-nb executes each chapter as Sphinx reads it.

Before it starts it prints the plan (profile, chapters that will execute, estimated time) and
while it runs a line per executed cell and per block of training steps, with the chapter and
the elapsed time (dgm/build_progress.py). Those lines go to this process's standard error,
never into the pages: the chapter kernels write them to an event file, not to their output.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from dgm.build_progress import (
    Follower,
    announcement,
    cached_chapters,
    load_estimates,
    toc_chapters,
)
from dgm.config import PROFILES, get_profile
from dgm.kernel_progress import LOG_VAR, kernel_config
from dgm.preexecute import ChapterRun, default_jobs, execute_chapters, with_readers
from dgm.store import DIR_VAR

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuildResult:
    returncode: int
    seconds: float
    html_dir: Path
    log: str
    executed: tuple[ChapterRun, ...] = ()  # chapters run side by side before Sphinx started
    jobs: int = 1


def build_dir(out: Path | None) -> Path:
    """The ``_build`` folder jupyter-book writes to for ``--path-output out``."""
    return (ROOT / "_build") if out is None else (Path(out).resolve() / "_build")


def fingerprint(profile: str) -> str:
    """The run profile and a hash of the helper package's sources: what the cache cannot see."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "dgm").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{profile} dgm-{digest.hexdigest()[:16]}"


def kernel_ipython_dir(folder: Path) -> Path:
    """An IPython folder for the chapter kernels: the progress extension, the TCP notice filtered.

    Its own folder also keeps the reader's ~/.ipython start-up files out of the book's kernels.
    """
    config = folder / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(kernel_config())
    return folder


def build_book(profile: str | None = None, out: Path | None = None, echo: bool = True,
               progress: TextIO | None = sys.stderr, jobs: int | None = None) -> BuildResult:
    """Build the book in ``profile`` into ``build_dir(out)/html``; return code, time and log.

    ``progress``: where the plan and the progress lines go (None: nowhere). ``jobs``: chapters
    executed at once (default :func:`dgm.preexecute.default_jobs`; 1: myst-nb executes them).
    """
    profile = get_profile(profile)
    bdir = build_dir(out)
    marker = bdir / ".dgm-fingerprint"
    stamp = fingerprint(profile)
    if not marker.exists() or marker.read_text().strip() != stamp:  # unknown or other provenance
        shutil.rmtree(bdir / ".jupyter_cache", ignore_errors=True)
        shutil.rmtree(bdir / "jupyter_execute", ignore_errors=True)
        shutil.rmtree(bdir / "models", ignore_errors=True)  # dgm.store: chapters' trained models
        shutil.rmtree(bdir / "html", ignore_errors=True)
        # Sphinx's saved environment: without it, Sphinx re-reads (so re-executes) every page,
        # not only the changed ones whose executed copies were just deleted.
        shutil.rmtree(bdir / ".doctrees", ignore_errors=True)
    bdir.mkdir(parents=True, exist_ok=True)
    marker.write_text(stamp + "\n")

    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT),
           "-W", "-n", "--keep-going"]
    if out is not None:
        cmd += ["--path-output", str(Path(out).resolve())]
    # Progress bars are for people at a terminal or in JupyterLab, not for the built pages.
    env = dict(os.environ, DGM_PROFILE=profile, PYTHONHASHSEED="0", DGM_PROGRESS="0")
    env[DIR_VAR] = str(bdir / "models")  # chapters hand trained models to the comparison
    # Chapters draw with the kernel's inline backend; a backend forced from outside (e.g.
    # MPLBACKEND=Agg on a CI machine) would swallow every figure.
    env.pop("MPLBACKEND", None)
    estimates = load_estimates(profile)
    chapters = toc_chapters()
    to_run = [c for c in chapters if c not in cached_chapters(bdir / ".jupyter_cache", chapters)]
    to_run = with_readers(to_run, chapters, bdir / ".jupyter_cache")
    jobs = default_jobs(len(to_run)) if jobs is None else max(1, jobs)
    if progress is not None:
        progress.write(announcement(profile, chapters, set(chapters) - set(to_run), estimates,
                                    jobs) + "\n")
        progress.flush()
    executed: list[ChapterRun] = []
    with tempfile.TemporaryDirectory(prefix="dgm-build-") as tmp:
        env["IPYTHONDIR"] = str(kernel_ipython_dir(Path(tmp) / "ipython"))
        follower = None
        if progress is not None:
            env[LOG_VAR] = str(Path(tmp) / "events.jsonl")
            follower = Follower(Path(env[LOG_VAR]), progress, estimates)
            follower.start()
        start = time.perf_counter()
        try:
            if jobs > 1 and to_run:
                executed = side_by_side(to_run, bdir, env, jobs, estimates, progress)
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            lines = []
            for line in proc.stdout:  # stream the build log while keeping it for the caller
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            proc.wait()
        finally:
            if follower is not None:
                follower.stop()
    return BuildResult(proc.returncode, time.perf_counter() - start, bdir / "html", "".join(lines),
                       tuple(executed), jobs)


def side_by_side(chapters: list[str], bdir: Path, env: dict[str, str], jobs: int,
                 estimates, progress: TextIO | None) -> list[ChapterRun]:
    """Execute ``chapters`` ``jobs`` at a time into the build's cache (dgm/preexecute.py).

    The evaluation classifier (and, on a machine with the internet, the data set) is fetched
    once first, so that the chapters do not all train or download it at the same moment.
    """
    prepare = ("from dgm.data import load_dataset; from dgm.evaluate import get_classifier; "
               "load_dataset('fashion_mnist', split='test'); get_classifier()")
    done = subprocess.run([sys.executable, "-c", prepare], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:  # the chapters will meet the same problem and report it
        if progress is not None:
            progress.write("could not prepare the data set and the evaluation classifier:\n"
                           + done.stderr[-2000:] + "\n")
    seconds = estimates.seconds if estimates is not None else {}
    timeout = int(yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["timeout"])
    runs = execute_chapters(chapters, bdir / ".jupyter_cache", env, jobs, seconds, timeout)
    for run in runs:
        if run.error and progress is not None:
            progress.write(f"{run.name} failed when run side by side ({run.error.splitlines()[0][:300]}); "
                           "the build executes it again and reports the error\n")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="run profile (default: $DGM_PROFILE, else full on CUDA, cpu otherwise)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder that receives _build/ (default: the repository root)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="chapters executed at once (default: $DGM_BUILD_JOBS, else one per "
                             "CPU core; 1: one after the other, as jupyter-book does)")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")
    result = build_book(args.profile, args.out, jobs=args.jobs)
    state = "built" if result.returncode == 0 else "FAILED"
    print(f"\nbook {state} in {result.seconds:.1f} s ({get_profile(args.profile)} profile): "
          f"{result.html_dir / 'index.html'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
