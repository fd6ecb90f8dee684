"""Execute the book's chapters several at a time into jupyter-cache, before Sphinx reads them.

myst-nb executes the chapters of a jupyter-book 1.x build one after the other. A chapter that
trains small models keeps one core busy, so on a 2-core machine half the machine waits. ``make
book`` (dgm/build.py) therefore first runs the chapters that the execution cache does not hold
in a pool of ``jobs`` kernels, each with ``threads`` math threads, longest recorded chapter
first, and stores each executed notebook in the cache exactly as myst-nb would (same reader,
same hash); Sphinx then finds every chapter cached and only writes the pages.

A chapter that fails here is not cached: the build then executes it again the usual way and
reports its error as before. A chapter that loads models other chapters store (``dgm.store``:
the comparison) starts only once those chapters, where they run in the same build, have ended.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

from dgm.kernel_progress import CHAPTER_VAR, LOG_VAR, write_event

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ChapterRun:
    name: str
    seconds: float
    error: str | None  # None: executed and cached


def read_chapter(path: Path, root: Path = ROOT) -> nbformat.NotebookNode:
    """The chapter as myst-nb reads it (so that its hash in the cache is the one myst-nb asks for)."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    config = yaml.safe_load((root / "_config.yml").read_text())
    md = MdParserConfig(enable_extensions=set(config.get("parse", {}).get("myst_enable_extensions", [])))
    text = path.read_text()
    return create_nb_reader(str(path), md, NbParserConfig(), text).read(text)


def default_jobs(chapters: int) -> int:
    """One kernel per core this process may use (``$DGM_BUILD_JOBS`` overrides), at most one per chapter."""
    wanted = os.environ.get("DGM_BUILD_JOBS", "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"DGM_BUILD_JOBS={wanted!r}: give a whole number of chapters to run at "
                             "once, at least 1 (1 executes them one after the other)")
        jobs = int(wanted)
    else:
        jobs = cores()
    return max(1, min(jobs, chapters))


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def critical_path(name: str, waits: dict[str, set[str]], estimates: dict[str, float],
                  seen: frozenset[str] = frozenset()) -> float:
    """The estimated seconds from ``name``'s start to the end of the last chapter that waits for
    it: the longest of these go first, so that the shortest chapters finish the build and a
    chapter others wait for is not left to the end."""
    later = [n for n, w in waits.items() if name in w and n not in seen and n != name]
    return estimates.get(name, 0.0) + max((critical_path(n, waits, estimates, seen | {name})
                                           for n in later), default=0.0)


def execute_chapters(names: list[str], cache_dir: Path, env: dict[str, str], jobs: int,
                     estimates: dict[str, float] | None = None, timeout: int = 1800,
                     root: Path = ROOT, after: dict[str, set[str]] | None = None) -> list[ChapterRun]:
    """Execute ``book/<name>.md`` for each name, ``jobs`` at a time, and cache each that succeeds.

    ``env`` is the kernels' environment (the build's); each kernel also gets ``$OMP_NUM_THREADS``
    (the cores shared out between the jobs) and the chapter's name for its progress events.
    ``after``: chapter -> chapters that must end (well or not) before it starts, where they are
    among ``names`` (default: the stored models each chapter loads, :mod:`dgm.store`).
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    threads = str(max(1, cores() // jobs))
    estimates = estimates or {}
    if after is None:
        from dgm.store import chapters_needed

        after = {name: chapters_needed(name) for name in names}
    waits = {name: set(after.get(name, ())) & set(names) - {name} for name in names}
    order = sorted(names, key=lambda n: -critical_path(n, waits, estimates))
    lock, runs = threading.Lock(), []
    ready = threading.Condition(lock)
    ended: set[str] = set()
    running: set[str] = set()
    log = env.get(LOG_VAR)

    def event(kind: str, **fields) -> None:
        if log:
            write_event(log, kind, **fields)

    def one(name: str) -> None:
        path = root / "book" / f"{name}.md"
        try:
            nb = read_chapter(path, root)
        except Exception as exc:  # noqa: BLE001 - myst-nb meets it too and reports it
            with lock:
                runs.append(ChapterRun(name, 0.0, f"unreadable: {type(exc).__name__}: {exc}"))
            return
        cells = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
        kernel_env = dict(env, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, **{CHAPTER_VAR: name})
        if env.get("DGM_METRICS_DIR"):  # a benchmark collects what each chapter records
            kernel_env["DGM_METRICS_DIR"] = str(Path(env["DGM_METRICS_DIR"]) / name)
        event("chapter", name=name, cells=cells, chapter=name)
        start, error = time.perf_counter(), None
        # As myst-nb runs it: the notebook's own kernel and timeout, no timings in the cells'
        # metadata (the cache hashes that metadata, so myst-nb would not find the notebook).
        client = NotebookClient(nb, timeout=nb.metadata.get("execution", {}).get("timeout", timeout),
                                allow_errors=False, record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute(env=kernel_env)
        except Exception as exc:  # noqa: BLE001 - the build re-executes it and reports it
            error = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        seconds = time.perf_counter() - start
        event("chapter_end", chapter=name, error=error is not None)
        with lock:
            if error is None:
                get_cache(str(cache_dir)).cache_notebook_bundle(
                    CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}),
                    check_validity=False, overwrite=True)
            runs.append(ChapterRun(name, seconds, error))

    def worker() -> None:
        """Take the longest chapter whose waits have ended, until none is left."""
        while True:
            with ready:
                while True:
                    if not order:
                        return
                    name = next((n for n in order if waits[n] <= ended), None)
                    if name is None and len(running) == 0:  # waits in a circle: break it
                        name = order[0]
                    if name is not None:
                        order.remove(name)
                        running.add(name)
                        break
                    ready.wait()
            try:
                one(name)
            finally:
                with ready:
                    running.discard(name)
                    ended.add(name)
                    ready.notify_all()

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(worker) for _ in range(jobs)]:
            future.result()
    return runs


def with_readers(to_run: list[str], chapters: list[str], cache_dir: Path,
                 root: Path = ROOT) -> list[str]:
    """``to_run`` plus every chapter that loads a model one of them stores (:mod:`dgm.store`):
    its cached copy shows the models of an earlier build, so it is dropped from the cache and
    runs again after them."""
    from dgm.store import chapters_needed

    readers = [c for c in chapters if c not in to_run and chapters_needed(c) & set(to_run)]
    if readers and (cache_dir / "global.db").exists():
        from jupyter_cache import get_cache

        cache = get_cache(str(cache_dir))
        for name in readers:
            try:
                record = cache.match_cache_notebook(read_chapter(root / "book" / f"{name}.md", root))
            except Exception:  # noqa: BLE001 - not cached after all: nothing to drop
                continue
            cache.remove_cache(record.pk)
    return to_run + readers
