"""The instructor's copies of the models the homework fixes, rebuilt from a student's weights.

Each homework gives the student the architecture of its networks and asks for the parts the
homework is about. A hidden check of a training item receives only the trained *weights*, as
tensors (never code), and loads them into the classes here, in the grader's own process, so
that what it measures (a held-out loss on its own noise, samples from its own seeds, test bits
per dimension, a probe's accuracy) is computed by the course's code and not by the student's
kernel: a forged loss curve or a patched ``torch`` gains nothing. :class:`WeightsError` says, in
words a student can act on, why weights do not fit.

This module holds reference answers (a coupling layer, the NT-Xent loss, an Euler sampler, ...),
so a grading kernel cannot import it (``autograder.sandbox.KERNEL_MODULES``); what the notebooks
are handed (``EpsModel``, ``VelocityMLP``, ``image_tokens``, ...) lives in :mod:`dgm.handout` and
is re-exported here for the verdicts.

DDPM and VAE (solutions/ddpm.ipynb, solutions/vae.ipynb):

``EpsModel``, ``load_eps_model``   DDPM's small convolutional noise predictor eps_theta(x_t, t).
``mlp_layers``, ``mlp_forward``    the VAE's one-hidden-layer ReLU MLPs, rebuilt from weights.

Flow and contrastive (solutions/flow.ipynb, solutions/contrastive.ipynb):

``FlowNet``              the homework's RealNVP flow (logit preprocessing + affine couplings with
                         checkerboard masks), reference forward and inverse.
``flow_test_bpd``,
``flow_samples``         bits per dimension on held-out images, and samples, eq. (flow-bpd).
``ContrastiveEncoder``   the homework's small CNN with its projection head.
``probe_accuracy``       a logistic-regression probe on the encoder's frozen features.
``load_weights``         load a state dict sent by a kernel, with a clear message when it does
                         not fit.

Transformer (solutions/transformer.ipynb):

``image_tokens``,
``token_images``         Fashion-MNIST at the homework's scale (14 x 14 pixels, 16 grey levels, one
                         token per pixel, row by row) and back to (B, 1, 28, 28) images in [0, 1].
``PixelTransformer``     the homework's decoder-only transformer over pixel tokens (pre-norm GELU
                         blocks of dgm.sequence, sinusoidal positions, causal mask).
``transformer_test_bpd``,
``transformer_samples``  held-out bits per dimension on the 16-level scale, and samples (drawn with
                         cached keys and values, ``next_logits``).
``transformer_sample_scores``  FD_clf, coverage, grey-level histogram distance and near-copies of
                         samples at that scale.

Flow matching (solutions/flow_matching.ipynb):

``VelocityMLP``          the homework's velocity field v_theta(x_t, t): an MLP on the flattened
                         image and Fourier features of t.
``measure_velocity``     held-out conditional flow-matching loss and Euler samples, computed
                         with dgm.flow_matching from the sent weights.

The parameter names and shapes equal the notebooks' classes (checked by the reference solutions'
hidden checks, which load their own trained weights here).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.handout import (  # noqa: F401 - the handed-out pieces, reused and re-exported here
    BOS,
    FM_FREQUENCIES,
    LEVELS,
    SIDE,
    EpsModel,
    VelocityMLP,
    image_tokens,
    time_features,
    token_images,
)
from dgm.sequence import TransformerBlock, causal_mask, positional_encoding


class WeightsError(ValueError):
    """Weights sent by a kernel do not fit the model; the message says what differs."""


def load_weights(model: nn.Module, state, what: str, skip: tuple[str, ...] = ()) -> nn.Module:
    """Load ``state`` (a dict name -> tensor) into ``model`` after checking every name, shape and
    value; entries whose name ends with one of ``skip`` keep the model's own values."""
    if not isinstance(state, dict):
        raise WeightsError(f"expected the weights of {what} as a dict of tensors (its "
                           f"state_dict()), got {type(state).__name__}")
    own = {k: v for k, v in model.state_dict().items() if not k.endswith(skip)}
    sent = {k: v for k, v in state.items() if not k.endswith(skip)}
    missing, extra = sorted(set(own) - set(sent)), sorted(set(sent) - set(own))
    if missing or extra:
        raise WeightsError(f"the weights of {what} do not match the homework's architecture "
                           f"(missing: {missing[:4]}, {len(extra)} unexpected): keep the class "
                           "and the sizes of the Settings cell as given")
    for name, ref in own.items():
        value = sent[name]
        if not isinstance(value, Tensor) or tuple(value.shape) != tuple(ref.shape):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise WeightsError(f"{what}: {name} has shape {shape}, the homework's model has "
                               f"{tuple(ref.shape)}: keep the sizes of the Settings cell")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{what}: {name} holds NaN or infinite values (training diverged)")
    model.load_state_dict({**model.state_dict(), **{k: sent[k].to(own[k].dtype) for k in own}})
    return model


