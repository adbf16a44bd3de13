"""Fusion of several extractors' feature maps, the paper's way: no retraining.

It runs before clustering, on the engines' raw maps.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fuse_feature_maps"]


def fuse_feature_maps(maps: list[np.ndarray]) -> np.ndarray:
    """The paper's fusion of several extractors' maps, without retraining.

    Each map is resized to the first one's ``h x w`` with nearest
    interpolation (the index rule of PyTorch's ``F.interpolate(mode="nearest")``,
    as the authors' release), L2-normalised per pixel, and the maps are
    concatenated along D.

    Args:
        maps: ``[B, D_i, h_i, w_i]`` float32 arrays, the first sets the size.

    Returns:
        ``[B, sum(D_i), h_0, w_0]`` float32.
    """
    b, _, h, w = maps[0].shape
    fused = []
    for m in maps:
        if m.shape[0] != b:
            raise ValueError(f"batch sizes differ: {m.shape[0]} vs {b}")
        if m.shape[2:] != (h, w):
            rows = np.floor(np.arange(h) * (m.shape[2] / h)).astype(np.int64)
            cols = np.floor(np.arange(w) * (m.shape[3] / w)).astype(np.int64)
            m = m[:, :, rows][:, :, :, cols]
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        fused.append(m / np.maximum(norm, 1e-12))
    return np.concatenate(fused, axis=1).astype(np.float32, copy=False)
