"""Pictures a person looks at: masks tinted over images."""

from __future__ import annotations

import cv2
import numpy as np

FORGED_RGB = (255, 40, 40)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Tint the forged region of ``image`` and outline it.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        mask: ``[H, W]`` uint8, non-zero = forged.
        alpha: tint strength in ``[0, 1]``.

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    out = image.copy()
    forged = mask > 0
    tint = np.array(FORGED_RGB, np.float32)
    out[forged] = (out[forged].astype(np.float32) * (1 - alpha) + tint * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(forged.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    cv2.drawContours(out, contours, -1, FORGED_RGB, thickness)
    return out
