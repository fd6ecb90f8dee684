"""Hand a model trained in one chapter to a later chapter of the same book build.

The comparison chapter sets five families side by side. Training all five again costs more than
any other chapter, although the chapters that teach them have just trained the same models on
the same images. So, as :mod:`dgm.results` does for figures, a chapter that trains one of these
models calls ``save("vae", model, settings=cfg, seconds=..., budget=count(35, "epoch"))``; the
comparison calls ``load("vae", fresh_model, settings=cfg)`` and trains the model itself only when
nothing fits.

The store is on only when ``$DGM_MODEL_DIR`` is set (``make book`` sets it to
``_build/models``); a reader's run of a single notebook writes nothing and the comparison then
trains every model itself. A stored model is used only when it was trained in the same profile,
on the same kind of device, with the same settings row and the same code of its ``dgm`` module;
otherwise ``load`` says why it was passed over.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dgm.config import get_profile

# model name -> the chapter that trains and saves it; the comparison loads all of them.
SAVED_BY = {"vae": "vae", "dcgan": "gans", "flow": "flows", "pixel_transformer": "autoregressive",
            "ddpm": "diffusion"}
READERS = {"comparison": tuple(SAVED_BY)}  # chapter -> the stored models it loads
DIR_VAR = "DGM_MODEL_DIR"


@dataclass(frozen=True)
class Stored:
    """What came with a loaded model: who trained it, how long, and on what budget."""

    chapter: str
    seconds: float
    budget: str  # e.g. "35 epochs", for the reader
    extra: dict


def count(n: int, unit: str) -> str:
    """A training budget in words: ``count(1, "epoch")`` is "1 epoch", ``count(4000, "step")``
    "4,000 steps"."""
    return f"{n:,} {unit}{'' if n == 1 else 's'}"


def chapters_needed(chapter: str) -> set[str]:
    """The chapters whose stored models ``chapter`` loads (empty for most)."""
    return {SAVED_BY[name] for name in READERS.get(chapter, ())}


def folder() -> Path | None:
    """The store for the current profile, or None when ``$DGM_MODEL_DIR`` is unset."""
    root = os.environ.get(DIR_VAR, "").strip()
    return Path(root) / get_profile() if root else None


def _key(name: str, model: torch.nn.Module, settings: object, device: str) -> str:
    """What must match for a stored model to stand in for training one now: the profile, the
    device, the settings row and the code of the modules that define the model and its settings."""
    modules = {inspect.getmodule(type(model)), inspect.getmodule(type(settings))} - {None}
    sources = sorted(hashlib.sha256(inspect.getsource(m).encode()).hexdigest() for m in modules)
    parts = [name, get_profile(), device, repr(settings), type(model).__qualname__, *sources]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _check_name(name: str) -> None:
    if name not in SAVED_BY:
        raise ValueError(f"unknown stored model {name!r}; known: {', '.join(sorted(SAVED_BY))}")


def _device(model: torch.nn.Module) -> str:
    param = next(iter(model.parameters()), None)
    return param.device.type if param is not None else "cpu"


def save(name: str, model: torch.nn.Module, *, settings: object, seconds: float, budget: str,
         **extra) -> Path | None:
    """Store ``model``'s weights for later chapters; return the file (None when the store is off).

    ``settings``: the settings row the model was built and trained with; ``seconds``: its
    training wall time; ``budget``: what it was trained for, in words ("35 epochs");
    ``extra``: other plain values the reader needs (e.g. ``steps=3500``).
    """
    _check_name(name)
    where = folder()
    if where is None:
        return None
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"key": _key(name, model, settings, _device(model)), "state": state,
               "chapter": SAVED_BY[name], "seconds": float(seconds), "budget": budget,
               "extra": dict(extra)}
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a reader never sees half a file
    return path


def load(name: str, model: torch.nn.Module, *, settings: object) -> Stored | None:
    """Load the stored weights of ``name`` into ``model`` (built with ``settings``, on its
    device) when they fit; return what came with them, or None after printing why not."""
    _check_name(name)
    where = folder()
    if where is None:
        return None
    path = where / f"{name}.pt"
    chapter = SAVED_BY[name]
    if not path.exists():
        print(f"{name}: no model stored by the {chapter} chapter in this build; training it here")
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file costs a training run, not the page
        print(f"{name}: could not read {path} ({type(exc).__name__}); training it here")
        return None
    if payload.get("key") != _key(name, model, settings, _device(model)):
        print(f"{name}: the stored model was trained with other settings or code than this "
              f"page's; training it here")
        return None
    model.load_state_dict(payload["state"])
    return Stored(payload["chapter"], payload["seconds"], payload["budget"], payload["extra"])
