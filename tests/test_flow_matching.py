"""dgm.flow_matching: the linear path, its velocity, the CFM loss and the sampler."""

import pytest
import torch

from dgm.flow_matching import cfm_loss, linear_path, path_velocity, sample

DT = torch.float64


def test_path_ends_at_noise_and_data_and_its_time_derivative_is_the_velocity():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 3, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
    assert torch.equal(linear_path(x0, x1, torch.zeros(4, dtype=DT)), x0)
    assert torch.equal(linear_path(x0, x1, torch.ones(4, dtype=DT)), x1)
    t = torch.rand(4, generator=g, dtype=DT, requires_grad=True)
    xt = linear_path(x0, x1, t)
    # d x_t / dt per example: the Jacobian of each row with respect to its own t.
    dxdt = torch.stack([torch.autograd.grad(xt[:, j].sum(), t, retain_graph=True)[0]
                        for j in range(3)], dim=1)
    assert torch.allclose(dxdt, path_velocity(x0, x1))


def point_mass_velocity(c):
    """Data = the single point c: the marginal velocity is (c - x_t) / (1 - t)."""
    return lambda x, t: (c - x) / (1 - t.view(-1, 1)).clamp_min(1e-12)


def test_cfm_loss_is_zero_for_the_exact_field_of_a_point_mass_and_positive_otherwise():
    c = torch.tensor([[1.0, -2.0]], dtype=DT)
    x1 = c.expand(256, 2)
    g = torch.Generator().manual_seed(1)
    assert cfm_loss(point_mass_velocity(c), x1, generator=g).item() == pytest.approx(0, abs=1e-18)
    # The zero field pays E||x_1 - x_0||^2 / D = (|c|^2 / D + 1) in expectation.
    zero = cfm_loss(lambda x, t: torch.zeros_like(x), c.expand(20_000, 2), generator=g).item()
    assert zero == pytest.approx((c.pow(2).sum().item() / 2) + 1, rel=0.05)


def test_sampling_the_exact_field_of_a_point_mass_lands_on_it():
    c = torch.tensor([[0.5, 3.0]], dtype=DT)
    x0 = torch.randn(8, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    # Euler is exact here: the velocity field is constant along each straight trajectory.
    out = sample(point_mass_velocity(c), (8, 2), steps=5, x0=x0)
    assert torch.allclose(out, c.expand(8, 2), atol=1e-9)


def test_the_class_label_reaches_the_model():
    seen = []

    def model(x, t, y):
        seen.append(y)
        return torch.zeros_like(x)

    y = torch.tensor([3, 4])
    cfm_loss(model, torch.zeros(2, 1), y=y)
    sample(model, (2, 1), steps=2, y=y)
    assert len(seen) == 3 and all(s is y for s in seen)
