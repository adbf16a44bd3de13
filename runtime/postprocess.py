"""Feature-resolution labels -> image-resolution mask (method.md section 1)."""

from __future__ import annotations

import cv2
import numpy as np


def labels_to_mask(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an ``h x w`` label map to the image and threshold it at 0.5.

    The map is resized as float with bilinear interpolation and pixels whose
    value is at least 0.5 are forged, so a region's border falls half-way
    between feature-map cells rather than on a blocky nearest-neighbour grid.

    Args:
        labels: ``[h, w]`` uint8 or bool, 1 = forged.
        height: H of the original image.
        width: W of the original image.

    Returns:
        ``[H, W]`` uint8 mask, 255 = forged, 0 = pristine.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be [h, w], got shape {labels.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"bad output size {height} x {width}")
    soft = cv2.resize(labels.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.where(soft >= 0.5, np.uint8(255), np.uint8(0))
