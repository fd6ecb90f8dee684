"""Execute one merged notebook with nbval in a pytest subprocess, and read back what happened.

Each submission runs in its own fresh folder (the kernel's working folder) with::

    python -m pytest submission.ipynb -p nbval.plugin -p autograder.nbval_plugin \
        --nbval-lax --nbval-cell-timeout=S --nbval-kernel-name python3 -p no:cacheprovider

under a fixed kernel name (the notebook's own kernel metadata is ignored), plugin
auto-loading off (no stray plugins from the environment) and an empty ``pytest.ini`` (no
project settings). pytest and the kernel get an environment built from an allow-list
(:func:`kernel_env`), never the grader's own: ``DGM_PROFILE``, ``DGM_DEVICE``, ``DGM_DATA``
and ``DGM_CACHE`` (the instructor's data and model cache, resolved here), ``PYTHONPATH`` (the
kernel's copy of the course packages, :func:`autograder.sandbox.kernel_packages`, which lacks the
modules holding reference answers), ``PYTHONHASHSEED=0``, ``MPLBACKEND=Agg``, a thread count that shares the
cores between parallel jobs, the GPU given, and HOME and the temporary folders in the kernel's
folder. The results and the executed notebook are written outside the kernel's folder, to
paths the kernel cannot reach: one JSON document on a pipe, read only when pytest exits
normally (see :mod:`autograder.nbval_plugin`). The kernel runs in a bubblewrap sandbox
(:mod:`autograder.sandbox`) with the :class:`Limits` given; a run that asks for isolation where
bubblewrap cannot run raises :class:`autograder.sandbox.SandboxUnavailable` instead of running
unsandboxed. The whole run has a time budget: the plugin shortens the timeout of the cell
running when it runs out and does not run the cells after it (their records say why), and
:data:`BUDGET_MARGIN` seconds later pytest is killed. Whenever the run ends, everything it
started dies with it (:mod:`autograder.reap`): what is below pytest (pytest adopts orphans),
pytest's process group and the kernel's cgroups; the grader never waits for pytest's output
to close, which a process left behind could hold open.
"""

from __future__ import annotations

import atexit
import codecs
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import limited_json, reap
from autograder import sandbox as _sandbox
from autograder import watchdog


#: Runs still going (their process groups are killed if the grader exits, e.g. on Ctrl-C).
_ACTIVE: set = set()


def kill_all() -> None:
    """Kill every run still going: pytest, its sandboxed kernel and all they started."""
    for proc in list(_ACTIVE):
        if proc.poll() is None:
            reap.kill_descendants(proc.pid, seconds=1.0)
        _kill_group(proc)


atexit.register(kill_all)

#: ``python -m pytest``, except that jsonschema's optional ``rfc3987_syntax`` (which builds a
#: parser at import time: seconds per submission through nbformat; nbformat's schema checks
#: no IRI formats) is not imported.
#: It is also a subreaper (:mod:`autograder.reap`): processes that the kernel's children leave
#: behind are adopted by it, not by init, so that they can be found and killed.
PYTEST_MAIN = ("import sys; sys.modules['rfc3987_syntax'] = None; "
               "from autograder.reap import become_subreaper; become_subreaper(); "
               "import pytest; sys.exit(pytest.main(sys.argv[1:]))")
#: Characters of pytest's own output kept (its last ones).
LOG_LIMIT = 20_000


@dataclass
class RunResult:
    """What one execution produced."""

    cells: list[dict]              # one record per executed code cell (see nbval_plugin)
    executed: nbformat.NotebookNode | None
    wall_s: float                  # the subprocess, start to end
    returncode: int
    log: str                       # pytest's own output (no cell sources, no tracebacks)
    error: str | None = None       # why no results came back, if they did not
    env: dict = field(default_factory=dict)
    sandbox: dict = field(default_factory=dict)  # what the sandbox could apply

    @property
    def cells_s(self) -> float:
        """Seconds spent executing cells (the submission's own work and the checks)."""
        return sum(c.get("duration", 0.0) for c in self.cells)


