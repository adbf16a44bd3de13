"""The native core (focal.runtime._native) against its NumPy / hdbscan oracle.

Clusterings are compared label for label (and by adjusted Rand index, the
project's rule for two clustering implementations) between
``cluster_features(..., backend="native")`` and ``backend="reference"``; the
spanning tree is compared bit for bit with the package's exact Prim's.
Skipped, with the reason, where the extension is not built (the C++ tests of
the kernels themselves: tests/runtime/test_native_cpp.py).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from focal.runtime import _native_api as na
from focal.runtime import cluster as ref

pytestmark = pytest.mark.skipif(
    not na.available(), reason="focal.runtime._native is not built (pip install . with a C++17 compiler)"
)


# ------------------------------------------------------------------ fixtures


def feature_map(
    rng: np.random.Generator,
    h: int,
    w: int,
    dim: int,
    regions: list[tuple[int, int, int, int]],
    spreads: list[float],
) -> tuple[np.ndarray, np.ndarray]:
    """A realistic h x w feature map: a smooth background source plus forged
    rectangles (y0, x0, y1, x1), each from its own source; rows L2-normalised
    in row-major pixel order. Returns features [h*w, dim] and the source id
    of each pixel."""
    src = np.zeros((h, w), dtype=np.int64)
    for i, (y0, x0, y1, x1) in enumerate(regions, start=1):
        src[y0:y1, x0:x1] = i
    centres = ref.normalize_rows(rng.normal(size=(len(regions) + 1, dim)))
    # Low-frequency variation inside each source (texture, lighting) ...
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    smooth = np.stack([np.sin(2 * np.pi * (a * yy + b * xx) + c) for a, b, c in rng.uniform(0, 2, size=(dim, 3))], -1)
    feats = centres[src] + 0.15 * smooth / np.sqrt(dim)
    # ... plus per-pixel noise, its strength depending on the source.
    sp = np.asarray(spreads)[src][..., None]
    feats = feats + sp * rng.normal(size=(h, w, dim)) / np.sqrt(dim)
    return ref.normalize_rows(feats.reshape(h * w, dim)).astype(np.float32), src.reshape(-1)


def blobs(rng: np.random.Generator, sizes: list[int], dim: int, spreads: list[float]) -> np.ndarray:
    centres = ref.normalize_rows(rng.normal(size=(len(sizes), dim)))
    ids = np.repeat(np.arange(len(sizes)), sizes)
    feats = centres[ids] + np.asarray(spreads)[ids][:, None] * rng.normal(size=(ids.size, dim)) / np.sqrt(dim)
    return ref.normalize_rows(feats[rng.permutation(ids.size)]).astype(np.float32)


def scenario(name: str) -> tuple[np.ndarray, int, int | None]:
    """(features, min_cluster_size, min_samples) of a named, seeded case."""
    rng = np.random.default_rng(sum(map(ord, name)))  # a fixed seed per case
    if name == "two_sources":
        feats, _ = feature_map(rng, 48, 48, 64, [(10, 12, 30, 34)], [0.5, 0.9])
        return feats, 100, None
    if name == "three_sources":
        feats, _ = feature_map(rng, 48, 56, 96, [(4, 4, 20, 24), (28, 30, 44, 52)], [0.4, 0.8, 1.2])
        return feats, 100, None
    if name == "single_source":
        feats, _ = feature_map(rng, 40, 40, 64, [], [0.7])
        return feats, 100, None
    if name == "sphere_noise":
        return ref.normalize_rows(rng.normal(size=(1500, 16))).astype(np.float32), 50, None
    if name == "duplicates":
        base = blobs(rng, [700, 300, 200], 48, [0.5, 0.8, 1.1])
        extra = base[rng.choice(base.shape[0], 500, replace=False)]
        return np.concatenate([base, extra])[rng.permutation(1700)], 60, 8
    if name == "lattice_ties":
        # Directions rounded to a coarse lattice: few distinct vectors, so
        # zero core distances (infinite lambdas) and exact ties everywhere.
        c = rng.normal(size=(3, 3))
        ids = rng.choice(3, 1500, p=[0.6, 0.25, 0.15])
        return ref.normalize_rows(np.round(c[ids] + 0.6 * rng.normal(size=(1500, 3)))).astype(np.float32), 60, 5
    if name == "min_samples_differs":
        feats, _ = feature_map(rng, 40, 48, 64, [(5, 5, 20, 25)], [0.6, 1.0])
        return feats, 80, 12
    if name == "small_min_cluster_size":
        return blobs(rng, [600, 250, 150], 32, [0.6, 0.6, 0.9]), 5, None
    raise KeyError(name)


SCENARIOS = [
    "two_sources",
    "three_sources",
    "single_source",
    "sphere_noise",
    "duplicates",
    "lattice_ties",
    "min_samples_differs",
    "small_min_cluster_size",
]


def package_prim(feats: np.ndarray, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The package's exact Prim's (its prims_balltree path), before sorting:
    core distances and the (src, dst, weight) edges in the order added."""
    from hdbscan._hdbscan_linkage import mst_linkage_core_vector
    from hdbscan.dist_metrics import DistanceMetric
    from sklearn.neighbors import BallTree

    x = feats.astype(np.float64)
    k = min(x.shape[0] - 1, min_samples) or 1
    core = BallTree(x, leaf_size=40).query(x, k=k + 1, dualtree=True, breadth_first=True)[0][:, -1].copy()
    edges = mst_linkage_core_vector(x, core, DistanceMetric.get_metric("euclidean"), 1.0)
    return core, edges


