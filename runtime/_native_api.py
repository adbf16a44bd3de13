"""Private backend: the compiled core (``focal.runtime._native``) on prepared rows.

:mod:`focal.runtime.cluster` is the public entry point: it validates and
L2-normalises the features once, then hands the rows to this module or to its
own NumPy / ``hdbscan`` reference (the oracle the core is tested against, and
the fallback where the extension is not built), and finishes both with the
same NumPy labelling. This module never imports :mod:`focal.runtime.cluster`;
it takes ``[N, D]`` float32 rows as given and only converts them to a
C-contiguous float32 array (no copy when they already are one).

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
built with ``FOCAL_NATIVE_OPENMP=ON``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # the extension is optional: a source checkout without a build has none
    from focal.runtime import _native  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised on machines without a build
    _native = None

__all__ = [
    "BACKENDS",
    "DENSE_MAX_POINTS",
    "available",
    "block_dct",
    "grid_cell_votes",
    "grid_window_hits",
    "grid_zero_counts",
    "build_info",
    "hdbscan_raw_labels",
    "kmeans_cosine",
    "mst",
    "patchmatch",
    "resolve_backend",
    "ring_descriptors",
]

# What a caller of a kernel with a NumPy reference may ask for.
BACKENDS: tuple[str, ...] = ("auto", "native", "reference")

# Above this many points the extension keeps no N x N matrix (bounded memory:
# O(N * D) plus per-thread buffers); below it, one N x N matrix (float32:
# 256 MiB at the threshold; IEEE half where supported: half that).
DENSE_MAX_POINTS = 8192

_PATHS = {"auto": 0, "dense": 1, "implicit": 2}


def available() -> bool:
    """True when the compiled extension imported."""
    return _native is not None


def build_info() -> dict[str, Any] | None:
    """How the extension was built and what it runs on, or None without one.

    Returns:
        ``{"openmp": bool, "default_threads": int, "gemm_isa": str,
        "select_isa": str, "half_matrix": bool, "arch": str}``; ``gemm_isa`` is the inner-product
        kernel family the CPU selected (``"avx512"``, ``"avx2+fma"``, ``"sse2"``, ``"neon"``
        or ``"generic"``), ``select_isa`` that of the selection, filter and
        Prim's kernels (``"avx512"``, ``"avx2"`` or ``"generic"``).
        ``FOCAL_NATIVE_ISA=generic`` or ``=avx2`` caps both.
        ``half_matrix``: the dense path can store its matrix as IEEE half.
    """
    return None if _native is None else dict(_native.build_info())


def resolve_backend(backend: str = "auto") -> str:
    """Which implementation a kernel with a NumPy reference runs (clustering, the copy-move search).

    Returns:
        ``"native"`` (the compiled core, ``focal.runtime._native``) or
        ``"reference"`` (the calling module's NumPy / ``hdbscan`` code);
        ``"auto"`` is native where the extension is built.

    Raises:
        ValueError: unknown backend.
        RuntimeError: ``"native"`` asked for where the extension is not built.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "reference":
        return "reference"
    if available():
        return "native"
    if backend == "native":
        raise RuntimeError(
            "the native core (focal.runtime._native) is not built; "
            "reinstall with a C++17 compiler (pip install .) or use backend='reference'"
        )
    return "reference"


def _require() -> Any:
    if _native is None:
        raise RuntimeError(
            "focal.runtime._native is not built; reinstall the package with a C++17 compiler "
            "(pip install .) or use the NumPy/hdbscan reference (focal.runtime.cluster, backend='reference')"
        )
    return _native


def _rows(features: np.ndarray) -> np.ndarray:
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
        dense_max_points: largest N that gets the N x N matrix.
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
    if path not in _PATHS:
        raise ValueError(f"path must be one of {sorted(_PATHS)}, got {path!r}")
    feats = _rows(features)
    if feats.shape[0] < 2:
        raise ValueError(f"mst needs at least 2 points, got {feats.shape[0]}")
    return nat.mst(feats, int(min_samples), int(num_threads), int(dense_max_points), _PATHS[path], bool(half_matrix))


def hdbscan_raw_labels(
    rows: np.ndarray,
    min_cluster_size: int,
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
        rows: ``[N, D]`` float32, L2-normalised, finite (as
            :func:`focal.runtime.cluster.normalize_rows` makes them).
        min_cluster_size: smallest cluster (>= 2).
        min_samples: core-distance neighbourhood (>= 1); None means min_cluster_size.
        num_threads: worker threads, 0 for the default.
        dense_max_points: largest N that gets the N x N matrix.

    Returns:
        ``[N]`` int64 cluster ids, ``-1`` = noise, clusters numbered from 0.
    """
    nat = _require()
    feats = _rows(rows)
    n = feats.shape[0]
    if int(min_cluster_size) < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    ms = int(min_cluster_size if min_samples is None else min_samples)
    if ms < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    if n < 2:
        return np.full(n, -1, dtype=np.int64)
    src, dst, weight, _, _ = nat.mst(feats, ms, int(num_threads), int(dense_max_points), 0)
    # The package sorts its MST rows with this very call; equal weights keep
    # its order only if the same sort runs on the same array layout.
    tree = np.empty((n - 1, 3))
    tree[:, 0] = src
    tree[:, 1] = dst
    tree[:, 2] = weight
    order = np.argsort(tree.T[2]).astype(np.int64)
    return nat.labels_from_mst(n, src, dst, weight, order, int(min_cluster_size))


def kmeans_cosine(rows: np.ndarray, k: int = 2, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """Spherical k-means, as :func:`focal.runtime.cluster.kmeans_cosine`.

    The first centre is the row ``np.random.default_rng(seed).integers(N)``,
    drawn here exactly as the reference draws it.

    Args:
        rows: ``[N, D]`` float32, L2-normalised, N >= 1.
        k: number of clusters (>= 1).
        seed: seed of the first centre.
        max_iter: iteration cap (>= 0); stops earlier when assignments stop changing.

    Returns:
        ``[N]`` int64 cluster ids in ``[0, k)`` (all ``-1`` when ``max_iter`` is 0).
    """
    nat = _require()
    feats = _rows(rows)
    n = feats.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < 1:
        raise ValueError(f"k-means needs at least 1 row, got shape {feats.shape}")
    first = int(np.random.default_rng(seed).integers(n))
    assign, _ = nat.kmeans_cosine(feats, int(k), first, int(max_iter), 0)
    return assign


def ring_descriptors(smooth: np.ndarray, magnitude: np.ndarray, radius: int, *, num_threads: int = 0) -> np.ndarray:
    """Ring descriptors, bit-identical to :func:`focal.runtime.copymove.ring_descriptors_reference`.

    Args:
        smooth: ``[H, W]`` float32 smoothed grey levels.
        magnitude: ``[H, W]`` float32 gradient magnitudes of ``smooth``.
        radius: outermost ring, pixels, ``1 <= radius < min(H, W)``, at most 15.
        num_threads: worker threads, 0 for the default.

    Returns:
        ``[H, W, P]`` int16 in eighths of a grey level, P = ``2 * radius + 1``
        rounded up to a multiple of 16, the padding 0.
    """
    return _require().ring_descriptors(
        np.ascontiguousarray(smooth, np.float32), np.ascontiguousarray(magnitude, np.float32), int(radius),
        int(num_threads),
    )


def patchmatch(
    descriptors: np.ndarray, stride: int, min_offset: int, iterations: int, seed: int, *, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PatchMatch field, bit-identical to :func:`focal.runtime.copymove.patchmatch_reference`.

    Args:
        descriptors: ``[H, W, P]`` int16 of :func:`ring_descriptors`, P 16 or 32.
        stride: grid step of the matched cells, pixels.
        min_offset: shortest offset a match may have, pixels.
        iterations: propagation and random-search rounds.
        seed: any int (taken modulo 2**64).
        num_threads: worker threads, 0 for the default; the field does not depend on it.

    Returns:
        ``(oy, ox, cost)``: ``[ceil(H / stride), ceil(W / stride)]`` int32
        offsets and float32 squared descriptor distances in grey levels
        squared (+inf: never matched).

    Raises:
        TypeError: ``descriptors`` is not int16 (a cast would change the field unasked).
    """
    descriptors = np.asarray(descriptors)
    if descriptors.dtype != np.int16:
        raise TypeError(f"patchmatch needs the int16 descriptors of ring_descriptors, got {descriptors.dtype}")
    return _require().patchmatch(
        np.ascontiguousarray(descriptors), int(stride), int(min_offset), int(iterations),
        int(seed) % 2**64, int(num_threads),
    )


def grid_zero_counts(gray: np.ndarray, cosines: np.ndarray, *, num_threads: int = 0) -> np.ndarray:
    """Dense DCT zero counts, identical to :func:`focal.runtime.jpeggrid.zero_counts_reference`.

    Args:
        gray: ``[H, W]`` uint8 grey plane, ``H, W >= 8``.
        cosines: ``[8, 8]`` float32 DCT-II basis, ``C[k, n]``.
        num_threads: worker threads, 0 for the default; the output does not depend on it.

    Returns:
        ``[H - 7, W - 7]`` uint8: AC coefficients (of 63) of the 8 x 8 window at ``(y, x)`` with
        ``|DCT(window - 128)| <= 0.5`` (they round to 0).
    """
    return _require().grid_zero_counts(
        np.ascontiguousarray(gray, np.uint8), np.ascontiguousarray(cosines, np.float32), int(num_threads),
    )

def grid_cell_votes(z: np.ndarray, zmax: int, margin: int, *, num_threads: int = 0) -> np.ndarray:
    """Per-cell grid votes, identical to :func:`focal.runtime.jpeggrid.cell_votes_reference` (no clip rule).

    Args:
        z: ``[H - 7, W - 7]`` uint8 zero counts (:func:`grid_zero_counts`), at least 8 x 8.
        zmax: a cell whose best window holds more zeros than this does not vote.
        margin: ``>= 1``; a cell votes only if its best window holds this many zeros more than any other.
        num_threads: worker threads, 0 for the default; the output does not depend on it.

    Returns:
        ``[(H - 7) // 8, (W - 7) // 8]`` int8: ``8 * gy + gx`` of the cell's best window, -1 for none.
    """
    return _require().grid_cell_votes(np.ascontiguousarray(z, np.uint8), int(zmax), int(margin), int(num_threads))


def grid_window_hits(votes: np.ndarray, grids: np.ndarray, bounds: np.ndarray, window: int, *,
                     num_threads: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows past their grid's bound, identical to :func:`focal.runtime.jpeggrid.window_hits_reference`.

    Args:
        votes: ``[H', W']`` int8 cell votes. grids: ``[G]`` int64 in 0..63. bounds: ``[G]`` float64.
        window: cells a side, >= 1.
        num_threads: worker threads, 0 for the default; the output does not depend on it.

    Returns:
        ``(g, y, x, count)``, ``[K]`` int32 each, grid by grid, then row-major.
    """
    return tuple(_require().grid_window_hits(
        np.ascontiguousarray(votes, np.int8), np.ascontiguousarray(grids, np.int64),
        np.ascontiguousarray(bounds, np.float64), int(window), int(num_threads),
    ))


def block_dct(gray: np.ndarray, cosines: np.ndarray, positions: np.ndarray, steps: np.ndarray, *,
              num_threads: int = 0) -> np.ndarray:
    """Quantised block DCT, bit-identical to :func:`focal.runtime.doublejpeg.block_dct_reference`.

    Args:
        gray: ``[H, W]`` uint8 grey plane (block grid at 0, 0; partial edge blocks left out).
        cosines: ``[8, 8]`` float64 DCT-II basis, ``C[k, n]``.
        positions: ``[K]`` indices ``8 * u + v`` in 0..63, ``1 <= K <= 64``.
        steps: ``[K]`` quantisation steps, >= 1.
        num_threads: worker threads, 0 for the default; the output does not depend on it.

    Returns:
        ``[H // 8, W // 8, K]`` int32 ``round(DCT(block - 128)[u, v] / step)``, half to even.
    """
    return _require().block_dct(
        np.ascontiguousarray(gray, np.uint8), np.ascontiguousarray(cosines, np.float64),
        np.ascontiguousarray(positions, np.int32), np.ascontiguousarray(steps, np.int32), int(num_threads),
    )
