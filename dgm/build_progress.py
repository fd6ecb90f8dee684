"""What ``make book`` tells the reader at the terminal: the plan up front, progress while it runs.

Before the build: the profile, the chapters whose code will execute (those the execution cache
has no match for) and an estimate of how long they take, from the per-chapter times recorded
in benchmarks/results/chapters_<profile>.json. During the build: the events that chapter
kernels and Sphinx append to the build's event file (dgm/kernel_progress.py), printed by a
:class:`Follower` thread as lines with the elapsed time and the chapter's name, plus a line
after every ``QUIET_S`` seconds without news.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
QUIET_S = 60.0   # longest silence on the terminal while a cell runs without a bar
POLL_S = 0.5     # how often the follower looks for new events


def toc_chapters(root: Path = ROOT) -> list[str]:
    """Chapter names (book/<name>.md) of _toc.yml that hold code, in table-of-contents order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [Path(f).name for f in files if "```{code-cell}" in (root / f"{f}.md").read_text()]


@dataclass(frozen=True)
class Estimates:
    seconds: dict[str, float]  # chapter -> recorded execution time
    source: Path               # the file they come from
    conditions: str            # the machine and date they were measured on
    noted: frozenset[str] = frozenset()  # chapters whose record carries a note (e.g. load)


def load_estimates(profile: str, results: Path = RESULTS) -> Estimates | None:
    """Recorded chapter times of ``profile`` (benchmarks.chapters writes them), or None."""
    path = results / f"chapters_{profile}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    seconds = {name: entry["seconds"] for name, entry in data.get("chapters", {}).items()
               if isinstance(entry.get("seconds"), (int, float))}
    machine = data.get("machine", {})
    where = machine.get("gpu") or f"{machine.get('cpus', '?')} CPU cores, no GPU"
    noted = frozenset(name for name, entry in data.get("chapters", {}).items() if entry.get("note"))
    return Estimates(seconds, path, f"{where}, {machine.get('date', 'date unknown')}", noted)


def cached_chapters(cache_dir: Path, chapters: list[str], root: Path = ROOT) -> set[str]:
    """Chapters whose current code has a match in the jupyter-cache at ``cache_dir``.

    Reads each chapter as myst-nb does and asks the cache as myst-nb will; a chapter that
    cannot be checked counts as not cached (it is then announced as executing).
    """
    if not (cache_dir / "global.db").exists():
        return set()
    from jupyter_cache import get_cache

    from dgm.preexecute import read_chapter

    cache, found = get_cache(str(cache_dir)), set()
    for name in chapters:
        try:
            cache.match_cache_notebook(read_chapter(root / "book" / f"{name}.md", root))
        except Exception:  # noqa: BLE001 - no match, or unreadable: it will execute
            continue
        found.add(name)
    return found


