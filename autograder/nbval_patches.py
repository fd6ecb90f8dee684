"""Every change the grader makes to nbval's internals, in one place, for the nbval versions
they were written against.

nbval has no hooks for these, so they reach into its classes and attributes; a new nbval may
rename any of them. :func:`check_version` therefore refuses an nbval outside
:data:`SUPPORTED` with a message saying what to do, and ``tests/test_nbval_patches.py`` has a
test per patch that shows it in effect against the installed nbval:

1. **Kernel start** (:func:`_patch_kernel_start`): nbval starts kernels with
   ``nbval.kernel.start_new_kernel``; ours talks over Unix sockets in the kernel's folder and
   starts the kernel through the sandbox launcher (:mod:`autograder.sandbox`).
2. **A dead kernel is noticed within a second** (:func:`_patch_dead_kernel`):
   ``nbval.kernel.RunningKernel.get_message`` waits in one-second slices and stops at once when
   the kernel died, flagging it (:func:`kernel_died`), instead of waiting out the cell timeout.
3. **Outputs get time** (:func:`prepare_cell`): nbval waits 5 s (``IPyNbCell.output_timeout``)
   for a cell's outputs after the kernel replied, then fails the cell; on a loaded machine that
   is a slow submission, not a broken one: :data:`OUTPUT_TIMEOUT`.
4. **A timeout does not fail every later cell** (:func:`prepare_cell`): after a cell timed out,
   nbval marks all later cells as expected failures (``IPyNbFile.timed_out``); when the
   interrupt worked and the kernel is alive, later cells are graded normally.
5. **Kernel messages are read under limits** (:func:`_patch_message_limits`):
   ``jupyter_client.session.Session.deserialize`` reads each message's content with
   :mod:`autograder.limited_json`, so a measurement nested 100,000 deep or hundreds of MB large
   becomes a refused measurement that costs its check, instead of a recursion error that nbval
   would report as a dead kernel.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import version
from queue import Empty

from autograder.observe import MIME

#: nbval versions the patches were written and tested against: (lowest, first unsupported).
SUPPORTED = ((0, 11), (0, 12))
#: Seconds to wait for a cell's outputs once the kernel has replied (nbval's default is 5).
OUTPUT_TIMEOUT = 30

#: Settings the kernel-start patch reads; the plugin fills them in ``pytest_configure``.
_state: dict = {"sandbox": None}


def _parse(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_version(installed: str | None = None) -> None:
    """RuntimeError unless nbval ``installed`` (default: the installed one) is in SUPPORTED."""
    installed = installed or version("nbval")
    low, high = SUPPORTED
    if not low <= _parse(installed)[:len(low)] < high:
        span = f"{'.'.join(map(str, low))} <= nbval < {'.'.join(map(str, high))}"
        raise RuntimeError(
            f"the grader patches nbval's internals and supports {span}, but nbval {installed} "
            f"is installed: install a supported one (pip install 'nbval>={low[0]}.{low[1]},"
            f"<{high[0]}.{high[1]}'), or check each patch of autograder/nbval_patches.py "
            "against the new nbval (tests/test_nbval_patches.py) and widen SUPPORTED")


def apply(sandbox: str | None) -> None:
    """Check nbval's version and patch it (once per process); ``sandbox``: the path of the
    sandbox settings the kernel launcher reads, or None to start kernels without it."""
    check_version()
    _state["sandbox"] = sandbox
    _patch_dead_kernel()
    _patch_kernel_start()
    _patch_message_limits()


def _patch_kernel_start() -> None:
    """nbval starts kernels with ``jupyter_client.start_new_kernel``: start ours instead, with
    its connection file and Unix sockets in the kernel's own folder (the only folder of the
    grading run its sandbox holds), through the sandbox launcher when one is set.

    A sandboxed kernel runs in a session of its own (bubblewrap's ``--new-session``), out of
    reach of the signal Jupyter sends to interrupt a cell, so it is interrupted by a message on
    its control channel instead (the kernel then signals itself)."""
    import sys

    import nbval.kernel
    from jupyter_client.manager import KernelManager

    if getattr(nbval.kernel, "_dgm_patched", False):
        return

    class SandboxedKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            # No history database: every cell's source, hidden checks' included, would sit in
            # a file the student's code can read (:func:`autograder.observe.forget_source`).
            cmd = [*super().format_kernel_cmd(extra_arguments), "--HistoryManager.enabled=False"]
            if _state["sandbox"]:
                cmd = [sys.executable, "-m", "autograder.sandbox", _state["sandbox"], "--", *cmd]
            return cmd

    def start_new_kernel(startup_timeout=60, kernel_name="python", **kwargs):
        cwd = kwargs.get("cwd") or os.getcwd()
        km = SandboxedKernelManager(kernel_name=kernel_name, transport="ipc",
                                    ip=os.path.join(cwd, "kernel"),
                                    connection_file=os.path.join(cwd, "kernel.json"))
        if _state["sandbox"]:
            km.kernel_spec.interrupt_mode = "message"
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


def _patch_dead_kernel() -> None:
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


def kernel_died(kernel) -> bool:
    """Whether ``kernel`` (nbval's RunningKernel) died during the cell just run; the flag is
    cleared, so later cells, which find it dead already, are not blamed."""
    if kernel is not None and getattr(kernel, "_dgm_died", False):
        kernel._dgm_died = False
        return True
    return False


def prepare_cell(item) -> None:
    """Before nbval runs the cell ``item``: give its outputs OUTPUT_TIMEOUT seconds, and clear
    the notebook's ``timed_out`` flag when the kernel survived an earlier timeout."""
    item.output_timeout = max(getattr(item, "output_timeout", 5), OUTPUT_TIMEOUT)
    parent = item.parent
    kernel = getattr(parent, "kernel", None)
    if getattr(parent, "timed_out", False) and kernel is not None and kernel.is_alive():
        parent.timed_out = False  # the interrupt worked: later cells are graded normally


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
        return {"data": {MIME: refused_payload(str(exc)),
                         "text/plain": "[measurements refused by the grader]"},
                "metadata": {}, "transient": {}, "execution_count": None}
    data = content.get("data") if isinstance(content, dict) else None
    if isinstance(data, dict) and MIME in data:
        from autograder.limited_json import refusal

        reason = refusal(data[MIME], limits)
        if reason:
            data[MIME] = refused_payload(reason)
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
