"""Tests of dgm.gan against the closed forms derived in book/gans.md."""

import math

import numpy as np
import torch
from scipy import integrate, stats

from dgm.gan import (
    MLPDiscriminator, d_loss, g_loss, mode_coverage, optimal_discriminator, ring_of_gaussians,
)


def test_optimal_discriminator_maximises_pointwise_objective():
    """D* = a / (a + b) maximises a log D + b log(1 - D) on (0, 1): compare with a grid search."""
    grid = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    for a, b in [(0.3, 1.2), (2.0, 0.5), (1.0, 1.0), (1e-3, 4.0)]:
        a_t, b_t = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        d_star = optimal_discriminator(a_t, b_t)
        objective = a * torch.log(grid) + b * torch.log1p(-grid)
        value_star = a * torch.log(d_star) + b * torch.log1p(-d_star)
        assert value_star >= objective.max() - 1e-9
        assert abs(grid[objective.argmax()] - d_star) < 1e-5


def test_d_loss_of_optimal_d_equals_log4_minus_2_jsd():
    """p_data = N(0, 1), p_g = N(1, 1.5^2): d_loss(D*) = -V(G, D*) = log 4 - 2 JSD(p_data || p_g).

    JSD by numerical integration; d_loss by Monte Carlo on 400,000 samples of each (tolerance:
    4 standard errors).
    """
    p, q = stats.norm(0, 1), stats.norm(1, 1.5)

    def jsd_integrand(x):
        m = 0.5 * (p.pdf(x) + q.pdf(x))
        return 0.5 * p.pdf(x) * np.log(p.pdf(x) / m) + 0.5 * q.pdf(x) * np.log(q.pdf(x) / m)

    jsd, _ = integrate.quad(jsd_integrand, -30, 30, limit=200)
    rng = np.random.default_rng(0)
    real, fake = p.rvs(400_000, random_state=rng), q.rvs(400_000, random_state=rng)
    # D* as a logit: log D* / (1 - D*) = log p_data - log p_g
    real_logits = torch.from_numpy(p.logpdf(real) - q.logpdf(real))
    fake_logits = torch.from_numpy(p.logpdf(fake) - q.logpdf(fake))
    loss = d_loss(real_logits, fake_logits).item()
    terms_real = torch.nn.functional.softplus(-real_logits)
    terms_fake = torch.nn.functional.softplus(fake_logits)
    se = math.sqrt(terms_real.var().item() / len(real) + terms_fake.var().item() / len(fake))
    assert abs(loss - (math.log(4) - 2 * jsd)) < 4 * se


def test_d_loss_is_binary_cross_entropy_with_real_label_one():
    """-mean log D(x) - mean log(1 - D(G(z))) with D = sigmoid(logit)."""
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(50, generator=gen) * 3, torch.randn(70, generator=gen) * 3
    direct = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert abs(d_loss(real, fake).item() - direct.item()) < 1e-5


def test_nonsaturating_gradient_is_larger_when_d_rejects_samples():
    """Gradient w.r.t. the logit l: saturating -sigmoid(l), non-saturating -(1 - sigmoid(l)).

    With D(G(z)) near 0 the first vanishes and the second is about -1: their ratio is
    (1 - D) / D = exp(-l), over 50 for every logit below -4.
    """
    logits = torch.tensor([-9.0, -6.0, -4.0], dtype=torch.float64)
    grads = {}
    for ns in (False, True):
        l = logits.clone().requires_grad_(True)
        g_loss(l, nonsaturating=ns).backward()
        grads[ns] = l.grad * len(logits)  # undo the batch mean
    d = torch.sigmoid(logits)
    assert torch.allclose(grads[False], -d) and torch.allclose(grads[True], -(1 - d))
    assert torch.allclose(grads[True] / grads[False], torch.exp(-logits))
    assert (grads[True].abs() > 50 * grads[False].abs()).all()


def test_real_ring_samples_fall_within_3_std_at_rate_1_minus_exp_minus_4_5():
    """For an isotropic 2-D Gaussian, P(|x - mu| < 3 std) = 1 - exp(-9/2); all 8 modes covered.

    Monte Carlo on 200,000 points, tolerance 4 binomial standard errors.
    """
    x = ring_of_gaussians(200_000, k=8, std=0.05, generator=torch.Generator().manual_seed(1))
    modes, frac = mode_coverage(x, k=8, std=0.05)
    expected = 1 - math.exp(-4.5)
    assert modes == 8
    assert abs(frac - expected) < 4 * math.sqrt(expected * (1 - expected) / len(x))


def test_packed_discriminator_judges_consecutive_points_together():
    """PacGAN: with pack m, logit k depends on points k*m .. k*m + m - 1 only."""
    torch.manual_seed(0)
    disc = MLPDiscriminator(hidden=8, pack=4)
    x = torch.randn(12, 2)
    base = disc(x)
    x2 = x.clone()
    x2[5] += 1.0  # a point of the second group
    changed = disc(x2) != base
    assert base.shape == (3,) and changed.tolist() == [False, True, False]
