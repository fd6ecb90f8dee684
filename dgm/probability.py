"""Closed-form divergences between Gaussians, from the probability toolkit chapter.

Every function here is derived in ``book/probability.md`` (equation labels in the docstrings)
and tested against SymPy and Monte Carlo in ``tests/test_probability.py``. Variances are passed
as variances (``sigma2``) or log-variances (``logvar``), never as standard deviations, so that the
name says what the number is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kl_normal(mu_q: Tensor, sigma2_q: Tensor, mu_p: Tensor, sigma2_p: Tensor) -> Tensor:
    """KL(N(mu_q, sigma2_q) || N(mu_p, sigma2_p)) for univariate Gaussians, elementwise.

    Eq. {eq}`kl-univariate`: 1/2 [log(sigma2_p / sigma2_q) + (sigma2_q + (mu_q - mu_p)^2) / sigma2_p - 1].
    """
    mu_q, sigma2_q, mu_p, sigma2_p = map(torch.as_tensor, (mu_q, sigma2_q, mu_p, sigma2_p))
    return 0.5 * (torch.log(sigma2_p / sigma2_q) + (sigma2_q + (mu_q - mu_p) ** 2) / sigma2_p - 1)


def kl_diag_gaussians(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL between diagonal Gaussians, summed over the last dimension: shape ``(...,)``.

    Eq. {eq}`kl-diagonal`: the sum of the univariate terms, written with log-variances.
    """
    term = logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1
    return 0.5 * term.sum(dim=-1)


def kl_std_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) summed over the last dimension: the VAE's prior term.

    Eq. {eq}`kl-std-normal`: 1/2 sum_j (mu_j^2 + sigma2_j - log sigma2_j - 1).
    """
    return 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1).sum(dim=-1)


def kl_mvn(mu_q: Tensor, cov_q: Tensor, mu_p: Tensor, cov_p: Tensor) -> Tensor:
    """KL(N(mu_q, cov_q) || N(mu_p, cov_p)) for full d x d covariances (batched over leading dims).

    Eq. {eq}`kl-mvn`: 1/2 [tr(cov_p^-1 cov_q) + (mu_p - mu_q)^T cov_p^-1 (mu_p - mu_q) - d
    + log det cov_p - log det cov_q]. Uses Cholesky factors, so both covariances must be
    symmetric positive definite.
    """
    d = mu_q.shape[-1]
    chol_p = torch.linalg.cholesky(cov_p)
    chol_q = torch.linalg.cholesky(cov_q)
    diff = (mu_p - mu_q).unsqueeze(-1)
    solved_cov = torch.cholesky_solve(cov_q, chol_p)
    solved_mu = torch.cholesky_solve(diff, chol_p)
    trace = torch.diagonal(solved_cov, dim1=-2, dim2=-1).sum(-1)
    maha = (diff * solved_mu).sum((-2, -1))
    logdet_p = 2 * torch.log(torch.diagonal(chol_p, dim1=-2, dim2=-1)).sum(-1)
    logdet_q = 2 * torch.log(torch.diagonal(chol_q, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + maha - d + logdet_p - logdet_q)


def normal_log_prob(x: Tensor, mu: Tensor, sigma2: Tensor) -> Tensor:
    """log N(x; mu, sigma2), elementwise: -1/2 [log(2 pi sigma2) + (x - mu)^2 / sigma2]."""
    x, mu, sigma2 = map(torch.as_tensor, (x, mu, sigma2))
    return -0.5 * (torch.log(2 * math.pi * sigma2) + (x - mu) ** 2 / sigma2)


def kl_monte_carlo(
    mu_q: float, sigma2_q: float, mu_p: float, sigma2_p: float, n: int, generator: torch.Generator
) -> tuple[float, float]:
    """Monte Carlo estimate of the univariate KL and its standard error, with n samples of q.

    KL(q || p) = E_q[log q(x) - log p(x)]; the standard error is the sample standard deviation
    of the log-ratio over sqrt(n).
    """
    x = mu_q + math.sqrt(sigma2_q) * torch.randn(n, generator=generator, dtype=torch.float64)
    log_ratio = normal_log_prob(x, torch.tensor(mu_q, dtype=torch.float64), torch.tensor(sigma2_q, dtype=torch.float64)) \
        - normal_log_prob(x, torch.tensor(mu_p, dtype=torch.float64), torch.tensor(sigma2_p, dtype=torch.float64))
    return log_ratio.mean().item(), (log_ratio.std() / math.sqrt(n)).item()
