"""Shared fixtures. Tests read Fashion-MNIST from $DGM_DATA (CI points it at ../shared/data)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never pick the profile from the machine: they say which one they need.
os.environ["DGM_PROFILE"] = "smoke"
SMOKE_OUT = ROOT / "_build" / "smoke"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Test tensors are tiny: one thread is faster, and far faster on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@contextlib.contextmanager
def smoke_lock():
    """Exclusive use of _build/smoke/ across pytest-xdist's processes: two builds of one folder
    at once corrupt each other, and a build must not rewrite pages the browser is reading."""
    SMOKE_OUT.mkdir(parents=True, exist_ok=True)
    with open(SMOKE_OUT / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_smoke_book():
    """Build the book in the smoke profile into _build/smoke/ and return the BuildResult."""
    from dgm.build import build_book

    with smoke_lock():
        return build_book("smoke", SMOKE_OUT, echo=False)


@pytest.fixture(scope="session")
def smoke_book():
    """The book built in the smoke profile (the first build in a process; later ones find
    nothing to re-execute)."""
    return build_smoke_book()