def kernel_env(profile: str, device: str, threads: int | None = None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the pytest process and its kernel, built from an allow-list: nothing
    of the grader's own environment (its secrets, tokens, paths) is copied. ``extra`` holds
    what the grader adds (``CUDA_VISIBLE_DEVICES``); :func:`run_notebook` adds HOME and the
    temporary folders, in the kernel's folder."""
    from dgm.paths import data_root, default_cache_dir  # no torch in the grader's process

    env = {"PATH": os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent),
                                                  "/usr/local/bin", "/usr/bin", "/bin"])),
           "LANG": "C.UTF-8", "USER": "student", "LOGNAME": "student",
           # the kernel's own copy of the course packages, without the modules that hold
           # reference answers (autograder.sandbox.KERNEL_MODULES)
           "PYTHONPATH": str(_sandbox.kernel_packages()),
           # The kernel's HOME is its own folder: hand it the instructor's data and model cache
           # explicitly, read-only in the sandbox, so it neither downloads nor retrains.
           "DGM_DATA": str(data_root()), "DGM_CACHE": str(default_cache_dir().resolve()),
           "DGM_PROFILE": profile, "DGM_DEVICE": device, "PYTHONHASHSEED": "0",
           "MPLBACKEND": "Agg", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    if device == "cuda" and os.path.isdir(_sandbox.NVIDIA_DRIVER):
        env["LD_LIBRARY_PATH"] = f"{_sandbox.NVIDIA_DRIVER}/lib64:{_sandbox.NVIDIA_DRIVER}/lib"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Limits:
    """What one submission's kernel may use (see :mod:`autograder.sandbox`)."""

    memory_mb: int | None = 6144
    nproc: int | None = 512
    disk_mb: int | None = 2048    # files written: its folder (watched), /tmp and /dev/shm (sized)
    isolate: bool = True          # bubblewrap; False only with --insecure-no-sandbox
    cpus: float | None = None     # a CPU quota in cores (its share of the machine's cores)
    user: str | None = None       # a grader running as root runs the kernel as this user


#: Seconds the whole run may take beyond its budget (pytest's start and end, the kernel's
#: interrupt) before its process group is killed: a kill loses the results, so the plugin's own
#: budget (which skips the cells it does not reach) must always come first.
BUDGET_MARGIN = 120.0


