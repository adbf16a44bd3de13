"""The PyTorch reference pipeline on a real (tiny, random) extractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from focal.training import ReferenceConfig, ReferenceDetector, build_extractor


def _spliced_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A flat, slightly noisy host with a fine-textured rectangle pasted in: two obvious sources."""
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    img = (np.array([90, 110, 120]) + rng.integers(-6, 6, (h, w, 3))).astype(np.uint8)
    truth = np.zeros((h, w), bool)
    truth[40:160, 200:360] = True
    stripes = np.where((xx + yy) % 4 < 2, 230, 20).astype(np.uint8)  # a fine texture the host lacks
    img[truth] = np.clip(stripes[truth][:, None] + rng.integers(-10, 10, (int(truth.sum()), 3)), 0, 255)
    return img, truth


class LocalStats(nn.Module):
    """A hand-made stride-8 extractor: local colour mean and spread per 8x8 cell.

    Random weights do not separate textures reliably, trained ones are the
    subject of later work; this one makes the right answer known, so the test
    checks the pipeline itself (resize, normalise, cluster, mask back).
    """

    name, input_size, feature_dim, stride = "local-stats", 256, 6, 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.avg_pool2d(x, 8)
        spread = (F.avg_pool2d(x * x, 8) - mean * mean).clamp_min(0).sqrt()
        return torch.cat([mean, 4 * spread], dim=1)


@pytest.mark.parametrize("clustering", ["hdbscan", "kmeans"])
def test_reference_finds_an_obvious_splice(rng: np.random.Generator, clustering: str) -> None:
    detector = ReferenceDetector(LocalStats(), ReferenceConfig(clustering=clustering, min_cluster_size=50))  # type: ignore[arg-type]
    img, truth = _spliced_image(rng)
    det = detector(img)
    assert det.mask.shape == img.shape[:2] and det.mask.dtype == np.uint8
    assert set(np.unique(det.mask)) <= {0, 255}
    assert det.labels.shape == (32, 32) and det.features.shape == (32 * 32, 6)
    np.testing.assert_allclose(np.linalg.norm(det.features, axis=1), 1.0, rtol=1e-5)
    pred = det.mask > 0
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.8, iou
    assert det.forged_fraction == pytest.approx(pred.mean())


def test_reference_on_a_flat_image_flags_nothing() -> None:
    torch.manual_seed(0)
    detector = ReferenceDetector(build_extractor("tiny"), ReferenceConfig(min_cluster_size=50, input_size=256))
    det = detector(np.full((120, 90, 3), 128, np.uint8))
    assert det.forged_fraction == 0.0 and det.mask.shape == (120, 90)


def test_reference_rejects_non_rgb_uint8() -> None:
    detector = ReferenceDetector(build_extractor("tiny"))
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        detector(np.zeros((10, 10), np.uint8))
