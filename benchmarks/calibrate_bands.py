"""Calibrate the training-loss bands of the homework's hidden checks from several seeds.

    python -m benchmarks.calibrate_bands --profile cpu --assignments ddpm flow --seeds 0 1 2

For each assignment it runs ``solutions/<name>.ipynb`` up to and including its training cell
(hidden checks left out) once per seed, with the ``seed`` field of the notebook's ``Settings``
replaced, and reads the per-epoch losses the training cell stores (``<model>_losses``). The
band a hidden check uses is ``[min, max]`` of the final losses widened by
``max(3 sd, 5 % of the mean)``; the check's comment records the seeds, the values and this rule.
Writes ``benchmarks/results/bands_<profile>.json`` with the values and the band.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from benchmarks.common import write

ROOT = Path(__file__).resolve().parent.parent
#: Training cell id and the list it fills, per assignment.
TRAIN = {"vae": ("vae-train", "vae_losses"), "ddpm": ("ddpm-train", "ddpm_losses"),
         "flow": ("flow-train", "flow_losses"), "contrastive": ("con-train", "con_losses")}


def band(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    margin = max(3 * sd, 0.05 * abs(mean))
    return round(min(values) - margin, 4), round(max(values) + margin, 4)


def final_loss(name: str, seed: int, profile: str, workdir: Path) -> tuple[float, float]:
    cell_id, var = TRAIN[name]
    nb = nbformat.read(str(ROOT / "solutions" / f"{name}.ipynb"), as_version=4)
    cells = []
    for cell in nb.cells:
        if "hidden" in cell.metadata.get("tags", []):
            continue
        if cell.get("id") == "settings":
            if "seed: int = 0" not in cell.source:
                raise SystemExit(f"{name}: the settings cell has no 'seed: int = 0' field")
            cell.source = cell.source.replace("seed: int = 0", f"seed: int = {seed}")
        cells.append(cell)
        if cell.get("id") == cell_id:
            break
    cells.append(nbformat.v4.new_code_cell(f"import json; print('RESULT', json.dumps({var}))"))
    nb.cells = cells
    start = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute(
        env=dict(os.environ, DGM_PROFILE=profile))
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    losses = json.loads(text.split("RESULT", 1)[1])
    return float(losses[-1]), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--assignments", nargs="+", default=list(TRAIN), choices=list(TRAIN))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once (on one GPU the small homework models share it well)")
    args = p.parse_args(argv)
    os.environ.setdefault("DGM_PROGRESS", "0")
    result = {"profile": args.profile, "rule": "[min, max] widened by max(3 sd, 5 % of the mean)",
              "assignments": {}}
    runs = [(name, seed) for name in args.assignments for seed in args.seeds]

    def one(run: tuple[str, int]) -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="dgm-bands-") as tmp:
            value, secs = final_loss(*run, args.profile, Path(tmp))
        print(f"{run[0]} {args.profile} seed {run[1]}: {value:.4f} ({secs:.0f} s)", flush=True)
        return value, round(secs, 1)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # one kernel per run
        done = dict(zip(runs, pool.map(one, runs)))
    for name in args.assignments:
        values = [done[(name, seed)][0] for seed in args.seeds]
        result["assignments"][name] = {"seeds": args.seeds, "values": values,
                                       "seconds": [done[(name, s)][1] for s in args.seeds],
                                       "band": band(values)}
    print("wrote", write(f"bands_{args.profile}", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
