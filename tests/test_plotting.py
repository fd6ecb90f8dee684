"""The slider players of dgm.plotting work on a static page: one embedded frame per frame asked
for, a slider over them, different frames for different data, and nothing from the internet."""

from __future__ import annotations

import base64
import re

import matplotlib
import numpy as np
import pytest
import torch

from dgm.config import PROFILES
from dgm.plotting import (ANIMATION_SETTINGS, PLAYER_MAX_HEIGHT, PLAYER_PX_PER_INCH, PLAYER_WIDTH,
                          animate_frames, image_grid)

matplotlib.use("Agg")

FRAME = re.compile(r'frames\[(\d+)\] = "data:image/png;base64,([^"]+)"')


def _frames(html: str) -> dict[int, bytes]:
    return {int(k): base64.b64decode(data) for k, data in FRAME.findall(html)}


@pytest.fixture(scope="module")
def image_player() -> str:
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(6, 1, 28, 28, generator=g) * (k + 1) / 4 for k in range(4)]
    return animate_frames(batches, [f"frame {k}" for k in range(4)], nrow=3,
                          row_labels=["a", "b"], dpi=30).data


def test_image_player_embeds_one_png_per_frame(image_player):
    frames = _frames(image_player)
    assert sorted(frames) == [0, 1, 2, 3]
    assert all(png.startswith(b"\x89PNG") for png in frames.values())


def test_image_player_shows_different_pictures_for_different_frames(image_player):
    assert len(set(_frames(image_player).values())) == 4


def test_player_has_a_slider_spanning_the_frames(image_player):
    slider = re.search(r'<input id="_anim_slider\w+" type="range"[^>]*>', image_player)
    assert slider is not None
    assert "new Array(4)" in image_player  # the script sets slider.max = frames.length - 1


def test_player_loads_nothing_from_the_internet(image_player):
    assert re.search(r"https?://", image_player) is None
    assert "<link" not in image_player and "fa fa-" not in image_player


def test_points_player_embeds_one_png_per_frame():
    g = torch.Generator().manual_seed(1)
    clouds = [torch.randn(200, 2, generator=g) * s for s in (0.5, 1.0, 2.0)]
    html = animate_frames(clouds, kind="points", reference=np.zeros((5, 2)), dpi=30).data
    assert sorted(_frames(html)) == [0, 1, 2]


def test_points_frames_must_be_pairs_of_coordinates():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        animate_frames([np.zeros((10, 3))], kind="points")


def test_unknown_kind_raises_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="images, points"):
        animate_frames([torch.zeros(1, 1, 4, 4)], kind="video")


def test_one_title_per_frame_is_required():
    with pytest.raises(ValueError, match="2 titles for 1 frames"):
        animate_frames([torch.zeros(1, 1, 4, 4)], ["a", "b"])


def test_image_grid_places_each_image_in_its_tile():
    images = torch.stack([torch.full((1, 3, 3), v) for v in (0.0, 0.5, 1.0)])  # (3, 1, 3, 3)
    grid = image_grid(images, nrow=2, pad=1)
    assert grid.shape == (1 + 2 * 4, 1 + 2 * 4)
    assert np.allclose(grid[1:4, 1:4], 0.0) and np.allclose(grid[1:4, 5:8], 0.5)
    assert np.allclose(grid[5:8, 1:4], 1.0) and np.allclose(grid[5:8, 5:8], 1.0)  # unused tile: white


def test_every_profile_has_animation_settings():
    assert set(ANIMATION_SETTINGS) == set(PROFILES)
    assert all(s.frames >= 2 for s in ANIMATION_SETTINGS.values())


def _display_width(html: str) -> int:
    return int(re.search(r'<img id="_anim_img\w+" style="width: (\d+)px; max-width: 100%', html).group(1))


def test_a_wide_image_player_fills_the_text_column():
    """One row of images: shown as wide as the column (PLAYER_WIDTH inches at 100 px/inch)."""
    html = animate_frames([torch.rand(4, 1, 28, 28) for _ in range(3)], nrow=4, dpi=30).data
    assert _display_width(html) == round(PLAYER_WIDTH * PLAYER_PX_PER_INCH)


def test_a_tall_image_player_fits_the_screen_and_keeps_its_labels():
    """Four rows with row labels: capped at PLAYER_MAX_HEIGHT, still over 500 px wide, and its
    frame's pixels in proportion to the size shown."""
    html = animate_frames([torch.rand(16, 1, 28, 28) for _ in range(3)], ["a", "b", "c"], nrow=4,
                          row_labels=["x_t", "x0", "mu", "mu~"], dpi=50).data
    png = _frames(html)[0]
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert height <= PLAYER_MAX_HEIGHT * 50 + 1
    shown = _display_width(html)
    assert 500 <= shown <= round(PLAYER_WIDTH * PLAYER_PX_PER_INCH)
    assert abs(shown - width * PLAYER_PX_PER_INCH / 50) <= 2
