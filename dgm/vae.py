"""Variational autoencoder on 28x28 images: networks, loss, training, evaluation, traversals.

Introduced in the VAE chapter ({ref}`vae-chapter`, book/vae.md); the equation labels in the
docstrings are that chapter's. The VAE homework, its grader and the evaluation harness reuse
these pieces, so the names follow the notation page: ``mu`` and ``logvar`` are the encoder's
mean and log-variance, ``z`` a latent code, ``beta_kl`` the weight of the KL term (beta in the beta-VAE).

Reduction used everywhere: each loss term is *summed* over pixels (reconstruction) or latent
dimensions (KL) and *averaged* over the batch, so every number is in nats per image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from dgm.config import check_choice
from dgm.speed import adam
from dgm.progress import progress_bar

from dgm.probability import kl_std_normal, normal_log_prob

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS: tuple[str, ...] = get_args(Likelihood)


@dataclass(frozen=True)
class VAESettings:
    """Sizes of the VAE chapter's experiments for one run profile."""

    latent_dim: int  # dimensions of z: enough for clothing shapes, few enough to traverse
    width: int  # channels of the first conv layer (the second has twice as many)
    hidden: int  # units of the fully connected layer between convs and latent code
    epochs: int  # passes over the training subset for each model (AE, beta = 0, 1, beta_large)
    train_subset: int | None  # training images (None = the whole split)
    test_subset: int | None  # held-out images for the negative ELBO (None = the whole split)
    batch_size: int  # images per step
    lr: float  # Adam step size; 1e-3 is the usual VAE choice, 2e-3 is still stable here
    beta_large: float  # a KL weight large enough to make the posterior collapse
    eval_samples: int  # samples scored by dgm.evaluate; FD depends on N, so the DDPM chapter uses the same
    seed: int = 0  # one seed for data subsets, initialisation and sampling


SETTINGS = {
    # CI: proves every cell runs; a few hundred images, one epoch, tiny networks.
    "smoke": VAESettings(latent_dim=8, width=8, hidden=64, epochs=1, train_subset=256,
                         test_subset=128, batch_size=64, lr=1e-3, beta_large=30.0,
                         eval_samples=64),
    # 2-core laptop: 4,000 images, 4 models x 35 epochs x 32 steps at about 20 ms of one
    # thread: about 1.5 min of training, under 2 min of CPU for the chapter. Width 8 (not 32)
    # makes a step about 3 times cheaper; lr 2e-3 and the decoder's mean-image start make up for
    # the smaller network, so that at an equal CPU budget it matches the classic MLP VAE
    # (benchmarks/peers_models.py, issue #14).
    "cpu": VAESettings(latent_dim=16, width=8, hidden=256, epochs=35, train_subset=4000,
                       test_subset=2000, batch_size=128, lr=2e-3, beta_large=30.0,
                       eval_samples=443),
    # One GPU: the whole 60k training split and 10k test split, a wider net, more epochs.
    "full": VAESettings(latent_dim=16, width=64, hidden=512, epochs=40, train_subset=None,
                        test_subset=None, batch_size=128, lr=1e-3, beta_large=30.0,
                        eval_samples=2000),
}


def _check_likelihood(likelihood: str) -> None:
    check_choice(likelihood, LIKELIHOODS, "likelihood")


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------

def _conv_features(width: int, hidden: int) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, hidden): two stride-2 convolutions, then one linear layer."""
    return nn.Sequential(
        nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),  # (B, width, 14, 14)
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),  # (B, 2 width, 7, 7)
        nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
    )


class ConvEncoder(nn.Module):
    """q_phi(z | x) = N(mu, diag exp(logvar)): images (B, 1, 28, 28) -> mu, logvar (B, latent_dim)."""

    def __init__(self, latent_dim: int, width: int = 32, hidden: int = 256):
        super().__init__()
        self.features = _conv_features(width, hidden)
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """p_theta(x | z): codes (B, latent_dim) -> pixel logits (B, 1, 28, 28).

    Bernoulli decoder: pixel probabilities are ``sigmoid(logits)``. Gaussian decoder: the same
    ``sigmoid(logits)`` is the mean, so both likelihoods share one network.
    """

    def __init__(self, latent_dim: int, width: int = 32, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * width * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),  # (B, width, 14, 14)
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1, bias=False),  # (B, 1, 28, 28)
        )
        # One learned offset per pixel (a convolution's bias is one number for all positions):
        # the logits of the mean image, when init_pixel_bias is given the training images.
        self.pixel_bias = nn.Parameter(torch.zeros(1, 28, 28))

    @torch.no_grad()
    def init_pixel_bias(self, images: Tensor, eps: float = 1e-3) -> None:
        """Start the per-pixel offset at logit(mean of ``images``) (N, 1, 28, 28) in [0, 1], so
        that an untrained decoder already outputs the average image instead of grey everywhere."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
            raise ValueError(f"init_pixel_bias needs images of shape (N, 1, 28, 28), got {tuple(images.shape)}")
        mean = images.float().mean(0).clamp(eps, 1 - eps)
        self.pixel_bias.copy_(torch.logit(mean).to(self.pixel_bias.device))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z) + self.pixel_bias


