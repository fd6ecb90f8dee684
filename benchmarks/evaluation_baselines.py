"""Scores of the evaluation harness (dgm/evaluate.py) on real data and on two bad baselines.

Run from the repository root, with ``DGM_DATA`` pointing at the data:

    python benchmarks/evaluation_baselines.py [--profile smoke|cpu|full] [--fresh]

It trains (``--fresh``: into a temporary folder, so the training time is measured) or loads the
classifier, then scores, each against the held-out split as reference:

* ``real_train``: as many training images as there are held-out ones (real data that is not the
  reference: the floor a perfect generator could reach at that size);
* ``real_heldout_half``: one half of the held-out split against the other half only (both sides
  unseen by the classifier; half the size, hence a larger bias);
* ``uniform_noise`` and ``blurred_mean``: the baselines of book/evaluation.md.

Prints a table and writes ``benchmarks/results/evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from dgm import evaluate as ev
from dgm.config import get_profile, select
from dgm.data import data_root, load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="smoke, cpu or full (default: $DGM_PROFILE)")
    parser.add_argument("--fresh", action="store_true", help="train the classifier anew and time it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)

    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        clf = ev.get_classifier("fashion_mnist", profile=profile, device="cpu",
                                cache_dir=tmp if args.fresh else None)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    train = load_dataset("fashion_mnist", split="train", scale="01")
    heldout = load_dataset("fashion_mnist", split="test", scale="01")
    n = len(heldout)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    half_a, half_b = heldout.tensors[0][order[: n // 2]], heldout.tensors[0][order[n // 2: 2 * (n // 2)]]

    scores = {
        "real_train": ev.sample_scores(clf, train.tensors[0][pick], heldout),
        "real_heldout_half": ev.sample_scores(clf, half_a, half_b),
        "uniform_noise": ev.sample_scores(clf, ev.noise_images(n, seed=0), heldout),
        "blurred_mean": ev.sample_scores(clf, ev.blurred_mean_images(train.tensors[0], n), heldout),
        "heldout_vs_itself": ev.sample_scores(clf, heldout.tensors[0], heldout),
    }
    fd_by_size = {size: ev.sample_scores(clf, train.tensors[0][pick[:size]], heldout)["fd"]
                  for size in (50, 100, 200, n)}
    result = {
        "profile": profile,
        "settings": ev.asdict(select(ev.SETTINGS, profile)),
        "data_root": str(data_root()),
        "n_train": len(train),
        "n_heldout": n,
        "classifier_trained": args.fresh,
        "classifier_seconds_wall": round(wall, 2),
        "classifier_seconds_cpu": round(cpu, 2),
        "load_average_1min": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "accuracy_heldout": ev.classifier_accuracy(clf, heldout),
        "accuracy_train": ev.classifier_accuracy(clf, train),
        "coverage_share": ev.COVERAGE_SHARE,
        "scores": scores,
        "fd_real_train_by_n": fd_by_size,
    }

    print(f"profile {profile}; classifier {'trained' if args.fresh else 'loaded'} in {wall:.1f} s "
          f"wall / {cpu:.1f} s CPU; accuracy held-out {result['accuracy_heldout']:.3f}, "
          f"train {result['accuracy_train']:.3f}")
    print(f"{'set':20s} {'n':>4s} {'FD':>9s} {'coverage':>9s} {'confidence':>11s}")
    for name, s in scores.items():
        print(f"{name:20s} {s['n']:4d} {s['fd']:9.2f} {s['coverage']:9.2f} {s['mean_confidence']:11.3f}")
    print("FD of real training images by N:", {k: round(v, 1) for k, v in fd_by_size.items()})

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
