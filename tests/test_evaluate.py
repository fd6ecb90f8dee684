"""Tests of dgm/evaluate.py, the evaluation harness of book/evaluation.md.

The classifier is trained once per module in the smoke profile into a temporary cache folder;
the cache tests use a tiny classifier so that retraining costs about a second.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from dgm import evaluate as ev
from dgm.data import load_dataset

#: "Far better": real images must have at most this fraction of the baselines' Frechet distance.
FAR_BETTER = 0.1
TINY = ev.ClassifierSettings(epochs=1, width=4, feature_dim=8, seed=3)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("classifier-cache")


@pytest.fixture(scope="module")
def clf(cache_dir):
    return ev.get_classifier("fashion_mnist", profile="smoke", device="cpu", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def heldout():
    return load_dataset("fashion_mnist", split="test", scale="01")


@pytest.fixture(scope="module")
def halves(heldout):
    """Two disjoint halves of the held-out split: one plays the samples, the other the reference."""
    images = heldout.tensors[0]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    half = len(images) // 2
    return images[order[:half]], images[order[half:2 * half]]


@pytest.fixture(scope="module")
def baseline_scores(clf, halves):
    real, reference = halves
    train = load_dataset("fashion_mnist", split="train", scale="01").tensors[0]
    n = len(real)
    return {
        "real": ev.sample_scores(clf, real, reference),
        "noise": ev.sample_scores(clf, ev.noise_images(n, seed=1), reference),
        "blurred_mean": ev.sample_scores(clf, ev.blurred_mean_images(train, n), reference),
    }


def random_cov(d, seed, rank=None):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


# ----------------------------------------------------------------------------- Frechet distance

def test_frechet_distance_in_1d_is_squared_mean_plus_squared_std_difference():
    m1, s1, m2, s2 = 0.3, 1.7, -1.1, 0.4
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    assert ev.frechet_distance([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_for_diagonal_covariances_is_sum_of_1d_distances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = np.sum((mu1 - mu2) ** 2 + (np.sqrt(var1) - np.sqrt(var2)) ** 2)
    found = ev.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert found == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_for_commuting_covariances_uses_sqrt_of_shared_eigenvalues():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))  # shared eigenvectors make cov1, cov2 commute
    lam1, lam2 = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    cov1, cov2 = q @ np.diag(lam1) @ q.T, q @ np.diag(lam2) @ q.T
    mu = rng.normal(size=5)
    expected = np.sum((np.sqrt(lam1) - np.sqrt(lam2)) ** 2)
    assert ev.frechet_distance(mu, cov1, mu, cov2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    cov1, cov2 = random_cov(20, 2), random_cov(20, 3)
    mu1, mu2 = np.zeros(20), np.full(20, 0.5)
    covmean = scipy.linalg.sqrtm(cov1 @ cov2).real
    expected = 20 * 0.25 + np.trace(cov1 + cov2 - 2 * covmean)
    assert ev.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_finite_and_nonnegative_for_singular_covariances():
    cov1, cov2 = random_cov(30, 4, rank=5), np.zeros((30, 30))  # e.g. identical samples
    found = ev.frechet_distance(np.zeros(30), cov1, np.zeros(30), cov2)
    assert found == pytest.approx(np.trace(cov1), rel=1e-10)


# ----------------------------------------------------------------------------- bits per dimension

@pytest.mark.parametrize("scale, low, high", [("01", 0.0, 1.0), ("pm1", -1.0, 1.0), ("bytes", 0.0, 256.0)])
def test_uniform_density_on_the_data_cube_scores_eight_bits_per_dim(scale, low, high):
    """Uniform over 256 levels is 8 bits per pixel whatever cube the density lives on."""
    dims = 784
    nll = dims * math.log(high - low)  # -log of the uniform density (high - low)^-D
    assert ev.bits_per_dim(nll, dims=dims, scale=scale) == pytest.approx(8.0, rel=1e-12)


def test_bits_per_dim_of_dequantised_categorical_equals_its_entropy_in_bits():
    """A density on [0, 1]^D that is P(k) * 256 on bin [k/256, (k+1)/256) per pixel has
    bits/dim = -log2 P(k) averaged over pixels: the code length of the 8-bit image."""
    gen = torch.Generator().manual_seed(0)
    dims = 50
    probs = torch.softmax(torch.randn(256, generator=gen, dtype=torch.float64), 0)
    levels = torch.multinomial(probs, 64 * dims, replacement=True, generator=gen).view(64, dims)
    nll_01 = -(torch.log(probs[levels]) + math.log(256)).sum(1)  # (64,) nats per image
    expected = -torch.log2(probs[levels]).sum(1) / dims
    torch.testing.assert_close(ev.bits_per_dim(nll_01, dims=dims, scale="01"), expected,
                               rtol=1e-12, atol=1e-12)


def test_bits_per_dim_rejects_unknown_scale():
    with pytest.raises(ValueError, match="01, pm1, bytes"):
        ev.bits_per_dim(100.0, scale="0255")


# ----------------------------------------------------------------------------- classifier scores

def test_classifier_accuracy_on_heldout_split_exceeds_three_quarters(clf, heldout):
    assert ev.classifier_accuracy(clf, heldout) > 0.75


def test_fd_of_a_set_with_itself_is_about_zero(clf, heldout):
    images = heldout.tensors[0]
    feats = ev.extract_features(clf, images)
    tol = 1e-6 * (1 + np.trace(np.cov(feats, rowvar=False)))  # relative to the feature scale
    assert abs(ev.sample_scores(clf, images, images)["fd"]) < tol


def test_real_heldout_images_have_far_lower_fd_than_noise_and_blurred_mean(baseline_scores):
    real = baseline_scores["real"]["fd"]
    for name in ("noise", "blurred_mean"):
        other = baseline_scores[name]["fd"]
        assert real < FAR_BETTER * other, f"real FD {real:.1f} vs {name} FD {other:.1f}"


def test_real_heldout_images_cover_all_classes_and_baselines_few(baseline_scores):
    assert baseline_scores["real"]["coverage"] == 1.0
    assert baseline_scores["noise"]["coverage"] <= 0.3
    assert baseline_scores["blurred_mean"]["coverage"] == pytest.approx(0.1)  # one image, one class


def test_class_histogram_is_a_distribution_over_ten_classes(baseline_scores):
    for scores in baseline_scores.values():
        assert len(scores["class_histogram"]) == 10
        assert sum(scores["class_histogram"]) == pytest.approx(1.0)


def test_evaluate_samples_reads_pm1_samples_like_their_01_version(clf, cache_dir, halves):
    x01 = halves[0][:100]
    a = ev.evaluate_samples(x01, profile="smoke", device="cpu", cache_dir=cache_dir)
    b = ev.evaluate_samples(2 * x01 - 1, profile="smoke", device="cpu", cache_dir=cache_dir)
    assert a["n"] == b["n"] == 100
    assert a["fd"] == pytest.approx(b["fd"], rel=1e-5)
    assert a["class_histogram"] == b["class_histogram"]


@pytest.mark.parametrize("bad", [torch.rand(8, 28, 28), torch.rand(8, 3, 28, 28),
                                 torch.rand(8, 1, 32, 32), 255 * torch.rand(8, 1, 28, 28),
                                 torch.full((8, 1, 28, 28), float("nan"))])
def test_evaluate_samples_rejects_wrong_shape_or_range_with_value_error(bad, cache_dir):
    with pytest.raises(ValueError):
        ev.evaluate_samples(bad, profile="smoke", device="cpu", cache_dir=cache_dir)


# ----------------------------------------------------------------------------- the cache

def test_cache_hit_does_not_retrain(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "_LOADED", {})
    ev.get_classifier(cache_dir=tmp_path, device="cpu", settings=TINY)
    (path,) = tmp_path.glob("classifier-fashion_mnist-*.pt")
    runs, mtime = ev.TRAINING_RUNS, path.stat().st_mtime_ns
    ev._LOADED.clear()  # as a new process: read from the disk cache
    ev.get_classifier(cache_dir=tmp_path, device="cpu", settings=TINY)
    assert ev.TRAINING_RUNS == runs
    assert path.stat().st_mtime_ns == mtime


def test_corrupt_cache_file_retrains_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "_LOADED", {})
    first = ev.get_classifier(cache_dir=tmp_path, device="cpu", settings=TINY)
    (path,) = tmp_path.glob("classifier-fashion_mnist-*.pt")
    path.write_bytes(path.read_bytes()[:100])  # a truncated download or an interrupted save
    ev._LOADED.clear()  # as a new process
    runs = ev.TRAINING_RUNS
    with pytest.warns(RuntimeWarning, match="training a new one"):
        second = ev.get_classifier(cache_dir=tmp_path, device="cpu", settings=TINY)
    assert ev.TRAINING_RUNS == runs + 1
    for p, q in zip(first.parameters(), second.parameters()):  # same seed, same classifier
        torch.testing.assert_close(p, q)
    torch.load(path, weights_only=True)  # the cache file was rewritten and is readable again


def test_cache_key_changes_with_data_size_content_and_settings():
    base = ev.cache_key("fashion_mnist", 4000, TINY, "abc")
    assert base != ev.cache_key("fashion_mnist", 60000, TINY, "abc")
    assert base != ev.cache_key("fashion_mnist", 4000, TINY, "abd")
    assert base != ev.cache_key("digits", 4000, TINY, "abc")
    assert base != ev.cache_key("fashion_mnist", 4000, ev.ClassifierSettings(epochs=2), "abc")


def test_training_leaves_the_callers_random_state_untouched(tmp_path):
    torch.manual_seed(123)
    ev.get_classifier(cache_dir=tmp_path, device="cpu", settings=TINY)
    after_training = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_training)


def test_default_cache_dir_follows_dgm_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_CACHE", str(tmp_path))
    assert ev.default_cache_dir() == tmp_path
    monkeypatch.delenv("DGM_CACHE")
    assert ev.default_cache_dir() == Path.home() / ".cache" / "dgm-course" / "models"


def test_a_loaded_classifier_is_kept_in_memory_and_not_reread(tmp_path, monkeypatch):
    """The grader loads its classifier before student code runs: a file written later is ignored."""
    from dgm import evaluate

    monkeypatch.setattr(evaluate, "_LOADED", {})
    first = evaluate.get_classifier(profile="smoke", device="cpu", cache_dir=tmp_path)
    (cached,) = tmp_path.glob("classifier-*.pt")
    cached.write_bytes(b"forged")
    again = evaluate.get_classifier(profile="smoke", device="cpu", cache_dir=tmp_path)
    assert again is first
    monkeypatch.setattr(evaluate, "_LOADED", {})  # a fresh process would notice the bad file
    with pytest.warns(RuntimeWarning, match="could not load the cached classifier"):
        evaluate.get_classifier(profile="smoke", device="cpu", cache_dir=tmp_path)


def test_classifier_is_trained_on_the_cpu_whatever_device_it_runs_on(tmp_path, monkeypatch):
    """The reference classifier's weights must not depend on the machine: asked for another
    device (here PyTorch's data-less ``meta`` device, standing in for a GPU), it still trains on
    the CPU and is only moved there afterwards."""
    monkeypatch.setattr(ev, "_LOADED", {})
    seen = []
    real = ev.train_classifier

    def spy(train, settings, device=None):
        seen.append(torch.device(device or "cpu"))
        return real(train, settings, device)

    monkeypatch.setattr(ev, "train_classifier", spy)
    clf = ev.get_classifier(cache_dir=tmp_path, device=torch.device("meta"), settings=TINY)
    assert seen == [torch.device("cpu")]
    assert next(clf.parameters()).device.type == "meta"