# ------------------------------------------------------------------------------------ flow
def checkerboard_masks(n_layers: int, h: int = 28, w: int = 28) -> list[Tensor]:
    """The homework's masks: layer k is 1 where (row + col + k) is even, flattened row by row."""
    r, c = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return [((r + c + k) % 2 == 0).float().flatten() for k in range(n_layers)]


class Coupling(nn.Module):
    """The homework's affine coupling, eq. (flows-affine-coupling), on flattened inputs (B, D)."""

    def __init__(self, mask: Tensor, hidden: int):
        super().__init__()
        self.register_buffer("mask", mask.float())
        d = mask.numel()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 2 * d))

    def params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The log-scale s and the shift t, each (B, D), zero where mask == 1."""
        s, t = self.net(x * self.mask).chunk(2, dim=1)
        return torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.params(x)
        return x * torch.exp(s) + t, s.sum(dim=1)

    def inverse(self, z: Tensor) -> Tensor:
        s, t = self.params(z)
        return (z - t) * torch.exp(-s)


class FlowNet(nn.Module):
    """The homework's flow: y_deq in [0, 1]^D -> logit -> couplings -> z, eq. (flows-cov)."""

    def __init__(self, n_layers: int, hidden: int, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha
        self.layers = nn.ModuleList(Coupling(m, hidden) for m in checkerboard_masks(n_layers))

    def forward(self, y_deq: Tensor) -> tuple[Tensor, Tensor]:
        shrunk = self.alpha + (1 - 2 * self.alpha) * y_deq
        x = torch.log(shrunk) - torch.log1p(-shrunk)
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(shrunk) - torch.log1p(-shrunk)).sum(dim=1)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)


def bpd_of(flow: nn.Module, y_deq: Tensor) -> Tensor:
    """Bits per dimension of each dequantised image y_deq (B, D), eq. (flows-bpd)."""
    d = y_deq.shape[1]
    z, logdet = flow(y_deq)
    log_py = -0.5 * (z**2 + math.log(2 * math.pi)).sum(dim=1) + logdet
    return (-log_py + d * math.log(256)) / (d * math.log(2))


