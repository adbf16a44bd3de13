"""Shared fixtures: paths to the shared data, seeded RNGs, a private cache, the tiny extractor."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from runtime_artifacts import export_artifact

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

@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_extractor) -> Path:
    return export_artifact(tiny_extractor, tmp_path_factory.mktemp("tiny-artifact"), size=128, dynamic_batch=True)


@pytest.fixture
def photo_dir(tmp_path: Path, shared_data: Path) -> Path:
    """Four real photos (BSDS500) in a folder, plus a subfolder with one more."""
    src = sorted((shared_data / "natural/bsds500").glob("*.jpg"))[:5]
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, p in enumerate(src):
        dest = folder / ("sub" if i == 4 else "") / p.name
        dest.write_bytes(p.read_bytes())
    return folder