def minutes(seconds: float) -> str:
    """``4.2 s`` under ten seconds, ``42 s`` under two minutes, else ``12.5 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def makespan(seconds: list[float], jobs: int) -> float:
    """Wall time of running jobs of these lengths ``jobs`` at a time, longest first."""
    lanes = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        lanes[lanes.index(min(lanes))] += s
    return max(lanes)


def announcement(profile: str, chapters: list[str], cached: set[str],
                 estimates: Estimates | None, jobs: int = 1) -> str:
    """The plan printed before the build: what executes and roughly how long it takes."""
    run = [c for c in chapters if c not in cached]
    lines = [f"Building the book in the '{profile}' profile (set DGM_PROFILE=smoke|cpu|full to change).",
             f"{len(run)} of {len(chapters)} chapters with code will execute"
             + (f", {jobs} at a time (DGM_BUILD_JOBS=1: one after the other)" if jobs > 1 and run else "")
             + (f"; {len(cached)} come from the execution cache." if cached else ".")]
    if estimates is None:
        lines.append(f"No recorded chapter times for '{profile}' "
                     f"(benchmarks/results/chapters_{profile}.json): no time estimate.")
    else:
        lines.append(f"Estimates are the times recorded in {estimates.source.relative_to(ROOT)} "
                     f"({estimates.conditions}); another machine or a loaded one differs.")
    known, unknown = [], []
    for name in chapters:
        if name in cached:
            lines.append(f"  {name:<16} cached")
            continue
        seconds = estimates.seconds.get(name) if estimates else None
        if seconds is None:
            unknown.append(name)
        else:
            known.append(seconds)
        lines.append(f"  {name:<16} executes, estimate "
                     + ("unknown (not recorded)" if seconds is None else minutes(seconds))
                     + (" (see the note recorded with it)" if estimates and name in estimates.noted
                        else ""))
    if run and len(unknown) < len(run):
        lines.append(f"Estimated execution time: about {minutes(makespan(known, jobs))}"
                     + (f" plus {len(unknown)} chapter(s) without a record" if unknown else "")
                     + ", then a minute or two to write the pages.")
    return "\n".join(lines)


class Follower(threading.Thread):
    """Prints the build's events to ``stream`` as they arrive, until :meth:`stop`.

    Events that name their ``chapter`` come from chapters executed side by side
    (dgm/preexecute.py); the others belong to the chapter Sphinx is reading now.
    """

    def __init__(self, log: Path, stream: TextIO, estimates: Estimates | None = None,
                 quiet_s: float = QUIET_S):
        super().__init__(daemon=True)
        self.log, self.stream, self.quiet_s = log, stream, quiet_s
        self.estimates = estimates.seconds if estimates else {}
        self.start_time = time.time()
        self.chapters: dict[str, dict] = {}  # chapters started and not yet finished, by name
        self.reading: str | None = None  # the chapter Sphinx reads now
        self.last_print = time.time()
        self._halt = threading.Event()
        self._offset = 0

    @property
    def chapter(self) -> dict | None:
        """The chapter Sphinx reads now (None between chapters)."""
        return self.chapters.get(self.reading) if self.reading else None

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll()
            self._halt.wait(POLL_S)
        self.poll()
        for name in list(self.chapters):
            self.finish_chapter(time.time(), name)

    def say(self, text: str, now: float) -> None:
        elapsed = int(now - self.start_time)
        self.stream.write(f"[book {elapsed // 60:3d}:{elapsed % 60:02d}] {text}\n")
        self.stream.flush()
        self.last_print = time.time()

    def poll(self) -> None:
        """Print the events appended since the last call (or a line after a long silence)."""
        if self.log.exists():
            with self.log.open("rb") as f:
                f.seek(self._offset)
                while True:
                    line = f.readline()
                    if not line.endswith(b"\n"):  # nothing more, or a line still being written
                        break
                    self._offset += len(line)
                    self.handle(json.loads(line))
        now = time.time()
        if now - self.last_print < self.quiet_s:
            return
        for chapter in [c for c in self.chapters.values() if c["cell"] is not None]:
            self.say(f"{chapter['name']}: cell {chapter['cell']}/{chapter['cells']} still running "
                     f"({minutes(now - chapter['cell_start'])} in this cell, "
                     f"{minutes(now - chapter['start'])} into the chapter)", now)

    def handle(self, event: dict) -> None:
        now, kind = event.get("time", time.time()), event.get("event")
        side_by_side = event.get("chapter")
        if kind == "chapter":
            name = Path(event["name"]).name
            if not side_by_side:  # Sphinx moved on to the next page
                if self.reading is not None:
                    self.finish_chapter(now, self.reading)
                self.reading = name
            self.chapters[name] = {"name": name, "cells": event.get("cells", "?"), "start": now,
                                   "end": now, "ran": 0, "cell": None, "cell_start": now}
            return
        if kind == "chapter_end":
            self.finish_chapter(now, Path(side_by_side or "").name,
                                failed=bool(event.get("error")))
            return
        chapter = self.chapters.get(Path(side_by_side).name) if side_by_side else self.chapter
        if chapter is None:
            return
        if kind == "cell_start":
            if not chapter["ran"]:
                estimate = self.estimates.get(chapter["name"])
                self.say(f"{chapter['name']}: executing {chapter['cells']} code cells"
                         + (f" (estimate {minutes(estimate)})" if estimate else ""), now)
            chapter["ran"] += 1
            chapter["cell"], chapter["cell_start"] = event.get("cell"), now
        elif kind == "cell_end":
            state = "raised an error" if event.get("error") else "done"
            chapter["end"] = now
            self.say(f"{chapter['name']}: cell {event.get('cell')}/{chapter['cells']} {state} "
                     f"in {minutes(event.get('seconds', 0.0))}", now)
            chapter["cell"] = None
        elif kind == "bar":
            self.say(f"{chapter['name']}: {event.get('text', '')}", now)

    def finish_chapter(self, now: float, name: str | None = None, failed: bool = False) -> None:
        """Say how the chapter ``name`` (default: the one Sphinx reads) ended and forget it."""
        name = name if name is not None else self.reading
        chapter = self.chapters.pop(name, None) if name else None
        if name is not None and name == self.reading:
            self.reading = None
        if chapter is None:
            return
        if failed:
            self.say(f"{chapter['name']}: FAILED after {chapter['ran']} cells; the build runs it "
                     "again and reports the error", now)
        elif chapter["ran"]:
            self.say(f"{chapter['name']}: finished, {chapter['ran']} cells in "
                     f"{minutes(chapter['end'] - chapter['start'])}", chapter["end"])
        else:
            self.say(f"{chapter['name']}: outputs taken from the execution cache", now)
