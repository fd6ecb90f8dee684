"""Hidden checks judged outside the kernel: the sections, the measurement format, the verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autograder.checks import CheckFormatError, run_verdict, split_check
from autograder.observe import KERNEL_MAX_BYTES, ObservationError, decode, encode, observe

CHECK = """\
# Hidden check: doubling on fixed inputs.
import torch
from autograder.observe import observe
x = torch.arange(4.0)
# --- student ---
obs = observe(y=double(x))
# --- verdict ---
assert torch.equal(obs["y"], 2 * x), f"expected {(2 * x).tolist()}, got {obs['y'].tolist()}"
"""


def test_sections_split_at_the_markers_and_the_kernel_never_gets_the_verdict():
    parts = split_check(CHECK)
    assert "x = torch.arange(4.0)" in parts.setup
    assert "double(x)" in parts.student and "double(" not in parts.setup + parts.verdict
    assert "assert" not in parts.kernel_source and "2 * x" not in parts.kernel_source
    assert parts.kernel_source.startswith("from autograder.observe import forget_source, observe\nforget_source()\n")


@pytest.mark.parametrize("source, reason", [
    ("x = 1\nobserve(x=x)", "found: none"),
    ("# --- verdict ---\n1\n# --- student ---\nobserve(a=1)", "found: verdict, student"),
    ("# --- student ---\nx = 1\n# --- verdict ---\nassert x", "sends nothing"),
    ("# --- student ---\nobserve(a=1)\n# --- verdict ---\n", "verdict section is empty"),
])
def test_malformed_checks_are_rejected_with_a_reason(source, reason):
    with pytest.raises(CheckFormatError, match=reason):
        split_check(source)


def _payload(**values):
    return [encode(values)]


def test_measurements_round_trip_with_dtype_shape_and_special_floats():
    values = {"t": torch.tensor([[1.5, -2.0]], dtype=torch.float32), "i": torch.arange(3),
              "b": torch.tensor([True, False]), "n": np.eye(2), "f": float("nan"),
              "inf": -math.inf, "big": 2**70, "nested": {"shape": (3, 4), "none": None},
              "half": torch.ones(2, dtype=torch.float16)}
    got = decode(_payload(**values))
    assert got["t"].dtype == torch.float32 and torch.equal(got["t"], values["t"])
    assert got["i"].dtype == torch.int64 and got["b"].dtype == torch.bool
    assert isinstance(got["n"], np.ndarray) and np.array_equal(got["n"], np.eye(2))
    assert math.isnan(got["f"]) and got["inf"] == -math.inf and got["big"] == 2**70
    assert got["nested"] == {"shape": [3, 4], "none": None}
    assert got["half"].dtype == torch.float32


def test_later_measurements_of_a_cell_win():
    assert decode([encode({"a": 1, "b": 2}), encode({"a": 3})]) == {"a": 3, "b": 2}


@pytest.mark.parametrize("payload", [
    [{"values": {"__array__": "torch", "dtype": "float32", "shape": [3], "data": "AAAA"}}],
    [{"values": {"__array__": "torch", "dtype": "object", "shape": [1], "data": ""}}],
    [{"values": {"__float__": "1e999"}}],
    [{"values": {"__dict__": {"x": {"__array__": "pickle", "dtype": "float32", "shape": [0],
                                    "data": ""}}}}],
    ["not a dict"],
    [{"values": {"unexpected": "object"}}],
])
def test_malformed_measurements_are_rejected(payload):
    with pytest.raises(ObservationError):
        decode(payload)


def test_oversized_measurements_are_refused_in_the_kernel():
    with pytest.raises(ObservationError, match="larger than"):
        encode({"x": np.zeros(KERNEL_MAX_BYTES // 8 + 1)})


def test_observe_outside_a_kernel_returns_what_it_was_given():
    assert observe(a=1, b=[2]) == {"a": 1, "b": [2]}


def test_a_right_measurement_passes_and_a_wrong_one_fails_with_the_message():
    parts = split_check(CHECK)
    assert run_verdict(parts, _payload(y=torch.arange(4.0) * 2)).status == "passed"
    wrong = run_verdict(parts, _payload(y=torch.arange(4.0) * 3))
    assert wrong.status == "failed" and "expected [0.0, 2.0, 4.0, 6.0]" in wrong.message


def test_missing_or_unusable_measurements_earn_nothing():
    parts = split_check(CHECK)
    assert run_verdict(parts, []).status == "error"
    missing = run_verdict(parts, _payload(z=1))
    assert missing.status == "error" and "'y' did not reach the grader" in missing.message
    assert run_verdict(parts, _payload(y="a string")).status == "error"


def test_the_verdict_uses_the_graders_own_setup_not_the_kernels():
    """A kernel that patched torch.arange sent values for other inputs: they fail here."""
    parts = split_check(CHECK)
    assert run_verdict(parts, _payload(y=torch.zeros(4))).status == "failed"


def test_partial_credit_from_a_verdict():
    parts = split_check("import math\nfrom autograder.observe import observe, partial\n"
                        "# --- student ---\nobs = observe(k=2)\n# --- verdict ---\n"
                        "partial(obs['k'] / 4, 'two of four')\n")
    verdict = run_verdict(parts, _payload(k=2))
    assert (verdict.status, verdict.fraction, verdict.message) == ("passed", 0.5, "two of four")


def test_a_verdict_that_never_ends_costs_its_check_only():
    parts = split_check("from autograder.observe import observe\n# --- student ---\n"
                        "obs = observe(n=1)\n# --- verdict ---\nwhile obs['n']:\n    pass\n")
    slow = run_verdict(parts, _payload(n=1), timeout=0.5)
    assert slow.status == "error" and "took longer" in slow.message
    fast = run_verdict(split_check(CHECK), _payload(y=torch.arange(4.0) * 2), timeout=5)
    assert fast.status == "passed"  # the next check is judged as usual
