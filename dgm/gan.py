"""Generative adversarial networks, introduced in book/gans.md.

The discriminator's and the generator's losses (saturating and non-saturating), the optimal
discriminator, a DCGAN-style generator and discriminator for 28x28 images, small MLPs and a
ring-of-Gaussians data set for the 2-D mode-collapse experiment, and one training loop for both.
Each function names the equation of {ref}`gans-chapter` it implements; the identities are tested
in ``tests/test_gan.py``. Discriminators return logits l, with D(x) = sigmoid(l); images are in
[-1, 1] (``scale="pm1"``), matching the generator's tanh output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from dgm.speed import adam
from dgm.progress import progress_bar


@dataclass(frozen=True)
class GANSettings:
    """Sizes of the GAN chapter's experiments for one run profile."""

    n_train: int          # real images the DCGAN sees (the shared subset has 4,000)
    dcgan_steps: int      # generator updates of the DCGAN (about 20 ms each on 2 CPU cores)
    dcgan_batch: int      # images per step; 64-128 is DCGAN's usual range
    dcgan_width: int      # channels of the first conv layer of D and the last of G
    z_dim: int            # latent dimension of the DCGAN
    lr: float             # Adam step size, DCGAN's 2e-4
    toy_steps: int        # updates on the 2-D ring; collapse shows within a few thousand
    toy_batch: int        # points per step on the ring
    toy_seeds: int        # repeats of the ring experiment, since collapse is a matter of chance
    n_eval: int           # generated images scored by the evaluation harness


SETTINGS = {
    "smoke": GANSettings(n_train=512, dcgan_steps=30, dcgan_batch=64, dcgan_width=16, z_dim=32,
                         lr=2e-4, toy_steps=200, toy_batch=256, toy_seeds=1, n_eval=256),
    "cpu": GANSettings(n_train=4000, dcgan_steps=4000, dcgan_batch=64, dcgan_width=32, z_dim=64,
                       lr=2e-4, toy_steps=3000, toy_batch=256, toy_seeds=3, n_eval=1000),
    # The ring toy runs on the CPU on every machine (tiny tensors: a GPU only adds launch
    # latency); measured on the H100 machine, 5,000 steps x 512 points x 5 seeds x 2 settings
    # took over 5 minutes of the chapter, so the full row keeps the cpu row's steps and batch
    # and only averages over more seeds.
    "full": GANSettings(n_train=60000, dcgan_steps=10000, dcgan_batch=128, dcgan_width=64,
                        z_dim=100, lr=2e-4, toy_steps=3000, toy_batch=256, toy_seeds=5,
                        n_eval=5000),
}


# ----------------------------------------------------------------------------------- losses
def d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The discriminator's loss, eq. {eq}`gans-d-loss`: -E[log D(x)] - E[log(1 - D(G(z)))].

    Minus the value V(G, D) of eq. {eq}`gans-minimax`; written with softplus on the logits
    (log sigmoid(l) = -softplus(-l), log(1 - sigmoid(l)) = -softplus(l)) so it never takes log 0.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: Tensor, nonsaturating: bool = True) -> Tensor:
    """The generator's loss on D's logits for generated samples.

    Saturating, eq. {eq}`gans-g-loss-saturating`: E[log(1 - D(G(z)))] (the minimax game itself).
    Non-saturating, eq. {eq}`gans-g-loss-nonsaturating`: -E[log D(G(z))], whose gradient stays
    large while D still rejects the samples.
    """
    if nonsaturating:
        return F.softplus(-fake_logits).mean()
    return -F.softplus(fake_logits).mean()


def optimal_discriminator(p_data: Tensor, p_g: Tensor) -> Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)), eq. {eq}`gans-optimal-d`, from density values."""
    return p_data / (p_data + p_g)


# ---------------------------------------------------------------------------- DCGAN (28x28)
class Generator(nn.Module):
    """DCGAN-style generator: z (B, z_dim) -> image (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, z_dim: int = 64, width: int = 32):
        super().__init__()
        self.z_dim = z_dim
        self.project = nn.Sequential(nn.Linear(z_dim, 2 * width * 7 * 7, bias=False),
                                     nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),  # (B, w, 14, 14)
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),  # (B, 1, 28, 28)
            nn.Tanh(),
        )
        self.width = width

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).view(len(z), 2 * self.width, 7, 7))


