"""Shared fixtures: paths to the shared data, seeded RNGs, GPU detection."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones main with shared/ beside it; developers have it at ../shared too.
SHARED = Path(os.environ.get("FOCAL_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set FOCAL_SHARED)")
    return DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
