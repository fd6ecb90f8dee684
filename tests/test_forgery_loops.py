"""A training function that trains nothing, or a patched torch, loses the DDPM and flow training items.

Attack S2 and its torch-patching variant, in the DDPM and flow homework (the transformer and
flow-matching ones are in tests/test_forgery_transformer.py and tests/test_forgery_flow_matching.py).
Each submission is the reference solution (filled into the released notebook, as
benchmarks/mutations.py builds it) with one change typed into the training cell, graded by the real
grader (``autograder grade``) in the smoke profile beside the unchanged reference:

- ``blob_train``: the model is trained honestly, its weights are kept aside as an embedded blob would be,
  and the training function is then redefined to load that blob into whatever model it is given and
  train nothing. The trained weights pass the band, but the grader always runs the student's training
  function on a tiny model of its own, with a stand-in objective, and measures what it did.
- ``idle_train``: the same, with a training function that returns a loss curve without touching the model.
- ``patched_torch``: the model is left untrained and a torch function the homework's loss relies on is
  replaced (DDPM: ``F.mse_loss`` sums; flow: ``torch.rand_like`` returns 2), so that the loss or the
  dequantisation looks wrong when the training is checked and the loop alone would decide the item. The
  kernel sends torch's own functions on fixed inputs, and the grader sees them changed.

Each loses the training item, with a message saying why, and keeps every other item.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder import grade
from autograder.release import render
from benchmarks.mutations import reference_submission
from edited_submissions import auto_tests, edited_reference

#: assignment -> (training cell and item, the reference's training line, a loss curve, the training function's
#: signature, the trained module's name, the torch patch)
SETUPS = {
    "ddpm": ("ddpm-train", "ddpm_losses = train_ddpm(eps_model, sched_dev, train_loader, cfg.epochs, cfg.lr)",
             "ddpm_losses = [0.95, 0.85]", "train_ddpm(eps_model, sched, loader, epochs, lr)", "eps_model",
             "F.mse_loss = lambda a, b: ((a - b) ** 2).sum()"),
    "flow": ("flow-train", "flow_losses = train_flow(flow, train_loader, cfg.epochs, cfg.lr)",
             "flow_losses = [7.9, 7.6]", "train_flow(flow, loader, epochs, lr)", "flow",
             "torch.rand_like = lambda x, **kwargs: torch.full_like(x, 2.0)"),
}
ATTACKS = ("blob_train", "idle_train", "patched_torch")
#: what the training item's message must say
WORDS = {"blob_train": "did not train the", "idle_train": "did not train the",
         "patched_torch": "must not replace torch's functions"}


def attack(name: str, key: str) -> str:
    """What the training cell of assignment ``name`` holds instead of its training line, under attack ``key``."""
    _, line, curve, signature, module, patch = SETUPS[name]
    redefined = f"\n\n\ndef {signature}:  # forged: trains nothing\n"
    if key == "blob_train":
        return (f"{line}\n_blob = {{k: v.clone() for k, v in {module}.state_dict().items()}}{redefined}"
                f"    try:\n        {signature.split('(')[1].split(',')[0]}.load_state_dict(_blob)\n"
                "    except (RuntimeError, KeyError):\n        pass\n    return [0.9] * epochs\n")
    if key == "idle_train":
        return f"{line}{redefined}    return [0.9] * epochs\n"
    return f"{curve}  # forged: never trained\n{patch}"


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, Path]:
    outs = {}
    for name, (cell, line, *_) in SETUPS.items():
        subs, out = tmp_path_factory.mktemp(f"{name}-subs"), tmp_path_factory.mktemp(f"{name}-out")
        (subs / "reference.ipynb").write_text(render(reference_submission(name)))
        for key in ATTACKS:
            (subs / f"{key}.ipynb").write_text(render(edited_reference(name, {cell: (line, attack(name, key))})))
        code = grade.main(["--assignment", name, str(subs), "--out", str(out), "--profile", "smoke",
                           "--device", "cpu", "--jobs", "2", "--no-progress"])
        assert code == 0
        outs[name] = out
    return outs


def _scores(out: Path, student: str) -> dict[str, tuple[float, float, str]]:
    return {t["name"]: (t["score"], t["max_score"], t.get("output", "")) for t in auto_tests(out, student)}


@pytest.mark.parametrize("name", list(SETUPS))
def test_reference_keeps_full_marks(graded, name):
    scores = _scores(graded[name], "reference")
    assert scores and all(got == top for got, top, _ in scores.values()), scores


@pytest.mark.parametrize("name", list(SETUPS))
@pytest.mark.parametrize("key", ATTACKS)
def test_a_training_function_that_trains_nothing_or_a_patched_torch_loses_the_training_item(graded, name, key):
    got, _, output = _scores(graded[name], key)[SETUPS[name][0]]
    assert got == 0 and WORDS[key] in output, output


@pytest.mark.parametrize("name", list(SETUPS))
@pytest.mark.parametrize("key", ATTACKS)
def test_the_attack_costs_no_other_item(graded, name, key):
    others = {k: v[:2] for k, v in _scores(graded[name], key).items() if k != SETUPS[name][0]}
    assert others and all(got == top for got, top in others.values()), others


def test_the_attacks_replace_what_they_claim():
    """Guards the edits: each attack keeps or drops the honest training line as described."""
    for name, (_, line, *_rest) in SETUPS.items():
        assert attack(name, "blob_train").startswith(line) and "load_state_dict(_blob)" in attack(name, "blob_train")
        assert attack(name, "idle_train").startswith(line) and "return [0.9] * epochs" in attack(name, "idle_train")
        assert line not in attack(name, "patched_torch")
