"""The PyTorch reference pipeline: the oracle every exported artifact is compared with.

It follows method.md sections 1 and 4 with the model in eager PyTorch and
finishes each image with the runtime's own NumPy code (preprocessing,
:func:`focal.runtime.postprocess.localize`), so that a disagreement between
an exported artifact and this reference can only come from the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from focal.runtime.cluster import DEFAULT_MIN_CLUSTER_SIZE
from focal.runtime.postprocess import Localization, localize
from focal.runtime.geometry import Geometry, image_geometry
from focal.runtime.preprocess import network_input
from focal.training.model import Extractor, FusedExtractor

# The reference's result is the runtime's: one definition of mask, labels, score.
Detection = Localization


@dataclass(frozen=True)
class ReferenceConfig:
    """How the reference turns features into a mask."""

    clustering: str = "hdbscan"  # "hdbscan" (paper), "kmeans" (authors' release) or "split"
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE  # HDBSCAN's smallest cluster
    split_threshold: float | None = None  # "split": the artifact's fitted threshold (required for it)
    input_size: int | None = None  # square input side; None = the extractor's own
    policy: str = "square"  # input policy, as the artifact's manifest (focal.runtime.geometry)
    max_side: int | None = None  # "native": cap of the longer side
    max_points: int = 4096  # "native": most feature cells clustered
    device: str = "cpu"  # torch device for the network


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
    def feature_map(self, image: np.ndarray) -> np.ndarray:
        """Raw features of one image.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            ``[D, h, w]`` float32, as the extractor returns them (not normalised).
        """
        geometry = self.geometry(image.shape[0], image.shape[1])
        x = torch.from_numpy(network_input(image, self.input_size, geometry))[None].to(self.config.device)
        return self.extractor(x)[0].float().cpu().numpy()

    def geometry(self, height: int, width: int) -> Geometry | None:
        """Where an image of that size sits in the input (None under the square policy)."""
        cfg = self.config
        return image_geometry(height, width, cfg.policy, self.input_size, self.extractor.stride, cfg.max_side,
                              cfg.max_points)

    def __call__(self, image: np.ndarray) -> Localization:
        """Detect forged regions in one ``[H, W, 3]`` uint8 RGB image."""
        feats = self.feature_map(image)
        return localize(feats, image.shape[0], image.shape[1], self.config.clustering, self.config.min_cluster_size,
                        geometry=self.geometry(image.shape[0], image.shape[1]),
                        split_threshold=self.config.split_threshold)
