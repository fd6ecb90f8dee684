"""What the feedback says about a wrong answer gives away no reference value and no precise number.

A hidden check's verdict on a wrong answer says how far off it is (the band of its relative or
absolute error on a fixed four-step ladder, and its direction: ``autograder.verdict_helpers.off``;
tests/test_verdict_error_bands.py), never the
reference value for the check's inputs; any number the student's code returned comes back as its
sign and decade (``autograder.messages.decade``, which ``verdict_text`` applies to every number
of a verdict message that the check did not write in its source or mark with ``told``). Wrong toy submissions are graded and their feedback scanned; the forgery
tests scan theirs (tests/test_forgery.py) with the same scanner.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest

from autograder import grade, messages
from edited_submissions import feedback_texts, numbers_near, precise_numbers

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import SOURCE  # noqa: E402

WRONG = ("mistake_kl", "mistake_alpha_bar", "mistake_train")
#: The toy checks' reference values on their hidden inputs (tests/fixtures/grading/source/toy.ipynb).
KL_REFERENCE = [0.5 * (m**2 + math.exp(v) - v - 1.0) for m, v in [(0.5, -1.0), (-1.2, 0.7), (2.0, 0.0)]]
ALPHA_BAR_REFERENCE = [0.9, 0.72, 0.504, 0.4788]


@pytest.fixture(scope="module")
def graded_wrong(tmp_path_factory):
    folder, out = tmp_path_factory.mktemp("wrong"), tmp_path_factory.mktemp("wrong-out")
    for name in WRONG:
        shutil.copy(FIXTURES / "students" / f"{name}.ipynb", folder / f"{name}.ipynb")
    code = grade.main(["--assignment", "toy", "--source", str(SOURCE), str(folder), "--out", str(out),
                       "--device", "cpu", "--profile", "smoke", "--timeout", "60", "--no-progress"])
    assert code == 0
    return feedback_texts(out)


def test_the_scanner_finds_what_it_looks_for():
    assert precise_numbers("expected recon = 1104.243 nats per image, got 1105.243") == ["1104.243", "1105.243"]
    assert precise_numbers("got 0.0123 and 3.14e-05") == ["0.0123", "3.14e-05"]
    assert not precise_numbers("off by 0.091% (too high), shape (3, 784), 1.0e-07, -5, 0.5, 1100, 12")
    assert numbers_near("expected 0.31, got -0.31", [0.3093]) == ["0.31"]


def test_a_verdict_message_tells_free_numbers_by_their_decade_and_its_own_constants_as_they_are():
    keep = messages.literals("x = torch.randn(3, 784)\nassert err < 1e-05 and loss <= 266.7")
    text = messages.verdict_text("expected 1104.243, got 1105.243 (error 1e-05), shape (3, 784), p = 0.012345, "
                                 f"limit 266.7, band {messages.told('0.0625')}, 12 steps", [], keep)
    assert text == ("expected between 1000 and 10000, got between 1000 and 10000 (error 1.0e-05), shape (3, 784), "
                    "p = between 0.01 and 0.1, limit 270, band 0.062, 12 steps")  # constants: two figures
    assert not precise_numbers(text)
    assert messages.verdict_text("shape (3, 784)", []) == "shape (3, between 100 and 1000)"  # not written: told by decade


def test_wrong_answers_are_told_how_far_off_they_are_not_the_reference(graded_wrong):
    told = {k.split("/")[0]: v for k, v in graded_wrong.items() if v}
    assert set(told) == set(WRONG), told  # each lost points and was told why
    assert "off by 100% or more of the expected value (too low)" in told["mistake_kl"]  # the sign flipped
    assert "alpha_bar is off by" in told["mistake_alpha_bar"]
    reference = {"kl": KL_REFERENCE, "alpha_bar": ALPHA_BAR_REFERENCE}
    for where, text in graded_wrong.items():
        assert not precise_numbers(text), (where, text)
        assert not numbers_near(text, reference.get(where.split("/")[1], [])), (where, text)
