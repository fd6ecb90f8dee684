"""Measure the pixel transformer's training recipe: the old one against the chapter's.

    python -m benchmarks.autoregressive_recipe --recipes old new dlm10 [--epochs 3 | --steps N]
        [--profile cpu] [--grids DIR]

Trains the transformer of book/autoregressive.md with the profile's sizes and data (one thread,
as the chapter), once per recipe, and records its test bits/dim (exact, eq. ar-nll-bpd, of
p(x) and of p(x | y)) and the scores of ``eval_samples`` unconditional samples at temperatures
1 and 0.9 (``dgm.evaluate.evaluate_samples``: FD_clf, coverage, mean confidence), and the
share of 10 class-conditional samples per class that the evaluation classifier assigns to their
class (with classifier-free guidance w = 1 and 3 too, for the softmax head), in
benchmarks/results/autoregressive_recipe_<profile>.json (rows merged by recipe and
epochs or steps). Training is timed in process CPU seconds as well as wall seconds; ``--steps``
trains a recipe that costs more per step for fewer steps, at the same CPU time.
``--grids DIR`` saves an 8 x 8 grid of each recipe's samples, and a grid of its class-conditional
samples (one row per class), as PNG files there.

``old``: one learnt vector per pixel, pixel vectors of spread 1 (torch's default), lr 2e-3
decayed exponentially to 10 %. ``new``: the chapter's settings (row + column vectors, spread
0.02, warm-up then cosine). ``dlm5``, ``dlm10``: ``new`` with a discretised logistic mixture of
5 or 10 components as output (``head="logistic_mixture"``, ``dgm.logistic_mixture``).
``new_lr<rate>`` (e.g. ``new_lr5e-3``): ``new`` at another peak learning rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

import dgm.autoregressive as ar
import dgm.config
from benchmarks.common import previous, stamped, write
from dgm import flows
from dgm.data import load_dataset, make_loader
from dgm.evaluate import evaluate_samples, get_classifier
from dgm.unet import NULL_CLASS

TEMPERATURES = (1.0, 0.9)
GUIDANCE = (0.0, 1.0, 3.0)  # classifier-free guidance weights of the class-conditional samples


def recipe(name: str, cfg: ar.AutoregressiveSettings) -> tuple[dict, dict]:
    """(model keywords, training keywords) of recipe ``name``."""
    if name == "old":
        return ({"positions": "learnt", "embed_std": 1.0},
                {"lr": 2e-3, "schedule": "exponential", "warmup": 0})
    new = ({"positions": cfg.tf_positions},
           {"lr": cfg.tf_lr, "schedule": cfg.tf_schedule, "warmup": cfg.tf_warmup})
    if name == "new":
        return new
    if name in ("dlm5", "dlm10"):
        return {**new[0], "head": "logistic_mixture", "n_mix": int(name[3:])}, dict(new[1])
    if name.startswith("new_lr"):  # e.g. new_lr5e-3
        return new[0], {**new[1], "lr": float(name[len("new_lr"):])}
    raise ValueError(f"unknown recipe {name!r}; choose from old, new, new_lr<rate>, dlm5, dlm10")


class Steps:
    """``steps`` batches of ``loader``, starting a new pass (and shuffle) when one ends."""

    def __init__(self, loader, steps: int):
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        batches = itertools.chain.from_iterable(iter(self.loader) for _ in itertools.count())
        return itertools.islice(batches, self.steps)


def class_accuracy(model: ar.PixelTransformer, tau: float, guidance: float = 0.0,
                   per_class: int = 10) -> tuple[float, torch.Tensor]:
    """Share of ``per_class`` samples of each class given y (with classifier-free ``guidance``)
    that the evaluation classifier puts in class y, and the samples ``(10 per_class, 1, 28, 28)``,
    class by class."""
    y = torch.arange(10).repeat_interleave(per_class)
    x = ar.sample(model, len(y), y, temperature=tau, generator=torch.Generator().manual_seed(8),
                  guidance=guidance)
    with torch.no_grad():
        predicted = get_classifier("fashion_mnist")(x.float()).argmax(1)
    return (predicted == y).double().mean().item(), x


def measure(name: str, cfg: ar.AutoregressiveSettings, epochs: int, grids: Path | None,
            steps: int | None = None) -> dict:
    flow_cfg = dgm.config.select(flows.SETTINGS)
    train = load_dataset("fashion_mnist", "train", scale="01", subset=cfg.subset, seed=0)
    test_x, test_y = load_dataset("fashion_mnist", "test", scale="01", subset=flow_cfg.test_subset,
                                  seed=0).tensors
    model_kw, train_kw = recipe(name, cfg)
    dgm.config.seed_everything(cfg.seed)
    model = ar.PixelTransformer((28, 28), cfg.tf_d_model, cfg.tf_heads, cfg.tf_layers, **model_kw)
    lr = train_kw.pop("lr")
    loader = make_loader(train, batch_size=cfg.batch, shuffle=True, seed=cfg.seed)
    if steps is not None:
        loader, epochs = Steps(loader, steps), 1
    cpu = time.process_time()
    history = ar.train_autoregressive(model, loader, epochs, lr, cfg.p_uncond, seed=cfg.seed,
                                      **train_kw)
    cpu = time.process_time() - cpu
    tag = f"e{epochs}" if steps is None else f"s{steps}"
    row = {"recipe": name, "epochs": epochs if steps is None else steps / len(loader.loader),
           "lr": lr, **model_kw, **train_kw, "threads": torch.get_num_threads(),
           "train_seconds": history["seconds"][0], "train_cpu_seconds": cpu,
           "steps": len(history["train bits/dim"]),
           "cpu_seconds_per_step": cpu / len(history["train bits/dim"]),
           "test_bits_per_dim": ar.nll_bits_per_dim(model, test_x),
           "test_bits_per_dim_given_y": ar.nll_bits_per_dim(model, test_x, test_y)}
    for tau in TEMPERATURES:
        x = ar.sample(model, cfg.eval_samples, torch.tensor(NULL_CLASS), temperature=tau,
                      generator=torch.Generator().manual_seed(7))
        scores = evaluate_samples(x, scale="01")
        row.update({f"fd_tau{tau}": scores["fd"], f"coverage_tau{tau}": scores["coverage"],
                    f"mean_confidence_tau{tau}": scores["mean_confidence"], "sample_n": scores["n"]})
        if grids is not None:
            grids.mkdir(parents=True, exist_ok=True)
            save_image(x[:64], grids / f"{name}_{tag}_tau{tau}.png", nrow=8, padding=1)
    for w in GUIDANCE if model.head_kind == "softmax" else GUIDANCE[:1]:
        row[f"class_accuracy_tau1.0_w{w}"], x = class_accuracy(model, 1.0, w)
        if grids is not None:
            save_image(x, grids / f"{name}_{tag}_classes_w{w}.png", nrow=10, padding=1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["old", "new"])
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's tf_epochs")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps instead of epochs (to match another recipe's CPU time)")
    parser.add_argument("--profile", default="cpu", choices=dgm.config.PROFILES)
    parser.add_argument("--grids", type=Path, default=None)
    args = parser.parse_args()
    cfg = dgm.config.select(ar.SETTINGS, args.profile)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    epochs = args.epochs or cfg.tf_epochs
    name = f"autoregressive_recipe_{args.profile}"
    for recipe_name in args.recipes:
        row = stamped(measure(recipe_name, dataclasses.replace(cfg), epochs, args.grids, args.steps))
        # read the file again just before writing, so that runs in parallel keep each other's rows
        before = previous(name) or {}
        rows = {f"{r['recipe']}_e{r['epochs']}": r for r in before.get("rows", [])}
        rows[f"{recipe_name}_e{row['epochs']}"] = row  # epochs = steps / batches per pass with --steps
        print(row, flush=True)
        note = {"note": before["note"]} if "note" in before else {}  # written by hand: keep it
        write(name, {"profile": args.profile, **note, "rows": list(rows.values())})


if __name__ == "__main__":
    main()
