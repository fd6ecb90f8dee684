"""Helpers the hidden checks' verdict sections share: one definition each, in the grader only.

A verdict section (see :mod:`autograder.checks`) runs in the grader's own process, so it may
import this module; a student's kernel cannot (``autograder.sandbox.KERNEL_MODULES``), and setup
or student sections must not import it. Every function takes what it measures as arguments: the
verdict passes its own setup's inputs, so that the check reads the same as when it held a copy.

``shape_of``, ``scalar``        what an observed value is: a shape of small ints (or its kind), one number or None.
``describe``, ``raised``        what a message may echo of an observed value, or of the exception the kernel
                                recorded: shapes, dtypes and numbers, never text the notebook chose.
``num``, ``off``,               how a message writes a number the student's code returned (its sign and
``error_band``, ``beyond``,     decade, :func:`autograder.messages.decade`), how far it is from the check's
``told``                        reference value (a band of the error on a fixed four-step ladder, and its
                                direction), or how far outside a threshold a measurement is, never that
                                value itself nor the error's digits; ``told`` marks a number of the check's
                                own (a threshold) that a message may show as it is.
``torch_intact``,               the training checks' guards: whether the kernel's torch computed what the
``judge_standin_loop``          grader's does on fixed inputs, and whether the student's training loop,
                                run in the kernel on a tiny model with a stand-in objective swapped in,
                                lowered that objective as the grader's own Adam steps do.
``vae_*``                       the VAE homework's training and sample-quality checks: the
                                reference loss, whether the student's parts are right, and the
                                architecture the exercises fix rebuilt from weights.
``ddpm_*``                      the DDPM homework's training check: whether q_sample and ddpm_loss are
                                right, and the held-out loss of trained weights.
``transformer_*``, ``fm_*``,    the other training checks' replays: whether the student's parts, observed
``contrastive_*``               on fixed inputs, are right, and the trained model loaded from its weights.
"""

from __future__ import annotations

import math
import numbers

import torch

from autograder.messages import decade as num
from autograder.messages import told
from dgm.homework import WeightsError, mlp_forward, mlp_layers

#: A shape a message echoes has at most MAX_DIMS dimensions, each smaller than SMALL_DIM, and
#: between 1 and MAX_ELEMENTS elements: a shape is what the student needs to see, but its numbers
#: are chosen by the student's code too, and an empty tensor costs nothing however large its other
#: sizes (red team round 3 read three 16-bit sizes out of one message). The product bound keeps
#: what one echoed shape can carry to about 35 bits.
MAX_DIMS, SMALL_DIM, MAX_ELEMENTS = 6, 100_000, 2 ** 24


def _kind(v) -> str:
    """What ``v`` is, in words the notebook cannot choose (never a class's own name)."""
    import numpy as np

    for cls, word in ((bool, "a bool"), (type(None), "None"), (numbers.Integral, "an int"),
                      (numbers.Real, "a float"), (str, "a string"), (list, "a list"), (tuple, "a tuple"),
                      (dict, "a dict"), (torch.Tensor, "a tensor"), (np.ndarray, "an array")):
        if isinstance(v, cls):
            return word
    return "an object"


def shape_of(v):
    """A tensor's or array's shape as a tuple of small ints, for messages; what anything else is, in
    words (:func:`_kind`), never its class's name, which the student's code may have chosen."""
    import numpy as np

    if isinstance(v, (torch.Tensor, np.ndarray)):
        shape = tuple(int(n) for n in v.shape)
        if 0 in shape:
            return f"an empty {_kind(v)[2:].lstrip()} with {len(shape)} dimensions"
        if (len(shape) <= MAX_DIMS and all(n < SMALL_DIM for n in shape)
                and math.prod(shape) <= MAX_ELEMENTS):
            return shape
        return f"{_kind(v)} with {len(shape)} dimensions"
    return _kind(v)


#: The bands a failing comparison's error is told in: (upper bound, words), relative to the
#: reference's size (a fraction), or absolute when the reference is 0. Four bands and a direction
#: are 3 bits a message can carry, whatever the student's code returns (red team round 4 read
#: 6.5 bits per failing check out of a relative error with two significant figures).
RELATIVE_BANDS = ((0.01, "less than 1%"), (0.1, "1% to 10%"), (1.0, "10% to 100%"),
                  (math.inf, "100% or more"))
