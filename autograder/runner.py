"""Execute one merged notebook with nbval in a pytest subprocess, and read back what happened.

Each submission runs in its own fresh folder (the kernel's working folder) with::

    python -m pytest submission.ipynb -p nbval.plugin -p autograder.nbval_plugin \
        --nbval-lax --nbval-cell-timeout=S --nbval-kernel-name python3 -p no:cacheprovider

under a fixed kernel name (the notebook's own kernel metadata is ignored), plugin
auto-loading off (no stray plugins from the environment) and an empty ``pytest.ini`` (no
project settings). The kernel inherits the environment set here: ``DGM_PROFILE``,
``DGM_DEVICE``, ``DGM_DATA`` (the instructor's, inherited), ``PYTHONHASHSEED=0``,
``MPLBACKEND=Agg`` and a thread count that shares the cores between parallel jobs. The
results and the executed notebook are written outside the kernel's folder, to paths the
kernel is not told (see :mod:`autograder.nbval_plugin`). The whole run is bounded too: after
``total_timeout`` seconds its process group (pytest and the kernel) is killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat


#: ``python -m pytest``, except that jsonschema's optional ``rfc3987_syntax`` (which builds a
#: parser at import time: seconds per submission through nbformat; nbformat's schema checks
#: no IRI formats) is not imported.
PYTEST_MAIN = ("import sys; sys.modules['rfc3987_syntax'] = None; import pytest; "
               "sys.exit(pytest.main(sys.argv[1:]))")


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

    @property
    def cells_s(self) -> float:
        """Seconds spent executing cells (the submission's own work and the checks)."""
        return sum(c.get("duration", 0.0) for c in self.cells)


def kernel_env(profile: str, device: str, threads: int | None = None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the pytest process, inherited by the kernel."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "DGM_GRADER_")) and k != "JUPYTER_PLATFORM_DIRS"}
    env.update(DGM_PROFILE=profile, DGM_DEVICE=device, PYTHONHASHSEED="0", MPLBACKEND="Agg",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(threads))
    env.update(extra or {})
    return env


def run_notebook(nb, workdir: Path, *, cell_timeout: float, total_timeout: float,
                 env: dict[str, str], kernel_name: str = "python3") -> RunResult:
    """Execute ``nb`` with nbval in ``workdir`` (created, must be new or empty)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pytest.ini").write_text("[pytest]\naddopts =\n")
    nb_path = workdir / "submission.ipynb"
    nb_path.write_text(nbformat.writes(nb), encoding="utf-8")
    private = Path(tempfile.mkdtemp(prefix="dgm-grader-private-"))
    results, executed = private / "results.json", private / "executed.ipynb"
    token = secrets.token_hex(16)
    run_env = dict(env, DGM_GRADER_RESULTS=str(results), DGM_GRADER_EXECUTED=str(executed),
                   DGM_GRADER_TOKEN=token)
    cmd = [sys.executable, "-c", PYTEST_MAIN, nb_path.name, "-p", "nbval.plugin",
           "-p", "autograder.nbval_plugin", "-p", "no:cacheprovider", "--nbval-lax",
           f"--nbval-cell-timeout={cell_timeout:g}", "--nbval-kernel-name", kernel_name,
           "-q", "--tb=no", "-rN", "--color=no", "-c", "pytest.ini", "--rootdir", "."]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            errors="replace", start_new_session=True)
    error = None
    try:
        log, _ = proc.communicate(timeout=total_timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        log, _ = proc.communicate()
        error = f"the notebook did not finish within {total_timeout:g} s and was stopped"
    finally:
        _kill_group(proc)  # a kernel left behind by a crashed pytest
    wall = time.perf_counter() - start

    cells: list[dict] = []
    executed_nb = None
    try:
        data = json.loads(results.read_text())
        if data.get("token") != token:
            error = error or "the results file was not written by the grader"
        else:
            cells = data["cells"]
    except (OSError, ValueError, KeyError):
        error = error or "the notebook could not be executed (no results came back)"
    try:
        executed_nb = nbformat.read(str(executed), as_version=4)
    except (OSError, ValueError):
        executed_nb = None
    for path in (results, executed):
        path.unlink(missing_ok=True)
    private.rmdir() if private.exists() and not any(private.iterdir()) else None
    return RunResult(cells, executed_nb, wall, proc.returncode, log[-20000:], error, env)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
