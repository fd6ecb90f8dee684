"""Checks of dgm.logistic_mixture (PixelCNN++'s discretised logistic mixture) and of the pixel
transformer with that head: exact normalisation, the likelihood against the CDF differences
written out, gradients, sampling and temperature."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from dgm.autoregressive import (LEVELS, PixelTransformer, input_dependence, log_prob,
                                nll_bits_per_dim, pixel_log_prob, sample, to_levels)
from dgm.logistic_mixture import log_prob_levels, sample_levels, split_params
from dgm.unet import NULL_CLASS


def _params(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Random parameters ``(n, 3k)``: means partly outside [-1, 1], log-scales from -6 to 1."""
    g = torch.Generator().manual_seed(seed)
    logit_pi = 2 * torch.randn(n, k, generator=g, dtype=torch.float64)
    mu = 1.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    log_s = -6 + 7 * torch.rand(n, k, generator=g, dtype=torch.float64)
    return torch.cat([logit_pi, mu, log_s], 1)


def _brute_force_log_prob(params: torch.Tensor, level: int) -> float:
    """log P(level) for one pixel's parameters ``(3K,)``, as
    log sum_j pi_j [F(x_k + 1/255) - F(x_k - 1/255)] with F the logistic CDF, the first bin's
    lower edge at -inf and the last bin's upper edge at +inf, in 60-digit arithmetic (mpmath),
    so that the difference of two CDFs close to 1 loses nothing."""
    logit_pi, mu, log_s = (p.tolist() for p in split_params(params[None])[0:3])
    logit_pi, mu, log_s = logit_pi[0], mu[0], log_s[0]
    with mpmath.workdps(60):
        centre = mpmath.mpf(2 * level) / (LEVELS - 1) - 1
        upper = mpmath.inf if level == LEVELS - 1 else centre + mpmath.mpf(1) / (LEVELS - 1)
        lower = -mpmath.inf if level == 0 else centre - mpmath.mpf(1) / (LEVELS - 1)

        def cdf(e, m, ls):
            return 1 / (1 + mpmath.exp(-(e - m) / mpmath.exp(ls)))

        weights = [mpmath.exp(v) for v in logit_pi]
        mass = sum(w * (cdf(upper, m, ls) - cdf(lower, m, ls))
                   for w, m, ls in zip(weights, mu, log_s)) / sum(weights)
        return float(mpmath.log(mass))


def _all_levels(params: torch.Tensor) -> torch.Tensor:
    """log P(k) for every level k, ``(n, 256)``."""
    n = len(params)
    return log_prob_levels(params[:, :, None].expand(n, -1, LEVELS),
                           torch.arange(LEVELS).expand(n, LEVELS))


@pytest.mark.parametrize("k", [1, 5, 10])
def test_the_256_probabilities_sum_to_one(k):
    probs = _all_levels(_params(200, k)).exp()  # (200, 256)
    torch.testing.assert_close(probs.sum(1), torch.ones(200, dtype=torch.float64), rtol=0, atol=1e-12)


def test_log_prob_matches_the_cdf_differences_written_out():
    params = _params(4, 5, seed=1)
    # a pixel of narrow components (scale e^-5), whose bins between them have masses near e^-30,
    # where a float64 difference of two CDFs close to 1 would keep only a few digits
    params[3] = torch.cat([torch.zeros(5), torch.linspace(-0.8, 0.8, 5), torch.full((5,), -5.0)])
    ours = _all_levels(params)
    brute = torch.tensor([[_brute_force_log_prob(p, k) for k in range(LEVELS)] for p in params],
                         dtype=torch.float64)
    assert brute.min() < -25  # far tails are compared too, not only the bulk
    torch.testing.assert_close(ours, brute, rtol=1e-9, atol=1e-9)


def test_log_prob_stays_finite_where_the_plain_difference_rounds_to_zero():
    """A narrow component far from a level: sigma(a) - sigma(b) is 0 in float32, the log is not."""
    params = torch.tensor([[0.0, 0.9, -7.0]])  # one component at 0.9 with scale e^-7
    lp = log_prob_levels(params, torch.tensor([10]))
    assert torch.isfinite(lp).all() and lp.item() < -100


def test_gradient_flows_to_every_parameter_at_edge_and_middle_levels():
    params = _params(3, 4, seed=2).float().requires_grad_()
    levels = torch.tensor([0, 128, 255])
    log_prob_levels(params, levels).sum().backward()
    assert torch.isfinite(params.grad).all()
    logit_pi, mu, log_s = params.grad.chunk(3, 1)
    for name, grad in (("logit_pi", logit_pi), ("mu", mu), ("log_s", log_s)):
        assert (grad.abs().sum(1) > 0).all(), f"no gradient reaches {name}"


