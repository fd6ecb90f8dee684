"""Sequence models and attention, introduced in book/sequence_models.md ({ref}`sequence-chapter`).

A plain recurrent network (eq. {eq}`seq-rnn`), an LSTM written gate by gate (eqs.
{eq}`seq-lstm-gates` and {eq}`seq-lstm-cell`), sinusoidal positional encodings
(eq. {eq}`seq-pe`), scaled dot-product attention (eq. {eq}`seq-attention`), multi-head attention
with its ``split_heads`` / ``combine_heads`` reshapes (eq. {eq}`seq-mha`), the causal mask, a
transformer block (eq. {eq}`seq-block`) and a next-token language model around any of the three.
The LSTM, attention and the block load weights from their torch counterparts (``from_torch``), and
``tests/test_sequence.py`` checks them against ``nn.LSTM``, ``nn.MultiheadAttention`` and
``nn.TransformerEncoderLayer``. Sequences are batch-first: ``(B, L, D)``; code position 0 is the
first position of the mathematics (``t = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.config import check_choice

Activation = Literal["relu", "gelu"]
ModelKind = Literal["rnn", "lstm", "transformer"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)


@dataclass(frozen=True)
class SequenceSettings:
    """Sizes of the sequence-models chapter's experiments for one run profile."""

    n_sentences: int      # sentences of the generated corpus (train); the test set is a quarter
    max_adjectives: int   # colour words between a season and its garment: the long-range gap
    w2v_dim: int          # embedding width of skip-gram and CBOW; the corpus has ~40 words
    w2v_window: int       # context words on each side; 4 reaches from a garment to its season
    w2v_negatives: int    # noise words per true pair (Mikolov et al. use 5-20 on small data)
    w2v_steps: int        # Adam steps on batches of pairs; the small vocabulary converges fast
    d_model: int          # width of every sequence model (embedding, hidden state, attention)
    n_heads: int          # attention heads of the transformer (d_model / n_heads per head)
    n_layers: int         # transformer blocks
    steps: int            # optimiser steps per sequence model: the same budget for all three
    batch: int            # sentences per step
    lr: float             # Adam step size; 3e-3 is stable for all three models at this width
    grad_lengths: tuple[int, ...]  # sequence lengths at which gradient norms are measured
    threads: int | None   # torch CPU threads; 1 for tiny models, where a second thread mostly waits
    seed: int = 0         # corpus, initialisation and batches


SETTINGS = {
    # smoke: proves every cell runs (a few seconds); the numbers mean nothing
    "smoke": SequenceSettings(n_sentences=400, max_adjectives=4, w2v_dim=8, w2v_window=4,
                              w2v_negatives=5, w2v_steps=60, d_model=16, n_heads=2, n_layers=1,
                              steps=25, batch=32, lr=3e-3, grad_lengths=(1, 5, 10, 20),
                              threads=1),
    # cpu: enough steps for the word vectors and all three models to converge (minutes on 2 cores)
    "cpu": SequenceSettings(n_sentences=6000, max_adjectives=8, w2v_dim=16, w2v_window=4,
                            w2v_negatives=5, w2v_steps=3000, d_model=64, n_heads=4, n_layers=2,
                            steps=1500, batch=64, lr=3e-3,
                            grad_lengths=(1, 2, 5, 10, 20, 50, 100), threads=1),
    # full: the same task with more data and steps; a GPU only helps the transformer
    "full": SequenceSettings(n_sentences=20000, max_adjectives=8, w2v_dim=16, w2v_window=4,
                             w2v_negatives=5, w2v_steps=6000, d_model=64, n_heads=4, n_layers=2,
                             steps=4000, batch=128, lr=3e-3,
                             grad_lengths=(1, 2, 5, 10, 20, 50, 100), threads=None),
}


# ------------------------------------------------------------------------------ recurrent nets
class ElmanRNN(nn.Module):
    """Plain recurrent network, eq. {eq}`seq-rnn`: h_i = tanh(U v_i + W h_{i-1}).

    ``U`` (with the bias) reads the input, ``W`` carries the state; the output layer ``M`` of the
    equation belongs to the model that uses the states (:class:`LanguageModel`).
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.U = nn.Linear(input_size, hidden_size)
        self.W = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, v: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``v`` (B, L, input_size) -> states (B, L, hidden) and the last state (B, hidden)."""
        if h is None:
            h = v.new_zeros(v.shape[0], self.hidden_size)
        u = self.U(v)  # (B, L, hidden): the input term of every step at once
        states = []
        for i in range(v.shape[1]):
            h = torch.tanh(u[:, i] + self.W(h))
            states.append(h)
        return torch.stack(states, dim=1), h


