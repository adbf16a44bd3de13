"""The native core (``focal.runtime._native``) behind the reference contracts.

Every function here computes what its NumPy / ``hdbscan`` / OpenCV
counterpart computes, label for label; that module stays the oracle the native core is tested
against and the fallback where the extension is not built. Which one ran is
for the caller to report: :func:`available` says whether the extension
imported, :func:`build_info` how it was built.

Exactness of HDBSCAN: the extension finds the mutual-reachability minimum
spanning tree with float32 inner products and re-decides, in double
precision, every comparison a float32 error could flip (a proven bound tells
which). Its core distances and tree weights are bit-identical to the
package's exact (``prims_balltree``) path, ties are broken in the package's
order (Prim's from point 0, lowest index first; edges sorted by the same
``np.argsort`` call), and the condensed tree and excess-of-mass selection
repeat the package's arithmetic, including its float32 sum of child
stabilities.

Thread count: ``num_threads=0`` means ``FOCAL_NATIVE_THREADS`` if set, else
the CPUs this process may use (OpenMP's default where the extension was
built with ``FOCAL_NATIVE_OPENMP=ON``). On a machine shared with other work,
1 can be as fast as 2: the dense work is then memory-bound and the other
core busy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # the extension is optional: a source checkout without a build has none
    from focal.runtime import _native  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised on machines without a build
    _native = None

__all__ = [
    "available",
    "build_info",
    "cluster_labels",
    "fuse_feature_maps",
    "hdbscan_raw_labels",
    "kmeans_cosine",
    "labels_from_clusters",
    "mst",
    "normalize_rows",
    "resize_nearest",
]

# Above this many points the extension keeps no N x N matrix (bounded memory:
# O(N * D) plus per-thread buffers); below it, one float32 N x N matrix
# (256 MiB at the threshold).
DENSE_MAX_POINTS = 8192


def available() -> bool:
    """True when the compiled extension imported."""
    return _native is not None


def build_info() -> dict[str, Any] | None:
    """How the extension was built and what it runs on, or None without one.

    Returns:
        ``{"openmp": bool, "default_threads": int, "gemm_isa": str,
        "select_isa": str, "half_matrix": bool, "arch": str}``; ``gemm_isa`` is the inner-product
        kernel family the CPU selected (``"avx512"``, ``"avx2+fma"``, ``"sse2"``, ``"neon"``
        or ``"generic"``), ``select_isa`` that of the selection and filter
        kernels behind the core distances (``"avx512"``, ``"avx2"`` or
        ``"generic"``). ``FOCAL_NATIVE_ISA=generic`` or ``=avx2`` caps both.
        ``half_matrix``: the dense path can store its matrix as IEEE half.
    """
    return None if _native is None else dict(_native.build_info())


def _require() -> Any:
    if _native is None:
        raise RuntimeError(
            "focal.runtime._native is not built; reinstall the package with a C++17 compiler "
            "(pip install .) or use the NumPy/hdbscan reference in focal.runtime.cluster"
        )
    return _native


def _as_features(features: np.ndarray) -> np.ndarray:
    feats = np.asarray(features)
    if feats.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {feats.shape}")
    return np.ascontiguousarray(feats, dtype=np.float32)


def mst(
    features: np.ndarray,
    min_samples: int,
    *,
    num_threads: int = 0,
    dense_max_points: int = DENSE_MAX_POINTS,
    path: str = "auto",
    half_matrix: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Mutual-reachability minimum spanning tree, as the package's Prim's.

    Args:
        features: ``[N, D]`` float32 rows (L2-normalised for the runtime), N >= 2.
        min_samples: core-distance neighbourhood, clipped to ``[1, N - 1]`` as
            the package does.
        num_threads: worker threads, 0 for the default.
        dense_max_points: largest N that gets the N x N float32 matrix.
        path: ``"auto"``, ``"dense"`` or ``"implicit"`` (no matrix); the result
            is the same.
        half_matrix: let the dense path store its matrix as IEEE half (x86-64
            with F16C, values within range): half the memory and traffic, the
            same result (the storage error joins the exactness bound).

    Returns:
        ``(src, dst, weight, core, stats)``: ``[N-1]`` int64 edge ends in
        Prim's order (``src`` in the tree, ``dst`` joining it), ``[N-1]``
        float64 mutual-reachability weights, ``[N]`` float64 core distances,
        and timing/exactness counters.
    """
    nat = _require()
    paths = {"auto": 0, "dense": 1, "implicit": 2}
    if path not in paths:
        raise ValueError(f"path must be one of {sorted(paths)}, got {path!r}")
    feats = _as_features(features)
    if feats.shape[0] < 2:
        raise ValueError(f"mst needs at least 2 points, got {feats.shape[0]}")
    return nat.mst(feats, int(min_samples), int(num_threads), int(dense_max_points), paths[path], bool(half_matrix))


