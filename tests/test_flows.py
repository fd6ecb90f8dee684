"""Claims of the normalizing flows chapter (book/flows.md), checked against autograd, closed forms
and numeric integration."""

import dataclasses
import math

import pytest
import torch
from scipy import integrate
from scipy.stats import norm
from torch import nn

from dgm.data import load_dataset
from dgm.flows import (
    ActNorm,
    AffineCoupling,
    Dequantize,
    FlowModel,
    InvConv1x1,
    Squeeze,
    build_from_settings,
    build_glow_flow,
    build_image_flow,
    channel_mask,
    checkerboard_mask,
    conv_net,
    lr_factor,
    mlp_net,
    nll_bits_per_dim,
    squeeze,
    train_flow,
    unsqueeze,
    SETTINGS,
)

INVERSE_TOL = 1e-12    # float64 round trip through a coupling layer
LOGDET_TOL = 1e-10     # float64 analytic logdet vs autograd Jacobian


def _randomise(module: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Give every parameter random values (the zero-initialised output layers make a fresh
    coupling layer the identity, which would make the checks trivial)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _image_coupling(mask, c, additive=False, seed=0):
    layer = AffineCoupling(mask, conv_net(c, 8, 2 * c, num_layers=2), c, additive=additive)
    return _randomise(layer.double(), seed)


def _vector_coupling(mask, d, additive=False, seed=0):
    layer = AffineCoupling(mask, mlp_net(d, 16, 2 * d), d, additive=additive)
    return _randomise(layer.double(), seed)


def _autograd_logdet(layer, x):
    """log|det J| of the layer at one input x (shape (1, ...)) from the flattened autograd Jacobian."""
    def f(flat):
        return layer(flat.view_as(x))[0].reshape(-1)
    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]


@pytest.mark.parametrize("parity", [0, 1])
def test_affine_coupling_inverse_recovers_input_to_float64_precision(parity):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 6, 6, generator=gen, dtype=torch.float64)
    for layer in (_image_coupling(checkerboard_mask(6, 6, parity), 2),
                  _image_coupling(channel_mask(2, parity), 2)):
        z, _ = layer(x)
        assert (z - x).abs().max() > 0.1, "a randomised layer should move the input"
        assert torch.allclose(layer.inverse(z), x, atol=INVERSE_TOL, rtol=0)


def test_affine_coupling_logdet_equals_autograd_jacobian_logdet():
    gen = torch.Generator().manual_seed(2)
    cases = [
        (_image_coupling(checkerboard_mask(4, 4, 0), 1), torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64)),
        (_image_coupling(channel_mask(4, 1), 4), torch.randn(1, 4, 2, 2, generator=gen, dtype=torch.float64)),
        (_vector_coupling(torch.tensor([1.0, 0.0, 1.0]), 3), torch.randn(1, 3, generator=gen, dtype=torch.float64)),
    ]
    for layer, x in cases:
        _, logdet = layer(x)
        assert logdet.shape == (1,)
        assert abs(logdet.item()) > 0.1, "the check is only informative for a non-volume-preserving layer"
        assert abs(logdet.item() - _autograd_logdet(layer, x).item()) < LOGDET_TOL


def test_additive_coupling_is_volume_preserving():
    gen = torch.Generator().manual_seed(3)
    layer = _image_coupling(checkerboard_mask(4, 4, 1), 1, additive=True)
    x = torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    z, logdet = layer(x)
    assert (z - x).abs().max() > 0.1
    assert logdet.abs().max().item() == 0.0
    assert abs(_autograd_logdet(layer, x).item()) < LOGDET_TOL
    assert torch.allclose(layer.inverse(z), x, atol=INVERSE_TOL, rtol=0)


def test_checkerboard_masks_are_complementary_and_alternate():
    m0, m1 = checkerboard_mask(5, 6, 0), checkerboard_mask(5, 6, 1)
    assert m0.shape == (1, 1, 5, 6)
    assert torch.equal(m0 + m1, torch.ones_like(m0))
    assert torch.all(m0[..., 1:, :] != m0[..., :-1, :])  # vertical neighbours differ
    assert torch.all(m0[..., :, 1:] != m0[..., :, :-1])  # horizontal neighbours differ


