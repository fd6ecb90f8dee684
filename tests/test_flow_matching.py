"""dgm.flow_matching against closed forms, Monte Carlo, quadrature and dgm.diffusion: the path and
its velocities, the CFM loss, the Gaussian-mixture field, conversions, guidance and reflow."""

import pytest
import torch

from dgm import diffusion
from dgm.flow_matching import (
    SAMPLERS,
    SETTINGS,
    GaussianMixture,
    VelocityUNet,
    cfm_loss,
    conditional_velocity,
    ddim_times,
    ddpm_code_index,
    ddpm_to_linear,
    eps_from_velocity,
    eps_model_as_velocity,
    guided_velocity,
    linear_path,
    linear_to_alpha_bar,
    path_velocity,
    reflow_loss,
    reflow_pairs,
    sample,
    sampler_budgets,
    sampler_evaluations,
    score_from_velocity,
    straightness,
    velocity_from_eps,
    velocity_from_score,
    x1_from_velocity,
)
from dgm.ode import integrate, time_grid
from dgm.unet import NULL_CLASS, UNet

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


# ---------------------------------------------------------------------------------------------
# The exact velocity of a Gaussian mixture
# ---------------------------------------------------------------------------------------------

MIXTURE = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]]),
                          torch.tensor([0.3, 0.1, 0.5]), torch.tensor([0.5, 0.3, 0.2]))


def test_mixture_velocity_is_the_posterior_average_of_conditional_velocities():
    """u_t(x) = E[u_t(x | x_1) | x_t = x]: weights N(x; t x_1, (1 - t)^2 I) over data draws."""
    x1, _ = MIXTURE.sample(400_000, torch.Generator().manual_seed(0))
    points = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-0.5, 1.2]], dtype=DT)
    for t_val in (0.2, 0.5, 0.8):
        t = torch.full((1,), t_val, dtype=DT)
        for x in points:
            log_w = -(x - t_val * x1).pow(2).sum(1) / (2 * (1 - t_val) ** 2)
            w = torch.softmax(log_w, 0)[:, None]
            u_c = conditional_velocity(x.expand_as(x1), x1, t.expand(len(x1)))
            mc = (w * u_c).sum(0)
            exact = MIXTURE.velocity(x[None], t)[0]
            # standard error of a self-normalised importance-sampling average
            se = (w.pow(2) * (u_c - mc).pow(2)).sum(0).sqrt()
            assert (se < 0.1).all()  # informative: velocities here are of size 1 to 5
            assert ((mc - exact).abs() < 5 * se + 1e-3).all(), (t_val, x, mc, exact, se)