def hdbscan_raw_labels(
    features: np.ndarray,
    min_cluster_size: int = 200,
    min_samples: int | None = None,
    *,
    num_threads: int = 0,
    dense_max_points: int = DENSE_MAX_POINTS,
) -> np.ndarray:
    """HDBSCAN cluster ids, as :func:`focal.runtime.cluster.hdbscan_raw_labels`.

    Euclidean distance, excess of mass, ``allow_single_cluster=False``. One
    difference at the edge: a single point gives ``[-1]`` where the package
    raises.

    Args:
        features: ``[N, D]`` float32, rows L2-normalised, finite.
        min_cluster_size: smallest cluster (>= 2).
        min_samples: core-distance neighbourhood; None means min_cluster_size.
        num_threads: worker threads, 0 for the default.
        dense_max_points: largest N that gets the N x N float32 matrix.

    Returns:
        ``[N]`` int64 cluster ids, ``-1`` = noise, clusters numbered from 0.
    """
    nat = _require()
    feats = _as_features(features)
    n = feats.shape[0]
    if int(min_cluster_size) < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    if n < 2:
        return np.full(n, -1, dtype=np.int64)
    ms = int(min_cluster_size if min_samples is None else min_samples)
    if ms < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    src, dst, weight, _, _ = nat.mst(feats, ms, int(num_threads), int(dense_max_points), 0)
    # The package sorts its MST rows with this very call; equal weights keep
    # its order only if the same sort runs on the same array layout.
    tree = np.empty((n - 1, 3))
    tree[:, 0] = src
    tree[:, 1] = dst
    tree[:, 2] = weight
    order = np.argsort(tree.T[2]).astype(np.int64)
    return nat.labels_from_mst(n, src, dst, weight, order, int(min_cluster_size))


def labels_from_clusters(raw_labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The method's labelling, as :func:`focal.runtime.cluster.labels_from_clusters`,
    in double precision.

    The same labels except where a noise point is equally similar to two
    cluster means up to float32 rounding (exact ties on lattice-like
    features): the reference's float32 means and BLAS product then decide,
    and this exact arithmetic may decide the other way. :func:`cluster_labels`
    therefore finishes with the reference's own NumPy code.

    Args:
        raw_labels: ``[N]`` integer cluster ids, ``-1`` = noise.
        features: ``[N, D]`` float32, rows L2-normalised.

    Returns:
        ``[N]`` uint8, 1 = forged.
    """
    nat = _require()
    raw = np.ascontiguousarray(raw_labels, dtype=np.int64)
    return nat.method_labels(raw, _as_features(features))


def kmeans_cosine(features: np.ndarray, k: int = 2, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """Spherical k-means, as :func:`focal.runtime.cluster.kmeans_cosine`.

    The first centre is the row ``np.random.default_rng(seed).integers(N)``,
    drawn here exactly as the reference draws it.

    Returns:
        ``[N]`` int64 cluster ids in ``[0, k)``.
    """
    nat = _require()
    feats = _as_features(features)
    n = feats.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    first = int(np.random.default_rng(seed).integers(n))
    assign, _ = nat.kmeans_cosine(feats, int(k), first, int(max_iter), 0)
    return assign


def normalize_rows(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``[N, D]`` float32 rows divided by ``max(norm, eps)`` (norm summed in double).

    Agrees with :func:`focal.runtime.cluster.normalize_rows` to a float32
    rounding; :func:`cluster_labels` keeps the NumPy normalisation so that its
    input is bit-identical to the reference path's.
    """
    return _require().normalize_rows(_as_features(features), float(eps))


def cluster_labels(
    features: np.ndarray,
    method: str = "hdbscan",
    min_cluster_size: int = 200,
    min_samples: int | None = None,
    seed: int = 0,
    *,
    num_threads: int = 0,
) -> np.ndarray:
    """Forged/pristine labels, as :func:`focal.runtime.cluster.cluster_features`.

    Same validation, same normalisation (NumPy, so both paths see the same
    bits), same rules: identical features or fewer points than
    ``min_cluster_size`` are all pristine; HDBSCAN (exact, native) or cosine
    k-means with k = 2, then the largest cluster is pristine.

    Returns:
        ``[N]`` uint8, 1 = forged, 0 = pristine.
    """
    from focal.runtime import cluster as ref  # imported here: cluster.py imports this module

    if method not in ref.CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {ref.CLUSTER_METHODS}")
    feats = np.ascontiguousarray(ref._validate(features, min_cluster_size), dtype=np.float32)
    n = feats.shape[0]
    if np.ptp(feats, axis=0).max() == 0.0:
        return np.zeros(n, dtype=np.uint8)
    # The last step (largest cluster pristine, noise to the most cosine-similar
    # cluster mean) stays the reference's NumPy code, about a millisecond:
    # its float32 means and BLAS product decide exact ties between two means
    # (lattice-like features) by their rounding, which no other arithmetic
    # reproduces.
    if method == "kmeans":
        return ref.labels_from_clusters(kmeans_cosine(feats, k=2, seed=seed), feats)
    if n < min_cluster_size:
        return np.zeros(n, dtype=np.uint8)
    raw = hdbscan_raw_labels(feats, min_cluster_size, min_samples, num_threads=num_threads)
    return ref.labels_from_clusters(raw, feats)


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)`` for uint8 maps."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype != np.uint8:
        raise ValueError(f"labels must be [h, w] uint8, got {lab.shape} {lab.dtype}")
    if height < 1 or width < 1:
        raise ValueError(f"bad output size {height} x {width}")
    return _require().resize_nearest_u8(np.ascontiguousarray(lab), int(height), int(width))


def fuse_feature_maps(maps: list[np.ndarray]) -> np.ndarray:
    """The fusion rule (method.md section 1) straight to clustering rows.

    Each ``[C_i, h_i, w_i]`` float32 map is resized to the first map's
    ``h x w`` with ``F.interpolate(mode="nearest")``'s index rule, each
    pixel's vector L2-normalised per map (``F.normalize``, eps 1e-12), and the
    maps concatenated along the channels.

    Returns:
        ``[h * w, sum C_i]`` float32, row ``y * w + x``.
    """
    if not maps:
        raise ValueError("fuse_feature_maps needs at least one map")
    arrays = [np.ascontiguousarray(m, dtype=np.float32) for m in maps]
    for a in arrays:
        if a.ndim != 3:
            raise ValueError(f"each map must be [C, h, w], got shape {a.shape}")
    return _require().fuse_maps(arrays)
