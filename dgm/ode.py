"""ODE and SDE integrators on a time grid: Euler, Heun and Euler-Maruyama, written once.

The flow-matching chapter (book/flow_matching.md) samples with them, and the flow-matching
homework's grader integrates a student's velocity field with them. Tests on equations with
known solutions (exponential growth, an Ornstein-Uhlenbeck process): tests/test_ode.py.

Conventions. A field is called as ``f(x, t)`` with ``x (B, ...)`` and ``t (B,)`` (one time per
example, the same for all of them), and returns a tensor shaped like ``x``. A time grid ``ts``
is a 1-D increasing or decreasing sequence t_0, ..., t_K; a solver takes K steps along it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from dgm.config import check_choice

Field = Callable[[Tensor, Tensor], Tensor]
Method = Literal["euler", "heun"]
METHODS: tuple[str, ...] = get_args(Method)


def time_grid(steps: int, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """``steps + 1`` evenly spaced times from ``t_start`` to ``t_end`` (float64)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


def _grid(ts: Sequence[float] | Tensor) -> list[float]:
    times = [float(t) for t in ts]
    if len(times) < 2:
        raise ValueError("a time grid needs at least two times (one step)")
    return times


def _at(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def evaluations(method: Method, steps: int) -> int:
    """Network evaluations a solver spends on ``steps`` steps: Euler one per step, Heun two."""
    check_choice(method, METHODS, "ODE method")
    return steps if method == "euler" else 2 * steps


@torch.no_grad()
def integrate(f: Field, x: Tensor, ts: Sequence[float] | Tensor, method: Method = "euler",
              return_path: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Solve dx/dt = f(x, t) from ``x`` at ``ts[0]`` along the grid ``ts``.

    ``euler``: x <- x + h f(x, t). ``heun`` (explicit trapezoid, second order): a predictor
    x' = x + h f(x, t), then x <- x + h/2 (f(x, t) + f(x', t + h)). With ``return_path`` also
    returns the states at every grid time (``len(ts)`` tensors, the start included).
    """
    check_choice(method, METHODS, "ODE method")
    times = _grid(ts)
    path = [x]
    for t, t_next in zip(times[:-1], times[1:]):
        h = t_next - t
        v = f(x, _at(t, x))
        if method == "euler":
            x = x + h * v
        else:
            x_pred = x + h * v
            x = x + 0.5 * h * (v + f(x_pred, _at(t_next, x)))
        if return_path:
            path.append(x)
    return (x, path) if return_path else x


@torch.no_grad()
def euler_maruyama(drift: Field, diffusion: Field, x: Tensor, ts: Sequence[float] | Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """Solve dx = a(x, t) dt + g(x, t) dW along ``ts``: x <- x + a h + g sqrt(|h|) z, z ~ N(0, I).

    ``diffusion`` returns g(x, t) broadcastable against ``x`` (a scalar noise level per
    example or per coordinate). Strong order 1/2, weak order 1.
    """
    times = _grid(ts)
    for t, t_next in zip(times[:-1], times[1:]):
        h = t_next - t
        tt = _at(t, x)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + h * drift(x, tt) + diffusion(x, tt) * abs(h) ** 0.5 * z
    return x
