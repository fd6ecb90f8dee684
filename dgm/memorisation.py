"""Do generated samples copy the training images? A nearest-neighbour check.

A generator that returns (nearly) its training images scores well on every sample-quality
measure of :mod:`dgm.evaluate`, so the grader also asks how close each sample lies to the
training set. The yardstick is real data the model never saw: the distance from each
held-out image to its nearest training image. A sample is a *near-copy* when it lies closer
to the training set than almost every held-out image does (below :data:`COPY_QUANTILE` of their
distances, times :data:`COPY_FACTOR`). Distances are Euclidean, on pixels in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm.data import to_unit_range

#: Quantile of the held-out images' nearest-training distances that sets the threshold.
COPY_QUANTILE = 0.05
#: The threshold is this fraction of that quantile: a held-out image almost never lies so close.
COPY_FACTOR = 0.5


def nearest_distances(x: Tensor, reference: Tensor, batch_size: int = 256) -> Tensor:
    """Euclidean distance from each image of ``x`` (N, ...) to its nearest image of ``reference``."""
    ref = to_unit_range(reference).flatten(1).double()  # (M, D)
    ref_sq = (ref * ref).sum(1)
    out = []
    for chunk in to_unit_range(x).flatten(1).double().split(batch_size):
        d2 = (chunk * chunk).sum(1, keepdim=True) - 2 * chunk @ ref.T + ref_sq  # (b, M)
        out.append(d2.min(1).values.clamp(min=0).sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def copy_threshold(train: Tensor, heldout: Tensor) -> float:
    """The distance below which a sample counts as a near-copy of a training image."""
    d = nearest_distances(heldout, train)
    return COPY_FACTOR * float(torch.quantile(d, COPY_QUANTILE))


def copy_share(samples: Tensor, train: Tensor, heldout: Tensor) -> float:
    """Share of ``samples`` that are near-copies of ``train`` (images in [0, 1] or [-1, 1])."""
    if len(samples) == 0:
        raise ValueError("copy_share needs at least one sample")
    threshold = copy_threshold(train, heldout)
    return float((nearest_distances(samples, train) < threshold).double().mean())
