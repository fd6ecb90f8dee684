"""The discretised logistic mixture, an ordinal output for 8-bit pixels (PixelCNN++,
{cite}`salimans2017pixelcnnpp`, arXiv:1701.05517), an option of ``dgm.autoregressive``.

Instead of 256 free logits per pixel, a network outputs ``3 K`` numbers: mixture logits
``logit_pi``, means ``mu`` and log-scales ``log_s`` of K logistic distributions on the scale
[-1, 1] where level k sits at ``x_k = 2 k / 255 - 1``. Level k gets the mass of the mixture on its
bin of half-width 1 / 255; the first bin reaches down to -inf and the last up to +inf, so the
256 probabilities sum to one exactly:

    P(k) = sum_j pi_j [sigma((x_k + 1/255 - mu_j) / s_j) - sigma((x_k - 1/255 - mu_j) / s_j)],

with sigma(-inf) = 0 for k = 255 and sigma(+inf) = 1 for k = 0. Neighbouring levels share
parameters, so the model learns that 127 is close to 128 without seeing both.

``log_prob_levels``  log P(k) of integer levels, ``(B, 3K, ...)`` and ``(B, ...)`` -> ``(B, ...)``.
``sample_levels``    a component by Gumbel-max, then the logistic's inverse CDF, rounded to a level.

Temperature ``tau``: the logistic scales are multiplied by ``tau`` (the component weights are
kept), so ``tau < 1`` narrows each component around its mean and ``tau = 0`` returns the rounded
mean of the drawn component. Unlike the softmax's temperature this is not p^(1/tau) renormalised.
Checked in tests/test_logistic_mixture.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LEVELS = 256
HALF_BIN = 1.0 / (LEVELS - 1)  # half the distance between two levels on [-1, 1]


def split_params(params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(B, 3K, ...)`` -> mixture logits, means, log-scales, each ``(B, K, ...)``. The
    log-scales are clamped below at -7, as in PixelCNN++, so that no bin gets a zero width."""
    if params.shape[1] % 3:
        raise ValueError(f"expected 3 K parameters per pixel on dim 1, got {params.shape[1]}")
    logit_pi, mu, log_s = params.chunk(3, dim=1)
    return logit_pi, mu, log_s.clamp_min(-7.0)


def _log1mexp(d: Tensor) -> Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d (Maechler 2012)."""
    return torch.where(d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def log_prob_levels(params: Tensor, levels: Tensor) -> Tensor:
    """log P(levels) under the discretised logistic mixture, eq. of the module docstring.

    The middle bins use log(sigma(a) - sigma(b)) = log sigma(a) + log sigma(-b) + log(1 - e^(b-a))
    (a > b), which is exact and never takes the log of a difference that rounds to zero, where
    PixelCNN++ switches to the density at the bin's centre; the edge bins are PixelCNN++'s:
    log sigma(a) for level 0 and log sigma(-b) for level 255."""
    logit_pi, mu, log_s = split_params(params)
    x = (2 * levels.to(mu.dtype) / (LEVELS - 1) - 1).unsqueeze(1)  # (B, 1, ...)
    inv_s = torch.exp(-log_s)
    a = inv_s * (x - mu + HALF_BIN)   # standardised upper edge of the bin
    b = inv_s * (x - mu - HALF_BIN)   # and its lower edge
    lower, upper = (x <= -1), (x >= 1)
    log_mass = torch.where(lower, F.logsigmoid(a), torch.where(
        upper, F.logsigmoid(-b), F.logsigmoid(a) + F.logsigmoid(-b) + _log1mexp(a - b)))
    return torch.logsumexp(log_mass + F.log_softmax(logit_pi, dim=1), dim=1)


def sample_levels(params: Tensor, temperature: float | Tensor = 1.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """One level per row of ``params (B, 3K)``: component j with probability pi_j (Gumbel-max),
    then ``mu_j + tau s_j log(u / (1 - u))``, u ~ U(0, 1), clamped to [-1, 1] and rounded to the
    nearest level. At ``tau = 1`` this draws exactly from P(k), since rounding a logistic draw
    to the nearest level puts it in level k's bin with the probability of that bin. ``tau`` is a
    number or one per row ``(B,)``; the noise is drawn on the CPU from ``generator``."""
    t = torch.as_tensor(temperature, dtype=torch.float64)
    if (t < 0).any():
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logit_pi, mu, log_s = (p.double() for p in split_params(params))
    u = torch.rand(logit_pi.shape, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    j = (logit_pi - torch.log(-torch.log(u)).to(mu.device)).argmax(1, keepdim=True)  # (B, 1)
    u = torch.rand(len(mu), generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    logistic = (torch.log(u) - torch.log1p(-u)).to(mu.device) * t.to(mu.device)
    x = mu.gather(1, j)[:, 0] + log_s.gather(1, j)[:, 0].exp() * logistic
    return ((x.clamp(-1, 1) + 1) * (LEVELS - 1) / 2).round().long()
