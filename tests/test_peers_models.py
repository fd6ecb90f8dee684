"""Checks of the pieces benchmarks/peers_models.py writes itself (the peers' libraries are not
needed): the learning-rate schedule, the CPU budget and the classic MLP VAE's loss."""

import time

import pytest
import torch
import torch.nn.functional as F

from benchmarks.peers_models import MLPVAE, budgeted, one_cycle
from dgm.vae import negative_elbo, vae_loss


def test_one_cycle_matches_torch_one_cycle_lr():
    """one_cycle(step / total) is torch's OneCycleLR (cosine, pct_start 0.05) at every step."""
    total, peak = 200, 2e-3
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total, pct_start=0.05)
    for step in range(total - 1):
        expected = opt.param_groups[0]["lr"]
        # torch counts phases in steps: warm-up over steps 0..9, annealing over steps 9..199
        warm_end = 0.05 * total - 1
        frac = (0.05 * step / warm_end if step < warm_end
                else 0.05 + 0.95 * (step - warm_end) / (total - 1 - warm_end))
        assert one_cycle(frac, peak) == pytest.approx(expected, rel=1e-6)
        opt.step()
        sched.step()


def test_budgeted_stops_once_the_cpu_budget_is_spent():
    """The loop runs until the process has used the budget, and no step starts after that."""
    def burn(frac):
        start = time.process_time()
        while time.process_time() - start < 0.01:
            pass
        return frac

    row = budgeted(burn, 0.1)
    assert row["train_cpu_s"] >= 0.1
    assert row["train_cpu_s"] < 0.1 + 0.05  # at most the last step (and timer overhead) beyond
    assert 5 <= row["steps"] <= 11


def test_mlp_vae_loss_is_the_pytorch_example_loss():
    """vae_loss on the MLP VAE equals the PyTorch example's BCE(sigmoid) + KL, per image."""
    torch.manual_seed(0)
    model = MLPVAE()
    x = torch.rand(5, 1, 28, 28)
    logits, mu, logvar = model(x)
    bce = F.binary_cross_entropy(torch.sigmoid(logits).view(-1, 784), x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert vae_loss(x, logits, mu, logvar).total.item() == pytest.approx((bce + kld).item() / 5, rel=1e-4)


def test_mlp_vae_works_with_the_course_negative_elbo():
    """dgm.vae.negative_elbo scores the MLP VAE: recon + kl = total, all positive."""
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    terms = negative_elbo(MLPVAE(), data, seed=0)
    assert terms.recon > 0 and terms.kl > 0
    assert terms.total == pytest.approx(terms.recon + terms.kl)
