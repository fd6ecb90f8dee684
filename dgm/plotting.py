"""One consistent look for every figure of the course: image grids and loss curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from dgm.data import to_unit_range

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "figure.figsize": (6.0, 3.6),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "image.cmap": "gray",
}


def use_style() -> None:
    """Apply the course's matplotlib style (call once at the top of a chapter)."""
    mpl.rcParams.update(STYLE)


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile a batch ``(B, C, H, W)`` (values in [0, 1] or [-1, 1]) into one ``(H', W')`` or
    ``(H', W', 3)`` array; unused tiles stay white."""
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    images = to_unit_range(images)  # [-1, 1] data (diffusion) is shown on the same [0, 1] scale
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    grid = torch.ones(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for k in range(b):
        r, col = divmod(k, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[k]
    out = grid.permute(1, 2, 0).numpy()
    return out[..., 0] if c == 1 else out


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
                size: float = 0.6):
    """Show a batch of images as a grid; returns the axes."""
    arr = image_grid(images, nrow=nrow)
    if ax is None:
        ncol = min(nrow, len(images))
        nrows = -(-len(images) // ncol)
        _, ax = plt.subplots(figsize=(max(2.0, size * ncol), max(1.2, size * nrows + 0.3)))
    ax.imshow(arr, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_losses(history: Mapping[str, Sequence[float]], ax=None, xlabel: str = "step",
                logy: bool = False, title: str | None = None):
    """Plot one or more loss curves ``{name: values}`` on shared axes; returns the axes."""
    if ax is None:
        _, ax = plt.subplots()
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    if len(history) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax
