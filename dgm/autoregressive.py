"""Autoregressive image models, introduced in book/autoregressive.md ({ref}`ar-chapter`).

Both models factorise p(x) = prod_i p(x_i | x_<i) over the 784 pixels in raster order,
eq. {eq}`ar-chain-rule`, with a 256-way softmax per pixel (the transformer can instead output a
discretised logistic mixture, ``head="logistic_mixture"``, ``dgm.logistic_mixture``):

``pixel_mask``, ``MaskedConv2d``  the masks of type A and B, eq. {eq}`ar-masked-conv`.
``PixelCNN``                     masked convolutions, eq. {eq}`ar-masked-conv`.
``PixelTransformer``             a decoder-only transformer over pixel tokens, built from
                                 ``dgm.sequence``'s blocks, with a class token as its first
                                 input and a key-value cache for sampling, eq. {eq}`ar-kv-cost`.
``log_prob``, ``nll_bits_per_dim``  exact log-likelihood, eq. {eq}`ar-nll-bpd` (the conversion
                                 is ``dgm.evaluate.bits_per_dim`` with ``scale="bytes"``, as for
                                 the flows).
``sample_categorical``           Gumbel-max sampling with a temperature, eq. {eq}`ar-temperature`.
``pixel_log_prob``, ``sample_pixel``  log p(x_i | x_<i) and one draw, from a model's outputs,
                                 for either head.
``sample``                       D sequential steps, with a cache (keys and values of the
                                 transformer, finished rows of the PixelCNN) or without.
``input_dependence``             which inputs each output pixel depends on (autograd), the check
                                 that the Jacobian is strictly triangular.
``train_autoregressive``         teacher forcing with label dropout to ``NULL_CLASS``.

Images are ``(B, 1, H, W)`` floats in [0, 1] (``load_dataset(scale="01")``); their pixel
levels are ``round(255 x)``. Labels ``y (B,)`` are class indices, ``NULL_CLASS`` (-1) or
``None`` for "no class". Checked in tests/test_autoregressive.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm import logistic_mixture
from dgm.config import check_choice
from dgm.evaluate import bits_per_dim
from dgm.progress import progress_bar
from dgm.sequence import (MultiHeadAttention, TransformerBlock, causal_mask,
                          combine_heads, positional_encoding, split_heads)
from dgm.unet import NULL_CLASS

LEVELS = 256  # grey levels of an 8-bit pixel: the size of every softmax
MaskType = Literal["A", "B"]
Positions = Literal["learnt", "rows_cols", "sinusoidal"]
Schedule = Literal["exponential", "cosine"]
Head = Literal["softmax", "logistic_mixture"]


@dataclass(frozen=True)
class AutoregressiveSettings:
    """Sizes of the autoregressive chapter's experiments for one run profile."""

    subset: int            # training images (the shared offline data has 4,000)
    batch: int             # images per step
    p_uncond: float        # labels replaced by NULL_CLASS in training: one model, p(x) and p(x | y)
    cnn_hidden: int        # channels of the PixelCNN; the main cost of a step
    cnn_layers: int        # masked 3x3 layers of type B after the 7x7 layer of type A
    cnn_epochs: int        # passes over the training subset
    cnn_lr: float          # Adam, decayed to 10 % over training
    tf_d_model: int        # width of the transformer's tokens
    tf_heads: int          # attention heads
    tf_layers: int         # transformer blocks; attention over 784 tokens dominates the cost
    tf_epochs: int         # passes over the training subset
    tf_lr: float           # Adam, decayed to 10 % over training
    tf_positions: str      # "learnt", "rows_cols" or "sinusoidal" positional vectors
    tf_schedule: str       # learning-rate decay of the transformer, "exponential" or "cosine"
    tf_warmup: int         # steps of linear learning-rate warm-up of the transformer
    eval_samples: int      # transformer samples scored by dgm.evaluate; FD depends on N, so the
                           # N of the VAE and diffusion chapters
    eval_temperature: float  # temperature of the scored samples
    samples_per_class: int  # columns of the sample grids (78 images per model in cpu: 14 s of
                            # CPU for the PixelCNN with its row cache, 6 s for the transformer)
    uncached_images: int   # images drawn without the key-value cache, to time it (it is slow:
                           # about 5 CPU-seconds per image in cpu)
    threads: int | None    # torch CPU threads (None: torch's default); 1 on shared 2-core
                           # machines, where a second thread mostly waits (measured 2-4x slower)
    progress: bool         # tqdm bars
    seed: int = 0


