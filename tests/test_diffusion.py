"""Claims of book/diffusion.md and book/score_guidance.md, checked against dgm.diffusion.

Monte Carlo checks use n samples and a tolerance of about 5 standard errors (stated per test),
so they fail by chance with probability well below 1e-5.
"""

import math

import pytest
import torch

from dgm.diffusion import (
    cosine_schedule, ddim_timesteps, ddpm_loss, eps_to_score, extract, guided_eps,
    linear_schedule, make_schedule, p_mean_from_eps, predict_x0_from_eps, prior_kl, q_posterior, q_sample, q_step, sample_ddim,
    sample_ddpm, train_ddpm,
)
from dgm.probability import kl_diag_gaussians, normal_log_prob
from dgm.unet import NULL_CLASS, UNet

DT = torch.float64


@pytest.fixture
def schedule():
    return linear_schedule(50, 2e-3, 0.4)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_q_sample_mean_and_variance_match_closed_form(schedule):
    """MC with n = 200,000: mean within 5 s.e. sqrt((1-a)/n), variance within 5 s.e. (1-a) sqrt(2/n)."""
    n = 200_000
    x0 = torch.tensor([0.7], dtype=DT)
    for t in (0, 10, 49):
        eps = torch.randn(n, 1, generator=gen(t), dtype=DT)
        xt = q_sample(schedule, x0.expand(n, 1), torch.full((n,), t), eps)
        a = schedule.alpha_bar[t].item()
        assert abs(xt.mean().item() - math.sqrt(a) * 0.7) < 5 * math.sqrt((1 - a) / n)
        assert abs(xt.var().item() - (1 - a)) < 5 * (1 - a) * math.sqrt(2 / n)


def test_composed_single_steps_match_marginal(schedule):
    """Applying t steps of q(x_t | x_{t-1}) gives q(x_t | x_0): MC, n = 200,000, 5 s.e."""
    n = 200_000
    g = gen(1)
    x = torch.full((n, 1), -0.4, dtype=DT)
    for t in range(20):
        x = q_step(schedule, x, t, torch.randn(n, 1, generator=g, dtype=DT))
    a = schedule.alpha_bar[19].item()
    assert abs(x.mean().item() - math.sqrt(a) * -0.4) < 5 * math.sqrt((1 - a) / n)
    assert abs(x.var().item() - (1 - a)) < 5 * (1 - a) * math.sqrt(2 / n)


def test_beta_tilde_formula(schedule):
    """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, with beta_tilde_1 = 0."""
    s = schedule
    for t in (1, 7, 49):
        expected = (1 - s.alpha_bar[t - 1]) / (1 - s.alpha_bar[t]) * s.beta[t]
        assert torch.isclose(s.beta_tilde[t], expected, rtol=1e-12)
    assert s.beta_tilde[0] == 0


def test_posterior_matches_product_of_gaussians(schedule):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): precisions add, precision-weighted means add."""
    t = 12
    x0, xt = torch.tensor([[0.3]], dtype=DT), torch.tensor([[-0.8]], dtype=DT)
    alpha, beta, ab_prev = schedule.alpha[t], schedule.beta[t], schedule.alpha_bar_prev[t]
    # As a function of x_{t-1}: q(x_t|x_{t-1}) = N(x_t; sqrt(alpha) x_{t-1}, beta)
    # is N(x_{t-1}; x_t / sqrt(alpha), beta / alpha).
    prec1, mean1 = alpha / beta, xt / alpha.sqrt()
    prec2, mean2 = 1 / (1 - ab_prev), ab_prev.sqrt() * x0
    var = 1 / (prec1 + prec2)
    mean = var * (prec1 * mean1 + prec2 * mean2)
    mu_tilde, beta_tilde = q_posterior(schedule, x0, xt, t)
    assert torch.allclose(mu_tilde, mean, rtol=1e-12)
    assert torch.allclose(beta_tilde.squeeze(), var, rtol=1e-12)


def test_posterior_matches_monte_carlo_conditioning(schedule):
    """Regress x_{t-1} on x_t in joint samples from x_0: slope, intercept and residual variance
    equal the posterior's coefficients (n = 400,000, tolerance 5 %)."""
    n, t = 400_000, 20
    g = gen(2)
    x0 = torch.full((n, 1), 0.5, dtype=DT)
    x_prev = q_sample(schedule, x0, t - 1, torch.randn(n, 1, generator=g, dtype=DT))
    xt = q_step(schedule, x_prev, t, torch.randn(n, 1, generator=g, dtype=DT))
    cov = torch.cov(torch.stack([xt.squeeze(), x_prev.squeeze()]))
    slope = cov[0, 1] / cov[0, 0]
    resid_var = cov[1, 1] - slope * cov[0, 1]
    assert torch.isclose(slope, schedule.posterior_coef_xt[t], rtol=0.05)
    assert torch.isclose(resid_var, schedule.beta_tilde[t], rtol=0.05)
    intercept = x_prev.mean() - slope * xt.mean()
    assert torch.isclose(intercept, schedule.posterior_coef_x0[t] * 0.5, rtol=0.05)


