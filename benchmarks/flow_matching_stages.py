"""Where book/flow_matching.md spends its time: each stage timed alone, the chapter's total
computed from the profile's counts.

    python -m benchmarks.flow_matching_stages --profile cpu [--threads 2] [--repeats 3] [--rest 25]

Running the whole chapter on a shared machine measures the load as much as the code (issue #17).
This script times one unit of each stage with the process CPU time and the wall time, at a fixed
thread count, a few times, and multiplies by how many units the chapter runs with the profile's
``dgm.flow_matching.SETTINGS`` (see :func:`chapter_counts`, which follows the chapter's cells):

* a training step at batch ``batch`` (flow matching; DDPM's is the same network and loss shape),
  for the two trainings and reflow;
* one U-Net forward pass at batch ``eval_samples`` (every sampler step), and at 256 (reflow pairs);
* one call of the evaluation harness on ``eval_samples`` images (every table row);
* one step of the 2-D toy's MLP (one thread, as the chapter runs it).

``--rest`` adds the seconds of everything else (SymPy checks, Monte Carlo, figures, imports),
which the smoke profile's run measures from above (its stages are tiny). The quiet wall time
with ``t`` threads lies between the CPU time divided by ``t`` (perfect scaling) and the CPU time
at one thread; the script reports the CPU time, its division by the thread count and the median
wall time, each with the load average, and writes benchmarks/results/flow_matching_stages_<profile>.json.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from torch import nn

from benchmarks.common import write
from dgm import diffusion
from dgm import flow_matching as fm
from dgm.config import PROFILES, get_profile, seed_everything, select
from dgm.data import load_dataset, make_loader
from dgm.evaluate import evaluate_samples, get_classifier

PAIR_CHUNK = 256  # the chapter generates reflow pairs in chunks of this many


def chapter_counts(cfg: fm.FlowMatchingSettings, T: int) -> dict[str, int]:
    """How many units of each stage book/flow_matching.md runs with settings ``cfg``."""
    few = [n for n in (1, 2, 4) if n <= max(cfg.nfe)]
    forwards = {name: sum(fm.sampler_evaluations(name, n, T) for n in fm.sampler_budgets(cfg, name))
                for name in fm.SAMPLERS}
    rows = sum(len(fm.sampler_budgets(cfg, name)) for name in fm.SAMPLERS)
    chunks = math.ceil(cfg.reflow_pairs / PAIR_CHUNK)
    return {
        "train_steps": 2 * cfg.train_steps + cfg.reflow_steps,
        "eval_forwards": sum(forwards.values()) + 2 * sum(few),   # the curve, then reflow before/after
        "pair_forwards": chunks * 2 * (cfg.reflow_pair_nfe // 2),  # Heun: two per step
        "straightness_forwards": 2 * 20,                           # 20 Euler steps at batch 64, twice
        "harness_calls": rows + 2 * len(few),
        "toy_steps": cfg.toy_steps,
        **{f"forwards_{name}": v for name, v in forwards.items()},
    }


def timed(fn, repeats: int) -> dict[str, float]:
    """Median process CPU time and wall time of ``fn()`` over ``repeats`` calls, after one warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall)}


