"""Fusion of several extractors' feature maps, the paper's way: no retraining.

It runs before clustering, on the engines' raw maps.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fuse_feature_maps", "nearest_index"]


def nearest_index(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each output position, as ``F.interpolate(mode="nearest")`` picks it.

    PyTorch's CPU kernel computes ``min(floor(float32(i) * float32(in / out)), in - 1)``
    in float32 (with exact shortcuts for equal sizes and 2x upsampling); a
    float64 ``floor(i * in / out)`` picks another row for some sizes (e.g.
    62 -> 14), so the float32 arithmetic is reproduced here.

    Returns:
        ``[size_out]`` int64 indices in ``[0, size_in)``.
    """
    i = np.arange(size_out)
    if size_out == size_in:
        return i.astype(np.int64)
    if size_out == 2 * size_in:
        return (i >> 1).astype(np.int64)
    scale = np.float32(size_in) / np.float32(size_out)
    return np.minimum(np.floor(i.astype(np.float32) * scale), size_in - 1).astype(np.int64)


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
            m = m[:, :, nearest_index(m.shape[2], h)][:, :, :, nearest_index(m.shape[3], w)]
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        fused.append(m / np.maximum(norm, 1e-12))
    return np.concatenate(fused, axis=1).astype(np.float32, copy=False)
