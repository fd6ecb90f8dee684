"""Denoising diffusion (DDPM, Ho et al. 2020): schedules, the forward and reverse processes,
the training loss, ancestral and DDIM sampling, and classifier-free guidance.

Introduced in book/diffusion.md ({ref}`diffusion-chapter`); the score view and guidance are in
book/score_guidance.md ({ref}`score-guidance-chapter`). Each function names the equation it
implements. Tests: tests/test_diffusion.py.

Time indices. Code index ``t = 0..T-1`` is math time ``t = 1..T``: ``schedule.beta[0]`` is
beta_1 and ``schedule.alpha_bar[T - 1]`` is alpha_bar_T. ``alpha_bar_prev[t]`` is math
alpha_bar_{t-1}, with alpha_bar_0 = 1. A state ``xt`` passed with code index ``t`` is math
x_{t+1}; one reverse step from code index ``t`` returns math x_t. Data are scaled to [-1, 1].

The noise predictor ``eps_model(xt, t, y=None)`` takes ``xt (B, C, H, W)``, ``t (B,)`` long
and optional class labels ``y (B,)``, where :data:`dgm.unet.NULL_CLASS` means "no condition".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import Tensor

from dgm.config import check_choice
from dgm.probability import kl_normal
from dgm.progress import progress_bar
from dgm.speed import adam, channels_last
from dgm.unet import NULL_CLASS

ScheduleKind = Literal["linear", "cosine"]
SCHEDULE_KINDS: tuple[str, ...] = get_args(ScheduleKind)
EpsModel = Callable[..., Tensor]


# ---------------------------------------------------------------------------------------------
# Noise schedules
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """A noise schedule and every quantity derived from it, as float64 tensors of shape (T,).

    ``beta``, ``alpha = 1 - beta`` (eq. {eq}`ddpm-forward-step`), ``alpha_bar`` = cumulative
    product (eq. {eq}`ddpm-marginal`), ``alpha_bar_prev`` (alpha_bar_{t-1}, with alpha_bar_0 = 1),
    ``beta_tilde`` (eq. {eq}`ddpm-posterior-variance`) and the two posterior-mean coefficients
    ``posterior_coef_x0``, ``posterior_coef_xt`` (eq. {eq}`ddpm-posterior-mean`).
    """

    kind: str
    beta: Tensor
    alpha: Tensor = field(init=False)
    alpha_bar: Tensor = field(init=False)
    alpha_bar_prev: Tensor = field(init=False)
    beta_tilde: Tensor = field(init=False)
    posterior_coef_x0: Tensor = field(init=False)
    posterior_coef_xt: Tensor = field(init=False)

    def __post_init__(self):
        beta = self.beta.to(torch.float64)
        if beta.ndim != 1 or not bool(((beta > 0) & (beta < 1)).all()):
            raise ValueError("beta must be a 1-D tensor with every entry in (0, 1)")
        alpha = 1 - beta
        alpha_bar = torch.cumprod(alpha, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        derived = {
            "beta": beta,
            "alpha": alpha,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "beta_tilde": (1 - alpha_bar_prev) / (1 - alpha_bar) * beta,
            "posterior_coef_x0": alpha_bar_prev.sqrt() * beta / (1 - alpha_bar),
            "posterior_coef_xt": alpha.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return len(self.beta)


def linear_schedule(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> Schedule:
    """beta_t linear from ``beta_1`` to ``beta_T`` (Ho et al. use 1e-4 and 0.02 with T = 1000)."""
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    return Schedule("linear", torch.linspace(beta_1, beta_T, T, dtype=torch.float64))


def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """alpha_bar_t = f(t) / f(0) with f(t) = cos^2((t/T + s) / (1 + s) * pi/2) (Nichol &
    Dhariwal 2021); beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, clipped at ``max_beta``."""
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    beta = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(1e-8, max_beta)
    return Schedule("cosine", beta)


def make_schedule(kind: ScheduleKind, T: int, **kwargs) -> Schedule:
    """``linear_schedule`` or ``cosine_schedule`` by name; other names raise ValueError."""
    check_choice(kind, SCHEDULE_KINDS, "schedule kind")
    return linear_schedule(T, **kwargs) if kind == "linear" else cosine_schedule(T, **kwargs)


def extract(values: Tensor, t: Tensor | int, like: Tensor) -> Tensor:
    """``values[t]`` reshaped to broadcast against ``like`` (B, ...), in its dtype and device."""
    t = torch.as_tensor(t, device=values.device).long()
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    out = values[t].to(dtype=like.dtype, device=like.device)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


# ---------------------------------------------------------------------------------------------
# Forward process and its posterior
# ---------------------------------------------------------------------------------------------
def q_step(schedule: Schedule, x_prev: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
    """One forward step x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps, eq. {eq}`ddpm-forward-step`."""
    return extract(schedule.alpha, t, x_prev).sqrt() * x_prev + extract(schedule.beta, t, x_prev).sqrt() * eps


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
    """Sample x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), eq. {eq}`ddpm-marginal`."""
    alpha_bar = extract(schedule.alpha_bar, t, x0)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def q_posterior(schedule: Schedule, x0: Tensor, xt: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I),
    eqs. {eq}`ddpm-posterior-mean` and {eq}`ddpm-posterior-variance`. Returns
    ``(mu_tilde, beta_tilde)``, the variance broadcastable against ``xt``."""
    mu_tilde = extract(schedule.posterior_coef_x0, t, xt) * x0 + extract(schedule.posterior_coef_xt, t, xt) * xt
    return mu_tilde, extract(schedule.beta_tilde, t, xt)