def test_mixture_density_and_velocity_satisfy_the_continuity_equation():
    """d/dt log p_t + div u_t + u_t . grad log p_t = 0 (eq. fm-continuity divided by p_t)."""
    x = torch.tensor([[0.3, -0.2], [1.5, 1.0], [-1.0, 2.0]], dtype=DT, requires_grad=True)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=DT, requires_grad=True)
    logp = MIXTURE.log_density(x, t)
    dlogp_dt, grad_logp = torch.autograd.grad(logp.sum(), (t, x))
    u = MIXTURE.velocity(x, t)
    div = sum(torch.autograd.grad(u[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    residual = dlogp_dt + div + (u * grad_logp).sum(1)
    assert residual.abs().max().item() < 1e-10


def test_point_mass_mixture_velocity_is_the_conditional_velocity():
    c = torch.tensor([[1.0, -2.0]], dtype=DT)
    x = torch.randn(5, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0.1, 0.9, 5, dtype=DT)
    assert torch.allclose(GaussianMixture(c, torch.zeros(1)).velocity(x, t),
                          conditional_velocity(x, c.expand(5, 2), t))


def test_mixture_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"means must be \(K, D\)"):
        GaussianMixture(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        GaussianMixture(torch.zeros(2, 2), torch.tensor([1.0, -1.0]))


# ---------------------------------------------------------------------------------------------
# Flow matching and conditional flow matching differ by a constant
# ---------------------------------------------------------------------------------------------
def _losses_by_quadrature(model, data):
    """FM and CFM losses of ``model`` for point-mass data in 1-D, by Gauss-Legendre in t on
    [0, 0.9] and the trapezoid rule in x: no sampling, so they are exact up to quadrature."""
    import numpy as np

    u, w = np.polynomial.legendre.leggauss(24)
    ts, wts = torch.tensor(0.45 * (u + 1), dtype=DT), torch.tensor(0.45 * w, dtype=DT)
    xs = torch.linspace(-9, 9, 6001, dtype=DT)
    fm = cfm = 0.0
    for t, wt in zip(ts, wts):
        tt = t.expand(len(xs))
        v = model(xs[:, None], tt)[:, 0]
        p = data.log_density(xs[:, None], tt).exp()
        u_exact = data.velocity(xs[:, None], tt)[:, 0]
        fm = fm + wt * torch.trapezoid(p * (v - u_exact) ** 2, xs)
        for m, pi in zip(data.means[:, 0], data.weights):
            p_k = torch.exp(-(xs - t * m) ** 2 / (2 * (1 - t) ** 2)) / ((1 - t) * (2 * torch.pi) ** 0.5)
            u_k = conditional_velocity(xs, m.expand(len(xs)), tt)
            cfm = cfm + wt * pi * torch.trapezoid(p_k * (v - u_k) ** 2, xs)
    return fm, cfm


def test_fm_and_cfm_losses_differ_by_a_constant_and_have_equal_gradients():
    data = GaussianMixture(torch.tensor([[-1.5], [0.5], [2.0]]), torch.zeros(3), torch.tensor([0.2, 0.5, 0.3]))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def model(x, t):
        return net(torch.cat([x, t[:, None]], 1))

    gaps = []
    for _ in range(2):  # two different parameter values
        fm, cfm = _losses_by_quadrature(model, data)
        g_fm = torch.autograd.grad(fm, list(net.parameters()), retain_graph=True)
        g_cfm = torch.autograd.grad(cfm, list(net.parameters()))
        for a, b in zip(g_fm, g_cfm):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)
        gaps.append((cfm - fm).item())
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.5 * torch.randn_like(p))
    assert gaps[0] > 0.1  # the constant is not zero: CFM cannot reach zero loss
    assert gaps[0] == pytest.approx(gaps[1], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Parameterisations and DDPM's path
# ---------------------------------------------------------------------------------------------
def test_conversions_agree_with_dgm_diffusion_on_ddpm_states():
    schedule = diffusion.linear_schedule(1000)
    g = torch.Generator().manual_seed(4)
    x1, eps = torch.randn(6, 1, 4, 4, generator=g, dtype=DT), torch.randn(6, 1, 4, 4, generator=g, dtype=DT)
    k = torch.tensor([0, 10, 250, 500, 800, 999])
    ab = schedule.alpha_bar[k]
    x = ab.sqrt().view(-1, 1, 1, 1) * x1 + (1 - ab).sqrt().view(-1, 1, 1, 1) * eps   # DDPM x_t
    t, c = ddpm_to_linear(ab)
    xbar = x / c.view(-1, 1, 1, 1)
    assert torch.allclose(xbar, linear_path(eps, x1, t))          # the same point of the linear path
    v = path_velocity(eps, x1)                                     # a prediction that knows eps
    assert torch.allclose(x1_from_velocity(xbar, t, v), diffusion.predict_x0_from_eps(schedule, x, k, eps))
    assert torch.allclose(eps_from_velocity(xbar, t, v), eps)
    assert torch.allclose(velocity_from_eps(xbar, t, eps), v)
    # p_bar(xbar) = c^D p(c xbar): scores differ by the factor c.
    score = score_from_velocity(xbar, t, v)
    assert torch.allclose(score, c.view(-1, 1, 1, 1) * diffusion.eps_to_score(schedule, k, eps))
    assert torch.allclose(velocity_from_score(xbar, t, score), v)
    assert torch.allclose(linear_to_alpha_bar(t), ab)
    assert torch.equal(ddpm_code_index(schedule, t), k.to(DT))


def test_euler_on_the_linear_path_is_ddim():
    """DDIM (eta = 0) is Euler's method on the linear-path ODE after rescaling by c."""
    schedule = diffusion.linear_schedule(100)

    def eps_model(x, k):
        return torch.tanh(x) * (1 + k.to(x.dtype).view(-1, 1, 1, 1) / 100)

    xT = torch.randn(3, 1, 4, 4, dtype=DT, generator=torch.Generator().manual_seed(5))
    for steps in (1, 7, 100):
        ddim = diffusion.sample_ddim(eps_model, schedule, xT.shape, steps, xT=xT, clip_x0=False)
        ts = ddim_times(schedule, steps)
        _, c_T = ddpm_to_linear(schedule.alpha_bar[-1:])
        euler = integrate(eps_model_as_velocity(eps_model, schedule), xT / c_T, ts, "euler")
        assert torch.allclose(euler, ddim, atol=1e-9), steps


# ---------------------------------------------------------------------------------------------
# Guidance and reflow
# ---------------------------------------------------------------------------------------------
def test_guided_velocity_is_the_guided_score_in_velocity_form():
    """score(v_guided) = (1 + w) grad log p_t(x | y) - w grad log p_t(x), eq. fm-cfg."""
    def model(x, t, y):
        out = MIXTURE.velocity(x, t)
        for k in range(3):
            out = torch.where((y == k)[:, None], MIXTURE.component(k).velocity(x, t), out)
        return out

    x = torch.randn(6, 2, dtype=DT, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    t = torch.linspace(0.2, 0.8, 6, dtype=DT)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for w in (0.0, 1.0, 3.0):
        guided = guided_velocity(model, x, t, y, w)
        log_cond = sum(torch.where(y == k, MIXTURE.component(k).log_density(x, t), 0) for k in range(3))
        s_cond, = torch.autograd.grad(log_cond.sum(), x)
        s_uncond, = torch.autograd.grad(MIXTURE.log_density(x, t).sum(), x)
        assert torch.allclose(score_from_velocity(x, t, guided), (1 + w) * s_cond - w * s_uncond)
    assert NULL_CLASS not in (0, 1, 2)


def test_reflow_pairs_of_a_gaussian_follow_its_flow_map_and_the_rectified_field_fits_them():
    """For data N(m, s^2 I) the marginal flow is x_t = t m + sigma_t x_0 with
    sigma_t = sqrt((1 - t)^2 + t^2 s^2), so the pairs are (x_0, m + s x_0)."""
    m, s = torch.tensor([[1.0, -1.0]], dtype=DT), 0.5
    gauss = GaussianMixture(m, torch.tensor([s**2]))
    x0 = torch.randn(2000, 2, dtype=DT, generator=torch.Generator().manual_seed(7))
    a, b = reflow_pairs(gauss.velocity, x0, steps=200, method="heun")
    assert a is x0 and torch.allclose(b, m + s * x0, atol=1e-4)  # Heun, h = 1/200
    ts = time_grid(200)
    _, path = integrate(gauss.velocity, x0, ts, "heun", return_path=True)
    sigma = ((1 - ts) ** 2 + ts**2 * s**2).sqrt()
    closed = (sigma - (1 - ts) - ts * s).abs().mean() * x0.pow(2).mean(1).sqrt().mean()
    assert straightness(path, ts) == pytest.approx(closed.item(), rel=1e-4)
    assert closed > 0.05
    # The coupling (x_0, m + s x_0) has the straight field m + (s - 1) / ((1 - t) + t s) (x - t m):
    def rectified(x, t):
        t = t.view(-1, 1)
        return m + (s - 1) / ((1 - t) + t * s) * (x - t * m)

    g = torch.Generator().manual_seed(8)
    assert reflow_loss(rectified, a, b, generator=g).item() < 1e-8  # only the ODE error of b
    assert reflow_loss(gauss.velocity, a, b, generator=g).item() > 1e-3
    _, straight = integrate(rectified, x0, ts, "euler", return_path=True)
    assert straightness(straight, ts) < 1e-9
    with pytest.raises(ValueError, match="equal shapes"):
        reflow_loss(rectified, a, b[:10])
    with pytest.raises(ValueError, match="one state per grid time"):
        straightness(path[:-1], ts)


def test_velocity_unet_feeds_the_unet_t_times_its_time_scale():
    torch.manual_seed(0)
    net = VelocityUNet((8, 8, 8), time_scale=1000.0)
    torch.nn.init.normal_(net.unet.conv_out.weight)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0.25, 0.7])
    assert torch.allclose(net(x, t), net.unet(x, torch.tensor([250.0, 700.0])))
    assert not torch.allclose(net(x, t), net.unet(x, t))
    assert isinstance(net.unet, UNet)


def test_the_marginal_velocity_is_the_marginal_score_converted_by_eq_fm_param():
    """v = (x + (1 - t) grad log p_t(x)) / t for the mixture: the optimal velocity is a score model."""
    x = torch.randn(8, 2, dtype=DT, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    t = torch.linspace(0.05, 0.95, 8, dtype=DT)
    score, = torch.autograd.grad(MIXTURE.log_density(x, t).sum(), x)
    assert torch.allclose(velocity_from_score(x, t, score), MIXTURE.velocity(x, t))
    assert torch.allclose(score_from_velocity(x, t, MIXTURE.velocity(x, t)), score)


def test_sampler_evaluations_count_the_network_calls_each_sampler_makes():
    """Heun spends two calls per step on nfe // 2 steps; DDIM and DDPM one per step, at most T."""
    calls = 0

    def field(x, t):
        nonlocal calls
        calls += 1
        return -x

    for nfe in (2, 5, 10):
        calls = 0
        sample(field, (3, 2), nfe // 2, "heun")
        assert calls == sampler_evaluations("fm_heun", nfe, 200)
    assert sampler_evaluations("fm_euler", 7, 200) == 7
    assert [sampler_evaluations(name, 500, 200) for name in ("ddim", "ddpm")] == [200, 200]
    with pytest.raises(ValueError, match="fm_euler"):
        sampler_evaluations("midpoint", 4, 200)


@pytest.mark.parametrize("profile", sorted(SETTINGS))
def test_every_sampler_has_budgets_and_heun_none_below_its_two_calls(profile):
    cfg = SETTINGS[profile]
    for name in SAMPLERS:
        assert sampler_budgets(cfg, name), (profile, name)
    assert min(sampler_budgets(cfg, "fm_heun")) >= 2
    assert sampler_budgets(cfg, "ddpm") == cfg.ddpm_nfe
