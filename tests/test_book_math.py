"""Mathematical statements that were once wrong in the book or the homework stay corrected.

The checks under the derivations run (and assert) in every book build (tests/test_book.py); this
file needs no build. It searches the chapter sources, with whitespace collapsed so that line
breaks do not matter, for the exact wrong phrases of issue #13, and checks that the contrastive
homework grades the same (squared) triplet loss as the book and `dgm.contrastive`.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from autograder.notebook_format import read_notebook
from dgm.build import ROOT
from dgm.contrastive import triplet_loss

#: (chapter, wrong phrase, what is true instead)
WRONG = [
    ("diffusion", r"with $\sigma_t^2 = \tilde\beta_t$ equals $\frac{1}{2}\big(\mathrm{SNR}(t - 1) - \mathrm{SNR}(t)\big)$",
     "that is the weight on |x0 - x0_hat|^2; on |eps - eps_theta|^2 it is (SNR(t-1)/SNR(t) - 1)/2"),
    ("diffusion", r"\bar\alpha_{t-1}\alpha_t / \bar\alpha_t = 1",
     "the ratio of the two weights is (1 - alpha_bar_t) / alpha_bar_t"),
    ("diffusion", "returns 0.", "the SymPy check is a cell that runs and asserts"),
    ("diffusion", r"(about $10^{-9}$ and below)", "cosine alpha_bar_T is about 2e-9 only at T = 1000"),
    ("vae", "one to three orders of magnitude", "the variance ratio runs from about 4 to about 450"),
    ("probability", r"= \log \int p(x)\,dx = 0$", "the integral over the support of q is <= 1"),
    ("gans", "have the same fixed points, but", "same equilibrium, not the same objective"),
    ("flows", "no density can exceed $256^d$ per bin",
     "the density can; the mass of a bin is at most one"),
    ("contrastive", "which is where training starts", "training starts near log(2N - 1)"),
    ("contrastive", r"The loss curve above starts at $\log(2N-1)$", "it starts near it"),
    ("contrastive", "Contrastive pre-training helped most where labels were fewest.",
     "only against the random encoder, not against supervised training from scratch"),
    ("comparison", "makes its bound tight enough to train", "DDPM trains on the simple loss, not its bound"),
    ("comparison", "it is trained on a likelihood bound and covers", "a reweighted bound: the simple loss"),
]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("chapter, phrase, truth", WRONG, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_corrected_statement_does_not_come_back(chapter, phrase, truth):
    text = _flat((ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8"))
    assert _flat(phrase) not in text, f"book/{chapter}.md says {phrase!r} again: {truth}"


def test_snr_exercise_states_both_weights():
    text = _flat((ROOT / "book" / "diffusion.md").read_text(encoding="utf-8"))
    exercise = text.split(":label: ddpm-ex-snr")[1].split(":::")[0]
    assert r"\mathrm{SNR}(t - 1) / \mathrm{SNR}(t) - 1" in exercise
    assert r"\lVert x_0 - \hat x_0 \rVert^2" in exercise


def test_every_derivation_named_in_issue_13_has_a_check_cell_under_it():
    """The label of each equation is followed, before the next heading, by a code cell that asserts."""
    cases = [("diffusion", "ddpm-elbo"), ("diffusion", "ddpm-marginal-three"), ("flows", "flows-loglik"),
             ("probability", "kl-diagonal"), ("evaluation", "eval-trace-sqrt"),
             ("score_guidance", "sg-eps-score-model"), ("contrastive", "contrastive-infonce"),
             ("contrastive", "contrastive-clip"), ("gans", "gans-jsd")]
    for chapter, label in cases:
        text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
        after = text.split(f"$$ ({label})", 1)[1]
        section = re.split(r"^#{2,3} ", after, maxsplit=1, flags=re.M)[0]
        cells = re.findall(r"```\{code-cell\}.*?\n(.*?)```", section, re.S)
        assert any("assert " in cell for cell in cells), f"{chapter}: no asserting cell under {label}"


def _homework_triplet():
    nb = read_notebook(ROOT / "solutions" / "contrastive.ipynb")
    cell = next(c for c in nb.cells if c.get("id") == "con-triplet")
    namespace = {"torch": torch, "F": F}
    exec(cell.source, namespace)  # the reference solution, markers are comments
    return namespace["triplet_loss"], nb


def test_homework_triplet_loss_is_the_books_squared_triplet_loss():
    homework_triplet, _ = _homework_triplet()
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(64, 5, generator=g, dtype=torch.float64) for _ in range(3))
    for margin in (0.2, 2.0, 9.0):
        assert torch.allclose(homework_triplet(a, p, n, margin), triplet_loss(a, p, n, margin), atol=1e-12)
    # and it is not the unsquared loss
    unsquared = F.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + 2.0).mean()
    assert not torch.allclose(homework_triplet(a, p, n, 2.0), unsquared, atol=1e-3)


def test_homework_text_and_released_notebook_say_squared_distances():
    _, nb = _homework_triplet()
    heading = next(c for c in nb.cells if c.get("id") == "triplet-heading").source
    assert r"\|a - p\|_2^2 - \|a - n\|_2^2" in heading and "not squared" not in heading
    student = (ROOT / "notebooks" / "contrastive.ipynb").read_text(encoding="utf-8")
    assert "Euclidean distances, not squared" not in student and "are the distances squared?" in student
