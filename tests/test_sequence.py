"""Tests of dgm.sequence against the equations of book/sequence_models.md and torch's modules."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgm.sequence import (
    LSTM,
    ElmanRNN,
    LanguageModel,
    MultiHeadAttention,
    TransformerBlock,
    attention,
    causal_mask,
    combine_heads,
    next_token_loss,
    positional_encoding,
    split_heads,
    train_next_token,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_positional_encoding_matches_eq_seq_pe_entry_by_entry():
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    d = 8
    pe = positional_encoding(20, d)
    for pos in (0, 1, 7, 19):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert abs(pe[pos, 2 * i].item() - math.sin(angle)) < 1e-6
            assert abs(pe[pos, 2 * i + 1].item() - math.cos(angle)) < 1e-6


def test_positional_encoding_shift_is_a_rotation_of_each_pair():
    """PE(pos + k) restricted to pair i is the rotation by k * omega_i of PE(pos) (any pos)."""
    d, k = 16, 5
    pe = positional_encoding(60, d).double()
    omega = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    for i in range(d // 2):
        c, s = math.cos(k * omega[i]), math.sin(k * omega[i])
        rot = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)  # acts on (sin, cos) rows
        pair = pe[:, 2 * i:2 * i + 2]
        assert torch.allclose(pair[:-k] @ rot.T, pair[k:], atol=1e-5)


def test_positional_encoding_is_bounded_unique_and_independent_of_length():
    pe = positional_encoding(1000, 32)
    assert pe.abs().max() <= 1.0
    distances = torch.cdist(pe.double(), pe.double()) + torch.eye(1000, dtype=torch.float64) * 1e9
    assert distances.min() > 0.1  # no two positions share an encoding
    assert torch.equal(positional_encoding(50, 32), pe[:50])


def test_positional_encoding_rejects_odd_width():
    with pytest.raises(ValueError, match="even"):
        positional_encoding(4, 5)


def test_causal_mask_is_the_complement_of_torchs_subsequent_mask():
    n = 6
    torch_mask = nn.Transformer.generate_square_subsequent_mask(n)  # -inf where blocked
    assert torch.equal(causal_mask(n), torch_mask == 0)


def test_attention_matches_torch_scaled_dot_product_attention_with_and_without_mask():
    g = _gen()
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    out, weights = attention(q, k, v)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5), atol=1e-6)
    out_c, w_c = attention(q, k, v, causal_mask(5))
    assert torch.allclose(out_c, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
    assert torch.all(w_c.triu(1) == 0)


def test_attention_scaling_keeps_unit_variance_scores():
    """q . k of unit-variance entries has variance d_k; divided by sqrt(d_k) it has variance 1."""
    g = _gen(1)
    for d_k in (4, 64, 256):
        q, k = torch.randn(20000, d_k, generator=g), torch.randn(20000, d_k, generator=g)
        raw = (q * k).sum(-1)
        assert abs(raw.var().item() / d_k - 1) < 0.05  # 5 % is > 5 standard errors (sqrt(2/n))
        assert abs((raw / math.sqrt(d_k)).var().item() - 1) < 0.05


def test_attention_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal width"):
        attention(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))


def test_split_and_combine_heads_are_inverse_and_slice_the_features():
    x = torch.randn(2, 5, 12, generator=_gen())
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])  # head 1 owns features 4..7
    assert torch.equal(combine_heads(heads), x)
    with pytest.raises(ValueError, match="divisible"):
        split_heads(x, 5)


@pytest.mark.parametrize("kdim", [None, 6])
def test_multi_head_attention_matches_torch_with_copied_weights(kdim):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(8, 2, batch_first=True, kdim=kdim, vdim=kdim).eval()
    mine = MultiHeadAttention.from_torch(ref)
    g = _gen(2)
    x = torch.randn(3, 5, 8, generator=g)
    ctx = x if kdim is None else torch.randn(3, 7, kdim, generator=g)
    out, weights = mine(x, ctx)
    ref_out, ref_w = ref(x, ctx, ctx, average_attn_weights=False)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(weights, ref_w, atol=1e-6)
    if kdim is None:  # causal self-attention; torch's bool mask is True where blocked
        out_c, _ = mine(x, mask=causal_mask(5))
        ref_c, _ = ref(x, x, x, attn_mask=~causal_mask(5))
        assert torch.allclose(out_c, ref_c, atol=1e-5)


def test_causal_self_attention_output_ignores_future_tokens():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(1, 6, 8, generator=_gen(3))
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 8, generator=_gen(4))  # change positions 4 and 5 only
    out_x, out_y = mha(x, mask=causal_mask(6))[0], mha(y, mask=causal_mask(6))[0]
    assert torch.allclose(out_x[:, :4], out_y[:, :4], atol=1e-6)
    assert not torch.allclose(out_x[:, 4:], out_y[:, 4:], atol=1e-3)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_block_matches_torch_encoder_layer(norm_first, activation):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first).eval()
    mine = TransformerBlock.from_torch(ref).eval()
    x = torch.randn(2, 7, 16, generator=_gen(5))
    with torch.no_grad():
        assert torch.allclose(mine(x), ref(x), atol=1e-5)
        assert torch.allclose(mine(x, causal_mask(7)), ref(x, src_mask=~causal_mask(7)), atol=1e-5)


def test_transformer_block_rejects_unknown_activation():
    with pytest.raises(ValueError, match="relu, gelu"):
        TransformerBlock(8, 2, activation="tanh")


def test_lstm_matches_torch_lstm_with_copied_weights():
    torch.manual_seed(0)
    ref = nn.LSTM(5, 7, batch_first=True)
    mine = LSTM.from_torch(ref)
    g = _gen(6)
    x = torch.randn(3, 9, 5, generator=g)
    h0, c0 = torch.randn(1, 3, 7, generator=g), torch.randn(1, 3, 7, generator=g)
    out, (h, c) = mine(x, (h0[0], c0[0]))
    ref_out, (ref_h, ref_c) = ref(x, (h0, c0))
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(h, ref_h[0], atol=1e-5) and torch.allclose(c, ref_c[0], atol=1e-5)


def test_lstm_cell_gradient_along_the_cell_path_is_the_forget_gate():
    """With h_{t-1} held fixed, dC_t / dC_{t-1} = diag(f_t), eq. seq-lstm-additive."""
    torch.manual_seed(0)
    lstm = LSTM(3, 4)
    g = _gen(7)
    x, h = torch.randn(1, 3, generator=g), torch.randn(1, 4, generator=g)
    c = torch.randn(1, 4, generator=g)
    jac = torch.autograd.functional.jacobian(lambda c_prev: lstm.step(x, h, c_prev)[1], c)[0, :, 0]
    f = lstm.step(x, h, c)[2]["f"][0]
    assert torch.allclose(jac, torch.diag(f), atol=1e-6)


def test_lstm_from_torch_rejects_bidirectional():
    with pytest.raises(ValueError, match="unidirectional"):
        LSTM.from_torch(nn.LSTM(2, 3, batch_first=True, bidirectional=True))


def test_elman_rnn_matches_torch_rnn_and_its_jacobian_is_a_product():
    """h_i = tanh(U v_i + W h_{i-1}); dh_L/dh_0 = prod_i diag(1 - h_i^2) W (eq. seq-rnn-jacobian)."""
    torch.manual_seed(0)
    ref = nn.RNN(3, 4, batch_first=True, nonlinearity="tanh")
    rnn = ElmanRNN(3, 4)
    with torch.no_grad():
        rnn.U.weight.copy_(ref.weight_ih_l0)
        rnn.U.bias.copy_(ref.bias_ih_l0 + ref.bias_hh_l0)
        rnn.W.weight.copy_(ref.weight_hh_l0)
    g = _gen(8)
    v, h0 = torch.randn(1, 6, 3, generator=g), torch.randn(1, 4, generator=g)
    states, _ = rnn(v, h0)
    assert torch.allclose(states, ref(v, h0[None])[0], atol=1e-5)
    jac = torch.autograd.functional.jacobian(lambda h: rnn(v, h)[1], h0)[0, :, 0]
    product = torch.eye(4)
    for i in range(6):
        product = torch.diag(1 - states[0, i] ** 2) @ rnn.W.weight @ product
    assert torch.allclose(jac, product, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "transformer"])
def test_language_model_logits_at_i_do_not_depend_on_later_tokens(kind):
    torch.manual_seed(0)
    model = LanguageModel(kind, vocab_size=11, d_model=8, n_heads=2, n_layers=1).eval()
    tokens = torch.randint(11, (2, 7), generator=_gen(9))
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    with torch.no_grad():
        assert torch.allclose(model(tokens)[:, :5], model(changed)[:, :5], atol=1e-6)


def test_next_token_loss_is_uniform_cross_entropy_for_constant_logits_and_skips_padding():
    """Zero output weights give log(vocab) nats per token; padded targets do not count."""
    model = LanguageModel("rnn", vocab_size=9, d_model=4)
    with torch.no_grad():
        model.M.weight.zero_()
        model.M.bias.zero_()
    tokens = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    assert abs(next_token_loss(model, tokens, pad=0).item() - math.log(9)) < 1e-6
    with pytest.raises(ValueError, match="rnn, lstm, transformer"):
        LanguageModel("gru", 9, 4)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "transformer"])
def test_train_next_token_learns_a_deterministic_cycle(kind):
    """On the cycle 1 2 3 4 1 2 ... every next token is determined: the loss must fall far below
    the log(5) nats of a uniform guess (to under a quarter of it) in 150 steps."""
    torch.manual_seed(0)
    tokens = (torch.arange(12)[None] + torch.arange(4)[:, None]) % 4 + 1  # (4, 12), 4 phases
    model = LanguageModel(kind, vocab_size=5, d_model=16, n_heads=2, n_layers=1)
    losses = train_next_token(model, tokens, pad=0, steps=150, batch=4, lr=1e-2, generator=_gen(10))
    assert len(losses) == 150 and not model.training
    assert next_token_loss(model, tokens, pad=0).item() < math.log(5) / 4


def test_every_profile_builds_the_chapters_models():
    """Each profile's widths fit its heads (d_model / n_heads whole) and even positional pairs."""
    from dgm.config import PROFILES, select
    from dgm.sequence import SETTINGS

    for profile in PROFILES:
        cfg = select(SETTINGS, profile)
        model = LanguageModel("transformer", 12, cfg.d_model, cfg.n_heads, cfg.n_layers)
        assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 12)


def test_block_step_with_a_cache_equals_the_causal_forward_row_by_row():
    """150 positions: the cache's buffer grows twice (64, then 130, then 300 places)."""
    torch.manual_seed(3)
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(2, 150, 16)
    with torch.no_grad():
        full = block(x, causal_mask(150))
        cache: dict = {}
        rows = torch.cat([block.step(x[:, i:i + 1], cache) for i in range(150)], dim=1)
    assert cache["k"].shape == cache["v"].shape == (2, 4, 150, 4)
    assert cache["k_buffer"].shape[2] > 150
    torch.testing.assert_close(rows, full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pre-norm"):
        TransformerBlock(16, 4, norm_first=False).step(x[:, :1], {})
