"""Tests of dgm/vae.py (the VAE chapter, book/vae.md): each test checks one claim of the chapter
against a closed form, autograd, a reference implementation in torch, or a Monte Carlo estimate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dgm.data import load_dataset
from dgm.probability import kl_std_normal
from dgm.vae import (
    SETTINGS,
    ConvVAE,
    bernoulli_nll,
    gaussian_nll,
    latent_traversal,
    negative_elbo,
    train_vae,
    traversal_codes,
    vae_loss,
)


def _random_batch(seed: int = 0, b: int = 5, latent_dim: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 28, 28, generator=g, dtype=torch.float64)
    logits = 2 * torch.randn(b, 1, 28, 28, generator=g, dtype=torch.float64)
    mu = torch.randn(b, latent_dim, generator=g, dtype=torch.float64)
    logvar = torch.randn(b, latent_dim, generator=g, dtype=torch.float64)
    return x, logits, mu, logvar


def test_reparameterize_has_mean_mu_and_variance_exp_logvar():
    """z = mu + exp(logvar / 2) eps: Monte Carlo mean and variance within 5 standard errors."""
    torch.manual_seed(0)
    n = 200_000
    mu = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    logvar = torch.tensor([-2.0, 0.0, 1.0], dtype=torch.float64)
    z = ConvVAE.reparameterize(mu.expand(n, 3), logvar.expand(n, 3))
    var = logvar.exp()
    se_mean = torch.sqrt(var / n)
    se_var = var * math.sqrt(2 / (n - 1))  # standard error of a Gaussian sample variance
    assert torch.all((z.mean(0) - mu).abs() < 5 * se_mean)
    assert torch.all((z.var(0) - var).abs() < 5 * se_var)


def test_gradient_flows_through_reparameterize_as_autograd_predicts():
    """dz/dmu = 1 and dz/dlogvar = eps * exp(logvar / 2) / 2 for z = mu + exp(logvar / 2) eps."""
    mu = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([0.4, -0.7], dtype=torch.float64, requires_grad=True)
    eps = torch.tensor([1.5, -0.5], dtype=torch.float64)
    z = ConvVAE.reparameterize(mu, logvar, eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2, dtype=torch.float64))
    assert torch.allclose(logvar.grad, 0.5 * eps * torch.exp(0.5 * logvar.detach()))


def test_vae_loss_kl_equals_toolkit_kl_std_normal():
    """The KL term of vae_loss is the batch mean of dgm.probability.kl_std_normal."""
    x, logits, mu, logvar = _random_batch()
    kl = vae_loss(x, logits, mu, logvar).kl
    assert torch.allclose(kl, kl_std_normal(mu, logvar).mean(), rtol=1e-12)


def test_vae_loss_kl_equals_closed_form():
    """KL(N(mu, sigma2) || N(0, 1)) summed over dims = 1/2 sum(mu^2 + sigma2 - log sigma2 - 1)."""
    x, logits, mu, logvar = _random_batch(seed=1)
    closed = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(dim=1).mean()
    assert torch.allclose(vae_loss(x, logits, mu, logvar).kl, closed, rtol=1e-12)


def test_vae_loss_kl_matches_torch_distributions():
    """The KL term agrees with torch.distributions.kl_divergence of Normal against Normal(0, 1)."""
    x, logits, mu, logvar = _random_batch(seed=2)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    reference = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert torch.allclose(vae_loss(x, logits, mu, logvar).kl, reference, rtol=1e-10)


def test_gaussian_nll_matches_normal_log_prob_with_constant():
    """gaussian_nll = -sum over pixels of Normal(mean, sqrt(sigma2)).log_prob(x), 2 pi term included."""
    x, logits, _, _ = _random_batch(seed=3)
    mean = torch.sigmoid(logits)
    for sigma2 in (1.0, 0.1):
        reference = -torch.distributions.Normal(mean, math.sqrt(sigma2)).log_prob(x).flatten(1).sum(1)
        assert torch.allclose(gaussian_nll(x, mean, sigma2), reference, rtol=1e-12)


def test_gaussian_nll_is_scaled_squared_error_plus_constant():
    """-log N(x; m, s2 I) = ||x - m||^2 / (2 s2) + D/2 log(2 pi s2), D = 784 pixels."""
    x, logits, _, _ = _random_batch(seed=4)
    mean, sigma2 = torch.sigmoid(logits), 0.3
    closed = ((x - mean) ** 2).flatten(1).sum(1) / (2 * sigma2) + 784 / 2 * math.log(2 * math.pi * sigma2)
    assert torch.allclose(gaussian_nll(x, mean, sigma2), closed, rtol=1e-12)


def test_vae_loss_gaussian_recon_uses_sigmoid_of_logits_as_mean():
    """With likelihood='gaussian' the reconstruction term is gaussian_nll at mean sigmoid(logits)."""
    x, logits, mu, logvar = _random_batch(seed=5)
    recon = vae_loss(x, logits, mu, logvar, likelihood="gaussian", sigma2=0.5).recon
    assert torch.allclose(recon, gaussian_nll(x, torch.sigmoid(logits), 0.5).mean(), rtol=1e-12)


def test_bernoulli_recon_equals_summed_bce_with_logits():
    """The Bernoulli reconstruction term is BCE-with-logits summed over pixels, averaged over images."""
    x, logits, mu, logvar = _random_batch(seed=6)
    reference = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    assert torch.allclose(vae_loss(x, logits, mu, logvar).recon, reference, rtol=1e-12)
    explicit = -(x * torch.log(torch.sigmoid(logits)) + (1 - x) * torch.log(torch.sigmoid(-logits)))
    assert torch.allclose(bernoulli_nll(x, logits), explicit.flatten(1).sum(1), rtol=1e-10)


def test_total_is_recon_plus_beta_times_kl():
    """total = recon + beta * kl for any beta."""
    x, logits, mu, logvar = _random_batch(seed=7)
    terms = vae_loss(x, logits, mu, logvar, beta_kl=3.5)
    assert torch.allclose(terms.total, terms.recon + 3.5 * terms.kl, rtol=1e-12)


def test_beta_zero_gives_no_kl_contribution_to_total():
    """With beta = 0 the total equals the reconstruction term and its gradient ignores the KL."""
    x, logits, mu, logvar = _random_batch(seed=8)
    logvar.requires_grad_(True)
    terms = vae_loss(x, logits, mu, logvar, beta_kl=0.0)
    assert terms.kl > 0
    assert torch.equal(terms.total, terms.recon)
    terms.total.backward()
    assert logvar.grad is None or torch.count_nonzero(logvar.grad) == 0


def test_unknown_likelihood_raises_value_error_naming_choices():
    x, logits, mu, logvar = _random_batch()
    with pytest.raises(ValueError, match="bernoulli, gaussian"):
        vae_loss(x, logits, mu, logvar, likelihood="laplace")


def test_traversal_codes_vary_only_dimensions_i_and_j():
    """Grid codes: z_i follows the rows, z_j the columns, both over [-span, span]; all else zero."""
    n, span, i, j = 10, 3.0, 2, 5
    z = traversal_codes(latent_dim=8, i=i, j=j, n=n, span=span).reshape(n, n, 8)
    values = torch.linspace(-span, span, n)
    assert torch.allclose(z[:, :, i], values[:, None].expand(n, n))
    assert torch.allclose(z[:, :, j], values[None, :].expand(n, n))
    others = [k for k in range(8) if k not in (i, j)]
    assert torch.count_nonzero(z[:, :, others]) == 0


def test_latent_traversal_decodes_traversal_codes_into_n_squared_images():
    """latent_traversal returns (n*n, 1, 28, 28) decoder means, equal to decoding traversal_codes."""
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=6, width=4, hidden=16).eval()
    grid = latent_traversal(model, 1, 4, n=7, span=2.0)
    assert grid.shape == (49, 1, 28, 28)
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(traversal_codes(6, 1, 4, n=7, span=2.0)))
    assert torch.allclose(grid, expected)


def test_traversal_codes_reject_equal_dimensions():
    with pytest.raises(ValueError):
        traversal_codes(latent_dim=4, i=1, j=1)


def test_train_vae_decreases_negative_elbo_on_real_images():
    """A few epochs on 128 real Fashion-MNIST images lower their negative ELBO (same fixed eps)."""
    torch.manual_seed(0)
    data = load_dataset("fashion_mnist", split="train", scale="01", subset=128, seed=0, download=False)
    model = ConvVAE(latent_dim=8, width=8, hidden=64)
    before = negative_elbo(model, data).total
    loader = DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    history = train_vae(model, loader, epochs=4, beta_kl=1.0, device="cpu", progress=False)
    after = negative_elbo(model, data).total
    assert set(history) == {"recon", "kl", "total", "seconds"} and len(history["total"]) == 4
    assert history["total"][-1] < history["total"][0]
    assert after < before


def test_negative_elbo_is_recon_plus_kl_of_one_sample():
    """negative_elbo averages vae_loss (beta = 1) over the data set with its seeded eps."""
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=3, width=4, hidden=16).eval()
    x = torch.rand(10, 1, 28, 28)
    result = negative_elbo(model, TensorDataset(x), batch_size=10, seed=3)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
        logits = model.decode(model.reparameterize(mu, logvar, eps))
        terms = vae_loss(x, logits, mu, logvar)
    assert result.total == pytest.approx(terms.total.item(), rel=1e-5)
    assert result.total == pytest.approx(result.recon + result.kl, rel=1e-6)  # float32 sums


def test_init_pixel_bias_makes_an_untrained_decoder_output_the_mean_image():
    """After init_pixel_bias(images), sigmoid(logits) = mean image + the network's own output,
    which is zero when the last layer's weights are zero; pixels are clamped away from 0 and 1."""
    torch.manual_seed(0)
    images = torch.rand(50, 1, 28, 28)
    images[:, :, 0, 0] = 0.0  # a pixel black in every image: its logit is clamped, not -inf
    model = ConvVAE.from_settings(SETTINGS["smoke"], images)
    with torch.no_grad():
        model.decoder.net[-1].weight.zero_()
        probs = torch.sigmoid(model.decode(torch.randn(4, SETTINGS["smoke"].latent_dim)))
    expected = images.mean(0).clamp(1e-3, 1 - 1e-3).expand(4, 1, 28, 28)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.isfinite(model.decoder.pixel_bias).all()


def test_init_pixel_bias_rejects_images_of_the_wrong_shape():
    decoder = ConvVAE(latent_dim=4, width=4, hidden=16).decoder
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        decoder.init_pixel_bias(torch.rand(5, 28, 28))