def prior_kl(schedule: Schedule, x0: Tensor) -> Tensor:
    """KL(q(x_T | x_0) || N(0, I)) per example, summed over the data dimensions: shape (B,).

    Eq. {eq}`ddpm-prior-kl`: eq. {eq}`kl-univariate` with mean sqrt(alpha_bar_T) x_0 and
    variance 1 - alpha_bar_T, summed over pixels.
    """
    x0 = x0.to(torch.float64)
    alpha_bar_T = schedule.alpha_bar[-1]
    kl = kl_normal(alpha_bar_T.sqrt() * x0, (1 - alpha_bar_T).expand_as(x0), torch.zeros_like(x0),
                   torch.ones_like(x0))
    return kl.flatten(1).sum(dim=1)


# ---------------------------------------------------------------------------------------------
# The reverse process in the epsilon parameterisation
# ---------------------------------------------------------------------------------------------
def predict_x0_from_eps(schedule: Schedule, xt: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): eq. {eq}`ddpm-marginal` solved for x_0."""
    alpha_bar = extract(schedule.alpha_bar, t, xt)
    return (xt - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def p_mean_from_eps(schedule: Schedule, xt: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
    """mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t), eq. {eq}`ddpm-eps-mean`."""
    beta = extract(schedule.beta, t, xt)
    alpha_bar = extract(schedule.alpha_bar, t, xt)
    return (xt - beta / (1 - alpha_bar).sqrt() * eps) / extract(schedule.alpha, t, xt).sqrt()


def eps_to_score(schedule: Schedule, t: Tensor | int, eps: Tensor) -> Tensor:
    """grad_x log q(x_t | x_0) = -eps / sqrt(1 - alpha_bar_t), eq. {eq}`sg-score-eps`."""
    return -eps / (1 - extract(schedule.alpha_bar, t, eps)).sqrt()


def guided_eps(eps_model: EpsModel, xt: Tensor, t: Tensor, y: Tensor, w: float) -> Tensor:
    """Classifier-free guidance, eq. {eq}`sg-cfg`: (1 + w) eps(x_t, t, y) - w eps(x_t, t, null).

    ``w = 0`` is the plain conditional model (one network call); larger ``w`` trades diversity
    for class fidelity.
    """
    eps_cond = eps_model(xt, t, y)
    if w == 0:
        return eps_cond
    eps_null = eps_model(xt, t, torch.full_like(y, NULL_CLASS))
    return (1 + w) * eps_cond - w * eps_null


def _predict_eps(eps_model: EpsModel, xt: Tensor, t: Tensor, y: Tensor | None, w: float) -> Tensor:
    return eps_model(xt, t) if y is None else guided_eps(eps_model, xt, t, y, w)


SigmaChoice = Literal["beta", "beta_tilde"]


@torch.no_grad()
def p_sample(eps_model: EpsModel, schedule: Schedule, xt: Tensor, t: int,
             generator: torch.Generator | None = None, y: Tensor | None = None, w: float = 0.0,
             sigma2: SigmaChoice = "beta", clip_x0: bool = True) -> Tensor:
    """One ancestral step x_{t-1} ~ p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I) (Algorithm
    {prf:ref}`ddpm-alg-sampling`, line 4), with z = 0 at the last step (code ``t == 0``).

    ``sigma2``: ``"beta"`` (sigma_t^2 = beta_t) or ``"beta_tilde"``, the two choices of Ho et al.
    ``clip_x0``: mu_theta is the posterior mean q(x_{t-1} | x_t, x0_hat) of eq.
    {eq}`ddpm-posterior-mean` at the guess x0_hat clipped to the data range [-1, 1], as in Ho et
    al.'s code and :func:`sample_ddim`; without the clip it equals eq. {eq}`ddpm-eps-mean`
    (``clip_x0=False``, the plain Algorithm). An under-trained network's unclipped guesses
    send whole chains to flat white or black squares (the diffusion chapter's cpu build, issue #14).
    """
    check_choice(sigma2, get_args(SigmaChoice), "sigma2")
    t_batch = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
    eps = _predict_eps(eps_model, xt, t_batch, y, w)
    if clip_x0:
        x0_hat = predict_x0_from_eps(schedule, xt, t_batch, eps).clamp(-1, 1)
        mean = q_posterior(schedule, x0_hat, xt, t_batch)[0]
    else:
        mean = p_mean_from_eps(schedule, xt, t_batch, eps)
    if t == 0:
        return mean
    variance = extract(schedule.beta if sigma2 == "beta" else schedule.beta_tilde, t, xt)
    z = torch.randn(xt.shape, generator=generator, device="cpu").to(xt.device, xt.dtype)
    return mean + variance.sqrt() * z


def _start_noise(shape: Sequence[int], generator, device, xT: Tensor | None) -> Tensor:
    if xT is not None:
        return xT.to(device)
    return torch.randn(tuple(shape), generator=generator).to(device)


@torch.no_grad()
def sample_ddpm(eps_model: EpsModel, schedule: Schedule, shape: Sequence[int],
                generator: torch.Generator | None = None,
                return_trajectory_at: Iterable[int] | None = None, y: Tensor | None = None,
                w: float = 0.0, xT: Tensor | None = None, device: torch.device | str = "cpu",
                sigma2: SigmaChoice = "beta", progress: bool = False, clip_x0: bool = True):
    """Ancestral sampling, Algorithm {prf:ref}`ddpm-alg-sampling`: x_T ~ N(0, I), then T reverse
    steps (each :func:`p_sample`, which clips its guess of x_0 unless ``clip_x0=False``). Returns x_0 ``shape``; with ``return_trajectory_at`` (math times in 0..T), returns
    ``(x_0, {t: x_t})`` with the states at those times (``T`` is the starting noise, ``0`` the sample).
    """

    keep = set(return_trajectory_at or ())
    bad = [t for t in keep if not 0 <= t <= schedule.T]
    if bad:
        raise ValueError(f"trajectory times must lie in 0..T={schedule.T}, got {sorted(bad)}")
    x = _start_noise(shape, generator, device, xT)
    trajectory = {schedule.T: x.cpu()} if schedule.T in keep else {}
    for t in progress_bar(range(schedule.T - 1, -1, -1), enabled=progress, leave=False, desc="DDPM"):
        x = p_sample(eps_model, schedule, x, t, generator, y=y, w=w, sigma2=sigma2, clip_x0=clip_x0)
        if t in keep:  # after the step from code index t, x is math x_t
            trajectory[t] = x.cpu()
    return (x, trajectory) if return_trajectory_at is not None else x


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` code indices from T-1 down to 0, evenly spaced (the sub-sequence tau of DDIM)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in 1..T={T}, got {steps}")
    if steps == 1:
        return [T - 1]  # one step: straight from pure noise at the last time
    return sorted({round(i * (T - 1) / (steps - 1)) for i in range(steps)}, reverse=True)


@torch.no_grad()
def sample_ddim(eps_model: EpsModel, schedule: Schedule, shape: Sequence[int], steps: int,
                eta: float = 0.0, generator: torch.Generator | None = None, y: Tensor | None = None,
                w: float = 0.0, xT: Tensor | None = None, device: torch.device | str = "cpu",
                progress: bool = False, clip_x0: bool = True) -> Tensor:
    """DDIM sampling (Song et al. 2021), eq. {eq}`ddpm-ddim-step`, on ``steps`` of the T times.

    ``eta = 0`` is deterministic given x_T; ``eta = 1`` has the ancestral DDPM variance.

    ``clip_x0`` clips the guess x0_hat to the data range [-1, 1] before each step and recomputes
    the noise that goes with it, eps = (x_t - sqrt(alpha_bar_t) x0_hat) / sqrt(1 - alpha_bar_t),
    so that the step still moves to a point of the forward marginal. Near t = T, x0_hat divides
    the network's error by sqrt(alpha_bar_T) (about 0.007 for the chapter's schedules): without
    the clip a small error there sends a deterministic chain to a flat white or black square,
    which no later step can undo (issue #14). ``clip_x0=False`` is the plain update, which is
    Euler's method on the probability-flow ODE (book/flow_matching.md).
    """

    x = _start_noise(shape, generator, device, xT)
    taus = ddim_timesteps(schedule.T, steps)
    for i, t in enumerate(progress_bar(taus, enabled=progress, leave=False, desc="DDIM")):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = _predict_eps(eps_model, x, t_batch, y, w)
        x0_hat = predict_x0_from_eps(schedule, x, t_batch, eps)
        alpha_bar = extract(schedule.alpha_bar, t, x)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
            eps = (x - alpha_bar.sqrt() * x0_hat) / (1 - alpha_bar).sqrt()
        alpha_bar_prev = extract(schedule.alpha_bar, taus[i + 1], x) if i + 1 < len(taus) \
            else torch.ones_like(alpha_bar)
        sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
        x = alpha_bar_prev.sqrt() * x0_hat + (1 - alpha_bar_prev - sigma**2).sqrt() * eps
        if eta > 0 and i + 1 < len(taus):
            x = x + sigma * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def drop_labels(y: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace each label by :data:`NULL_CLASS` with probability ``p_uncond`` (CFG training)."""
    if p_uncond <= 0:
        return y
    drop = torch.rand(y.shape, generator=generator).to(y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, NULL_CLASS), y)


