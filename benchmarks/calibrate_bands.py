"""Calibrate the training-loss bands of the homework's hidden checks from several seeds.

    python -m benchmarks.calibrate_bands --profile cpu --assignments ddpm flow --seeds 0 1 2

For each assignment it runs ``solutions/<name>.ipynb`` up to and including its training cell
(hidden checks left out) once per seed, with the ``seed`` field of the notebook's ``Settings``
replaced, and reads the per-epoch losses the training cell stores (``<model>_losses``). The
band a hidden check uses is ``[min, max]`` of the final losses widened by
``max(3 sd, 5 % of the mean)``; the check's comment records the seeds, the values and this rule.
Writes ``benchmarks/results/bands_<profile>.json`` with the values and the band.

    python -m benchmarks.calibrate_bands --checks --profile smoke --assignments vae ddpm --seeds 0 1 2 3 4
    python -m benchmarks.calibrate_bands --checks --untrained --profile smoke --assignments vae ddpm

``--checks`` calibrates the checks that measure the trained *weights* in the grader: after the
training cell it runs each hidden check of :data:`WEIGHT_CHECKS` top to bottom (as outside the
grader) and reads ``measured``, the dict of numbers its verdict computes before judging them, and
for the error-carried-forward path the tiny model's loss (``TINY``). ``--untrained`` sets every
``epochs`` of the settings to 0 (the model keeps its initial weights). Writes
``benchmarks/results/weight_bands_<profile>[_untrained].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parent.parent
#: Training cell id and the list it fills, per assignment.
TRAIN = {"vae": ("vae-train", "vae_losses"), "ddpm": ("ddpm-train", "ddpm_losses"),
         "flow": ("flow-train", "flow_losses"), "contrastive": ("con-train", "con_losses"),
         "flow_matching": ("fm-train", "fm_losses")}


def band(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    margin = max(3 * sd, 0.05 * abs(mean))
    return round(min(values) - margin, 4), round(max(values) + margin, 4)


#: Hidden checks that measure the trained weights, and the code that gives the tiny model's loss.
WEIGHT_CHECKS = {"vae": ("vae-train-hidden", "vae-train-hidden-quality"), "ddpm": ("ddpm-train-hidden",),
                 "flow_matching": ("fm-train-hidden", "fm-train-hidden-quality")}
#: (vae and flow_matching judge the loop on a stand-in objective the grader replays: no tiny loss to calibrate)
TINY = {"ddpm": "(float(_standin_objective(TinyEps(), None, tiny_images)), "
                "float(_standin_objective(_tiny_with(TinyEps, obs['tiny']), None, tiny_images)))"}

#: defined in the measuring cell: a tiny model of ``tiny_class`` holding the weights ``state``
_TINY_WITH = ("def _tiny_with(tiny_class, state):\n    model = tiny_class()\n"
              "    model.load_state_dict(state)\n    return model\n")


def _check_cell(source: str, tiny: str | None) -> str:
    tiny_line = f"_measured['tiny_before'], _measured['tiny_after'] = {tiny}\n" if tiny else ""
    return (f"{_TINY_WITH}_measured = {{}}\ntry:\n    exec({source!r}, globals())\nexcept AssertionError as _e:\n"
            f"    print('assertion:', str(_e)[:300])\n_measured.update(globals().get('measured', {{}}))\n"
            + tiny_line + "import json; print('RESULT', json.dumps(_measured))")


def solution_until(name: str, cell_id: str, seed: int, untrained: bool = False):
    """``solutions/<name>.ipynb`` up to and including cell ``cell_id``, hidden checks left out, with
    the ``seed`` field of its ``Settings`` replaced (and every ``epochs=N`` set to 0 when
    ``untrained``); also returns all its cells by id."""
    nb = nbformat.read(str(ROOT / "solutions" / f"{name}.ipynb"), as_version=4)
    by_id = {c.get("id"): c for c in nb.cells}
    cells = []
    for cell in nb.cells:
        if "hidden" in cell.metadata.get("tags", []):
            continue
        if cell.get("id") == "settings":
            if "seed: int = 0" not in cell.source:
                raise SystemExit(f"{name}: the settings cell has no 'seed: int = 0' field")
            cell.source = cell.source.replace("seed: int = 0", f"seed: int = {seed}")
            if untrained:
                cell.source = re.sub(r"epochs=\d+", "epochs=0", cell.source)
        cells.append(cell)
        if cell.get("id") == cell_id:
            break
    nb.cells = cells
    return nb, by_id


def measure_checks(name: str, seed: int, profile: str, workdir: Path, untrained: bool) -> dict:
    """Run the solution to its training cell, then each weight check; return what they measured."""
    cell_id, _ = TRAIN[name]
    nb, by_id = solution_until(name, cell_id, seed, untrained)
    cells = nb.cells
    for check in WEIGHT_CHECKS[name]:
        cells.append(nbformat.v4.new_code_cell(_check_cell(by_id[check].source, TINY.get(name))))
    nb.cells = cells
    os.environ["DGM_PROFILE"] = profile
    NotebookClient(nb, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    out = {}
    for cell, check in zip(nb.cells[-len(WEIGHT_CHECKS[name]):], WEIGHT_CHECKS[name]):
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
        out[check] = json.loads(text.split("RESULT", 1)[1])
    return out


def final_loss(name: str, seed: int, profile: str, workdir: Path) -> tuple[float, float]:
    cell_id, var = TRAIN[name]
    nb, _ = solution_until(name, cell_id, seed)
    cells = nb.cells
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
    p.add_argument("--checks", action="store_true", help="calibrate the checks that measure weights")
    p.add_argument("--untrained", action="store_true", help="with --checks: epochs = 0")
    args = p.parse_args(argv)
    os.environ.setdefault("DGM_PROGRESS", "0")
    if args.checks:
        return calibrate_checks(args)
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


def calibrate_checks(args) -> int:
    result = {"profile": args.profile, "untrained": args.untrained,
              "rule": "[min, max] widened by max(3 sd, 5 % of the mean)", "assignments": {}}
    with tempfile.TemporaryDirectory(prefix="dgm-bands-") as tmp:
        for name in args.assignments:
            runs = {}
            for seed in args.seeds:
                runs[seed] = measure_checks(name, seed, args.profile, Path(tmp), args.untrained)
                print(f"{name} {args.profile} seed {seed}: {json.dumps(runs[seed])}", flush=True)
            summary = {}
            for check in WEIGHT_CHECKS[name]:
                for key in runs[args.seeds[0]][check]:
                    values = [runs[s][check][key] for s in args.seeds]
                    summary[f"{check}:{key}"] = {"values": values, "band": band(values)}
            result["assignments"][name] = {"seeds": args.seeds, "measured": summary}
    suffix = "_untrained" if args.untrained else ""
    previous = RESULTS / f"weight_bands_{args.profile}{suffix}.json"
    if previous.exists():  # keep the other assignments' calibration
        kept = json.loads(previous.read_text()).get("assignments", {})
        result["assignments"] = {**kept, **result["assignments"]}
    print("wrote", write(f"weight_bands_{args.profile}{suffix}", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