def run_notebook(nb, workdir: Path, *, cell_timeout: float, budget: float,
                 env: dict[str, str], kernel_name: str = "python3",
                 limits: Limits | None = None, budget_total: float | None = None) -> RunResult:
    """Execute ``nb`` with nbval in ``workdir`` (created, must be new or empty), in at most
    ``budget`` seconds of cells (``budget_total``: the notebook's whole budget, for messages,
    when this run has what an earlier run left of it)."""
    limits = limits or Limits()
    if limits.isolate:
        _sandbox.require(user=limits.user)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pytest.ini").write_text("[pytest]\naddopts =\n")
    nb_path = workdir / "submission.ipynb"
    nb_path.write_text(nbformat.writes(nb), encoding="utf-8")
    private = Path(tempfile.mkdtemp(prefix="dgm-grader-private-"))
    spec, status = private / "sandbox.json", private / "sandbox-status.json"
    own = dict(env, HOME=str(workdir), IPYTHONDIR=str(workdir / ".ipython"),
               MPLCONFIGDIR=str(workdir / ".matplotlib"), XDG_CACHE_HOME=str(workdir / ".cache"),
               TMPDIR=str(workdir / ".tmp"))
    kernel = {k: v for k, v in own.items() if not k.startswith(("PYTEST_", "DGM_GRADER_"))}
    spec.write_text(json.dumps({
        "workdir": str(workdir), "memory_mb": limits.memory_mb, "nproc": limits.nproc,
        "disk_mb": limits.disk_mb, "cpus": limits.cpus,
        "isolate": limits.isolate, "readonly": _sandbox.readonly_paths(kernel), "env": kernel,
        "status": str(status), "device": env.get("DGM_DEVICE", "cpu"), "user": limits.user,
        "cgroup_name": f"dgm-grader-{private.name}"}))
    read_fd, write_fd = os.pipe()
    # pytest and the sandbox launcher (trusted, outside the sandbox) import the whole grader
    roots = os.pathsep.join(dict.fromkeys(str(p.parent) for p in _sandbox.package_dirs()))
    run_env = dict(own, PYTHONPATH=roots, DGM_GRADER_FD=str(write_fd), DGM_GRADER_SANDBOX=str(spec),
                   DGM_GRADER_BUDGET=f"{budget:.3f}", DGM_GRADER_BUDGET_TOTAL=f"{budget_total or budget:g}")
    total_timeout = budget + BUDGET_MARGIN
    (workdir / ".tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, "-c", PYTEST_MAIN, nb_path.name, "-p", "nbval.plugin",
           "-p", "autograder.nbval_plugin", "-p", "no:cacheprovider", "--nbval-lax",
           f"--nbval-cell-timeout={cell_timeout:g}", "--nbval-kernel-name", kernel_name,
           "-q", "--tb=no", "-rN", "--color=no", "-c", "pytest.ini", "--rootdir", "."]
    chunks: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            while block := pipe.read(1 << 16):
                chunks.append(block)

    reader = threading.Thread(target=drain, daemon=True)
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=workdir, env=run_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)  # only pytest holds the writing end now
    _ACTIVE.add(proc)
    reader.start()
    tail: list[str] = []  # pytest's output, read as it comes: a process the kernel left
    logger = threading.Thread(target=_keep_tail, args=(proc.stdout, tail), daemon=True)
    logger.start()  # behind may hold the pipe open, so nobody waits for its end
    finish_watch = watchdog.start(proc.pid, status, limits.memory_mb, limits.nproc,
                                  folder=workdir, disk_mb=limits.disk_mb)
    error = None
    try:
        proc.wait(timeout=total_timeout)
    except subprocess.TimeoutExpired:
        error = (f"the notebook did not finish within its time budget ({budget:g} s) and was "
                 "stopped")
    finally:
        # the notebook is over: end at once everything it started (autograder.reap)
        _end_run(proc, _status_cgroups(status, private.name))
        _ACTIVE.discard(proc)
        watched = finish_watch()
    logger.join(timeout=5)
    reader.join(timeout=5)
    log = "".join(tail)
    wall = time.perf_counter() - start

    cells: list[dict] = []
    executed_nb = None
    sandbox = {}
    try:
        sandbox = json.loads(status.read_text())
    except (OSError, ValueError):
        pass
    if watched.enforced and isinstance(sandbox.get("limits"), list):
        sandbox["limits"] = sandbox["limits"] + watched.enforced
    if watched.kills:
        sandbox["watchdog_kills"] = watched.kills
    if proc.returncode not in (0, 1):  # 0: all cells passed, 1: some failed; else no results
        error = error or (f"the grader's notebook runner stopped abnormally (exit code "
                          f"{proc.returncode})")
    else:
        try:
            data = limited_json.loads(b"".join(chunks), limited_json.RESULTS)
            cells = data["cells"]
            if data.get("executed"):
                executed_nb = nbformat.reads(data["executed"], as_version=4)
        except (ValueError, KeyError, TypeError):
            error = error or "the notebook could not be executed (no results came back)"
    shutil.rmtree(private, ignore_errors=True)
    _remove_cgroups(_status_cgroups(status, private.name, sandbox))
    return RunResult(cells, executed_nb, wall, proc.returncode, log[-LOG_LIMIT:], error, env,
                     sandbox)


def _keep_tail(stream, tail: list[str]) -> None:
    """Read ``stream`` to its end, keeping its last LOG_LIMIT characters in ``tail``."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while block := stream.read1(1 << 14):
            tail.append(decoder.decode(block))
            if sum(map(len, tail)) > 2 * LOG_LIMIT:
                tail[:] = ["".join(tail)[-LOG_LIMIT:]]
    except (OSError, ValueError):
        pass


def _status_cgroups(status: Path, name: str, sandbox: dict | None = None) -> list[str]:
    """The cgroups the sandbox launcher made for this run (from its status file)."""
    if sandbox is None:
        try:
            sandbox = json.loads(status.read_text())
        except (OSError, ValueError):
            return []
    paths = sandbox.get("cgroups", []) if isinstance(sandbox, dict) else []
    return [p for p in paths if isinstance(p, str) and Path(p).name == f"dgm-grader-{name}"]


def _end_run(proc: subprocess.Popen, cgroups: list[str]) -> None:
    """Kill everything a run started: the processes below pytest (its orphans included, since
    pytest is a subreaper), pytest's process group, and whatever is in the kernel's cgroups."""
    if proc.poll() is None:
        reap.kill_descendants(proc.pid)
    _kill_group(proc)
    for group in cgroups:
        reap.kill_cgroup(group)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _remove_cgroups(paths: list[str]) -> None:
    """Remove the cgroups the sandbox made for one run (empty once its processes are gone)."""
    for path in paths:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:  # processes still leaving it
                time.sleep(0.1)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
