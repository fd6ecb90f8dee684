"""pytest plugin that records what nbval saw in each notebook cell, for the grader.

Loaded in the pytest subprocess that :mod:`autograder.runner` starts for one submission::

    pytest submission.ipynb -p nbval.plugin -p autograder.nbval_plugin --nbval-lax ...

It runs in the pytest process, never in the student's kernel. It sends everything back on a
pipe whose file descriptor the grader passes in ``DGM_GRADER_FD``: one JSON document with the
cell records and the executed notebook, written at the end of the session. The kernel does not
inherit the descriptor (Jupyter closes them) and runs in a sandbox that cannot see this
process (:mod:`autograder.sandbox`, path of its settings in ``DGM_GRADER_SANDBOX``), so
nothing the student's code does can forge or change what the grader reads. The kernel talks
to pytest over Unix sockets in its own folder (Jupyter's ``ipc`` transport), since its network
namespace has no network. The merged notebook is deleted from the kernel's folder once pytest
has read it.

For every nbval cell item it records (as :class:`autograder.execute.CellRecord` reads it):
the cell's index, id; ``status`` (passed, failed, timeout, crashed: the kernel died while running
it, error: the kernel was already dead, skipped: among others, not reached within the
notebook's time budget, ``DGM_GRADER_BUDGET`` seconds, which also shortens the timeout of the
cell running when it runs out; ``evalue`` then says so); ``ename`` and ``evalue``
of the exception the cell raised (only those: never nbval's failure report, which prints the
cell source, nor the traceback); the cell's duration; and for a hidden check the measurements
it published (:mod:`autograder.observe`), from which the grader decides its verdict.

What differs from plain nbval is patched into nbval's internals in
:mod:`autograder.nbval_patches` (kernel start, dead kernels, output wait, timeouts), with a
version check; failure reports are shortened here to the exception's last line, so even the
grader's log holds no hidden source.
"""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest

from autograder import nbval_patches
from autograder.observe import MIME as OBSERVATION_MIME
#: Characters of text kept per output, and bytes of all outputs kept per cell, in the executed
#: notebook: a cell that prints gigabytes must not sink the grader or the instructor's copy.
TEXT_LIMIT = 20_000
CELL_OUTPUT_LIMIT = 2_000_000


