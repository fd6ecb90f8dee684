"""Flow matching on the linear (rectified-flow) path: the path and its velocities, the
conditional flow-matching loss, the sampler, conversions to the noise and score
parameterisations and to DDPM's path, the exact velocity of a Gaussian mixture, classifier-free
guidance and reflow.

Introduced in book/flow_matching.md ({ref}`flow-matching-chapter`); each function names the
equation it implements. Tests: tests/test_flow_matching.py.

Conventions. Time runs from t = 0 (noise x_0 ~ N(0, I)) to t = 1 (data x_1), as in Lipman et
al. (2023) and Liu et al. (2023); note that DDPM's x_0 is the *data* (book/notation.md). The
linear path is x_t = (1 - t) x_0 + t x_1 and its conditional velocity is d x_t / dt = x_1 - x_0.
A velocity model is called as ``model(x_t, t)`` or ``model(x_t, t, y)`` with ``t (B,)`` floats
in [0, 1]; sampling integrates dx/dt = v(x, t) from t = 0 to t = 1 with :func:`dgm.ode.integrate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from dgm.config import check_choice
from dgm.ode import Method, evaluations, integrate, time_grid
from dgm.unet import NULL_CLASS, UNet

VelocityModel = Callable[..., Tensor]


def _per_example(t: Tensor, like: Tensor) -> Tensor:
    """Reshape times ``(B,)`` to broadcast against ``like (B, ...)``."""
    return t.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------------------
# The linear path, its velocities and the loss
# ---------------------------------------------------------------------------------------------
def linear_path(x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x_0 + t x_1, one time per example, eq. {eq}`fm-linear-path`."""
    t = _per_example(t, x1)
    return (1 - t) * x0 + t * x1


def path_velocity(x0: Tensor, x1: Tensor) -> Tensor:
    """The conditional velocity of the linear path, d x_t / dt = x_1 - x_0, eq. {eq}`fm-linear-path`."""
    return x1 - x0