def test_prior_kl_equals_diagonal_gaussian_kl(schedule):
    """prior_kl equals eq. kl-diagonal with q = N(sqrt(ab_T) x0, (1-ab_T) I), p = N(0, I)."""
    x0 = torch.randn(3, 1, 4, 4, generator=gen(3), dtype=DT)
    a = schedule.alpha_bar[-1]
    flat = x0.flatten(1)
    expected = kl_diag_gaussians(a.sqrt() * flat, torch.log(1 - a).expand_as(flat),
                                 torch.zeros_like(flat), torch.zeros_like(flat))
    assert torch.allclose(prior_kl(schedule, x0), expected, rtol=1e-10)


def test_prior_kl_decreases_as_T_grows():
    """With fixed beta endpoints, a longer chain destroys more signal: KL decreases with T."""
    x0 = torch.ones(1, 1, 2, 2, dtype=DT)
    kls = [prior_kl(linear_schedule(T), x0).item() for T in (10, 100, 1000)]
    assert kls[0] > kls[1] > kls[2] > 0


def test_score_identity_matches_autograd_of_log_density(schedule):
    """grad_x log q(x_t|x_0) (autograd of the Gaussian log density) = -eps / sqrt(1 - alpha_bar_t)."""
    t = torch.tensor([3, 25, 49])
    x0 = torch.randn(3, 1, 2, 2, generator=gen(4), dtype=DT)
    eps = torch.randn(3, 1, 2, 2, generator=gen(5), dtype=DT)
    xt = q_sample(schedule, x0, t, eps).requires_grad_(True)
    a = schedule.alpha_bar[t].view(-1, 1, 1, 1)
    normal_log_prob(xt, a.sqrt() * x0, 1 - a).sum().backward()
    assert torch.allclose(xt.grad, eps_to_score(schedule, t, eps), rtol=1e-10)


def test_p_mean_from_true_eps_recovers_posterior_mean(schedule):
    """With the noise that made x_t, the eps-parameterised mean equals mu_tilde(x_t, x_0)."""
    t = torch.tensor([1, 17, 49])
    x0 = torch.randn(3, 1, 3, 3, generator=gen(6), dtype=DT)
    eps = torch.randn(3, 1, 3, 3, generator=gen(7), dtype=DT)
    xt = q_sample(schedule, x0, t, eps)
    mu_tilde, _ = q_posterior(schedule, x0, xt, t)
    assert torch.allclose(p_mean_from_eps(schedule, xt, t, eps), mu_tilde, rtol=1e-9, atol=1e-12)
    assert torch.allclose(predict_x0_from_eps(schedule, xt, t, eps), x0, rtol=1e-9, atol=1e-9)


def _toy_eps_model(xt, t, y=None):
    """A fixed nonlinear function of (x_t, t), enough to exercise the samplers."""
    return 0.3 * torch.tanh(xt) * (1 + t.view(-1, 1, 1, 1).to(xt.dtype) / 50)


def test_ddpm_sampling_gives_finite_samples_of_the_right_shape(schedule):
    x, traj = sample_ddpm(_toy_eps_model, schedule, (4, 1, 6, 6), gen(8),
                          return_trajectory_at=[50, 25, 0])
    assert x.shape == (4, 1, 6, 6) and torch.isfinite(x).all()
    assert sorted(traj) == [0, 25, 50] and torch.equal(traj[0], x)


