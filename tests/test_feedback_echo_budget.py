"""How much a student's code can send back through its feedback: a few bits per echoed number.

Red team round 5 registered an IPython input transformer in a student cell, read the source of
every later cell (the hidden checks' kernel side included) and sent it out through numbers the
feedback echoed at two significant figures (about 11 bits each), and through the run time in
``results.json``. Student code always sees what a check calls it with, as in every grader that
runs code in the student's kernel; what it can send back is bounded instead:

- every number of a verdict's message that the check did not write in its source (or mark with
  ``told``) is told by its sign and decade (``autograder.messages.decade``): default-deny, so a
  check whose author formats a measurement with ``{x:.3f}`` leaks no more than one using ``num``;
- a measurement against a threshold is told as a band of the threshold (``beyond``);
- the run time a student sees is rounded up to whole minutes.
"""

from __future__ import annotations

import math
import random

import pytest

from autograder import messages
from autograder.observe import decode
from autograder.verdict_helpers import beyond, num


def _spread(n: int, seed: int = 0) -> list[float]:
    """Numbers a hostile notebook might return: every sign and size, integers and near-integers."""
    rng = random.Random(seed)
    xs = [rng.choice((-1, 1)) * 10 ** rng.uniform(-300, 300) for _ in range(n)]
    xs += [rng.choice((-1, 1)) * 10 ** rng.uniform(-8, 8) for _ in range(n)]
    xs += [float(rng.randrange(-10**7, 10**7)) for _ in range(n)]
    return xs + [0.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("fmt", ["{:.6g}", "{:.3f}", "{:.0f}", "{:.2e}", "{:g}", "{:.1%}"])
def test_any_number_a_message_echoes_carries_at_most_six_bits(fmt):
    """However a check formats a value the student's code chose, the feedback shows one of at most
    64 texts for it (without its source writing that value)."""
    shown = {messages.verdict_text(f"got {fmt.format(x)} nats", []) for x in _spread(3000)}
    assert len(shown) <= 64, sorted(shown)[:20]
    assert len(shown) > 20  # decades and signs are still told: the student learns where it stands


def test_the_checks_own_numbers_and_small_counts_are_shown_as_they_are():
    keep = messages.literals('BANDS = {"cpu": (0.0, 266.7)}\nx = torch.randn(64, 784)')
    assert messages.verdict_text("expected [0.0, 266.7], got 301.25 on 64 x 784 images, 3 steps", [], keep) == (
        "expected [0, 270], got between 100 and 1000 on 64 x 784 images, 3 steps")  # constants: two figures
    assert messages.verdict_text(f"at most {messages.told('0.19')}, got 0.27", []) == (
        "at most 0.19, got between 0.1 and 1")
    assert messages.verdict_text("got 784 and 17", []) == "got between 100 and 1000 and between 10 and 100"


def test_a_string_the_student_sent_cannot_pass_as_a_constant():
    """The marks of ``told`` are private-use characters; decoding a measurement removes them, so a
    student's string holding them (were a check to echo it) is told like any other text."""
    forged = f"{messages.TOLD_OPEN}123.456789{messages.TOLD_CLOSE}"
    got = decode([{"values": {"__dict__": {forged: forged}}}])
    assert got == {"123.456789": "123.456789"}
    assert messages.verdict_text(f"got {got['123.456789']}", []) == "got between 100 and 1000"


@pytest.mark.parametrize("x, lo, hi, told", [
    (3.4167, 2.0, 3.4, "less than 1% above 3.4"), (3.61, 2.0, 3.4, "1% to 10% above 3.4"),
    (1.23456, 2.0, 3.4, "10% to 100% below 2"), (2.5, 2.0, 3.4, "within the bounds"),
    (0.53, None, 0.5, "1% to 10% above 0.5"), (0.05, 0.0, None, "within the bounds"),
    (-0.5, 0.0, None, "0.01 to 1 below 0"), (math.nan, 0.0, 1.0, "not a finite number"),
])
def test_beyond_tells_where_a_measurement_is_against_the_bounds_never_its_digits(x, lo, hi, told):
    text = messages.verdict_text(f"got {beyond(x, lo, hi)}", [])
    assert text == f"got {told}"
    assert f"{x:.3f}" not in text and f"{x:.2f}" not in text


def test_num_and_the_feedback_agree_and_are_fixed_points():
    for x in _spread(500, seed=1):
        text = f"got {num(x)}"
        assert messages.verdict_text(text, []) == text


@pytest.mark.parametrize("seconds, shown", [(0.0, 60), (12.3, 60), (60.0, 60), (60.01, 120), (2699.0, 2700)])
def test_the_run_time_a_student_sees_is_whole_minutes(seconds, shown):
    assert messages.coarse_seconds(seconds) == shown
    assert len({messages.coarse_seconds(s / 10) for s in range(0, 36000)}) == 60  # an hour: 60 texts
