"""What the homework hands students: the fixed networks and the data at the homework's scale.

These are the pieces the homework notebooks import and do not ask for. They hold no answer to
any exercise, which is why they live apart from :mod:`dgm.homework` (the grader's reference
models and measurements): while a submission is graded, its kernel may import this module but
not the modules that implement what the homework asks for (see ``autograder.sandbox``).

``EpsModel``                 DDPM's small convolutional noise predictor eps_theta(x_t, t).
``image_tokens``,
``token_images``             Fashion-MNIST at the transformer homework's scale (14 x 14 pixels,
                             16 grey levels, one token per pixel, row by row) and back.
``VelocityMLP``              the flow-matching homework's velocity field v_theta(x_t, t).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --- transformer ------------------------------------------------------------------------------

SIDE, LEVELS = 14, 16  # the homework's images: 14 x 14 pixels, 16 grey levels
BOS = LEVELS  # the start token that precedes every image (the input vocabulary has LEVELS + 1)


def image_tokens(images: Tensor) -> Tensor:
    """Images (B, 1, 28, 28) in [0, 1] -> tokens (B, 196) in 0..15: the mean of each 2 x 2 block,
    cut into 16 equal grey levels, row by row."""
    x = F.avg_pool2d(images.float(), 2)  # (B, 1, 14, 14)
    return (x * LEVELS).floor().clamp(0, LEVELS - 1).long().flatten(1)


def token_images(tokens: Tensor) -> Tensor:
    """Tokens (B, 196) or (B, 14, 14) in 0..15 -> images (B, 1, 28, 28) in [0, 1]: each level at
    the middle of its bin, each pixel repeated 2 x 2."""
    x = (tokens.reshape(-1, 1, SIDE, SIDE).float() + 0.5) / LEVELS
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


# --- DDPM --------------------------------------------------------------------------------------

class EpsModel(nn.Module):
    """The DDPM homework's small convolutional noise predictor eps_theta(x_t, t).

    A learned embedding of the code index t (0..T-1) is added after the first convolution and
    after the downsampling one; (B, 1, 28, 28) in, (B, 1, 28, 28) out. ``width`` must be a
    multiple of 8 (group normalisation with 8 groups).
    """

    def __init__(self, T: int, width: int):
        super().__init__()
        if T <= 0 or width <= 0 or width % 8:
            raise ValueError(f"EpsModel needs T > 0 and a positive width divisible by 8, got T={T}, "
                             f"width={width}")
        w = width
        self.inp = nn.Conv2d(1, w, 3, padding=1)
        self.emb1, self.emb2 = nn.Embedding(T, w), nn.Embedding(T, 2 * w)
        self.down = nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)  # 28 -> 14
        self.mid = nn.Conv2d(2 * w, 2 * w, 3, padding=1)
        self.up = nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1)  # 14 -> 28
        self.out = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, 1, 3, padding=1))
        self.norm1, self.norm2 = nn.GroupNorm(8, w), nn.GroupNorm(8, 2 * w)

    def forward(self, xt: Tensor, t: Tensor) -> Tensor:
        h1 = F.silu(self.norm1(self.inp(xt) + self.emb1(t)[:, :, None, None]))  # (B, w, 28, 28)
        h2 = F.silu(self.norm2(self.down(h1) + self.emb2(t)[:, :, None, None]))  # (B, 2w, 14, 14)
        h2 = h2 + F.silu(self.mid(h2))
        return self.out(torch.cat([F.silu(self.up(h2)), h1], dim=1))  # (B, 1, 28, 28)


# --- flow matching ----------------------------------------------------------------------------

FM_FREQUENCIES = 8  # Fourier features sin(pi k t), cos(pi k t), k = 1..8, next to t itself


def time_features(t: Tensor, n: int = FM_FREQUENCIES) -> Tensor:
    """(B,) times in [0, 1] -> (B, 2 n + 1) features [t, sin(pi k t), cos(pi k t)], k = 1..n."""
    t = t.reshape(-1, 1).float()
    k = torch.arange(1, n + 1, device=t.device, dtype=t.dtype) * math.pi
    return torch.cat([t, torch.sin(k * t), torch.cos(k * t)], dim=1)


class VelocityMLP(nn.Module):
    """The flow-matching homework's velocity field v_theta(x_t, t) on 28 x 28 images.

    ``x`` (B, 1, 28, 28) and ``t`` (B,) floats in [0, 1] (t = 0 noise, t = 1 data, as in
    :mod:`dgm.flow_matching`); returns (B, 1, 28, 28). The flattened image and the time features
    go through three linear layers with SiLU between them.
    """

    def __init__(self, hidden: int, d: int = 28 * 28):
        super().__init__()
        if hidden <= 0:
            raise ValueError(f"VelocityMLP needs a positive hidden width, got {hidden}")
        self.net = nn.Sequential(nn.Linear(d + 2 * FM_FREQUENCIES + 1, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, d))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        h = torch.cat([x.flatten(1), time_features(t).to(x.dtype)], dim=1)
        return self.net(h).view_as(x)
