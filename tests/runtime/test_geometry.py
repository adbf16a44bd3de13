"""The native input policy: aspect kept, bounded clustering grid, masks at the original pixels, parity with PyTorch."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from focal.runtime import Detector
from focal.runtime.geometry import labels_extent, pad_input, plan, pool_features
from focal.runtime.manifest import load_manifest
from runtime_artifacts import PARITY_SHAPES as SHAPES



@pytest.mark.parametrize("height, width", SHAPES + [(4000, 6000)])
def test_plan_keeps_the_aspect_and_bounds_the_grid(height: int, width: int) -> None:
    g = plan(height, width, "native", 512, 8, max_side=1024, max_points=4096)
    scale = min(1.0, 1024 / max(height, width))
    assert (g.in_height, g.in_width) == (round(height * scale), round(width * scale))
    assert g.pad_height % 8 == 0 and g.pad_width % 8 == 0
    assert 0 <= g.pad_height - g.in_height < 8 and 0 <= g.pad_width - g.in_width < 8
    rows, cols = g.grid
    assert rows * cols <= 4096
    if g.pool > 1:  # the smallest factor that fits
        assert math.ceil(g.cells_h / (g.pool - 1)) * math.ceil(g.cells_w / (g.pool - 1)) > 4096
    ext_h, ext_w = labels_extent(g)
    assert ext_h >= g.in_height and ext_w >= g.in_width


def test_small_images_are_never_enlarged() -> None:
    g = plan(100, 60, "native", 512, 8, max_side=1024, max_points=4096)
    assert (g.in_height, g.in_width, g.pad_height, g.pad_width, g.pool) == (100, 60, 104, 64, 1)


def test_pad_repeats_the_edge_and_pooling_averages_real_cells_only() -> None:
    g = plan(10, 13, "native", 64, 4, max_side=64, max_points=4)
    image = np.arange(10 * 13 * 3, dtype=np.uint8).reshape(10, 13, 3)
    padded = pad_input(image, g)
    assert padded.shape == (12, 16, 3)
    assert np.array_equal(padded[:10, :13], image) and np.array_equal(padded[11, 15], image[9, 12])
    fmap = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # cells 3 x 4, pooled by 2 -> 2 x 2
    assert g.pool == 2 and g.grid == (2, 2)
    pooled = pool_features(fmap, g)
    np.testing.assert_allclose(pooled[:, 0, 0], fmap[:, :2, :2].mean(axis=(1, 2)))
    np.testing.assert_allclose(pooled[:, 1, 1], fmap[:, 2:, 2:].mean(axis=(1, 2)))  # edge: 1 x 2 real cells


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown input policy 'tiles'"):
        plan(10, 10, "tiles", 64, 8)
    with pytest.raises(ValueError, match="max_side >= the stride"):
        plan(10, 10, "native", 64, 8, max_side=4, max_points=100)


@pytest.fixture(scope="module")
def native_artifact(tmp_path_factory, tiny_extractor) -> Path:
    from focal.export import ExportConfig, export

    out = tmp_path_factory.mktemp("native") / "tiny-native"
    export(ExportConfig(backbone="tiny", input_size=128, out=str(out), input_policy="native", max_side=512,
                        max_points=1024, clustering="kmeans", min_cluster_size=20), extractor=tiny_extractor)
    return out


def test_native_artifact_matches_the_pytorch_reference_at_every_shape(native_artifact: Path, tiny_extractor,
                                                                      rng: np.random.Generator) -> None:
    import cv2

    from focal.training import ReferenceConfig, ReferenceDetector

    spec = load_manifest(native_artifact).input
    assert (spec.policy, spec.max_side, spec.max_points) == ("native", 512, 1024)
    ref = ReferenceDetector(tiny_extractor, ReferenceConfig(clustering="kmeans", min_cluster_size=20, input_size=128,
                                                            policy="native", max_side=512, max_points=1024))
    with Detector(native_artifact, backend="cpu", keep_features=True) as det:
        for h, w in SHAPES:
            image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
            image[h // 4 : h // 2, w // 3 : w // 2] //= 3  # a region that differs
            got, want = det(image), ref(image)
            assert got.mask.shape == (h, w)
            cosine = (got.features * want.features).sum(axis=1)
            assert cosine.min() >= 0.9999, (h, w, cosine.min())
            assert np.array_equal(got.mask, want.mask), (h, w)
            assert got.mask.any() and not got.mask.all()  # k-means split: the comparison is not vacuous
            assert got.labels.size <= 1024


def test_a_dynamic_batch_native_graph_runs_each_shape_group_in_one_call(native_artifact: Path, tiny_extractor,
                                                                        tmp_path: Path,
                                                                        rng: np.random.Generator) -> None:
    import cv2

    from focal.export import ExportConfig, export

    batched = tmp_path / "tiny-native-batch"
    export(ExportConfig(backbone="tiny", input_size=128, out=str(batched), input_policy="native", max_side=512,
                        max_points=1024, clustering="kmeans", min_cluster_size=20, dynamic_batch=True),
           extractor=tiny_extractor)
    assert load_manifest(batched).input.dynamic_batch
    images = []
    for h, w in [(256, 384), (300, 200), (256, 384), (300, 200), (256, 384)]:  # two shapes, interleaved
        image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        image[h // 4 : h // 2, w // 3 : w // 2] //= 3
        images.append(image)
    with Detector(native_artifact, backend="cpu", keep_features=True) as det:
        alone = [det(image) for image in images]
    with Detector(batched, backend="cpu", keep_features=True, batch_size=len(images)) as det:
        engine = det.members[0].engine
        calls: list[tuple[int, ...]] = []
        infer = engine.infer

        def counting(feeds: dict) -> dict:
            calls.append(next(iter(feeds.values())).shape)
            return infer(feeds)

        engine.infer = counting  # type: ignore[method-assign]
        together = list(det.detect_many(images))
    assert sorted(calls) == [(2, 3, 304, 200), (3, 3, 256, 384)]  # one call per shape, padded to the stride
    for got, want in zip(together, alone):
        assert np.array_equal(got.mask, want.mask)
        assert (got.features * want.features).sum(axis=1).min() >= 0.9999
        assert got.mask.any() and not got.mask.all()


def test_unknown_policy_in_a_manifest_is_refused_on_load(native_artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(native_artifact, bad)
    raw = json.loads((bad / "focal.json").read_text())
    raw["input"]["policy"] = "tiles"
    (bad / "focal.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown input policy 'tiles'"):
        Detector(bad, backend="cpu")
    raw["input"].update(policy="native", max_points=5)
    (bad / "focal.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="max_points 5 is below the minimum cluster size 20"):
        Detector(bad, backend="cpu")


def test_native_export_refuses_what_it_cannot_do() -> None:
    from focal.export import ExportConfig

    # FP16, INT8 and engines are exported for native (tests/export/test_native_precision.py).
    ExportConfig(backbone="lite", input_policy="native", fp16=True, int8=True, calib="x", engine=True)
    ExportConfig(backbone="lite", input_policy="native", precision_report=True, verify="x")  # at native shapes
    with pytest.raises(ValueError, match="fusion"):
        ExportConfig(backbone="vit+hrnet", input_policy="native")
    with pytest.raises(ValueError, match="never a static --graph-batch above 1"):
        ExportConfig(backbone="lite", input_policy="native", batch=2)
    ExportConfig(backbone="lite", input_policy="native", dynamic_batch=True)  # images of one shape stack
    with pytest.raises(ValueError, match="vit-b: its weights hold one input size"):
        ExportConfig(backbone="vit-b", input_policy="native")
