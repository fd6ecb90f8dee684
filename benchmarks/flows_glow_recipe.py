"""What buys the Glow-style flow of book/flows.md better bits/dim in the same CPU time?

    python -m benchmarks.flows_glow_recipe --variants base alpha05 h64 s88 split44 [--budget 100]
    python -m benchmarks.flows_glow_recipe --variants base --budget 300 --name base300

Each variant trains on the cpu profile's data (4,000 training images, batch 32, Adam at 5e-3
warmed up over the first 10 % and decayed to 10 %, ``dgm.flows.lr_factor``) until it has used
``--budget`` seconds of process CPU time on one thread, so that variants are compared at equal
cost rather than equal steps. Then: test bits/dim on the 443 test images (one dequantisation
draw each, ``dgm.flows.nll_bits_per_dim``) and, with ``--fd N``, the evaluation harness's
scores of N samples at temperatures 1, 0.9, 0.8 and 0.7. Rows are merged by name into
benchmarks/results/flows_glow_recipe_cpu.json; ``--grids DIR`` saves sample grids.

Variants (all ``build_glow_flow`` unless said): ``base`` the chapter's row (4 + 4 steps, width
32); ``alpha05`` the logit squeezed into [0.05, 0.95] as RealNVP does (alpha = 0.05 instead of
1e-5); ``h64`` width 64; ``s88`` 8 + 8 steps; ``split44`` Glow's multi-scale split: after the
first level half the channels leave the flow under a Gaussian prior whose mean and scale a
convolution computes from the other half (:class:`FactorOut`), and the second level works on
the remaining half only.

The optimisation side (options, defaults = the chapter's): ``--lr``, ``--batch``, ``--schedule``
(``chapter``: ``dgm.flows.lr_factor``; ``cosine``: the same 10 % warm-up, then a cosine to 0),
``--optimizer`` (adam, adamax, adamw with weight decay 1e-4), ``--clip`` (gradient-norm clip, 0 for
none) and ``--ema D ...``: exponential moving averages of the weights with those decays, started
from zero and bias-corrected, each scored as an extra row ``NAME@emaD``. Rows also carry the T = 1
samples' share of exactly black pixels and mean absolute difference of horizontal neighbours (the
443 real test images: 0.494 and 0.090), and whether the samples lie on the 8-bit levels (they do:
``Dequantize.inverse`` returns the cell ``floor(256 y)`` of the dequantised value y, so the
noise seen in the samples is not the dequantisation noise).

    python -m benchmarks.flows_glow_recipe --name cos_lr5e-3 --schedule cosine --ema 0.99 0.999 --fd 443
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

import dgm.flows as F
from benchmarks.common import command, previous, stamped, write
from dgm.data import load_dataset, make_loader
from dgm.evaluate import bits_per_dim, evaluate_samples
from dgm.speed import channels_last

TEMPERATURES = (1.0, 0.9, 0.8, 0.7)


class FactorOut(nn.Module):
    """Glow's split: of ``x`` (B, C, H, W) the second half of the channels becomes latent under
    N(t(x_1), exp(s(x_1))^2), i.e. ``z_2 = (x_2 - t) exp(-s)`` with logdet ``-sum s``; the first
    half goes through ``inner``. The output is both latents, flattened and concatenated."""

    def __init__(self, channels: int, hidden: int, inner: list[nn.Module]):
        super().__init__()
        self.prior = F.conv_net(channels // 2, hidden, channels, 1)
        self.inner = nn.ModuleList(inner)
        self._shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def _scale_shift(self, kept):
        s, t = self.prior(kept).chunk(2, 1)
        return torch.tanh(s), t

    def forward(self, x):
        kept, out = x.chunk(2, 1)
        s, t = self._scale_shift(kept)
        z_out = (out - t) * torch.exp(-s)
        logdet = -F._sum_nonbatch(s)
        h = kept
        for layer in self.inner:
            h, ld = layer(h)
            logdet = logdet + ld
        self._shapes = (tuple(h.shape[1:]), tuple(z_out.shape[1:]))
        return torch.cat([h.flatten(1), z_out.flatten(1)], 1), logdet

    def inverse(self, z):
        inner_shape, out_shape = self._shapes  # set by any forward pass (latent_shape makes one)
        n = math.prod(inner_shape)
        h, z_out = z[:, :n].reshape(-1, *inner_shape), z[:, n:].reshape(-1, *out_shape)
        for layer in reversed(self.inner):
            h = layer.inverse(h)
        s, t = self._scale_shift(h)
        return torch.cat([h, z_out * torch.exp(s) + t], 1)


def glow_level(c: int, n: int, hidden: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for k in range(n):
        layers += [F.ActNorm(c), F.InvConv1x1(c),
                   F.AffineCoupling(F.channel_mask(c, k % 2), F.conv_net(c, hidden, 2 * c, 2), c)]
    return layers


def build(variant: str) -> F.FlowModel:
    if variant == "split44":
        inner = [F.Squeeze(), *glow_level(8, 4, 32)]
        layers = [F.Squeeze(), *glow_level(4, 4, 32), FactorOut(4, 32, inner)]
        return F.FlowModel(layers, (1, 28, 28), F.Dequantize())
    steps, hidden = {"base": ((4, 4), 32), "alpha05": ((4, 4), 32), "h64": ((4, 4), 64),
                     "s88": ((8, 8), 32)}[variant]
    flow = F.build_glow_flow(steps, hidden, 2)
    if variant == "alpha05":
        flow.dequantize.alpha = 0.05
    return flow


VARIANTS = ("base", "alpha05", "h64", "s88", "split44")


@dataclass(frozen=True)
class Recipe:
    """The optimisation side of a run; the defaults are the chapter's cpu profile."""
    lr: float = 5e-3
    batch: int = 32
    schedule: str = "chapter"      # "chapter": dgm.flows.lr_factor; "cosine": warm-up, cosine to 0
    optimizer: str = "adam"        # "adam", "adamax" or "adamw" (weight decay 1e-4)
    clip: float = 10.0             # gradient-norm clip; 0 means none
    ema: tuple[float, ...] = ()    # decays of the weight averages also evaluated