ABSOLUTE_BANDS = ((0.01, "less than 0.01"), (1.0, "0.01 to 1"), (100.0, "1 to 100"),
                  (math.inf, "100 or more"))


def error_band(err: float, size: float = 0.0) -> str:
    """How large an error is, in words, on a fixed ladder: relative to ``size`` (the reference's
    magnitude) when that is not 0, else absolute (:data:`RELATIVE_BANDS`,
    :data:`ABSOLUTE_BANDS`). A message shows this, never the error itself."""
    err = abs(float(err))
    if not math.isfinite(err):
        return "an error that is not finite"
    relative = size > 1e-12
    for bound, words in RELATIVE_BANDS if relative else ABSOLUTE_BANDS:
        if (err / size if relative else err) < bound:
            return words
    return (RELATIVE_BANDS if relative else ABSOLUTE_BANDS)[-1][1]


def off(got, want, what: str = "it") -> str:
    """How far ``got`` (a number or tensor computed from what the student's code returned) is from
    the check's reference ``want``, for a message: the band of the relative error (or of the absolute
    one, when ``want`` is 0) on a fixed ladder (:func:`error_band`) and its direction; never ``want``
    itself, nor the error's digits."""
    got_t = torch.as_tensor(got, dtype=torch.float64)  # not float32 first: 1e300 stays finite
    want_t = torch.as_tensor(want, dtype=torch.float64)
    if got_t.shape != want_t.shape:
        return f"{what} has shape {shape_of(got_t)}, not {shape_of(want_t)}"
    if not bool(torch.isfinite(got_t).all()):
        return f"{what} is not finite"
    err = got_t - want_t
    size = want_t.abs().max().item() if want_t.numel() else 0.0
    if want_t.numel() == 1:
        e = err.item()
        if e == 0:
            return f"{what} is exactly the expected value"
        scale = " of the expected value" if size > 1e-12 else ""
        return f"{what} is off by {error_band(e, size)}{scale} ({'too high' if e > 0 else 'too low'})"
    worst = err.abs().max().item() if err.numel() else 0.0
    bias = "too high on average" if err.mean().item() > 0 else "too low on average"
    scale = " of the largest expected entry" if size > 1e-12 else ""
    return f"{what} is off by {error_band(worst, size)}{scale} at worst ({bias})"


def beyond(x, lo=None, hi=None) -> str:
    """Where a measurement ``x`` of the student's work (bits/dim, FD, a loss) lies against the
    check's bounds ``lo`` and ``hi`` (either may be None), for a message: "within the bounds", or
    how far above ``hi`` or below ``lo`` it is as a band of the bound's size (:func:`error_band`),
    with the bound itself (a constant of the check, :func:`told`). Never ``x``'s digits."""
    x = float(x)
    if not math.isfinite(x):
        return "not a finite number"
    if hi is not None and x > hi:
        return f"{error_band(x - hi, abs(hi))} above {told(f'{hi:g}')}"
    if lo is not None and x < lo:
        return f"{error_band(lo - x, abs(lo))} below {told(f'{lo:g}')}"
    return "within the bounds"


def describe(v) -> str:
    """An observed value as a message may show it: a tensor's or array's shape and dtype, a number, a bool
    or None as is, a short list of numbers as the list; never a string's text (the student's code may have
    built it from the check's frame), only "a string"; anything else by its kind."""
    import numpy as np

    if isinstance(v, (bool, type(None))):
        return repr(v)
    if isinstance(v, torch.Tensor) or isinstance(v, np.ndarray):
        shape = shape_of(v)
        shape = f"of shape {shape}" if isinstance(shape, tuple) else f"with {v.ndim} dimensions"
        return f"{_kind(v)} {shape} and dtype {str(v.dtype).replace('torch.', '')}"
    if isinstance(v, numbers.Real):
        return num(v) if isinstance(v, float) else str(int(v)) if abs(int(v)) < SMALL_DIM else num(v)
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        kind = "a list" if isinstance(v, list) else "a tuple"
        if len(v) <= 16 and all(isinstance(x, (numbers.Real, bool, type(None))) for x in v):
            return f"{kind} [{', '.join(describe(x) for x in v)}]"
        return f"{kind} of {len(v)} items"
    if isinstance(v, dict):
        return f"a dict of {len(v)} entries"
    return "an object"


