"""Processes a submission leaves behind die when its notebook ends, with the sandbox on and off.

The red team's submission forks processes that call ``setsid()``, fork again (so that init
would adopt them), ignore SIGTERM, SIGHUP and SIGINT, and spin. Its grading must end a few
seconds after its last cell, and none of them may be left (:mod:`autograder.reap`). The
spinners lower their own priority and stop by themselves after a few minutes, so that a
failing run does not load the machine for long; they name themselves, for ``/proc``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder import grade, reap
from autograder.report import executed_copy
from autograder.sandbox import bwrap_problem

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import CORRECT, SOURCE  # noqa: E402

NAME = f"dgmspin{os.getpid() % 100000}"  # the spinners' process name (15 characters at most)
SPINNERS = 20
SPIN = f'''
import ctypes, os, signal, time
for _ in range({SPINNERS}):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
            ctypes.CDLL(None).prctl(15, b"{NAME}", 0, 0, 0)  # PR_SET_NAME
            os.nice(19)
            end = time.time() + 240
            while time.time() < end:
                pass
            os._exit(0)
        os._exit(0)
time.sleep(1.0)
'''
#: The last graded cell prints when it ended; only the toy's small hidden checks run after it.
ENDED = 'print("CELLS-ENDED-AT", repr(time.time()))\n'


def spinners() -> list[int]:
    """The spinners still alive (zombies waiting for init to reap them are dead)."""
    alive = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if name == NAME and rest.split()[0] not in ("Z", "X"):
            alive.append(int(entry))
    return alive


def _grade(tmp_path: Path, *extra: str) -> tuple[float, float]:
    """Grade the spinning submission; (when its last graded cell ended, when grading ended)."""
    nb = nbformat.read(str(CORRECT), as_version=4)
    for cell in nb.cells:
        if cell.get("id") == "toy-alpha-bar":
            cell.source = SPIN + cell.source + "\n" + ENDED
    (tmp_path / "spinner.ipynb").write_text(nbformat.writes(nb))
    out = tmp_path / "out"
    code = grade.main(["--assignment", "toy", "--source", str(SOURCE),
                       str(tmp_path / "spinner.ipynb"), "--out", str(out), "--device", "cpu",
                       "--profile", "smoke", "--timeout", "60", "--no-progress", *extra])
    done = time.time()
    assert code == 0
    executed = executed_copy(out / "spinner").read_text()
    ended = re.search(r"CELLS-ENDED-AT (\d+\.\d+)", executed)
    assert ended, "the spinning cell did not finish"
    assert json.loads((out / "spinner" / "results.json").read_text())["score"] > 0
    return float(ended.group(1)), done


@pytest.mark.parametrize("isolation", ["sandbox", "no sandbox"])
def test_processes_left_behind_die_when_the_notebook_ends(tmp_path, isolation):
    if isolation == "sandbox" and bwrap_problem() is not None:
        pytest.skip(f"bubblewrap cannot run here: {bwrap_problem()}")
    extra = ("--insecure-no-sandbox",) if isolation == "no sandbox" else ()
    try:
        ended, done = _grade(tmp_path, *extra)
        left = spinners()
    finally:
        for pid in spinners():  # a failing run must not leave them spinning
            os.kill(pid, 9)
    assert not left, f"{len(left)} of the {SPINNERS} spinners outlived the grading"
    # after the last graded cell: two tiny hidden checks, the kernel's shutdown, the verdicts
    assert done - ended < 30, f"grading ended {done - ended:.0f} s after the notebook's last cell"


def test_kill_descendants_finds_double_forked_orphans_of_a_subreaper(tmp_path):
    """The fallback without sandbox and cgroup: a subreaper adopts the orphans, /proc finds
    them below it, and they die though they ignore SIGTERM."""
    import subprocess

    code = (f"import sys\nsys.path.insert(0, {str(Path(reap.__file__).parent.parent)!r})\n"
            "from autograder.reap import become_subreaper, descendants, kill_descendants\n"
            "import subprocess, time\n"
            f"assert become_subreaper()\nsubprocess.run([sys.executable, '-c', {SPIN!r}])\n"
            "before = len(descendants(__import__('os').getpid()))\n"
            "killed = kill_descendants(__import__('os').getpid())\n"
            "print(before, killed, len(descendants(__import__('os').getpid())))\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
    finally:
        for pid in spinners():
            os.kill(pid, 9)
    before, killed, after = map(int, done.stdout.split())
    assert (before, killed, after) == (SPINNERS, SPINNERS, 0), done.stderr[-2000:]
