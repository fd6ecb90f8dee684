"""Flow matching on the linear (rectified-flow) path: the path, its conditional velocity, the
conditional flow-matching loss and the sampler.

Introduced in book/flow_matching.md. Tests: tests/test_flow_matching.py.

Conventions. Time runs from t = 0 (noise x_0 ~ N(0, I)) to t = 1 (data x_1), as in Lipman et
al. (2023) and Liu et al. (2023). The linear path is x_t = (1 - t) x_0 + t x_1 and its
conditional velocity is d x_t / dt = x_1 - x_0. A velocity model is called as
``model(x_t, t)`` or ``model(x_t, t, y)`` with ``t (B,)`` floats in [0, 1]; sampling integrates
dx/dt = v(x, t) from t = 0 to t = 1 with :func:`dgm.ode.integrate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from dgm.ode import Method, integrate, time_grid

VelocityModel = Callable[..., Tensor]


def _per_example(t: Tensor, like: Tensor) -> Tensor:
    """Reshape times ``(B,)`` to broadcast against ``like (B, ...)``."""
    return t.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def linear_path(x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x_0 + t x_1, one time per example."""
    t = _per_example(t, x1)
    return (1 - t) * x0 + t * x1


def path_velocity(x0: Tensor, x1: Tensor) -> Tensor:
    """The conditional velocity of the linear path, d x_t / dt = x_1 - x_0."""
    return x1 - x0


def cfm_loss(model: VelocityModel, x1: Tensor, y: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Conditional flow-matching loss E_{t, x_0, x_1} ||v(x_t, t) - (x_1 - x_0)||^2 / D.

    One t ~ U(0, 1) and one x_0 ~ N(0, I) per example; the squared error is averaged over every
    coordinate and example (the mean over D coordinates keeps the scale independent of image size).
    """
    n = x1.shape[0]
    t = torch.rand(n, generator=generator, device=x1.device, dtype=x1.dtype)
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    xt = linear_path(x0, x1, t)
    v = model(xt, t) if y is None else model(xt, t, y)
    return (v - path_velocity(x0, x1)).pow(2).mean()


def sample(model: VelocityModel, shape: Sequence[int], steps: int, method: Method = "euler",
           y: Tensor | None = None, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", x0: Tensor | None = None,
           return_path: bool = False):
    """Draw x_0 ~ N(0, I) (or use ``x0``) and integrate the model's velocity from t = 0 to 1."""
    if x0 is None:
        x0 = torch.randn(tuple(shape), generator=generator, device="cpu").to(device)

    def field(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t) if y is None else model(x, t, y)

    return integrate(field, x0, time_grid(steps), method, return_path=return_path)
