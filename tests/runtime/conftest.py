"""Runtime fixtures: a real exported tiny model, and images on disk.

The artifact is made with torch here (tests may use it; the runtime may not).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_artifacts import export_artifact


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


def random_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 2)