class Discriminator(nn.Module):
    """DCGAN-style discriminator: image (B, 1, 28, 28) -> logit (B,)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),  # (B, 2w, 7, 7)
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02). Use with
    ``model.apply(dcgan_init)``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# ------------------------------------------------------------------------------ 2-D toy GAN
def ring_centers(k: int = 8, radius: float = 2.0) -> Tensor:
    """The k mode centres, evenly spaced on a circle: ``(k, 2)``."""
    angle = 2 * math.pi * torch.arange(k) / k
    return radius * torch.stack([torch.cos(angle), torch.sin(angle)], -1)


def ring_of_gaussians(n: int, k: int = 8, radius: float = 2.0, std: float = 0.05,
                      generator: torch.Generator | None = None) -> Tensor:
    """n points ``(n, 2)`` from an equal mixture of k Gaussians N(centre, std^2 I) on a ring."""
    which = torch.randint(k, (n,), generator=generator)
    return ring_centers(k, radius)[which] + std * torch.randn(n, 2, generator=generator)


#: a mode counts as covered when it holds at least this share of the samples
MIN_MODE_SHARE = 0.01


def mode_coverage(samples: Tensor, k: int = 8, radius: float = 2.0, std: float = 0.05,
                  min_share: float = MIN_MODE_SHARE) -> tuple[int, float]:
    """How well 2-D ``samples`` cover the ring: the number of modes that hold at least
    ``min_share`` of the samples within 3 std of their centre, and the fraction of samples that
    lie within 3 std of some centre ("high quality")."""
    dist = torch.cdist(samples.float(), ring_centers(k, radius))  # (n, k)
    near, which = dist.min(-1)
    good = near < 3 * std
    counts = torch.bincount(which[good], minlength=k)
    return int((counts >= min_share * len(samples)).sum()), good.float().mean().item()


class MLPGenerator(nn.Module):
    """Generator of the 2-D toy: z (B, z_dim) -> point (B, 2)."""

    def __init__(self, z_dim: int = 16, hidden: int = 128):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """Discriminator of the 2-D toy: points (B, 2) -> logits.

    With ``pack = m > 1`` it judges m points at once (PacGAN, Lin et al. 2018): the batch is cut
    into B / m groups, each group's points are concatenated, and one logit ``(B / m,)`` comes out
    per group. A group of m samples from a collapsed generator looks different from m real points,
    so D can punish the lack of diversity that a one-point D cannot see.
    """

    def __init__(self, hidden: int = 128, pack: int = 1):
        super().__init__()
        self.pack = pack
        self.net = nn.Sequential(nn.Linear(2 * pack, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        if len(x) % self.pack:
            raise ValueError(f"batch of {len(x)} points is not a multiple of pack={self.pack}")
        return self.net(x.reshape(len(x) // self.pack, 2 * self.pack)).squeeze(-1)


# --------------------------------------------------------------------------------- training
def tensor_sampler(data: Tensor) -> Callable[[int, torch.Generator], Tensor]:
    """A ``sample_real(batch_size, generator)`` that draws rows of ``data`` with replacement."""
    return lambda b, gen: data[torch.randint(len(data), (b,), generator=gen)]


def train_gan(
    generator: nn.Module, discriminator: nn.Module,
    sample_real: Callable[[int, torch.Generator], Tensor], steps: int, batch_size: int = 64,
    lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), nonsaturating: bool = True,
    d_steps: int = 1, lr_d: float | None = None, seed: int = 0,
    device: torch.device | str = "cpu", progress: bool = True,
    callback: Callable[[int], None] | None = None, callback_every: int = 0,
) -> dict[str, list[float]]:
    """Alternating GAN training: ``d_steps`` updates of D on eq. {eq}`gans-d-loss`, then one of G
    on eq. {eq}`gans-g-loss-nonsaturating` (or the saturating eq. {eq}`gans-g-loss-saturating`).

    ``sample_real(batch_size, torch_generator)`` returns a real batch; latents are N(0, I) of
    size ``generator.z_dim``. ``lr_d`` is D's step size (default ``lr``). ``callback(step)``
    runs every ``callback_every`` steps (e.g. to store snapshots). Returns per-step histories:
    the two losses and the mean D(x), D(G(z)).
    """
    gen = torch.Generator().manual_seed(seed)
    generator.to(device).train()
    discriminator.to(device).train()
    opt_g = adam(generator.parameters(), device, lr=lr, betas=betas)  # fused on the CPU
    opt_d = adam(discriminator.parameters(), device, lr=lr if lr_d is None else lr_d, betas=betas)
    history: dict[str, list[float]] = {"d_loss": [], "g_loss": [], "D(x)": [], "D(G(z))": []}

    def latent() -> Tensor:
        return torch.randn(batch_size, generator.z_dim, generator=gen).to(device)

    for step in progress_bar(range(1, steps + 1), desc="GAN", enabled=progress, leave=False):
        for _ in range(d_steps):
            real = sample_real(batch_size, gen).to(device)
            with torch.no_grad():
                fake = generator(latent())
            real_logits, fake_logits = discriminator(real), discriminator(fake)
            loss_d = d_loss(real_logits, fake_logits)
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        fake_logits = discriminator(generator(latent()))
        loss_g = g_loss(fake_logits, nonsaturating)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        history["d_loss"].append(loss_d.item())
        history["g_loss"].append(loss_g.item())
        history["D(x)"].append(torch.sigmoid(real_logits).mean().item())
        history["D(G(z))"].append(torch.sigmoid(fake_logits).mean().item())
        if callback is not None and callback_every and step % callback_every == 0:
            callback(step)
    return history


@torch.no_grad()
def sample(generator: nn.Module, n: int, seed: int = 0, batch_size: int = 1000) -> Tensor:
    """n samples of ``generator`` (in eval mode) from seeded latents, on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(torch.randn(min(batch_size, n - i), generator.z_dim,
                                           generator=gen).to(device)).cpu()
                     for i in range(0, n, batch_size)])
    generator.train(was_training)
    return out
