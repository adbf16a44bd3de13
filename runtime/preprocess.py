"""Image -> network input, exactly as FOCAL was trained (method.md section 1).

The authors' release feeds RGB scaled to ``[0, 1]`` with no mean/std,
resized with OpenCV's default (bilinear) to a square, aspect not kept. The
PyTorch reference and the runtime both call :func:`to_input`, so a
difference between them can only come from the network or what follows it.
"""

from __future__ import annotations

import cv2
import numpy as np

from focal.runtime.geometry import Geometry, pad_input


def to_input(
    image: np.ndarray,
    size: int,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> np.ndarray:
    """Resize and scale one image for the network.

    Args:
        image: ``[H, W, 3]`` uint8 RGB in ``[0, 255]``.
        size: side S of the square network input.
        mean: per-channel mean subtracted after scaling to [0, 1] (None: none,
            as the release; FOCAL backbones that need it normalise in-graph).
        std: per-channel std divided after the mean (None: none).

    Returns:
        ``[3, S, S]`` float32 RGB in ``[0, 1]`` (shifted and scaled by
        ``mean``/``std`` when given), C-contiguous.

    Raises:
        ValueError: not an ``[H, W, 3]`` uint8 array, or ``size < 1``.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image must be an [H, W, 3] uint8 RGB array, got shape {shape} dtype {dtype}")
    if size < 1:
        raise ValueError(f"input size must be positive, got {size}")
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return to_tensor(resized, mean, std)


def to_tensor(image: np.ndarray, mean: list[float] | None = None, std: list[float] | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[3, H, W]`` float32 in ``[0, 1]`` (then ``mean``/``std``), no resize."""
    # Scale in float32 after resizing uint8, as the release does (resize, then /255).
    x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    if mean is not None:
        x -= np.asarray(mean, np.float32).reshape(3, 1, 1)
    if std is not None:
        x /= np.asarray(std, np.float32).reshape(3, 1, 1)
    return x


def network_input(image: np.ndarray, size: int, geometry: Geometry | None = None,
                  mean: list[float] | None = None, std: list[float] | None = None) -> np.ndarray:
    """One image as the network takes it, under either input policy.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        size: ``S`` of the square policy.
        geometry: the ``native`` policy's plan for this image
            (:func:`focal.runtime.geometry.plan`); None = square.

    Returns:
        ``[3, S, S]`` (square) or ``[3, pad_height, pad_width]`` (native) float32.
    """
    if geometry is None:
        return to_input(image, size, mean, std)
    return to_tensor(pad_input(image, geometry), mean, std)
