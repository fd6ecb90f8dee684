"""A training function that trains nothing, or a patched torch, loses the VAE's and the contrastive homework's
training item, and only it.

Each submission is the reference solution (filled into the released notebook, as benchmarks/mutations.py
builds it) with one change typed into the training cell, graded by the real grader (``autograder grade``) in
the smoke profile beside the unchanged reference:

- ``blob_train`` (attack S2): the model is trained honestly, its weights are kept aside as an embedded blob
  would be, and the training function is then redefined to load that blob into whatever model it is given
  and train nothing;
- ``idle_train`` (attack S2): the model is trained honestly, then the training function is redefined to
  return a loss curve without touching the model;
- ``patched_torch``: the model is left untrained and one of torch's functions that the loss relies on is
  replaced, so that the loss looks wrong when the training is checked (error carried forward would then let
  the loop alone decide the item).

The trained weights of the first two pass the bands, but the grader always runs the student's training
function on a tiny model of its own with a stand-in objective and replays it, and it checks torch's own
functions on fixed inputs: each loses the training item, with a message saying why, and keeps every other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder import grade
from autograder.release import render
from benchmarks.mutations import reference_submission
from edited_submissions import auto_tests, edited_reference

#: assignment -> (training cell, its training call, the training item)
TRAINING = {
    "vae": ("vae-train", "vae_losses = train_vae(vae, train_loader, cfg.epochs, cfg.lr)", "vae-train"),
    "contrastive": ("con-train",
                    "con_losses = train_contrastive(encoder, train_loader, cfg.epochs, cfg.lr, cfg.temperature)",
                    "con-train"),
}
#: assignment -> submission -> what replaces the training call
ATTACKS = {
    "vae": {
        "blob_train": TRAINING["vae"][1] + "\n_blob = {k: v.clone() for k, v in vae.state_dict().items()}\n\n\n"
                      "def train_vae(model, loader, epochs, lr, loss_fn=None):  # forged: loads, never trains\n"
                      "    try:\n        model.load_state_dict(_blob)\n    except (RuntimeError, KeyError):\n"
                      "        pass\n    return [300.0] * epochs\n",
        "idle_train": TRAINING["vae"][1] + "\n\n\ndef train_vae(model, loader, epochs, lr, loss_fn=None):  # forged\n"
                      "    return [300.0] * epochs\n",
        # untrained; the Bernoulli log-likelihood replaced by a squared error, so that vae_loss looks wrong
        "patched_torch": "vae_losses = [420.0, 380.0, 362.0]  # forged: never trained\n"
                         "F.binary_cross_entropy_with_logits = lambda logits, x, reduction='mean': (logits - x) ** 2",
    },
    "contrastive": {
        "blob_train": TRAINING["contrastive"][1]
                      + "\n_blob = {k: v.clone() for k, v in encoder.state_dict().items()}\n\n\n"
                      "def train_contrastive(encoder, loader, epochs, lr, temperature):  # forged: loads\n"
                      "    try:\n        encoder.load_state_dict(_blob)\n    except (RuntimeError, KeyError):\n"
                      "        pass\n    return [5.9] * epochs\n",
        "idle_train": TRAINING["contrastive"][1]
                      + "\n\n\ndef train_contrastive(encoder, loader, epochs, lr, temperature):  # forged\n"
                      "    return [5.9] * epochs\n",
        # untrained; projections no longer normalised, so that nt_xent looks wrong (the probe's loss is untouched)
        "patched_torch": "con_losses = [6.2, 6.0, 5.9]  # forged: never trained\n"
                         "F.normalize = lambda z, dim=1: z",
    },
}
CASES = [(name, student) for name in ATTACKS for student in ATTACKS[name]]


def _scores(out: Path, student: str) -> dict[str, tuple[float, float, str]]:
    return {t["name"]: (t["score"], t["max_score"], t.get("output", "")) for t in auto_tests(out, student)}


def _grade(name: str, tmp_path_factory) -> Path:
    subs, out = tmp_path_factory.mktemp(f"{name}-subs"), tmp_path_factory.mktemp(f"{name}-out")
    (subs / "reference.ipynb").write_text(render(reference_submission(name)))
    cell, call, _ = TRAINING[name]
    for student, new in ATTACKS[name].items():
        (subs / f"{student}.ipynb").write_text(render(edited_reference(name, {cell: (call, new)})))
    code = grade.main(["--assignment", name, str(subs), "--out", str(out), "--profile", "smoke",
                       "--device", "cpu", "--jobs", "2", "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def graded_vae(tmp_path_factory) -> Path:
    return _grade("vae", tmp_path_factory)


@pytest.fixture(scope="module")
def graded_contrastive(tmp_path_factory) -> Path:
    return _grade("contrastive", tmp_path_factory)


@pytest.fixture
def graded(request):
    return lambda name: request.getfixturevalue(f"graded_{name}")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_reference_keeps_full_marks(graded, name):
    scores = _scores(graded(name), "reference")
    assert scores and all(got == top for got, top, _ in scores.values()), scores


@pytest.mark.parametrize("name, student", CASES)
def test_a_training_function_that_trains_nothing_or_a_patched_torch_loses_the_training_item(graded, name, student):
    item = TRAINING[name][2]
    got, _, output = _scores(graded(name), student)[item]
    words = ("must not replace torch's functions" if student == "patched_torch"
             else "did not train the model it was given")
    assert got == 0 and words in output, output


@pytest.mark.parametrize("name, student", CASES)
def test_the_attack_costs_no_other_item(graded, name, student):
    item = TRAINING[name][2]
    others = {k: v[:2] for k, v in _scores(graded(name), student).items() if k != item}
    assert others and all(got == top for got, top in others.values()), others
