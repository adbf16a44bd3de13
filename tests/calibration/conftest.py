"""Calibration fixtures (photos and the private cache come from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


def copy_photos(photos: Path, folder: Path, count: int) -> Path:
    """The first ``count`` photos of ``photos`` copied into a new ``folder``."""
    folder.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:count]:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


@pytest.fixture
def few_photos(tmp_path: Path, photos: Path) -> Path:
    """Six BSDS500 photos (and a hidden file that must be ignored) in a folder of their own."""
    folder = copy_photos(photos, tmp_path / "photos", 6)
    (folder / ".hidden.jpg").write_bytes(b"not an image")
    return folder


@pytest.fixture
def twelve_photos(tmp_path: Path, photos: Path) -> Path:
    """Twelve untouched photos in a folder of their own."""
    return copy_photos(photos, tmp_path / "untouched", 12)
