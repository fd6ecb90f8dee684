"""Count broken DDIM samples (saturated squares or noise) beside DDPM samples of the same network.

    python -m benchmarks.ddim_samples --profile cpu [--cache FILE]

Trains the diffusion chapter's U-Net exactly as book/diffusion.md does (the profile's row of
``dgm.diffusion.SETTINGS``), or loads its weights from ``--cache`` when that file exists (and
saves them there after training), then draws ``n_samples`` images with ancestral DDPM sampling
and with DDIM (``ddim_steps`` steps, eta = 0), the latter with and without clipping the
predicted x_0 to [-1, 1]. Issue #14: without the clip about a third of the DDIM samples were
flat white or black squares or noise.

A sample counts as *broken* when, after clamping to [-1, 1] as the chapter's figure does,

* it is *saturated*: more than ``SATURATED_SHARE`` of its pixels are at the same extreme
  (within 0.05 of -1 or of +1) - a flat black or white square; or
* it is *noise*: its mean absolute difference between horizontal and vertical neighbours
  exceeds ``NOISE_ROUGHNESS``, more than the roughest real training image.

The two thresholds are printed next to the same statistics of real images, so the reader can
see that no real image would count as broken. Writes benchmarks/results/ddim_samples_<profile>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.common import write
from dgm import diffusion
from dgm.config import PROFILES, get_device, seed_everything, select
from dgm.data import load_dataset, make_loader
from dgm.unet import UNet

SATURATED_SHARE = 0.97  # a real garment never leaves fewer than 3 % of its pixels off the background
NOISE_ROUGHNESS = 0.5   # mean |neighbour difference| in [-1, 1] units; real images stay well below


def saturated_share(x: Tensor) -> Tensor:
    """Per image, the larger of the shares of pixels within 0.05 of -1 and of +1: shape (B,)."""
    x = x.clamp(-1, 1).flatten(1)
    return torch.maximum((x < -0.95).float().mean(1), (x > 0.95).float().mean(1))


def roughness(x: Tensor) -> Tensor:
    """Per image, mean absolute difference between horizontal and vertical neighbours: (B,)."""
    x = x.clamp(-1, 1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return (dx + dy) / 2


def broken(x: Tensor) -> dict:
    """Counts of saturated, noisy and broken (either) images among ``x`` (B, 1, H, W)."""
    sat = saturated_share(x) > SATURATED_SHARE
    noisy = roughness(x) > NOISE_ROUGHNESS
    return {"n": len(x), "saturated": int(sat.sum()), "noise": int(noisy.sum()),
            "broken": int((sat | noisy).sum()), "broken_fraction": float((sat | noisy).float().mean())}


def trained_model(cfg: diffusion.DiffusionSettings, schedule, device, cache: Path | None):
    """The chapter's U-Net, trained as the chapter trains it, or loaded from ``cache``."""
    generator = seed_everything(cfg.seed)
    model = UNet(cfg.widths).to(device)
    if cache is not None and cache.exists():
        model.load_state_dict(torch.load(cache, map_location=device))
        return model.eval(), None, generator
    train = load_dataset("fashion_mnist", split="train", scale="pm1", subset=cfg.subset, seed=cfg.seed)
    loader = make_loader(train, batch_size=cfg.batch, seed=cfg.seed, drop_last=True)
    start = time.perf_counter()
    diffusion.train_ddpm(model, schedule, loader, cfg.epochs, lr=cfg.lr, generator=generator,
                         device=device, max_steps=cfg.max_steps, progress=False)
    seconds = time.perf_counter() - start
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)
    return model.eval(), seconds, generator


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="cpu")
    parser.add_argument("--cache", type=Path, default=None, help="weights file to load or save")
    parser.add_argument("--seeds", type=int, default=3, help="independent x_T batches to draw")
    args = parser.parse_args(argv)
    cfg = select(diffusion.SETTINGS, args.profile)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = get_device()
    schedule = diffusion.schedule_from_settings(cfg)
    model, train_seconds, _ = trained_model(cfg, schedule, device, args.cache)

    real = load_dataset("fashion_mnist", split="train", scale="pm1", subset=cfg.subset,
                        seed=cfg.seed).tensors[0]
    shape = (cfg.n_samples, 1, 28, 28)
    counts: dict[str, list[dict]] = {"ddpm": [], "ddim_unclipped": [], "ddim_clipped": []}
    for seed in range(args.seeds):
        xT = torch.randn(shape, generator=torch.Generator().manual_seed(1000 + seed)).to(device)
        noise = torch.Generator().manual_seed(2000 + seed)
        drawn = {
            "ddpm": diffusion.sample_ddpm(model, schedule, shape, noise, xT=xT, device=device),
            "ddim_unclipped": diffusion.sample_ddim(model, schedule, shape, cfg.ddim_steps, xT=xT,
                                                    device=device, clip_x0=False),
            "ddim_clipped": diffusion.sample_ddim(model, schedule, shape, cfg.ddim_steps, xT=xT,
                                                  device=device, clip_x0=True),
        }
        for name, x in drawn.items():
            counts[name].append(broken(x.cpu()))
            print(f"x_T seed {seed}: {name:15s} {counts[name][-1]}", flush=True)

    summary = {name: {"broken": sum(c["broken"] for c in runs), "saturated": sum(c["saturated"] for c in runs),
                      "noise": sum(c["noise"] for c in runs), "n": sum(c["n"] for c in runs)}
               for name, runs in counts.items()}
    for s in summary.values():
        s["broken_fraction"] = s["broken"] / s["n"]
    payload = {
        "profile": args.profile, "T": cfg.T, "ddim_steps": cfg.ddim_steps, "eta": 0.0,
        "train_seconds": train_seconds, "loaded_from_cache": train_seconds is None,
        "thresholds": {"saturated_share": SATURATED_SHARE, "noise_roughness": NOISE_ROUGHNESS},
        "real_images": {"n": len(real), "max_saturated_share": float(saturated_share(real).max()),
                        "max_roughness": float(roughness(real).max())},
        "per_seed": counts, "summary": summary,
    }
    print(payload["real_images"], summary)
    write(f"ddim_samples_{args.profile}", payload)
    return payload


if __name__ == "__main__":
    main()
