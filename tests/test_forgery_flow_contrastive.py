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

Every other item keeps its points. The last tests check the instructor's models those verdicts load
the weights into (dgm/homework.py): inverse, log-determinant and bits per dimension against autograd
and a closed form, refused weights, the probe, and the sizes against the notebooks' Settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder import grade
from autograder.release import render
from benchmarks.mutations import reference_submission
from edited_submissions import auto_tests, edited_reference

#: (assignment, graded cell, text of the reference, what the submission writes instead, item that must lose)
CHANGES = {
    "flow_forged": ("flow", "flow-train", "flow_losses = train_flow(flow, train_loader, cfg.epochs, cfg.lr)",
                    "flow_losses = [7.9, 7.6]  # forged: the flow is never trained", "flow-train"),
    "flow_gauss_dequant": ("flow", "flow-dequant", "y_deq = (k + torch.rand_like(x)) / 256",
                           "y_deq = (k + (0.5 + 0.3236 * torch.randn_like(x)).clamp(0, 0.9999)) / 256",
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
    return edited_reference(name, {cell_id: (old, new)})


def _scores(out: Path, student: str) -> dict[str, tuple[float, float]]:
    return {t["name"]: (t["score"], t["max_score"]) for t in auto_tests(out, student)}


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


# --- the instructor's models the verdicts load the weights into (dgm/homework.py) -------------

def test_flow_net_inverts_and_its_logdet_is_the_autograd_jacobian():
    import torch

    from dgm.homework import FlowNet

    torch.manual_seed(0)
    flow = FlowNet(n_layers=2, hidden=8)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, 0.05)
    y = 0.1 + 0.8 * torch.rand(2, 784, dtype=torch.float64)
    flow = flow.double()
    z, logdet = flow(y)
    assert torch.allclose(flow.inverse(z), y, atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0))[0].squeeze(0), y[0],
                                             vectorize=True)
    assert abs(logdet[0].item() - torch.linalg.slogdet(jac)[1].item()) < 1e-6


def test_bits_per_dim_of_the_identity_couplings_at_one_half_is_the_closed_form():
    import math

    import torch

    from dgm.homework import FlowNet, bpd_of

    flow = FlowNet(n_layers=2, hidden=8)
    for p in flow.parameters():
        torch.nn.init.zeros_(p)  # couplings are the identity; the logit maps 1/2 to 0
    # log p(y) = D (-log(2 pi) / 2 + log(1 - 2 alpha) + 2 log 2) at y = 1/2, alpha = 0.05
    expected = (0.5 * math.log(2 * math.pi) - math.log(0.9) - 2 * math.log(2) + math.log(256)) / math.log(2)
    got = bpd_of(flow, torch.full((3, 784), 0.5))
    assert torch.allclose(got, torch.full((3,), expected), atol=1e-4)


@pytest.mark.parametrize("change, words", [
    (lambda s: {k: v for k, v in s.items() if k != "layers.0.net.0.bias"}, "missing"),
    (lambda s: {**s, "layers.0.net.0.bias": s["layers.0.net.0.bias"][:3]}, "shape"),
    (lambda s: {**s, "layers.1.net.4.weight": s["layers.1.net.4.weight"] * float("nan")}, "NaN"),
    (lambda s: [1, 2], "dict of tensors"),
])
def test_weights_that_do_not_fit_are_refused_with_a_message(change, words):
    from dgm.homework import FlowNet, WeightsError, load_weights

    state = FlowNet(2, 8).state_dict()
    with pytest.raises(WeightsError, match=words):
        load_weights(FlowNet(2, 8), change(state), "the flow", skip=("mask",))


def test_the_grader_s_probe_separates_clusters_and_not_random_labels():
    import torch

    from dgm.homework import fit_probe

    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    f = torch.randn(4, 8, generator=g)[y] * 4 + torch.randn(400, 8, generator=g)
    assert fit_probe(f[:300], y[:300], f[300:], y[300:]) >= 0.95
    noise = torch.randn(600, 32, generator=g)
    labels = torch.randint(0, 10, (600,), generator=g)
    assert fit_probe(noise[:400], labels[:400], noise[400:], labels[400:]) <= 0.2


@pytest.mark.parametrize("name", ["flow", "contrastive"])
def test_the_grader_s_model_sizes_are_the_homework_s(name):
    from dataclasses import dataclass

    from autograder.notebook_format import read_notebook
    from dgm import homework

    cell = next(c for c in read_notebook(Path(homework.__file__).parent.parent / "solutions" / f"{name}.ipynb").cells
                if c.get("id") == "settings")
    namespace = {"dataclass": dataclass}
    exec(cell.source.split("cfg = select")[0], namespace)
    for profile, s in namespace["SETTINGS"].items():
        if name == "flow":
            assert (s.n_layers, s.hidden, s.alpha) == (*homework.FLOW_SIZES[profile], homework.ALPHA)
        else:
            assert (s.width, s.n_labels, s.feature_dim, s.proj_dim, s.batch_size, s.temperature) == (
                *homework.ENCODER_SIZES[profile], homework.FEATURE_DIM, homework.PROJ_DIM, 256, 0.5)
