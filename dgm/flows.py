"""Normalizing flows built from coupling layers (NICE, RealNVP), introduced in book/flows.md.

Every piece is invertible and reports the log-determinant of its Jacobian, so a stack of them
gives an exact log-likelihood by the change of variables, eq. {eq}`flows-loglik`:

``AffineCoupling``          one coupling layer, affine (RealNVP) or additive (NICE),
                            eqs. {eq}`flows-affine-coupling` and {eq}`flows-additive-coupling`.
``checkerboard_mask``,
``channel_mask``,
``vector_mask``             which half of the input a coupling layer keeps.
``Squeeze``                 space-to-depth, ``(C, H, W) -> (4C, H/2, W/2)``, volume preserving.
``Dequantize``              integer pixels -> continuous values (uniform or variational),
                            followed by a logit transform, eq. {eq}`flows-dequant-bound`.
``FlowModel``               a stack of layers under a standard normal prior.
``build_image_flow``,
``build_vector_flow``       the RealNVP-style image flow and the 2-D toy flow of the chapter.
``train_flow``,
``nll_bits_per_dim``        training loop and evaluation in bits per dimension, eq. {eq}`flows-bpd`
                            (the conversion itself is ``dgm.evaluate.bits_per_dim``; log_prob
                            here is already the discrete log-likelihood, so its scale is "bytes").

Every layer has ``forward(x) -> (z, logdet)`` with ``logdet`` of shape ``(B,)`` (summed over all
non-batch dimensions) and ``inverse(z) -> x``. Checked in tests/test_flows.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from dgm.config import check_choice
from dgm.progress import progress_bar
from dgm.speed import channels_last

from dgm.evaluate import bits_per_dim

def _device_of(module: nn.Module) -> torch.device:
    """Device of a module's first parameter or buffer (cpu for a module that has none)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def _sum_nonbatch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


# --------------------------------------------------------------------------------------------
# Masks and the coupling layer
# --------------------------------------------------------------------------------------------

def checkerboard_mask(h: int, w: int, parity: int = 0) -> Tensor:
    """Checkerboard mask ``(1, 1, h, w)``: 1 where ``(i + j) % 2 == parity``, else 0.

    The two parities are complementary; neighbouring pixels always fall in different halves.
    """
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity}")
    i = torch.arange(h).view(-1, 1)
    j = torch.arange(w).view(1, -1)
    return ((i + j) % 2 == parity).float().view(1, 1, h, w)


def channel_mask(c: int, parity: int = 0) -> Tensor:
    """Channel mask ``(1, c, 1, 1)``: parity 0 keeps the first ``c // 2`` channels, parity 1 the rest."""
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity}")
    if c < 2:
        raise ValueError(f"a channel mask needs at least 2 channels, got {c}")
    first = torch.arange(c) < c // 2
    keep = first if parity == 0 else ~first
    return keep.float().view(1, c, 1, 1)


