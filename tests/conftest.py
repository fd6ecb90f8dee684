"""Shared fixtures. Tests read Fashion-MNIST from $DGM_DATA (CI points it at ../shared/data)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never pick the profile from the machine: they say which one they need.
os.environ.setdefault("DGM_PROFILE", "smoke")
SMOKE_OUT = ROOT / "_build" / "smoke"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smoke_book():
    """The book built in the smoke profile into _build/smoke/ (BuildResult).

    pytest-xdist runs test modules in several processes; a file lock makes the first one build
    and the others wait, then find nothing to re-execute.
    """
    from dgm.build import build_book

    SMOKE_OUT.mkdir(parents=True, exist_ok=True)
    with open(SMOKE_OUT / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return build_book("smoke", SMOKE_OUT, echo=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
