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

For every nbval cell item it records: the cell's index, id, ``metadata.dgm`` and whether it is
a grader cell; ``status`` (passed, failed, timeout, crashed: the kernel died while running
it, error: the kernel was already dead, skipped); ``ename`` and ``evalue``
of the exception the cell raised (only those: never nbval's failure report, which prints the
cell source, nor the traceback); the cell's duration; and for a hidden check the measurements
it published (:mod:`autograder.observe`), from which the grader decides its verdict.

Four things differ from plain nbval: a dead kernel is noticed within a second rather than
after the cell timeout; it waits longer for a cell's outputs once the kernel replied (a
loaded machine is slow, not broken); a cell that timed out does not mark every later cell
as an expected failure (nbval's default), so the later checks still count when the kernel
survived the interrupt; and failure reports are shortened to the exception's last line, so
even the grader's log holds no hidden source.
"""

from __future__ import annotations

import json
import os
import time
from queue import Empty

import nbformat
import pytest

from autograder.observe import MIME as OBSERVATION_MIME

#: Seconds to wait for a cell's outputs once the kernel has replied (nbval's default is 5).
OUTPUT_TIMEOUT = 30
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

_state: dict = {"fd": None, "sandbox": None, "cells": [], "nb": None, "started": None}


def _patch_kernel_start() -> None:
    """nbval starts kernels with ``jupyter_client.start_new_kernel``: start ours instead, over
    Unix sockets in the kernel's folder and through the sandbox launcher when one is set."""
    import sys

    import nbval.kernel
    from jupyter_client.manager import KernelManager

    if getattr(nbval.kernel, "_dgm_patched", False):
        return

    class SandboxedKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if _state["sandbox"]:
                cmd = [sys.executable, "-m", "autograder.sandbox", _state["sandbox"], "--", *cmd]
            return cmd

    def start_new_kernel(startup_timeout=60, kernel_name="python", **kwargs):
        cwd = kwargs.get("cwd") or os.getcwd()
        km = SandboxedKernelManager(kernel_name=kernel_name, transport="ipc",
                                    ip=os.path.join(cwd, "kernel"))
        km.start_kernel(**kwargs)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=startup_timeout)
        except RuntimeError:
            kc.stop_channels()
            km.shutdown_kernel()
            raise
        return km, kc

    nbval.kernel.start_new_kernel = start_new_kernel
    nbval.kernel._dgm_patched = True


