"""One consistent look for every figure of the course: image grids, loss curves, and the
slider players that let a reader step through a process on the static site, with no kernel."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation

from dgm.config import check_choice
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


# ---------------------------------------------------------------------------------------------
# Players: a matplotlib JavaScript animation with a slider, embedded in the page
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnimationSettings:
    frames: int        # frames per player: enough steps to see the trend, few enough for a small page
    dpi: int           # pixels per inch of each frame's PNG; the page shows PLAYER_PX_PER_INCH
    n_images: int      # images (or image pairs) per frame of an image player
    n_points: int      # points per frame of a 2-D player
    interval_ms: int   # milliseconds between frames when the player plays


ANIMATION_SETTINGS = {
    # smoke: a few coarse frames prove the players build and respond (about 0.1 s each)
    "smoke": AnimationSettings(frames=5, dpi=72, n_images=4, n_points=500, interval_ms=500),
    # cpu and full: smooth enough to follow a process step by step, sharp at the size shown
    # (dpi 100 = one PNG pixel per screen pixel), about 1 MB for the largest player
    "cpu": AnimationSettings(frames=12, dpi=100, n_images=4, n_points=2000, interval_ms=400),
    "full": AnimationSettings(frames=16, dpi=100, n_images=4, n_points=2000, interval_ms=300),
}

# A player is laid out in inches and shown at PLAYER_PX_PER_INCH CSS pixels per inch, whatever
# its dpi: an image player PLAYER_WIDTH inches wide fills the book's text column (about 700 px),
# and its labels, in PLAYER_FONT points, read like the page's own text (16 px).
PLAYER_PX_PER_INCH = 100
PLAYER_WIDTH = 7.0        # inches
PLAYER_MAX_HEIGHT = 6.0   # inches: with its buttons below, a player fits a laptop's screen
PLAYER_POINTS_SIZE = 5.0  # inches, the side of a square 2-D ("points") player
PLAYER_FONT = 12          # points

AnimationKind = Literal["images", "points"]
ANIMATION_KINDS: tuple[str, ...] = get_args(AnimationKind)

# matplotlib's player draws its buttons with Font Awesome from a CDN; the course's site loads
# nothing from outside, so the stylesheet is dropped and each icon becomes a plain character.
_CDN_STYLESHEET = re.compile(r'<link[^>]*href="https?://[^"]*"[^>]*>\s*')
_ICONS = {
    "fa fa-minus": "&minus;", "fa fa-fast-backward": "&#8676;", "fa fa-step-backward": "&lsaquo;",
    "fa fa-play fa-flip-horizontal": "&#9664;", "fa fa-pause": "&#10074;&#10074;",
    "fa fa-play": "&#9654;", "fa fa-step-forward": "&rsaquo;", "fa fa-fast-forward": "&#8677;",
    "fa fa-plus": "+",
}


def _offline_player(html: str, width_px: int | None = None) -> str:
    """matplotlib's player HTML without its CDN stylesheet, its frame shown ``width_px`` CSS
    pixels wide (at most the column's width); raises if any URL is left."""
    html = _CDN_STYLESHEET.sub("", html)
    if width_px is not None:
        html = re.sub(r'<img id="(_anim_img\w+)">',
                      rf'<img id="\1" style="width: {width_px}px; max-width: 100%; height: auto;">',
                      html)
    for icon, char in _ICONS.items():
        html = html.replace(f'<i class="{icon}"></i>', f'<span aria-hidden="true">{char}</span>')
    left = re.findall(r"https?://[^\s\"'<>]+", html)
    if left:
        raise RuntimeError(f"the animation player would load {left}; the site must stay offline")
    return html


def _tick_centres(n: int, size: int, pad: int = 2) -> list[float]:
    """Centres of ``n`` tiles of ``size`` pixels in an :func:`image_grid` with padding ``pad``."""
    return [pad + k * (size + pad) + (size - 1) / 2 for k in range(n)]


def _image_player_size(grid_shape: tuple[int, int], row_labels: bool, col_labels: bool,
                       titles: bool) -> tuple[float, float]:
    """Figure size (inches) of an image player: the grid as wide as the column allows, or as
    tall as PLAYER_MAX_HEIGHT allows, plus room for the labels and the title."""
    left = 0.1 + (0.6 if row_labels else 0.0)
    bottom = 0.1 + (0.35 if col_labels else 0.0)
    top = 0.45 if titles else 0.1
    gh, gw = grid_shape
    width = PLAYER_WIDTH - left - 0.1
    height = width * gh / gw
    if height > PLAYER_MAX_HEIGHT - top - bottom:
        height = PLAYER_MAX_HEIGHT - top - bottom
        width = height * gw / gh
    return (width + left + 0.1, height + top + bottom)


def animate_frames(frames: Sequence, titles: Sequence[str] | None = None, *,
                   kind: AnimationKind = "images", nrow: int = 8,
                   row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                   reference: np.ndarray | torch.Tensor | None = None,
                   lim: float | None = None, figsize: tuple[float, float] | None = None,
                   dpi: int = 72, interval_ms: int = 400):
    """A slider player over ``frames`` that runs in the browser with no kernel; returns
    ``IPython.display.HTML``.

    ``kind="images"``: each frame is a batch ``(B, C, H, W)`` in [0, 1] or [-1, 1], tiled with
    :func:`image_grid` (``nrow`` images per row; ``row_labels``/``col_labels`` name the rows and
    columns of tiles, on the left and below). ``kind="points"``: each frame is an ``(N, 2)``
    array drawn as a scatter plot on ``[-lim, lim]^2`` (default: the largest coordinate of any
    frame), over the grey ``reference`` points when given. ``titles`` (one per frame) are shown
    above the frame.
    ``figsize`` (inches) defaults to the width of the book's column for images, capped in
    height (see PLAYER_WIDTH), and to a PLAYER_POINTS_SIZE square for points. The page shows the
    player at PLAYER_PX_PER_INCH pixels per inch, never wider than the column; its frames are
    embedded as PNGs of ``dpi`` dots per inch (matplotlib's ``to_jshtml``), so keep them few.
    """
    from IPython.display import HTML

    check_choice(kind, ANIMATION_KINDS, "animation kind")
    if len(frames) == 0:
        raise ValueError("a player needs at least one frame")
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"got {len(titles)} titles for {len(frames)} frames")
    if kind == "images":
        grids = [image_grid(torch.as_tensor(f), nrow=nrow) for f in frames]
        h, w = frames[0].shape[-2:]
        figsize = figsize or _image_player_size(grids[0].shape[:2], bool(row_labels),
                                                bool(col_labels), titles is not None)
    figsize = figsize or (PLAYER_POINTS_SIZE, PLAYER_POINTS_SIZE)
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    if kind == "images":
        artist = ax.imshow(grids[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.grid(False)
        ax.tick_params(length=0, labelsize=PLAYER_FONT)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xticks(_tick_centres(len(col_labels), w) if col_labels else [],
                      list(col_labels) if col_labels else [])
        ax.set_yticks(_tick_centres(len(row_labels), h) if row_labels else [],
                      list(row_labels) if row_labels else [])

        def show(k):
            artist.set_data(grids[k])
    else:
        points = [np.asarray(torch.as_tensor(f).detach().cpu(), dtype=float) for f in frames]
        if any(p.ndim != 2 or p.shape[1] != 2 for p in points):
            raise ValueError("points frames must be (N, 2) arrays")
        lim = lim or 1.05 * max(float(np.abs(p).max()) for p in points)
        if reference is not None:
            ref = np.asarray(torch.as_tensor(reference).detach().cpu(), dtype=float)
            ax.scatter(ref[:, 0], ref[:, 1], s=1, color="0.8")
        artist = ax.scatter(points[0][:, 0], points[0][:, 1], s=2, color="C0")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        ax.tick_params(labelsize=PLAYER_FONT - 2)

        def show(k):
            artist.set_offsets(points[k])

    title = ax.set_title(titles[0] if titles is not None else "", fontsize=PLAYER_FONT)

    def update(k):
        show(k)
        if titles is not None:
            title.set_text(titles[k])
        return [artist, title]

    fig.tight_layout()
    player = FuncAnimation(fig, update, frames=len(frames), interval=interval_ms, repeat=False)
    with mpl.rc_context({"savefig.dpi": dpi}):  # the writer saves frames at savefig.dpi
        html = player.to_jshtml(embed_frames=True, default_mode="once")
    plt.close(fig)
    return HTML(_offline_player(html, round(figsize[0] * PLAYER_PX_PER_INCH)))
