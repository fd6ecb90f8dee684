"""Self-supervised and contrastive representation learning, introduced in book/contrastive.md.

Losses (triplet, InfoNCE, SimCLR's NT-Xent), batched and seeded image augmentations, a small
convolutional encoder with a projection head, SimCLR and rotation-prediction pre-training, and
the downstream evaluations (linear probe and fine-tuning with a few labels per class). Each
function names the equation of {ref}`contrastive-chapter` it implements; the identities are
tested in ``tests/test_contrastive.py``. Images are ``(B, 1, 28, 28)`` in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from dgm.config import check_choice
from dgm.progress import progress_bar
from dgm.speed import channels_last

Projection = Literal["pca", "tsne"]


@dataclass(frozen=True)
class ContrastiveSettings:
    """Sizes of the contrastive chapter's experiment for one run profile."""

    n_pretrain: int      # unlabelled images for pre-training (the shared subset has 4,000)
    simclr_epochs: int   # passes over them; SimCLR keeps improving for hundreds of epochs
    batch_size: int      # N pairs per batch, 2N views: more negatives per anchor
    lr: float            # Adam step size; 1e-3 is stable for this small CNN
    temperature: float   # tau of NT-Xent; 0.5 sits in the middle of the usual 0.1-1 range
    width: int           # channels of the first conv layer; features have 4 * width dimensions
    proj_dim: int        # output of the projection head that the loss sees
    rotation_epochs: int  # pre-training epochs of the rotation pretext task
    finetune_steps: int  # optimiser steps of supervised training / fine-tuning on the few labels
    probe_seeds: int     # draws of the labelled subset averaged per accuracy (10/class is noisy)
    n_neighbours: int    # query images shown in the nearest-neighbour figure
    projection: Projection  # 2-D map of the features; t-SNE is clearer but slower

    def __post_init__(self) -> None:
        check_choice(self.projection, get_args(Projection), "projection")


SETTINGS = {
    "smoke": ContrastiveSettings(n_pretrain=256, simclr_epochs=1, batch_size=128, lr=1e-3,
                                 temperature=0.5, width=16, proj_dim=32, rotation_epochs=1,
                                 finetune_steps=5, probe_seeds=1, n_neighbours=4,
                                 projection="pca"),
    "cpu": ContrastiveSettings(n_pretrain=4000, simclr_epochs=25, batch_size=256, lr=1e-3,
                               temperature=0.5, width=32, proj_dim=64, rotation_epochs=2,
                               finetune_steps=400, probe_seeds=3, n_neighbours=6,
                               projection="tsne"),
    "full": ContrastiveSettings(n_pretrain=60000, simclr_epochs=60, batch_size=512, lr=1e-3,
                                temperature=0.5, width=64, proj_dim=128, rotation_epochs=15,
                                finetune_steps=1000, probe_seeds=5, n_neighbours=6,
                                projection="tsne"),
}


# ----------------------------------------------------------------------------------- losses
def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0) -> Tensor:
    """Triplet loss, eq. {eq}`contrastive-triplet`, averaged over the batch.

    max(0, ||f(x) - f(x+)||^2 - ||f(x) - f(x-)||^2 + margin) with squared Euclidean distances;
    all three inputs are embeddings of shape ``(B, D)``.
    """
    d_pos = (anchor - positive).pow(2).sum(-1)  # (B,)
    d_neg = (anchor - negative).pow(2).sum(-1)
    return F.relu(d_pos - d_neg + margin).mean()


def info_nce(scores: Tensor) -> Tensor:
    """InfoNCE loss, eq. {eq}`contrastive-infonce`, from a score matrix ``(N, N)``.

    Row i scores the query i against the N candidates; the positive is candidate i (the diagonal),
    the other N - 1 are negatives. The loss is the mean cross-entropy of picking the positive.
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square (N, N) matrix, got {tuple(scores.shape)}")
    return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent loss, eq. {eq}`contrastive-ntxent`, over the 2N views of N pairs.

    ``z1[i]`` and ``z2[i]`` (each ``(N, D)``) are two views of image i. Similarities are cosine
    similarities divided by ``temperature``; each of the 2N views has its partner as positive and
    the other 2N - 2 views as negatives; the self-similarity is masked out of the denominator.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # (2N, D), unit norm
    sim = z @ z.T / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, partner)


# ---------------------------------------------------------------------------- augmentations
def augment(
    x: Tensor,
    generator: torch.Generator,
    crop_scale: tuple[float, float] = (0.55, 1.0),
    max_rotation_deg: float = 12.0,
    flip_p: float = 0.5,
    contrast: float = 0.4,
    noise_std: float = 0.05,
) -> Tensor:
    """A random view of each image of a batch ``(B, C, H, W)`` in [0, 1], all in tensor ops.

    Random resized crop (a window of ``crop_scale`` times the side, anywhere inside the image,
    resized back), horizontal flip, a small rotation, contrast/brightness jitter and Gaussian
    noise. The random numbers come from ``generator`` (a CPU generator), so the same seed gives
    the same views on any device. The output has the input's shape and lies in [0, 1].
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    scale = uniform(*crop_scale)  # side of the crop window, as a fraction of the image side
    tx = uniform(-1, 1) * (1 - scale)  # the window stays inside the image
    ty = uniform(-1, 1) * (1 - scale)
    angle = uniform(-1, 1) * math.radians(max_rotation_deg)
    flip = torch.where(torch.rand(b, generator=generator) < flip_p, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], -1),
                         torch.stack([sin * flip, cos, ty], -1)], 1)  # (B, 2, 3): output -> input
    gain = uniform(1 - contrast, 1 + contrast).view(b, 1, 1, 1)
    noise = noise_std * torch.randn(x.shape, generator=generator)
    theta, gain, noise = theta.to(x), gain.to(x), noise.to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out * gain + noise).clamp(0, 1)


# ---------------------------------------------------------------------------------- encoder
class Encoder(nn.Module):
    """Small CNN f (28x28 -> 4 * width features h) with SimCLR's projection head g (h -> z).

    ``features(x)`` gives h, the representation used downstream; ``forward(x)`` gives z = g(h),
    what the contrastive loss sees.
    """

    def __init__(self, width: int = 32, proj_dim: int = 64):
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU()]

        self.feature_dim = 4 * width
        self.backbone = nn.Sequential(
            *block(1, width, 1),  # (B, w, 28, 28)
            *block(width, 2 * width, 2),  # (B, 2w, 14, 14)
            *block(2 * width, 4 * width, 2),  # (B, 4w, 7, 7)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, 4w)
        )
        self.head = nn.Sequential(nn.Linear(self.feature_dim, self.feature_dim), nn.ReLU(),
                                  nn.Linear(self.feature_dim, proj_dim))

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


@torch.no_grad()
def encoder_features(encoder: nn.Module | Callable[[Tensor], Tensor], x: Tensor,
                     batch_size: int = 512) -> Tensor:
    """Frozen features of ``x``: ``encoder.features`` for an :class:`Encoder`, else ``encoder(x)``.

    Runs in eval mode (BatchNorm uses its running statistics) on the encoder's device; returns a
    CPU tensor ``(N, D)``.
    """
    fn = encoder.features if hasattr(encoder, "features") else encoder
    was_training = getattr(encoder, "training", False)
    device = torch.device("cpu")
    if isinstance(encoder, nn.Module):
        encoder.eval()
        device = next(encoder.parameters()).device
    out = torch.cat([fn(x[i:i + batch_size].to(device)).cpu()
                     for i in range(0, len(x), batch_size)])
    if isinstance(encoder, nn.Module):
        encoder.train(was_training)
    return out.flatten(1)


