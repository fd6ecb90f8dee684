"""Forged training in the flow-matching homework scores nothing; the grader's velocity model is right.

Each submission is the reference solution (filled into the released notebook, as
benchmarks/mutations.py builds it) with one change typed into the training cell, graded by the real
grader (``autograder grade``) in the smoke profile beside the unchanged reference:

- ``forged_curve``: ``train_fm`` is correct, but the cell writes a plausible loss curve instead of
  calling it: ``velocity_model`` keeps its initial weights.
- ``random_weights``: the cell fills ``velocity_model`` with random weights of the right shapes and
  reports a falling loss curve.
- ``forged_numbers``: the untrained model, and the kernel's copies of the grader's measuring
  functions (``dgm.homework.fm_heldout_loss``, ``dgm.evaluate.evaluate_samples``) patched to return
  perfect numbers.

Three more: two (attack S2) train ``velocity_model`` honestly and then redefine ``train_fm``: ``blob_train`` loads
the trained weights, kept aside as an embedded blob would be, into whatever model it is given;
``idle_train`` returns a loss curve without touching the model. Their weights pass the bands, but the grader
always runs the student's ``train_fm`` on a tiny model of its own, so they lose the training item too.
``patched_mse`` leaves the model untrained and patches ``F.mse_loss`` so that ``cfm_loss`` looks wrong when
the training is checked (the loop alone would decide the item): the grader sees torch's functions changed.

The grader loads the weights into its own ``VelocityMLP`` and measures the held-out loss and its
own samples, so each loses the training item and keeps every other. The last tests check the
instructor's model those verdicts use (dgm/homework.py) against closed forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from autograder import grade
from autograder.notebook_format import read_notebook
from autograder.release import render
from benchmarks.mutations import reference_submission
from edited_submissions import auto_tests, edited_reference
from dgm import homework
from dgm.homework import (
    FM_FREQUENCIES,
    VelocityMLP,
    WeightsError,
    fm_heldout_loss,
    load_velocity_model,
    time_features,
)

ROOT = Path(__file__).resolve().parent.parent
TRAIN_LINE = "fm_losses = train_fm(velocity_model, train_loader, cfg.epochs, cfg.lr)"
#: submission -> what the attacker writes instead of the training call
ATTACKS = {
    "forged_curve": "fm_losses = [1.45, 1.31, 1.25, 1.22, 1.2]  # forged: never trained",
    "random_weights": (
        "with torch.no_grad():\n"
        "    for _p in velocity_model.parameters():\n"
        "        _p.normal_(0, 0.05)\n"
        "fm_losses = [1.45, 1.31, 1.25, 1.22, 1.2]"),
    "forged_numbers": (
        "import dgm.evaluate, dgm.homework\n"
        "dgm.homework.fm_heldout_loss = lambda *a, **k: 0.5\n"
        "dgm.evaluate.evaluate_samples = lambda *a, **k: {'fd': 1.0, 'coverage': 1.0, 'mean_confidence': 1.0}\n"
        "fm_losses = [1.45, 1.31, 1.25, 1.22, 1.2]"),
}
#: attack S2: velocity_model trained honestly, then a training function that trains nothing
S2_ATTACKS = {
    "blob_train": TRAIN_LINE + "\n_blob = {k: v.clone() for k, v in velocity_model.state_dict().items()}\n\n\n"
                  "def train_fm(model, loader, epochs, lr):  # forged: loads the blob, never trains\n"
                  "    try:\n        model.load_state_dict(_blob)\n    except (RuntimeError, KeyError):\n        pass\n"
                  "    return [1.2] * epochs\n",
    "idle_train": TRAIN_LINE + "\n\n\ndef train_fm(model, loader, epochs, lr):  # forged: returns a curve\n"
                  "    return [1.2] * epochs\n",
    # untrained, with torch's mse_loss patched so that cfm_loss looks wrong when the training is checked (the
    # loop alone would then decide the item): the grader sees torch's functions changed
    "patched_mse": "fm_losses = [1.45, 1.31, 1.25, 1.22, 1.2]\nF.mse_loss = lambda a, b: ((a - b) ** 2).sum()",
}


def _submission(student: str):
    return edited_reference("flow_matching", {"fm-train": (TRAIN_LINE, {**ATTACKS, **S2_ATTACKS}[student])})


def _scores(out: Path, student: str) -> dict[str, tuple[float, float, str]]:
    return {t["name"]: (t["score"], t["max_score"], t.get("output", "")) for t in auto_tests(out, student)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    subs, out = tmp_path_factory.mktemp("fm-subs"), tmp_path_factory.mktemp("fm-out")
    (subs / "reference.ipynb").write_text(render(reference_submission("flow_matching")))
    for student in (*ATTACKS, *S2_ATTACKS):
        (subs / f"{student}.ipynb").write_text(render(_submission(student)))
    code = grade.main(["--assignment", "flow_matching", str(subs), "--out", str(out), "--profile",
                       "smoke", "--device", "cpu", "--jobs", "2", "--no-progress"])
    assert code == 0
    return out


def test_reference_keeps_full_marks_when_the_grader_measures_the_weights(graded):
    scores = _scores(graded, "reference")
    assert scores and all(got == top for got, top, _ in scores.values()), scores


@pytest.mark.parametrize("student", list(ATTACKS))
def test_untrained_or_random_weights_with_forged_numbers_score_zero_on_training(graded, student):
    scores = _scores(graded, student)
    got, _, output = scores["fm-train"]
    assert got == 0, output
    assert "measured by the grader" in output or "drawn by the grader" in output, output


@pytest.mark.parametrize("student", list(S2_ATTACKS))
def test_a_training_function_that_trains_nothing_loses_the_training_item(graded, student):
    got, _, output = _scores(graded, student)["fm-train"]
    words = "must not replace torch's functions" if student == "patched_mse" else "did not train the model it was given"
    assert got == 0 and words in output, output


@pytest.mark.parametrize("student", [*ATTACKS, *S2_ATTACKS])
def test_a_forged_training_cell_costs_no_other_item(graded, student):
    scores = _scores(graded, student)
    others = {k: v[:2] for k, v in scores.items() if k != "fm-train"}
    assert others and all(got == top for got, top in others.values()), others


# --- the instructor's velocity model (dgm/homework.py) ---------------------------------------------

def test_time_features_are_t_and_its_sines_and_cosines():
    t = torch.tensor([0.0, 0.25, 1.0])
    f = time_features(t)
    assert f.shape == (3, 2 * FM_FREQUENCIES + 1)
    k = 3  # the third frequency: sin(3 pi t), cos(3 pi t)
    assert torch.allclose(f[:, 0], t)
    assert torch.allclose(f[:, k], torch.sin(k * math.pi * t), atol=1e-6)
    assert torch.allclose(f[:, FM_FREQUENCIES + k], torch.cos(k * math.pi * t), atol=1e-6)


def test_reloaded_weights_compute_what_the_trained_module_computed():
    torch.manual_seed(0)
    model = VelocityMLP(homework.FM_HIDDEN["smoke"])
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0.0, 0.4, 1.0])
    with torch.no_grad():
        assert torch.allclose(load_velocity_model(model.state_dict(), "smoke")(x, t), model(x, t), atol=1e-6)


@pytest.mark.parametrize("change, words", [
    (lambda s: {k: v for k, v in s.items() if k != "net.0.bias"}, "missing"),
    (lambda s: {**s, "net.2.weight": s["net.2.weight"][:3]}, "shape"),
    (lambda s: {**s, "net.4.weight": s["net.4.weight"] * float("nan")}, "NaN"),
    (lambda s: "weights", "dict of tensors"),
])
def test_weights_that_do_not_fit_are_refused_with_a_message(change, words):
    state = VelocityMLP(homework.FM_HIDDEN["smoke"]).state_dict()
    with pytest.raises(WeightsError, match=words):
        load_velocity_model(change(state), "smoke")


def test_held_out_loss_of_the_zero_velocity_is_one_plus_the_mean_square_of_the_data():
    """E||0 - (x1 - x0)||^2 / D = 1 + mean(x1^2) for x0 ~ N(0, I): Monte Carlo, 2,000 x 784 draws."""
    x1 = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def zero(x, t):
        return torch.zeros_like(x)

    expected = 1 + (x1**2).mean().item()
    assert abs(fm_heldout_loss(zero, x1) - expected) < 0.01


def test_the_grader_s_width_is_the_homework_s():
    cell = next(c for c in read_notebook(ROOT / "solutions" / "flow_matching.ipynb").cells
                if c.get("id") == "settings")
    namespace = {"dataclass": dataclass}
    exec(cell.source.split("cfg = select")[0], namespace)
    assert {p: s.hidden for p, s in namespace["SETTINGS"].items()} == homework.FM_HIDDEN
