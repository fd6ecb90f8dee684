"""The grader's watchdog holds a kernel's memory and process limits where no cgroup can."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import psutil

from autograder import watchdog

HOG = "import time; x = bytearray(400 * 2**20); x[::4096] = b'x' * len(x[::4096]); time.sleep(60)"
THREADS = "import threading, time; [threading.Thread(target=time.sleep, args=(60,), daemon=True).start() for _ in range(60)]; time.sleep(60)"


def _tree(child_code: str) -> subprocess.Popen:
    """A parent (standing in for pytest) whose child does ``child_code``."""
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child_code!r}])"
    return subprocess.Popen([sys.executable, "-c", parent])


def _kill(proc: subprocess.Popen) -> None:
    for p in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
        p.kill()
    proc.kill()
    proc.wait()


def _watch(proc, status, memory_mb, nproc, seconds=20.0) -> watchdog.Watch:
    stop = threading.Event()
    out = []
    t = threading.Thread(target=lambda: out.append(
        watchdog.watch(proc.pid, status, memory_mb, nproc, stop, interval=0.1)))
    t.start()
    try:
        proc.wait(timeout=seconds)  # the parent returns once its child is killed
    finally:
        stop.set()
        t.join()
        _kill(proc)
    return out[0]


def test_memory_over_the_limit_kills_the_tree_when_no_cgroup_holds_it(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"limits": []}))  # the launcher applied nothing
    start = time.monotonic()
    watch = _watch(_tree(HOG), status, memory_mb=200, nproc=None)
    assert time.monotonic() - start < 15
    assert watch.enforced == ["memory (watchdog)"]
    assert watch.kills and "over the limit of 200 MiB" in watch.kills[0]


def test_threads_over_the_limit_kill_the_tree_when_no_cgroup_holds_it(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"limits": ["memory"]}))
    watch = _watch(_tree(THREADS), status, memory_mb=6144, nproc=30)
    assert watch.enforced == ["processes (watchdog)"]
    assert watch.kills and "over the limit of 30" in watch.kills[0]


def test_limits_a_cgroup_already_holds_are_not_watched(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"limits": ["memory", "pids"]}))
    proc = _tree(HOG)
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()
    watch = watchdog.watch(proc.pid, status, 200, 30, stop, interval=0.1)
    alive = proc.poll() is None
    _kill(proc)
    assert watch.enforced == [] and watch.kills == [] and alive


DISK = ("import time, pathlib, sys; p = pathlib.Path(sys.argv[1]);\n"
        "with open(p / 'big.bin', 'wb') as f:\n"
        "    for _ in range(300): f.write(b'x' * 2**20); f.flush()\n"
        "time.sleep(60)")


def test_files_over_the_disk_limit_kill_the_tree_and_are_removed(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"limits": ["memory", "pids"]}))
    folder = tmp_path / "work"
    folder.mkdir()
    parent = (f"import subprocess, sys; subprocess.run([sys.executable, '-c', {DISK!r}, "
              f"{str(folder)!r}])")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    stop = threading.Event()
    out = []
    t = threading.Thread(target=lambda: out.append(watchdog.watch(
        proc.pid, status, 6144, 512, stop, interval=0.1, folder=folder, disk_mb=100)))
    t.start()
    try:
        proc.wait(timeout=30)
    finally:
        stop.set()
        t.join()
        _kill(proc)
    assert "disk (watchdog)" in out[0].enforced
    assert out[0].kills and "over the limit of 100 MiB" in out[0].kills[0]
    assert watchdog.folder_bytes(folder) <= 100 * 2**20