class LSTM(nn.Module):
    """One-layer LSTM written gate by gate, eqs. {eq}`seq-lstm-gates` and {eq}`seq-lstm-cell`.

    ``x_proj`` and ``h_proj`` hold the four gates' weights stacked in torch's order
    (input i, forget f, candidate C~, output o), so :meth:`from_torch` copies ``nn.LSTM`` as is.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.x_proj = nn.Linear(input_size, 4 * hidden_size)
        self.h_proj = nn.Linear(hidden_size, 4 * hidden_size)

    def step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One step from (h_{t-1}, C_{t-1}) to (h_t, C_t); also returns the gates by name."""
        i, f, c_tilde, o = (self.x_proj(x) + self.h_proj(h)).chunk(4, dim=-1)  # each (B, hidden)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        c_tilde = torch.tanh(c_tilde)
        c = f * c + i * c_tilde            # the additive path: dC_t / dC_{t-1} = f_t
        h = o * torch.tanh(c)
        return h, c, {"i": i, "f": f, "c_tilde": c_tilde, "o": o}

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` (B, L, input_size) -> states h (B, L, hidden) and the last (h, C), each (B, hidden)."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = state
        states = []
        for t in range(x.shape[1]):
            h, c, _ = self.step(x[:, t], h, c)
            states.append(h)
        return torch.stack(states, dim=1), (h, c)

    @classmethod
    def from_torch(cls, lstm: nn.LSTM) -> LSTM:
        """A copy of a one-layer, unidirectional, batch-first ``nn.LSTM`` (same weights)."""
        if lstm.num_layers != 1 or lstm.bidirectional or not lstm.batch_first or lstm.proj_size:
            raise ValueError("from_torch copies a one-layer, unidirectional, batch_first nn.LSTM "
                             "without proj_size; build such an nn.LSTM or copy layer by layer")
        out = cls(lstm.input_size, lstm.hidden_size)
        with torch.no_grad():
            out.x_proj.weight.copy_(lstm.weight_ih_l0)
            out.x_proj.bias.copy_(lstm.bias_ih_l0)
            out.h_proj.weight.copy_(lstm.weight_hh_l0)
            out.h_proj.bias.copy_(lstm.bias_hh_l0)
        return out


# ---------------------------------------------------------------------------------- attention
def positional_encoding(n_positions: int, d_model: int, base: float = 10_000.0) -> Tensor:
    """Sinusoidal positional encodings, eq. {eq}`seq-pe`: a ``(n_positions, d_model)`` table.

    PE(pos, 2i) = sin(pos / base^(2i / d_model)), PE(pos, 2i + 1) = cos(pos / base^(2i / d_model)),
    with code position ``pos = 0`` for the first token.
    """
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin/cos pairs), got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]           # (n, 1)
    omega = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * omega)
    pe[:, 1::2] = torch.cos(pos * omega)
    return pe.float()


def causal_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``(n, n)`` mask, True where query i may attend to key j, i.e. j <= i (eq.
    {eq}`seq-causal`). Note: torch's ``attn_mask`` uses the opposite convention (True = blocked)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention, eq. {eq}`seq-attention`: softmax(Q K^T / sqrt(d_k)) V.

    ``q`` (..., n_q, d_k), ``k`` (..., n_k, d_k), ``v`` (..., n_k, d_v); ``mask`` is boolean,
    broadcastable to (..., n_q, n_k), True where attending is allowed. Returns the output
    (..., n_q, d_v) and the weights (..., n_q, n_k), whose rows sum to one.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}; need q and k of equal width, k and v of equal length")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., n_q, n_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def append_positions(cache: dict[str, Tensor], name: str, new: Tensor) -> None:
    """Append ``new`` (B, n_heads, n, d_head) to ``cache[name]`` along the positions (dim 2).

    ``cache[name]`` is a view of a buffer (``cache[name + "_buffer"]``) that doubles when full,
    so a step writes its own keys and values only: ``torch.cat`` would copy all earlier ones at
    every step, which over 784 pixels cost three times the arithmetic of the step itself."""
    old = cache.get(name)
    n_old = 0 if old is None else old.shape[2]
    n = n_old + new.shape[2]
    buffer = cache.get(name + "_buffer")
    if buffer is None or buffer.shape[2] < n or buffer.shape[:2] != new.shape[:2]:
        grown = new.new_empty(*new.shape[:2], max(2 * n, 64), new.shape[3])
        if old is not None:
            grown[:, :, :n_old] = old
        buffer = cache[name + "_buffer"] = grown
    buffer[:, :, n_old:n] = new
    cache[name] = buffer[:, :, :n]


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, L, d_model) -> (B, n_heads, L, d_model / n_heads): each head sees its own slice."""
    b, length, d_model = x.shape
    if d_model % n_heads:
        raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
    return x.view(b, length, n_heads, d_model // n_heads).transpose(1, 2)


def combine_heads(x: Tensor) -> Tensor:
    """(B, n_heads, L, d_head) -> (B, L, n_heads * d_head): the inverse of :func:`split_heads`."""
    b, n_heads, length, d_head = x.shape
    return x.transpose(1, 2).reshape(b, length, n_heads * d_head)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, eq. {eq}`seq-mha`: W_O [head_1; ...; head_h] with
    head_j = attention(Q W_Q^j, K W_K^j, V W_V^j), eq. {eq}`seq-attention`.

    ``d_kv`` is the width of the keys' and values' input when it differs from ``d_model``
    (cross-attention to image features, say); it defaults to ``d_model`` (self-attention).
    """

    def __init__(self, d_model: int, n_heads: int, d_kv: int | None = None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        d_kv = d_kv or d_model
        self.n_heads = n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_kv, d_model)
        self.w_v = nn.Linear(d_kv, d_model)
        self.w_o = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """Queries from ``x`` (B, n_q, d_model), keys and values from ``context`` (B, n_k, d_kv)
        (default ``x``). Returns (B, n_q, d_model) and the weights (B, n_heads, n_q, n_k)."""
        context = x if context is None else context
        q = split_heads(self.w_q(x), self.n_heads)        # (B, h, n_q, d_model / h)
        k = split_heads(self.w_k(context), self.n_heads)  # (B, h, n_k, d_model / h)
        v = split_heads(self.w_v(context), self.n_heads)  # (B, h, n_k, d_model / h)
        out, weights = attention(q, k, v, mask)           # (B, h, n_q, d_model / h)
        return self.w_o(combine_heads(out)), weights      # (B, n_q, d_model)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a batch-first ``nn.MultiheadAttention`` with biases (kdim = vdim allowed)."""
        if not mha.batch_first or mha.in_proj_bias is None or mha.kdim != mha.vdim:
            raise ValueError("from_torch copies a batch_first nn.MultiheadAttention with bias=True "
                             "and kdim == vdim")
        out = cls(mha.embed_dim, mha.num_heads, d_kv=mha.kdim)
        d = mha.embed_dim
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                w_q, w_k, w_v = mha.in_proj_weight.split(d)
            else:
                w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            b_q, b_k, b_v = mha.in_proj_bias.split(d)
            for lin, w, b in ((out.w_q, w_q, b_q), (out.w_k, w_k, b_k), (out.w_v, w_v, b_v),
                              (out.w_o, mha.out_proj.weight, mha.out_proj.bias)):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
        return out


class TransformerBlock(nn.Module):
    """Transformer block, eq. {eq}`seq-block`: self-attention and an MLP, each with a residual
    connection and layer norm.

    ``norm_first`` (the default, as in GPT-2) normalises the input of each sub-layer,
    x + MHA(LN(x)); otherwise the sum is normalised, LN(x + MHA(x)), as in the original
    transformer and ``nn.TransformerEncoderLayer``'s default.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None,
                 norm_first: bool = True, activation: Activation = "gelu"):
        super().__init__()
        check_choice(activation, get_args(Activation), "activation")
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff or 4 * d_model), act,
                                 nn.Linear(d_ff or 4 * d_model, d_model))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x`` (B, L, d_model) -> (B, L, d_model); ``mask`` as in :func:`attention`."""
        if self.norm_first:
            x = x + self.attn(self.norm1(x), mask=mask)[0]
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, mask=mask)[0])
        return self.norm2(x + self.mlp(x))

    def step(self, x: Tensor, cache: dict[str, Tensor]) -> Tensor:
        """One new position ``x`` (B, 1, d_model) through a pre-norm block, attending to itself
        and to the earlier positions whose keys and values ``cache`` holds (``"k"``, ``"v"``,
        each (B, n_heads, L, d_head); an empty dict at the start), which it extends in place
        (:func:`append_positions`): the last row of :meth:`forward` under a causal mask, for one
        token's work instead of L + 1 tokens'."""
        if not self.norm_first:
            raise ValueError("the key-value cache is written for pre-norm blocks")
        a, attn = self.norm1(x), self.attn
        for name, new in (("k", attn.w_k(a)), ("v", attn.w_v(a))):
            append_positions(cache, name, split_heads(new, attn.n_heads))
        out, _ = attention(split_heads(attn.w_q(a), attn.n_heads), cache["k"], cache["v"])
        x = x + attn.w_o(combine_heads(out))
        return x + self.mlp(self.norm2(x))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> TransformerBlock:
        """A copy of a batch-first ``nn.TransformerEncoderLayer`` (ReLU or GELU); dropout is not
        copied, so compare in eval mode or with dropout 0."""
        act = layer.activation
        name = "gelu" if act is F.gelu or isinstance(act, nn.GELU) else "relu"
        d_model, d_ff = layer.linear1.in_features, layer.linear1.out_features
        out = cls(d_model, layer.self_attn.num_heads, d_ff, norm_first=layer.norm_first,
                  activation=name)
        out.attn = MultiHeadAttention.from_torch(layer.self_attn)
        with torch.no_grad():
            for mine, theirs in ((out.mlp[0], layer.linear1), (out.mlp[2], layer.linear2),
                                 (out.norm1, layer.norm1), (out.norm2, layer.norm2)):
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        return out


# ------------------------------------------------------------------------------ language model
class LanguageModel(nn.Module):
    """Next-token model: embed tokens, run an RNN, an LSTM or causal transformer blocks, and map
    each state to logits over the vocabulary with ``M`` (y_i = M h_i of eq. {eq}`seq-rnn`).

    ``forward(tokens (B, L))`` returns logits ``(B, L, vocab_size)``; position i only sees
    tokens 0..i, so the logits at i predict token i + 1.
    """

    def __init__(self, kind: ModelKind, vocab_size: int, d_model: int, n_heads: int = 4,
                 n_layers: int = 2, max_len: int = 512):
        super().__init__()
        self.kind = check_choice(kind, MODEL_KINDS, "sequence model kind")
        self.embed = nn.Embedding(vocab_size, d_model)
        if kind == "rnn":
            self.core = ElmanRNN(d_model, d_model)
        elif kind == "lstm":
            self.core = LSTM(d_model, d_model)
        else:
            self.register_buffer("pe", positional_encoding(max_len, d_model), persistent=False)
            self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads) for _ in range(n_layers))
            self.norm = nn.LayerNorm(d_model)
        self.M = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens)  # (B, L, d_model)
        if self.kind == "transformer":
            length = tokens.shape[1]
            if length > len(self.pe):
                raise ValueError(f"sequence of {length} tokens is longer than max_len {len(self.pe)}")
            x = x + self.pe[:length]
            mask = causal_mask(length, device=tokens.device)
            for block in self.blocks:
                x = block(x, mask)
            h = self.norm(x)
        else:
            h = self.core(x)[0]
        return self.M(h)  # (B, L, vocab_size)


def next_token_loss(model: nn.Module, tokens: Tensor, pad: int) -> Tensor:
    """Mean cross-entropy (nats per token) of predicting ``tokens[:, 1:]`` from the prefixes,
    ignoring targets equal to ``pad``."""
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                           ignore_index=pad)


def train_next_token(model: nn.Module, tokens: Tensor, pad: int, steps: int, batch: int,
                     lr: float, generator: torch.Generator) -> list[float]:
    """Adam on random batches of the rows of ``tokens`` (N, L); returns the loss of every step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(tokens), (batch,), generator=generator)
        loss = next_token_loss(model, tokens[idx], pad)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses
