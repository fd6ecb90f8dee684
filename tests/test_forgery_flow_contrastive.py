"""Forged training and summary-fooling answers in the flow and contrastive homework score nothing.

Each submission is the reference solution (filled into the released notebook, as
benchmarks/mutations.py builds it) with one change an attacker or a careless student makes, graded
by the real grader (``autograder grade``) in the smoke profile beside the unchanged reference:

- ``flow_forged`` / ``con_forged``: the training function is correct, but the training cell writes a
  plausible loss curve instead of calling it, so the model keeps its untrained weights. The grader
  measures the weights itself (dgm.homework), so the training item scores 0.
- ``flow_gauss_dequant``: dequantisation noise from a clamped normal with the uniform's mean and
  variance (sd 0.3236 before clamping gives variance 1/12 after); the check tests uniformity itself, so the dequantisation item scores 0.
- ``con_same_views``: one augmentation draw used as both views; the check looks at what the encoder
  was given, so the training item scores 0.

Every other item keeps its points.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder import grade
from autograder.release import render
from benchmarks.mutations import reference_submission

#: (assignment, graded cell, text of the reference, what the submission writes instead, item that must lose)
CHANGES = {
    "flow_forged": ("flow", "flow-train", "flow_losses = train_flow(flow, train_loader, cfg.epochs, cfg.lr)",
                    "flow_losses = [7.9, 7.6]  # forged: the flow is never trained", "flow-train"),
    "flow_gauss_dequant": ("flow", "flow-dequant", "y = (k + torch.rand_like(x)) / 256",
                           "y = (k + (0.5 + 0.3236 * torch.randn_like(x)).clamp(0, 0.9999)) / 256",
                           "flow-dequant"),
    "con_forged": ("contrastive", "con-train",
                   "con_losses = train_contrastive(encoder, train_loader, cfg.epochs, cfg.lr, cfg.temperature)",
                   "con_losses = [6.2, 6.0, 5.9]  # forged: the encoder is never trained", "con-train"),
    "con_same_views": ("contrastive", "con-train",
                       "loss = nt_xent(encoder(augment(x)), encoder(augment(x)), temperature)",
                       "v = augment(x)\n            loss = nt_xent(encoder(v), encoder(v), temperature)",
                       "con-train"),
}


def _submission(key: str):
    name, cell_id, old, new, _ = CHANGES[key]
    nb = reference_submission(name)
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    assert old in cell.source, f"{key}: the reference no longer contains {old!r}"
    cell.source = cell.source.replace(old, new)
    return nb


def _scores(out: Path, student: str) -> dict[str, tuple[float, float]]:
    data = json.loads((out / student / "results.json").read_text())
    return {t["name"]: (t["score"], t["max_score"]) for t in data["tests"]
            if "(written)" not in t["name"] and t.get("max_score", 0) > 0}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, Path]:
    outs = {}
    for name in ("flow", "contrastive"):
        subs = tmp_path_factory.mktemp(f"{name}-subs")
        (subs / "reference.ipynb").write_text(render(reference_submission(name)))
        for key, change in CHANGES.items():
            if change[0] == name:
                (subs / f"{key}.ipynb").write_text(render(_submission(key)))
        out = tmp_path_factory.mktemp(f"{name}-out")
        code = grade.main(["--assignment", name, str(subs), "--out", str(out), "--profile", "smoke",
                           "--device", "cpu", "--jobs", "2", "--no-progress"])
        assert code == 0
        outs[name] = out
    return outs


@pytest.mark.parametrize("name", ["flow", "contrastive"])
def test_reference_keeps_full_marks_when_the_grader_measures_the_weights(graded, name):
    scores = _scores(graded[name], "reference")
    assert scores and all(got == top for got, top in scores.values()), scores


@pytest.mark.parametrize("key", list(CHANGES))
def test_forged_or_summary_fooling_answer_loses_exactly_its_item(graded, key):
    name, _, _, _, item = CHANGES[key]
    scores = _scores(graded[name], key)
    assert scores[item][0] == 0, (key, scores)
    others = {k: v for k, v in scores.items() if k != item}
    assert all(got == top for got, top in others.values()), (key, scores)


def test_forged_training_is_told_what_the_grader_measured(graded):
    data = json.loads((graded["flow"] / "flow_forged" / "results.json").read_text())
    message = next(t["output"] for t in data["tests"] if t["name"] == "flow-train")
    assert "measured" in message and "held-out" in message, message
