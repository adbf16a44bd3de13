"""calibrate(): ranges measured once, cached by (graph, set, method), re-used without running anything."""

from __future__ import annotations

import json

import pytest

from focal.calibration import CalibrationCache, CalibrationConfig, FolderReader, calibrate, read_ranges


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from focal.export import export_onnx
    from focal.training import build_extractor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model.onnx"
    export_onnx(build_extractor("tiny"), path, 64)
    return path


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_methods_give_symmetric_ranges(tiny_onnx, few_photos, tmp_path, method):
    reader = FolderReader(few_photos, 64, limit=3)
    result = calibrate(tiny_onnx, reader, CalibrationConfig(method=method, num_bins=256), cache=tmp_path)
    assert not result.from_cache and result.tensors > 0 and result.ranges_file.is_file()
    ranges = read_ranges(result)
    assert "image" in ranges
    lo, hi = ranges["image"]
    assert hi > 0.5 and lo <= 0.0  # inputs are in [0, 1]; symmetric ranges reach below 0
    assert result.description["kind"] == "folder" and result.description["images"] == 3


def test_second_call_is_a_cache_hit_and_runs_nothing(tiny_onnx, few_photos, tmp_path, monkeypatch):
    reader = FolderReader(few_photos, 64, limit=3)
    first = calibrate(tiny_onnx, reader, cache=tmp_path)

    def boom(*args, **kwargs):
        raise AssertionError("recalibrated despite the cache")

    monkeypatch.setattr("onnxruntime.quantization.calibrate.create_calibrator", boom)
    second = calibrate(tiny_onnx, FolderReader(few_photos, 64, limit=3), cache=tmp_path)
    assert second.from_cache and second.ranges_file == first.ranges_file and second.key == first.key
    assert read_ranges(second) == read_ranges(first)
    meta = CalibrationCache(tmp_path).meta(first.key)
    assert meta["set"]["fingerprint"] == reader.fingerprint()


def test_cache_key_changes_with_method_set_and_graph(tiny_onnx, few_photos, tmp_path):
    base = calibrate(tiny_onnx, FolderReader(few_photos, 64, limit=2), cache=tmp_path)
    other_method = calibrate(tiny_onnx, FolderReader(few_photos, 64, limit=2),
                             CalibrationConfig(method="percentile"), cache=tmp_path)
    other_set = calibrate(tiny_onnx, FolderReader(few_photos, 64, limit=3), cache=tmp_path)
    assert len({base.key, other_method.key, other_set.key}) == 3
    assert not other_method.from_cache and not other_set.from_cache


def test_default_cache_follows_focal_cache(tiny_onnx, few_photos, tmp_path, monkeypatch):
    monkeypatch.setenv("FOCAL_CACHE", str(tmp_path / "fc"))
    result = calibrate(tiny_onnx, FolderReader(few_photos, 64, limit=1))
    assert result.ranges_file.parent == tmp_path / "fc" / "calibration"
    json.loads(result.ranges_file.read_text())


def test_wrong_input_size_is_a_clear_error(tiny_onnx, few_photos, tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        calibrate(tiny_onnx, FolderReader(few_photos, 48, limit=1, batch=2), cache=tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown calibration method"):
        CalibrationConfig(method="kl")
    with pytest.raises(ValueError, match="percentile"):
        CalibrationConfig(method="percentile", percentile=10)


def test_onnxruntime_below_the_export_floor_is_named() -> None:
    from focal.calibration.calibrate import check_ort_version

    check_ort_version("1.27.0")
    check_ort_version("1.32.0+cu128")
    with pytest.raises(ImportError, match=r"need onnxruntime >= 1.27, this is 1.18.1"):
        check_ort_version("1.18.1")