@torch.no_grad()
def flow_test_bpd(flow: nn.Module, images: Tensor, seed: int = 0, batch_size: int = 250) -> float:
    """Mean bits per dimension of ``images`` (N, 1, 28, 28) in [0, 1] (pixels k / 255), with one
    uniform dequantisation draw per pixel from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    flow.eval()
    total = 0.0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].flatten(1).double()
        y_deq = (torch.round(x * 255) + torch.rand(x.shape, generator=gen, dtype=x.dtype)) / 256
        total += bpd_of(flow, y_deq.float()).double().sum().item()
    return total / len(images)


@torch.no_grad()
def flow_samples(flow: nn.Module, n: int, temperature: float = 0.7, seed: int = 0) -> Tensor:
    """``n`` samples (n, 1, 28, 28) in [0, 1]: z ~ N(0, temperature^2 I) mapped by the inverse."""
    z = temperature * torch.randn(n, 28 * 28, generator=torch.Generator().manual_seed(seed))
    return flow.inverse(z).clamp(0, 1).view(n, 1, 28, 28)


# ----------------------------------------------------------------------------- contrastive
class ContrastiveEncoder(nn.Module):
    """The homework's encoder: images (B, 1, 28, 28) -> features (B, feature_dim) -> projections."""

    def __init__(self, width: int, feature_dim: int, proj_dim: int):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, feature_dim),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, feature_dim), nn.ReLU(),
                                  nn.Linear(feature_dim, proj_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def recalibrate_batchnorm(encoder: nn.Module, images: Tensor) -> None:
    """Recompute every BatchNorm's running statistics on ``images`` (one pass, exact averages),
    so that what is measured does not depend on the statistics the kernel sent."""
    for m in encoder.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    encoder.train()
    encoder(images)
    encoder.eval()


@torch.no_grad()
def frozen_features(encoder: ContrastiveEncoder, images: Tensor, batch_size: int = 500) -> Tensor:
    """The encoder's features of ``images`` in eval mode (BatchNorm's running statistics)."""
    encoder.eval()
    return torch.cat([encoder.features(images[i:i + batch_size])
                      for i in range(0, len(images), batch_size)])


def fit_probe(f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor,
              epochs: int = 200, seed: int = 0) -> float:
    """Test accuracy of the homework's linear probe (standardised features, one linear layer,
    cross-entropy, full-batch Adam at learning rate 0.05 for ``epochs`` steps)."""
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    a, b = (f_train - mean) / std, (f_test - mean) / std
    gen = torch.Generator().manual_seed(seed)
    probe = nn.Linear(a.shape[1], n_classes)
    with torch.no_grad():
        bound = 1 / math.sqrt(a.shape[1])
        probe.weight.copy_(torch.empty_like(probe.weight).uniform_(-bound, bound, generator=gen))
        probe.bias.zero_()
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(epochs):
        loss = F.cross_entropy(probe(a), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (probe(b).argmax(1) == y_test).float().mean().item()


def probe_accuracy(encoder: ContrastiveEncoder, labelled: tuple[Tensor, Tensor],
                   test: tuple[Tensor, Tensor], epochs: int = 200, seed: int = 0) -> float:
    """Linear-probe test accuracy of the encoder's frozen features (images, labels) pairs."""
    f_lab, f_test = frozen_features(encoder, labelled[0]), frozen_features(encoder, test[0])
    return fit_probe(f_lab, labelled[1], f_test, test[1], epochs, seed)


def homework_augment(x: Tensor, generator: torch.Generator, max_shift: int = 3) -> Tensor:
    """The homework's views, per image: a shift by up to ``max_shift`` pixels (zero padding), a
    horizontal flip with probability 1/2 and a brightness factor in [0.6, 1.0]."""
    b = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(28)).view(b, 28, 1)
    cols = (dx.view(b, 1) + torch.arange(28)).view(b, 1, 28)
    out = padded[torch.arange(b).view(b, 1, 1), 0, rows, cols].unsqueeze(1)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)
    return out * (0.6 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator))


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent, eq. (con-ntxent)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    s = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(s, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


@torch.no_grad()
def held_out_nt_xent(encoder: ContrastiveEncoder, images: Tensor, temperature: float = 0.5,
                     batch_size: int = 256, seed: int = 0) -> float:
    """Mean NT-Xent of the encoder (eval mode) on two homework views of held-out images."""
    gen = torch.Generator().manual_seed(seed)
    encoder.eval()
    losses = []
    for i in range(0, len(images) - batch_size + 1, batch_size):
        x = images[i:i + batch_size]
        losses.append(nt_xent_loss(encoder(homework_augment(x, gen)),
                                   encoder(homework_augment(x, gen)), temperature).item())
    return sum(losses) / len(losses)


# ------------------------------------------------------------------- what the verdicts measure
#: The homework's fixed sizes per profile (the Settings cells of the notebooks).
FLOW_SIZES = {"smoke": (4, 128), "cpu": (6, 256), "full": (12, 1024)}  # (n_layers, hidden)
ENCODER_SIZES = {"smoke": (8, 200), "cpu": (16, 1000), "full": (64, 1000)}  # (width, n_labels)
FEATURE_DIM, PROJ_DIM, ALPHA = 64, 32, 0.05
N_HELD_OUT = 500  # test images a verdict measures on (all 443 of the course's CI subset)


def measure_flow(state, profile: str) -> dict:
    """What the flow's training verdict judges, computed here from the sent weights: test bits
    per dimension and statistics of 64 samples at temperature 0.7."""
    from dgm.data import load_dataset

    n_layers, hidden = FLOW_SIZES[profile]
    flow = load_weights(FlowNet(n_layers, hidden, ALPHA), state, "the flow", skip=("mask",))
    test = load_dataset("fashion_mnist", split="test", scale="01", subset=N_HELD_OUT, seed=0)
    s = flow_samples(flow, 64)
    return {"test_bpd": flow_test_bpd(flow, test.tensors[0]), "samples": s}


def measure_encoder(state, profile: str) -> dict:
    """What the contrastive training verdict judges, computed here from the sent weights: the
    linear-probe accuracy of the features and the NT-Xent of held-out views, both with the
    BatchNorm statistics recomputed on the labelled images."""
    from dgm.data import load_dataset

    width, n_labels = ENCODER_SIZES[profile]
    enc = load_weights(ContrastiveEncoder(width, FEATURE_DIM, PROJ_DIM), state, "the encoder")
    labelled = load_dataset("fashion_mnist", split="train", scale="01", subset=n_labels, seed=1)
    test = load_dataset("fashion_mnist", split="test", scale="01", subset=N_HELD_OUT, seed=0)
    recalibrate_batchnorm(enc, labelled.tensors[0])
    return {"probe_accuracy": probe_accuracy(enc, labelled.tensors, test.tensors),
            "held_out_nt_xent": held_out_nt_xent(enc, test.tensors[0])}


# ----------------------------------------------------------------------------- transformer
#: The homework's fixed sizes per profile (d_model, n_heads, n_layers), as in its Settings cell.
TRANSFORMER_SIZES = {"smoke": (32, 2, 1), "cpu": (64, 4, 2), "full": (128, 4, 4)}


class PixelTransformer(nn.Module):
    """The homework's model: tokens (B, L) in 0..16 (16 = start) -> logits (B, L, 16) of the next
    pixel; position i sees tokens 0..i only."""

    def __init__(self, d_model: int, n_heads: int, n_layers: int, n_positions: int = SIDE * SIDE):
        super().__init__()
        self.embed = nn.Embedding(LEVELS + 1, d_model)
        self.register_buffer("pe", positional_encoding(n_positions, d_model), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, LEVELS)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        x = self.embed(tokens) + self.pe[:length]  # (B, L, d_model)
        mask = causal_mask(length, device=tokens.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))  # (B, L, 16)


