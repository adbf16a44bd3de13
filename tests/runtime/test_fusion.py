"""Fusion resizes every map with PyTorch's nearest rule (the authors' release), then normalises and concatenates."""

from __future__ import annotations

import numpy as np
import pytest

from focal.runtime.fusion import fuse_feature_maps, nearest_index


def test_nearest_index_is_torchs_on_every_small_size_pair() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    mismatched = []
    for size_in in range(1, 130):
        src = torch.arange(size_in, dtype=torch.float32).view(1, 1, size_in)
        for size_out in range(1, 130):
            want = F.interpolate(src, size=size_out, mode="nearest").view(-1).long().numpy()
            if not np.array_equal(nearest_index(size_in, size_out), want):
                mismatched.append((size_in, size_out))
    assert mismatched == []


def test_fused_map_normalises_each_member_and_keeps_the_first_size() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 4, 16, 12)).astype(np.float32)
    b = rng.normal(size=(2, 3, 62, 47)).astype(np.float32)
    fused = fuse_feature_maps([a, b])
    assert fused.shape == (2, 7, 16, 12) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused[:, :4], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fused[:, 4:], axis=1), 1.0, rtol=1e-5)
    rows, cols = nearest_index(62, 16), nearest_index(47, 12)
    expected = b[:, :, rows][:, :, :, cols]
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(fused[:, 4:], expected, rtol=1e-6)


def test_batch_sizes_must_agree() -> None:
    with pytest.raises(ValueError, match="batch sizes differ"):
        fuse_feature_maps([np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 2, 4, 4), np.float32)])
