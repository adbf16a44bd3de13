"""Calibration fixtures: real photos from shared data, a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("FOCAL_SHARED", Path(__file__).resolve().parents[2].parent / "shared")) / "data"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOCAL_CACHE", str(tmp_path_factory.getbasetemp() / "focal-cache"))


@pytest.fixture(scope="session")
def photos() -> Path:
    src = DATA / "natural/bsds500"
    if not src.is_dir():
        pytest.skip(f"shared data not found at {src} (set FOCAL_SHARED)")
    return src


@pytest.fixture
def few_photos(tmp_path: Path, photos: Path) -> Path:
    """Six BSDS500 photos (and a hidden file that must be ignored) in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / ".hidden.jpg").write_bytes(b"not an image")
    return folder
