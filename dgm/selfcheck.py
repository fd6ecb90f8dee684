"""The homework's visible self-checks: compare a result with what it should be, and say why not.

Every homework notebook imports these two functions in its first code cell; the self-check cell
under each exercise calls them. They hold no answer to any exercise, so a grading kernel may
import this module (see ``autograder.sandbox.KERNEL_MODULES``).

``expect_close(what, found, expected, tol, hint)``  raises AssertionError naming both values,
                                                     the largest error and ``hint``; prints "ok".
``expect(condition, message)``                      raises AssertionError(message) unless it holds.
"""

from __future__ import annotations

import torch


def _show(t: torch.Tensor) -> str:
    return f"{t.item():.4g}" if t.numel() == 1 else f"{t.flatten()[:4].tolist()}..."


def expect_close(what, found, expected, tol, hint=""):
    """Compare a result with its expected value; say both, the error and a likely cause."""
    found_t = torch.as_tensor(found).detach().double().cpu()
    expected_t = torch.as_tensor(expected).detach().double().cpu()
    if found_t.shape != expected_t.shape:
        raise AssertionError(f"{what}: expected shape {tuple(expected_t.shape)}, "
                             f"got {tuple(found_t.shape)}. {hint}")
    err = (found_t - expected_t).abs().max().item() if found_t.numel() else 0.0
    if not err <= tol:  # also catches NaN
        raise AssertionError(f"{what}: expected {_show(expected_t)}, got {_show(found_t)} "
                             f"(max error {err:.3g} > tolerance {tol:g}). {hint}")
    print(f"ok: {what} (max error {err:.1e} <= {tol:g})")


def expect(condition, message):
    """Raise AssertionError with a helpful message unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)
