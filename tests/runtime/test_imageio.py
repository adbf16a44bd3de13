"""Decoding as the detector sees it: EXIF orientation, size limits, odd formats."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from focal.runtime import Detector
from focal.runtime.imageio import decode_image


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal EXIF APP1 segment carrying only the orientation tag."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _jpeg(h: int, w: int) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (0, 0, 255)  # left half red (BGR)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def test_exif_orientation_is_applied_only_when_asked() -> None:
    data = _with_orientation(_jpeg(40, 60), 6)  # 6: rotate 90 degrees clockwise to display
    shown = decode_image(data, "rotated.jpg", apply_orientation=True)
    stored = decode_image(data, "rotated.jpg", apply_orientation=False)
    assert stored.shape == (40, 60, 3) and shown.shape == (60, 40, 3)
    # Clockwise: the stored left (red) half ends up at the top.
    assert shown[5, 20, 0] > 200 and shown[55, 20, 0] < 50


def test_detector_masks_follow_the_displayed_orientation(tiny_artifact: Path, tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_with_orientation(_jpeg(40, 60), 6))
    with Detector(tiny_artifact, backend="cpu") as det:
        assert det(path).mask.shape == (60, 40)
    with Detector(tiny_artifact, backend="cpu", exif_orientation=False) as det:
        assert det(path).mask.shape == (40, 60)


def test_decompression_bomb_is_refused_from_the_header(tiny_artifact: Path, tmp_path: Path) -> None:
    # A 1-row PNG that declares 20000 x 20000 pixels in its header.
    ok, buf = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", 20000, 20000)
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    with Detector(tiny_artifact, backend="cpu") as det, pytest.raises(ValueError, match=r"bomb.png: image is 20000 x 20000"):
        det(path)


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_odd_formats_decode_to_rgb_uint8(kind: str) -> None:
    base = np.linspace(0, 255, 24 * 32, dtype=np.float64).reshape(24, 32)
    if kind == "gray":
        img = base.astype(np.uint8)
    elif kind == "rgba":
        img = np.dstack([base, base, base, np.full_like(base, 128)]).astype(np.uint8)
    else:
        img = np.dstack([base * 257] * 3).astype(np.uint16)
    ok, buf = cv2.imencode(".png", img)
    out = decode_image(buf.tobytes(), kind)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[..., 0].astype(float), base, atol=1.0)