# -------------------------------------------------------------------- tests


def test_build_info_names_the_kernels() -> None:
    info = na.build_info()
    assert info is not None
    assert info["gemm_isa"] in {"avx512", "avx2+fma", "sse2", "neon", "generic"}
    assert info["select_isa"] in {"avx512", "avx2", "generic"}
    assert isinstance(info["half_matrix"], bool)
    assert info["default_threads"] >= 1
    print("native core:", info)


def native_labels(feats: np.ndarray, **kw: object) -> np.ndarray:
    return ref.cluster_features(feats, backend="native", **kw)  # type: ignore[arg-type]


def reference_labels(feats: np.ndarray, **kw: object) -> np.ndarray:
    return ref.cluster_features(feats, backend="reference", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SCENARIOS)
def test_final_labels_identical_to_reference(name: str) -> None:
    feats, mcs, ms = scenario(name)
    want = reference_labels(feats, min_cluster_size=mcs, min_samples=ms)
    got = native_labels(feats, min_cluster_size=mcs, min_samples=ms)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert adjusted_rand_score(want, got) == 1.0
    assert got.any() == want.any()  # the same "no forged cluster" decision


@pytest.mark.parametrize("name", ["two_sources", "three_sources", "duplicates", "lattice_ties", "min_samples_differs"])
def test_raw_labels_identical_to_package(name: str) -> None:
    feats, mcs, ms = scenario(name)
    x = ref.normalize_rows(feats)
    want = ref.hdbscan_raw_labels(x, mcs, ms)
    got = na.hdbscan_raw_labels(x, mcs, ms)
    np.testing.assert_array_equal(got, want)  # same partition, same numbering


def test_realistic_map_finds_the_forged_region() -> None:
    feats, src = feature_map(np.random.default_rng(3), 48, 48, 64, [(8, 8, 28, 30)], [0.4, 0.6])
    got = native_labels(feats, min_cluster_size=100)
    assert adjusted_rand_score(src, got) > 0.9
    assert got[src == 1].mean() > 0.9 and got[src == 0].mean() < 0.1


@pytest.mark.parametrize("path", ["dense", "dense-float32", "implicit"])
@pytest.mark.parametrize("name", ["duplicates", "lattice_ties", "small_min_cluster_size"])
def test_spanning_tree_bit_identical_to_package_prim(name: str, path: str) -> None:
    # "dense" stores the matrix as IEEE half where the CPU supports it (its
    # bigger storage error only sends more decisions to double precision).
    feats, mcs, ms = scenario(name)
    k = ms if ms is not None else mcs
    core, edges = package_prim(feats, k)
    half = path == "dense"
    src, dst, weight, got_core, stats = na.mst(feats, k, path=path.split("-")[0], half_matrix=half)
    assert stats["dense"] == path.startswith("dense")
    assert stats["half_matrix"] == (half and na.build_info()["half_matrix"])
    np.testing.assert_array_equal(got_core, core)
    np.testing.assert_array_equal(src, edges[:, 0].astype(np.int64))
    np.testing.assert_array_equal(dst, edges[:, 1].astype(np.int64))
    np.testing.assert_array_equal(weight, edges[:, 2])


