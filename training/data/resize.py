"""The resize-to-S rule shared with inference, and conversion to tensors.

Inference resizes the whole image to S x S with OpenCV's default bilinear
interpolation, aspect ratio not kept (method.md, section 1). Training must
see images resized the same way, or the model learns resampling traces that
never occur at test time.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

__all__ = ["resize_image", "resize_mask", "to_tensors"]


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an image to ``size`` x ``size`` exactly as inference does.

    Args:
        image: [H, W, 3] ``uint8`` RGB.
        size: Output side S in pixels.

    Returns:
        [S, S, 3] ``uint8`` RGB (bilinear, aspect not kept).

    Raises:
        ValueError: if ``size`` is not a positive int or ``image`` is not
            [H, W, 3] ``uint8``.
    """
    _check_size(size)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resizes a mask to ``size`` x ``size`` with nearest neighbour, then 0.5 threshold.

    Args:
        mask: [H, W] ``bool`` (True = forged) or float/integer in [0, 1].
        size: Output side S in pixels.

    Returns:
        [S, S] ``bool``, True = forged.

    Raises:
        ValueError: if ``size`` is not a positive int or ``mask`` is not 2-D.
    """
    _check_size(size)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    values = mask.astype(np.float32)
    return cv2.resize(values, (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Converts an image and its mask to the model's tensor layout.

    Args:
        image: [H, W, 3] ``uint8`` RGB.
        mask: [H, W] ``bool``, True = forged.

    Returns:
        ``(image, mask)``: float32 [3, H, W] in [0, 1] (no mean/std
        normalisation, as the authors' release), and float32 [1, H, W] in
        {0, 1}.
    """
    image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
    mask_t = torch.from_numpy(np.ascontiguousarray(mask)).to(torch.float32).unsqueeze(0)
    return image_t, mask_t
