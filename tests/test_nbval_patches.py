"""One test per change the grader makes to nbval's internals (autograder/nbval_patches.py).

Each test runs against the installed nbval and shows both halves: what nbval does on its own
(the reason for the patch; a new nbval that renamed what is patched fails here) and that the
patched behaviour is in effect. The kernel-start and dead-kernel tests start one real kernel.
"""

from __future__ import annotations

import inspect
import sys
import time
from queue import Empty
from types import SimpleNamespace

import pytest

from autograder import nbval_patches


def test_a_supported_nbval_passes_the_version_check():
    nbval_patches.check_version()  # the installed one
    nbval_patches.check_version("0.11.0")


@pytest.mark.parametrize("installed", ["0.10.0", "0.12.0", "1.0"])
def test_an_nbval_outside_the_supported_range_is_refused_with_what_to_do(installed):
    with pytest.raises(RuntimeError) as info:
        nbval_patches.check_version(installed)
    message = str(info.value)
    assert f"nbval {installed} is installed" in message
    assert "0.11 <= nbval < 0.12" in message and "pip install" in message


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """nbval's RunningKernel, started through the patched start_new_kernel."""
    import nbval.kernel

    nbval_patches.apply(sandbox=None)
    cwd = tmp_path_factory.mktemp("kernel")
    running = nbval.kernel.RunningKernel("python3", cwd=str(cwd))
    yield running, cwd
    if running.is_alive():
        running.stop()


def test_kernels_start_over_unix_sockets_in_their_own_folder(kernel):
    running, cwd = kernel
    # nbval's own start_new_kernel is jupyter_client's: TCP on localhost.
    assert running.km.transport == "ipc"
    assert running.km.ip.startswith(str(cwd))


def test_kernels_start_through_the_sandbox_launcher_when_one_is_set(kernel, monkeypatch):
    running, _ = kernel
    plain = running.km.format_kernel_cmd()
    assert "autograder.sandbox" not in plain
    monkeypatch.setitem(nbval_patches._state, "sandbox", "/spec.json")
    cmd = running.km.format_kernel_cmd()
    assert cmd[:5] == [sys.executable, "-m", "autograder.sandbox", "/spec.json", "--"]
    assert cmd[5:] == plain


def test_a_dead_kernel_is_noticed_within_seconds_not_after_the_timeout(kernel):
    running, _ = kernel
    running.execute_cell_input("import os; os._exit(1)", allow_stdin=False)
    start = time.monotonic()
    with pytest.raises(Empty):
        running.get_message("shell", timeout=60)  # unpatched nbval waits all 60 s
    assert time.monotonic() - start < 10
    assert nbval_patches.kernel_died(running)
    assert not nbval_patches.kernel_died(running)  # blamed once: later cells find it dead


def _cell(timed_out: bool, alive: bool):
    kernel = SimpleNamespace(is_alive=lambda: alive)
    markers = []
    return SimpleNamespace(output_timeout=5, parent=SimpleNamespace(timed_out=timed_out,
                                                                    kernel=kernel),
                           add_marker=markers.append, markers=markers)


def test_cells_wait_longer_for_their_outputs():
    from nbval.plugin import IPyNbCell

    # nbval reads the wait from the cell's output_timeout, 5 s unless changed.
    assert "self.output_timeout = 5" in inspect.getsource(IPyNbCell.__init__)
    assert "timeout=self.output_timeout" in inspect.getsource(IPyNbCell.runtest)
    cell = _cell(timed_out=False, alive=True)
    nbval_patches.prepare_cell(cell)
    assert cell.output_timeout == nbval_patches.OUTPUT_TIMEOUT > 5


def test_a_timeout_the_kernel_survived_does_not_fail_the_later_cells():
    from nbval.plugin import IPyNbCell

    unpatched = _cell(timed_out=True, alive=True)
    IPyNbCell.setup(unpatched)  # what nbval does before each cell
    assert [m.name for m in unpatched.markers] == ["xfail"]

    patched = _cell(timed_out=True, alive=True)
    nbval_patches.prepare_cell(patched)
    IPyNbCell.setup(patched)
    assert patched.markers == [] and not patched.parent.timed_out


def test_a_timeout_that_killed_the_kernel_still_marks_the_later_cells():
    from nbval.plugin import IPyNbCell

    cell = _cell(timed_out=True, alive=False)
    nbval_patches.prepare_cell(cell)
    IPyNbCell.setup(cell)
    assert [m.name for m in cell.markers] == ["xfail"]
