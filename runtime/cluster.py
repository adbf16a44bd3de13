"""Test-time clustering of one image's feature vectors (method.md section 4).

FOCAL has no classifier: the ``h*w`` feature vectors of one image are
clustered on the fly, the largest cluster is pristine and every other cluster
is forged. This module is NumPy plus the ``hdbscan`` package (no torch): it is
the reference the native core is tested against and the fallback where that
core is not built. :func:`cluster_features` is the one entry point of both:
it validates and normalises the rows once, runs the chosen backend's
clustering (the private :mod:`focal.runtime._native_api` or this module's
reference functions) and finishes with this module's labelling.

Conventions shared by every function here:
    * features: ``[N, D]`` float32, one row per feature-map pixel in row-major
      (``y * w + x``) order, rows L2-normalised (``normalize_rows`` makes them
      so; zero rows stay zero);
    * returned labels: ``[N]`` uint8, ``1`` = forged, ``0`` = pristine.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from focal.runtime import _native_api

ClusterMethod = Literal["hdbscan", "kmeans"]
# What a user can ask for: the two labelings, and "split", the k-means split kept only when its
# score passes the artifact's calibrated threshold (a decision over labels, made in postprocess.localize).
CLUSTER_METHODS: tuple[str, ...] = ("hdbscan", "kmeans", "split")
LABEL_METHODS: tuple[str, ...] = ("hdbscan", "kmeans")
ClusterBackend = Literal["auto", "native", "reference"]
CLUSTER_BACKENDS: tuple[str, ...] = _native_api.BACKENDS


def resolve_backend(backend: ClusterBackend = "auto") -> str:
    """Which implementation ``cluster_features(..., backend=backend)`` runs.

    Returns:
        ``"native"`` (the compiled core) or ``"reference"`` (this module's
        NumPy / ``hdbscan`` code): :func:`focal.runtime._native_api.resolve_backend`.

    Raises:
        ValueError: unknown backend.
        RuntimeError: ``"native"`` asked for where the extension is not built.
    """
    return _native_api.resolve_backend(backend)


# The paper's HDBSCAN setting (Section IV / method.md section 4).
DEFAULT_MIN_CLUSTER_SIZE = 200

# Above this many points the `generic` algorithm's dense float64 distance
# matrices (two of N x N) stop fitting comfortably in memory (2 x 2 GiB at
# 16384); beyond it the exact Prim's-on-ball-tree path is used instead.
_GENERIC_MAX_POINTS = 16384


def normalize_rows(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise each row.

    Args:
        features: ``[N, D]`` float array.
        eps: rows with a norm below this are left as zeros rather than divided.

    Returns:
        ``[N, D]`` float32, each row of norm 1 (or all-zero).
    """
    feats = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, eps)