def conv_net(in_channels: int, hidden: int, out_channels: int, num_layers: int = 2) -> nn.Sequential:
    """Coupling network for images: 3x3 convolutions with ReLU; the last layer starts at zero,
    so that every coupling layer starts as the identity (s = t = 0)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU()]
    for _ in range(num_layers - 1):
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU()]
    last = nn.Conv2d(hidden, out_channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def mlp_net(in_features: int, hidden: int, out_features: int, num_layers: int = 2) -> nn.Sequential:
    """Coupling network for vectors (the 2-D toy): an MLP whose last layer starts at zero."""
    layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU()]
    for _ in range(num_layers - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    last = nn.Linear(hidden, out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class AffineCoupling(nn.Module):
    """Coupling layer, eqs. {eq}`flows-affine-coupling` (affine) and {eq}`flows-additive-coupling`.

    ``mask`` (1 = kept part x_A, 0 = transformed part x_B) broadcasts against the input
    ``(B, C, ...)``. ``net`` maps ``x * mask`` (shape ``(B, C, ...)``) to ``(B, 2C, ...)``: the raw
    log-scale and the shift; with ``additive=True`` only the shift is used (NICE). The log-scale is
    squashed as ``s = a * tanh(s_raw / a)`` with a learned per-channel bound ``a = exp(log_a)``,
    which keeps ``exp(s)`` from blowing up early in training.
    """

    def __init__(self, mask: Tensor, net: nn.Module, channels: int, additive: bool = False):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net = net
        self.additive = additive
        self.log_a = nn.Parameter(torch.zeros(channels))

    def _scale_shift(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x_a)  # (B, 2C, ...)
        s_raw, t = h.chunk(2, dim=1)
        free = 1 - self.mask
        if self.additive:
            return torch.zeros_like(t), t * free
        a = self.log_a.exp().view(1, -1, *([1] * (x_a.ndim - 2)))
        s = a * torch.tanh(s_raw / a)
        return s * free, t * free

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z_A = x_A, z_B = x_B * exp(s(x_A)) + t(x_A); logdet = sum of s over x_B, shape (B,)."""
        s, t = self._scale_shift(x * self.mask)
        z = x * torch.exp(s) + t  # s = t = 0 on the kept part, so z_A = x_A
        return z, _sum_nonbatch(s)

    def inverse(self, z: Tensor) -> Tensor:
        """x_A = z_A, x_B = (z_B - t(z_A)) * exp(-s(z_A)): the network is evaluated, never inverted."""
        s, t = self._scale_shift(z * self.mask)
        return (z - t) * torch.exp(-s)


class Squeeze(nn.Module):
    """Space-to-depth: each 2x2 block of pixels becomes 4 channels. A permutation, so logdet = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return unsqueeze(z)


def squeeze(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, 4C, H/2, W/2)``; H and W must be even."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
    x = x.view(b, c, h // 2, 2, w // 2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(z: Tensor) -> Tensor:
    """``(B, 4C, H, W) -> (B, C, 2H, 2W)``, the inverse of :func:`squeeze`."""
    b, c4, h, w = z.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze needs a multiple of 4 channels, got {c4}")
    z = z.view(b, c4 // 4, 2, 2, h, w)
    return z.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """Glow's activation normalisation: a per-channel affine map ``z = (x - b) * exp(-log_s)``.

    ``FlowModel.data_init`` sets ``b`` and ``log_s`` from a batch so that every channel starts with
    mean 0 and variance 1; after that they are ordinary parameters. logdet = ``-sum(log_s)`` times
    the number of positions per channel.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(channels))
        self.log_s = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialised", torch.tensor(False))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.ndim - 2)))

    @torch.no_grad()
    def init_from(self, x: Tensor) -> None:
        """Set ``b`` and ``log_s`` to the per-channel mean and log standard deviation of ``x``."""
        per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
        self.b.copy_(per_channel.mean(dim=1))
        self.log_s.copy_(torch.log(per_channel.std(dim=1) + 1e-6))
        self.initialised.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = (x - self._view(self.b, x)) * torch.exp(-self._view(self.log_s, x))
        positions = x[0, 0].numel()
        return z, (-self.log_s.sum() * positions).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z * torch.exp(self._view(self.log_s, z)) + self._view(self.b, z)


class InvConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution: the same learned ``C x C`` matrix ``W`` mixes the channels
    at every position, a learned permutation. logdet = ``H W log|det W|``; ``W`` starts as a
    random rotation (``|det W| = 1``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c = self.weight.shape[0]
        z = F.conv2d(x, self.weight.view(c, c, 1, 1))
        logdet = torch.linalg.slogdet(self.weight)[1] * x[0, 0].numel()
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        c = self.weight.shape[0]
        return F.conv2d(z, torch.linalg.inv(self.weight).view(c, c, 1, 1))


# --------------------------------------------------------------------------------------------
# Dequantisation
# --------------------------------------------------------------------------------------------

def to_levels(x: Tensor) -> Tensor:
    """Images as integer levels 0..255 in float: uint8 as is, float images in [0, 1] times 255."""
    if x.dtype == torch.uint8:
        return x.float()
    return torch.round(x * 255).clamp(0, 255)


class Dequantize(nn.Module):
    """Integer pixels -> real numbers, with the log-determinant of every step, eq. {eq}`flows-dequant-bound`.

    forward: ``y_deq = (x + u) / 256`` with noise u in [0, 1)^D (uniform, or drawn from a learned
    q(u | x) when ``variational``), then ``w = logit(alpha + (1 - 2 alpha) y_deq)``. The returned
    logdet is ``-D log 256 + log|dw/dy| - log q(u | x)`` (the last term is 0 for uniform noise), so
    that ``log p(w) + logdet`` is a one-sample lower bound on log P(x).
    """

    def __init__(self, alpha: float = 1e-5, variational: bool = False, channels: int = 1,
                 hidden: int = 16, levels: int = 256):
        super().__init__()
        self.alpha = alpha
        self.levels = levels
        self.variational = variational
        # q(u | x): u = sigmoid(logit(eps) * exp(s(x)) + t(x)), eps ~ U(0, 1), one affine step.
        self.q_net = conv_net(channels, hidden, 2 * channels) if variational else None

    def noise(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw u in (0, 1) for levels ``x``; return ``(u, log q(u | x))`` with the log-density of shape (B,)."""
        if eps is None:
            eps = torch.rand_like(x)
        if not self.variational:
            return eps, x.new_zeros(x.shape[0])
        eps = eps.clamp(1e-6, 1 - 1e-6)
        s, t = self.q_net(x / (self.levels - 1) * 2 - 1).chunk(2, dim=1)
        s = torch.tanh(s)
        v = torch.logit(eps) * torch.exp(s) + t
        u = torch.sigmoid(v)
        # log q(u) = log U(eps) - log|du/deps|, with du/deps = sigma'(v) e^s / (eps (1 - eps))
        log_q = torch.log(eps) + torch.log1p(-eps) - s - F.logsigmoid(v) - F.logsigmoid(-v)
        return u, _sum_nonbatch(log_q)

    def forward(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Levels ``x`` (floats 0..levels-1) -> ``(w, logdet)``; ``eps`` fixes the noise (e.g. 0.5)."""
        u, log_q = self.noise(x, eps)
        y_deq = (x + u) / self.levels
        d = x[0].numel()
        logdet = -d * math.log(self.levels) - log_q
        shrunk = self.alpha + (1 - 2 * self.alpha) * y_deq
        w = torch.logit(shrunk)
        # dw/dy_deq = (1 - 2 alpha) / (shrunk (1 - shrunk))
        logdet = logdet + _sum_nonbatch(math.log(1 - 2 * self.alpha) - torch.log(shrunk) - torch.log1p(-shrunk))
        return w, logdet

    def inverse(self, w: Tensor) -> Tensor:
        """Map w back to integer levels floor(256 y_deq), clamped to 0..levels-1."""
        y_deq = (torch.sigmoid(w) - self.alpha) / (1 - 2 * self.alpha)
        return torch.floor(y_deq * self.levels).clamp(0, self.levels - 1)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class FlowModel(nn.Module):
    """A stack of invertible layers under a standard normal prior, eq. {eq}`flows-loglik`.

    ``shape`` is the shape of one data point, e.g. ``(1, 28, 28)`` or ``(2,)``. With a
    ``dequantize`` layer, inputs are images (uint8 or floats in [0, 1]) and ``log_prob`` is the
    dequantised lower bound on the discrete log-likelihood; without it, inputs are real vectors
    and ``log_prob`` is the exact log-density.
    """

    def __init__(self, layers: list[nn.Module], shape: tuple[int, ...],
                 dequantize: Dequantize | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.shape = tuple(shape)
        self.dequantize = dequantize

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent z (a squeeze changes it), found by passing a dummy input through."""
        ref = next(iter(self.parameters()), torch.zeros(()))
        with torch.no_grad():
            z, _ = self._through_layers(torch.zeros(1, *self.shape, dtype=ref.dtype, device=ref.device))
        return tuple(z.shape[1:])

    def _through_layers(self, h: Tensor) -> tuple[Tensor, Tensor]:
        logdet = h.new_zeros(h.shape[0])
        for layer in self.layers:
            h, ld = layer(h)
            logdet = logdet + ld
        return h, logdet

    def forward(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> ``(z, logdet)`` where logdet includes the dequantisation terms."""
        logdet = x.new_zeros(x.shape[0])
        if self.dequantize is not None:
            x, logdet = self.dequantize(to_levels(x), eps)
        z, ld = self._through_layers(x)
        return z, logdet + ld

    def log_prob(self, x: Tensor, eps: Tensor | None = None) -> Tensor:
        """log p(x) = log N(z; 0, I) + logdet, shape (B,), in nats."""
        z, logdet = self(x, eps)
        log_pz = _sum_nonbatch(-0.5 * z**2 - 0.5 * math.log(2 * math.pi))
        return log_pz + logdet

    def encode(self, x: Tensor) -> Tensor:
        """Data -> latent z, with the dequantisation noise fixed at the middle of each bin."""
        eps = torch.full_like(x, 0.5, dtype=torch.float32) if self.dequantize is not None else None
        return self(x, eps)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Latent -> data; images come back in [0, 1] (levels / 255)."""
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        if self.dequantize is not None:
            return self.dequantize.inverse(z) / (self.dequantize.levels - 1)
        return z

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Glow's data-dependent initialisation: pass the batch ``x`` through the flow and set each
        ActNorm layer not yet initialised from what reaches it, so that it leaves mean 0, variance 1."""
        h = self.dequantize(to_levels(x))[0] if self.dequantize is not None else x
        for layer in self.layers:
            if isinstance(layer, ActNorm) and not bool(layer.initialised):
                layer.init_from(h)
            h, _ = layer(h)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """Draw ``n`` samples: z ~ N(0, temperature^2 I), then invert every layer."""
        ref = next(self.parameters())
        z = torch.randn(n, *self.latent_shape, generator=generator, dtype=ref.dtype) * temperature
        return self.decode(z.to(ref.device))


def vector_mask(d: int, parity: int) -> Tensor:
    """Mask ``(d,)`` for vectors: 1 on the coordinates ``i`` with ``i % 2 == parity``."""
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity}")
    return (torch.arange(d) % 2 == parity).float()


def build_vector_flow(d: int, num_couplings: int, hidden: int) -> FlowModel:
    """Flow for vectors in R^d (the 2-D toy): MLP couplings whose masks alternate parity."""
    layers = [AffineCoupling(vector_mask(d, k % 2), mlp_net(d, hidden, 2 * d), d)
              for k in range(num_couplings)]
    return FlowModel(layers, (d,))


def build_image_flow(num_couplings: int, hidden: int, multiscale: bool, shape=(1, 28, 28),
                     net_layers: int = 2, variational: bool = False) -> FlowModel:
    """RealNVP-style flow for ``shape`` images.

    Without ``multiscale``: ``num_couplings`` checkerboard couplings of alternating parity.
    With it: half of them checkerboard at full resolution, a squeeze, then the other half with
    channel masks of alternating parity at half resolution (all dimensions are kept to the end).
    """
    c, h, w = shape
    layers: list[nn.Module] = []
    n_checker = num_couplings // 2 if multiscale else num_couplings
    for k in range(n_checker):
        layers.append(AffineCoupling(checkerboard_mask(h, w, k % 2), conv_net(c, hidden, 2 * c, net_layers), c))
    if multiscale:
        layers.append(Squeeze())
        c4 = 4 * c
        for k in range(num_couplings - n_checker):
            layers.append(AffineCoupling(channel_mask(c4, k % 2), conv_net(c4, hidden, 2 * c4, net_layers), c4))
    return FlowModel(layers, shape, Dequantize(variational=variational, channels=c))


def build_glow_flow(steps: tuple[int, ...], hidden: int, net_layers: int = 2, shape=(1, 28, 28),
                    variational: bool = False) -> FlowModel:
    """Glow-style flow for ``shape`` images: for each entry of ``steps``, a squeeze, then that many
    steps of ActNorm, InvConv1x1 and a channel-mask AffineCoupling. All convolutions run at half
    resolution or less (``(1, 28, 28)`` -> ``4 x 14 x 14`` -> ``16 x 7 x 7``), and every dimension
    is kept to the end."""
    c, h, w = shape
    layers: list[nn.Module] = []
    for n in steps:
        layers.append(Squeeze())
        c, h, w = 4 * c, h // 2, w // 2
        for k in range(n):
            layers += [ActNorm(c), InvConv1x1(c),
                       AffineCoupling(channel_mask(c, k % 2), conv_net(c, hidden, 2 * c, net_layers), c)]
    return FlowModel(layers, shape, Dequantize(variational=variational, channels=shape[0]))


ARCHITECTURES = ("glow", "realnvp")


def build_from_settings(cfg: "FlowSettings") -> FlowModel:
    """The image flow of a profile: ``cfg.architecture`` "glow" (``build_glow_flow``, the
    couplings split evenly over two scales) or "realnvp" (``build_image_flow``)."""
    if cfg.architecture == "glow":
        half = cfg.num_couplings // 2
        return build_glow_flow((half, cfg.num_couplings - half), cfg.hidden, cfg.net_layers)
    if cfg.architecture == "realnvp":
        return build_image_flow(cfg.num_couplings, cfg.hidden, cfg.multiscale, net_layers=cfg.net_layers)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {cfg.architecture!r}")


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def nll_bits_per_dim(model: FlowModel, x: Tensor, batch_size: int = 256,
                     generator: torch.Generator | None = None) -> float:
    """Mean negative log-likelihood of the images ``x`` (uint8 or [0, 1]) in bits/dim.

    One dequantisation sample per image, so with uniform noise it is an estimate of an upper
    bound on the discrete NLL, eq. {eq}`flows-dequant-bound`.
    """
    model.eval()
    device = _device_of(model)
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        eps = torch.rand(xb.shape, generator=generator).to(device)
        total += -model.log_prob(xb.to(device), eps).sum().item()
        count += len(xb)
    return bits_per_dim(total / count, int(math.prod(model.shape)), scale="bytes")


SCHEDULES = ("exponential", "cosine")


def lr_factor(frac: float, warmup: float = 0.0, schedule: str = "exponential", final: float = 0.1) -> float:
    """Learning-rate multiplier after a fraction ``frac`` of training: a linear warm-up over the
    first ``warmup`` of it, times a decay from 1 to ``final`` over the whole run, exponential
    (``final ** frac``) or cosine (``final + (1 - final) (1 + cos(pi frac)) / 2``)."""
    check_choice(schedule, SCHEDULES, "learning-rate schedule")
    ramp = min(1.0, (frac + 1e-3) / warmup) if warmup > 0 else 1.0
    frac = min(frac, 1.0)
    if schedule == "exponential":
        return ramp * final ** frac
    return ramp * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * frac)))


