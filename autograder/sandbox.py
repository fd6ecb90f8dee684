"""Start a student's kernel in a sandbox: its own namespaces, limits, and no network.

The grader's pytest process (trusted) starts the kernel through this launcher::

    python -m autograder.sandbox SPEC.json -- python -m ipykernel_launcher -f CONNECTION.json

SPEC.json (written by :mod:`autograder.runner`, outside the kernel's folder) says what to do:

``memory_mb``   a memory limit: a cgroup (v1 or v2) when this process may create one, else
                ``RLIMIT_AS`` (address space; only on CPU, since CUDA reserves address space);
``nproc``       a process/thread limit: the cgroup's ``pids.max``, else ``RLIMIT_NPROC``;
``hide``        folders the kernel must not see (the instructor's source with the hidden
                checks, the output folder): an empty read-only tmpfs is mounted over each;
``workdir``     the kernel's folder (the one writable place);
``isolate``     whether to use the namespaces below (the grader asks once whether they work);
``status``      where to write what could be applied (the grader says what was not, in the
                feedback, instead of failing).

Where the operating system allows it (Linux, unprivileged user namespaces), the kernel runs
under ``unshare``: a new user namespace (its root has no privilege outside it), a new PID
namespace (it cannot see or signal the grader, and everything in it dies with it), a new
network namespace with no interface up (no network at all; the kernel talks to pytest over
Unix sockets, see the ``ipc`` transport in :mod:`autograder.nbval_plugin`) and a new mount
namespace in which every file system is read-only except the kernel's folder (and /dev),
and the ``hide`` folders are covered; a second, nested user namespace locks those mounts. The
launcher execs, so the process pytest started is the sandbox: killing it kills the kernel and
its children.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

CGROUP_ROOTS = ("/sys/fs/cgroup",)


def _cgroup(name: str, memory_mb: int | None, nproc: int | None,
            created: list[str]) -> list[str]:
    """Put this process into new memory and pids cgroups (their folders appended to
    ``created``, for the grader to remove); return what was applied."""
    applied: list[str] = []
    root = Path(CGROUP_ROOTS[0])
    if (root / "cgroup.controllers").exists():  # cgroup v2, needs a delegated subtree
        own = Path("/proc/self/cgroup").read_text().strip().split("::")[-1]
        group = root / own.lstrip("/") / name
        try:
            group.mkdir()
            created.append(str(group))
            if memory_mb:
                (group / "memory.max").write_text(str(memory_mb * 2**20))
                (group / "memory.swap.max").write_text("0")
                applied.append("memory")
            if nproc:
                (group / "pids.max").write_text(str(nproc))
                applied.append("pids")
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            return []
        return applied
    for controller, files in (("memory", {"memory.limit_in_bytes": memory_mb and memory_mb * 2**20}),
                              ("pids", {"pids.max": nproc})):
        if not any(v for v in files.values()):
            continue
        base = root / controller
        try:
            own = next(line.split(":", 2)[2] for line in
                       Path("/proc/self/cgroup").read_text().splitlines()
                       if line.split(":", 2)[1] == controller)
            group = base / own.lstrip("/") / name
            group.mkdir(exist_ok=True)
            created.append(str(group))
            for fname, value in files.items():
                if value:
                    (group / fname).write_text(str(value))
            (group / "cgroup.procs").write_text(str(os.getpid()))
            applied.append(controller)
        except (OSError, StopIteration, IndexError):
            continue
    return applied


def _setrlimit(which: int, value: int) -> bool:
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        return False
    return True


@functools.lru_cache(maxsize=None)
def namespaces_available() -> bool:
    """Whether this machine lets an unprivileged process make the sandbox's namespaces (asked
    once per grader process; the grader writes the answer into each run's settings)."""
    if sys.platform != "linux" or not shutil.which("unshare"):
        return False
    try:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--pid",
                                "--fork", "--mount", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def outside(spec_path: str, cmd: list[str]) -> None:
    spec = json.loads(Path(spec_path).read_text())
    status: dict = {"namespaces": False, "network": True, "hidden": [], "limits": [],
                    "cgroups": []}
    workdir = Path(spec["workdir"])
    memory_mb, nproc = spec.get("memory_mb"), spec.get("nproc")

    status["limits"] = _cgroup(spec.get("cgroup_name", f"dgm-{os.getpid()}"), memory_mb, nproc,
                               status["cgroups"])
    if memory_mb and "memory" not in status["limits"] and spec.get("device") == "cpu":
        if _setrlimit(resource.RLIMIT_AS, memory_mb * 2**20):
            status["limits"].append("memory (address space)")
    if nproc and "pids" not in status["limits"] and os.geteuid() != 0:
        if _setrlimit(resource.RLIMIT_NPROC, nproc):
            status["limits"].append("processes (rlimit)")

    prefix: list[str] = []
    if spec.get("isolate"):  # the grader checked that namespaces work here
        prefix = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                  "--net", "--mount", "--mount-proc", "--",
                  sys.executable, "-m", "autograder.sandbox", "--inside",
                  json.dumps({"hide": spec.get("hide", []), "nproc": nproc,
                              "workdir": str(workdir)}), "--"]
        status.update(namespaces=True, network=False, hidden=list(spec.get("hide", [])))
        if nproc and "pids" not in status["limits"]:
            status["limits"].append("processes (rlimit)")
    if spec.get("status"):
        Path(spec["status"]).write_text(json.dumps(status))
    argv = prefix + cmd
    os.execvp(argv[0], argv)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def inside(options: dict, cmd: list[str]) -> None:
    """In the new namespaces: only the kernel's folder stays writable, the hidden folders are
    covered, processes are limited; then a nested user and mount namespace locks those mounts
    (its root cannot remount or unmount them) and becomes the kernel.

    ``RLIMIT_NPROC`` counts the processes of this user namespace only, and holds for its root
    (which has no capability outside it)."""
    workdir = options["workdir"]
    hide = [p for p in options.get("hide", []) if Path(p).is_dir()]
    _mount("--make-rprivate", "/")
    _mount("--bind", workdir, workdir)
    for path in hide:
        _mount("-t", "tmpfs", "-o", "ro,size=4k,mode=555", "dgm-hidden", path)
    keep = {workdir, *hide}
    points = sorted({line.split()[4] for line in
                     Path("/proc/self/mountinfo").read_text().splitlines()})
    for point in points:
        if point in keep or point.startswith(("/proc", "/dev")):
            continue
        _mount("-o", "remount,bind,ro", point)
    if options.get("nproc"):
        _setrlimit(resource.RLIMIT_NPROC, int(options["nproc"]))
    argv = ["unshare", "--user", "--map-root-user", "--mount", "--", *cmd]
    os.execvp(argv[0], argv)


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: python -m autograder.sandbox SPEC.json -- KERNEL COMMAND...")
    split = argv.index("--")
    head, cmd = argv[:split], argv[split + 1:]
    if head and head[0] == "--inside":
        inside(json.loads(head[1]), cmd)
    else:
        outside(head[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
