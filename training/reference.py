"""The PyTorch reference pipeline: the oracle every exported artifact is compared with.

It follows method.md sections 1 and 4 step by step with the model in eager
PyTorch, and uses the runtime's own NumPy preprocessing, clustering and
mask resizing, so that a disagreement between an exported artifact and this
reference can only come from the network itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from focal.runtime.cluster import DEFAULT_MIN_CLUSTER_SIZE, cluster_features, normalize_rows
from focal.runtime.postprocess import labels_to_mask
from focal.runtime.preprocess import to_input
from focal.training.model import Extractor, FusedExtractor


@dataclass(frozen=True)
class ReferenceConfig:
    """How the reference turns features into a mask."""

    clustering: str = "hdbscan"  # "hdbscan" (paper) or "kmeans" (authors' release)
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE  # HDBSCAN's smallest cluster
    input_size: int | None = None  # square input side; None = the extractor's own
    device: str = "cpu"  # torch device for the network


@dataclass(frozen=True)
class Detection:
    """One image's result.

    Attributes:
        mask: ``[H, W]`` uint8, 255 = forged, at the image's own size.
        labels: ``[h, w]`` uint8 at feature resolution, 1 = forged.
        features: ``[h * w, D]`` float32, rows L2-normalised (row-major pixels).
        forged_fraction: share of mask pixels flagged forged, in ``[0, 1]``.
    """

    mask: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    forged_fraction: float


class ReferenceDetector:
    """Eager-PyTorch FOCAL detector.

    Args:
        extractor: a single or fused extractor (weights already loaded).
        config: clustering and input settings.

    Not thread-safe: it owns one model and moves it to ``config.device``.
    """

    def __init__(self, extractor: Extractor | FusedExtractor, config: ReferenceConfig = ReferenceConfig()) -> None:
        self.extractor = extractor.eval().to(config.device)
        self.config = config
        self.input_size = int(config.input_size or extractor.input_size)

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel features of one image.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            ``[h, w, D]`` float32, L2-normalised along D.
        """
        x = torch.from_numpy(to_input(image, self.input_size))[None].to(self.config.device)
        feats = self.extractor(x)[0].float().cpu().numpy()  # [D, h, w]
        d, h, w = feats.shape
        return normalize_rows(feats.reshape(d, h * w).T).reshape(h, w, d)

    def __call__(self, image: np.ndarray) -> Detection:
        """Detect forged regions in one ``[H, W, 3]`` uint8 RGB image."""
        feats = self.features(image)
        h, w, d = feats.shape
        flat = feats.reshape(h * w, d)
        labels = cluster_features(flat, self.config.clustering, self.config.min_cluster_size).reshape(h, w)
        mask = labels_to_mask(labels, image.shape[0], image.shape[1])
        return Detection(mask=mask, labels=labels, features=flat, forged_fraction=float((mask > 0).mean()))