def conditional_velocity(x: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """u_t(x | x_1) = (x_1 - x) / (1 - t): the velocity of the path to one data point, at a
    position x rather than along a pair, eq. {eq}`fm-cond-velocity` (for t < 1)."""
    return (x1 - x) / (1 - _per_example(t, x))


def _pair_loss(model: VelocityModel, x0: Tensor, x1: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
    xt = linear_path(x0, x1, t)
    v = model(xt, t) if y is None else model(xt, t, y)
    return (v - path_velocity(x0, x1)).pow(2).mean()


def cfm_loss(model: VelocityModel, x1: Tensor, y: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Conditional flow-matching loss E_{t, x_0, x_1} ||v(x_t, t) - (x_1 - x_0)||^2 / D,
    eq. {eq}`fm-cfm-loss`.

    One t ~ U(0, 1) and one x_0 ~ N(0, I) per example; the squared error is averaged over every
    coordinate and example (the mean over D coordinates keeps the scale independent of image size).
    """
    n = x1.shape[0]
    t = torch.rand(n, generator=generator, device=x1.device, dtype=x1.dtype)
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    return _pair_loss(model, x0, x1, t, y)


def reflow_loss(model: VelocityModel, x0: Tensor, x1: Tensor, y: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """The loss {eq}`fm-cfm-loss` on given pairs (x_0, x_1) (reflow, eq. {eq}`fm-reflow`):
    only t ~ U(0, 1) is drawn."""
    if x0.shape != x1.shape:
        raise ValueError(f"pairs must have equal shapes, got x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)}")
    t = torch.rand(x1.shape[0], generator=generator, device="cpu").to(x1.device, x1.dtype)
    return _pair_loss(model, x0, x1, t, y)


# ---------------------------------------------------------------------------------------------
# Guidance and sampling
# ---------------------------------------------------------------------------------------------
def guided_velocity(model: VelocityModel, x: Tensor, t: Tensor, y: Tensor, w: float) -> Tensor:
    """Classifier-free guidance in the velocity parameterisation, eq. {eq}`fm-cfg`:
    (1 + w) v(x, t, y) - w v(x, t, null). ``w = 0`` is the conditional model (one call)."""
    v_cond = model(x, t, y)
    if w == 0:
        return v_cond
    return (1 + w) * v_cond - w * model(x, t, torch.full_like(y, NULL_CLASS))


def sample(model: VelocityModel, shape: Sequence[int], steps: int, method: Method = "euler",
           y: Tensor | None = None, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", x0: Tensor | None = None,
           return_path: bool = False, w: float = 0.0):
    """Draw x_0 ~ N(0, I) (or use ``x0``) and integrate the model's velocity from t = 0 to 1.

    With labels ``y`` and ``w != 0`` the velocity is guided, eq. {eq}`fm-cfg`.
    """
    if x0 is None:
        x0 = torch.randn(tuple(shape), generator=generator, device="cpu").to(device)

    def field(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t) if y is None else guided_velocity(model, x, t, y, w)

    return integrate(field, x0, time_grid(steps), method, return_path=return_path)


# ---------------------------------------------------------------------------------------------
# Reflow
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def reflow_pairs(model: VelocityModel, x0: Tensor, steps: int, method: Method = "heun",
                 y: Tensor | None = None, w: float = 0.0) -> tuple[Tensor, Tensor]:
    """Pairs (x_0, x_1) coupled by the model's ODE, eq. {eq}`fm-reflow`: x_1 is the end of the
    trajectory that starts at x_0."""
    return x0, sample(model, x0.shape, steps, method, y=y, x0=x0, w=w)


def straightness(path: Sequence[Tensor], ts: Sequence[float] | Tensor) -> float:
    """Mean deviation of trajectories from the straight lines between their end points,
    eq. {eq}`fm-straightness`: the root-mean-square over coordinates of
    x_t - ((1 - t) x_first + t x_last), averaged over the grid times and the examples.
    Times are normalised to [0, 1] along ``ts``. Zero exactly for straight trajectories."""
    times = [float(t) for t in ts]
    if len(times) != len(path) or len(path) < 2:
        raise ValueError(f"need one state per grid time, got {len(path)} states for {len(times)} times")
    first, last = path[0], path[-1]
    total = 0.0
    for t, x in zip(times, path):
        s = (t - times[0]) / (times[-1] - times[0])
        dev = x - ((1 - s) * first + s * last)
        total += dev.flatten(1).pow(2).mean(1).sqrt().mean().item()
    return total / len(path)


# ---------------------------------------------------------------------------------------------
# Parameterisations: velocity, noise, data and score on the linear path
# ---------------------------------------------------------------------------------------------
def eps_from_velocity(xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """The noise x_0 predicted by a velocity: eps = x_t - t v, eq. {eq}`fm-param`."""
    return xt - _per_example(t, xt) * v


def x1_from_velocity(xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """The data x_1 predicted by a velocity: x_t + (1 - t) v, eq. {eq}`fm-param`."""
    return xt + (1 - _per_example(t, xt)) * v


def velocity_from_eps(xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """v = (x_t - eps) / t, eq. {eq}`fm-param` (for t > 0)."""
    return (xt - eps) / _per_example(t, xt)


def score_from_velocity(xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """grad log p_t(x_t) = -eps / (1 - t) = -(x_t - t v) / (1 - t), eq. {eq}`fm-param` (t < 1)."""
    return -eps_from_velocity(xt, t, v) / (1 - _per_example(t, xt))


def velocity_from_score(xt: Tensor, t: Tensor, score: Tensor) -> Tensor:
    """v = (x_t + (1 - t) score) / t, eq. {eq}`fm-param` solved for v (t > 0)."""
    t = _per_example(t, xt)
    return (xt + (1 - t) * score) / t


# ---------------------------------------------------------------------------------------------
# DDPM's path as a rescaled linear path
# ---------------------------------------------------------------------------------------------
def ddpm_to_linear(alpha_bar: Tensor) -> tuple[Tensor, Tensor]:
    """DDPM's x = sqrt(a) x_1 + sqrt(1 - a) eps is c times the linear path at time t, with
    c = sqrt(a) + sqrt(1 - a) and t = sqrt(a) / c, eq. {eq}`fm-ddpm-time`. Returns ``(t, c)``."""
    a = alpha_bar.to(torch.float64)
    c = a.sqrt() + (1 - a).sqrt()
    return a.sqrt() / c, c


def linear_to_alpha_bar(t: Tensor) -> Tensor:
    """The inverse of :func:`ddpm_to_linear`: alpha_bar = t^2 / (t^2 + (1 - t)^2)."""
    t = t.to(torch.float64)
    return t**2 / (t**2 + (1 - t) ** 2)


def ddpm_code_index(schedule, t: Tensor) -> Tensor:
    """The (fractional) DDPM code index whose alpha_bar matches linear-path time ``t``:
    log alpha_bar interpolated linearly between the schedule's steps, clamped to 0..T-1.
    Indices within 1e-3 of an integer are rounded, so DDIM's times map back to its steps even
    after a round trip through float32."""
    log_ab = schedule.alpha_bar.log()                       # decreasing in the index
    target = linear_to_alpha_bar(t).clamp(1e-300, 1).log().to(log_ab.device)
    index = torch.searchsorted(-log_ab, -target).clamp(1, len(log_ab) - 1)
    lo, hi = log_ab[index - 1], log_ab[index]
    frac = ((lo - target) / (lo - hi)).clamp(0, 1)
    k = (index - 1 + frac).clamp(0, len(log_ab) - 1)
    return torch.where((k - k.round()).abs() < 1e-3, k.round(), k)


def eps_model_as_velocity(eps_model: Callable[..., Tensor], schedule) -> VelocityModel:
    """A DDPM noise predictor as a velocity model on the linear path, eqs.
    {eq}`fm-ddpm-time` and {eq}`fm-param`: at time t, scale x_t up to DDPM's x by c, ask the
    network for eps at the matching (fractional) code index and return v = (x_t - eps) / t."""

    def velocity(xt: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        k = ddpm_code_index(schedule, t.cpu())
        _, c = ddpm_to_linear(linear_to_alpha_bar(t.cpu()))
        x = xt * _per_example(c, xt).to(xt.device)
        k = k.to(device=xt.device, dtype=torch.float32)
        eps = eps_model(x, k) if y is None else eps_model(x, k, y)
        return velocity_from_eps(xt, t, eps.to(xt.dtype))

    return velocity


def ddim_times(schedule, steps: int) -> Tensor:
    """The linear-path times of DDIM's sub-sequence (eq. {eq}`fm-ddpm-time`), ending at t = 1."""
    from dgm.diffusion import ddim_timesteps

    taus = ddim_timesteps(schedule.T, steps)
    t, _ = ddpm_to_linear(schedule.alpha_bar[taus])
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


# ---------------------------------------------------------------------------------------------
# A Gaussian mixture: the exact marginal path and velocity
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianMixture:
    """Data x_1 ~ sum_k pi_k N(m_k, s_k^2 I): ``means (K, D)``, ``var (K,)`` the s_k^2 (zero
    gives point masses), ``weights (K,)`` the pi_k (default: equal). Float64 throughout."""

    means: Tensor
    var: Tensor
    weights: Tensor | None = None

    def __post_init__(self):
        means = torch.as_tensor(self.means, dtype=torch.float64)
        var = torch.as_tensor(self.var, dtype=torch.float64).expand(len(means)).clone()
        weights = (torch.full((len(means),), 1 / len(means), dtype=torch.float64) if self.weights is None
                   else torch.as_tensor(self.weights, dtype=torch.float64))
        if means.ndim != 2 or bool((var < 0).any()) or weights.shape != (len(means),) \
                or bool((weights < 0).any()):
            raise ValueError("means must be (K, D), var (K,) non-negative and weights (K,) non-negative")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "var", var)
        object.__setattr__(self, "weights", weights / weights.sum())

    def component(self, k: int) -> GaussianMixture:
        """Component ``k`` alone: the data of class ``k`` when components are classes."""
        return GaussianMixture(self.means[k:k + 1], self.var[k:k + 1])

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` draws and their components: ``(x (n, D), k (n,))``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return self.means[k] + self.var[k].sqrt()[:, None] * z, k

    def _moments(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Per example and component: the variance of x_t given k and Cov(x_1 - x_0, x_t) / I."""
        t = t.to(torch.float64)[:, None]                              # (B, 1)
        var_t = (1 - t) ** 2 + t**2 * self.var[None]                  # (B, K)
        cov = t * self.var[None] - (1 - t)                            # (B, K)
        return var_t, cov

    def log_density(self, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(x), x_t's marginal on the linear path, eq. {eq}`fm-gmm-velocity`: ``(B,)``."""
        var_t, _ = self._moments(t)
        d = x.shape[1]
        sq = (x[:, None, :] - t.to(x.dtype)[:, None, None] * self.means[None]).pow(2).sum(-1)
        log_comp = -sq / (2 * var_t) - d / 2 * torch.log(2 * math.pi * var_t)
        return torch.logsumexp(log_comp + self.weights.log()[None], dim=1)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact marginal velocity u_t(x), eq. {eq}`fm-gmm-velocity`: the responsibilities
        of the components times their affine velocities m_k + c_k / sigma_k^2 (x - t m_k)."""
        var_t, cov = self._moments(t)
        d = x.shape[1]
        diff = x[:, None, :] - t.to(x.dtype)[:, None, None] * self.means[None]   # (B, K, D)
        log_comp = -diff.pow(2).sum(-1) / (2 * var_t) - d / 2 * torch.log(var_t)
        resp = torch.softmax(log_comp + self.weights.log()[None], dim=1)         # (B, K)
        v_k = self.means[None] + (cov / var_t)[:, :, None] * diff                 # (B, K, D)
        return (resp[:, :, None] * v_k).sum(1)


# ---------------------------------------------------------------------------------------------
# The U-Net as a velocity model, training, settings
# ---------------------------------------------------------------------------------------------
class VelocityUNet(nn.Module):
    """dgm.unet.UNet as a velocity model ``v(x_t, t, y=None)`` with t in [0, 1].

    The U-Net embeds its time sinusoidally with frequencies designed for step indices in the
    hundreds, so t is fed as the float ``t * time_scale`` (not rounded): with the default 1000
    a flow-matching time spans the same range as DDPM's 1000 steps.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), num_classes: int | None = None,
                 time_scale: float = 1000.0):
        super().__init__()
        self.unet = UNet(widths, num_classes=num_classes)
        self.time_scale = time_scale

    def forward(self, xt: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.unet(xt, t.float() * self.time_scale, y)


def train_flow_matching(model: nn.Module, loader, epochs: int, lr: float = 2e-3,
                        generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                        max_steps: int | None = None, pairs: bool = False,
                        conditional: bool = False, p_uncond: float = 0.1,
                        progress: bool = True) -> list[float]:
    """Minimise {eq}`fm-cfm-loss` with Adam and a one-cycle learning rate, as
    :func:`dgm.diffusion.train_ddpm` does for DDPM; returns the loss of every step.

    ``pairs``: the loader yields pairs (x_0, x_1) and the loss is :func:`reflow_loss`; otherwise
    it yields (images, labels). ``conditional`` feeds the labels, dropped with ``p_uncond``.
    """
    from dgm.diffusion import drop_labels
    from dgm.progress import progress_bar

    model.to(device).train()
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.05)
    losses: list[float] = []
    bar = progress_bar(total=total, enabled=progress, leave=False, desc="train")
    while len(losses) < total:
        for a, b in loader:
            if len(losses) >= total:
                break
            a, b = a.to(device), b.to(device)
            if pairs:
                loss = reflow_loss(model, a, b, generator=generator)
            else:
                y = drop_labels(b, p_uncond, generator) if conditional else None
                loss = cfm_loss(model, a, y, generator=_on(generator, a))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
    bar.close()
    model.eval()
    return losses


def _on(generator: torch.Generator | None, x: Tensor) -> torch.Generator | None:
    """``generator`` when it lives on ``x``'s device (cfm_loss draws there), else None."""
    if generator is None or generator.device.type == x.device.type:
        return generator
    return None


@dataclass(frozen=True)
class FlowMatchingSettings:
    """Sizes of the flow-matching chapter's experiments for one profile."""

    widths: tuple[int, int, int]     # the U-Net's channels, the same for flow matching and DDPM
    train_steps: int                 # optimiser steps, the same for flow matching and DDPM (equal time)
    subset: int                      # training images
    batch: int                       # batch size
    lr: float                        # peak Adam learning rate (the diffusion chapter's)
    nfe: tuple[int, ...]             # network evaluations on the quality-against-cost curve
    ddpm_nfe: tuple[int, ...]        # the same for the stochastic DDPM sampler (see sampler_budgets)
    eval_samples: int                # samples scored per point of that curve
    reflow_pairs: int                # pairs (x_0, x_1) generated for reflow
    reflow_pair_nfe: int             # network evaluations per pair (Heun)
    reflow_steps: int                # optimiser steps of reflow, starting from the trained model
    reflow_lr: float                 # reflow's peak learning rate (fine-tuning: lower)
    toy_steps: int                   # optimiser steps of the 2-D toy's velocity MLP
    toy_hidden: int                  # width of that MLP
    seed: int = 0                    # data order, noise and initialisation
    threads: int | None = None       # torch CPU threads (None: torch's default)


SETTINGS = {
    # Seconds on 2 cores: a tiny U-Net (the diffusion chapter's smoke widths), a few steps.
    "smoke": FlowMatchingSettings(
        widths=(8, 16, 16), train_steps=6, subset=256, batch=32, lr=2e-3, nfe=(1, 4), ddpm_nfe=(1, 4), eval_samples=32,
        reflow_pairs=32, reflow_pair_nfe=4, reflow_steps=2, reflow_lr=5e-4,
        toy_steps=60, toy_hidden=32, threads=1),
    # One thread (the book runs two chapters at once, one thread each): the chapter measured
    # 296 kernel CPU-s at load 15 (CPU time is inflated by such load), against about 930 (per-stage
    # timings at load 5, benchmarks/flow_matching_stages.py) with
    # the earlier row (the diffusion chapter's 0.74 M-parameter U-Net, 320 steps of 128, ODE
    # samplers to 50 evaluations, 192 samples per point, 768 reflow pairs). Now a 0.23 M U-Net
    # (a step of 64 costs about 0.2 CPU-s, against 0.45 for the 0.74 M one) is trained twice,
    # flow matching and DDPM, for the same 400 steps (about half the chapter); the ODE samplers
    # stop at 25 evaluations (they changed little beyond), DDPM's stochastic sampler at 100,
    # with 128 samples per point (the same N for every point). Samples stay recognisable,
    # noisier than before: FD 146 for Euler at 25 evaluations and 193 for DDPM at 100 (N = 128;
    # the earlier row scored 93 and 133 at N = 192, and FD falls with N).
    "cpu": FlowMatchingSettings(
        widths=(16, 32, 64), train_steps=400, subset=4000, batch=64, lr=2e-3, nfe=(1, 2, 4, 10, 25),
        ddpm_nfe=(1, 2, 4, 10, 25, 100), eval_samples=128, reflow_pairs=512, reflow_pair_nfe=20,
        reflow_steps=100, reflow_lr=5e-4, toy_steps=1500, toy_hidden=128),
    # One GPU: the diffusion chapter's full U-Net and step budget.
    "full": FlowMatchingSettings(
        widths=(64, 128, 256), train_steps=8000, subset=60000, batch=128, lr=1e-3, nfe=(1, 2, 4, 10, 25, 50, 100),
        ddpm_nfe=(1, 2, 4, 10, 25, 50, 100), eval_samples=2000, reflow_pairs=20000, reflow_pair_nfe=100,
        reflow_steps=3000, reflow_lr=2e-4, toy_steps=5000, toy_hidden=256),
}


# ---------------------------------------------------------------------------------------------
# The chapter's samplers and their budgets
# ---------------------------------------------------------------------------------------------
Sampler = Literal["fm_euler", "fm_heun", "ddim", "ddpm"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


def sampler_budgets(cfg: FlowMatchingSettings, name: Sampler) -> tuple[int, ...]:
    """The budgets of network evaluations at which the chapter runs sampler ``name``: ``cfg.nfe``
    (Heun from 2 on, its smallest step costs two), and ``cfg.ddpm_nfe`` for the stochastic DDPM."""
    check_choice(name, SAMPLERS, "sampler")
    if name == "fm_heun":
        return tuple(n for n in cfg.nfe if n >= 2)
    return cfg.ddpm_nfe if name == "ddpm" else cfg.nfe


def sampler_evaluations(name: Sampler, nfe: int, T: int) -> int:
    """Network evaluations sampler ``name`` spends for budget ``nfe``: Heun ``nfe // 2`` steps of
    two, DDIM and DDPM one per step and at most ``T`` steps, Euler ``nfe``."""
    check_choice(name, SAMPLERS, "sampler")
    if name == "fm_heun":
        return evaluations("heun", nfe // 2)
    return min(nfe, T) if name in ("ddim", "ddpm") else nfe