SCHEDULES = ("chapter", "cosine")
OPTIMIZERS = ("adam", "adamax", "adamw")


def lr_multiplier(schedule: str, frac: float, warmup: float = 0.1) -> float:
    if schedule == "chapter":
        return F.lr_factor(frac, warmup)
    if schedule == "cosine":  # the same warm-up, then a cosine down to 0
        return F.lr_factor(frac, warmup, "cosine", final=0.0)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


class BiasCorrectedEMA:
    """Exponential moving average of a model's parameters, started from zero and divided by
    ``1 - decay^t`` (as Adam does for its moments) so that the initial weights get no share."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.t = decay, 0
        self.params = [p for p in model.parameters()]
        self.avg = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.t += 1
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for p, a in zip(model.parameters(), self.avg):
            p.copy_(a / (1 - self.decay ** self.t))


def noise_measures(x: torch.Tensor) -> dict:
    """Share of exact-black pixels and mean absolute difference of horizontal neighbours."""
    return {"zero_frac": round((x == 0).float().mean().item(), 3),
            "neighbour_diff": round((x[..., 1:] - x[..., :-1]).abs().mean().item(), 4)}


def score(model: F.FlowModel, test: torch.Tensor, fd_n: int, label: str, grids: Path | None,
          save: Path | None = None) -> dict:
    model.eval()
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), save / f"{label}.pt")
    row = {"test_bpd": round(F.nll_bits_per_dim(model, test, generator=torch.Generator().manual_seed(0)), 4)}
    for temp in TEMPERATURES if fd_n else ():
        samples = model.sample(fd_n, generator=torch.Generator().manual_seed(5), temperature=temp)
        scores = evaluate_samples(samples, scale="01")
        row[f"fd_tau{temp}"] = round(scores["fd"], 1)
        row[f"coverage_tau{temp}"] = scores["coverage"]
        if temp == 1.0:
            levels = samples * 255
            # the sampler returns the dequantisation cell's level floor(256 y): already 8-bit
            row["samples_on_8bit_levels"] = bool(torch.equal(levels, levels.round()))
            row.update(noise_measures(samples))
    if grids is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import dgm.plotting
        fig, axes = plt.subplots(2, 2, figsize=(12, 6.6))
        for ax, temp in zip(axes.flat, TEMPERATURES):
            samples = model.sample(32, generator=torch.Generator().manual_seed(2), temperature=temp)
            dgm.plotting.show_images(samples, nrow=8, ax=ax, title=f"{label} T={temp}")
        grids.mkdir(parents=True, exist_ok=True)
        fig.savefig(grids / f"{label}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    return row


def run(variant: str, budget: float, fd_n: int, grids: Path | None, recipe: Recipe = Recipe(),
        name: str | None = None, save: Path | None = None) -> list[dict]:
    """Train ``variant`` with ``recipe`` for ``budget`` CPU-s; one row for the trained weights and
    one per EMA decay (named ``NAME@emaDECAY``)."""
    name = name or variant
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = load_dataset("fashion_mnist", "train", scale="01", subset=4000, seed=0)
    test = load_dataset("fashion_mnist", "test", scale="01", subset=443, seed=0).tensors[0]
    loader = make_loader(train, batch_size=recipe.batch, shuffle=True, seed=0)
    model = build(variant)
    channels_last(model, torch.device("cpu")).train()
    opt = make_optimizer(recipe.optimizer, model.parameters(), recipe.lr)
    emas = [BiasCorrectedEMA(model, d) for d in recipe.ema]
    losses, clipped, start, first, done = [], 0, time.process_time(), True, False
    while not done:
        for x, *_ in loader:
            if first:
                model.data_init(x)
                first = False
            frac = (time.process_time() - start) / budget
            if frac >= 1:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = recipe.lr * lr_multiplier(recipe.schedule, frac)
            loss = bits_per_dim(-model.log_prob(x).mean(), 784, scale="bytes")
            opt.zero_grad()
            loss.backward()
            if recipe.clip > 0:
                norm = nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
                clipped += int(norm > recipe.clip)
            opt.step()
            for ema in emas:
                ema.update()
            losses.append(loss.item())
    cpu = time.process_time() - start
    base = {"variant": variant, "recipe": asdict(recipe), "budget_cpu_s": budget, "cpu_s": round(cpu, 1),
            "steps": len(losses), "epochs": round(len(losses) / len(loader), 2),
            "parameters": sum(p.numel() for p in model.parameters()),
            "clipped_steps": clipped,
            "train_bpd_last_100": round(sum(losses[-100:]) / len(losses[-100:]), 4)}
    rows = [{"name": name, **base, "weights": "trained", **score(model, test, fd_n, name, grids, save)}]
    for ema in emas:
        averaged = copy.deepcopy(model)
        ema.copy_to(averaged)
        label = f"{name}@ema{ema.decay:g}"
        rows.append({"name": label, **base, "weights": f"ema {ema.decay:g}",
                     **score(averaged, test, fd_n, label, grids, save)})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["base"])
    p.add_argument("--budget", type=float, default=100.0, help="process CPU-seconds of training")
    p.add_argument("--name", help="row name (default: the variant); e.g. base300")
    p.add_argument("--fd", type=int, default=0, help="samples scored per temperature (0: none)")
    p.add_argument("--grids", type=Path)
    p.add_argument("--save", type=Path, help="folder for the state_dicts (NAME.pt)")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--schedule", choices=SCHEDULES, default="chapter")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--clip", type=float, default=10.0, help="gradient-norm clip (0: none)")
    p.add_argument("--ema", type=float, nargs="*", default=[], help="EMA decays also evaluated")
    a = p.parse_args(argv)
    recipe = Recipe(a.lr, a.batch, a.schedule, a.optimizer, a.clip, tuple(a.ema))
    for variant in a.variants:
        new = run(variant, a.budget, a.fd, a.grids, recipe,
                  a.name if a.name and len(a.variants) == 1 else variant, a.save)
        # read just before writing, so that runs in parallel keep each other's rows
        rows = {r["name"]: r for r in (previous("flows_glow_recipe_cpu") or {}).get("rows", [])}
        for row in new:
            rows[row["name"]] = stamped(row)
            print(row, flush=True)
        write("flows_glow_recipe_cpu", {"profile": "cpu", "command": command(), "rows": list(rows.values())})


if __name__ == "__main__":
    main()