def _undumpable() -> None:
    """Close this process's /proc files (memory, environment, descriptors) to other processes
    of the same user: Linux's ``PR_SET_DUMPABLE`` = 0."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass


def _patch_nbval_kernel() -> None:
    """Make nbval notice a dead kernel within a second instead of waiting out the timeout.

    nbval waits for a cell's reply for the whole cell timeout even when the kernel died (a
    crash, ``os._exit``, the out-of-memory killer); then every later cell fails. Messages are
    awaited in one-second slices here, and a dead kernel ends the wait at once, flagged so
    the cell is reported as ``crashed``.
    """
    from nbval.kernel import RunningKernel

    if getattr(RunningKernel, "_dgm_patched", False):
        return
    original = RunningKernel.get_message

    def get_message(self, stream, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            try:
                return original(self, stream, timeout=step)
            except Empty:
                if not self.is_alive():
                    self._dgm_died = True
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    RunningKernel.get_message = get_message
    RunningKernel._dgm_patched = True


def pytest_configure(config):
    _patch_nbval_kernel()
    _patch_message_limits()
    fd = os.environ.pop("DGM_GRADER_FD", "")
    _state["fd"] = int(fd) if fd.isdigit() else None
    _state["sandbox"] = os.environ.pop("DGM_GRADER_SANDBOX", None) or None
    _patch_kernel_start()
    _undumpable()
    _state["started"] = time.perf_counter()


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
    # nbval waits only 5 s for a cell's output messages after its reply, then kills the
    # kernel: on a loaded machine that is a lost submission, not a slow one.
    item.output_timeout = max(getattr(item, "output_timeout", 5), OUTPUT_TIMEOUT)
    parent = item.parent
    kernel = getattr(parent, "kernel", None)
    if getattr(parent, "timed_out", False) and kernel is not None and kernel.is_alive():
        parent.timed_out = False  # the interrupt worked: later cells are graded normally
    _state["nb"] = getattr(parent, "nb", None)


def _error_output(outputs):
    for out in reversed(outputs or []):
        if out.get("output_type") == "error":
            return out
    return None


#: Message types whose content may carry a measurement.
_DISPLAY_TYPES = ("display_data", "update_display_data", "execute_result")


def _limited_content(raw, msg_type: str):
    """A message's content, read under limits. Content too deep or too large becomes, for a
    display, a refused measurement that says why (nbval itself would recurse into it, and the
    grader would then report a dead kernel); any other kind of message is not read."""
    from autograder.checks import refused_payload
    from autograder.limited_json import LimitError, loads
    from autograder.verdicts import CAPS

    limits = CAPS.payload_json()
    limits = type(limits)(max_bytes=2 * limits.max_bytes, max_depth=limits.max_depth + 8,
                          max_string=limits.max_string, what=limits.what,
                          shown_mb=limits.shown_mb, shown_depth=limits.shown_depth)
    try:
        content = loads(getattr(raw, "bytes", raw), limits)
    except LimitError as exc:
        if msg_type not in _DISPLAY_TYPES:
            raise
        return {"data": {OBSERVATION_MIME: refused_payload(str(exc)),
                         "text/plain": "[measurements refused by the grader]"},
                "metadata": {}, "transient": {}, "execution_count": None}
    data = content.get("data") if isinstance(content, dict) else None
    if isinstance(data, dict) and OBSERVATION_MIME in data:
        from autograder.limited_json import refusal

        reason = refusal(data[OBSERVATION_MIME], limits)
        if reason:
            data[OBSERVATION_MIME] = refused_payload(reason)
    return content


def _patch_message_limits() -> None:
    """Read the content of every message from the kernel under limits (:func:`_limited_content`);
    a message whose header or metadata nests too deeply for Jupyter's own JSON reader is dropped
    (what it carried is then missing, and the check that needed it says so)."""
    from jupyter_client.session import Session
    from nbval.kernel import RunningKernel

    if getattr(RunningKernel, "_dgm_limited", False):
        return
    deserialize = Session.deserialize

    def limited_deserialize(self, msg_list, content=True, copy=True):
        msg = deserialize(self, msg_list, content=False, copy=copy)
        if content:
            msg["content"] = _limited_content(msg["content"], msg.get("msg_type", ""))
        return msg

    Session.deserialize = limited_deserialize
    inner = RunningKernel.get_message

    def get_message(self, stream, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return inner(self, stream, timeout=left)
            except RecursionError:
                continue

    RunningKernel.get_message = get_message
    RunningKernel._dgm_limited = True


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
    record = {
        "index": item.cell_num,
        "id": item.cell.get("id"),
        "dgm": dict(item.cell.get("metadata", {}).get("dgm", {}) or {}),
        "grader": "grader" in (item.cell.get("metadata", {}).get("tags", []) or []),
        "duration": round(call.duration, 4),
        "status": "passed",
        "ename": None,
        "evalue": None,
        "observations": [],
    }
    if record["dgm"].get("role") == "hidden":
        record["observations"] = _observations(outputs)
    if call.excinfo is not None:
        exc = call.excinfo.value
        text = str(exc)
        err = _error_output(outputs)
        kernel = getattr(item.parent, "kernel", None)
        if call.excinfo.errisinstance(pytest.skip.Exception):
            record["status"] = "skipped"
        elif kernel is not None and getattr(kernel, "_dgm_died", False):
            kernel._dgm_died = False  # only this cell killed it; later ones find it dead
            record["status"] = "crashed"
        elif "Timeout" in text or (err is not None and err.get("ename") == "KeyboardInterrupt"
                                   and getattr(item.parent, "timed_out", False)):
            record["status"] = "timeout"
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