def test_threads_and_paths_do_not_change_the_tree() -> None:
    feats, mcs, _ = scenario("three_sources")
    runs = [
        na.mst(feats, mcs, num_threads=1, path="dense"),
        na.mst(feats, mcs, num_threads=2, path="dense"),
        na.mst(feats, mcs, num_threads=2, path="dense", half_matrix=False),
        na.mst(feats, mcs, num_threads=2, path="implicit"),
        na.mst(feats, mcs, num_threads=1, path="implicit"),
    ]
    for other in runs[1:]:
        for a, b in zip(runs[0][:4], other[:4]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_portable_kernels_give_the_same_tree(isa: str) -> None:
    # FOCAL_NATIVE_ISA=generic forces the baseline (SSE2 / NEON) kernels,
    # =avx2 the AVX2 ones without AVX-512: a different float32 rounding and
    # other selection kernels, the same exact result.
    feats, mcs, _ = scenario("two_sources")
    code = (
        "import numpy as np, sys; from focal.runtime import _native_api as na;"
        "x = np.load(sys.argv[1]); r = na.mst(x, int(sys.argv[2]));"
        "i = na.build_info(); print(i['gemm_isa'], i['select_isa']);"
        "np.save(sys.argv[3], np.stack([r[0], r[1]]).astype(float)); np.save(sys.argv[4], r[2])"
    )
    tmp = os.environ.get("PYTEST_TMP", "/tmp")
    paths = [os.path.join(tmp, f"focal_native_{os.getpid()}_{isa}_{i}.npy") for i in range(3)]
    np.save(paths[0], feats)
    env = dict(os.environ, FOCAL_NATIVE_ISA=isa)
    out = subprocess.run(
        [sys.executable, "-c", code, paths[0], str(mcs), paths[1], paths[2]],
        env=env, capture_output=True, text=True, check=True,
    )
    gemm_isa, select_isa = out.stdout.split()
    if isa == "generic":
        assert gemm_isa in {"sse2", "neon", "generic"} and select_isa == "generic"
    else:  # AVX2 where the CPU has it, never AVX-512
        assert gemm_isa in {"avx2+fma", "sse2"} and select_isa in {"avx2", "generic"}
    src, dst, weight, _, _ = na.mst(feats, mcs)
    np.testing.assert_array_equal(np.load(paths[1]), np.stack([src, dst]).astype(float))
    np.testing.assert_array_equal(np.load(paths[2]), weight)
    for p in paths:
        os.unlink(p)


def _random_mismatches(seed: int, trials: int) -> list[str]:
    """Random inputs (Gaussian, three blobs, a 0/1/2 lattice full of ties,
    heavy duplicates; 2-900 points, 1-69 dimensions, min_samples 1-59)
    through every path (dense half, dense float32, implicit) against the
    package's exact Prim's: the cases whose tree differs in any bit."""
    rng = np.random.default_rng(seed)
    bad = []
    for trial in range(trials):
        n, d, k = int(rng.integers(2, 900)), int(rng.integers(1, 70)), int(rng.integers(1, 60))
        kind = trial % 4
        if kind == 0:
            x = rng.normal(size=(n, d))
        elif kind == 1:
            x = rng.normal(size=(3, d))[rng.integers(0, 3, n)] + 0.05 * rng.normal(size=(n, d))
        elif kind == 2:
            x = rng.integers(0, 3, size=(n, d)).astype(float)
        else:
            x = rng.normal(size=(max(1, n // 10), d))[rng.integers(0, max(1, n // 10), n)]
        x = ref.normalize_rows(x).astype(np.float32)
        core, edges = package_prim(x, min(k, n - 1))
        for path, half in (("dense", True), ("dense", False), ("implicit", False)):
            src, dst, w, got, _ = na.mst(x, k, path=path, half_matrix=half)
            same = (np.array_equal(got, core) and np.array_equal(src, edges[:, 0].astype(np.int64))
                    and np.array_equal(dst, edges[:, 1].astype(np.int64)) and np.array_equal(w, edges[:, 2]))
            if not same:
                bad.append(f"trial {trial} kind {kind} n {n} d {d} k {k} {path} half={half}")
    return bad


def test_random_inputs_give_the_package_tree() -> None:
    assert _random_mismatches(seed=123, trials=60) == []


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_random_inputs_give_the_package_tree_on_every_kernel(isa: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_native_cluster import _random_mismatches; print(_random_mismatches(seed=7, trials=40))"
    )
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__))],
                         env=dict(os.environ, FOCAL_NATIVE_ISA=isa), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_half_matrix_only_where_the_values_fit() -> None:
    # Rows of norm ~300 put squared distances far past half's 65504: the
    # dense path must fall back to float32 and still give the package's tree.
    feats, mcs, _ = scenario("two_sources")
    big = feats * np.float32(300.0)
    core, edges = package_prim(big, mcs)
    src, dst, weight, got_core, stats = na.mst(big, mcs, path="dense")
    assert not stats["half_matrix"]
    np.testing.assert_array_equal(got_core, core)
    np.testing.assert_array_equal(np.stack([src, dst]), edges[:, :2].T.astype(np.int64))
    np.testing.assert_array_equal(weight, edges[:, 2])


def _kth_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    cases = [rng.random(n).astype(np.float32) for n in (1, 2, 15, 16, 17, 31, 32, 33, 63, 100, 257, 1000, 4097)]
    cases += [rng.integers(0, 5, size=n).astype(np.float32) for n in (40, 333, 2048)]  # heavy ties
    cases += [np.full(100, 0.25, np.float32), np.arange(500, dtype=np.float32), np.arange(500, 0, -1).astype(np.float32)]
    cases.append(np.concatenate([np.zeros(300), rng.random(50)]).astype(np.float32))  # duplicate points: zeros
    return cases


def test_kth_smallest_matches_partition() -> None:
    from focal.runtime import _native

    for v in _kth_cases():
        keep = v.copy()
        n = v.size
        for k in sorted({0, n // 3, n // 2, n - 1, min(n - 1, 200)}):
            assert _native.kth_smallest(v, k) == np.partition(v, k)[k], (n, k)
        np.testing.assert_array_equal(v, keep)  # the input is left alone


def test_half_decoder_matches_numpy() -> None:
    from focal.runtime import _native

    bits = np.arange(1 << 16, dtype=np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    got = _native.half_to_float(bits)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))  # signed zeros too


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_kth_smallest_on_every_kernel(isa: str) -> None:
    code = (
        "import numpy as np, sys; from focal.runtime import _native;"
        "v = np.load(sys.argv[1]); print(' '.join(repr(float(_native.kth_smallest(v, k))) for k in range(0, v.size, 7)))"
    )
    v = _kth_cases()[-1]
    path = os.path.join(os.environ.get("PYTEST_TMP", "/tmp"), f"focal_kth_{os.getpid()}_{isa}.npy")
    np.save(path, v)
    out = subprocess.run([sys.executable, "-c", code, path], env=dict(os.environ, FOCAL_NATIVE_ISA=isa),
                         capture_output=True, text=True, check=True)
    os.unlink(path)
    assert [float(t) for t in out.stdout.split()] == [float(np.partition(v, k)[k]) for k in range(0, v.size, 7)]


def test_edge_cases_follow_the_reference() -> None:
    rng = np.random.default_rng(7)
    small = blobs(rng, [100, 50], 16, [0.5, 0.5])
    assert not native_labels(small, min_cluster_size=200).any()  # N below min_cluster_size
    got = native_labels(small, min_cluster_size=150)
    np.testing.assert_array_equal(got, reference_labels(small, min_cluster_size=150))
    one = ref.normalize_rows(rng.normal(size=(1, 8))).astype(np.float32)
    assert native_labels(one, min_cluster_size=2).tolist() == [0]
    assert native_labels(one, method="kmeans").tolist() == [0]
    assert na.hdbscan_raw_labels(one, 2).tolist() == [-1]  # the package raises here
    same = np.tile(ref.normalize_rows(np.ones((1, 16))), (500, 1)).astype(np.float32)
    assert not native_labels(same, min_cluster_size=50).any()
    two = ref.normalize_rows(rng.normal(size=(2, 8))).astype(np.float32)
    np.testing.assert_array_equal(na.hdbscan_raw_labels(two, 2), ref.hdbscan_raw_labels(two, 2))
    scaled = small * rng.uniform(0.5, 3.0, size=(small.shape[0], 1)).astype(np.float32)
    want = reference_labels(scaled, min_cluster_size=40)
    assert want.any() and not want.all()  # a real split, so the comparison can fail
    np.testing.assert_array_equal(native_labels(scaled, min_cluster_size=40), want)


def test_bad_inputs_raise_like_the_reference() -> None:
    feats = blobs(np.random.default_rng(0), [300], 8, [0.5])
    bad = feats.copy()
    bad[3, 1] = np.nan
    for backend in ("native", "reference"):
        with pytest.raises(ValueError, match="NaN or inf in 1 of 300 rows"):
            ref.cluster_features(bad, backend=backend)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="NaN or inf in 1 of 300 rows"):
            ref.cluster_features(bad, backend=backend, normalized=True)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"\[N, D\]"):
            ref.cluster_features(feats[None], backend=backend)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown clustering method 'dbscan'"):
            ref.cluster_features(feats, method="dbscan", backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_cluster_size must be >= 2, got 1"):
        na.hdbscan_raw_labels(feats, 1)
    with pytest.raises(ValueError, match="min_samples must be >= 1, got 0"):
        na.hdbscan_raw_labels(feats, 5, 0)
    with pytest.raises(ValueError, match="path must be one of .* got 'sparse'"):
        na.mst(feats, 5, path="sparse")
    with pytest.raises(ValueError, match="at least 2 points, got 1"):
        na.mst(feats[:1], 5)
    from focal.runtime import _native

    with pytest.raises(ValueError, match=r"k must be in \[0, 300\), got 300"):
        _native.kth_smallest(feats[:, 0].copy(), 300)


def test_backend_never_imports_the_public_module() -> None:
    # cluster.py -> _native_api.py is the only direction: the backend takes
    # prepared rows and leaves validation and labelling to cluster.py. (The
    # package's __init__ imports cluster anyway, so the source is read.)
    tree = ast.parse(Path(na.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names} | {str(node.module)}
    assert "focal.runtime._native" in imported  # the walk sees the imports
    assert not {m for m in imported if m.endswith("cluster") or ".cluster." in m}, sorted(imported)
    assert not hasattr(na, "cluster_labels") and not hasattr(na, "labels_from_clusters")


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
@pytest.mark.parametrize("name", ["two_sources", "three_sources", "lattice_ties", "duplicates"])
def test_rows_normalised_once_give_the_same_labels(name: str, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A caller that keeps normalised rows (localize, for the score) passes
    # normalized=True: the clustering must not normalise them again, and the
    # labels must stay those of the call that normalises the rows a second
    # time (which moves some rows by an ulp: a different input).
    feats, mcs, ms = scenario(name)
    raw = feats * np.random.default_rng(1).uniform(0.5, 3.0, size=(feats.shape[0], 1)).astype(np.float32)
    rows = ref.normalize_rows(raw)
    assert (ref.normalize_rows(rows) != rows).any()
    kw = dict(method=method, min_cluster_size=mcs, min_samples=ms)
    want = native_labels(rows, **kw)
    assert want.any(), "a scenario with a forged cluster, so that the comparison can fail"
    calls = []
    real = ref.normalize_rows
    monkeypatch.setattr(ref, "normalize_rows", lambda x, eps=1e-12: calls.append(x.shape) or real(x, eps))
    for backend in ("native", "reference"):
        if backend == "reference" and method == "hdbscan" and name != "two_sources":
            continue  # the package's HDBSCAN takes seconds; one scenario shows the path
        calls.clear()
        got = ref.cluster_features(rows, backend=backend, normalized=True, **kw)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got, want)
        assert (feats.shape[0], feats.shape[1]) not in calls, f"{backend}: rows normalised again"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 3])
