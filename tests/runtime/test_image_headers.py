"""Every accepted format is sized from its header, and bombs are refused before decoding."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from focal.runtime._headers import HeaderError, declared_size, image_format
from focal.runtime.imageio import decode_image

IMAGE = np.dstack([np.linspace(0, 255, 37 * 53, dtype=np.float64).reshape(37, 53).astype(np.uint8)] * 3)


def _encoded(ext: str, image: np.ndarray = IMAGE, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    "ext, params, fmt",
    [(".png", None, "PNG"), (".jpg", None, "JPEG"), (".bmp", None, "BMP"), (".tif", None, "TIFF"),
     (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], "WebP"), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "WebP"),
     (".ppm", None, "PNM"), (".pgm", None, "PNM")],
)
def test_declared_size_matches_what_opencv_writes(ext: str, params: list[int] | None, fmt: str) -> None:
    image = IMAGE[:, :, 0] if ext == ".pgm" else IMAGE
    data = _encoded(ext, image, params)
    assert image_format(data) == fmt
    assert declared_size(data) == (53, 37)
    assert decode_image(data).shape == (37, 53, 3)


def test_refused_formats_are_named() -> None:
    with pytest.raises(HeaderError, match="unsupported format GIF"):
        image_format(b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="x.bin: unsupported format"):
        decode_image(b"hello, not an image", "x.bin")
    with pytest.raises(ValueError, match="PNG header is truncated"):
        decode_image(b"\x89PNG\r\n\x1a\n\x00", "short.png")


def _bomb(fmt: str, side: int) -> bytes:
    """A small valid file of ``fmt`` whose header declares ``side x side`` pixels."""
    if fmt == "png":
        data = bytearray(_encoded(".png", IMAGE[:1, :1]))
        data[16:24] = struct.pack(">II", side, side)
        return bytes(data)
    if fmt == "tiff":
        data = bytearray(_encoded(".tif", IMAGE[:1, :1]))
        order = "<" if data[:2] == b"II" else ">"
        offset = struct.unpack(order + "I", data[4:8])[0]
        for i in range(struct.unpack(order + "H", data[offset : offset + 2])[0]):
            entry = offset + 2 + 12 * i
            tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
            if tag in (256, 257):
                data[entry + 2 : entry + 12] = struct.pack(order + "HII", 4, 1, side)
        return bytes(data)
    if fmt == "webp":  # a VP8X canvas: 24-bit sizes minus one
        data = bytearray(_encoded(".webp", IMAGE[:1, :1]))
        chunk = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (side - 1).to_bytes(3, "little") * 2
        return bytes(data[:12]) + chunk + bytes(data[12:])
    if fmt == "pnm":
        return f"P6\n{side} {side}\n255\n".encode() + bytes(30)
    if fmt == "bmp":
        data = bytearray(_encoded(".bmp", IMAGE[:1, :1]))
        data[18:26] = struct.pack("<ii", side, side)
        return bytes(data)
    data = bytearray(_encoded(".jpg", IMAGE[:8, :8]))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


BOMB_FORMATS = ["png", "jpeg", "bmp", "tiff", "webp", "pnm"]


@pytest.mark.parametrize("fmt", BOMB_FORMATS)
def test_bomb_header_is_read(fmt: str) -> None:
    assert declared_size(_bomb(fmt, 16000)) == (16000, 16000)


def test_bombs_are_refused_with_small_peak_memory(tmp_path: Path) -> None:
    # In a fresh interpreter, so the peak RSS is this decode's alone.
    paths = []
    for fmt in BOMB_FORMATS:
        path = tmp_path / f"bomb.{fmt}"
        path.write_bytes(_bomb(fmt, 16000))
        paths.append(str(path))
    code = (
        "import json, resource, sys\n"
        "from focal.runtime.imageio import read_image\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        read_image(p); out[p] = 'decoded'\n"
        "    except ValueError as e:\n"
        "        out[p] = str(e)\n"
        "out['_growth_kb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    for p in paths:
        assert "16000 x 16000" in result[p] and "over the limit" in result[p], (p, result[p])
    # A decoded 16000^2 RGB canvas is 768 MB; refusal from the header costs next to nothing.
    assert result["_growth_kb"] < 50_000, result["_growth_kb"]


def test_float_tiff_outside_0_1_is_refused_not_clipped() -> None:
    ramp = np.linspace(0, 255, 16 * 16, dtype=np.float32).reshape(16, 16)
    # Uncompressed: OpenCV 4.11's default float TIFF compression does not round-trip exactly (a [0, 1]
    # ramp comes back up to 1.018), which would test the encoder, not the refusal.
    plain = [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    ok, buf = cv2.imencode(".tiff", np.dstack([ramp] * 3), plain)
    assert ok
    with pytest.raises(ValueError, match=r"f.tif: float pixels must lie in \[0, 1\], these span \[0, 255\]"):
        decode_image(buf.tobytes(), "f.tif")
    ok, buf = cv2.imencode(".tiff", np.dstack([ramp / 255.0] * 3).astype(np.float32), plain)
    out = decode_image(buf.tobytes(), "g.tif")
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
