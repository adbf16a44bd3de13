"""Clustering rules of method.md section 4 (NumPy / hdbscan reference path)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from focal.runtime.cluster import (
    cluster_features,
    hdbscan_raw_labels,
    kmeans_cosine,
    labels_from_clusters,
    normalize_rows,
)


def blobs(rng: np.random.Generator, sizes: list[int], dim: int = 32, spread: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm points around random directions; returns features and blob ids."""
    centres = normalize_rows(rng.normal(size=(len(sizes), dim)))
    ids = np.repeat(np.arange(len(sizes)), sizes)
    feats = centres[ids] + spread * rng.normal(size=(ids.size, dim)) / np.sqrt(dim)
    perm = rng.permutation(ids.size)
    return normalize_rows(feats[perm]), ids[perm]


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_two_sources_minority_is_forged(rng: np.random.Generator, method: str) -> None:
    feats, ids = blobs(rng, [700, 300])
    labels = cluster_features(feats, method=method, min_cluster_size=100)
    assert labels.dtype == np.uint8 and labels.shape == (1000,)
    np.testing.assert_array_equal(labels, (ids == 1).astype(np.uint8))


def test_three_sources_all_but_largest_are_forged(rng: np.random.Generator) -> None:
    feats, ids = blobs(rng, [600, 250, 250])
    labels = cluster_features(feats, min_cluster_size=100)
    np.testing.assert_array_equal(labels, (ids != 0).astype(np.uint8))


def test_single_source_is_all_pristine(rng: np.random.Generator) -> None:
    feats, _ = blobs(rng, [1000])
    assert cluster_features(feats, min_cluster_size=100).sum() == 0


def test_fewer_points_than_min_cluster_size_is_all_pristine(rng: np.random.Generator) -> None:
    feats, _ = blobs(rng, [100, 50])
    assert not cluster_features(feats, min_cluster_size=200).any()
    one = normalize_rows(rng.normal(size=(1, 8)))
    assert cluster_features(one, min_cluster_size=2).tolist() == [0]
    assert cluster_features(one, method="kmeans").tolist() == [0]


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_identical_features_are_all_pristine(method: str) -> None:
    feats = np.tile(normalize_rows(np.ones((1, 16))), (500, 1))
    assert not cluster_features(feats, method=method, min_cluster_size=50).any()


def test_unnormalised_input_gives_the_same_labels(rng: np.random.Generator) -> None:
    feats, _ = blobs(rng, [700, 300])
    scaled = feats * rng.uniform(0.5, 3.0, size=(feats.shape[0], 1))
    np.testing.assert_array_equal(
        cluster_features(feats, min_cluster_size=100), cluster_features(scaled, min_cluster_size=100)
    )


def test_bad_inputs_raise_clear_errors(rng: np.random.Generator) -> None:
    feats, _ = blobs(rng, [300])
    bad = feats.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 of 300 rows"):
        cluster_features(bad)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        cluster_features(feats[None])
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_features(feats, method="dbscan")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        cluster_features(np.ones((10, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="min_cluster_size"):
        cluster_features(feats, min_cluster_size=1)


def test_noise_joins_nearest_cluster_mean_by_cosine() -> None:
    feats = normalize_rows(np.array([[1, 0], [1, 0.1], [1, -0.1], [0, 1], [0.1, 1], [0.9, 0.2], [0.2, 0.9]], float))
    raw = np.array([0, 0, 0, 1, 1, -1, -1])
    # Noise point 5 is near cluster 0 (pristine, bigger), point 6 near cluster 1 (forged).
    np.testing.assert_array_equal(labels_from_clusters(raw, feats), [0, 0, 0, 1, 1, 0, 1])


def test_ties_between_largest_clusters_take_lowest_id() -> None:
    feats = normalize_rows(np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], float))
    np.testing.assert_array_equal(labels_from_clusters(np.array([1, 1, 0, 0]), feats), [1, 1, 0, 0])


def test_no_or_one_cluster_is_all_pristine() -> None:
    feats = normalize_rows(np.eye(3))
    assert not labels_from_clusters(np.array([-1, -1, -1]), feats).any()
    assert not labels_from_clusters(np.array([0, -1, 0]), feats).any()


def test_raw_labels_match_the_hdbscan_package_defaults(rng: np.random.Generator) -> None:
    """The reference's exact algorithm choice gives the package's default partition."""
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    feats, _ = blobs(rng, [400, 200, 150], dim=8, spread=0.4)
    ours = hdbscan_raw_labels(feats, min_cluster_size=50)
    default = hdbscan.HDBSCAN(min_cluster_size=50).fit(feats.astype(np.float64)).labels_
    assert adjusted_rand_score(ours, default) == 1.0


def test_kmeans_is_deterministic_and_seeded(rng: np.random.Generator) -> None:
    feats, ids = blobs(rng, [300, 200])
    a = kmeans_cosine(feats, seed=3)
    np.testing.assert_array_equal(a, kmeans_cosine(feats, seed=3))
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(a, ids) == 1.0


def test_runtime_never_imports_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "import focal.runtime\n"
        "from focal.runtime import cluster_features, to_input, labels_to_mask\n"
        "img = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)\n"
        "x = to_input(img, 32)\n"
        "f = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)\n"
        "lab = cluster_features(f, min_cluster_size=50)\n"
        "labels_to_mask(lab[:256].reshape(16, 16), 40, 60)\n"
        "sys.exit(3 if 'torch' in sys.modules else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr or "focal.runtime imported torch"