def train_flow(model: FlowModel, loader, epochs: int, lr: float = 1e-3, max_grad_norm: float = 10.0,
               device: torch.device | None = None, progress: bool = True,
               warmup: float = 0.0, schedule: str = "exponential",
               final_lr: float = 0.1) -> dict[str, list[float]]:
    """Maximum likelihood: minimise the mean NLL in bits/dim with Adam (learning rate warmed up
    over the first ``warmup`` fraction of the steps and decayed to ``final_lr`` times ``lr`` over
    training along ``schedule``, ``lr_factor``; the rate of every step is in ``history["lr"]``),
    clipping gradient norms. ActNorm layers are initialised from the first batch
    (``FlowModel.data_init``). Returns ``{"train bits/dim": per step}`` and the wall time in
    ``history["seconds"]``. On the CPU the model's convolution weights are left channels-last
    (``dgm.speed.channels_last``)."""
    lr_factor(0.0, warmup, schedule, final_lr)  # a bad schedule fails before any work
    device = device or _device_of(model)
    channels_last(model.to(device), device).train()  # 25 % faster convolutions on the CPU
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step / total_steps, warmup, schedule, final_lr))
    dims = int(math.prod(model.shape))
    history: dict[str, list[float]] = {"train bits/dim": [], "lr": []}
    start = time.perf_counter()
    bar = progress_bar(total=total_steps, enabled=progress, leave=False, desc="flow")
    for epoch in range(epochs):
        for i, batch in enumerate(loader):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if epoch == 0 and i == 0:
                model.data_init(x.to(device))
            loss = bits_per_dim(-model.log_prob(x.to(device)).mean(), dims, scale="bytes")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            history["lr"].append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            history["train bits/dim"].append(loss.item())
            bar.update(1)
            bar.set_postfix(bpd=f"{loss.item():.3f}")
    bar.close()
    history["seconds"] = [time.perf_counter() - start]
    model.eval()
    return history


