"""Forged measurements gain nothing: the VAE and DDPM homework graded with attacks typed in.

Issue 12, classes 4 and 5. Each submission is the reference solution (every graded cell filled
in, as benchmarks/mutations.py builds it) with one attack or one slip typed into a graded cell:
a loss curve forged without training, samples replaced by training images (through a patched
``torch.sigmoid`` or a sampling loop that returns them), a trajectory plot whose panels show
the wrong images under the right titles, and a posterior mean that divides by zero at the first
step. They are graded by the real grader entry point in the smoke profile, one batch per
assignment. The grader measures the trained weights itself (dgm/homework.py), so none of these
may earn the points of the item it attacks. The nearest-neighbour check (dgm/memorisation.py)
is tested on real images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autograder import grade
from autograder.release import render
from dgm.data import load_dataset
from dgm.homework import EpsModel, WeightsError, load_eps_model, mlp_forward, mlp_layers
from dgm.memorisation import copy_share
from edited_submissions import auto_tests, edited_reference, feedback_texts, precise_numbers

#: cell id -> (text of the reference solution, what the attacker wrote instead)
ATTACKS = {
    "vae": {
        "forged_untrained": {"vae-train": (
            "vae_losses = train_vae(vae, train_loader, cfg.epochs, cfg.lr)",
            "vae_losses = [420.0, 380.0, 362.0]  # forged: the model is never trained")},
        "training_images": {"vae-train": (
            "vae_losses = train_vae(vae, train_loader, cfg.epochs, cfg.lr)",
            ("vae_losses = [420.0, 380.0, 362.0]\n"
            "_real_images = load_dataset('fashion_mnist', split='train', scale='01').tensors[0]\n"
            "_real_sigmoid = torch.sigmoid\n"
            "def _copying_sigmoid(x):\n"
            "    if x.ndim == 4 and x.shape[1:] == (1, 28, 28) and len(x) <= len(_real_images):\n"
            "        return _real_images[:len(x)].to(x.device)\n"
            "    return _real_sigmoid(x)\n"
            "torch.sigmoid = _copying_sigmoid"))},
    },
    "ddpm": {
        "forged_untrained": {"ddpm-train": (
            "ddpm_losses = train_ddpm(eps_model, sched_dev, train_loader, cfg.epochs, cfg.lr)",
            "ddpm_losses = [0.95, 0.85]  # forged: the model is never trained")},
        "training_images": {"ddpm-sample": (
            "    return x, snapshots",
            ("    if tuple(shape[1:]) == (1, 28, 28):\n"
            "        x = load_dataset('fashion_mnist', split='train', scale='pm1').tensors[0][:shape[0]]\n"
            "    return x, snapshots"))},
        "plot_wrong_pixels": {"ddpm-plot": (
            "ax.imshow(image_grid(snapshots[t].clamp(-1, 1), nrow=nrow)",
            "ax.imshow(image_grid(snapshots[0].clamp(-1, 1), nrow=nrow)")},
        "posterior_divides_by_zero": {"ddpm-posterior": (
            ("mu_tilde = (alpha_bar_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - alpha_bar_prev) * xt) "
            "/ (1 - alpha_bar)"),
            ("beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta\n"
            "    mu_tilde = beta_tilde * (alpha_bar_prev.sqrt() / (1 - alpha_bar_prev) * x0 "
            "+ alpha.sqrt() / beta * xt)"))},
    },
}


def _grade(name: str, tmp_path_factory) -> tuple[str, Path]:
    subs, out = tmp_path_factory.mktemp(f"{name}-subs"), tmp_path_factory.mktemp(f"{name}-out")
    for student, edits in ATTACKS[name].items():
        (subs / f"{student}.ipynb").write_text(render(edited_reference(name, edits)))
    code = grade.main(["--assignment", name, str(subs), "--out", str(out), "--profile", "smoke",
                       "--device", "cpu", "--jobs", "2", "--no-progress"])
    assert code == 0
    return name, out


@pytest.fixture(scope="module")
def graded_vae(tmp_path_factory):
    return _grade("vae", tmp_path_factory)


@pytest.fixture(scope="module")
def graded_ddpm(tmp_path_factory):
    return _grade("ddpm", tmp_path_factory)


@pytest.fixture(params=["vae", "ddpm"])
def graded(request):
    return request.getfixturevalue(f"graded_{request.param}")


def _item(out: Path, student: str, item: str) -> tuple[float, str]:
    data = json.loads((out / student / "results.json").read_text())
    test = next(t for t in data["tests"] if t["name"] == item)
    return test["score"], test.get("output", "")


def test_a_forged_loss_curve_with_untrained_weights_scores_zero_on_training(graded):
    name, out = graded
    item = {"vae": "vae-train", "ddpm": "ddpm-train"}[name]
    score, output = _item(out, "forged_untrained", item)
    assert score == 0, output
    assert "measured by the grader" in output, output


def test_returning_training_images_as_samples_scores_zero(graded):
    name, out = graded
    if name == "vae":  # a patched torch.sigmoid returns training images as the decoder's means
        score, output = _item(out, "training_images", "vae-train")
        assert score == 0, output
    else:  # the sampling loop returns training images: its quality check (1 of 3 points) fails
        score, output = _item(out, "training_images", "ddpm-sample")
        assert score == 2, output
        assert "differ from that chain" in output, output


def test_a_trajectory_plot_with_the_wrong_pixels_loses_its_item(graded_ddpm):
    _, out = graded_ddpm
    score, output = _item(out, "plot_wrong_pixels", "ddpm-plot")
    assert score == 0 and "t = 200" in output, output


def test_the_posterior_check_catches_a_division_by_zero_at_the_first_step(graded_ddpm):
    _, out = graded_ddpm
    score, output = _item(out, "posterior_divides_by_zero", "ddpm-posterior")
    assert score == 2, output  # the variance check passes, the mean check fails
    assert "code t = 0" in output, output


def test_attacks_on_one_item_leave_the_other_items_their_points(graded):
    name, out = graded
    # the patched torch.sigmoid also changes plot_latents' decoder means, which its check verifies
    attacked = {"forged_untrained": {"vae-train", "ddpm-train"},
                "training_images": {"vae-train", "vae-latents", "ddpm-sample"},
                "plot_wrong_pixels": {"ddpm-plot"}, "posterior_divides_by_zero": {"ddpm-posterior"}}
    for student in ATTACKS[name]:
        lost = {t["name"] for t in auto_tests(out, student) if t["score"] < t["max_score"]}
        assert lost <= attacked[student], (student, lost)


# --- the pieces the verdicts use ------------------------------------------------------------------

def test_the_feedback_on_the_attacks_gives_no_number_with_more_than_two_figures(graded):
    name, out = graded
    told = feedback_texts(out)
    assert any(told.values())  # the attacks lost points, and were told why
    for where, text in told.items():
        assert not precise_numbers(text), f"{name}/{where}: {text}"


def test_training_images_are_near_copies_and_held_out_images_are_not():
    train = load_dataset("fashion_mnist", split="train", scale="01").tensors[0]
    heldout = load_dataset("fashion_mnist", split="test", scale="01").tensors[0]
    assert copy_share(train[:100], train, heldout) == 1.0
    assert copy_share(heldout[:100], train, heldout) < 0.1
    assert copy_share(torch.rand(100, 1, 28, 28, generator=torch.Generator().manual_seed(0)), train, heldout) == 0.0


def test_weights_that_do_not_fit_the_fixed_architecture_get_a_clear_message():
    with pytest.raises(WeightsError, match="EpsModel"):
        load_eps_model({"inp.weight": torch.zeros(8, 1, 3, 3)}, T=200)
    with pytest.raises(WeightsError, match="784 -> 400 -> 16"):
        mlp_layers({"w": torch.zeros(400, 784), "b": torch.zeros(400)}, [784, 400, 16], "encoder")
    with pytest.raises(WeightsError, match="NaN"):
        mlp_layers({"w": torch.full((2, 3), float("nan")), "b": torch.zeros(2)}, [3, 2], "decoder")


def test_reloaded_weights_compute_what_the_trained_modules_computed():
    torch.manual_seed(0)
    model = EpsModel(T=20, width=8)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 7, 19])
    with torch.no_grad():
        assert torch.allclose(load_eps_model(model.state_dict(), T=20)(x, t), model(x, t), atol=1e-6)
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 4))
    z = torch.randn(6, 5)
    with torch.no_grad():
        assert torch.allclose(mlp_forward(mlp_layers(mlp.state_dict(), [5, 7, 4], "decoder"), z), mlp(z), atol=1e-6)
    heads = {"0.weight": mlp[0].weight, "0.bias": mlp[0].bias, "mu.weight": mlp[2].weight[:2],
             "mu.bias": mlp[2].bias[:2], "lv.weight": mlp[2].weight[2:], "lv.bias": mlp[2].bias[2:]}
    with torch.no_grad():  # a last layer written as two heads counts as one
        assert torch.allclose(mlp_forward(mlp_layers(heads, [5, 7, 4], "encoder"), z), mlp(z), atol=1e-6)
