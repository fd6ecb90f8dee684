"""End every process a grading run started, the moment its notebook is done.

A submission may leave processes behind that outlive its kernel: ones that call ``setsid()``,
fork twice (so that init adopts them), and ignore every signal that can be ignored. Three
nets catch them, each enough on its own where it applies:

1. **The kernel's cgroup** (made by :mod:`autograder.sandbox` where the machine lets the grader
   make one): every process the kernel starts stays in it, whatever it does.
   :func:`kill_cgroup` writes ``cgroup.kill`` (cgroup v2, Linux 5.14+), else SIGKILLs what
   ``cgroup.procs`` lists until it is empty.
2. **The sandbox's PID namespace** (bubblewrap's ``--unshare-pid --die-with-parent``): when the
   kernel's launcher dies, the namespace's init dies, and Linux kills every process in it.
3. **A subreaper** (:func:`become_subreaper`): the pytest process that drives nbval adopts the
   orphans of everything below it, instead of init, so that :func:`kill_descendants`, which
   walks ``/proc`` from it, finds double-forked processes too. This is the only net when the
   sandbox is off and no cgroup could be made (``--insecure-no-sandbox`` in a container): it
   misses a process only if the pytest process itself dies first (killed from outside), after
   which its orphans go to init.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process adopt the orphans of its descendants (Linux's
    ``PR_SET_CHILD_SUBREAPER``); False where that is not possible."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: str) -> tuple[int, str] | None:
    """``(parent pid, state)`` of ``pid`` from ``/proc/PID/stat``, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the name may hold spaces and parentheses
    return (int(fields[1]), fields[0]) if len(fields) > 1 else None


def descendants(root: int) -> list[int]:
    """The live (not zombie) processes below ``root``, from ``/proc``."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(entry)
            if info is not None:
                children.setdefault(info[0], []).append((int(entry), info[1]))
    found, stack = [], [root]
    while stack:
        for pid, state in children.get(stack.pop(), ()):
            stack.append(pid)
            if state not in ("Z", "X"):
                found.append(pid)
    return found


def kill_descendants(root: int, seconds: float = 5.0) -> int:
    """SIGKILL every process below ``root`` until none is left alive (at most ``seconds``);
    return how many were killed. Each round stops all it sees first, so none forks between
    being seen and being killed, then kills them; children made meanwhile are found next
    round."""
    killed: set[int] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pids = descendants(root)
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        killed.update(pids)
        time.sleep(0.01)
    return len(killed)


def kill_cgroup(path: str | Path, seconds: float = 5.0) -> None:
    """SIGKILL every process in the cgroup at ``path`` (its sub-groups included with v2)."""
    group = Path(path)
    try:
        (group / "cgroup.kill").write_text("1")  # cgroup v2: the kernel does it, race-free
        return
    except OSError:
        pass
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