# --------------------------------------------------------------------------------------------
# Settings per profile
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowSettings:
    architecture: str       # "glow": squeeze first, ActNorm + 1x1 conv + channel couplings at 14x14
                            # and 7x7; "realnvp": checkerboard couplings at 28x28, then a squeeze
    num_couplings: int      # coupling layers in the image flow; each one transforms half the values
    hidden: int             # channels of each coupling network; the main cost per step
    net_layers: int         # 3x3 convolutions before the output layer of each coupling network
    multiscale: bool        # realnvp only: squeeze to 4x14x14 half way (glow always squeezes)
    epochs: int             # passes over the training subset
    subset: int             # training images (the shared offline data has 4,000)
    test_subset: int        # test images scored for bits/dim (the shared offline data has 443)
    batch: int              # images per step
    lr: float               # Adam learning rate, warmed up, then decayed to 10 % over training
    warmup: float           # fraction of the steps over which the learning rate ramps up linearly
    toy_couplings: int      # coupling layers of the 2-D toy flow; 6 already bend moons well
    toy_hidden: int         # width of the toy coupling MLPs
    toy_steps: int          # steps of the 2-D toy flow, each on a fresh batch
    toy_batch: int          # toy points per step
    toy_lr: float           # the toy is tiny and tolerates a larger step than the image flow
    progress: bool          # tqdm bars (off in smoke, where they only add noise to CI logs)