SETTINGS = {
    # seconds: every cell runs, the numbers mean nothing
    "smoke": AutoregressiveSettings(subset=128, batch=64, p_uncond=0.2, cnn_hidden=16,
                                    cnn_layers=2, cnn_epochs=1, cnn_lr=3e-3, tf_d_model=16,
                                    tf_heads=2, tf_layers=1, tf_epochs=1, tf_lr=3e-3,
                                    tf_positions="rows_cols", tf_schedule="cosine", tf_warmup=1,
                                    eval_samples=64, eval_temperature=1.0, samples_per_class=2,
                                    uncached_images=1, threads=1, progress=False),
    # 2 cores, one thread: the transformer needs 3 epochs. Old recipe (per-pixel positions,
    # pixel vectors of spread 1, lr 2e-3 decayed exponentially): 1 epoch test 4.03 bits/dim and
    # horizontal streaks, 3 epochs 3.68 and streaky blobs (FD 251 at N = 443). This recipe (rows +
    # columns, spread 0.02, lr 3e-3, warm-up and cosine): 3 epochs 3.37 and smooth garments
    # (FD 169), at the same cost per step; benchmarks/results/autoregressive_recipe_cpu.json.
    # 2 epochs with 2 heads (0.62 instead of 0.75 CPU-s per step) fell to 3.58 bits/dim, FD 228
    # (N = 443, sample seed 11; 163 with these settings) and streaky, mostly empty samples: not
    # worth its 115 CPU-seconds. CPU-seconds at one thread:
    # PixelCNN training ~90, transformer training ~280, sampling and scoring ~55 (row and
    # key-value caches), the rest ~25.
    "cpu": AutoregressiveSettings(subset=4000, batch=32, p_uncond=0.2, cnn_hidden=48,
                                  cnn_layers=6, cnn_epochs=2, cnn_lr=2e-3, tf_d_model=64,
                                  tf_heads=4, tf_layers=2, tf_epochs=3, tf_lr=3e-3,
                                  tf_positions="rows_cols", tf_schedule="cosine", tf_warmup=20,
                                  eval_samples=443, eval_temperature=1.0, samples_per_class=6,
                                  uncached_images=1, threads=1, progress=True),
    # one GPU: the whole training set when it is there
    "full": AutoregressiveSettings(subset=60000, batch=64, p_uncond=0.2, cnn_hidden=96,
                                   cnn_layers=8, cnn_epochs=10, cnn_lr=1e-3, tf_d_model=128,
                                   tf_heads=4, tf_layers=4, tf_epochs=5, tf_lr=1e-3,
                                   tf_positions="rows_cols", tf_schedule="cosine",
                                   tf_warmup=200, eval_samples=2000, eval_temperature=1.0,
                                   samples_per_class=10,
                                   uncached_images=4, threads=None, progress=True),
}


def to_levels(x: Tensor) -> Tensor:
    """Images in [0, 1] -> integer pixel levels 0..255 (long), the targets of the softmax."""
    return (x * (LEVELS - 1)).round().long().clamp(0, LEVELS - 1)


def _class_index(y: Tensor | None, batch: int, n_classes: int, device) -> Tensor:
    """Labels -> rows of a class embedding: NULL_CLASS (or None) -> 0, class c -> c + 1."""
    if y is None:
        return torch.zeros(batch, dtype=torch.long, device=device)
    y = torch.as_tensor(y, device=device).long().expand(batch)
    if ((y < NULL_CLASS) | (y >= n_classes)).any():
        raise ValueError(f"labels must be NULL_CLASS ({NULL_CLASS}) or in 0..{n_classes - 1}, "
                         f"got values {sorted(set(y.tolist()))}")
    return y + 1


