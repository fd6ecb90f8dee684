"""Tests of dgm.contrastive against the formulas and closed forms of book/contrastive.md."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dgm.contrastive import (
    augment, few_label_indices, info_nce, linear_probe, nt_xent, rotate_batch, triplet_loss,
)


def _triplets(seed=0, b=16, d=5):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=gen) for _ in range(3)]


def test_triplet_loss_matches_formula_of_eq_contrastive_triplet():
    """mean_i max(0, ||a_i - p_i||^2 - ||a_i - n_i||^2 + margin), computed one triplet at a time."""
    a, p, n = _triplets()
    margin = 0.7
    direct = sum(max(0.0, float(((a[i] - p[i]) ** 2).sum() - ((a[i] - n[i]) ** 2).sum()) + margin)
                 for i in range(len(a))) / len(a)
    assert abs(triplet_loss(a, p, n, margin).item() - direct) < 1e-5


def test_triplet_loss_is_zero_when_negatives_are_far():
    """Negatives further than sqrt(d_pos + margin) from the anchor contribute nothing."""
    a, p, _ = _triplets()
    n = a + 100.0  # squared distance 5 * 100^2, far beyond any d_pos + margin
    assert triplet_loss(a, p, n, margin=1.0).item() == 0.0


def test_triplet_loss_grows_with_the_margin_at_rate_of_active_fraction():
    """d loss / d margin = fraction of triplets inside the margin, so the loss increases with it."""
    a, p, n = _triplets(seed=1)
    margins = [0.0, 0.5, 1.0, 2.0, 4.0]
    losses = [triplet_loss(a, p, n, m).item() for m in margins]
    assert all(hi > lo for lo, hi in zip(losses, losses[1:]))
    m = torch.tensor(1.0, requires_grad=True)
    triplet_loss(a, p, n, m).backward()
    active = ((a - p).pow(2).sum(-1) - (a - n).pow(2).sum(-1) + 1.0 > 0).float().mean()
    assert abs(m.grad.item() - active.item()) < 1e-6


def _nt_xent_loop(z1, z2, tau):
    """Eq. contrastive-ntxent written out term by term."""
    z = torch.cat([z1, z2])
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sim = [F.cosine_similarity(z[i], z[k], dim=0).item() / tau for k in range(n2)]
        denom = sum(math.exp(sim[k]) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[j]) / denom)
    return total / n2


def test_nt_xent_matches_direct_loop():
    """The vectorised NT-Xent equals the term-by-term sum over 2N anchors."""
    gen = torch.Generator().manual_seed(2)
    z1 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    z2 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    for tau in (0.1, 0.5, 1.0):
        assert abs(nt_xent(z1, z2, tau).item() - _nt_xent_loop(z1, z2, tau)) < 1e-9


def test_nt_xent_of_identical_embeddings_is_log_2n_minus_1():
    """All 2N views equal: every candidate has the same similarity, loss = log(2N - 1)."""
    for n in (2, 5, 32):
        z = torch.ones(n, 3, dtype=torch.float64)
        assert abs(nt_xent(z, z.clone(), 0.3).item() - math.log(2 * n - 1)) < 1e-9


def test_nt_xent_of_orthogonal_pairs_has_closed_form():
    """Pairs on orthogonal unit vectors: loss = log(1 + (2N - 2) exp(-1/tau))."""
    n, tau = 4, 0.5
    z = torch.eye(n, dtype=torch.float64)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert abs(nt_xent(z, 3 * z, tau).item() - expected) < 1e-9  # cosine similarity ignores scale


def test_info_nce_is_log_n_for_uniform_scores_and_falls_to_zero_for_a_dominant_diagonal():
    """Uniform scores cannot tell the positive from N - 1 negatives: loss log N, bound 0.
    A diagonal far above the rest identifies every positive: loss near 0, bound near log N."""
    for n in (2, 16, 128):
        assert info_nce(torch.zeros(n, n)).item() == pytest.approx(math.log(n), rel=1e-6)
        assert info_nce(50 * torch.eye(n)).item() < 1e-6


def test_info_nce_bound_is_below_true_mutual_information():
    """Correlated Gaussians, x, y in R^d with corr rho per dimension: I = -d/2 log(1 - rho^2).

    With the optimal critic log p(y|x) / p(y), the Monte Carlo mean of log N - loss stays below I
    (tolerance: 3 standard errors over 100 batches) and is within 0.05 nats of it for N = 128.
    """
    d, rho, n, batches = 2, 0.6, 128, 100
    mi = -d / 2 * math.log(1 - rho**2)
    gen = torch.Generator().manual_seed(4)
    bounds = []
    for _ in range(batches):
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=gen, dtype=torch.float64)
        # scores[i, j] = log p(y_j | x_i) - log p(y_j), dropping terms constant in the row
        cond = -((y[None, :, :] - rho * x[:, None, :]) ** 2).sum(-1) / (2 * (1 - rho**2))
        marg = -(y**2).sum(-1) / 2
        bounds.append(math.log(n) - info_nce(cond - marg[None, :]).item())
    b = torch.tensor(bounds)
    se = b.std().item() / math.sqrt(batches)
    assert b.mean().item() <= mi + 3 * se
    assert b.mean().item() > mi - 0.05


def test_augment_keeps_shape_and_unit_range():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(16, 1, 28, 28, generator=gen)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_augment_is_reproducible_with_a_seed_and_varies_without():
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_linear_probe_on_one_hot_label_features_is_perfect():
    """Features that are the one-hot labels are linearly separable: probe accuracy 100 %."""
    labels = torch.arange(10).repeat(20)
    ds = TensorDataset(F.one_hot(labels, 10).float(), labels)
    assert linear_probe(lambda x: x, ds, ds, labels_per_class=5, seed=0) == 1.0


def test_few_label_indices_draws_exactly_k_distinct_per_class():
    labels = torch.randint(10, (500,), generator=torch.Generator().manual_seed(7))
    idx = few_label_indices(labels, 7, seed=3)
    assert len(set(idx.tolist())) == len(idx)
    assert torch.bincount(labels[idx], minlength=10).tolist() == [7] * 10


def test_rotate_batch_labels_name_the_rotation():
    """Turning each copy back by -label quarter turns recovers the original image."""
    x = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(8))
    rotated, labels = rotate_batch(x)
    back = torch.stack([torch.rot90(r, -int(k), dims=(-2, -1)) for r, k in zip(rotated, labels)])
    assert torch.equal(back, x.repeat(4, 1, 1, 1))


def test_batchnorm_recalibration_sets_running_stats_to_the_data_statistics():
    """After recalibration a BatchNorm layer's running mean and (unbiased) variance are those of
    its inputs, whatever they were before."""
    from dgm.contrastive import recalibrate_batchnorm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    x = 2 + 3 * torch.randn(64, 3, 4, 4)
    recalibrate_batchnorm(torch.nn.Sequential(bn), x, batch_size=64)
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, x.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert not bn.training