SETTINGS = {
    # seconds: the code runs end to end, numbers mean nothing
    "smoke": FlowSettings(architecture="glow", num_couplings=4, hidden=16, net_layers=1, multiscale=True,
                          epochs=1, subset=256, test_subset=128, batch=64, lr=1e-3, warmup=0.1,
                          toy_couplings=6, toy_hidden=32, toy_steps=300, toy_batch=256, toy_lr=3e-3,
                          progress=False),
    # one thread: about 0.065 CPU-s per step, 125 steps x 12 epochs is about 100 CPU-s. Batch 32 and
    # lr 5e-3 with a 10 % warm-up learned fastest per CPU-second in a sweep at 30 CPU-s (issue #14:
    # 3.53 bits/dim, against 3.63 at lr 5e-3 batch 64 and 3.77 at lr 2e-3 batch 64)
    "cpu": FlowSettings(architecture="glow", num_couplings=8, hidden=32, net_layers=2, multiscale=True,
                        epochs=12, subset=4000, test_subset=443, batch=32, lr=5e-3, warmup=0.1,
                        toy_couplings=8, toy_hidden=64, toy_steps=2000, toy_batch=256, toy_lr=3e-3,
                        progress=True),
    # one GPU: the whole training set when it is there (this recipe is not yet measured there)
    "full": FlowSettings(architecture="glow", num_couplings=12, hidden=64, net_layers=2, multiscale=True,
                         epochs=30, subset=60000, test_subset=10000, batch=128, lr=1e-3, warmup=0.05,
                         toy_couplings=8, toy_hidden=64, toy_steps=4000, toy_batch=512, toy_lr=3e-3,
                         progress=True),
}
