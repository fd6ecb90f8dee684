"""Run profiles, device choice and seeding (dgm/config.py)."""

import random

import numpy as np
import pytest
import torch

from dgm.config import PROFILES, get_device, get_profile, seed_everything, select


def test_profile_is_read_from_the_environment(monkeypatch):
    for name in PROFILES:
        monkeypatch.setenv("DGM_PROFILE", name)
        assert get_profile() == name


def test_profile_name_is_case_and_space_insensitive(monkeypatch):
    monkeypatch.setenv("DGM_PROFILE", "  SMOKE ")
    assert get_profile() == "smoke"


def test_unknown_profile_raises_and_names_the_allowed_ones(monkeypatch):
    monkeypatch.setenv("DGM_PROFILE", "fast")
    with pytest.raises(ValueError, match="smoke, cpu, full"):
        get_profile()


def test_default_profile_follows_cuda_availability(monkeypatch):
    monkeypatch.delenv("DGM_PROFILE", raising=False)
    assert get_profile() == ("full" if torch.cuda.is_available() else "cpu")


def test_select_picks_the_row_of_the_profile():
    table = {"smoke": 1, "cpu": 2, "full": 3}
    assert [select(table, p) for p in PROFILES] == [1, 2, 3]


def test_select_rejects_a_table_missing_a_profile():
    with pytest.raises(ValueError, match="full"):
        select({"smoke": 1, "cpu": 2}, "smoke")


def test_device_override_and_unknown_device(monkeypatch):
    monkeypatch.setenv("DGM_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="auto, cpu, cuda, mps"):
        get_device("tpu")


def test_auto_device_prefers_cuda_then_cpu(monkeypatch):
    monkeypatch.delenv("DGM_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else None
    dev = get_device()
    if expected:
        assert dev.type == "cuda"
    else:
        assert dev.type in {"mps", "cpu"}


def test_seed_everything_makes_torch_numpy_and_random_repeat():
    def draw():
        gen = seed_everything(123)
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
                torch.rand(3, generator=gen).tolist())

    assert draw() == draw()


def test_different_seeds_give_different_draws():
    seed_everything(1)
    a = torch.rand(5)
    seed_everything(2)
    assert not torch.equal(a, torch.rand(5))