def _truncate_text(text: str) -> str:
    if len(text) <= TEXT_LIMIT:
        return text
    cut = len(text) - TEXT_LIMIT
    return (text[:TEXT_LIMIT // 2] + f"\n[... {cut} characters cut by the grader ...]\n"
            + text[-TEXT_LIMIT // 2:])


def _bounded_outputs(outputs) -> list:
    """The outputs to keep: long texts cut in the middle, at most CELL_OUTPUT_LIMIT in all."""
    kept, size = [], 0
    for out in outputs:
        out = dict(out)
        if isinstance(out.get("text"), str):
            out["text"] = _truncate_text(out["text"])
        if isinstance(out.get("evalue"), str):
            out["evalue"] = _truncate_text(out["evalue"])
        if isinstance(out.get("traceback"), list):
            out["traceback"] = [_truncate_text(str(t)) for t in out["traceback"][-30:]]
        if isinstance(out.get("data"), dict):
            out["data"] = {k: (_truncate_text(v) if isinstance(v, str) and not k.startswith(
                "image/") else v) for k, v in out["data"].items()}
        size += len(json.dumps(out, default=str))
        if size > CELL_OUTPUT_LIMIT:
            kept.append({"output_type": "stream", "name": "stderr",
                         "text": "[... more output cut by the grader ...]\n"})
            break
        kept.append(out)
    return kept

_state: dict = {"fd": None, "cells": [], "nb": None, "started": None, "deadline": None,
                "cut": None}


def _undumpable() -> None:
    """Close this process's /proc files (memory, environment, descriptors) to other processes
    of the same user: Linux's ``PR_SET_DUMPABLE`` = 0."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass


def pytest_configure(config):
    fd = os.environ.pop("DGM_GRADER_FD", "")
    _state["fd"] = int(fd) if fd.isdigit() else None
    nbval_patches.apply(sandbox=os.environ.pop("DGM_GRADER_SANDBOX", None) or None)
    _undumpable()
    _state["started"] = time.perf_counter()
    budget = os.environ.pop("DGM_GRADER_BUDGET", "")
    _state["total"] = os.environ.pop("DGM_GRADER_BUDGET_TOTAL", "") or budget
    _state["deadline"] = _state["started"] + float(budget) if budget else None
    _state["cell_timeout"] = config.option.nbval_cell_timeout


def pytest_collection_finish(session):
    """The notebook is in memory now: take it off the disk before the kernel starts."""
    for item in session.items:
        path = getattr(item, "path", None) or getattr(item, "fspath", None)
        if path is not None and str(path).endswith(".ipynb"):
            try:
                os.unlink(str(path))
            except OSError:
                pass


def _is_cell(item) -> bool:
    return hasattr(item, "cell") and hasattr(item, "cell_num")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not _is_cell(item):
        return
    nbval_patches.prepare_cell(item)
    _state["nb"] = getattr(item.parent, "nb", None)
    _apply_budget(item)


#: What a cell the notebook's time budget did not reach, or cut short, says.
BUDGET_SKIP = "not run: the notebook used up its time budget of {total} s before this cell"
BUDGET_CUT = "the notebook's time budget of {total} s ran out while this cell ran"


def _apply_budget(item) -> None:
    """Give the cell what is left of the notebook's budget as its timeout (at most the cell
    timeout), or do not run it when nothing is left."""
    if _state.get("deadline") is None:
        return
    left = _state["deadline"] - time.perf_counter()
    if left < 1.0:
        pytest.skip(BUDGET_SKIP.format(total=_state["total"]))
    cut = left < _state["cell_timeout"]
    item.config.option.nbval_cell_timeout = left if cut else _state["cell_timeout"]
    _state["cut"] = item.cell_num if cut else None


def _error_output(outputs):
    for out in reversed(outputs or []):
        if out.get("output_type") == "error":
            return out
    return None


def _observations(outputs):
    """The measurement payloads a hidden check published, in order; the outputs keep only a
    short placeholder (the executed notebook stays small)."""
    from autograder.checks import refused_payload
    from autograder.limited_json import refusal
    from autograder.verdicts import CAPS

    found = []
    for out in outputs or []:
        data = out.get("data") or {}
        if OBSERVATION_MIME in data:  # one too deep or too large costs its check only
            reason = refusal(data[OBSERVATION_MIME], CAPS.payload_json())
            found.append(refused_payload(reason) if reason else data[OBSERVATION_MIME])
            out["data"] = {"text/plain": "[measurements sent to the grader]"}
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not _is_cell(item) or call.when == "teardown":
        return
    if call.when == "setup" and call.excinfo is None:
        return
    outputs = list(getattr(item, "test_outputs", None) or [])
    meta = item.cell.get("metadata", {}).get("dgm", {})
    record = {
        "index": item.cell_num,
        "id": item.cell.get("id"),
        "duration": round(call.duration, 4),
        "status": "passed",
        "ename": None,
        "evalue": None,
        "observations": [],
    }
    if isinstance(meta, dict) and meta.get("role") == "hidden":
        record["observations"] = _observations(outputs)
    if call.excinfo is not None:
        exc = call.excinfo.value
        text = str(exc)
        err = _error_output(outputs)
        if call.excinfo.errisinstance(pytest.skip.Exception):
            record["status"] = "skipped"
            if text.startswith(BUDGET_SKIP[:12]):
                record["evalue"] = text
        elif nbval_patches.kernel_died(getattr(item.parent, "kernel", None)):
            record["status"] = "crashed"
        elif "Timeout" in text or (err is not None and err.get("ename") == "KeyboardInterrupt"
                                   and getattr(item.parent, "timed_out", False)):
            record["status"] = "timeout"
            if _state.get("cut") == item.cell_num:
                record["evalue"] = BUDGET_CUT.format(total=_state["total"])
        elif err is not None:
            record["status"] = "failed"
            record["ename"] = str(err.get("ename"))[:200]
            record["evalue"] = str(err.get("evalue"))[:2000]
        else:  # the kernel died, or nbval itself failed: no exception of the student's
            record["status"] = "error"
            record["ename"] = type(exc).__name__
            record["evalue"] = text.splitlines()[0] if text else ""
        if report.failed:  # keep the log free of cell sources and tracebacks
            line = f"{record['ename']}: {record['evalue']}" if record["ename"] else record["status"]
            report.longrepr = f"cell {record['id']}: {line}"[:500]
    # Keep the outputs in the notebook written at the end, for the instructor.
    item.cell["outputs"] = [nbformat.from_dict(o) for o in _bounded_outputs(outputs)]
    item.cell["execution_count"] = len([c for c in _state["cells"] if c["status"] != "skipped"]) + 1
    _state["cells"] = [c for c in _state["cells"] if c["index"] != record["index"]] + [record]


def pytest_sessionfinish(session, exitstatus):
    # The kernel has been shut down: whatever it left behind (processes in sessions of their
    # own, forked twice, ignoring signals) was adopted by this process, a subreaper
    # (autograder.runner), and dies now, before the grader reads the results.
    from autograder.reap import kill_descendants

    kill_descendants(os.getpid())
    if _state["fd"] is None:
        return
    executed = None
    if _state["nb"] is not None:
        for cell in _state["nb"].cells:
            if cell.get("cell_type") == "code":
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "execute_result":
                        out.setdefault("metadata", {})
                        out.setdefault("execution_count", cell.get("execution_count"))
        executed = nbformat.writes(_state["nb"])
    payload = {"exitstatus": int(exitstatus),
               "wall": time.perf_counter() - (_state["started"] or time.perf_counter()),
               "cells": sorted(_state["cells"], key=lambda c: c["index"]),
               "executed": executed}
    data = json.dumps(payload).encode()
    with os.fdopen(_state["fd"], "wb") as pipe:
        pipe.write(data)
    _state["fd"] = None
