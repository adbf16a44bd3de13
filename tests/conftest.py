"""Shared fixtures: paths to the shared data, seeded RNGs, a private cache, the tiny extractor."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones main with shared/ beside it; developers have it at ../shared too.
SHARED = Path(os.environ.get("FOCAL_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


def shared_path(relative: str) -> Path:
    """``DATA / relative``, or skip the test when the shared data is not there."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set FOCAL_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path("")


@pytest.fixture(scope="session")
def photos() -> Path:
    """Untouched photos (BSDS500)."""
    return shared_path("natural/bsds500")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Calibration ranges and TensorRT timing caches go to a per-session folder, never ~/.cache.
    monkeypatch.setenv("FOCAL_CACHE", str(tmp_path_factory.getbasetemp() / "focal-cache"))


@pytest.fixture(scope="session")
def tiny_extractor():
    """The ``tiny`` backbone with seeded random weights."""
    torch = pytest.importorskip("torch")
    from focal.training import create_extractor

    torch.manual_seed(0)
    return create_extractor("tiny")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