def test_kmeans_identical_to_reference(seed: int, k: int) -> None:
    feats, _ = feature_map(np.random.default_rng(10 + seed), 40, 40, 64, [(5, 5, 22, 20)], [0.7, 1.0])
    np.testing.assert_array_equal(na.kmeans_cosine(feats, k=k, seed=seed), ref.kmeans_cosine(feats, k=k, seed=seed))
    want = reference_labels(feats, method="kmeans", seed=seed)
    assert want.any()
    np.testing.assert_array_equal(native_labels(feats, method="kmeans", seed=seed), want)


def test_reference_warnings_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reference silences the package's RuntimeWarnings on duplicate
    # points (zero distances; the result is well defined); the native path
    # never emits any and never calls the package. hdbscan 0.8.44 happens not
    # to warn on these inputs, so its fit is wrapped to warn as duplicate
    # points make numpy do: the reference must stay quiet and unchanged.
    import hdbscan

    feats, mcs, ms = scenario("lattice_ties")
    want = reference_labels(feats, min_cluster_size=mcs, min_samples=ms)
    fit, calls = hdbscan.HDBSCAN.fit, []

    def noisy_fit(self, X, *args, **kwargs):
        calls.append(X.shape)
        warnings.warn("divide by zero encountered in divide", RuntimeWarning, stacklevel=2)
        return fit(self, X, *args, **kwargs)

    monkeypatch.setattr(hdbscan.HDBSCAN, "fit", noisy_fit)
    with pytest.warns(RuntimeWarning, match="divide by zero"):  # outside the reference it is seen
        hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms).fit(feats.astype(np.float64))
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = reference_labels(feats, min_cluster_size=mcs, min_samples=ms)
        native = native_labels(feats, min_cluster_size=mcs, min_samples=ms)
    assert calls == [feats.shape]  # the reference ran the (warning) package once; the native path not at all
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(native, want)