def test_channel_masks_are_complementary_halves():
    m0, m1 = channel_mask(4, 0), channel_mask(4, 1)
    assert m0.shape == (1, 4, 1, 1)
    assert torch.equal(m0 + m1, torch.ones_like(m0))
    assert m0.sum().item() == 2 and m1.sum().item() == 2


def test_squeeze_then_unsqueeze_is_identity_and_squeeze_moves_2x2_blocks_to_channels():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    y = squeeze(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze(y), x)
    # the four channels of output pixel (0, 0) of input channel 0 are its top-left 2x2 block
    assert torch.equal(y[0, 0:4, 0, 0], x[0, 0, 0:2, 0:2].reshape(-1))
    z, logdet = Squeeze()(x)
    assert torch.equal(logdet, torch.zeros(2, dtype=torch.float64))


def test_uniform_dequantisation_maps_each_level_into_its_bin():
    deq = Dequantize().double()
    levels = torch.arange(256, dtype=torch.float64).view(1, 1, 16, 16).repeat(64, 1, 1, 1)
    w, _ = deq(levels)
    y = (torch.sigmoid(w) - deq.alpha) / (1 - 2 * deq.alpha)
    tol = 1e-9
    assert torch.all(y >= levels / 256 - tol) and torch.all(y < (levels + 1) / 256 + tol)
    assert torch.equal(deq.inverse(w), levels)


class _Affine1d(nn.Module):
    """z = (w - m) / sigma: under a N(0, 1) prior, w ~ N(m, sigma^2)."""

    def __init__(self, m, sigma):
        super().__init__()
        self.m, self.sigma = m, sigma

    def forward(self, w):
        return (w - self.m) / self.sigma, torch.full((w.shape[0],), -math.log(self.sigma), dtype=w.dtype)

    def inverse(self, z):
        return z * self.sigma + self.m


def _toy_1d_model(m=-1.0, sigma=1.5):
    return FlowModel([_Affine1d(m, sigma)], (1,), Dequantize(alpha=0.01).double()).double()


def _integrand(model, k):
    """u -> exp(dequantised log-likelihood of level k with noise u) = p_y((k + u) / 256) / 256."""
    def f(u):
        x = torch.tensor([[k / 255]], dtype=torch.float64)
        return model.log_prob(x, torch.tensor([[u]], dtype=torch.float64)).item()
    return f


def test_discrete_probabilities_of_dequantised_model_match_closed_form():
    """P(k) = integral over the bin of the continuous density = Phi difference at the bin edges."""
    model, m, sigma, alpha = _toy_1d_model(), -1.0, 1.5, 0.01
    def edge(y):
        return (math.log(alpha + (1 - 2 * alpha) * y) - math.log(1 - alpha - (1 - 2 * alpha) * y) - m) / sigma
    for k in (0, 3, 100, 255):
        f = _integrand(model, k)
        p_numeric = integrate.quad(lambda u: math.exp(f(u)), 0, 1, epsabs=1e-13)[0]
        p_closed = norm.cdf(edge((k + 1) / 256)) - norm.cdf(edge(k / 256))
        assert abs(p_numeric - p_closed) < 1e-7 * p_closed


def test_uniform_dequantised_loglik_lower_bounds_discrete_loglik():
    """E_u[log p((k + u) / 256) - log 256] <= log P(k) (Jensen), both by numeric integration."""
    model = _toy_1d_model()
    gaps = []
    for k in (0, 1, 50, 128, 254, 255):
        f = _integrand(model, k)
        log_p = math.log(integrate.quad(lambda u: math.exp(f(u)), 0, 1, epsabs=1e-13)[0])
        bound = integrate.quad(f, 0, 1)[0]
        gaps.append(log_p - bound)
    assert min(gaps) >= -1e-9
    assert max(gaps) > 1e-6, "the density varies within some bin, so the bound is strict there"


