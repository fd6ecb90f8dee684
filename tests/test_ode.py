"""dgm.ode against equations whose solutions are known in closed form."""

import math

import pytest
import torch

from dgm.ode import euler_maruyama, evaluations, integrate, time_grid

DT = torch.float64


def growth(x, t):
    """dx/dt = x: x(t) = x(0) e^t."""
    return x


def linear_in_time(x, t):
    """dx/dt = 2t: x(t) = x(0) + t^2, exactly integrated by Heun (trapezoid) on any grid."""
    return (2 * t).view(-1, *([1] * (x.dim() - 1))).expand_as(x)


@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2)])
def test_global_error_shrinks_with_the_methods_order(method, order):
    x0 = torch.ones(3, 2, dtype=DT)
    errors = [abs(integrate(growth, x0, time_grid(n), method)[0, 0].item() - math.e)
              for n in (20, 40)]
    # Halving the step divides the global error by about 2^order.
    assert errors[0] / errors[1] == pytest.approx(2 ** order, rel=0.1)


def test_heun_is_exact_for_a_field_linear_in_time_and_euler_is_not():
    x0 = torch.zeros(4, 1, dtype=DT)
    assert integrate(linear_in_time, x0, time_grid(3), "heun") == pytest.approx(torch.ones(4, 1, dtype=DT))
    # Euler on 3 steps sums 2 t h at t = 0, 1/3, 2/3: 2 (0 + 1/3 + 2/3) / 3 = 2/3.
    assert integrate(linear_in_time, x0, time_grid(3), "euler")[0, 0].item() == pytest.approx(2 / 3)


def test_integrating_backwards_undoes_forwards():
    x0 = torch.randn(5, 3, dtype=DT, generator=torch.Generator().manual_seed(0))
    x1 = integrate(growth, x0, time_grid(200), "heun")
    back = integrate(growth, x1, time_grid(200, 1.0, 0.0), "heun")
    assert torch.allclose(back, x0, atol=1e-4)


def test_path_has_every_grid_time_and_counts_evaluations():
    calls = []

    def f(x, t):
        calls.append(float(t[0]))
        return torch.zeros_like(x)

    x, path = integrate(f, torch.zeros(2, 1), time_grid(4), "heun", return_path=True)
    assert len(path) == 5 and len(calls) == evaluations("heun", 4) == 8
    assert evaluations("euler", 4) == 4
    with pytest.raises(ValueError, match="euler, heun"):
        integrate(f, x, time_grid(2), "rk4")
    with pytest.raises(ValueError, match="at least 1"):
        time_grid(0)


def test_euler_maruyama_matches_the_ornstein_uhlenbeck_marginal():
    """dX = -theta X dt + sigma dW from X_0 = x0: mean x0 e^{-theta t},
    variance sigma^2 / (2 theta) (1 - e^{-2 theta t})."""
    theta, sigma, x0, t_end, n = 1.5, 0.8, 2.0, 1.0, 40_000
    x = torch.full((n, 1), x0, dtype=DT)
    out = euler_maruyama(lambda x, t: -theta * x, lambda x, t: sigma, x, time_grid(400, 0, t_end),
                         generator=torch.Generator().manual_seed(1))
    mean = x0 * math.exp(-theta * t_end)
    var = sigma ** 2 / (2 * theta) * (1 - math.exp(-2 * theta * t_end))
    # Tolerances: 5 standard errors of the sample mean and variance, plus the O(h) bias.
    assert out.mean().item() == pytest.approx(mean, abs=5 * math.sqrt(var / n) + 0.01)
    assert out.var().item() == pytest.approx(var, abs=5 * var * math.sqrt(2 / n) + 0.01)