def _check(features: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """``features`` as an array after the checks every backend relies on (raises otherwise)."""
    feats = np.asarray(features)
    if feats.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {feats.shape}")
    if feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(f"features must be non-empty, got shape {feats.shape}")
    if not np.issubdtype(feats.dtype, np.floating):
        raise TypeError(f"features must be a float array, got dtype {feats.dtype}")
    if not np.isfinite(feats).all():
        bad = int((~np.isfinite(feats)).any(axis=1).sum())
        raise ValueError(f"features contain NaN or inf in {bad} of {feats.shape[0]} rows")
    if int(min_cluster_size) < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    return feats


def _validate(features: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Checked and L2-normalised ``[N, D]`` float32 rows."""
    return normalize_rows(_check(features, min_cluster_size))


def hdbscan_raw_labels(
    features: np.ndarray,
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
    min_samples: int | None = None,
) -> np.ndarray:
    """HDBSCAN cluster ids, exactly as the ``hdbscan`` package computes them.

    Euclidean distance on L2-normalised rows (``sqrt(2 - 2 cos)``), excess of
    mass selection, ``allow_single_cluster=False`` (the package's defaults, as
    the paper uses it). The algorithm is the package's fastest *exact* one for
    high-dimensional dense data: ``generic`` (dense distances + Prim's MST)
    up to 16384 points, ``prims_balltree`` above (no N x N matrix).

    Args:
        features: ``[N, D]`` float32, rows L2-normalised, finite.
        min_cluster_size: smallest cluster HDBSCAN may report.
        min_samples: neighbourhood size of the core distance; ``None`` means
            ``min_cluster_size``, as in the package.

    Returns:
        ``[N]`` int64 cluster ids, ``-1`` = noise, clusters numbered from 0.
    """
    import hdbscan  # imported here: the kmeans path and the native core don't need it

    n = features.shape[0]
    algorithm = "generic" if n <= _GENERIC_MAX_POINTS else "prims_balltree"
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=int(min_cluster_size),
        min_samples=None if min_samples is None else int(min_samples),
        metric="euclidean",
        algorithm=algorithm,
        cluster_selection_method="eom",
        allow_single_cluster=False,
        core_dist_n_jobs=1,
    )
    with warnings.catch_warnings():
        # Duplicate points give zero distances; the package warns but the
        # result is well defined (they merge first), so keep logs quiet.
        warnings.simplefilter("ignore", RuntimeWarning)
        clusterer.fit(features.astype(np.float64))
    return clusterer.labels_.astype(np.int64)


def labels_from_clusters(raw_labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The method's labelling of cluster ids: largest cluster pristine.

    Noise points (``-1``) join the cluster whose normalised mean is most
    cosine-similar to them. No cluster, or a single one, means the whole
    image is pristine. Among equally large clusters the lowest id is taken as
    pristine, so the result is deterministic.

    Args:
        raw_labels: ``[N]`` integer cluster ids, ``-1`` = noise.
        features: ``[N, D]`` float32, rows L2-normalised.

    Returns:
        ``[N]`` uint8, 1 = forged.
    """
    raw = np.asarray(raw_labels).astype(np.int64, copy=True)
    ids = np.unique(raw[raw >= 0])
    if ids.size <= 1:
        return np.zeros(raw.shape[0], dtype=np.uint8)
    noise = raw < 0
    if noise.any():
        means = np.stack([features[raw == i].mean(axis=0) for i in ids])
        means = normalize_rows(means)
        raw[noise] = ids[np.argmax(features[noise] @ means.T, axis=1)]
    sizes = np.array([(raw == i).sum() for i in ids])
    pristine = ids[int(np.argmax(sizes))]  # argmax takes the first (lowest id) on ties
    return (raw != pristine).astype(np.uint8)


def kmeans_cosine(
    features: np.ndarray,
    k: int = 2,
    seed: int = 0,
    max_iter: int = 100,
) -> np.ndarray:
    """Spherical (cosine) k-means, as the authors' release clusters.

    Initialisation is seeded and deterministic: the first centre is a random
    row (from ``seed``), each next one the row least similar to the centres
    chosen so far, which keeps two well-separated groups apart on the first
    step. Empty clusters keep their previous centre.

    Args:
        features: ``[N, D]`` float32, rows L2-normalised.
        k: number of clusters (>= 1).
        seed: seed of the first centre.
        max_iter: iteration cap; stops earlier when assignments stop changing.

    Returns:
        ``[N]`` int64 cluster ids in ``[0, k)``.
    """
    n = features.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    first = int(rng.integers(n))
    centres = [features[first]]
    best_sim = features @ features[first]
    for _ in range(1, min(k, n)):
        nxt = int(np.argmin(best_sim))
        centres.append(features[nxt])
        best_sim = np.maximum(best_sim, features @ features[nxt])
    c = np.stack(centres).astype(np.float32)
    assign = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        new = np.argmax(features @ c.T, axis=1).astype(np.int64)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(c.shape[0]):
            members = features[assign == j]
            if members.shape[0]:
                c[j] = members.sum(axis=0)
        c = normalize_rows(c)
    return assign


def cluster_features(
    features: np.ndarray,
    method: ClusterMethod = "hdbscan",
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
    min_samples: int | None = None,
    seed: int = 0,
    backend: ClusterBackend = "auto",
    *,
    normalized: bool = False,
    num_threads: int = 0,
) -> np.ndarray:
    """Forged/pristine labels of one image's feature vectors.

    Args:
        features: ``[N, D]`` float (rows are L2-normalised here; zero rows
            stay zero). NaN or inf raise ``ValueError``.
        method: ``"hdbscan"`` (the paper's default) or ``"kmeans"`` (cosine
            k-means, k = 2, as the authors' release).
        min_cluster_size: HDBSCAN's smallest cluster. With fewer points than
            this no cluster can exist and the image is all pristine.
        min_samples: HDBSCAN core-distance neighbourhood, default
            ``min_cluster_size``.
        seed: k-means initialisation seed.
        backend: ``"native"`` (compiled core), ``"reference"`` (NumPy /
            ``hdbscan``) or ``"auto"`` (native where built); the labels are
            the same, :func:`resolve_backend` says which one runs.
        normalized: the rows are already :func:`normalize_rows`' output
            (float32, L2-normalised): they are checked but not normalised
            again, so that a caller who keeps the normalised rows (for the
            score) normalises them once.
        num_threads: the native core's worker threads, 0 for its default
            (the reference runs on one).

    Returns:
        ``[N]`` uint8, ``1`` = forged, ``0`` = pristine.

    Raises:
        ValueError: wrong shape, non-finite values, unknown method.
    """
    if method not in LABEL_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {LABEL_METHODS}")
    native = resolve_backend(backend) == "native"
    if normalized:
        rows = np.ascontiguousarray(_check(features, min_cluster_size), dtype=np.float32)
    else:
        rows = _validate(features, min_cluster_size)
    n = rows.shape[0]
    # Identical vectors carry no evidence of two sources; HDBSCAN's lambdas
    # are infinite there, so decide it up front (the same answer HDBSCAN's
    # "one cluster" rule gives).
    if np.ptp(rows, axis=0).max() == 0.0:
        return np.zeros(n, dtype=np.uint8)
    # Both backends end with labels_from_clusters: its float32 means and BLAS
    # product decide exact ties between two cluster means (lattice-like
    # features) by their rounding, which no other arithmetic reproduces.
    if method == "kmeans":
        assign = _native_api.kmeans_cosine(rows, k=2, seed=seed) if native else kmeans_cosine(rows, k=2, seed=seed)
        return labels_from_clusters(assign, rows)
    if n < min_cluster_size:
        return np.zeros(n, dtype=np.uint8)
    if native:
        raw = _native_api.hdbscan_raw_labels(rows, min_cluster_size, min_samples, num_threads=num_threads)
    else:
        raw = hdbscan_raw_labels(rows, min_cluster_size, min_samples)
    return labels_from_clusters(raw, rows)