def test_ddim_with_eta_zero_is_deterministic_given_xT(schedule):
    xT = torch.randn(4, 1, 6, 6, generator=gen(9))
    a = sample_ddim(_toy_eps_model, schedule, xT.shape, steps=10, xT=xT, generator=gen(10))
    b = sample_ddim(_toy_eps_model, schedule, xT.shape, steps=10, xT=xT, generator=gen(11))
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_ddim_with_all_steps_and_eta_one_is_ancestral_with_beta_tilde(schedule):
    """eta = 1 on every step has sigma^2 = beta_tilde: same noise draws give the DDPM update."""
    xT = torch.randn(2, 1, 4, 4, generator=gen(12), dtype=DT)
    a = sample_ddim(_toy_eps_model, schedule, xT.shape, steps=schedule.T, eta=1.0, xT=xT,
                    generator=gen(13), clip_x0=False)
    b = sample_ddpm(_toy_eps_model, schedule, xT.shape, gen(13), xT=xT, sigma2="beta_tilde",
                    clip_x0=False)
    # the random draws are consumed in the same order by both samplers
    assert torch.allclose(a.double(), b.double(), atol=1e-6)
    # and both clip x0_hat the same way
    a = sample_ddim(_toy_eps_model, schedule, xT.shape, steps=schedule.T, eta=1.0, xT=xT * 4,
                    generator=gen(13))
    b = sample_ddpm(_toy_eps_model, schedule, xT.shape, gen(13), xT=xT * 4, sigma2="beta_tilde")
    assert torch.allclose(a.double(), b.double(), atol=1e-5)


def _gaussian_eps_model(schedule, m, s):
    """The exact noise predictor E[eps | x_t] for data x_0 ~ N(m, s^2) in every pixel: x_t and eps
    are jointly Gaussian with Cov(eps, x_t) = sqrt(1 - alpha_bar) and Var(x_t) = v = alpha_bar s^2
    + 1 - alpha_bar, so E[eps | x_t] = sqrt(1 - alpha_bar) (x_t - sqrt(alpha_bar) m) / v."""
    def eps_model(xt, t, y=None):
        alpha_bar = extract(schedule.alpha_bar, t, xt)
        v = alpha_bar * s**2 + 1 - alpha_bar
        return (1 - alpha_bar).sqrt() * (xt - alpha_bar.sqrt() * m) / v
    return eps_model


@pytest.mark.parametrize("clip_x0", [False, True])
def test_ddim_with_the_exact_gaussian_predictor_is_its_closed_form_map(clip_x0):
    """For Gaussian data N(m, s^2) and the exact predictor, each DDIM step (eta = 0) from t to s
    is affine: x_s - sqrt(ab_s) m = (sqrt(ab_s ab_t) s^2 + sqrt((1 - ab_s)(1 - ab_t))) / v_t
    (x_t - sqrt(ab_t) m). Twenty steps of the chapter's cpu schedule give that map to float64
    rounding, with or without the clip (x0_hat never leaves [-1, 1] for this data)."""
    schedule, steps, m, s = linear_schedule(200, 5e-4, 0.1), 20, 0.1, 0.2
    xT = torch.randn(64, 1, 4, 4, generator=gen(30), dtype=DT)
    got = sample_ddim(_gaussian_eps_model(schedule, m, s), schedule, xT.shape, steps, xT=xT,
                      clip_x0=clip_x0)
    ab = schedule.alpha_bar
    taus = ddim_timesteps(schedule.T, steps)
    y = xT - ab[taus[0]].sqrt() * m
    for t, nxt in zip(taus, taus[1:] + [None]):
        ab_s = ab[nxt] if nxt is not None else torch.tensor(1.0, dtype=DT)
        v_t = ab[t] * s**2 + 1 - ab[t]
        y = ((ab_s * ab[t]).sqrt() * s**2 + ((1 - ab_s) * (1 - ab[t])).sqrt()) / v_t * y
    assert torch.allclose(got, m + y, rtol=0, atol=1e-10)
    # The samples have the data's mean (within 5 standard errors). Their spread is smaller than
    # s: twenty steps of the ODE shrink it (this map gives 0.75 s; all 200 steps give 0.97 s).
    assert abs(got.mean().item() - m) < 5 * s / math.sqrt(got.numel())
    assert 0.6 * s < got.std().item() < s


def test_ddim_samples_stay_in_the_data_range_whatever_the_network_predicts():
    """Issue #14: near t = T, x0_hat divides the network's error by sqrt(alpha_bar_T) (0.0055 in
    the cpu schedule). A predictor that under-states the noise by 10 % (0.9 x_t) sends the plain
    DDIM chain to values up to 4 (flat white or black squares once clamped for display);
    sample_ddim clips x0_hat to [-1, 1] before every step, and its last step returns that guess."""
    schedule = linear_schedule(200, 5e-4, 0.1)
    xT = torch.randn(64, 1, 6, 6, generator=gen(32), dtype=DT)

    def under(xt, t, y=None):
        return 0.9 * xt

    for eta in (0.0, 1.0):
        x = sample_ddim(under, schedule, xT.shape, 20, eta=eta, xT=xT, generator=gen(33))
        assert x.abs().max() <= 1, f"eta={eta}: samples reach {x.abs().max():.2f}, outside [-1, 1]"
    plain = sample_ddim(under, schedule, xT.shape, 20, xT=xT, clip_x0=False)
    assert plain.abs().max() > 2  # the test's predictor does push the plain update out of range


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_are_monotone_with_alpha_bar_in_unit_interval(kind):
    s = make_schedule(kind, 200)
    assert ((s.alpha_bar > 0) & (s.alpha_bar < 1)).all()
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert (s.beta[1:] >= s.beta[:-1]).all()


def test_unknown_schedule_kind_raises_value_error():
    with pytest.raises(ValueError, match="linear, cosine"):
        make_schedule("quadratic", 10)


def test_cosine_schedule_matches_its_alpha_bar_formula():
    """alpha_bar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2), before clipping."""
    T, s = 100, 0.008
    sch = cosine_schedule(T, s)
    t = torch.tensor([1, 50, 90], dtype=DT)
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    assert torch.allclose(sch.alpha_bar[t.long() - 1], f(t) / f(torch.zeros(1, dtype=DT)), rtol=1e-9)


def test_guided_eps_combines_conditional_and_null_predictions():
    """(1 + w) eps(x, y) - w eps(x, null); w = 0 returns the conditional prediction."""
    def model(xt, t, y):
        return xt + (y != NULL_CLASS).to(xt.dtype).view(-1, 1, 1, 1)
    xt, t, y = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), torch.tensor([3, 5])
    assert torch.allclose(guided_eps(model, xt, t, y, 0.0), torch.ones_like(xt))
    assert torch.allclose(guided_eps(model, xt, t, y, 2.0), 3 * torch.ones_like(xt))


def test_unet_output_shape_and_null_class():
    torch.manual_seed(0)
    net = UNet((8, 16, 16), num_classes=10)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # the zero init would make every output 0
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 5, 9])
    assert net(x, t, torch.tensor([1, NULL_CLASS, 9])).shape == x.shape
    null = net(x, t, torch.full((3,), NULL_CLASS))
    assert torch.equal(net(x, t, None), null)  # no label means the null class
    assert not torch.allclose(net(x, t, torch.tensor([1, 2, 3])), null)  # a real label matters


def test_loss_decreases_on_real_data():
    """Thirty steps of Adam on 256 Fashion-MNIST images lower the mean loss of a fixed
    evaluation batch (fixed t and eps, so the comparison has no sampling noise)."""
    from dgm.data import load_dataset, make_loader

    torch.manual_seed(0)
    data = load_dataset("fashion_mnist", split="train", scale="pm1", subset=256, seed=0)
    sch = linear_schedule(50, 2e-3, 0.4)
    net = UNet((8, 16, 16))
    x0 = data.tensors[0][:64]

    def eval_loss():
        with torch.no_grad():
            return ddpm_loss(net, sch, x0, gen(99)).item()

    before = eval_loss()
    train_ddpm(net, sch, make_loader(data, batch_size=32, seed=0), epochs=4, lr=3e-3,
               generator=gen(0), max_steps=30, progress=False)
    assert eval_loss() < 0.8 * before


