"""A small U-Net noise predictor eps_model(xt, t, y) for 28x28 single-channel images.

Introduced in book/diffusion.md ({ref}`diffusion-chapter`, section "A small U-Net"); the
class-conditional variant (``num_classes`` set) is used for classifier-free guidance in
book/score_guidance.md. Resolutions go 28 -> 14 -> 7 -> 14 -> 28, so no padding is needed.

``t`` is the *code* time index, a LongTensor ``(B,)`` in 0..T-1 (math t = 1..T). ``y`` holds
class indices ``(B,)``; the value :data:`NULL_CLASS` (-1), or ``y=None``, means "no condition"
and selects a learned null embedding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Label that stands for "no class" (the dropped condition of classifier-free guidance).
NULL_CLASS = -1


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style embedding of integer times ``(B,)`` into ``(B, dim)``:
    [sin(t w_k), cos(t w_k)] with frequencies w_k = max_period^(-k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU; the time(+class) embedding is added
    between them, and a 1x1 convolution matches channels on the residual path."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """eps_model(xt (B, 1, 28, 28), t (B,), y (B,) | None) -> predicted noise (B, 1, 28, 28).

    ``widths = (c1, c2, c3)``: channels at 28x28, 14x14 and 7x7. Down-sampling is a stride-2
    convolution, up-sampling a stride-2 transposed convolution (cheap: one 2x2 kernel per output
    pixel), and each decoder level concatenates the encoder features of the same resolution (the skip connections).
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), in_channels: int = 1,
                 num_classes: int | None = None):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths must give three channel counts (28, 14, 7), got {widths}")
        c1, c2, c3 = widths
        emb_dim = 4 * c1
        self.time_dim = c1
        self.num_classes = num_classes
        self.time_mlp = nn.Sequential(nn.Linear(c1, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # index num_classes is the null class (no condition)
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

        self.conv_in = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.enc1 = ResBlock(c1, c1, emb_dim)                 # 28x28
        self.down1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)  # 28 -> 14
        self.enc2 = ResBlock(c1, c2, emb_dim)                 # 14x14
        self.down2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)  # 14 -> 7
        self.mid1 = ResBlock(c2, c3, emb_dim)                 # 7x7
        self.mid2 = ResBlock(c3, c3, emb_dim)
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)   # 7 -> 14
        self.dec2 = ResBlock(2 * c2, c2, emb_dim)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)   # 14 -> 28
        self.dec1 = ResBlock(2 * c1, c1, emb_dim)
        self.norm_out = nn.GroupNorm(_groups(c1), c1)
        self.conv_out = nn.Conv2d(c1, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start by predicting eps = 0
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t: Tensor, y: Tensor | None) -> Tensor:
        """Time embedding, plus the class embedding for a conditional model: ``(B, 4 c1)``."""
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim))
        if self.class_emb is None:
            if y is not None:
                raise ValueError("this U-Net is unconditional (num_classes=None); pass y=None")
            return emb
        if y is None:
            y = torch.full_like(t, NULL_CLASS)
        index = torch.where(y < 0, torch.full_like(y, self.num_classes), y)
        return emb + self.class_emb(index)

    def forward(self, xt: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.embed(t, y)
        h1 = self.enc1(self.conv_in(xt), emb)                       # (B, c1, 28, 28)
        h2 = self.enc2(self.down1(h1), emb)                         # (B, c2, 14, 14)
        h = self.mid2(self.mid1(self.down2(h2), emb), emb)          # (B, c3, 7, 7)
        h = self.dec2(torch.cat([self.up2(h), h2], dim=1), emb)     # (B, c2, 14, 14)
        h = self.dec1(torch.cat([self.up1(h), h1], dim=1), emb)               # (B, c1, 28, 28)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
