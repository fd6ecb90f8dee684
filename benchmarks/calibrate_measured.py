"""Calibrate the bands of the flow and contrastive training checks that measure trained weights.

    python -m benchmarks.calibrate_measured --profile smoke --assignments flow contrastive --seeds 0 1 2 3 4
    python -m benchmarks.calibrate_measured --profile cpu --assignments transformer --seeds 0 1 2

The training items of these homework are judged on weights, not on the losses a kernel reports:
the hidden check sends the trained ``state_dict`` and the grader loads it into the instructor's
class (``dgm.homework``) and measures it itself (``measure_flow``: test bits per dimension;
``measure_encoder``: linear-probe accuracy and held-out NT-Xent; ``measure_transformer`` and
``transformer_sample_scores``: held-out bits per dimension at 14 x 14 and 16 levels, and FD_clf,
class coverage and near-copies of 64 samples the grader draws). For each seed this runs
``solutions/<name>.ipynb`` up to its training cell (hidden checks left out, the ``seed`` field of
``Settings`` replaced, as ``benchmarks.calibrate_bands`` does), saves the trained weights and the
untrained ones of the same seed, and measures both the way the verdict does. The band is
``[min, max]`` of the trained values widened by ``max(3 sd, 5 % of the mean)``; the untrained
values show that the band rejects weights that were never trained. Writes
``benchmarks/results/measured_<profile>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from benchmarks.calibrate_bands import band, solution_until
from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parent.parent
#: training cell id, the trained model's name and how the notebook builds an untrained one.
TRAIN = {"flow": ("flow-train", "flow", "Flow(make_masks(cfg.n_layers), cfg.hidden, cfg.alpha)"),
         "contrastive": ("con-train", "encoder", "Encoder(cfg.width, cfg.feature_dim, cfg.proj_dim)"),
         "transformer": ("ar-train", "transformer", "PixelTransformer(cfg.d_model, cfg.n_heads, cfg.n_layers)")}
MEASURES = {"flow": ("test_bpd",), "contrastive": ("probe_accuracy", "held_out_nt_xent"),
            "transformer": ("test_bpd", "fd", "coverage", "level_tv", "copies")}


def measure_transformer_all(state, profile: str) -> dict:
    """Both transformer verdicts' numbers: held-out bits per dimension, and the scores of the 64
    samples the grader draws (FD_clf, class coverage, grey-level histogram distance, share of near-copies)."""
    from dgm.homework import measure_transformer, transformer_sample_scores

    got = measure_transformer(state, profile, n_samples=64)
    return {"test_bpd": got["test_bpd"], **transformer_sample_scores(got["samples"])}


def train_weights(name: str, seed: int, profile: str, workdir: Path) -> float:
    """Run the solution up to its training cell; save trained.pt and untrained.pt in workdir."""
    cell_id, model, build = TRAIN[name]
    nb, _ = solution_until(name, cell_id, seed)
    cells = nb.cells
    cells.append(nbformat.v4.new_code_cell(
        f"torch.save({{k: v.cpu() for k, v in {model}.state_dict().items()}}, 'trained.pt')\n"
        f"seed_everything(cfg.seed)\ntorch.save({build}.state_dict(), 'untrained.pt')"))
    nb.cells = cells
    os.environ["DGM_PROFILE"] = profile
    start = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from dgm.homework import measure_encoder, measure_flow

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="smoke")
    p.add_argument("--assignments", nargs="+", default=list(TRAIN), choices=list(TRAIN))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--keep", type=Path, help="keep the weights under this folder")
    p.add_argument("--reuse", action="store_true", help="measure the weights kept by --keep")
    args = p.parse_args(argv)
    os.environ.setdefault("DGM_PROGRESS", "0")
    torch.set_num_threads(1)  # as in a verdict
    measure = {"flow": measure_flow, "contrastive": measure_encoder,
               "transformer": measure_transformer_all}
    result = {"profile": args.profile, "rule": "[min, max] widened by max(3 sd, 5 % of the mean)",
              "assignments": {}}
    for name in args.assignments:
        rows = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="dgm-measured-") as tmp:
                tmp = args.keep / f"{name}-{args.profile}-{seed}" if args.keep else Path(tmp)
                tmp.mkdir(parents=True, exist_ok=True)
                secs = 0.0 if args.reuse else train_weights(name, seed, args.profile, tmp)
                row = {"seed": seed, "train_s": round(secs, 1)}
                for kind in ("trained", "untrained"):
                    state = torch.load(Path(tmp) / f"{kind}.pt")
                    start = time.perf_counter()
                    got = measure[name](state, args.profile)
                    row[f"measure_s_{kind}"] = round(time.perf_counter() - start, 2)
                    for key in MEASURES[name]:
                        row[f"{key}_{kind}"] = round(float(got[key]), 4)
            rows.append(row)
            print(name, args.profile, row, flush=True)
        entry = {"seeds": args.seeds, "runs": rows}
        for key in MEASURES[name]:
            entry[f"band_{key}"] = band([r[f"{key}_trained"] for r in rows])
        result["assignments"][name] = entry
    previous = RESULTS / f"measured_{args.profile}.json"
    if previous.exists():  # keep the other assignment's calibration
        kept = json.loads(previous.read_text()).get("assignments", {})
        result["assignments"] = {**kept, **result["assignments"]}
    print("wrote", write(f"measured_{args.profile}", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
