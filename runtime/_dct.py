"""The 8 x 8 DCT basis JPEG uses: one home for the double-JPEG cue's two tests."""

from __future__ import annotations

import numpy as np

__all__ = ["dct_basis"]


def dct_basis() -> np.ndarray:
    """``[8, 8]`` float64 ``C[k, n]``, the orthonormal DCT-II (JPEG's forward transform).

    A block ``B``'s coefficients are ``C B C^T``.
    """
    k = np.arange(8)
    c = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    c[0] /= np.sqrt(2)
    return c
