"""Helpers the hidden checks' verdict sections share: one definition each, in the grader only.

A verdict section (see :mod:`autograder.checks`) runs in the grader's own process, so it may
import this module; a student's kernel cannot (``autograder.sandbox.KERNEL_MODULES``), and setup
or student sections must not import it. Every function takes what it measures as arguments: the
verdict passes its own setup's inputs, so that the check reads the same as when it held a copy.

``shape_of``, ``scalar``        what an observed value is: a shape (or type name), one number or None.
``vae_*``, ``judge_vae_loop``   the VAE homework's training and sample-quality checks: the
                                reference loss, whether the student's parts are right, the
                                architecture the exercises fix rebuilt from weights, and the
                                error-carried-forward judgement of the training loop alone.
``same_tensors``                whether the kernel's probe of torch's functions holds the grader's values.
``judge_standin_loop``          a training loop judged on a tiny model with a stand-in objective.
``ddpm_*``                      the DDPM homework's training check: whether q_sample and ddpm_loss are
                                right, and the held-out loss of trained weights.
"""

from __future__ import annotations

import numbers

import torch

from dgm.homework import WeightsError, mlp_forward, mlp_layers


def shape_of(v):
    """A tensor's shape as a tuple, or the type name of anything else (for messages)."""
    return tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__


def scalar(v):
    """The observed value as a float, or None when it is not one number (a bool is not one)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    return float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else None


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
                           f"got keys {list(state)[:6]}")
    hidden, latent = first.shape
    return (mlp_layers(parts["encoder"], [784, hidden, 2 * latent], "encoder"),
            mlp_layers(parts["decoder"], [latent, hidden, 784], "decoder"), latent)


def vae_fixed_architecture(state, probes, x_probe) -> bool:
    """Whether the student's encoder and decoder compute the MLPs the exercises fix (then the grader can
    re-create the model from its weights); when they do not, their own items fail, and the training
    items judge the loop alone (error carried forward)."""
    try:
        encoder, decoder, _ = vae_layers(state)
        mu, logvar = mlp_forward(encoder, x_probe.flatten(1)).chunk(2, dim=1)
        logits = mlp_forward(decoder, probes["mu"].float()).view(len(x_probe), 1, 28, 28)
        return (torch.allclose(probes["mu"].float(), mu, atol=1e-3)
                and torch.allclose(probes["logvar"].float(), logvar, atol=1e-3)
                and torch.allclose(probes["logits"].float(), logits, atol=1e-3))
    except (WeightsError, KeyError, TypeError, AttributeError, RuntimeError):
        return False


def _tiny_loss(tiny_class, state, images) -> float:
    """The reference loss of the tiny model (``tiny_class``, Linear layers ``enc`` and ``dec``) with
    weights ``state`` on ``images`` (grader's noise, seed 2025)."""
    model = tiny_class()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    enc, dec = [(model.enc.weight, model.enc.bias)], [(model.dec.weight, model.dec.bias)]
    return vae_neg_elbo(enc, dec, images, seed=2025)


def judge_vae_loop(state, initial, tiny_class, images, fraction) -> None:
    """Error carried forward: the student's train_vae, run on the tiny model from ``initial``, must
    have left weights ``state`` whose reference loss is below ``fraction`` of the initial one."""
    try:
        with torch.no_grad():
            before, after = _tiny_loss(tiny_class, initial, images), _tiny_loss(tiny_class, state, images)
    except Exception:  # noqa: BLE001 - weights of the wrong shape or kind
        raise AssertionError(f"with a reference model and loss, expected train_vae to train a tiny model, got "
                             f"weights {str(state)[:200]}") from None
    assert after < fraction * before, (
        f"with a reference model and loss, expected train_vae to lower a tiny model's loss from {before:.1f} "
        f"to below {fraction * before:.1f} nats, got {after:.1f} (measured by the grader from the weights "
        "it trained): one optimiser step per batch, zero_grad before backward?")


# --- any homework: torch's own functions, and a training loop judged on a stand-in objective ----


def same_tensors(got, want, atol: float = 1e-6) -> bool:
    """Whether ``got``, observed in the kernel, is the list of tensors ``want`` the grader computed itself
    (a check's probe of torch's functions on fixed inputs: a kernel that patched them fails it)."""
    return isinstance(got, list) and len(got) == len(want) and all(
        isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=atol)
        for a, b in zip(got, want))


def judge_standin_loop(state, tiny_class, objective, images, steps: int, lr: float, share: float, told: str,
                       swapped: str) -> None:
    """The student's loop, run in the kernel on a tiny model (``tiny_class``: one parameter ``b`` of 16 values,
    zero at the start) with ``objective(model, images)`` swapped in for ``swapped``, left the weights ``state``:
    they must achieve at least ``share`` of the decrease that ``steps`` Adam steps at ``lr`` reach (the grader
    replays them), and no parameter may lie further than such steps can move it."""
    assert not isinstance(state, str), f"{told}: on a tiny model with a stand-in loss swapped in, it raised {state}"
    b = state.get("b") if isinstance(state, dict) else None
    assert isinstance(b, torch.Tensor) and tuple(b.shape) == (16,) and bool(torch.isfinite(b).all()), (
        f"{told}: expected the tiny model's 16 parameters back, finite, got {str(state)[:200]}")
    replay = tiny_class()
    opt = torch.optim.Adam(replay.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        objective(replay, images).backward()
        opt.step()
    probe = tiny_class()
    with torch.no_grad():
        before = objective(probe, images).item()
        reachable = objective(replay, images).item()
        probe.b.copy_(b.float())
        after = objective(probe, images).item()
    reach = 1.5 * steps * lr  # an Adam step moves a parameter by about lr
    assert b.abs().max().item() <= reach and after <= before - share * (before - reachable), (
        f"{told}: with a stand-in loss swapped in for {swapped}, {steps} batches took a tiny 16-parameter model "
        f"from {before:.3f} to {after:.3f} (largest parameter {b.abs().max().item():.2f}); {steps} Adam steps reach "
        f"{reachable:.3f} and move a parameter by at most about {reach:.2f}: train the model passed in, one "
        "optimiser step per batch, zero_grad before backward")


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