class _Recorder(torch.nn.Module):
    """A tiny noise predictor that keeps a copy of its weights at every training forward pass."""

    def __init__(self):
        super().__init__()
        self.net = UNet((8, 16, 16))
        self.seen = []

    def forward(self, xt, t, y=None):
        if self.training:
            self.seen.append([p.detach().clone() for p in self.parameters()])
        return self.net(xt, t, y)


def test_ema_weights_follow_the_moving_average_of_the_trained_weights():
    """train_ddpm(ema_decay=d) leaves e_k = d e_{k-1} + (1 - d) w_k (e_1 = w_1) in the model,
    where w_k are the raw weights after step k; the raw trajectory is that of a run without it
    (same seeds), whose forward passes show w_1 .. w_{n-1} and whose end state is w_n."""
    from torch.utils.data import DataLoader, TensorDataset

    sch = linear_schedule(50, 2e-3, 0.4)
    x = torch.randn(48, 1, 28, 28, generator=gen(3)).clamp(-1, 1)
    loader = DataLoader(TensorDataset(x, torch.zeros(48, dtype=torch.long)), batch_size=16)
    torch.manual_seed(0)
    raw = _Recorder()
    start = [p.detach().clone() for p in raw.parameters()]
    train_ddpm(raw, sch, loader, epochs=2, lr=1e-2, generator=gen(0), progress=False)
    weights = raw.seen[1:] + [[p.detach() for p in raw.parameters()]]   # w_1 .. w_6
    assert len(weights) == 6 and not torch.equal(weights[0][0], weights[-1][0])

    torch.manual_seed(0)
    averaged = _Recorder()
    assert all(torch.equal(a, b) for a, b in zip(start, averaged.parameters()))
    decay = 0.7
    train_ddpm(averaged, sch, loader, epochs=2, lr=1e-2, generator=gen(0), progress=False,
               ema_decay=decay)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(raw.seen, averaged.seen))  # same raw path
    expected = weights[0]
    for w in weights[1:]:
        expected = [decay * e + (1 - decay) * wk for e, wk in zip(expected, w)]
    for e, p in zip(expected, averaged.parameters()):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_ema_decay_outside_the_open_unit_interval_raises(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        train_ddpm(UNet((8, 16, 16)), linear_schedule(10), [], epochs=1, ema_decay=decay)


def test_settings_reject_an_unknown_sampler():
    from dataclasses import replace

    from dgm.diffusion import SETTINGS
    with pytest.raises(ValueError, match="eval_sampler"):
        replace(SETTINGS["smoke"], eval_sampler="euler")


def test_p_sample_clips_its_guess_of_x0_and_is_the_plain_step_when_the_guess_is_in_range():
    """The clipped step is q(x_{t-1} | x_t, clip(x0_hat)); inside [-1, 1] it is eq. ddpm-eps-mean."""
    from dgm.diffusion import p_sample

    schedule = make_schedule("linear", 50)
    xt = torch.randn(3, 1, 4, 4, generator=gen(3)) * 3
    t = 40
    z = lambda: gen(5)  # noqa: E731 - the same noise for every call
    clipped = p_sample(_toy_eps_model, schedule, xt, t, z(), clip_x0=True)
    plain = p_sample(_toy_eps_model, schedule, xt, t, z(), clip_x0=False)
    t_batch = torch.full((3,), t)
    eps = _toy_eps_model(xt, t_batch)
    x0 = predict_x0_from_eps(schedule, xt, t_batch, eps)
    noise = clipped - q_posterior(schedule, x0.clamp(-1, 1), xt, t_batch)[0]
    assert torch.allclose(plain - p_mean_from_eps(schedule, xt, t_batch, eps), noise, atol=1e-5)
    assert (x0.abs() > 1).any()  # the clip was active, so the two steps differ
    assert not torch.allclose(clipped, plain)
    inside = xt.clamp(-0.2, 0.2) * 0.01  # x0_hat inside the range: the clip changes nothing
    assert torch.allclose(p_sample(_toy_eps_model, schedule, inside, t, z(), clip_x0=True),
                          p_sample(_toy_eps_model, schedule, inside, t, z(), clip_x0=False), atol=1e-5)