# ------------------------------------------------------------------------------------ PixelCNN
def pixel_mask(k: int, mask_type: MaskType) -> Tensor:
    """``(k, k)`` mask of a masked convolution, eq. {eq}`ar-masked-conv`: 1 on the rows above
    the centre and left of it in the centre row; type B also keeps the centre, type A not."""
    check_choice(mask_type, get_args(MaskType), "mask type")
    if k % 2 == 0:
        raise ValueError(f"kernel size must be odd so that it has a centre, got {k}")
    mask = torch.zeros(k, k)
    mask[: k // 2] = 1
    mask[k // 2, : k // 2 + (mask_type == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution whose kernel is multiplied by :func:`pixel_mask`, so that an
    output pixel sees only the pixels before it in raster order (type A) or also itself (B)."""

    def __init__(self, mask_type: MaskType, in_channels: int, out_channels: int, k: int):
        super().__init__(in_channels, out_channels, k, padding=k // 2)
        self.register_buffer("mask", pixel_mask(k, mask_type))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    """PixelCNN {cite}`oord2016pixelrnn`: a 7x7 masked convolution of type A, ``n_layers``
    residual 3x3 masked convolutions of type B, and 1x1 convolutions to 256 logits per pixel.

    A class embedding (row 0: no class) is added to every layer's features, as in conditional
    PixelCNN {cite}`oord2016conditional`. ``forward(x (B, 1, H, W) in [0, 1], y)`` returns
    logits ``(B, 256, H, W)``; output pixel i depends on input pixels j < i only.
    """

    def __init__(self, hidden: int = 48, n_layers: int = 6, n_classes: int = 10):
        super().__init__()
        self.n_classes, self.n_layers = n_classes, n_layers
        self.input = MaskedConv2d("A", 1, hidden, 7)
        self.layers = nn.ModuleList(MaskedConv2d("B", hidden, hidden, 3) for _ in range(n_layers))
        self.class_bias = nn.Embedding(n_classes + 1, hidden * (n_layers + 1))
        nn.init.zeros_(self.class_bias.weight)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, 4 * hidden, 1), nn.ReLU(),
                                 nn.Conv2d(4 * hidden, LEVELS, 1))
        #: rows above a pixel that can reach it: 3 from the 7x7 layer, 1 per 3x3 layer
        self.rows_above = 3 + n_layers

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The masked convolutions: ``(B, 1, H, W)`` -> ``(B, hidden, H, W)``."""
        bias = self.class_bias(_class_index(y, len(x), self.n_classes, x.device))
        bias = bias.view(len(x), self.n_layers + 1, -1, 1, 1)  # (B, layers + 1, hidden, 1, 1)
        h = self.input(2 * x - 1) + bias[:, 0]
        for i, layer in enumerate(self.layers):
            h = h + layer(F.relu(h)) + bias[:, i + 1]
        return h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.out(self.features(x, y))  # (B, 256, H, W)

    def step_logits(self, x: Tensor, y: Tensor | None, i: int, cache: dict[str, Tensor] | None = None
                    ) -> Tensor:
        """Logits ``(B, 256)`` of pixel ``i`` (raster order), the 1x1 head on that pixel alone.

        Without ``cache``: the masked convolutions on the band of rows that can reach pixel i.
        With ``cache`` (a dict, empty at pixel 0, then passed to every step in order): only the
        current row of every layer, from the row above of the layer below, kept from earlier
        steps. A feature depends only on pixels before its own position (eq. {eq}`ar-triangular`),
        so a row's features are final once the row is done, and each step convolves 2 rows
        (4 of the input for the 7x7 layer) instead of ``rows_above + 1``."""
        width = x.shape[-1]
        row, col = divmod(i, width)
        if cache is None:
            top = max(0, row - self.rows_above)
            h = self.features(x[:, :, top:row + 1], y)[:, :, row - top, col]  # (B, hidden)
            return self.out(h[:, :, None, None])[:, :, 0, 0]
        if "h" not in cache:  # features of every layer, (B, layers + 1, hidden, H, W)
            cache["h"] = x.new_zeros(len(x), self.n_layers + 1, self.input.out_channels, *x.shape[2:])
            bias = self.class_bias(_class_index(y, len(x), self.n_classes, x.device))
            cache["bias"] = bias.view(len(x), self.n_layers + 1, -1, 1)  # (B, layers + 1, hidden, 1)
        feats, bias = cache["h"], cache["bias"]
        top = max(0, row - 3)                                   # the 7x7 layer reaches 3 rows up
        h = self.input(2 * x[:, :, top:row + 1] - 1)[:, :, -1] + bias[:, 0]  # (B, hidden, W)
        feats[:, 0, :, row] = h
        for k, layer in enumerate(self.layers):                 # a 3x3 layer reaches 1 row up
            below = F.relu(feats[:, k, :, max(0, row - 1):row + 1])
            h = h + layer(below)[:, :, -1] + bias[:, k + 1]
            feats[:, k + 1, :, row] = h
        return self.out(h[:, :, None, col:col + 1])[:, :, 0, 0]


# --------------------------------------------------------------------------------- transformer
class CausalSelfAttention(MultiHeadAttention):
    """``dgm.sequence.MultiHeadAttention`` (same weights, eq. {eq}`seq-mha`) for causal
    self-attention, with the softmax of eq. {eq}`seq-attention` computed by torch's fused
    ``scaled_dot_product_attention``, which never stores the (L, L) weights: over 784 pixel
    tokens it trains several times faster on a CPU. Returns ``(out, None)``: no weights.
    tests/test_autoregressive.py checks it against :func:`dgm.sequence.attention`.
    """

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None
                ) -> tuple[Tensor, None]:
        n = x.shape[1]
        if context is not None or (mask is not None and not torch.equal(mask, causal_mask(n, mask.device))):
            raise ValueError("CausalSelfAttention does causal self-attention only: pass no context "
                             "and the causal_mask (or None); use MultiHeadAttention otherwise")
        q, k, v = (split_heads(w(x), self.n_heads) for w in (self.w_q, self.w_k, self.w_v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, L, d_model / h)
        return self.w_o(combine_heads(out)), None


class PixelTransformer(nn.Module):
    """A decoder-only transformer over the pixels of an image in raster order, built from
    ``dgm.sequence.TransformerBlock`` (pre-norm, GELU) with the causal mask of eq. {eq}`seq-causal`.

    The input sequence is ``[c, e(x_1), ..., e(x_{D-1})]``, eq. {eq}`ar-transformer`: a class
    token ``c`` (class or "no class") in front, so the output at position i predicts x_i from the
    class and x_<i.

    ``positions``: one learnt vector per pixel (``"learnt"``), a learnt vector per row plus one
    per column (``"rows_cols"``: 28 + 28 vectors that each pixel shares with its row and column,
    so the pixel above is as easy to locate as the pixel to the left), or the sinusoids of
    eq. {eq}`seq-pe`. ``embed_std`` is the spread of the initial pixel and class vectors: 0.02,
    as in GPT-2, keeps them on the scale of the learnt positions (torch's default of 1 drowns
    the positions, and the model learns them late).

    ``head``: 256 logits per pixel (``"softmax"``), or the ``3 n_mix`` parameters of a
    discretised logistic mixture (``"logistic_mixture"``, ``dgm.logistic_mixture``), an ordinal
    output in which neighbouring levels share their probability. Either way the outputs are
    ``(B, out_channels, H, W)``, and :func:`pixel_log_prob` and :func:`sample_pixel` read them.
    """

    def __init__(self, shape: tuple[int, int] = (28, 28), d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 2, n_classes: int = 10, positions: Positions = "learnt",
                 embed_std: float = 0.02, head: Head = "softmax", n_mix: int = 10):
        super().__init__()
        check_choice(positions, get_args(Positions), "positions")
        self.head_kind = check_choice(head, get_args(Head), "output head")
        if n_mix < 1:
            raise ValueError(f"n_mix (mixture components) must be at least 1, got {n_mix}")
        self.out_channels = LEVELS if head == "softmax" else 3 * n_mix
        self.shape, self.n_classes = tuple(shape), n_classes
        self.dims = shape[0] * shape[1]
        self.pixel_embed = nn.Embedding(LEVELS, d_model)
        self.class_embed = nn.Embedding(n_classes + 1, d_model)
        for table in (self.pixel_embed, self.class_embed):
            nn.init.normal_(table.weight, std=embed_std)
        self.positions = positions
        if positions == "learnt":
            self.pos = nn.Parameter(0.02 * torch.randn(self.dims, d_model))
        elif positions == "rows_cols":  # one learnt vector per row plus one per column
            self.row_pos = nn.Parameter(0.02 * torch.randn(shape[0], 1, d_model))
            self.col_pos = nn.Parameter(0.02 * torch.randn(1, shape[1], d_model))
        else:
            self.register_buffer("pos", positional_encoding(self.dims, d_model), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads) for _ in range(n_layers))
        for block in self.blocks:  # the same attention, with a fused kernel for training
            block.attn = CausalSelfAttention(d_model, n_heads)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, self.out_channels)

    def position_table(self) -> Tensor:
        """The positional vectors ``(D, d_model)`` added to the input sequence, in raster order."""
        if self.positions == "rows_cols":
            return (self.row_pos + self.col_pos).flatten(0, 1)  # (H, W, d) -> (D, d)
        return self.pos

    def inputs(self, x: Tensor) -> Tensor:
        """Images ``(B, 1, H, W)`` -> the pixel vectors ``e(x_i)``, ``(B, D, d_model)``."""
        return self.pixel_embed(to_levels(x).flatten(1))

    def logits_from_inputs(self, e: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel vectors ``(B, D, d_model)`` -> outputs ``(B, out_channels, H, W)``: the logits
        (softmax head) or mixture parameters of every pixel, by teacher forcing."""
        b = len(e)
        cls = self.class_embed(_class_index(y, b, self.n_classes, e.device))[:, None]
        seq = torch.cat([cls, e[:, :-1]], dim=1) + self.position_table()  # shifted right by the class token
        mask = causal_mask(self.dims, device=e.device)
        for block in self.blocks:
            seq = block(seq, mask)
        out = self.head(self.norm(seq))  # (B, D, out_channels)
        return out.transpose(1, 2).reshape(b, self.out_channels, *self.shape)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.logits_from_inputs(self.inputs(x), y)

    def prefix_logits(self, levels: Tensor, y: Tensor | None) -> Tensor:
        """Outputs ``(B, out_channels)`` of the next pixel after ``levels`` ``(B, i)``, no cache:
        the whole prefix goes through the network again."""
        b, i = levels.shape
        cls = self.class_embed(_class_index(y, b, self.n_classes, levels.device))[:, None]
        seq = torch.cat([cls, self.pixel_embed(levels)], dim=1) + self.position_table()[: i + 1]
        mask = causal_mask(i + 1, device=levels.device)
        for block in self.blocks:
            seq = block(seq, mask)
        return self.head(self.norm(seq[:, -1]))

    def cached_logits(self, token: Tensor, i: int, cache: list[dict[str, Tensor]]) -> Tensor:
        """Outputs ``(B, out_channels)`` of pixel ``i`` from the input vector at position i, ``(B, d)``
        (the class token for i = 0, else e(x_{i-1})), using and extending the cached keys and
        values of positions < i: one token's work per layer, eq. {eq}`ar-kv-cost`."""
        h = (token + self.position_table()[i])[:, None]  # (B, 1, d)
        for block, kv in zip(self.blocks, cache):
            h = block.step(h, kv)  # extends kv to (B, n_heads, i + 1, d_head)
        return self.head(self.norm(h[:, 0]))


# ------------------------------------------------------------------------ likelihood, sampling
def _is_mixture(model: nn.Module) -> bool:
    return getattr(model, "head_kind", "softmax") == "logistic_mixture"


def pixel_log_prob(model: nn.Module, out: Tensor, levels: Tensor) -> Tensor:
    """log p(x_i | x_<i) in nats of integer ``levels (B, ...)`` from the model's outputs
    ``(B, C, ...)``: log-softmax of the logits, or the discretised logistic mixture."""
    if _is_mixture(model):
        return logistic_mixture.log_prob_levels(out, levels)
    return -F.cross_entropy(out, levels, reduction="none")


def sample_pixel(model: nn.Module, out: Tensor, temperature: float | Tensor = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """One level per row of the outputs ``(B, C)`` of one pixel: :func:`sample_categorical`
    for the softmax, ``logistic_mixture.sample_levels`` (temperature scales the logistics'
    scales) for the mixture."""
    if _is_mixture(model):
        return logistic_mixture.sample_levels(out, temperature, generator)
    return sample_categorical(out, temperature, generator)


def log_prob(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
    """Exact log-likelihood ``(B,)`` in nats of the 8-bit images ``x``, eq. {eq}`ar-chain-rule`:
    the sum over pixels of log p(x_i | x_<i), all at once by teacher forcing."""
    return pixel_log_prob(model, model(x, y), to_levels(x)[:, 0]).flatten(1).sum(1)


@torch.no_grad()
def nll_bits_per_dim(model: nn.Module, x: Tensor, y: Tensor | None = None,
                     batch_size: int = 64) -> float:
    """Mean negative log-likelihood of ``x`` in bits/dim, eq. {eq}`ar-nll-bpd` (with ``y``:
    of p(x | y); without: of p(x))."""
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for s in range(0, len(x), batch_size):
        yb = None if y is None else y[s:s + batch_size].to(device)
        total += -log_prob(model, x[s:s + batch_size].to(device), yb).sum().item()
    return bits_per_dim(total / len(x), int(math.prod(x.shape[1:])), scale="bytes")


def sample_categorical(logits: Tensor, temperature: float | Tensor = 1.0,
                       generator: torch.Generator | None = None) -> Tensor:
    """One draw per row of ``logits (B, K)`` from softmax(logits / T), eq. {eq}`ar-temperature`,
    by the Gumbel-max trick: argmax(logits / T + g) = argmax(logits + T g), g ~ Gumbel(0, 1);
    the second form gives the argmax at ``T = 0``. ``temperature`` is a number or one per row,
    ``(B,)``. The noise is drawn on the CPU from ``generator``, so a seed gives the same draws
    on every device."""
    t = torch.as_tensor(temperature, dtype=torch.float64)
    if (t < 0).any():
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    gumbel = -torch.log(-torch.log(u))  # (B, K)
    noise = (t.view(-1, 1) if t.ndim else t) * gumbel
    return (logits.double() + noise.to(logits.device)).argmax(-1)


@torch.no_grad()
def sample(model: nn.Module, n: int, y: Tensor | None = None, temperature: float | Tensor = 1.0,
           generator: torch.Generator | None = None, use_cache: bool = True,
           shape: tuple[int, int] = (28, 28), guidance: float = 0.0) -> Tensor:
    """Draw ``n`` images ``(n, 1, H, W)`` in [0, 1], pixel by pixel in raster order: D
    sequential network calls. ``y`` and ``temperature`` are one value or one per image;
    ``use_cache`` keeps the transformer's keys and values, or the PixelCNN's features of
    finished rows (``PixelCNN.step_logits``); the samples are the same without it.

    ``guidance`` w > 0 (softmax heads, with ``y``): classifier-free guidance on the logits of
    every pixel, (1 + w) logits(y) - w logits(NULL_CLASS), as eq. {eq}`sg-cfg` does on the noise;
    the unconditional logits come from a second copy of the batch, so it costs twice as much."""
    if guidance and (y is None or _is_mixture(model)):
        raise ValueError("guidance needs labels y and a softmax head (the mixture's parameters "
                         "are not logits); pass guidance=0 otherwise")
    model.eval()
    p = next(model.parameters())
    h, w = getattr(model, "shape", shape)
    if y is not None:
        y = torch.as_tensor(y, device=p.device).long().expand(n)
    m = n
    if guidance:  # rows n..2n-1: the same images without their class
        y, m = torch.cat([y, torch.full_like(y, NULL_CLASS)]), 2 * n
    x = torch.zeros(m, 1, h, w, device=p.device, dtype=p.dtype)
    levels = torch.zeros(m, h * w, dtype=torch.long, device=p.device)
    cnn_cache = {} if use_cache else None  # PixelCNN: features of finished rows
    if isinstance(model, PixelTransformer) and use_cache:
        cache = [{} for _ in model.blocks]
        token = model.class_embed(_class_index(y, m, model.n_classes, p.device))
    for i in range(h * w):
        if isinstance(model, PixelTransformer):
            if use_cache:
                if i > 0:
                    token = model.pixel_embed(levels[:, i - 1])
                logits = model.cached_logits(token, i, cache)
            else:
                logits = model.prefix_logits(levels[:, :i], y)
        else:
            logits = model.step_logits(x, y, i, cnn_cache)
        if guidance:
            logits = (1 + guidance) * logits[:n] - guidance * logits[n:]
        levels[:, i] = sample_pixel(model, logits, temperature, generator).repeat(m // n)
        x.view(m, -1)[:, i] = levels[:, i].to(x.dtype) / (LEVELS - 1)
    return x[:n]


def input_dependence(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
    """``(D, D)`` matrix whose entry (i, j) is the largest |d logit_i / d input_j| over the
    logits of output pixel i (in a random direction) and the features of input j, by autograd.

    The input of a PixelCNN is the image itself; that of the transformer is the vector e(x_j)
    that stands for pixel j. Zero on and above the diagonal means that output i depends only
    on inputs j < i, eq. {eq}`ar-triangular`. ``x`` is one image ``(1, 1, H, W)``.
    """
    is_transformer = isinstance(model, PixelTransformer)
    u = model.inputs(x).detach() if is_transformer else x.detach().clone()
    d = x[0].numel()
    channels = getattr(model, "out_channels", LEVELS)
    direction = torch.randn(channels, generator=torch.Generator().manual_seed(0)).to(u)

    def outputs(v):
        logits = model.logits_from_inputs(v, y) if is_transformer else model(v, y)
        return torch.einsum("bkhw,k->bhw", logits, direction).reshape(-1)  # (D,)

    jac = torch.autograd.functional.jacobian(outputs, u, vectorize=True)  # (D, *u.shape)
    return jac.reshape(d, d, -1).abs().amax(-1)


# -------------------------------------------------------------------------------------- training
def drop_labels(y: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace each label by NULL_CLASS with probability ``p_uncond``."""
    drop = torch.rand(y.shape, generator=generator) < p_uncond
    return torch.where(drop.to(y.device), torch.full_like(y, NULL_CLASS), y)


def lr_factor(step: int, total: int, schedule: Schedule = "exponential", warmup: int = 0,
              final: float = 0.1) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based) of ``total``: a linear
    warm-up from 1 / warmup to 1 over the first ``warmup`` steps, times a decay from 1 at step 0
    to ``final`` at step ``total``, exponential (``final ** (step / total)``) or cosine
    (``final + (1 - final) (1 + cos(pi step / total)) / 2``)."""
    check_choice(schedule, get_args(Schedule), "learning-rate schedule")
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    frac = min(step / max(1, total), 1.0)
    if schedule == "exponential":
        return ramp * final ** frac
    return ramp * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * frac)))


def train_autoregressive(model: nn.Module, loader, epochs: int, lr: float, p_uncond: float = 0.0,
                         device: torch.device | None = None, progress: bool = False,
                         seed: int = 0, schedule: Schedule = "exponential", warmup: int = 0,
                         weight_decay: float = 0.0) -> dict[str, list[float]]:
    """Maximum likelihood by teacher forcing: minimise the mean cross-entropy of every pixel
    given the true pixels before it, in bits/dim, eq. {eq}`ar-nll-bpd`, with Adam (learning
    rate decayed to 10 %) and labels dropped to NULL_CLASS with probability ``p_uncond``.
    Returns ``{"train bits/dim": per step, "seconds": [wall time]}``."""
    device = device or next(model.parameters()).device
    model.to(device).train()
    check_choice(schedule, get_args(Schedule), "learning-rate schedule")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, schedule, warmup))
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"train bits/dim": []}
    start = time.perf_counter()
    bar = progress_bar(total=total, enabled=progress, desc="training")
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device), drop_labels(y, p_uncond, gen).to(device)
            levels = to_levels(x)[:, 0]
            loss = -pixel_log_prob(model, model(x, y), levels).mean() / math.log(2)  # bits/dim
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            history["train bits/dim"].append(loss.item())
            bar.update()
            bar.set_postfix(bpd=f"{loss.item():.3f}")
    bar.close()
    history["seconds"] = [time.perf_counter() - start]
    model.eval()
    return history
