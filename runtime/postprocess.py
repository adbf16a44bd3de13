"""After the network: feature map -> labels -> image-resolution mask and score (method.md 1, 4)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from focal.runtime.cluster import DEFAULT_MIN_CLUSTER_SIZE, cluster_features, normalize_rows
from focal.runtime.geometry import Geometry, labels_extent, pool_features
from focal.runtime.score import forgery_score


def labels_to_mask(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an ``h x w`` label map to the image and threshold it at 0.5.

    The map is resized as float with bilinear interpolation and pixels whose
    value is at least 0.5 are forged, so a region's border falls half-way
    between feature-map cells rather than on a blocky nearest-neighbour grid.

    Args:
        labels: ``[h, w]`` uint8 or bool, 1 = forged.
        height: H of the original image.
        width: W of the original image.

    Returns:
        ``[H, W]`` uint8 mask, 255 = forged, 0 = pristine.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be [h, w], got shape {labels.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"bad output size {height} x {width}")
    soft = cv2.resize(labels.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.where(soft >= 0.5, np.uint8(255), np.uint8(0))


@dataclass(frozen=True)
class Localization:
    """What the method makes of one image's feature map.

    Attributes:
        mask: ``[H, W]`` uint8, 255 = forged, at the image's own size.
        labels: ``[h, w]`` uint8 at feature resolution, 1 = forged.
        features: ``[h * w, D]`` float32, rows L2-normalised (row-major pixels).
        score: image-level forgery score in ``[0, 1]`` (:mod:`focal.runtime.score`): of the
            labels; under ``"split"``, of the k-means split whether or not it passed the threshold.
        forged_fraction: share of mask pixels flagged forged, in ``[0, 1]``.
        cluster_ms: time spent clustering.
        post_ms: time spent normalising, resizing the mask and scoring.
    """

    mask: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    score: float
    forged_fraction: float
    cluster_ms: float
    post_ms: float


def localize(
    feature_map: np.ndarray,
    height: int,
    width: int,
    method: str = "hdbscan",
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
    backend: str = "auto",
    geometry: Geometry | None = None,
    split_threshold: float | None = None,
) -> Localization:
    """Method.md sections 1 and 4 after the network: normalise, cluster, mask, score.

    Shared by the PyTorch reference and the runtime, so both finish an image
    with the same code.

    Args:
        feature_map: ``[D, h, w]`` float32 features of one image (raw or
            normalised: rows are L2-normalised here).
        height: H of the original image.
        width: W of the original image.
        method: ``"hdbscan"``, ``"kmeans"`` or ``"split"`` (the k-means
            split, kept only where its score exceeds ``split_threshold``).
        min_cluster_size: HDBSCAN's smallest cluster.
        backend: clustering implementation, "auto" (native where built),
            "native" or "reference"; the labels are the same.
        geometry: under the ``native`` input policy, where the image sits in
            the map (:func:`focal.runtime.geometry.plan`): only its cells are
            kept, pooled to the clustering grid, and the mask is mapped back
            through the resize. None: the map covers the image whole (square).

    Returns:
        A :class:`Localization`.
    """
    if feature_map.ndim != 3:
        raise ValueError(f"feature map must be [D, h, w], got shape {feature_map.shape}")
    if method == "split" and split_threshold is None:
        raise ValueError("clustering 'split' needs a split_threshold (fit one: focal.calibration.decision)")
    t0 = time.perf_counter()
    if geometry is not None:
        feature_map = pool_features(feature_map, geometry)
    d, h, w = feature_map.shape
    flat = normalize_rows(feature_map.reshape(d, h * w).T)
    t1 = time.perf_counter()
    # Rows are unit length already: checked, not normalised a second time.
    labelling = "kmeans" if method == "split" else method
    labels = cluster_features(flat, labelling, min_cluster_size, backend=backend, normalized=True)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    score = forgery_score(flat, labels)
    # The score is computed on the split either way: it is the test statistic, and the
    # image-level evidence a caller ranks by, even where it does not pass.
    if method == "split" and not score > split_threshold:
        labels = np.zeros_like(labels)
    mask = mask_from_labels(labels.reshape(h, w), height, width, geometry)
    fraction = float(np.count_nonzero(mask)) / mask.size
    t3 = time.perf_counter()
    return Localization(
        mask=mask,
        labels=labels.reshape(h, w),
        features=flat,
        score=score,
        forged_fraction=fraction,
        cluster_ms=(t2 - t1) * 1e3,
        post_ms=((t1 - t0) + (t3 - t2)) * 1e3,
    )


def mask_from_labels(labels: np.ndarray, height: int, width: int, geometry: Geometry | None = None) -> np.ndarray:
    """Clustering-grid labels ``[h, w]`` (1 = forged) -> the ``[H, W]`` uint8 mask (255 = forged) of the image.

    ``geometry``: the ``native`` policy's plan of the image (the mask goes
    back through its pad and resize); None: the grid covers the image whole.
    """
    if geometry is None:
        return labels_to_mask(labels, height, width)
    return _native_mask(labels, geometry)


def _native_mask(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Grid labels -> ``[H, W]`` uint8 mask through the native policy's pad and resize."""
    ext_h, ext_w = labels_extent(geometry)
    return _to_image(labels_to_mask(labels, ext_h, ext_w), geometry, cv2.INTER_NEAREST)


def _to_image(covered: np.ndarray, geometry: Geometry, interpolation: int) -> np.ndarray:
    """A map over the clustered grid's input extent (:func:`labels_extent`) -> ``[H, W]`` on the original image.

    The pad is cropped off and the cap's downscale undone with ``interpolation``.
    """
    out = covered[: geometry.in_height, : geometry.in_width]
    if out.shape != (geometry.height, geometry.width):
        out = cv2.resize(np.ascontiguousarray(out), (geometry.width, geometry.height), interpolation=interpolation)
    return np.ascontiguousarray(out)


def soft_map(features: np.ndarray, labels: np.ndarray, height: int, width: int,
             geometry: Geometry | None = None) -> np.ndarray:
    """A continuous forgery map, for threshold-free metrics (pixel AUC, best-threshold F1).

    Each pixel's value is its cosine distance to the pristine cluster's mean
    direction, ``(1 - cos(f, mu_p)) / 2``, resized bilinearly to the image.
    It ranks pixels by how unlike the pristine majority they are, and exists
    even when no forged cluster was found.

    Args:
        features: ``[h * w, D]`` float32, rows L2-normalised.
        labels: ``[h, w]`` uint8, 1 = forged.
        height: H of the image.
        width: W of the image.
        geometry: the ``native`` policy's plan of the image (the map goes
            back through its pad and resize, as the mask does); None: the
            grid covers the image whole.

    Returns:
        ``[H, W]`` float32 in ``[0, 1]``.
    """
    h, w = labels.shape
    pristine = features[labels.reshape(-1) == 0]
    centre = (pristine if pristine.shape[0] else features).mean(axis=0)
    centre = centre / max(float(np.linalg.norm(centre)), 1e-12)
    dist = ((1.0 - features @ centre) / 2.0).astype(np.float32).reshape(h, w)
    if geometry is None:
        return np.clip(cv2.resize(dist, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    ext_h, ext_w = labels_extent(geometry)
    covered = cv2.resize(dist, (ext_w, ext_h), interpolation=cv2.INTER_LINEAR)
    return np.clip(_to_image(covered, geometry, cv2.INTER_LINEAR), 0.0, 1.0)