class ConvVAE(nn.Module):
    """Convolutional VAE with prior p(z) = N(0, I), Gaussian encoder and Bernoulli/Gaussian decoder."""

    def __init__(self, latent_dim: int = 16, width: int = 32, hidden: int = 256):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(latent_dim, width, hidden)
        self.decoder = ConvDecoder(latent_dim, width, hidden)

    @classmethod
    def from_settings(cls, cfg: VAESettings, images: Tensor | None = None) -> "ConvVAE":
        """A VAE of ``cfg``'s sizes; with training ``images``, its decoder starts at their mean
        (``ConvDecoder.init_pixel_bias``)."""
        model = cls(cfg.latent_dim, cfg.width, cfg.hidden)
        if images is not None:
            model.decoder.init_pixel_bias(images)
        return model

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Parameters of q_phi(z | x): mu, logvar, each (B, latent_dim)."""
        return self.encoder(x)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I), eq. {eq}`vae-reparam`.

        ``eps`` may be given (same shape as ``mu``) to fix the noise; by default it is drawn.
        The randomness sits in ``eps`` only, so z is a differentiable function of mu and logvar.
        """
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: Tensor) -> Tensor:
        """Logits of p_theta(x | z): (B, latent_dim) -> (B, 1, 28, 28)."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One pass x -> (mu, logvar) -> z -> logits; returns (logits, mu, logvar)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Decoder means sigmoid(decode(z)) for z ~ N(0, I): (n, 1, 28, 28) in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))


class Autoencoder(nn.Module):
    """Deterministic autoencoder with the VAE's layers: x -> z = encode(x) -> logits.

    Used in the chapter to show that decoding z ~ N(0, I) from a plain autoencoder leaves the
    data manifold: nothing in its loss says where in latent space the codes should lie.
    """

    def __init__(self, latent_dim: int = 16, width: int = 32, hidden: int = 256):
        super().__init__()
        self.latent_dim = latent_dim
        self.features = _conv_features(width, hidden)
        self.to_z = nn.Linear(hidden, latent_dim)
        self.decoder = ConvDecoder(latent_dim, width, hidden)

    def encode(self, x: Tensor) -> Tensor:
        return self.to_z(self.features(x))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------

class LossTerms(NamedTuple):
    """Reconstruction term, KL term and their total, each in nats per image."""

    recon: Tensor | float
    kl: Tensor | float
    total: Tensor | float


def gaussian_nll(x: Tensor, mean: Tensor, sigma2: float | Tensor = 1.0) -> Tensor:
    """-log N(x; mean, sigma2 I) per image, summed over pixels: shape (B,), eq. {eq}`vae-gaussian-recon`.

    Equals ||x - mean||^2 / (2 sigma2) + D/2 log(2 pi sigma2) with D pixels, constant included.
    """
    sigma2 = torch.as_tensor(sigma2, dtype=x.dtype, device=x.device)
    return -normal_log_prob(x, mean, sigma2).flatten(1).sum(dim=1)


def bernoulli_nll(x: Tensor, logits: Tensor) -> Tensor:
    """-log Bernoulli(x; sigmoid(logits)) per image, summed over pixels: shape (B,),
    eq. {eq}`vae-bernoulli-recon` (binary cross-entropy; also used for grey levels in [0, 1])."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def vae_loss(
    x: Tensor,
    logits: Tensor,
    mu: Tensor,
    logvar: Tensor,
    beta_kl: float = 1.0,
    likelihood: Likelihood = "bernoulli",
    sigma2: float = 1.0,
) -> LossTerms:
    """The (beta-weighted) negative ELBO, eq. {eq}`vae-loss`, as ``(recon, kl, total)``.

    x, logits: (B, 1, 28, 28); mu, logvar: (B, latent_dim).

    Reduction: ``recon`` = -log p(x | z) summed over the pixels of an image, ``kl`` =
    KL(q(z | x) || N(0, I)) summed over the latent dimensions (eq. {eq}`kl-std-normal`),
    ``total = recon + beta_kl * kl``; all three are then averaged over the batch, so they are in
    nats per image. With ``beta_kl = 1``, ``total`` is a one-sample estimate of the negative ELBO.

    ``likelihood``: ``"bernoulli"`` (binary cross-entropy with the logits) or ``"gaussian"``
    (mean ``sigmoid(logits)``, fixed variance ``sigma2``, constant included).
    """
    _check_likelihood(likelihood)
    if likelihood == "bernoulli":
        recon = bernoulli_nll(x, logits)
    else:
        recon = gaussian_nll(x, torch.sigmoid(logits), sigma2)
    kl = kl_std_normal(mu, logvar)  # (B,)
    recon, kl = recon.mean(), kl.mean()
    return LossTerms(recon, kl, recon + beta_kl * kl)


# ---------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------

