"""Perturbations for robustness curves: JPEG, blur, noise, down-scaling.

Deterministic (noise is seeded), applied to RGB uint8 images.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

# name -> x-axis label; strengths below, from mild to strong.
PERTURBATIONS: dict[str, str] = {
    "jpeg": "quality",
    "blur": "sigma (px)",
    "noise": "std (grey levels)",
    "resize": "scale",
}
STRENGTHS: dict[str, tuple[float, ...]] = {
    "jpeg": (95, 85, 75, 65, 50),
    "blur": (0.5, 1.0, 2.0, 3.0),
    "noise": (3.0, 7.0, 15.0),
    "resize": (0.75, 0.5, 0.25),
}


def apply(image: np.ndarray, name: str, strength: float, seed: int = 0) -> np.ndarray:
    """One perturbation of a ``[H, W, 3]`` uint8 RGB image (resize changes H and W)."""
    if name == "jpeg":
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(strength)])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    if name == "blur":
        return cv2.GaussianBlur(image, (0, 0), float(strength))
    if name == "noise":
        noise = np.random.default_rng(seed).normal(0.0, strength, image.shape)
        return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if name == "resize":
        h, w = image.shape[:2]
        size = (max(8, round(w * strength)), max(8, round(h * strength)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    raise ValueError(f"unknown perturbation {name!r}; known: {sorted(PERTURBATIONS)}")


def perturb(image: np.ndarray, seed: int = 0) -> Iterator[tuple[str, float, np.ndarray]]:
    """Every perturbation at every strength: ``(name, strength, image)``."""
    for name, strengths in STRENGTHS.items():
        for strength in strengths:
            yield name, strength, apply(image, name, strength, seed)
