"""Forged training in the transformer homework scores nothing, and the grader's model is the notebook's.

Each submission is the reference solution (filled into the released notebook, as
benchmarks/mutations.py builds it) with one change to the training cell, graded by the real grader
(``autograder grade``) in the smoke profile beside the unchanged reference:

- ``forged_losses``: the training function is correct, but the cell writes a plausible loss curve
  instead of calling it, so the model keeps its initial weights;
- ``random_weights``: the model is trained, then its weights are overwritten with random values;
- ``copied_initial``: the initial weights are copied aside, the model is trained, and the copy is put
  back (what the kernel sends is the untrained model);
- ``patched_loss``: after honest training the kernel replaces ``F.cross_entropy`` by a function that
  returns a small constant, so every loss the kernel computes looks good.
- ``blob_train`` (attack S2): the model is trained honestly, its weights are kept aside as an embedded
  blob would be, and ``train_transformer`` is then redefined to load that blob into whatever model it is
  given and train nothing; ``idle_train``: redefined to return a loss curve without touching the model.
  The trained weights pass the band, but the grader always runs the student's training function on a tiny
  model of its own, so the training item is lost with a message saying so.

The grader measures the weights itself (dgm.homework: held-out bits per dimension, samples it draws),
so each loses both checks of the training item and keeps every other item. The last tests check the
instructor's model those verdicts load the weights into against the notebook and closed forms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from autograder import grade
from autograder.release import render
from benchmarks.mutations import reference_submission
from edited_submissions import auto_tests, edited_reference

TRAIN_CALL = "ar_losses = train_transformer(transformer, train_tokens, cfg.epochs, cfg.batch_size, cfg.lr)"
#: submission -> what replaces the training call of the reference
CHANGES = {
    "forged_losses": "ar_losses = [2.4]  # forged: the transformer is never trained",
    "random_weights": TRAIN_CALL + "\nwith torch.no_grad():\n    for _p in transformer.parameters():\n"
                                   "        _p.normal_(0, 0.5)",
    "copied_initial": "_initial = {k: v.clone() for k, v in transformer.state_dict().items()}\n" + TRAIN_CALL
                      + "\ntransformer.load_state_dict(_initial)",
    "patched_loss": TRAIN_CALL + "\nF.cross_entropy = lambda *args, **kwargs: torch.tensor(1.0, requires_grad=True)",
    "blob_train": TRAIN_CALL + "\n_blob = {k: v.clone() for k, v in transformer.state_dict().items()}\n\n\n"
                  "def train_transformer(model, tokens, epochs, batch_size, lr):  # forged: loads, never trains\n"
                  "    try:\n        model.load_state_dict(_blob)\n    except (RuntimeError, KeyError):\n        pass\n"
                  "    return [2.4] * epochs\n",
    "idle_train": TRAIN_CALL + "\n\n\ndef train_transformer(model, tokens, epochs, batch_size, lr):  # forged\n"
                  "    return [2.4] * epochs\n",
}
#: the submissions whose `transformer` is trained honestly but whose training function trains nothing
S2 = ("blob_train", "idle_train")


def _submission(key: str):
    return edited_reference("transformer", {"ar-train": (TRAIN_CALL, CHANGES[key])})


def _scores(out: Path, student: str) -> dict[str, tuple[float, float]]:
    return {t["name"]: (t["score"], t["max_score"]) for t in auto_tests(out, student)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    subs = tmp_path_factory.mktemp("transformer-subs")
    (subs / "reference.ipynb").write_text(render(reference_submission("transformer")))
    for key in CHANGES:
        (subs / f"{key}.ipynb").write_text(render(_submission(key)))
    out = tmp_path_factory.mktemp("transformer-out")
    code = grade.main(["--assignment", "transformer", str(subs), "--out", str(out), "--profile", "smoke",
                       "--device", "cpu", "--jobs", "2", "--no-progress"])
    assert code == 0
    return out


def test_reference_keeps_full_marks_when_the_grader_measures_the_weights(graded):
    scores = _scores(graded, "reference")
    assert scores and all(got == top for got, top in scores.values()), scores


@pytest.mark.parametrize("key", list(CHANGES))
def test_forged_training_loses_the_training_item_and_nothing_else(graded, key):
    scores = _scores(graded, key)
    assert scores["ar-train"][0] == 0, (key, scores)
    others = {k: v for k, v in scores.items() if k != "ar-train"}
    assert all(got == top for got, top in others.values()), (key, scores)


@pytest.mark.parametrize("key", S2)
def test_a_training_function_that_trains_nothing_is_told_so(graded, key):
    data = json.loads((graded / key / "results.json").read_text())
    message = next(t["output"] for t in data["tests"] if t["name"] == "ar-train")
    assert "your train_transformer did not train the model it was given" in message, message


def test_forged_training_is_told_what_the_grader_measured(graded):
    data = json.loads((graded / "forged_losses" / "results.json").read_text())
    message = next(t["output"] for t in data["tests"] if t["name"] == "ar-train")
    assert "measured" in message and "held-out" in message, message


# --- the instructor's model the verdicts load the weights into (dgm/homework.py) -----------------

def test_tokens_are_block_means_cut_into_sixteen_levels_and_back():
    from dgm.homework import image_tokens, token_images

    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, :2, :2] = torch.tensor([[1.0, 1.0], [0.5, 0.5]])  # block mean 0.75 -> level floor(12) = 12
    x[0, 0, :2, 2:4] = 1.0  # mean 1 -> the top level, 15
    tokens = image_tokens(x)
    assert tokens.shape == (1, 196) and tokens[0, :3].tolist() == [12, 15, 0]
    images = token_images(tokens)
    assert images.shape == (1, 1, 28, 28)
    assert torch.allclose(images[0, 0, :2, :2], torch.full((2, 2), 12.5 / 16))
    assert torch.equal(image_tokens(images), tokens)


def test_cached_next_logits_equal_the_last_position_of_the_full_forward():
    from dgm.homework import PixelTransformer, next_logits

    torch.manual_seed(0)
    model = PixelTransformer(16, 2, 2).eval()
    seq = torch.cat([torch.full((3, 1), 16), torch.randint(0, 16, (3, 11))], dim=1)
    with torch.no_grad():
        full = model(seq)
        cache = [{} for _ in model.blocks]
        step = torch.stack([next_logits(model, seq[:, i], cache) for i in range(seq.shape[1])], dim=1)
    assert torch.allclose(step, full, atol=1e-5)


def test_pixel_transformer_is_causal():
    from dgm.homework import PixelTransformer

    torch.manual_seed(1)
    model = PixelTransformer(16, 2, 1).eval()
    seq = torch.randint(0, 16, (2, 9))
    changed = seq.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 16
    with torch.no_grad():
        assert torch.allclose(model(seq)[:, :5], model(changed)[:, :5], atol=1e-6)
        assert not torch.allclose(model(seq)[:, 5:], model(changed)[:, 5:], atol=1e-4)


def test_bits_per_dimension_of_a_model_with_zero_logits_is_four():
    from dgm.homework import PixelTransformer, transformer_test_bpd

    model = PixelTransformer(16, 2, 1)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    assert abs(transformer_test_bpd(model, torch.randint(0, 16, (7, 196))) - math.log2(16)) < 1e-5


def test_samples_of_a_model_follow_its_level_probabilities():
    """A model whose logits ignore the input draws each level with softmax(head.bias): the share of
    level 0 among 64 x 196 draws is within 0.03 of that probability."""
    from dgm.homework import PixelTransformer, image_tokens, level_histogram, transformer_samples

    model = PixelTransformer(16, 2, 1)
    torch.nn.init.zeros_(model.head.weight)
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(2, -2, 16))
    shares = level_histogram(image_tokens(transformer_samples(model, 64)))
    expected = torch.linspace(2, -2, 16).softmax(0).double()
    assert (shares - expected).abs().max().item() < 0.03


@pytest.mark.parametrize("change, words", [
    (lambda s: {k: v for k, v in s.items() if k != "head.bias"}, "missing"),
    (lambda s: {**s, "embed.weight": s["embed.weight"][:, :3]}, "shape"),
    (lambda s: {**s, "head.weight": s["head.weight"] * float("nan")}, "NaN"),
])
def test_weights_that_do_not_fit_are_refused_with_a_message(change, words):
    from dgm.homework import TRANSFORMER_SIZES, PixelTransformer, WeightsError, load_transformer

    state = PixelTransformer(*TRANSFORMER_SIZES["smoke"]).state_dict()
    with pytest.raises(WeightsError, match=words):
        load_transformer(change(state), "smoke")


def test_the_grader_s_model_sizes_are_the_homework_s():
    from dataclasses import dataclass

    from autograder.notebook_format import read_notebook
    from dgm import homework

    nb = read_notebook(Path(homework.__file__).parent.parent / "solutions" / "transformer.ipynb")
    cell = next(c for c in nb.cells if c.get("id") == "settings")
    namespace = {"dataclass": dataclass}
    exec(cell.source.split("cfg = select")[0], namespace)
    for profile, s in namespace["SETTINGS"].items():
        assert (s.d_model, s.n_heads, s.n_layers) == homework.TRANSFORMER_SIZES[profile], profile