def train_vae(
    model: ConvVAE,
    loader: DataLoader,
    epochs: int,
    beta_kl: float = 1.0,
    device: torch.device | str = "cpu",
    lr: float = 1e-3,
    likelihood: Likelihood = "bernoulli",
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` with Adam (fused on the CPU, ``dgm.speed.adam``) on
    ``loss = recon + beta_kl * kl``; return per-epoch means.

    The history has keys ``recon``, ``kl``, ``total`` (the objective, recon + beta_kl * kl) and
    ``seconds`` (wall time of each epoch); every entry is the image-weighted mean over the epoch,
    in nats per image.
    """
    _check_likelihood(likelihood)
    model.to(device).train()
    if optimizer is None:
        optimizer = adam(model.parameters(), device, lr=lr)
    history: dict[str, list[float]] = {"recon": [], "kl": [], "total": [], "seconds": []}
    bar = progress_bar(range(epochs), desc=f"VAE beta_kl={beta_kl:g}", leave=False, enabled=progress)
    for _ in bar:
        start = time.perf_counter()
        sums, n = torch.zeros(3), 0
        for x, *_ in loader:
            x = x.to(device)  # (B, 1, 28, 28)
            logits, mu, logvar = model(x)
            terms = vae_loss(x, logits, mu, logvar, beta_kl=beta_kl, likelihood=likelihood)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            sums += torch.stack([t.detach().cpu() for t in terms]) * len(x)
            n += len(x)
        for key, value in zip(("recon", "kl", "total"), (sums / n).tolist()):
            history[key].append(value)
        history["seconds"].append(time.perf_counter() - start)
        bar.set_postfix(total=f"{history['total'][-1]:.1f}")
    model.eval()
    return history


def train_autoencoder(
    model: Autoencoder,
    loader: DataLoader,
    epochs: int,
    device: torch.device | str = "cpu",
    lr: float = 1e-3,
    progress: bool = True,
) -> list[float]:
    """Train a plain autoencoder on the Bernoulli reconstruction term alone; per-epoch means."""
    model.to(device).train()
    optimizer = adam(model.parameters(), device, lr=lr)
    losses = []
    for _ in progress_bar(range(epochs), desc="autoencoder", leave=False, enabled=progress):
        total, n = 0.0, 0
        for x, *_ in loader:
            x = x.to(device)
            loss = bernoulli_nll(x, model(x)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            n += len(x)
        losses.append(total / n)
    model.eval()
    return losses


@torch.no_grad()
def negative_elbo(
    model: ConvVAE,
    dataset: Dataset,
    batch_size: int = 256,
    likelihood: Likelihood = "bernoulli",
    seed: int = 0,
) -> LossTerms:
    """Mean negative ELBO of ``dataset`` under ``model``, in nats per image (``beta_kl = 1``).

    One z per image, drawn with a fixed ``seed`` so the figure is reproducible. Returns floats
    ``(recon, kl, total)`` with ``total = recon + kl`` = the negative ELBO, an upper bound on
    -log p(x).
    """
    _check_likelihood(likelihood)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sums, n = torch.zeros(3, dtype=torch.float64), 0
    for x, *_ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = x.to(device)
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(device)
        logits = model.decode(model.reparameterize(mu, logvar, eps))
        terms = vae_loss(x, logits, mu, logvar, beta_kl=1.0, likelihood=likelihood)
        sums += torch.stack([t.double().cpu() for t in terms]) * len(x)
        n += len(x)
    model.train(was_training)
    recon, kl, total = (sums / n).tolist()
    return LossTerms(recon, kl, total)


# ---------------------------------------------------------------------------------------------
# Latent traversal
# ---------------------------------------------------------------------------------------------

def traversal_codes(latent_dim: int, i: int, j: int, n: int = 10, span: float = 3.0) -> Tensor:
    """Latent codes of an n x n traversal grid: (n * n, latent_dim).

    Row r sets z_i to the r-th of n evenly spaced values in [-span, span], column c sets z_j to
    the c-th; every other dimension is zero. Row-major order, so ``image_grid(..., nrow=n)``
    puts z_i down the rows and z_j across the columns.
    """
    if not (0 <= i < latent_dim and 0 <= j < latent_dim) or i == j:
        raise ValueError(f"need two different latent dimensions in [0, {latent_dim}), got i={i}, j={j}")
    values = torch.linspace(-span, span, n)
    z = torch.zeros(n, n, latent_dim)
    z[:, :, i] = values[:, None]
    z[:, :, j] = values[None, :]
    return z.reshape(n * n, latent_dim)


@torch.no_grad()
def latent_traversal(model: ConvVAE, i: int, j: int, n: int = 10, span: float = 3.0) -> Tensor:
    """Decoder means over a grid of (z_i, z_j) with the other dimensions at zero: (n*n, 1, 28, 28)."""
    device = next(model.parameters()).device
    z = traversal_codes(model.latent_dim, i, j, n, span).to(device)
    return torch.sigmoid(model.decode(z)).cpu()
