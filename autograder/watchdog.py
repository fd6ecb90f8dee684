"""Enforce a kernel's memory and process limits from outside when no cgroup could hold them.

The sandbox launcher puts each kernel into memory and pids cgroups where the machine lets it
(:mod:`autograder.sandbox`). Where it cannot (no delegated cgroup tree: a container, a VM whose
init owns the hierarchy) the fallbacks are weak: ``RLIMIT_AS`` only on the CPU (CUDA reserves
far more address space than it uses), and ``RLIMIT_NPROC`` never for root. The grader then
watches the run's process tree itself: every ``interval`` seconds it adds up the resident memory
and the threads of everything below the pytest process, and kills that whole tree (the kernel
and its children; pytest reports the kernel dead, and the cell is scored as a crash) when
either goes over its limit. Polling cannot stop a spike between two looks, so a cgroup is
always preferred; this makes the limit hold on machines without one, GPU grading included.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class Watch:
    """What the watchdog enforced and did during one run."""

    enforced: list[str] = field(default_factory=list)   # "memory (watchdog)", ...
    kills: list[str] = field(default_factory=list)      # why each kill happened


def _missing(applied: list[str], memory_mb: int | None, nproc: int | None) -> tuple[bool, bool]:
    memory = bool(memory_mb) and not any(a.startswith("memory") for a in applied)
    procs = bool(nproc) and not any(a.startswith(("pids", "processes")) for a in applied)
    return memory, procs


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _usage(procs: list[psutil.Process]) -> tuple[int, int]:
    rss = threads = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            threads += p.num_threads()
        except psutil.Error:
            pass
    return rss, threads


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed)."""
    total, stack = 0, [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
        except OSError:
            pass
    return total


def _shrink(folder: Path, excess: int) -> None:
    """Delete the largest files under ``folder`` until ``excess`` bytes are gone."""
    files = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                files.append((os.lstat(path).st_blocks * 512, path))
            except OSError:
                pass
    for size, path in sorted(files, reverse=True):
        if excess <= 0:
            break
        try:
            os.unlink(path)
            excess -= size
        except OSError:
            pass


def watch(root_pid: int, status: Path, memory_mb: int | None, nproc: int | None,
          stop: threading.Event, interval: float = 0.2, folder: Path | None = None,
          disk_mb: int | None = None) -> Watch:
    """Watch the processes below ``root_pid`` until ``stop`` is set; see the module docstring.

    ``status`` is the sandbox launcher's status file: its ``limits`` say what a cgroup or rlimit
    already holds (each kernel start rewrites it); only the rest is watched.
    """
    result = Watch()
    if folder is not None and disk_mb:
        result.enforced.append("disk (watchdog)")
    last_disk = 0.0
    while not stop.is_set():
        if folder is not None and disk_mb and time.monotonic() - last_disk >= 1.0:
            last_disk = time.monotonic()  # a folder walk costs more than a process poll
            used = folder_bytes(folder)
            if used > disk_mb * 2**20:
                tree = _tree(root_pid)
                for p in tree:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                result.kills.append(f"files {used / 2**20:.0f} MiB in its folder, over the "
                                    f"limit of {disk_mb} MiB")
                _shrink(folder, used - disk_mb * 2**20)  # else every rerun would die at once
        try:
            applied = json.loads(status.read_text()).get("limits", [])
        except (OSError, ValueError, AttributeError):
            stop.wait(interval)  # the launcher has not started yet
            continue
        memory, procs = _missing(applied, memory_mb, nproc)
        for flag, name in ((memory, "memory (watchdog)"), (procs, "processes (watchdog)")):
            if flag and name not in result.enforced:
                result.enforced.append(name)
        if memory or procs:
            tree = _tree(root_pid)
            rss, threads = _usage(tree)
            why = None
            if memory and rss > memory_mb * 2**20:
                why = f"memory {rss / 2**20:.0f} MiB over the limit of {memory_mb} MiB"
            elif procs and threads > nproc:
                why = f"{threads} threads and processes, over the limit of {nproc}"
            if why:
                for p in tree:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                result.kills.append(why)
        stop.wait(interval)
    return result


def start(root_pid: int, status: Path, memory_mb: int | None, nproc: int | None,
          interval: float = 0.2, folder: Path | None = None, disk_mb: int | None = None):
    """Run :func:`watch` in a daemon thread; return ``finish()``, which stops it and returns the
    :class:`Watch`."""
    stop = threading.Event()
    out: list[Watch] = []
    thread = threading.Thread(target=lambda: out.append(
        watch(root_pid, status, memory_mb, nproc, stop, interval, folder, disk_mb)), daemon=True,
        name="dgm-watchdog")
    thread.start()

    def finish() -> Watch:
        stop.set()
        thread.join(timeout=5)
        return out[0] if out else Watch()

    return finish
