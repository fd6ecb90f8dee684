"""dgm.selfcheck (the notebooks' visible checks) and the verdicts' shared helpers say what went wrong."""

from __future__ import annotations

import math

import pytest
import torch

from autograder.verdict_helpers import scalar, shape_of
from dgm.selfcheck import expect, expect_close


def test_expect_close_passes_within_tolerance_and_names_the_error(capsys):
    expect_close("sum", torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7], 1e-6)
    assert "ok: sum" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"sum: expected 3, got 3.5 \(max error 0.5 > tolerance 0.1\). hint"):
        expect_close("sum", 3.5, 3.0, 0.1, "hint")


def test_expect_close_rejects_nan_and_a_wrong_shape():
    with pytest.raises(AssertionError, match="max error nan"):
        expect_close("x", math.nan, 0.0, 1.0)
    with pytest.raises(AssertionError, match=r"expected shape \(2,\), got \(3,\)"):
        expect_close("x", torch.zeros(3), torch.zeros(2), 1.0)


def test_expect_raises_its_message():
    expect(True, "never")
    with pytest.raises(AssertionError, match="^why$"):
        expect(False, "why")


def test_scalar_and_shape_of():
    assert scalar(torch.tensor(2.5)) == 2.5 and scalar(torch.tensor([3])) == 3.0 and scalar(4) == 4.0
    assert scalar(torch.zeros(2)) is None and scalar(True) is None and scalar("1") is None
    assert shape_of(torch.zeros(2, 3)) == (2, 3) and shape_of([1]) == "a list"