def test_gradient_matches_finite_differences():
    params = _params(2, 3, seed=3).requires_grad_()
    levels = torch.tensor([17, 255])
    assert torch.autograd.gradcheck(lambda p: log_prob_levels(p, levels), (params,))


def test_samples_at_temperature_one_follow_the_level_probabilities():
    params = _params(1, 3, seed=4)
    params[0, 6:] = torch.tensor([-2.5, -3.0, -2.0])  # scales wide enough to spread over levels
    n = 200_000
    draws = sample_levels(params.expand(n, -1), 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=LEVELS).double() / n
    p = _all_levels(params)[0].exp()
    assert torch.all((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-4)


def test_temperature_zero_gives_the_rounded_mean_and_small_temperature_narrows():
    params = torch.tensor([[0.0, 0.3, -3.0]]).expand(5000, -1)
    mode = round((0.3 + 1) * (LEVELS - 1) / 2)
    assert torch.all(sample_levels(params, 0.0) == mode)
    spread = {t: sample_levels(params, t, torch.Generator().manual_seed(1)).double().std().item()
              for t in (1.0, 0.5)}
    assert spread[0.5] == pytest.approx(spread[1.0] / 2, rel=0.1)
    with pytest.raises(ValueError, match="temperature"):
        sample_levels(params, -0.5)


def test_parameters_must_come_in_threes():
    with pytest.raises(ValueError, match="3 K"):
        log_prob_levels(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


# -------------------------------------------------------------- the transformer with this head
def _mixture_transformer(h: int, w: int, n_mix: int = 3) -> PixelTransformer:
    torch.manual_seed(0)
    return PixelTransformer((h, w), d_model=16, n_heads=2, n_layers=2, positions="rows_cols",
                            head="logistic_mixture", n_mix=n_mix).double()


def test_mixture_transformer_sums_to_one_over_all_images_of_two_pixels():
    tf = _mixture_transformer(1, 2)
    grid = torch.cartesian_prod(torch.arange(LEVELS), torch.arange(LEVELS)).double() / (LEVELS - 1)
    with torch.no_grad():
        total = log_prob(tf, grid.view(-1, 1, 1, 2)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-9)


def test_mixture_bits_per_dim_is_minus_log2_p_by_brute_force():
    """nll_bits_per_dim = -mean log2 p(x) / D, p(x) the product of the CDF differences of each
    pixel given the pixels before it (the outputs from the prefix, no teacher forcing)."""
    tf = _mixture_transformer(2, 3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, LEVELS, (4, 1, 2, 3), generator=g).double() / (LEVELS - 1)
    y = torch.tensor([0, 3, NULL_CLASS, 9])
    levels = to_levels(x).flatten(1)
    with torch.no_grad():
        outputs = [tf.prefix_logits(levels[:, :i], y) for i in range(6)]  # (B, 3K) each
    log2p = [sum(_brute_force_log_prob(outputs[i][b], levels[b, i].item()) for i in range(6))
             / math.log(2) for b in range(4)]
    assert nll_bits_per_dim(tf, x, y) == pytest.approx(-sum(log2p) / (4 * 6), rel=1e-9)


def test_mixture_transformer_cached_and_uncached_sampling_agree_and_are_causal():
    tf = _mixture_transformer(3, 4)
    y = torch.tensor([2, NULL_CLASS, 7])
    a = sample(tf, 3, y, temperature=0.8, generator=torch.Generator().manual_seed(5), use_cache=True)
    b = sample(tf, 3, y, temperature=0.8, generator=torch.Generator().manual_seed(5), use_cache=False)
    assert torch.equal(a, b)
    dep = input_dependence(tf, a[:1], y[:1])
    assert torch.all(dep.triu() == 0) and dep[1, 0] > 0


def test_mixture_outputs_and_pixel_log_prob_shapes():
    tf = _mixture_transformer(3, 4, n_mix=5)
    x = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    out = tf(x)
    assert out.shape == (2, 15, 3, 4) and tf.out_channels == 15
    assert pixel_log_prob(tf, out, to_levels(x)[:, 0]).shape == (2, 3, 4)


def test_unknown_head_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="softmax, logistic_mixture"):
        PixelTransformer((2, 2), d_model=8, n_heads=2, n_layers=1, head="gaussian")
    with pytest.raises(ValueError, match="n_mix"):
        PixelTransformer((2, 2), d_model=8, n_heads=2, n_layers=1, head="logistic_mixture", n_mix=0)
