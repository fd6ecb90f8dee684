"""dgm.store: a model trained in one chapter reaches the comparison chapter only when it is the
model that chapter would have trained (same profile, settings and code), whole, and never when
the store is off."""

import dataclasses

import pytest
import torch

from dgm import flows, store, vae


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(store.DIR_VAR, str(tmp_path / "models"))
    monkeypatch.setenv("DGM_PROFILE", "smoke")
    return tmp_path / "models"


def _vae(cfg, seed):
    torch.manual_seed(seed)
    return vae.ConvVAE.from_settings(cfg, torch.rand(8, 1, 28, 28))


def test_a_stored_model_comes_back_with_its_weights_and_its_story(models_dir, capsys):
    cfg = vae.SETTINGS["smoke"]
    trained, fresh = _vae(cfg, 0), _vae(cfg, 1)
    assert not all(torch.equal(a, b) for a, b in zip(trained.parameters(), fresh.parameters()))
    path = store.save("vae", trained, settings=cfg, seconds=12.5, budget="3 epochs", steps=90)
    assert path == models_dir / "smoke" / "vae.pt" and path.exists()
    got = store.load("vae", fresh, settings=cfg)
    assert got == store.Stored("vae", 12.5, "3 epochs", {"steps": 90})
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_other_settings_or_an_empty_store_mean_training_here(models_dir, capsys):
    cfg = vae.SETTINGS["smoke"]
    assert store.load("vae", _vae(cfg, 0), settings=cfg) is None
    assert "no model stored by the vae chapter" in capsys.readouterr().out
    store.save("vae", _vae(cfg, 0), settings=cfg, seconds=1.0, budget="1 epoch")
    other = dataclasses.replace(cfg, epochs=cfg.epochs + 1)
    fresh = _vae(cfg, 1)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert store.load("vae", fresh, settings=other) is None
    assert "other settings or code" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # untouched


def test_another_profile_does_not_see_the_model(models_dir, monkeypatch):
    cfg = vae.SETTINGS["smoke"]
    store.save("vae", _vae(cfg, 0), settings=cfg, seconds=1.0, budget="1 epoch")
    monkeypatch.setenv("DGM_PROFILE", "cpu")
    assert store.load("vae", _vae(cfg, 1), settings=cfg) is None


def test_with_the_store_off_nothing_is_written_or_read(tmp_path, monkeypatch):
    monkeypatch.delenv(store.DIR_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = vae.SETTINGS["smoke"]
    assert store.save("vae", _vae(cfg, 0), settings=cfg, seconds=1.0, budget="1 epoch") is None
    assert store.load("vae", _vae(cfg, 0), settings=cfg) is None
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_name_is_refused_with_the_known_ones(models_dir):
    with pytest.raises(ValueError, match="known: .*vae"):
        store.save("vea", torch.nn.Linear(1, 1), settings=None, seconds=0.0, budget="")


def test_a_loaded_flow_samples_as_the_trained_one_data_initialised_actnorm_included(models_dir):
    """The flow's ActNorm layers initialise themselves from the first batch unless their flag
    says otherwise: the flag travels with the weights, so the loaded flow is the same function."""
    cfg = flows.SETTINGS["cpu"]  # the Glow-style stack, with ActNorm
    assert cfg.architecture == "glow"
    torch.manual_seed(0)
    trained = flows.build_from_settings(cfg)
    with torch.no_grad():
        trained.log_prob(torch.rand(16, 1, 28, 28))  # the first batch sets ActNorm
    store.save("flow", trained, settings=cfg, seconds=1.0, budget="1 epoch")
    torch.manual_seed(1)
    fresh = flows.build_from_settings(cfg)
    assert store.load("flow", fresh, settings=cfg) is not None
    x, eps = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)  # eps: the dequantisation noise
    with torch.no_grad():
        assert torch.allclose(fresh.log_prob(x, eps), trained.log_prob(x, eps))
        a = trained.sample(3, generator=torch.Generator().manual_seed(2))
        b = fresh.sample(3, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a, b)


def test_a_damaged_file_means_training_here_not_a_crash(models_dir, capsys):
    cfg = vae.SETTINGS["smoke"]
    path = store.save("vae", _vae(cfg, 0), settings=cfg, seconds=1.0, budget="1 epoch")
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    assert store.load("vae", _vae(cfg, 1), settings=cfg) is None
    assert "could not read" in capsys.readouterr().out
