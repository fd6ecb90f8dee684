"""The homework's fixed models, rebuilt from a student's trained weights.

The homework fixes the architecture of its networks: DDPM's noise predictor is given
(:class:`EpsModel`, used by solutions/ddpm.ipynb) and the VAE's encoder and decoder are
one-hidden-layer ReLU MLPs whose sizes the exercise states (solutions/vae.ipynb). So the
grader needs only the trained *weights* (tensors, never code) to re-create the model in its
own process and to measure it itself: a loss on its own noise, samples from its own seeds.
A kernel that forges its loss curve or patches ``torch`` gains nothing from it.

:class:`WeightsError` says, in words a student can act on, why weights do not fit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WeightsError(ValueError):
    """Trained weights that do not fit the homework's fixed architecture; says what was expected."""


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


def _tensors(state, what: str) -> dict[str, Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"expected the {what}'s weights as a dict of tensors (model.state_dict()), "
                           f"got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(f"expected the {what}'s weights to be tensors, but {bad[:3]} are not")
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
                           f"emb1.weight, ...), got keys {sorted(tensors)[:6]}")
    width = int(first.shape[0])
    try:
        model = EpsModel(T, width)
        model.load_state_dict(tensors, strict=True)
    except (ValueError, RuntimeError) as exc:
        raise WeightsError(f"the weights do not fit the homework's EpsModel(T={T}, width={width}): "
                           f"{str(exc)[:300]}") from None
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
