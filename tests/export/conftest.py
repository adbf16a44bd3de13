"""Export fixtures: small real models, real photos and forgeries from shared data, a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# As tests/conftest.py: shared/ beside the repository, or $FOCAL_SHARED.
DATA = Path(os.environ.get("FOCAL_SHARED", Path(__file__).resolve().parents[2].parent / "shared")) / "data"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Calibration ranges and TensorRT timing caches go to a per-session folder, never ~/.cache.
    monkeypatch.setenv("FOCAL_CACHE", str(tmp_path_factory.getbasetemp() / "focal-cache"))


@pytest.fixture(scope="session")
def tiny_model():
    torch = pytest.importorskip("torch")
    from focal.training import create_extractor

    torch.manual_seed(0)
    return create_extractor("tiny")


@pytest.fixture(scope="session")
def small_vit():
    """A 2-block SAM ViT-B at 64 px (window attention + one global block): real SAM code paths, tiny cost."""
    torch = pytest.importorskip("torch")
    from focal.training import create_extractor

    torch.manual_seed(0)
    return create_extractor("vit-b", [{"img_size": 64, "depth": 2, "global_attn_indexes": (1,)}])


@pytest.fixture(scope="session")
def forgeries() -> Path:
    """Real forged images (CASIA, Korus, the paper's samples) from shared data."""
    src = DATA / "real-samples/images"
    if not src.is_dir():
        pytest.skip(f"shared data not found at {src} (set FOCAL_SHARED)")
    return src


@pytest.fixture(scope="session")
def photos() -> Path:
    """Untouched photos (BSDS500) for calibration."""
    src = DATA / "natural/bsds500"
    if not src.is_dir():
        pytest.skip(f"shared data not found at {src} (set FOCAL_SHARED)")
    return src


def random_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
