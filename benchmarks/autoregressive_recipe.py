"""Measure the pixel transformer's training recipe: the old one against the chapter's.

    python -m benchmarks.autoregressive_recipe --recipes old new [--epochs 3] [--profile cpu]

Trains the transformer of book/autoregressive.md with the profile's sizes and data (one thread,
as the chapter), once per recipe, and records its test bits/dim (exact, eq. ar-nll-bpd, of
p(x) and of p(x | y)) and the scores of ``eval_samples`` unconditional samples at temperatures
1 and 0.9 (``dgm.evaluate.evaluate_samples``: FD_clf, coverage, mean confidence), in
benchmarks/results/autoregressive_recipe_<profile>.json (rows merged by recipe and epochs).
``--grids DIR`` saves an 8 x 8 grid of each recipe's samples as PNG files there.

``old``: one learnt vector per pixel, pixel vectors of spread 1 (torch's default), lr 2e-3
decayed exponentially to 10 %. ``new``: the chapter's settings (row + column vectors, spread
0.02, warm-up then cosine).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

import dgm.autoregressive as ar
import dgm.config
from benchmarks.common import previous, stamped, write
from dgm import flows
from dgm.data import load_dataset, make_loader
from dgm.evaluate import evaluate_samples
from dgm.unet import NULL_CLASS

TEMPERATURES = (1.0, 0.9)


def recipe(name: str, cfg: ar.AutoregressiveSettings) -> tuple[dict, dict]:
    """(model keywords, training keywords) of recipe ``name``."""
    if name == "old":
        return ({"positions": "learnt", "embed_std": 1.0},
                {"lr": 2e-3, "schedule": "exponential", "warmup": 0})
    if name == "new":
        return ({"positions": cfg.tf_positions},
                {"lr": cfg.tf_lr, "schedule": cfg.tf_schedule, "warmup": cfg.tf_warmup})
    raise ValueError(f"unknown recipe {name!r}; choose from old, new")


def measure(name: str, cfg: ar.AutoregressiveSettings, epochs: int, grids: Path | None) -> dict:
    flow_cfg = dgm.config.select(flows.SETTINGS)
    train = load_dataset("fashion_mnist", "train", scale="01", subset=cfg.subset, seed=0)
    test_x, test_y = load_dataset("fashion_mnist", "test", scale="01", subset=flow_cfg.test_subset,
                                  seed=0).tensors
    model_kw, train_kw = recipe(name, cfg)
    dgm.config.seed_everything(cfg.seed)
    model = ar.PixelTransformer((28, 28), cfg.tf_d_model, cfg.tf_heads, cfg.tf_layers, **model_kw)
    lr = train_kw.pop("lr")
    history = ar.train_autoregressive(model, make_loader(train, batch_size=cfg.batch, shuffle=True,
                                                         seed=cfg.seed),
                                      epochs, lr, cfg.p_uncond, seed=cfg.seed, **train_kw)
    row = {"recipe": name, "epochs": epochs, "lr": lr, **model_kw, **train_kw,
           "train_seconds": history["seconds"][0], "steps": len(history["train bits/dim"]),
           "test_bits_per_dim": ar.nll_bits_per_dim(model, test_x),
           "test_bits_per_dim_given_y": ar.nll_bits_per_dim(model, test_x, test_y)}
    for tau in TEMPERATURES:
        x = ar.sample(model, cfg.eval_samples, torch.tensor(NULL_CLASS), temperature=tau,
                      generator=torch.Generator().manual_seed(7))
        scores = evaluate_samples(x, scale="01")
        row.update({f"fd_tau{tau}": scores["fd"], f"coverage_tau{tau}": scores["coverage"],
                    f"mean_confidence_tau{tau}": scores["mean_confidence"], "sample_n": scores["n"]})
        if grids is not None:
            from torchvision.utils import save_image
            grids.mkdir(parents=True, exist_ok=True)
            save_image(x[:64], grids / f"{name}_e{epochs}_tau{tau}.png", nrow=8, padding=1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["old", "new"])
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's tf_epochs")
    parser.add_argument("--profile", default="cpu", choices=dgm.config.PROFILES)
    parser.add_argument("--grids", type=Path, default=None)
    args = parser.parse_args()
    cfg = dgm.config.select(ar.SETTINGS, args.profile)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    epochs = args.epochs or cfg.tf_epochs
    name = f"autoregressive_recipe_{args.profile}"
    rows = {f"{r['recipe']}_e{r['epochs']}": r for r in (previous(name) or {}).get("rows", [])}
    for recipe_name in args.recipes:
        row = stamped(measure(recipe_name, dataclasses.replace(cfg), epochs, args.grids))
        rows[f"{recipe_name}_e{epochs}"] = row
        print(row, flush=True)
        write(name, {"profile": args.profile, "rows": list(rows.values())})


if __name__ == "__main__":
    main()