def test_variational_dequantisation_log_density_matches_change_of_variables():
    """log q(u | x) = log U(eps) - log |du / deps|, with du/deps by autograd."""
    deq = _randomise(Dequantize(variational=True, channels=1, hidden=4).double(), seed=4, scale=0.3)
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (1, 1, 3, 3), generator=gen).double()
    eps = torch.rand(1, 1, 3, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    u, log_q = deq.noise(x, eps)
    assert torch.all((u > 0) & (u < 1))
    du_deps = torch.autograd.grad(u.sum(), eps)[0]  # u_i depends on eps_i only
    assert torch.allclose(log_q, -torch.log(du_deps).sum().view(1), atol=1e-10, rtol=0)


class _LogitToGaussian(nn.Module):
    """z = Phi^-1(sigmoid(w)): under a N(0, 1) prior, w has the logistic density, so the
    logit-transformed y' = sigmoid(w) is uniform on (0, 1)."""

    def forward(self, w):
        z = torch.special.ndtri(torch.sigmoid(w))
        log_phi = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        logdet = torch.nn.functional.logsigmoid(w) + torch.nn.functional.logsigmoid(-w) - log_phi
        return z, logdet.flatten(1).sum(1)

    def inverse(self, z):
        return torch.logit(torch.special.ndtr(z))


def test_nll_bits_per_dim_of_a_model_uniform_over_bins_is_eight_bits():
    """y' = alpha + (1 - 2 alpha) y uniform on (0, 1) means p_y = 1 - 2 alpha on [0, 1), so
    bits/dim = 8 - log2(1 - 2 alpha) exactly, whatever the images and the noise."""
    alpha = 1e-3
    model = FlowModel([_LogitToGaussian()], (1, 4, 4), Dequantize(alpha=alpha)).double()
    x = torch.randint(0, 256, (50, 1, 4, 4), generator=torch.Generator().manual_seed(8)).double() / 255
    bpd = nll_bits_per_dim(model, x, batch_size=16, generator=torch.Generator().manual_seed(9))
    assert abs(bpd - (8 - math.log2(1 - 2 * alpha))) < 1e-9


def test_affine_change_of_variables_matches_multivariate_normal():
    """z = A x + b with z ~ N(0, I): log p(x) = log N(Ax + b; 0, I) + log|det A| = log N(x; mu, S)
    with mu = -A^-1 b, S = A^-1 A^-T."""
    gen = torch.Generator().manual_seed(6)
    A = torch.randn(3, 3, generator=gen, dtype=torch.float64) + 2 * torch.eye(3, dtype=torch.float64)
    b = torch.randn(3, generator=gen, dtype=torch.float64)

    class Linear(nn.Module):
        def forward(self, x):
            return x @ A.T + b, torch.linalg.slogdet(A)[1].expand(x.shape[0])

        def inverse(self, z):
            return torch.linalg.solve(A, (z - b).T).T

    model = FlowModel([Linear()], (3,))
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    A_inv = torch.linalg.inv(A)
    mvn = torch.distributions.MultivariateNormal(-A_inv @ b, covariance_matrix=A_inv @ A_inv.T)
    assert torch.allclose(model.log_prob(x), mvn.log_prob(x), atol=1e-10, rtol=0)


def test_image_flow_decode_recovers_pixel_levels():
    model = _randomise(build_image_flow(4, 8, multiscale=True, net_layers=1), seed=7, scale=0.05)
    x = load_dataset("fashion_mnist", "train", subset=8, seed=0).tensors[0]
    z = model.encode(x)
    assert z.shape == (8, *model.latent_shape) and model.latent_shape == (4, 14, 14)
    assert torch.equal(model.decode(z), x)


def test_training_decreases_nll_on_real_images():
    torch.manual_seed(0)
    x = load_dataset("fashion_mnist", "train", subset=128, seed=0).tensors[0]
    model = build_image_flow(4, 8, multiscale=True, net_layers=1)
    before = nll_bits_per_dim(model, x, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=32, shuffle=True)
    train_flow(model, loader, epochs=5, lr=2e-3, progress=False)
    after = nll_bits_per_dim(model, x, generator=torch.Generator().manual_seed(0))
    assert after < before - 0.5, f"bits/dim went from {before:.3f} to {after:.3f}"


def _assert_logdet_is_the_jacobians_and_inverse_exact(model, w):
    """The summed log-determinants of ``model`` at ``w`` against log|det| of the brute-force
    Jacobian, and decoding layer by layer recovers ``w``."""
    z, logdet = model._through_layers(w)
    assert abs(logdet.item()) > 0.1, "the check is only informative for a non-volume-preserving flow"
    jac = torch.autograd.functional.jacobian(lambda f: model._through_layers(f.view_as(w))[0].reshape(-1),
                                             w.reshape(-1))
    assert abs(logdet.item() - torch.linalg.slogdet(jac)[1].item()) < LOGDET_TOL
    h = z
    for layer in reversed(model.layers):
        h = layer.inverse(h)
    assert torch.allclose(h, w, atol=INVERSE_TOL, rtol=0)


def test_multiscale_flow_logdet_equals_brute_force_jacobian_and_inverse_is_exact():
    # The whole stack (checkerboard couplings, squeeze, channel couplings) on a 1x4x4 input:
    # the summed log-determinants must be log|det| of the full 16x16 Jacobian, and decoding must
    # undo encoding, so sampling inverts exactly the map that training scored.
    model = _randomise(build_image_flow(4, 8, multiscale=True, shape=(1, 4, 4)), seed=11, scale=0.3).double()
    w = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    _assert_logdet_is_the_jacobians_and_inverse_exact(model, w)


def test_sample_scales_every_latent_dimension_by_the_temperature():
    # With the identity flow (fresh coupling layers), decode is the inverse logit only, so the
    # temperature must act on the whole latent, both scales included: compare with the same z.
    model = build_image_flow(4, 8, multiscale=True, net_layers=1).eval()
    gen = lambda: torch.Generator().manual_seed(5)
    z = torch.randn(3, *model.latent_shape, generator=gen())
    for temp in (1.0, 0.5):
        assert torch.equal(model.sample(3, generator=gen(), temperature=temp), model.decode(z * temp))


def test_glow_flow_logdet_equals_brute_force_jacobian_and_inverse_is_exact():
    # Squeeze, ActNorm, invertible 1x1 convolution and channel couplings at two scales on a 1x4x4
    # input (4x2x2, then 16x1x1), with every parameter random: summed logdets against the full
    # 16x16 Jacobian, and an exact inverse.
    model = _randomise(build_glow_flow((2, 2), 8, shape=(1, 4, 4)), seed=21, scale=0.3).double()
    gen = torch.Generator().manual_seed(23)
    with torch.no_grad():  # 1x1 convolutions: random, not orthogonal, but well conditioned (cond < 4)
        for layer in model.layers:
            if isinstance(layer, InvConv1x1):
                c = layer.weight.shape[0]
                q = torch.linalg.qr(torch.randn(c, c, generator=gen, dtype=torch.float64))[0]
                layer.weight.copy_(q * torch.exp(0.3 * torch.randn(c, generator=gen, dtype=torch.float64)).clamp(0.5, 2))
    w = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    _assert_logdet_is_the_jacobians_and_inverse_exact(model, w)


def test_data_init_makes_every_actnorm_output_standardised_per_channel():
    torch.manual_seed(0)
    x = load_dataset("fashion_mnist", "train", subset=64, seed=0).tensors[0]
    model = build_glow_flow((2, 2), 8, net_layers=1)
    model.data_init(x)
    eps = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    h = model.dequantize(x * 255, eps)[0]
    checked = 0
    for layer in model.layers:
        out = layer(h)[0]
        if isinstance(layer, ActNorm):
            assert bool(layer.initialised)
            per_channel = out.transpose(0, 1).reshape(out.shape[1], -1)
            # the init batch had its own noise, so mean 0 / std 1 hold to sampling error only
            assert per_channel.mean(1).abs().max() < 0.05 and (per_channel.std(1) - 1).abs().max() < 0.05
            checked += 1
        h = out
    assert checked == 4


def test_build_from_settings_rejects_an_unknown_architecture():
    cfg = dataclasses.replace(SETTINGS["smoke"], architecture="glowy")
    with pytest.raises(ValueError, match="glow"):
        build_from_settings(cfg)


def test_factor_out_split_of_the_recipe_benchmark_has_the_jacobians_logdet_and_inverts():
    # benchmarks/flows_glow_recipe.py's Glow split: half the channels leave under a Gaussian prior
    # computed from the other half, which goes on through a squeeze and more steps. On a 4x4x4
    # input the logdet must be log|det| of the 64x64 Jacobian of the flattened output.
    from benchmarks.flows_glow_recipe import FactorOut, glow_level

    inner = [Squeeze(), *glow_level(8, 2, 8)]
    model = _randomise(FlowModel([FactorOut(4, 8, inner)], (4, 4, 4)), seed=3, scale=0.3).double()
    w = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z, logdet = model._through_layers(w)
    assert z.shape == (1, 64)
    jac = torch.autograd.functional.jacobian(lambda f: model._through_layers(f.view_as(w))[0].reshape(-1),
                                             w.reshape(-1))
    assert abs(logdet.item()) > 0.1
    assert abs(logdet.item() - torch.linalg.slogdet(jac)[1].item()) < LOGDET_TOL
    assert torch.allclose(model.layers[0].inverse(z), w, atol=INVERSE_TOL, rtol=0)


def test_benchmark_bias_corrected_ema_is_the_normalised_geometric_average():
    # benchmarks/flows_glow_recipe.py's EMA: after parameters p_1..p_T it must hold
    # sum_t (1 - d) d^(T - t) p_t / (1 - d^T): no share for the weights before training.
    from benchmarks.flows_glow_recipe import BiasCorrectedEMA

    d, values = 0.9, [3.0, -1.0, 4.0, 1.5, -2.0]
    model = nn.Linear(1, 1, bias=False)
    ema = BiasCorrectedEMA(model, d)
    with torch.no_grad():
        model.weight.fill_(100.0)  # the initial value must not leak into the average
    for v in values:
        with torch.no_grad():
            model.weight.fill_(v)
        ema.update()
    T = len(values)
    expected = sum((1 - d) * d ** (T - 1 - k) * v for k, v in enumerate(values)) / (1 - d ** T)
    target = nn.Linear(1, 1, bias=False)
    ema.copy_to(target)
    assert abs(target.weight.item() - expected) < 1e-5
    assert abs(expected - values[-1]) > 0.5  # an average, not the last value


def test_benchmark_cosine_schedule_warms_up_then_falls_to_zero():
    from benchmarks.flows_glow_recipe import lr_multiplier

    assert abs(lr_multiplier("cosine", 0.05) - (0.051 * 0.5 * (1 + math.cos(math.pi * 0.05)) / 0.1)) < 1e-9
    assert abs(lr_multiplier("cosine", 0.5) - 0.5) < 1e-9
    assert lr_multiplier("cosine", 1.0) < 1e-12
    assert abs(lr_multiplier("chapter", 1.0) - 0.1) < 1e-9
    with pytest.raises(ValueError, match="chapter"):
        lr_multiplier("linear", 0.5)


def test_lr_factor_schedules_match_their_closed_forms():
    for final in (0.1, 0.0):
        assert lr_factor(0.5, 0.0, "cosine", final) == pytest.approx((1 + final) / 2, abs=1e-12)
        assert lr_factor(1.0, 0.0, "cosine", final) == pytest.approx(final, abs=1e-12)
        assert lr_factor(0.25, 0.0, "cosine", final) == pytest.approx(
            final + (1 - final) * (0.5 + 0.5 * math.cos(math.pi / 4)), abs=1e-12)
    assert lr_factor(0.5, 0.0) == pytest.approx(0.1 ** 0.5, abs=1e-12)  # the default is unchanged
    assert lr_factor(0.05, 0.1, "cosine", 0.0) == pytest.approx(0.51 * 0.5 * (1 + math.cos(math.pi * 0.05)))
    with pytest.raises(ValueError, match="exponential"):
        lr_factor(0.5, 0.0, "linear")


def test_train_flow_follows_the_cosine_schedule_to_zero():
    torch.manual_seed(0)
    model = build_glow_flow((1,), 4, 1, shape=(1, 4, 4))
    x = torch.rand(24, 1, 4, 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    history = train_flow(model, loader, epochs=2, lr=1e-2, progress=False, warmup=0.25,
                         schedule="cosine", final_lr=0.0)
    total = 12
    expected = [1e-2 * lr_factor(s / total, 0.25, "cosine", 0.0) for s in range(total)]
    assert history["lr"] == pytest.approx(expected, rel=1e-9)
    assert history["lr"][-1] < 1e-3 < max(history["lr"])
    with pytest.raises(ValueError, match="schedule"):
        train_flow(model, loader, epochs=1, schedule="step", progress=False)
