"""Checks of dgm.autoregressive: masks, triangular Jacobians, the key-value cache, likelihoods,
temperature and class conditioning (book/autoregressive.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dgm.autoregressive import (LEVELS, SETTINGS, CausalSelfAttention, PixelCNN, PixelTransformer,
                                drop_labels, input_dependence, log_prob, lr_factor, nll_bits_per_dim,
                                pixel_mask, sample, sample_categorical, to_levels)
from dgm.config import PROFILES
from dgm.evaluate import bits_per_dim
from dgm.sequence import MultiHeadAttention, causal_mask
from dgm.unet import NULL_CLASS


def _random_images(n: int, h: int = 6, w: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, LEVELS, (n, 1, h, w), generator=g).double() / (LEVELS - 1)


def _models(h: int = 6, w: int = 6, positions: str = "learnt"):
    torch.manual_seed(0)
    cnn = PixelCNN(hidden=8, n_layers=2).double()
    tf = PixelTransformer((h, w), d_model=16, n_heads=2, n_layers=2, positions=positions).double()
    with torch.no_grad():  # non-zero class embeddings, so that conditioning is tested too
        cnn.class_bias.weight.normal_()
    return cnn, tf


def test_mask_type_a_excludes_the_centre_and_type_b_includes_it():
    a, b = pixel_mask(5, "A"), pixel_mask(5, "B")
    assert a[2, 2] == 0 and b[2, 2] == 1
    assert torch.equal(a + F.one_hot(torch.tensor(12), 25).view(5, 5).float(), b)
    # raster order: kernel entry (r, c) is kept iff it comes before the centre (A) or is it (B)
    order = torch.arange(25).view(5, 5)
    assert torch.equal(a.bool(), order < 12) and torch.equal(b.bool(), order <= 12)


def test_mask_rejects_unknown_type_and_even_kernel():
    with pytest.raises(ValueError, match="A, B"):
        pixel_mask(3, "C")
    with pytest.raises(ValueError, match="odd"):
        pixel_mask(4, "A")


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_jacobian_of_logits_is_strictly_lower_triangular(which):
    cnn, tf = _models()
    model = cnn if which == "cnn" else tf
    dep = input_dependence(model, _random_images(1), torch.tensor([3]))
    d = dep.shape[0]
    assert dep.shape == (d, d) == (36, 36)
    assert torch.all(dep.triu() == 0), "an output depends on itself or on a later input"
    assert dep[1, 0] > 0 and dep[d - 1, d - 2] > 0  # and it does depend on the previous pixel


def test_pixelcnn_type_a_first_layer_matters():
    """With type B in the first layer, output i would see input i: the diagonal is non-zero."""
    cnn, _ = _models()
    cnn.input.mask.copy_(pixel_mask(7, "B"))
    dep = input_dependence(cnn, _random_images(1))
    assert torch.all(dep.diagonal() > 0)


def test_pixelcnn_window_gives_the_same_logits_as_the_whole_image():
    torch.manual_seed(1)
    cnn = PixelCNN(hidden=8, n_layers=3).double()  # rows_above = 6 < 10 rows: the window crops
    x, y = _random_images(2, 10, 5), torch.tensor([1, NULL_CLASS])
    full = cnn(x, y)
    for i in (0, 7, 33, 49):
        row, col = divmod(i, 5)
        torch.testing.assert_close(cnn.step_logits(x, y, i), full[:, :, row, col])


def test_pixelcnn_row_cache_gives_the_same_logits_as_the_whole_image():
    """Step by step in raster order, each pixel's level set after its logits, as in sampling:
    the cached rows of features give the logits of the whole (finished) image."""
    torch.manual_seed(2)
    cnn = PixelCNN(hidden=8, n_layers=3).double()
    target, y = _random_images(2, 10, 5), torch.tensor([4, NULL_CLASS])
    full = cnn(target, y)
    x, cache = torch.zeros_like(target), {}
    for i in range(50):
        row, col = divmod(i, 5)
        torch.testing.assert_close(cnn.step_logits(x, y, i, cache), full[:, :, row, col])
        x[:, :, row, col] = target[:, :, row, col]
    a = sample(cnn, 3, torch.tensor([0, 5, NULL_CLASS]), generator=torch.Generator().manual_seed(5),
               use_cache=True, shape=(6, 5))
    b = sample(cnn, 3, torch.tensor([0, 5, NULL_CLASS]), generator=torch.Generator().manual_seed(5),
               use_cache=False, shape=(6, 5))
    assert torch.equal(a, b)


def test_fused_attention_matches_dgm_sequence_attention():
    torch.manual_seed(0)
    ref = MultiHeadAttention(16, 4).double()
    fused = CausalSelfAttention(16, 4).double()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(3, 9, 16, dtype=torch.float64)
    torch.testing.assert_close(fused(x, mask=causal_mask(9))[0], ref(x, mask=causal_mask(9))[0])
    with pytest.raises(ValueError, match="causal"):
        fused(x, mask=torch.ones(9, 9, dtype=torch.bool))


@pytest.mark.parametrize("positions", ["learnt", "rows_cols", "sinusoidal"])
def test_cached_and_uncached_sampling_agree(positions):
    _, tf = _models(4, 5, positions)
    y = torch.tensor([2, NULL_CLASS, 7])
    levels = to_levels(_random_images(3, 4, 5)).flatten(1)
    cache = [{} for _ in tf.blocks]
    token = tf.class_embed(y + 1)
    with torch.no_grad():
        for i in range(20):
            if i > 0:
                token = tf.pixel_embed(levels[:, i - 1])
            torch.testing.assert_close(tf.cached_logits(token, i, cache),
                                       tf.prefix_logits(levels[:, :i], y), rtol=1e-9, atol=1e-9)
    a = sample(tf, 3, y, generator=torch.Generator().manual_seed(5), use_cache=True)
    b = sample(tf, 3, y, generator=torch.Generator().manual_seed(5), use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("positions", ["learnt", "rows_cols", "sinusoidal"])
def test_teacher_forced_logits_equal_the_prefix_logits(positions):
    """The training pass (all positions at once) gives the logits that sampling sees."""
    _, tf = _models(4, 5, positions)
    x, y = _random_images(2, 4, 5), torch.tensor([0, 9])
    full = tf(x, y).flatten(2)  # (B, 256, D)
    levels = to_levels(x).flatten(1)
    with torch.no_grad():
        for i in (0, 1, 11, 19):
            torch.testing.assert_close(full[:, :, i], tf.prefix_logits(levels[:, :i], y))


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_log_prob_is_the_sum_of_per_pixel_log_probabilities(which):
    cnn, tf = _models()
    model = cnn if which == "cnn" else tf
    x, y = _random_images(3), torch.tensor([1, 2, NULL_CLASS])
    levels = to_levels(x).flatten(1)
    logp = torch.log_softmax(model(x, y).flatten(2), dim=1)  # (B, 256, D)
    direct = sum(logp[b, levels[b, i], i] for b in range(3) for i in range(36)) / 3
    torch.testing.assert_close(log_prob(model, x, y).mean(), direct)
    expected_bpd = -direct.item() / (36 * math.log(2))
    assert nll_bits_per_dim(model, x, y) == pytest.approx(expected_bpd, rel=1e-9)
    assert bits_per_dim(-direct.item(), 36, scale="bytes") == pytest.approx(expected_bpd, rel=1e-12)


def test_teacher_forced_cross_entropy_in_bits_is_bits_per_dim():
    cnn, _ = _models()
    x = _random_images(4)
    ce_bits = F.cross_entropy(cnn(x), to_levels(x)[:, 0]) / math.log(2)
    assert ce_bits.item() == pytest.approx(nll_bits_per_dim(cnn, x), rel=1e-9)


def test_log_prob_sums_to_one_over_all_images_of_two_pixels():
    """Exact normalisation: sum over all 256^2 images of 1 x 2 pixels of p(x) is 1."""
    torch.manual_seed(0)
    tf = PixelTransformer((1, 2), d_model=8, n_heads=2, n_layers=1).double()
    grid = torch.cartesian_prod(torch.arange(LEVELS), torch.arange(LEVELS)).double() / (LEVELS - 1)
    with torch.no_grad():
        total = log_prob(tf, grid.view(-1, 1, 1, 2)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-9)


def test_gumbel_max_samples_follow_the_tempered_softmax():
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
    for temperature in (1.0, 0.5):
        g = torch.Generator().manual_seed(0)
        draws = sample_categorical(logits.expand(40000, 4), temperature, g)
        freq = torch.bincount(draws, minlength=4).double() / 40000
        expected = torch.softmax(logits[0].double() / temperature, 0)
        assert torch.allclose(freq, expected, atol=0.01)  # 4 standard errors at most ~0.01


def test_temperature_zero_is_argmax_and_small_temperature_tends_to_it():
    logits = torch.randn(50, 256, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_categorical(logits, 0.0), logits.argmax(-1))
    small = sample_categorical(logits, 1e-6, torch.Generator().manual_seed(2))
    assert torch.equal(small, logits.argmax(-1))
    per_row = torch.tensor([0.0, 1.0]).repeat(25)  # one temperature per row: 0 rows are greedy
    mixed = sample_categorical(logits, per_row, torch.Generator().manual_seed(3))
    assert torch.equal(mixed[::2], logits[::2].argmax(-1))
    assert not torch.equal(mixed[1::2], logits[1::2].argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        sample_categorical(logits, -1.0)


def test_sampling_at_temperature_zero_is_the_greedy_image():
    cnn, _ = _models(3, 3)
    x = sample(cnn, 1, torch.tensor([4]), temperature=0.0)
    levels = to_levels(x)[0, 0].flatten()
    assert torch.equal(to_levels(x), to_levels(sample(cnn, 1, torch.tensor([4]), temperature=0.0)))
    logits = cnn(x, torch.tensor([4]))[0].flatten(1)  # (256, 9), teacher-forced on the sample
    assert torch.equal(logits.argmax(0), levels)


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_class_changes_the_outputs(which):
    cnn, tf = _models()
    model = cnn if which == "cnn" else tf
    x = _random_images(1)
    out = {c: model(x, torch.tensor([c])) for c in (NULL_CLASS, 0, 5)}
    assert not torch.allclose(out[0], out[5]) and not torch.allclose(out[0], out[NULL_CLASS])
    torch.testing.assert_close(model(x, None), out[NULL_CLASS])


def test_bad_labels_are_rejected_with_a_message():
    cnn, _ = _models()
    with pytest.raises(ValueError, match="NULL_CLASS"):
        cnn(_random_images(1), torch.tensor([10]))


def test_drop_labels_rate():
    y = torch.zeros(20000, dtype=torch.long)
    dropped = (drop_labels(y, 0.2, torch.Generator().manual_seed(0)) == NULL_CLASS).double().mean()
    assert dropped.item() == pytest.approx(0.2, abs=0.015)


def test_settings_cover_every_profile_and_positions_are_checked():
    assert set(SETTINGS) == set(PROFILES)
    with pytest.raises(ValueError, match="learnt, rows_cols, sinusoidal"):
        PixelTransformer((2, 2), d_model=8, n_heads=2, n_layers=1, positions="rotary")


def test_rows_cols_positions_add_the_row_and_the_column_vector_in_raster_order():
    torch.manual_seed(0)
    tf = PixelTransformer((3, 4), d_model=8, n_heads=2, n_layers=1, positions="rows_cols")
    table = tf.position_table()
    assert table.shape == (12, 8)
    for i in range(12):
        r, c = divmod(i, 4)
        torch.testing.assert_close(table[i], tf.row_pos[r, 0] + tf.col_pos[0, c])


def test_embed_std_sets_the_spread_of_the_pixel_and_class_vectors():
    torch.manual_seed(0)
    tf = PixelTransformer((2, 2), d_model=64, n_heads=2, n_layers=1, embed_std=0.02)
    # 256 x 64 draws of N(0, 0.02^2): the sample std is within 2 % of 0.02 with high probability
    assert tf.pixel_embed.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert tf.class_embed.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_lr_factor_warms_up_linearly_and_decays_to_final():
    total, warmup, final = 100, 10, 0.1
    for schedule in ("exponential", "cosine"):
        ramp = [lr_factor(s, total, schedule, warmup, final) for s in range(warmup)]
        decay = [lr_factor(s, total, schedule, 0, final) for s in range(warmup)]
        for s in range(warmup):  # warm-up multiplies the decay by (s + 1) / warmup
            assert ramp[s] == pytest.approx(decay[s] * (s + 1) / warmup, rel=1e-12)
        assert lr_factor(0, total, schedule, 0, final) == 1.0
        assert lr_factor(total, total, schedule, warmup, final) == pytest.approx(final, rel=1e-12)
    assert lr_factor(50, total, "exponential", 0, final) == pytest.approx(final ** 0.5, rel=1e-12)
    assert lr_factor(50, total, "cosine", 0, final) == pytest.approx((1 + final) / 2, rel=1e-12)
    assert lr_factor(25, total, "cosine", 0, 0.0) == pytest.approx(0.5 + 0.5 * math.cos(math.pi / 4))
    with pytest.raises(ValueError, match="exponential, cosine"):
        lr_factor(0, total, "linear")


def test_guided_sampling_at_temperature_zero_is_greedy_on_the_guided_logits():
    """guidance w: each pixel is the argmax of (1 + w) logits(y) - w logits(NULL_CLASS), both
    teacher-forced on the sample itself; w = 0 is plain conditional sampling."""
    _, tf = _models(3, 3)
    y, w = torch.tensor([4, 1]), 2.0
    x = sample(tf, 2, y, temperature=0.0, guidance=w)
    with torch.no_grad():
        guided = (1 + w) * tf(x, y) - w * tf(x, torch.full_like(y, NULL_CLASS))  # (B, 256, H, W)
    assert torch.equal(guided.argmax(1), to_levels(x)[:, 0])
    assert not torch.equal(x, sample(tf, 2, y, temperature=0.0))  # guidance changed the images
    assert torch.equal(sample(tf, 2, y, temperature=0.0, guidance=0.0), sample(tf, 2, y, temperature=0.0))
    with pytest.raises(ValueError, match="guidance needs labels"):
        sample(tf, 2, None, guidance=w)