# --------------------------------------------------------------------------------- training
def _batches(n: int, batch_size: int, generator: torch.Generator, drop_last: bool = True):
    order = torch.randperm(n, generator=generator)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def train_simclr(
    encoder: Encoder, images: Tensor, epochs: int, batch_size: int = 256, lr: float = 1e-3,
    temperature: float = 0.5, seed: int = 0, device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[float]:
    """Pre-train ``encoder`` with SimCLR: two augmented views per image, NT-Xent
    (eq. {eq}`contrastive-ntxent`) on their projections. Returns the loss of every step. On the
    CPU the encoder's convolution weights are left channels-last (``dgm.speed.channels_last``)."""
    gen = torch.Generator().manual_seed(seed)
    channels_last(encoder.to(device), device).train()  # 24 % faster steps on the CPU
    opt = torch.optim.Adam(encoder.parameters(), lr=lr, weight_decay=1e-6)
    losses = []
    steps = epochs * max(1, len(images) // batch_size)
    bar = progress_bar(total=steps, desc="SimCLR", enabled=progress, leave=False)
    for _ in range(epochs):
        for idx in _batches(len(images), batch_size, gen):
            x = images[idx]
            x1, x2 = augment(x, gen).to(device), augment(x, gen).to(device)
            loss = nt_xent(encoder(x1), encoder(x2), temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return losses


def rotate_batch(x: Tensor) -> tuple[Tensor, Tensor]:
    """The rotation pretext task: every image of ``x`` (B, C, H, W) turned by 0, 90, 180 and 270
    degrees, ``(4B, C, H, W)``, with the label 0..3 of its rotation, ``(4B,)``."""
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
    labels = torch.arange(4).repeat_interleave(len(x)).to(x.device)
    return rotated, labels


def train_rotation(
    encoder: Encoder, images: Tensor, epochs: int, batch_size: int = 128, lr: float = 1e-3,
    seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
) -> tuple[nn.Linear, list[float]]:
    """Pre-train ``encoder`` on the rotation pretext task (a 4-way classifier on its features).

    Returns the rotation head and the cross-entropy of every step.
    """
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(encoder.feature_dim, 4)
    encoder.to(device).train()
    head.to(device)
    opt = torch.optim.Adam([*encoder.backbone.parameters(), *head.parameters()], lr=lr)
    losses = []
    steps = epochs * max(1, len(images) // batch_size)
    bar = progress_bar(total=steps, desc="rotation", enabled=progress, leave=False)
    for _ in range(epochs):
        for idx in _batches(len(images), batch_size, gen):
            x, y = rotate_batch(images[idx].to(device))
            loss = F.cross_entropy(head(encoder.features(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update()
    bar.close()
    return head, losses


@torch.no_grad()
def rotation_accuracy(encoder: Encoder, head: nn.Linear, images: Tensor) -> float:
    """Fraction of rotated copies of ``images`` whose rotation the pretext classifier names."""
    x, y = rotate_batch(images)
    pred = head(encoder_features(encoder, x).to(next(head.parameters()).device)).argmax(-1).cpu()
    return (pred == y.cpu()).float().mean().item()


# ------------------------------------------------------------------------------ downstream
def few_label_indices(labels: Tensor, labels_per_class: int, seed: int = 0) -> Tensor:
    """Indices of ``labels_per_class`` examples of every class, drawn without replacement."""
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < labels_per_class:
            raise ValueError(f"class {int(c)} has only {len(members)} examples, "
                             f"fewer than labels_per_class={labels_per_class}")
        picks.append(members[torch.randperm(len(members), generator=gen)[:labels_per_class]])
    return torch.cat(picks).sort().values


def linear_probe(
    encoder: nn.Module | Callable[[Tensor], Tensor], train_ds: TensorDataset,
    test_ds: TensorDataset, labels_per_class: int, seed: int = 0,
) -> float:
    """Test accuracy of a logistic regression on frozen features, trained on
    ``labels_per_class`` labelled training examples per class (drawn with ``seed``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x_train, y_train = train_ds.tensors
    x_test, y_test = test_ds.tensors
    idx = few_label_indices(y_train, labels_per_class, seed)
    f_train = encoder_features(encoder, x_train[idx]).numpy()
    f_test = encoder_features(encoder, x_test).numpy()
    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(max_iter=2000, C=1.0)
    with threadpool_limits(1):  # BLAS threads fighting torch's make this 30x slower on 2 cores
        clf.fit(scaler.transform(f_train), y_train[idx].numpy())
    return float(np.mean(clf.predict(scaler.transform(f_test)) == y_test.numpy()))


def finetune(
    encoder: Encoder, train_ds: TensorDataset, labels_per_class: int, steps: int,
    n_classes: int = 10, lr: float = 1e-3, seed: int = 0, device: torch.device | str = "cpu",
    batch_size: int = 128,
) -> nn.Sequential:
    """Train ``encoder`` end to end with a linear classifier on ``labels_per_class`` labelled
    examples per class (the same draw as :func:`linear_probe` for the same ``seed``), with the
    augmentations of :func:`augment`. From a random encoder this is the supervised baseline; from
    a pre-trained one it is fine-tuning. Returns the classifier ``x -> logits``.

    The augmentations shift the statistics that batch normalisation tracks, and test images are
    not augmented: after training, the running statistics are recomputed on the clean labelled
    images (without that, accuracy at 100 labels per class varied from 0.47 to 0.62 between
    seeds in the cpu profile)."""
    x_train, y_train = train_ds.tensors
    idx = few_label_indices(y_train, labels_per_class, seed)
    x, y = x_train[idx], y_train[idx]
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(encoder.backbone, nn.Linear(encoder.feature_dim, n_classes)).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        pick = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        loss = F.cross_entropy(model(augment(x[pick], gen).to(device)), y[pick].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    recalibrate_batchnorm(model, x.to(device), batch_size)
    return model.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: Tensor, batch_size: int = 256) -> None:
    """Recompute every BatchNorm layer's running mean and variance as plain averages over ``x``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, ds: TensorDataset, batch_size: int = 512) -> float:
    """Fraction of ``ds`` that the classifier ``model`` (x -> logits) labels correctly."""
    x, y = ds.tensors
    model.eval()
    device = next(model.parameters()).device
    pred = torch.cat([model(x[i:i + batch_size].to(device)).argmax(-1).cpu()
                      for i in range(0, len(x), batch_size)])
    return (pred == y).float().mean().item()
