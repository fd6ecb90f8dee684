"""A failing numeric check tells the error's band, not its digits (autograder/verdict_helpers.py).

Red team round 4 (H2): a notebook that scales its wrong answer by a factor built from a hidden input
read about 6.5 bits per failing check back out of "off by 37% (too high)". The message now names
one of four bands of the error and its direction, so whatever the student's code returns, one
``off`` message for a scalar is one of a few fixed sentences. H3: a huge value made the message
read "off by a positive number larger than a positive number larger than 1.0e+12 in size in size%";
every message below is checked to read as one sentence once the feedback writes it
(:func:`autograder.messages.verdict_text`).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from autograder.messages import decade, figures, verdict_text
from autograder.verdict_helpers import RELATIVE_BANDS, error_band, off

WANT = 0.731  # a reference value; any positive one gives the same messages


def _shown(got, want=WANT, what="the loss") -> str:
    return verdict_text(off(got, want, what), [])


@pytest.mark.parametrize("low, high", [(0.0, 0.01), (0.01, 0.1), (0.1, 1.0), (1.0, 1e6)])
def test_every_error_within_one_band_gives_the_same_message(low, high):
    """2,000 wrong answers spread over one band, each side of the reference: two messages."""
    shown = set()
    for sign in (1, -1):
        for k in range(1, 1001):
            rel = low + (high - low) * k / 1001
            shown.add(_shown(WANT * (1 + sign * rel)))
    assert len(shown) == 2, shown
    assert all(m.endswith(("(too high)", "(too low)")) for m in shown)


def test_off_has_few_messages_for_a_scalar_whatever_the_student_returns():
    """Scalars from -1e300 to 1e300 (and nan, infinities): at most 16 distinct messages, i.e. at
    most 4 bits, whatever the hidden reference is."""
    gots = [s * 10.0 ** e * m for s in (1, -1) for e in range(-300, 301, 7)
            for m in (1.0, 1.3, 2.71, 7.9)] + [0.0, math.nan, math.inf, -math.inf]
    for want in (WANT, -3.2e5, 0.0, 1e-20):
        shown = {_shown(g, want) for g in gots}
        assert len(shown) <= 16, (want, sorted(shown))
        numbers = {n for m in shown for n in re.findall(r"[-+.\de]*\d", m)}
        assert numbers <= {"1", "10", "100", "0.01"}, numbers  # the ladder's, never the student's


def test_the_bands_tell_an_honest_student_how_far_off_and_which_way():
    assert _shown(WANT * 1.004) == "the loss is off by less than 1% of the expected value (too high)"
    assert _shown(WANT * 0.95) == "the loss is off by 1% to 10% of the expected value (too low)"
    assert _shown(WANT * 1.5) == "the loss is off by 10% to 100% of the expected value (too high)"
    assert _shown(-WANT) == "the loss is off by 100% or more of the expected value (too low)"  # sign
    assert _shown(0.5, 0.0) == "the loss is off by 0.01 to 1 (too high)"  # a reference of 0
    assert _shown(WANT) == "the loss is exactly the expected value"
    assert [words for _, words in RELATIVE_BANDS] == [error_band(e, 1.0) for e in (0.001, 0.05, 0.5, 5)]


def test_a_tensor_error_is_told_by_its_band_and_its_average_direction():
    want = torch.linspace(-1.0, 2.0, 12).view(3, 4)
    shown = {_shown(want + 0.03 + 0.1 * torch.rand(3, 4, generator=torch.Generator().manual_seed(s)), want)
             for s in range(50)}
    assert shown == {"the loss is off by 1% to 10% of the largest expected entry at worst "
                     "(too high on average)"}


@pytest.mark.parametrize("got, want", [
    (1e300, WANT), (-1e300, WANT), (1e-300, WANT), (math.nan, WANT), (math.inf, WANT), (-math.inf, WANT),
    (1e300, 0.0), (1e-300, 0.0), (1e300, 1e-300), (WANT, 1e300),
    (torch.full((64, 64), 1e300, dtype=torch.float64), torch.ones(64, 64)),
    (torch.full((64, 64), -1e-300, dtype=torch.float64), torch.zeros(64, 64)),
    (torch.full((3,), math.nan), torch.ones(3)), (torch.ones(2, 3), torch.ones(3, 2)),
])
def test_extreme_values_give_one_plain_sentence(got, want):
    text = _shown(got, want)
    assert text.startswith("the loss ") and text.count("the loss") == 1, text
    assert "number larger than" not in text and "number smaller than" not in text, text
    assert "%%" not in text and "in size" not in text and not re.search(r"\de[-+]?\d", text), text
    assert verdict_text(text, []) == text  # writing the numbers again changes nothing


@pytest.mark.parametrize("x", [1e12, 1.04e12, 2.2e13, -1e300, 1e-12, 3e-13, -1e-300, 0.5, 1105.2, 1e6,
                               -1e-6, 10.0, 0.1, 17, 99999.0])
def test_the_feedback_writes_an_echoed_number_once_and_for_all(x):
    """verdict_text tells every free number of a message by its decade: decade's own words (their
    numbers are powers of ten) must come through it unchanged, never nested; a number written in
    figures comes back as text that writing again leaves as it is."""
    text = f"got {decade(x)} for the loss"
    assert verdict_text(text, []) == text
    assert text.count("number") <= 1
    once = verdict_text(f"got {figures(x)} for the loss", [])
    assert verdict_text(once, []) == once
