"""Shared fixtures. Tests read Fashion-MNIST from $DGM_DATA (CI points it at ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never pick the profile from the machine: they say which one they need.
os.environ.setdefault("DGM_PROFILE", "smoke")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
