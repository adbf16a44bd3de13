"""Calibration fixtures (photos and the private cache come from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def few_photos(tmp_path: Path, photos: Path) -> Path:
    """Six BSDS500 photos (and a hidden file that must be ignored) in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / ".hidden.jpg").write_bytes(b"not an image")
    return folder
