"""The Gaussian KL formulas of dgm/probability.py, against SymPy integrals and Monte Carlo.

The chapter book/probability.md derives them; these tests check the code, not the algebra.
"""

import math

import pytest
import sympy as sp
import torch

from dgm.probability import (
    kl_diag_gaussians,
    kl_monte_carlo,
    kl_mvn,
    kl_normal,
    kl_std_normal,
    normal_log_prob,
)

CASES = [(0.0, 1.0, 0.0, 1.0), (0.5, 0.6, -0.3, 1.7), (2.0, 0.1, -1.0, 3.0), (-1.2, 4.0, 0.3, 0.25)]


def _sympy_kl(mu_q, s2_q, mu_p, s2_p) -> float:
    """KL(q || p) by symbolic integration of eq. (kl-def) with exact rational parameters."""
    x = sp.symbols("x", real=True)
    mu_q, s2_q, mu_p, s2_p = map(sp.nsimplify, (mu_q, s2_q, mu_p, s2_p))
    logq = -sp.log(2 * sp.pi * s2_q) / 2 - (x - mu_q) ** 2 / (2 * s2_q)
    logp = -sp.log(2 * sp.pi * s2_p) / 2 - (x - mu_p) ** 2 / (2 * s2_p)
    q = sp.exp(logq)
    return float(sp.integrate(sp.expand(q * (logq - logp)), (x, -sp.oo, sp.oo)))


@pytest.mark.parametrize("params", CASES)
def test_univariate_kl_matches_the_sympy_integral(params):
    assert kl_normal(*params).item() == pytest.approx(_sympy_kl(*params), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("params", CASES[1:])
def test_univariate_kl_matches_monte_carlo_within_four_standard_errors(params):
    gen = torch.Generator().manual_seed(0)
    estimate, stderr = kl_monte_carlo(*params, n=200_000, generator=gen)
    assert abs(estimate - kl_normal(*params).item()) < 4 * stderr


def test_kl_is_zero_for_identical_gaussians_and_positive_otherwise():
    assert kl_normal(0.3, 2.0, 0.3, 2.0).item() == pytest.approx(0.0, abs=1e-12)
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(1000, 2, generator=gen, dtype=torch.float64)
    s2 = torch.rand(1000, 2, generator=gen, dtype=torch.float64) + 0.05
    assert (kl_normal(mu[:, 0], s2[:, 0], mu[:, 1], s2[:, 1]) >= 0).all()


def test_kl_is_not_symmetric():
    assert kl_normal(0.0, 1.0, 1.0, 4.0).item() != pytest.approx(kl_normal(1.0, 4.0, 0.0, 1.0).item(), rel=1e-3)


def test_diagonal_kl_is_the_sum_of_univariate_terms():
    gen = torch.Generator().manual_seed(2)
    mu_q, mu_p, lv_q, lv_p = torch.randn(4, 7, 6, generator=gen, dtype=torch.float64)
    expected = kl_normal(mu_q, lv_q.exp(), mu_p, lv_p.exp()).sum(-1)
    assert torch.allclose(kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p), expected, atol=1e-12)


def test_std_normal_kl_is_the_diagonal_kl_against_zero_mean_unit_variance():
    gen = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(2, 16, 20, generator=gen, dtype=torch.float64)
    zeros = torch.zeros_like(mu)
    assert torch.allclose(kl_std_normal(mu, logvar), kl_diag_gaussians(mu, logvar, zeros, zeros), atol=1e-12)


def test_std_normal_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(2, 8, 5, generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(kl_std_normal(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-12)


def _random_spd(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)


def test_general_kl_matches_torch_multivariate_normal():
    gen = torch.Generator().manual_seed(5)
    for d in (1, 2, 5):
        mu_q, mu_p = torch.randn(2, d, generator=gen, dtype=torch.float64)
        cov_q, cov_p = _random_spd(d, gen), _random_spd(d, gen)
        q = torch.distributions.MultivariateNormal(mu_q, cov_q)
        p = torch.distributions.MultivariateNormal(mu_p, cov_p)
        assert kl_mvn(mu_q, cov_q, mu_p, cov_p).item() == pytest.approx(
            torch.distributions.kl_divergence(q, p).item(), rel=1e-9)


def test_general_kl_matches_monte_carlo_in_three_dimensions():
    gen = torch.Generator().manual_seed(6)
    mu_q, mu_p = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    cov_q, cov_p = _random_spd(3, gen), _random_spd(3, gen)
    q = torch.distributions.MultivariateNormal(mu_q, cov_q)
    p = torch.distributions.MultivariateNormal(mu_p, cov_p)
    torch.manual_seed(6)
    x = q.sample((200_000,))
    log_ratio = q.log_prob(x) - p.log_prob(x)
    stderr = log_ratio.std().item() / math.sqrt(len(x))
    assert abs(log_ratio.mean().item() - kl_mvn(mu_q, cov_q, mu_p, cov_p).item()) < 4 * stderr


def test_general_kl_with_diagonal_covariances_equals_diagonal_kl():
    gen = torch.Generator().manual_seed(7)
    mu_q, mu_p, lv_q, lv_p = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    general = kl_mvn(mu_q, torch.diag(lv_q.exp()), mu_p, torch.diag(lv_p.exp()))
    assert general.item() == pytest.approx(kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p).item(), rel=1e-10)


def test_general_kl_is_batched_over_leading_dimensions():
    gen = torch.Generator().manual_seed(8)
    mu_q, mu_p = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    cov_q = torch.stack([_random_spd(3, gen) for _ in range(4)])
    cov_p = torch.stack([_random_spd(3, gen) for _ in range(4)])
    batched = kl_mvn(mu_q, cov_q, mu_p, cov_p)
    one_by_one = torch.stack([kl_mvn(mu_q[i], cov_q[i], mu_p[i], cov_p[i]) for i in range(4)])
    assert batched.shape == (4,) and torch.allclose(batched, one_by_one)


def test_normal_log_prob_matches_torch_distributions():
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)
    expected = torch.distributions.Normal(0.4, math.sqrt(2.5)).log_prob(x)
    assert torch.allclose(normal_log_prob(x, torch.tensor(0.4, dtype=torch.float64),
                                          torch.tensor(2.5, dtype=torch.float64)), expected)


def test_elbo_plus_posterior_kl_equals_log_evidence_in_the_linear_gaussian_model():
    """Eq. (prob-elbo-decomposition), numerically, with the package's KL functions."""
    x, s2 = 1.3, 0.7
    for m, v in [(0.0, 1.0), (0.5, 0.2), (x / (1 + s2), s2 / (1 + s2))]:
        expected_loglik = -0.5 * math.log(2 * math.pi * s2) - ((x - m) ** 2 + v) / (2 * s2)
        elbo = expected_loglik - kl_normal(m, v, 0.0, 1.0).item()
        gap = kl_normal(m, v, x / (1 + s2), s2 / (1 + s2)).item()
        log_evidence = normal_log_prob(torch.tensor(x), torch.tensor(0.0), torch.tensor(1 + s2)).item()
        assert elbo + gap == pytest.approx(log_evidence, abs=1e-6)
