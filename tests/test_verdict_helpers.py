"""The training checks' shared verdict helpers (autograder/verdict_helpers.py) accept what an honest kernel
sends and refuse what a loop that trains nothing, or a patched torch, sends."""

from __future__ import annotations

import math

import pytest
import torch

from autograder.verdict_helpers import contrastive_upstream_ok, judge_standin_loop, torch_intact

TARGETS = torch.linspace(-2.0, 2.0, 16)
STEPS, LR = 16, 5e-2


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(16))


def _objective(model):
    return ((model.b - TARGETS) ** 2).mean()


def _judge(weights):
    judge_standin_loop(weights, _Tiny, _objective, steps=STEPS, lr=LR, share=0.5, told="did not train",
                       swapped_for="the loss", setting="16 steps")


def _adam(steps: int, lr: float = LR) -> torch.Tensor:
    model = _Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        _objective(model).backward()
        opt.step()
    return model.b.detach().clone()


def test_the_weights_of_the_same_adam_steps_pass():
    _judge(_adam(STEPS))


@pytest.mark.parametrize("weights, words", [
    (torch.zeros(16), "from 1.511 to 1.511"),  # an idle loop: the tiny model keeps its initial weights
    (TARGETS.clone(), "largest parameter 2.00"),  # the optimum, out of reach of 16 steps of lr 0.05: loaded
    (_adam(3), "from 1.511 to"),  # three steps where sixteen were asked for
    (torch.zeros(4), "16 parameters back"),
    (torch.full((16,), float("nan")), "finite"),
    ("TypeError", "it raised an exception"),  # what autograder.observe.shown_exception records: type not told
    ("NotImplementedError", "it raised NotImplementedError"),  # the exercise is not done
    ("TypeError: tiny_images", "it raised an exception"),  # any other text is not echoed
])
def test_weights_no_honest_loop_leaves_are_refused_with_a_message(weights, words):
    with pytest.raises(AssertionError, match="did not train") as err:
        _judge(weights)
    assert words in str(err.value) and "tiny_images" not in str(err.value), str(err.value)


def test_the_replayed_adam_steps_reach_the_documented_loss():
    """The checks' comments say 16 Adam steps at lr 0.05 take this objective from 1.511 to 0.393; the first value
    is the mean square of linspace(-2, 2, 16) = (4/3) * 17/15."""
    assert abs(_objective(_Tiny()).item() - 4 / 3 * 17 / 15) < 1e-6
    assert round(((_adam(STEPS) - TARGETS) ** 2).mean().item(), 3) == 0.393


def test_torch_intact_compares_lists_of_tensors():
    want = [torch.arange(3.0), torch.eye(2)]
    assert torch_intact([t.clone() for t in want], want, 1e-6)
    assert not torch_intact([want[0] + 1e-3, want[1]], want, 1e-6)
    assert not torch_intact(want[:1], want, 1e-6)
    assert not torch_intact("RuntimeError: patched", want, 1e-6)
    assert not torch_intact([want[0], torch.eye(3)], want, 1e-6)


def test_contrastive_upstream_is_right_only_for_nt_xent():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)

    def loop_nt_xent(z1, z2, tau):  # eq. (contrastive-ntxent) term by term
        z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
        n2 = len(z)
        total = 0.0
        for i in range(n2):
            den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
            total -= float(z[i] @ z[(i + n2 // 2) % n2]) / tau - math.log(den)
        return total / n2

    e = torch.eye(4, 6)
    assert contrastive_upstream_ok([loop_nt_xent(e, e, 0.5), loop_nt_xent(a, b, 0.5)], a, b)
    with_self = math.log(math.exp(2) + 6 + math.exp(2)) - 2  # k = i left in the denominator
    assert not contrastive_upstream_ok([with_self, loop_nt_xent(a, b, 0.5)], a, b)
    assert not contrastive_upstream_ok("nt_xent raised TypeError", a, b)


def test_echoed_numbers_and_shapes_carry_few_bits_whatever_the_student_returns():
    """Red team round 3: exponents (1e-200) and the sizes of empty tensors were echoed exactly."""
    from autograder.messages import figures
    from autograder.verdict_helpers import shape_of

    assert figures(-1.2e-200) == figures(-3.3e-13) == "a negative number smaller than 1.0e-12 in size"
    assert figures(4.1e200) == figures(2.2e13) == "a positive number larger than 1.0e+12 in size"
    assert figures(-3.2e-7) == "-3.2e-07" and figures(2.2e6) == "2.2e+06"
    assert figures(1105.243) == "1100" and figures(0.012345) == "0.012"
    assert shape_of(torch.zeros(0, 65537, 3)) == "an empty tensor with 3 dimensions"
    assert shape_of(torch.zeros(4096, 4097, 2)) == "a tensor with 3 dimensions"  # over 2**24 elements
    assert shape_of(torch.zeros(100, 1, 28, 28)) == (100, 1, 28, 28)