def ddpm_loss(eps_model: EpsModel, schedule: Schedule, x0: Tensor,
              generator: torch.Generator | None = None, y: Tensor | None = None,
              p_uncond: float = 0.0) -> Tensor:
    """The simplified loss E_{t, x_0, eps} ||eps - eps_theta(x_t, t)||^2, eq. {eq}`ddpm-simple-loss`
    (Algorithm {prf:ref}`ddpm-alg-training`), averaged over pixels and the batch.

    With labels ``y``, each is dropped to the null class with probability ``p_uncond``.
    """
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    xt = q_sample(schedule, x0, t, eps)
    if y is not None:
        eps_pred = eps_model(xt, t, drop_labels(y, p_uncond, generator))
    else:
        eps_pred = eps_model(xt, t)
    return ((eps - eps_pred) ** 2).mean()


def train_ddpm(eps_model: torch.nn.Module, schedule: Schedule, loader, epochs: int,
               lr: float = 2e-3, generator: torch.Generator | None = None,
               conditional: bool = False, p_uncond: float = 0.1,
               device: torch.device | str = "cpu", max_steps: int | None = None,
               progress: bool = True, ema_decay: float | None = None) -> list[float]:
    """Algorithm {prf:ref}`ddpm-alg-training` with Adam and a cosine learning-rate decay; returns
    the loss of every step. ``conditional`` feeds the labels (dropped with ``p_uncond``).

    ``ema_decay`` keeps an exponential moving average of the weights (``torch.optim.swa_utils``),
    updated after every step, and leaves the model holding the averaged weights at the end; the
    losses returned are those of the raw weights being trained. On the CPU the optimiser is torch's
    fused Adam and the convolution weights are left channels-last (``dgm.speed``)."""

    if ema_decay is not None and not 0 < ema_decay < 1:
        raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {ema_decay}")
    channels_last(eps_model.to(device), device).train()  # 16 % faster U-Net steps on the CPU
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    opt = adam(eps_model.parameters(), device, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1),
                                                pct_start=0.05)
    ema = None if ema_decay is None else torch.optim.swa_utils.AveragedModel(
        eps_model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay))
    losses: list[float] = []
    bar = progress_bar(total=total, enabled=progress, leave=False, desc="train")
    for _ in range(epochs):
        if len(losses) >= total:
            break
        for x0, y in loader:
            if len(losses) >= total:
                break
            x0, y = x0.to(device), y.to(device)
            loss = ddpm_loss(eps_model, schedule, x0, generator, y if conditional else None,
                             p_uncond if conditional else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(eps_model.parameters(), 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(eps_model)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    if ema is not None and losses:
        eps_model.load_state_dict(ema.module.state_dict())
    eps_model.eval()
    return losses


# ---------------------------------------------------------------------------------------------
# Settings per profile, and one call that trains and samples (for the benchmarks)
# ---------------------------------------------------------------------------------------------
SamplerKind = Literal["ddpm", "ddim"]
SAMPLER_KINDS: tuple[str, ...] = get_args(SamplerKind)


@dataclass(frozen=True)
class DiffusionSettings:
    T: int                           # diffusion steps
    schedule: ScheduleKind           # noise schedule kind
    beta_1: float                    # first beta of the linear schedule
    beta_T: float                    # last beta of the linear schedule
    widths: tuple[int, int, int]     # U-Net channels at 28, 14 and 7 pixels
    epochs: int                      # passes over the training subset
    subset: int                      # training images used
    batch: int                       # batch size
    lr: float                        # peak Adam learning rate
    n_samples: int                   # samples drawn for the grid and the timing
    ddim_steps: int                  # DDIM steps (the fast sampler)
    p_uncond: float                  # CFG: probability of dropping the label while training
    guidance_ws: tuple[float, ...]   # CFG weights w shown in book/score_guidance.md
    n_per_class: int                 # CFG samples per class and weight
    eval_samples: int = 64           # samples scored by dgm.evaluate (same N as the VAE chapter)
    eval_sampler: SamplerKind = "ddpm"      # sampler of the scored samples (ddim: ddim_steps)
    guidance_sampler: SamplerKind = "ddpm"  # sampler of the guided samples in score_guidance.md
    ema_decay: float | None = None   # decay of the weights' moving average (None: raw weights)
    seed: int = 0                    # seed of data order, noise and initialisation
    threads: int | None = None       # torch CPU threads (None: torch's default)
    max_steps: int | None = None     # cap on optimiser steps (None: all epochs)

    def __post_init__(self):
        check_choice(self.eval_sampler, SAMPLER_KINDS, "eval_sampler")
        check_choice(self.guidance_sampler, SAMPLER_KINDS, "guidance_sampler")


SETTINGS = {
    # Seconds on 2 cores: a 33 k-parameter net, T = 50 (the six panels scaled by 50/200) and a
    # few dozen steps prove the code runs; the samples are still noise. The samplers are the cpu
    # row's, so that smoke runs the same code.
    "smoke": DiffusionSettings(
        T=50, schedule="linear", beta_1=2e-3, beta_T=0.4,   # 1e-4 and 0.02 scaled by 1000/T
        widths=(8, 16, 16), epochs=1, subset=768, batch=32, lr=2e-3,
        n_samples=16, ddim_steps=10, p_uncond=0.2, guidance_ws=(0.0, 2.0), n_per_class=2,
        eval_samples=64, eval_sampler="ddim", guidance_sampler="ddim",
        threads=1),  # tiny tensors gain nothing from a second thread, and lose a lot on shared cores
    # Minutes of one core (the book runs two chapters at once, one thread each; issue #14): a
    # 0.74 M-parameter U-Net, T = 200 with the betas scaled by 1000/T so that alpha_bar_T matches
    # Ho et al.'s T = 1000. CPU seconds at one thread (process time, on the loaded 2-core
    # machine): an isolated training step takes 0.36 s at batch 64 and 0.72 s at batch 128, in
    # a whole run about 0.4 s at batch 64, so the 7 epochs of 62 steps cost about 175 s where the
    # former 682 steps at batch 128 cost about 490 s; one U-Net call on 443 images takes 1.2 s,
    # so the 443 scored samples cost 250 s by ancestral sampling (200 calls) and 21-26 s by DDIM
    # (20 calls), and the guided samples (40 per weight, two calls per step when w > 0) 90 s
    # and 9 s. Quality paid for it: 443 DDIM samples (20 steps) of the former network scored
    # FD 108 and coverage 1.0 (its ancestral samples FD 64), those of 450 steps at batch 64
    # FD 168 and coverage 0.7; the conditional network of 380 such steps FD 118 and coverage 1.0
    # at w = 0. No weight average: with ema_decay=0.995 the same 380 conditional steps scored
    # FD 316 and coverage 0.4 (the average still weighs the untrained first steps by
    # 0.995^380 = 0.15), 450 unconditional ones FD 299 and coverage 0.5.
    "cpu": DiffusionSettings(
        T=200, schedule="linear", beta_1=5e-4, beta_T=0.1,
        widths=(24, 48, 128), epochs=7, subset=4000, batch=64, lr=2e-3,
        n_samples=64, ddim_steps=20, p_uncond=0.2, guidance_ws=(0.0, 1.0, 3.0), n_per_class=4,
        eval_samples=443, eval_sampler="ddim", guidance_sampler="ddim"),
    # One GPU, under 15 minutes: a 3.7 M-parameter U-Net, Ho et al.'s T = 1000 and schedule,
    # every training image available, capped at 8,000 steps (about 17 epochs of 60,000 images).
    "full": DiffusionSettings(
        T=1000, schedule="linear", beta_1=1e-4, beta_T=0.02,
        widths=(64, 128, 256), epochs=200, subset=60000, batch=128, lr=1e-3,
        n_samples=256, ddim_steps=50, p_uncond=0.2, guidance_ws=(0.0, 0.5, 1.0, 3.0, 6.0),
        n_per_class=8, eval_samples=2000, max_steps=8000),
}


def schedule_from_settings(cfg: DiffusionSettings) -> Schedule:
    """The schedule a settings row asks for (``beta_1``/``beta_T`` apply to the linear kind)."""
    if cfg.schedule == "linear":
        return linear_schedule(cfg.T, cfg.beta_1, cfg.beta_T)
    return make_schedule(cfg.schedule, cfg.T)


@dataclass
class RunResult:
    """What :func:`train_and_sample` returns."""

    samples: Tensor              # (n, 1, 28, 28) in [-1, 1]
    labels: Tensor | None        # (n,) classes asked for, or None
    losses: list[float]          # training loss per step
    train_seconds: float
    sample_seconds: float
    eps_model: torch.nn.Module
    schedule: Schedule


def train_and_sample(cfg: DiffusionSettings | None = None, n_samples: int | None = None,
                     sampler: Literal["ddpm", "ddim"] = "ddpm", conditional: bool = False,
                     w: float = 0.0, device: torch.device | str | None = None,
                     progress: bool = True) -> RunResult:
    """Train a U-Net DDPM on Fashion-MNIST with the settings ``cfg`` (default: the current
    profile's row of :data:`SETTINGS`) and draw ``n_samples`` images in [-1, 1]. Conditional
    models get labels 0..9 in turn and guidance weight ``w``. Used by the benchmarks."""
    from dgm.config import get_device, seed_everything, select
    from dgm.data import load_dataset, make_loader
    from dgm.unet import UNet

    check_choice(sampler, ("ddpm", "ddim"), "sampler")
    cfg = cfg or select(SETTINGS)
    device = get_device() if device is None else torch.device(device)
    n = cfg.n_samples if n_samples is None else n_samples
    generator = seed_everything(cfg.seed)
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    data = load_dataset("fashion_mnist", split="train", scale="pm1", subset=cfg.subset, seed=cfg.seed)
    loader = make_loader(data, batch_size=cfg.batch, seed=cfg.seed, drop_last=True)
    schedule = schedule_from_settings(cfg)
    model = UNet(cfg.widths, num_classes=10 if conditional else None).to(device)
    start = time.perf_counter()
    losses = train_ddpm(model, schedule, loader, cfg.epochs, lr=cfg.lr, generator=generator,
                        conditional=conditional, p_uncond=cfg.p_uncond, device=device,
                        max_steps=cfg.max_steps, progress=progress, ema_decay=cfg.ema_decay)
    train_seconds = time.perf_counter() - start
    labels = torch.arange(n, device=device) % 10 if conditional else None
    start = time.perf_counter()
    if sampler == "ddpm":
        samples = sample_ddpm(model, schedule, (n, 1, 28, 28), generator, y=labels, w=w,
                              device=device, progress=progress)
    else:
        samples = sample_ddim(model, schedule, (n, 1, 28, 28), cfg.ddim_steps, generator=generator,
                              y=labels, w=w, device=device, progress=progress)
    sample_seconds = time.perf_counter() - start
    return RunResult(samples.clamp(-1, 1).cpu(), None if labels is None else labels.cpu(), losses,
                     train_seconds, sample_seconds, model, schedule)
