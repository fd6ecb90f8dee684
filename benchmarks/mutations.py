"""Typical mistakes, graded by the real grader: each must lose exactly its own item.

    python -m benchmarks.mutations [--profile smoke] [--assignments vae ddpm ...]
        [--only MUTANT ...] [--jobs 2] [--keep DIR]

For each assignment it builds submissions from the generated student notebook
(``notebooks/<name>.ipynb``) with every graded cell filled in with the reference solution's
code: ``reference`` as it is, and one submission per entry of :data:`MUTANTS` with one line of
one graded cell changed the way students get it wrong. It grades them all with
``python -m autograder grade`` and checks that the reference earns every auto-graded point and
that each mutant loses points on its own item and on no other. Writes
``benchmarks/results/mutations_<profile>.json`` (a run of some assignments replaces only their rows)
and exits 1 when any expectation fails.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder import grade
from autograder.notebook_format import read_notebook
from autograder.release import ASSIGNMENTS, make_student, render
from benchmarks.common import dated, previous, stamped, write

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    assignment: str
    item: str          # the item that must lose points (and only it)
    cell: str          # graded cell id
    old: str           # exact text of the reference solution
    new: str           # what the student wrote instead
    mistake: str       # in words


MUTANTS: dict[str, Mutant] = {
    "vae-kl-sign": Mutant(
        "vae", "vae-loss", "vae-loss", "kl = 0.5 * (mu.pow(2)", "kl = -0.5 * (mu.pow(2)",
        "KL with the wrong sign"),
    "vae-sigma-for-logvar-reparam": Mutant(
        "vae", "vae-reparam", "vae-reparam", "z = mu + torch.exp(0.5 * logvar) * eps",
        "z = mu + logvar * eps", "log-variance used as the standard deviation"),
    "vae-sigma-for-logvar-kl": Mutant(
        "vae", "vae-loss", "vae-loss", "kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)",
        "kl = 0.5 * (mu.pow(2) + logvar.pow(2) - torch.log(logvar.pow(2) + 1e-8) - 1)",
        "KL written for sigma where the network gives log sigma^2"),
    "ddpm-alpha-for-alpha-bar": Mutant(
        "ddpm", "ddpm-q-sample", "ddpm-q-sample", "alpha_bar_t = sched.alpha_bar[t].view(-1, 1, 1, 1)",
        "alpha_bar_t = sched.alpha[t].view(-1, 1, 1, 1)", "alpha_t used where alpha_bar_t was meant"),
    "ddpm-posterior-var-off-by-one": Mutant(
        "ddpm", "ddpm-posterior", "ddpm-posterior",
        "beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta",
        "beta_tilde = (1 - sched.alpha_bar[t - 1].view(-1, 1, 1, 1)) / (1 - sched.alpha_bar["
        "(t + 1).clamp(max=sched.T - 1)].view(-1, 1, 1, 1)) * beta",
        "posterior variance one step off"),
    "vae-encoder-tanh": Mutant(
        "vae", "vae-encoder", "vae-encoder", "nn.Linear(28 * 28, hidden), nn.ReLU()",
        "nn.Linear(28 * 28, hidden), nn.Tanh()", "tanh where the exercise fixes a ReLU layer"),
    "vae-latents-no-sigmoid": Mutant(
        "vae", "vae-latents", "vae-latents", "images = torch.sigmoid(model.decoder(z.to(dev))).cpu()",
        "images = model.decoder(z.to(dev)).cpu().clamp(0, 1)", "logits clipped instead of the sigmoid"),
    "ddpm-posterior-mean-divides-by-zero": Mutant(
        "ddpm", "ddpm-posterior", "ddpm-posterior",
        "mu_tilde = (alpha_bar_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - alpha_bar_prev) * xt) / (1 - alpha_bar)",
        "beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta\n    mu_tilde = beta_tilde * "
        "(alpha_bar_prev.sqrt() / (1 - alpha_bar_prev) * x0 + alpha.sqrt() / beta * xt)",
        "posterior mean in precision form: 0 * inf at the first step"),
    "ddpm-plot-wrong-snapshot": Mutant(
        "ddpm", "ddpm-plot", "ddpm-plot", "ax.imshow(image_grid(snapshots[t].clamp(-1, 1), nrow=nrow)",
        "ax.imshow(image_grid(snapshots[0].clamp(-1, 1), nrow=nrow)", "every panel shows x_0"),
    "flow-logdet-no-sum": Mutant(
        "flow", "flow-coupling", "flow-coupling", "logdet = s.sum(dim=1)",
        "logdet = s", "log-determinant not summed over dimensions"),
    "flow-dequant-normal-noise": Mutant(
        "flow", "flow-dequant", "flow-dequant", "y_deq = (k + torch.rand_like(x)) / 256",
        "y_deq = (k + (0.5 + 0.3236 * torch.randn_like(x)).clamp(0, 0.9999)) / 256",
        "dequantisation noise from a clamped normal with the uniform's mean and variance"),
    "flow-sample-no-temperature": Mutant(
        "flow", "flow-sample", "flow-sample", "z = temperature * torch.randn(n, 28 * 28, device=dev)",
        "z = torch.randn(n, 28 * 28, device=dev)", "sampling temperature ignored"),
    "con-triplet-margin-sign": Mutant(
        "contrastive", "con-triplet", "con-triplet", "F.relu(d_pos - d_neg + margin)",
        "F.relu(d_pos - d_neg - margin)", "triplet margin with its sign flipped"),
    "con-triplet-unsquared": Mutant(
        "contrastive", "con-triplet", "con-triplet",
        "d_pos = (anchor - positive).pow(2).sum(dim=1)\n    d_neg = (anchor - negative).pow(2).sum(dim=1)",
        "d_pos = (anchor - positive).norm(dim=1)\n    d_neg = (anchor - negative).norm(dim=1)",
        "triplet loss on plain Euclidean distances instead of squared ones"),
    "con-ntxent-self-in-denominator": Mutant(
        "contrastive", "con-ntxent", "con-ntxent",
        'sim = sim.masked_fill(torch.eye(2 * N, dtype=torch.bool, device=z.device), float("-inf"))',
        "sim = sim", "k = i left in the NT-Xent denominator"),
    "con-augment-no-flip": Mutant(
        "contrastive", "con-augment", "con-augment",
        "out = torch.where(flip.view(B, 1, 1, 1), out.flip(-1), out)", "out = out",
        "horizontal flip forgotten"),
    "con-train-one-view": Mutant(
        "contrastive", "con-train", "con-train",
        "loss = nt_xent(encoder(augment(x)), encoder(augment(x)), temperature)",
        "v = augment(x)\n            loss = nt_xent(encoder(v), encoder(v), temperature)",
        "one augmentation draw used as both views"),
    "con-probe-test-statistics": Mutant(
        "contrastive", "con-probe", "con-probe",
        "a, b = (f_train - mean) / std, (f_test - mean) / std",
        "a, b = (f_train - mean) / std, (f_test - f_test.mean(0)) / (f_test.std(0) + 1e-6)",
        "test features standardised with their own statistics"),
    "con-probe-train-accuracy": Mutant(
        "contrastive", "con-probe", "con-probe",
        "accuracy = (probe(b).argmax(1) == y_test)", "accuracy = (probe(a).argmax(1) == y_train)",
        "probe scored on its own training set"),
    "fm-path-time-reversed": Mutant(
        "flow_matching", "fm-path", "fm-path", "xt = (1 - t) * x0 + t * x1", "xt = t * x0 + (1 - t) * x1",
        "path runs from data (t = 0) to noise, the sampler's time reversed"),
    "fm-velocity-sign": Mutant(
        "flow_matching", "fm-path", "fm-path", "v = x1 - x0", "v = x0 - x1", "velocity of the wrong sign"),
    "fm-loss-t-grid": Mutant(
        "flow_matching", "fm-loss", "fm-loss", "t = torch.rand(B, device=x1.device)",
        "t = torch.randint(0, 10, (B,), device=x1.device) / 10",
        "t drawn from a grid that never reaches t = 1"),
    "fm-loss-sum": Mutant(
        "flow_matching", "fm-loss", "fm-loss", "loss = F.mse_loss(model(xt, t), path_velocity(x0, x1))",
        "loss = ((model(xt, t) - path_velocity(x0, x1)) ** 2).sum()", "squared error summed, not averaged"),
    "fm-euler-velocity-at-end": Mutant(
        "flow_matching", "fm-euler", "fm-euler",
        "t = torch.full((x.shape[0],), k * h, dtype=x.dtype, device=x.device)\n        x = x + h * model(x, t)",
        "t = torch.full((x.shape[0],), (k + 1) * h, dtype=x.dtype, device=x.device)\n        x = x + h * model(x, t)",
        "Euler step with the velocity at the step's end time"),
    "fm-euler-time-reversed": Mutant(
        "flow_matching", "fm-euler", "fm-euler",
        "t = torch.full((x.shape[0],), k * h, dtype=x.dtype, device=x.device)\n        x = x + h * model(x, t)",
        "t = torch.full((x.shape[0],), 1 - k * h, dtype=x.dtype, device=x.device)\n        x = x - h * model(x, t)",
        "sampler integrates from t = 1 down to 0 (DDPM's direction)"),
    "fm-heun-corrector-at-start": Mutant(
        "flow_matching", "fm-heun", "fm-heun", "x = x + 0.5 * h * (v + model(x_pred, t + h))",
        "x = x + 0.5 * h * (v + model(x_pred, t))", "Heun's corrector evaluated at the step's start time"),
    "fm-plot-unsorted": Mutant(
        "flow_matching", "fm-plot", "fm-plot", "keys = sorted(samples)", "keys = list(samples)",
        "panels in the dict's order, not by number of steps"),
    "ar-mask-future": Mutant(
        "transformer", "ar-mask", "ar-mask", "dtype=torch.bool, device=device).tril()",
        "dtype=torch.bool, device=device).triu()", "causal mask transposed: every position sees the future"),
    "ar-mask-next": Mutant(
        "transformer", "ar-mask", "ar-mask", "dtype=torch.bool, device=device).tril()",
        "dtype=torch.bool, device=device).tril(diagonal=1)", "causal mask one off: a position sees the next token"),
    "ar-loss-no-shift": Mutant(
        "transformer", "ar-loss", "ar-loss", "logits = model(inputs)", "logits = model(tokens)",
        "input not shifted behind BOS: each position sees the pixel it predicts"),
    "ar-attention-softmax-axis": Mutant(
        "transformer", "ar-attention", "ar-attention", "weights = scores.softmax(dim=-1)",
        "weights = scores.softmax(dim=-2)", "softmax over the queries instead of the keys"),
    "ar-attention-scale-dk": Mutant(
        "transformer", "ar-attention", "ar-attention", "/ math.sqrt(q.shape[-1])", "/ q.shape[-1]",
        "scores divided by d_k instead of sqrt(d_k)"),
    "ar-mha-heads-strided": Mutant(
        "transformer", "ar-mha", "ar-mha", "out = x.view(b, length, n_heads, d_model // n_heads).transpose(1, 2)",
        "out = x.view(b, length, d_model // n_heads, n_heads).permute(0, 3, 1, 2)",
        "heads split along the wrong dimension (every n_heads-th feature)"),
    "ar-mha-view-no-transpose": Mutant(
        "transformer", "ar-mha", "ar-mha", "out = x.view(b, length, n_heads, d_model // n_heads).transpose(1, 2)",
        "out = x.reshape(b, n_heads, length, d_model // n_heads)", "heads made by a reshape that mixes positions"),
    "ar-pe-sin-cos-swapped": Mutant(
        "transformer", "ar-pe", "ar-pe", "pe[:, 0::2] = torch.sin(pos * omega)\n    pe[:, 1::2] = torch.cos(pos * omega)",
        "pe[:, 0::2] = torch.cos(pos * omega)\n    pe[:, 1::2] = torch.sin(pos * omega)",
        "sin and cos swapped"),
    "ar-pe-wrong-exponent": Mutant(
        "transformer", "ar-pe", "ar-pe", "base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)",
        "base ** (-torch.arange(0, d_model // 2, dtype=torch.float64) / d_model)",
        "exponent i / d_model instead of 2i / d_model"),
    "ar-block-post-norm": Mutant(
        "transformer", "ar-block", "ar-block",
        "x = x + self.attn(self.norm1(x), mask)\n        y = x + self.mlp(self.norm2(x))",
        "x = self.norm1(x + self.attn(x, mask))\n        y = self.norm2(x + self.mlp(x))",
        "post-norm block where the homework fixes pre-norm"),
    "ar-sample-no-temperature": Mutant(
        "transformer", "ar-sample", "ar-sample", "probs = F.softmax(logits / temperature, dim=-1)",
        "probs = F.softmax(logits, dim=-1)", "sampling temperature ignored"),
}


def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if not line.strip().startswith(("### BEGIN SOLUTION", "### END SOLUTION")))


def reference_submission(name: str) -> nbformat.NotebookNode:
    """The released student notebook with every graded cell filled in from the solution."""
    source = read_notebook(ROOT / "solutions" / f"{name}.ipynb")
    student = make_student(copy.deepcopy(source), name, f"solutions/{name}.ipynb")
    by_id = {c.get("id"): c for c in source.cells}
    for cell in student.cells:
        role = cell.get("metadata", {}).get("dgm", {}).get("role")
        if role in ("graded", "written") and cell.get("id") in by_id:
            cell.source = _without_markers(by_id[cell.id].source)
    return student


def mutant_submission(key: str) -> nbformat.NotebookNode:
    m = MUTANTS[key]
    nb = reference_submission(m.assignment)
    cell = next(c for c in nb.cells if c.get("id") == m.cell)
    if m.old not in cell.source:
        raise SystemExit(f"mutant {key}: {m.old!r} is not in cell {m.cell} of the solution")
    cell.source = cell.source.replace(m.old, m.new)
    return nb


def run(profile: str, names: list[str], only: list[str] | None, jobs: int,
        keep: Path | None) -> dict:
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="dgm-mutations-") as tmp:
        work = keep or Path(tmp)
        for name in names:
            subs = work / name / "submissions"
            subs.mkdir(parents=True, exist_ok=True)
            keys = [k for k, m in MUTANTS.items() if m.assignment == name
                    and (not only or k in only)]
            (subs / "reference.ipynb").write_text(render(reference_submission(name)))
            for key in keys:
                (subs / f"{key}.ipynb").write_text(render(mutant_submission(key)))
            out = work / name / "out"
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                grade.main(["--assignment", name, str(subs), "--out", str(out), "--profile",
                            profile, "--jobs", str(jobs), "--no-progress", "--regrade"])
            wall = time.perf_counter() - start
            for student in ["reference", *keys]:
                data = json.loads((out / student / "results.json").read_text())
                auto = [t for t in data["tests"] if "(written)" not in t["name"]
                        and t.get("max_score", 0) > 0]
                lost = sorted({t["name"].split(":")[0] for t in auto
                               if t["score"] < t["max_score"]})
                want = [] if student == "reference" else [MUTANTS[student].item]
                ok = lost == want
                row = {"assignment": name, "submission": student, "lost": lost,
                       "expected": want, "ok": ok, "score": data["score"],
                       "max_score": data["max_score"],
                       "messages": [t.get("output", "")[:400] for t in auto
                                    if t["score"] < t["max_score"]]}
                if student != "reference":
                    row["mistake"] = MUTANTS[student].mistake
                rows.append(row)
                print(f"{'ok ' if ok else 'BAD'} {name:12s} {student:32s} lost {lost}", flush=True)
                if not ok:
                    failures.append(f"{name}/{student}: lost {lost}, expected {want}")
            rows.append({"assignment": name, "batch_wall_s": round(wall, 1),
                         "submissions": 1 + len(keys), "jobs": jobs})
    return {"profile": profile, "rows": rows, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="smoke")
    p.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS))
    p.add_argument("--only", nargs="+", help="only these mutants (names from MUTANTS)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--keep", type=Path, help="keep submissions and results under this folder")
    p.add_argument("--no-record", action="store_true", help="do not write the results file")
    args = p.parse_args(argv)
    result = run(args.profile, args.assignments, args.only, args.jobs, args.keep)
    if not args.no_record and not args.only and set(args.assignments) == set(ASSIGNMENTS):
        print("wrote", write(f"mutations_{args.profile}", result))
    elif not args.no_record and not args.only and (old := previous(f"mutations_{args.profile}")):
        # a run of some assignments: its rows (stamped with their date) replace theirs, the others stay
        done = set(args.assignments)
        rows = [dated(r, old) for r in old["rows"] if r["assignment"] not in done]
        rows += [stamped(r) for r in result["rows"]]
        failures = [f for f in old["failures"] if f.split("/")[0] not in done] + result["failures"]
        print("merged into", write(f"mutations_{args.profile}", {
            "profile": args.profile, "rows": rows, "failures": failures,
            "partial_run": list(args.assignments)}))
    for line in result["failures"]:
        print("FAILED:", line, file=sys.stderr)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