def raised(v) -> str:
    """The exception a hidden check's kernel side recorded (autograder.observe.shown_exception), for a
    message: "NotImplementedError" (the exercise is not done), else "an exception". Its type is not
    told: the student's code chose it after seeing the check (red team round 6 sent 6 bits per
    exception out through its type's name)."""
    import re

    from autograder.observe import NOTEBOOK_EXCEPTION

    phrase = re.fullmatch(re.escape(NOTEBOOK_EXCEPTION).replace(re.escape("{base}"), r"(\w+)"), str(v))
    if v == "NotImplementedError" or (phrase and phrase.group(1) == "NotImplementedError"):
        return "NotImplementedError"
    return "an exception"


def scalar(v):
    """The observed value as a float, or None when it is not one number (a bool is not one)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    return float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else None


# --- the training checks: the kernel's torch, and the loop on a stand-in objective ------------------


def torch_intact(got, want, atol: float) -> bool:
    """Whether the kernel's values of torch's own functions on fixed inputs (``got``, a list of tensors)
    are the grader's (``want``): a notebook that patched torch to make a right part look wrong, so that
    its training loop is judged alone, is caught here."""
    return isinstance(got, list) and len(got) == len(want) and all(
        isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=atol)
        for a, b in zip(got, want))


def judge_standin_loop(weights, tiny, objective, *, steps: int, lr: float, share: float, told: str,
                       swapped_for: str, setting: str) -> None:
    """The student's training loop, run in the kernel on ``tiny()`` (one parameter tensor, zero at the
    start, whose output ignores the data) with a stand-in objective swapped in for ``swapped_for``, left
    the parameter values ``weights`` (or the error message it raised). ``objective(model)`` is that
    stand-in on a batch; the grader replays ``steps`` Adam steps at ``lr`` on it and requires ``weights``
    to achieve at least ``share`` of that decrease, and no parameter farther from 0 than such steps
    move one (about ``lr`` each). ``told`` opens every message; ``setting`` says how the loop was run."""
    assert not isinstance(weights, str), (
        f"{told}: on a tiny model with a stand-in loss swapped in, it raised {raised(weights)}")
    if isinstance(weights, dict) and len(weights) == 1:  # the tiny model's state_dict
        weights = next(iter(weights.values()))
    replay = tiny()
    param = next(replay.parameters())
    assert isinstance(weights, torch.Tensor) and weights.shape == param.shape and bool(torch.isfinite(weights).all()), (
        f"{told}: expected the tiny model's {param.numel()} parameters back, finite, got {describe(weights)}")
    opt = torch.optim.Adam(replay.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        objective(replay).backward()
        opt.step()
    probe = tiny()
    with torch.no_grad():
        before = objective(probe).item()
        reachable = objective(replay).item()
        next(probe.parameters()).copy_(weights.float())
        after = objective(probe).item()
    reach = 1.5 * steps * lr  # an Adam step moves a parameter by about lr
    largest = weights.abs().max().item()
    assert largest <= reach and after <= before - share * (before - reachable), (
        f"{told}: with a stand-in loss swapped in for {swapped_for}, {setting} took a tiny {param.numel()}-parameter "
        f"model from {before:.3f} to {after:.3f} (largest parameter {largest:.2f}); {steps} Adam steps reach "
        f"{reachable:.3f} and move a parameter by at most about {reach:.2f}: train the model passed in, one "
        "optimiser step per batch, zero_grad before backward")


# --- the VAE homework -----------------------------------------------------------------------


def vae_ref_loss(x, logits, mu, logvar):
    """The reference negative ELBO (loss, recon, kl), batch means in nats: Bernoulli decoder."""
    recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3)).mean()
    kl = (0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(1).mean()
    return recon + kl, recon, kl


def vae_upstream_ok(up, mu, logvar, eps, x, logits) -> bool:
    """Whether the student's reparameterize and vae_loss, observed as ``up`` on these inputs, are right."""
    if not isinstance(up, dict) or "error" in up:
        return False
    z, r, k = up.get("z"), scalar(up.get("recon")), scalar(up.get("kl"))
    if not isinstance(z, torch.Tensor) or z.shape != mu.shape or r is None or k is None:
        return False
    p = torch.sigmoid(logits)
    r_ref = -(x * p.log() + (1 - x) * (1 - p).log()).sum(dim=(1, 2, 3)).mean()
    k_ref = (0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(dim=1).mean()
    return (torch.allclose(z.float(), mu + (0.5 * logvar).exp() * eps, atol=1e-4)
            and abs(r - float(r_ref)) < 1e-2 and abs(k - float(k_ref)) < 1e-3)


def vae_neg_elbo(encoder, decoder, images, seed) -> float:
    """Negative ELBO in nats per image, one z per image drawn from the grader's own seed."""
    mu, logvar = mlp_forward(encoder, images.flatten(1)).chunk(2, dim=1)
    eps = torch.randn(tuple(mu.shape), generator=torch.Generator().manual_seed(seed))
    logits = mlp_forward(decoder, mu + (0.5 * logvar).exp() * eps).view_as(images)
    return vae_ref_loss(images, logits, mu, logvar)[0].item()


def vae_layers(state):
    """The trained VAE's encoder and decoder layers, from its state_dict (keys encoder.*, decoder.*)."""
    if not isinstance(state, dict):
        raise WeightsError(f"expected `vae` to be the trained VAE (an nn.Module), got {type(state).__name__}")
    parts = {p: {k[len(p) + 1:]: v for k, v in state.items() if k.startswith(p + ".")} for p in ("encoder", "decoder")}
    first = next(iter(parts["decoder"].values()), None)
    if not isinstance(first, torch.Tensor) or first.ndim != 2:
        raise WeightsError(f"expected `vae` to hold an encoder and a decoder (state_dict keys encoder.*, decoder.*), "
                           f"got {describe(first)} as the decoder's first weight")
    hidden, latent = first.shape
    return (mlp_layers(parts["encoder"], [784, hidden, 2 * latent], "encoder"),
            mlp_layers(parts["decoder"], [latent, hidden, 784], "decoder"), latent)


def vae_fixed_architecture(state, probes, x_probe) -> bool:
    """Whether the student's encoder and decoder (``state``: their weights, keys encoder.*, decoder.*;
    ``probes``: what they computed on ``x_probe``) compute the MLPs the exercises fix (then the grader can
    re-create the trained model from its weights); when they do not, their own items fail, and the
    training items judge the loop alone (error carried forward)."""
    try:
        encoder, decoder, _ = vae_layers(state)
        mu, logvar = mlp_forward(encoder, x_probe.flatten(1)).chunk(2, dim=1)
        logits = mlp_forward(decoder, probes["mu"].float()).view(len(x_probe), 1, 28, 28)
        return (torch.allclose(probes["mu"].float(), mu, atol=1e-3)
                and torch.allclose(probes["logvar"].float(), logvar, atol=1e-3)
                and torch.allclose(probes["logits"].float(), logits, atol=1e-3))
    except (WeightsError, KeyError, TypeError, AttributeError, RuntimeError):
        return False



# --- the DDPM homework ------------------------------------------------------------------------


def ddpm_upstream_ok(up, beta, x0, eps, t) -> bool:
    """Whether the student's q_sample and ddpm_loss (with a network that returns x_t), observed as ``up`` on
    the schedule ``beta`` and these inputs, are right (then their own items pass)."""
    if not isinstance(up, dict) or not isinstance(up.get("xt"), torch.Tensor):
        return False
    alpha_bar_t = torch.cumprod(1 - beta, 0)[t].view(-1, 1, 1, 1)
    xt = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps
    loss = scalar(up.get("loss"))
    return (loss is not None and up["xt"].shape == xt.shape and torch.allclose(up["xt"].float(), xt, atol=1e-5)
            and abs(loss - ((eps - xt) ** 2).mean().item()) < 1e-5)


def ddpm_heldout_loss(eps_model, images, T: int = 200, beta_1: float = 1e-4, beta_T: float = 0.05,
                      seed: int = 2024) -> float:
    """Eq. (ddpm-simple-loss) of ``eps_model`` on ``images`` on the homework's linear schedule, one t and one
    eps per image drawn from the grader's own generator (t first, then eps)."""
    alpha_bar = torch.cumprod(1 - torch.linspace(beta_1, beta_T, T, dtype=torch.float64), 0).float()
    gen = torch.Generator().manual_seed(seed)
    t = torch.randint(0, T, (images.shape[0],), generator=gen).to(images.device)
    eps = torch.randn(tuple(images.shape), generator=gen).to(images)
    alpha_bar_t = alpha_bar[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        return ((eps_model(alpha_bar_t.sqrt() * images + (1 - alpha_bar_t).sqrt() * eps, t) - eps) ** 2).mean().item()


# --- the transformer homework -----------------------------------------------------------------


def transformer_upstream_ok(up, q, k, v, mask, x, block, table, tokens) -> bool:
    """Whether the student's attention, heads, positional encoding, mask, block and loss, observed as
    ``up`` on these fixed inputs (``block``: a TransformerBlock(6, 2) state_dict, ``table``: logits of a
    lookup model), are right (their own items pass)."""
    import dgm.sequence as ref

    try:
        blk = ref.TransformerBlock(6, 2)
        blk.load_state_dict(block)
        inputs = torch.cat([torch.full((len(tokens), 1), 16), tokens[:, :-1]], dim=1)
        with torch.no_grad():
            expected = {"attention": ref.attention(q, k, v, mask)[0], "split": ref.split_heads(x, 2),
                        "combined": x, "pe": ref.positional_encoding(6, 8), "block": blk(x, mask),
                        "loss": torch.nn.functional.cross_entropy(table[inputs].reshape(-1, 16), tokens.reshape(-1))
                        / math.log(2)}
        ok = torch.equal(up["mask"], torch.ones(5, 5, dtype=torch.bool).tril())
        for key, value in expected.items():
            got = torch.as_tensor(up[key]).double()
            ok = ok and tuple(got.shape) == tuple(value.shape) and (got - value.double()).abs().max().item() < 1e-4
        return bool(ok)
    except Exception:  # noqa: BLE001 - anything the kernel sent that is not the right answer
        return False


def transformer_measured(weights, profile: str, n_samples: int = 0) -> dict:
    """The grader's measurements of the trained transformer (dgm.homework.measure_transformer), from the
    weights the kernel sent (or the error message it sent instead)."""
    from dgm.homework import measure_transformer

    assert not isinstance(weights, str), (
        f"could not read the trained transformer's weights (training raised {raised(weights)}): did the training "
        "cell run?")
    try:
        return measure_transformer(weights, profile, n_samples=n_samples)
    except WeightsError as exc:
        raise AssertionError(str(exc)) from None


# --- the flow-matching homework ---------------------------------------------------------------


def fm_upstream_ok(up, x0, x1, t) -> bool:
    """Whether the path, its velocity and the loss, observed as ``up`` on these fixed inputs (and the
    2,000 times the loss drew, ``up["t_drawn"]``), are right (their own items pass)."""
    if not isinstance(up, dict) or "error" in up:
        return False
    tb = t.view(-1, 1, 1, 1)
    xt_ref, v_ref = (1 - tb) * x0 + tb * x1, x1 - x0
    try:
        loss = float(up["loss"])
        ok = (up["xt"].shape == xt_ref.shape and torch.allclose(up["xt"].float(), xt_ref, atol=1e-5)
              and up["v"].shape == v_ref.shape and torch.allclose(up["v"].float(), v_ref, atol=1e-5)
              and abs(loss - ((xt_ref - v_ref) ** 2).mean().item()) < 1e-5)
        td = up["t_drawn"].double().flatten()
        return bool(ok and td.numel() == 2000 and float(td.min()) >= 0 and float(td.max()) <= 1
                    and float(td.min()) < 0.02 and float(td.max()) > 0.98 and len(set(td.tolist())) > 1900
                    and abs(td.mean().item() - 0.5) < 0.05)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError):
        return False


def fm_trained_model(weights, profile: str):
    """The trained velocity network, loaded by the grader into the homework's VelocityMLP."""
    from dgm.homework import load_velocity_model

    try:
        return load_velocity_model(weights, profile)
    except (WeightsError, KeyError) as exc:
        raise AssertionError(f"the trained velocity network `velocity_model` could not be measured: {exc}") from None


# --- the contrastive homework -----------------------------------------------------------------


def contrastive_upstream_ok(up, a, b) -> bool:
    """Whether the student's nt_xent, observed as ``up`` = [orthogonal pairs e = eye(4, 6) at tau 0.5,
    (a, b) at tau 0.5], is right (its own item passes)."""
    from dgm.homework import nt_xent_loss

    if not isinstance(up, list) or len(up) != 2 or any(scalar(v) is None for v in up):
        return False
    return (abs(scalar(up[0]) - math.log(1 + 6 * math.exp(-2))) < 1e-4
            and abs(scalar(up[1]) - float(nt_xent_loss(a.double(), b.double(), 0.5))) < 1e-4)