def load_transformer(state, profile: str) -> PixelTransformer:
    """A :class:`PixelTransformer` of the profile's sizes holding ``state`` (eval mode)."""
    return load_weights(PixelTransformer(*TRANSFORMER_SIZES[profile]), state, "the transformer").eval()


def shifted(tokens: Tensor) -> Tensor:
    """The model's input for targets ``tokens`` (B, L): the start token, then tokens[:, :-1]."""
    return torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)


@torch.no_grad()
def transformer_test_bpd(model: nn.Module, tokens: Tensor, batch_size: int = 250) -> float:
    """Mean bits per dimension (per pixel token, 16 levels: 4 bits is a uniform guess) of
    ``tokens`` (N, 196) under ``model``."""
    model.eval()
    total = 0.0
    for chunk in tokens.split(batch_size):
        logits = model(shifted(chunk))
        total += F.cross_entropy(logits.flatten(0, 1), chunk.flatten(), reduction="sum").item()
    return total / (tokens.numel() * math.log(2))


@torch.no_grad()
def next_logits(model: PixelTransformer, token: Tensor, cache: list[dict[str, Tensor]]) -> Tensor:
    """Logits (B, 16) of the pixel after ``token`` (B,), the next token of the sequences whose keys and
    values ``cache`` holds (one dict per block, see ``TransformerBlock.step``; empty dicts at the
    start): the last position of ``model(sequence)``, without recomputing the past."""
    pos = cache[0]["k"].shape[2] if cache and cache[0] else 0
    x = model.embed(token)[:, None] + model.pe[pos]  # (B, 1, d_model)
    for block, kv in zip(model.blocks, cache):
        x = block.step(x, kv)
    return model.head(model.norm(x))[:, 0]


@torch.no_grad()
def transformer_samples(model: PixelTransformer, n: int, temperature: float = 1.0, seed: int = 0) -> Tensor:
    """``n`` images (n, 1, 28, 28) in [0, 1] drawn pixel by pixel from ``model`` (keys and values cached)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    cache: list[dict[str, Tensor]] = [{} for _ in model.blocks]
    token = torch.full((n,), BOS, dtype=torch.long)
    drawn = []
    for _ in range(SIDE * SIDE):
        probs = (next_logits(model, token, cache) / temperature).softmax(-1)
        token = torch.multinomial(probs, 1, generator=gen)[:, 0]
        drawn.append(token)
    return token_images(torch.stack(drawn, dim=1))


def measure_transformer(state, profile: str, n_samples: int = 0) -> dict:
    """What the transformer's training verdicts judge, computed here from the sent weights: the
    bits per dimension of held-out test images at the homework's scale and, with ``n_samples``,
    that many samples (temperature 1, seed 2024) as (n, 1, 28, 28) images in [0, 1]."""
    from dgm.data import load_dataset

    model = load_transformer(state, profile)
    test = load_dataset("fashion_mnist", split="test", scale="01", subset=N_HELD_OUT, seed=0)
    out = {"test_bpd": transformer_test_bpd(model, image_tokens(test.tensors[0]))}
    if n_samples:
        out["samples"] = transformer_samples(model, n_samples, seed=2024)
    return out


def level_histogram(tokens: Tensor) -> Tensor:
    """Share of each of the 16 grey levels among ``tokens`` (any shape, values 0..15)."""
    return torch.bincount(tokens.flatten(), minlength=LEVELS).double() / tokens.numel()


def transformer_sample_scores(samples: Tensor) -> dict:
    """Scores of ``samples`` (n, 1, 28, 28) in [0, 1] at the homework's scale (14 x 14, 16 levels,
    blown up to 28 x 28): ``fd`` and ``coverage`` (the course's harness with the smoke-profile
    classifier), ``copies`` (share of near-copies of the training images) and ``level_tv``, the total
    variation distance between the samples' grey-level histogram and the held-out images' (0: same
    shares of every level; a model that never learnt the mostly black background scores about 0.45)."""
    from dgm.data import load_dataset
    from dgm.evaluate import evaluate_samples
    from dgm.memorisation import copy_share

    scores = evaluate_samples(samples, profile="smoke", scale="01")
    train, test = (image_tokens(load_dataset("fashion_mnist", split=split, scale="01").tensors[0])
                   for split in ("train", "test"))
    tv = 0.5 * (level_histogram(image_tokens(samples)) - level_histogram(test)).abs().sum().item()
    return {"fd": scores["fd"], "coverage": scores["coverage"], "level_tv": tv,
            "copies": copy_share(samples, token_images(train), token_images(test))}


# --- DDPM and VAE ---------------------------------------------------------------------------

def _tensors(state, what: str) -> dict[str, Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"expected the {what}'s weights as a dict of tensors (model.state_dict()), "
                           f"got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(f"expected the {what}'s weights to be tensors, but {len(bad)} of them are not")
    out = {str(k): v.detach().float().cpu() for k, v in state.items()}
    if not all(torch.isfinite(v).all() for v in out.values()):
        raise WeightsError(f"the {what}'s weights hold NaN or infinite values: did training diverge?")
    return out


def load_eps_model(state, T: int) -> EpsModel:
    """An :class:`EpsModel` holding ``state`` (its state_dict); the width is read from the weights."""
    tensors = _tensors(state, "noise predictor")
    first = tensors.get("inp.weight")
    if first is None or first.ndim != 4:
        raise WeightsError("expected the state_dict of the homework's EpsModel (keys inp.weight, "
                           f"emb1.weight, ...), got {len(tensors)} tensors, none of them a 4-d inp.weight")
    width = int(first.shape[0])
    model = EpsModel(T, width)
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), len(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or extra or wrong:  # names the model's own keys only: the notebook chose the others
        raise WeightsError(f"the weights do not fit the homework's EpsModel(T={T}, width={width}): missing "
                           f"{missing[:4]}, {extra} unexpected, wrong shape: {wrong[:4]}")
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def mlp_layers(state, sizes: Sequence[int], what: str) -> list[tuple[Tensor, Tensor]]:
    """The (weight, bias) pairs of a stack of ``nn.Linear`` layers ``sizes[0] -> sizes[1] -> ...``.

    ``state`` is a state_dict; its tensors are taken in order, whatever their names, so any
    naming of the layers fits, and a last layer written as two equal heads (``mu`` and
    ``logvar``) counts as one layer whose outputs are the first head's, then the second's.
    Raises :class:`WeightsError` naming the shapes expected and found.
    """
    tensors = list(_tensors(state, what).values())
    expected = []
    for n_in, n_out in itertools.pairwise(sizes):
        expected += [(n_out, n_in), (n_out,)]
    found = [tuple(t.shape) for t in tensors]
    if (len(found) == len(expected) + 2 and found[:-4] == expected[:-2] and found[-4] == found[-2]
            and found[-3] == found[-1]):
        # the last layer written as two heads (e.g. one for mu, one for logvar): stack them
        tensors = tensors[:-4] + [torch.cat(tensors[-4::2]), torch.cat(tensors[-3::2])]
        found = [tuple(t.shape) for t in tensors]
    if found != expected:
        raise WeightsError(
            f"expected the {what} to be the MLP the exercise fixes, nn.Linear layers "
            f"{' -> '.join(map(str, sizes))} (parameter shapes {expected}), got parameter shapes "
            f"{found[:8]}")
    return [(tensors[k], tensors[k + 1]) for k in range(0, len(tensors), 2)]


def mlp_forward(layers: Sequence[tuple[Tensor, Tensor]], x: Tensor) -> Tensor:
    """Apply the linear layers with a ReLU between each two: (B, sizes[0]) -> (B, sizes[-1])."""
    for k, (weight, bias) in enumerate(layers):
        x = F.linear(x, weight, bias)
        if k < len(layers) - 1:
            x = F.relu(x)
    return x


# --- flow matching ----------------------------------------------------------------------------

#: The flow-matching homework's hidden width per profile (its Settings cell).
FM_HIDDEN = {"smoke": 256, "cpu": 512, "full": 1024}
def load_velocity_model(state, profile: str) -> VelocityMLP:
    """A :class:`VelocityMLP` of the profile's width holding ``state`` (a state_dict)."""
    return load_weights(VelocityMLP(FM_HIDDEN[profile]), state, "the velocity model").eval()


@torch.no_grad()
def fm_heldout_loss(model: nn.Module, images: Tensor, seed: int = 2024, repeats: int = 2) -> float:
    """The conditional flow-matching loss (dgm.flow_matching.cfm_loss) of ``model`` on
    ``images`` (N, 1, 28, 28) in [-1, 1], each taken ``repeats`` times, with t and x_0 drawn
    from a generator seeded with ``seed``."""
    from dgm.flow_matching import cfm_loss

    x1 = images.float().repeat(repeats, 1, 1, 1)
    return cfm_loss(model, x1, generator=torch.Generator().manual_seed(seed)).item()


@torch.no_grad()
def fm_samples(model: nn.Module, n: int, steps: int = 50, seed: int = 2024) -> Tensor:
    """``n`` images (n, 1, 28, 28) in [-1, 1]: Euler with ``steps`` steps (dgm.flow_matching)."""
    from dgm.flow_matching import sample

    x = sample(model, (n, 1, 28, 28), steps, "euler", generator=torch.Generator().manual_seed(seed))
    return x.float().clamp(-1, 1)


def measure_velocity(state, profile: str, n_samples: int = 200, steps: int = 50) -> dict:
    """What the flow-matching training verdicts judge, computed here from the sent weights: the
    held-out CFM loss on the test images and ``n_samples`` Euler samples."""
    from dgm.data import load_dataset

    model = load_velocity_model(state, profile)
    test = load_dataset("fashion_mnist", split="test", scale="pm1", subset=N_HELD_OUT, seed=0)
    return {"heldout_loss": fm_heldout_loss(model, test.tensors[0]),
            "samples": fm_samples(model, n_samples, steps)}
