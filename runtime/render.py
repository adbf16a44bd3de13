"""Pictures a person looks at: masks tinted over images, heatmaps."""

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


# The heatmap's full colour: a cosine distance of 0.5 to the pristine direction, i.e. features at a
# right angle to it. One fixed scale for every image, so two heatmaps compare (a per-image stretch
# would paint the warmest patch of an untouched photo as hot as a splice).
HEATMAP_FULL_SCALE = 0.5


def heatmap_levels(soft: np.ndarray, full_scale: float = HEATMAP_FULL_SCALE) -> np.ndarray:
    """A forgery map (:func:`focal.runtime.postprocess.soft_map`) as 8-bit levels on a fixed scale.

    Args:
        soft: ``[H, W]`` float in ``[0, 1]``, higher = less like the pristine majority.
        full_scale: the value given level 255; above it, clipped.

    Returns:
        ``[H, W]`` uint8, ``floor(soft * 255 / full_scale)`` clipped to 0..255 (what
        :func:`heatmap` colours, and what ``focal-serve --heatmap`` returns).
    """
    if soft.ndim != 2:
        raise ValueError(f"heatmap needs an [H, W] map, got shape {soft.shape}")
    if not full_scale > 0:
        raise ValueError(f"heatmap full_scale must be > 0, got {full_scale}")
    return np.clip(np.asarray(soft, np.float32) * (255.0 / full_scale), 0, 255).astype(np.uint8)


def colour_levels(levels: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 heatmap levels (:func:`heatmap_levels`) as ``[H, W, 3]`` uint8 RGB, OpenCV's "inferno"."""
    return cv2.applyColorMap(np.ascontiguousarray(levels, np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1].copy()


def heatmap(soft: np.ndarray, full_scale: float = HEATMAP_FULL_SCALE) -> np.ndarray:
    """Colour a forgery map on a fixed scale (:func:`heatmap_levels`, :func:`colour_levels`).

    Args:
        soft: ``[H, W]`` float in ``[0, 1]``, higher = less like the pristine majority.
        full_scale: the value drawn at full colour; above it, clipped.

    Returns:
        ``[H, W, 3]`` uint8 RGB, OpenCV's "inferno" map: near black at 0, pale yellow
        at ``full_scale``.
    """
    return colour_levels(heatmap_levels(soft, full_scale))
