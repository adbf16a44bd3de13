"""Decoding images and masks from disk into RGB ``uint8`` arrays (torch-free).

Every file goes through :func:`decode_image`: the bytes are read by Python and
decoded by ``cv2.imdecode`` (so non-ASCII paths work, and the pixel-count
check can run on the header before OpenCV allocates anything). Problems are
reported as ``ValueError`` naming the file, so a run that hits one bad file
says which one. Training, evaluation and the detector all decode here.

EXIF orientation: ground-truth masks are drawn on the stored pixel grid, so
training and evaluation read pixels as stored (``apply_orientation=False``);
the detector applies the orientation by default so its masks and overlays
match the picture as viewers show it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from focal.runtime._headers import HeaderError, declared_size

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "decode_image",
    "read_bytes",
    "read_image",
    "read_mask",
]

# Largest accepted width * height. 100 MP covers every forensic benchmark
# (NIST16 goes up to ~30 MP) while refusing decompression bombs, whose tiny
# files declare gigapixel canvases.
DEFAULT_MAX_PIXELS = 100_000_000

# ANYDEPTH keeps 16-bit data (so it is scaled, not clipped); ANYCOLOR keeps
# gray as gray and drops alpha; IGNORE_ORIENTATION leaves the pixels as
# stored (see the module notes on EXIF orientation).
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR

def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    """Raises ``ValueError`` when a ``width`` x ``height`` image is over the limit."""
    if width * height > max_pixels:
        raise ValueError(
            f"{name}: image is {width} x {height} = {width * height} pixels, over the "
            f"limit max_pixels={max_pixels} (raise it if the file is trusted)"
        )


def decode_image(
    data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS, apply_orientation: bool = False
) -> np.ndarray:
    """Decodes encoded image bytes (any format OpenCV reads) to RGB ``uint8``.

    Gray images are replicated to three channels, alpha is dropped, 16-bit
    data is scaled to 8 bits (``round(v / 257)``: 65535 -> 255) and float data
    is taken as [0, 1]. EXIF orientation is applied only when asked (see
    the module notes).

    Args:
        data: The encoded file content.
        name: What to call the data in error messages (usually its path).
        max_pixels: Largest accepted width * height, checked on the header
            before decoding (every accepted format has a header reader,
            :mod:`focal.runtime._headers`) and again on the decoded array.
        apply_orientation: rotate/flip as the file's EXIF orientation says.

    Returns:
        Array of shape [H, W, 3], dtype ``uint8``, RGB order, values in
        [0, 255], C-contiguous.

    Raises:
        ValueError: if ``max_pixels`` is not positive, the data is empty, not
            an image, corrupt, over the pixel limit, or of an unsupported
            channel count / bit depth. The message starts with ``name``.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if len(data) == 0:
        raise ValueError(f"{name}: file is empty")
    try:
        width, height = declared_size(data)
    except HeaderError as err:
        raise ValueError(f"{name}: {err}") from None
    _check_pixels(width, height, max_pixels, name)
    flags = _DECODE_FLAGS if apply_orientation else _DECODE_FLAGS | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise ValueError(
            f"{name}: not a readable image (OpenCV could not decode it: corrupt, truncated or not an image)"
        )
    _check_pixels(image.shape[1], image.shape[0], max_pixels, name)

    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        low, high = float(np.nanmin(image)), float(np.nanmax(image))
        if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-6 or high > 1.0 + 1e-6:
            # Clipping a 0-255 float file would turn it white without a word.
            raise ValueError(f"{name}: float pixels must lie in [0, 1], these span [{low:g}, {high:g}] "
                             "(save the image as 8- or 16-bit, or scale it to [0, 1])")
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{name}: unsupported pixel type {image.dtype} (expected 8/16-bit integer or float)")

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])  # OpenCV decodes BGR
    if image.ndim == 3 and image.shape[2] == 4:  # not expected with ANYCOLOR, kept as a guard
        return np.ascontiguousarray(image[:, :, 2::-1])
    raise ValueError(f"{name}: unsupported image layout {image.shape} (expected gray, RGB or RGBA)")


def read_bytes(path: str | Path) -> bytes:
    """Reads a whole file, turning OS errors into ``ValueError`` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read file ({err.strerror or err})") from err


def read_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, apply_orientation: bool = False
) -> np.ndarray:
    """Reads an image file as RGB ``uint8``.

    Args:
        path: Image file (any format OpenCV decodes).
        max_pixels: Largest accepted width * height (decompression-bomb guard).
        apply_orientation: apply the EXIF orientation (the detector does).

    Returns:
        Array [H, W, 3], ``uint8``, RGB, values in [0, 255].

    Raises:
        ValueError: if the file cannot be read or decoded, or is too large;
            the message names the file.
    """
    return decode_image(read_bytes(path), str(path), max_pixels, apply_orientation)


def read_mask(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads a ground-truth mask file as a boolean forged map.

    Colour masks count a pixel as forged when any channel is above half range
    (some datasets draw forged regions in colour); 16-bit masks are scaled to
    8 bits first. The threshold ``> 127`` is the 0.5 threshold of the
    inference pipeline applied to [0, 255] values.

    Args:
        path: Mask image, 255 (or any value > 127) = forged, 0 = pristine.
        max_pixels: Largest accepted width * height.

    Returns:
        Array [H, W], dtype ``bool``, True = forged.

    Raises:
        ValueError: if the file cannot be read or decoded, or is too large;
            the message names the file.
    """
    rgb = read_image(path, max_pixels)
    return rgb.max(axis=2) > 127