def measure(cfg: fm.FlowMatchingSettings, dcfg, threads: int, repeats: int) -> dict[str, dict]:
    """One unit of each stage, timed at ``threads`` threads (the toy at one, as in the chapter)."""
    generator = seed_everything(cfg.seed)
    torch.set_num_threads(threads)
    train = load_dataset("fashion_mnist", split="train", scale="pm1", subset=cfg.subset, seed=cfg.seed)
    loader = make_loader(train, batch_size=cfg.batch, seed=cfg.seed, drop_last=True)
    model = fm.VelocityUNet(cfg.widths)
    steps = 3

    def train_steps():
        fm.train_flow_matching(model, loader, 1, lr=cfg.lr, generator=generator, max_steps=steps,
                               progress=False)

    def forward(batch):
        x = torch.randn(batch, 1, 28, 28)
        t = torch.rand(batch)

        def run():
            with torch.no_grad():
                model(x, t)
        return run

    get_classifier()
    images = torch.rand(cfg.eval_samples, 1, 28, 28) * 2 - 1
    out = {"train_step": {k: v / steps for k, v in timed(train_steps, repeats).items()},
           "eval_forward": timed(forward(cfg.eval_samples), repeats),
           "pair_forward": timed(forward(min(PAIR_CHUNK, cfg.reflow_pairs)), repeats),
           "straightness_forward": timed(forward(64), repeats),
           "harness_call": timed(lambda: evaluate_samples(images, scale="pm1"), repeats)}

    torch.set_num_threads(1)
    toy = fm.GaussianMixture(torch.tensor([[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]]), torch.tensor([0.15] * 3))
    h = cfg.toy_hidden  # the chapter's ToyVelocity: x and 16 Fourier features of t, three hidden layers
    mlp = nn.Sequential(nn.Linear(18, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                        nn.Linear(h, 2))
    freqs = torch.arange(1, 9) * math.pi
    opt = torch.optim.Adam(mlp.parameters(), lr=2e-3)

    def toy_model(x, t):
        angles = t.float()[:, None] * freqs
        return mlp(torch.cat([x.float(), angles.sin(), angles.cos()], 1)).to(x.dtype)

    def toy_steps(n=50):
        for _ in range(n):
            x1, _ = toy.sample(512, generator)
            loss = fm.cfm_loss(toy_model, x1.float(), generator=generator)
            opt.zero_grad()
            loss.backward()
            opt.step()

    out["toy_step"] = {k: v / 50 for k, v in timed(toy_steps, repeats).items()}
    torch.set_num_threads(threads)
    return out


UNIT = {"train_steps": "train_step", "eval_forwards": "eval_forward", "pair_forwards": "pair_forward",
        "straightness_forwards": "straightness_forward", "harness_calls": "harness_call",
        "toy_steps": "toy_step"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the U-Net stages")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rest", type=float, default=0.0,
                        help="seconds of the chapter's other cells (from a smoke run's cell log)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    os.environ["DGM_PROFILE"] = profile
    cfg, dcfg = select(fm.SETTINGS, profile), select(diffusion.SETTINGS, profile)
    load_before = os.getloadavg()
    units = measure(cfg, dcfg, args.threads, args.repeats)
    counts = chapter_counts(cfg, dcfg.T)
    stages = {}
    for count_name, unit_name in UNIT.items():
        n, u = counts[count_name], units[unit_name]
        threads = 1 if unit_name == "toy_step" else args.threads
        stages[count_name] = {"count": n, "cpu_s": n * u["cpu_s"], "cpu_per_thread_s": n * u["cpu_s"] / threads,
                              "wall_s": n * u["wall_s"]}
    total = {k: sum(s[k] for s in stages.values()) + args.rest
             for k in ("cpu_s", "cpu_per_thread_s", "wall_s")}
    load_after = os.getloadavg()
    for name, s in stages.items():
        print(f"{name:22s} x{s['count']:5d}: CPU {s['cpu_s']:7.1f} s, CPU/threads {s['cpu_per_thread_s']:7.1f} s, "
              f"wall {s['wall_s']:7.1f} s")
    print(f"{'total (+ rest)':22s}       : CPU {total['cpu_s']:7.1f} s, CPU/threads {total['cpu_per_thread_s']:7.1f} s, "
          f"wall {total['wall_s']:7.1f} s   (load {load_before[0]:.1f} -> {load_after[0]:.1f})")
    write(f"flow_matching_stages_{profile}", {
        "profile": profile, "threads": args.threads, "repeats": args.repeats, "rest_s": args.rest,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "units": units, "counts": counts, "stages": stages, "total": total})


if __name__ == "__main__":
    main()
