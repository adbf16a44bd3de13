"""The torch-free detector against the PyTorch reference, on real photos and a real (tiny) model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from focal.runtime import Detector, Result
from focal.runtime.engines import check_engine_compatibility, open_engine
from focal.runtime.manifest import load_manifest, save_manifest

from make_fixtures import write_double_jpeg_cases
from runtime_artifacts import export_artifact


def _photos(sample_data: Path, n: int) -> list[np.ndarray]:
    files = sorted((sample_data / "natural/bsds500").glob("*.jpg"))[:n]
    return [cv2.imread(str(f))[:, :, ::-1].copy() for f in files]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.mark.parametrize("clustering", ["kmeans", "hdbscan"])
def test_parity_with_reference_tiny(tiny_artifact: Path, tiny_extractor, sample_data: Path, clustering: str) -> None:
    from focal.training import ReferenceConfig, ReferenceDetector

    ref = ReferenceDetector(tiny_extractor, ReferenceConfig(clustering=clustering, min_cluster_size=50, input_size=128))
    with Detector(tiny_artifact, backend="cpu", clustering=clustering, min_cluster_size=50, keep_features=True) as det:
        for img in _photos(sample_data, 4):
            got, want = det(img), ref(img)
            cos = (got.features * want.features).sum(axis=1)
            assert cos.min() >= 0.9999
            np.testing.assert_array_equal(got.labels, want.labels)
            assert _iou(got.mask, want.mask) >= 0.99
            assert abs(got.score - want.score) < 1e-4
            assert got.mask.shape == img.shape[:2] and got.labels.shape == (16, 16)
            assert set(got.timings) == {"decode", "preprocess", "infer", "cluster", "postprocess"}


def test_parity_with_reference_lite(tmp_path: Path, sample_data: Path) -> None:
    torch = pytest.importorskip("torch")
    from focal.training import ReferenceConfig, ReferenceDetector, build_extractor

    torch.manual_seed(0)
    lite = build_extractor("lite")
    artifact = export_artifact(lite, tmp_path / "lite", size=256, clustering="kmeans")
    ref = ReferenceDetector(lite, ReferenceConfig(clustering="kmeans", input_size=256))
    with Detector(artifact, backend="cpu", keep_features=True) as det:
        for img in _photos(sample_data, 2):
            got, want = det(img), ref(img)
            assert (got.features * want.features).sum(axis=1).min() >= 0.9999
            assert _iou(got.mask, want.mask) >= 0.99
            np.testing.assert_array_equal(got.labels, want.labels)


def test_batches_match_single_images(tiny_artifact: Path, sample_data: Path) -> None:
    imgs = _photos(sample_data, 5)
    with Detector(tiny_artifact, backend="cpu", keep_features=True) as det:
        singles = [det(i) for i in imgs]
        batched = list(det.detect_many(imgs, batch_size=3))
    for a, b in zip(singles, batched):
        assert isinstance(b, Result)
        np.testing.assert_allclose(a.features, b.features, atol=1e-5)
        np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_overlapped_clustering_gives_the_same_results_in_order(
    tiny_artifact: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    import threading

    files = sorted(photo_dir.glob("*.jpg"))[:4]
    bad = photo_dir / "broken.jpg"
    bad.write_bytes(files[0].read_bytes()[:300])
    items = [files[0], bad, *files[1:]]
    with Detector(tiny_artifact, backend="cpu", min_cluster_size=50, overlap_clustering="off") as det:
        assert not det._overlap_clustering()  # forced off
        plain = list(det.detect_many(items, batch_size=batch_size))
    with Detector(tiny_artifact, backend="cpu", min_cluster_size=50, overlap_clustering="on") as det:
        threads: set[str] = set()
        localize = det._localize

        def spy(*args: object) -> list:
            threads.add(threading.current_thread().name)
            return localize(*args)

        monkeypatch.setattr(det, "_localize", spy)
        overlapped = list(det.detect_many(items, batch_size=batch_size))
    assert threads and all(t.startswith("focal-cluster") for t in threads)  # really off the main thread
    assert len(overlapped) == len(plain) == 5
    for a, b in zip(plain, overlapped):
        if isinstance(a, Exception):
            assert type(b) is type(a) and str(b) == str(a)
            continue
        assert a.path == b.path
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_auto_overlap_is_on_on_cpu(tiny_artifact: Path) -> None:
    with Detector(tiny_artifact, backend="cpu") as det:
        assert det._overlap_clustering()
    with pytest.raises(ValueError, match="overlap_clustering"):
        Detector(tiny_artifact, backend="cpu", overlap_clustering="yes")


def test_static_batch_model_is_fed_whole_batches(tmp_path: Path, tiny_extractor, sample_data: Path) -> None:
    artifact = export_artifact(tiny_extractor, tmp_path / "static", size=128, dynamic_batch=False)
    imgs = _photos(sample_data, 3)
    with Detector(artifact, backend="cpu") as det:
        out = list(det.detect_many(imgs, batch_size=2))
        assert all(isinstance(r, Result) for r in out) and len(out) == 3
        np.testing.assert_array_equal(out[2].labels, det(imgs[2]).labels)


def test_bad_file_is_reported_in_place(tiny_artifact: Path, photo_dir: Path) -> None:
    files = sorted(photo_dir.glob("*.jpg"))
    bad = photo_dir / "broken.jpg"
    bad.write_bytes(files[0].read_bytes()[:300])
    with Detector(tiny_artifact, backend="cpu") as det:
        out = list(det.detect_many([files[0], bad, files[1]], batch_size=2))
    assert isinstance(out[0], Result) and isinstance(out[2], Result)
    assert isinstance(out[1], ValueError) and "broken.jpg" in str(out[1])


def test_configuration_errors(tiny_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no onnx model in int8"):
        Detector(tiny_artifact, backend="cpu", precision="int8")
    with pytest.raises(ValueError, match="unknown backend"):
        Detector(tiny_artifact, backend="tpu")
    with pytest.raises(ValueError, match="unknown clustering"):
        Detector(tiny_artifact, backend="cpu", clustering="ward")
    with pytest.raises(FileNotFoundError, match="no focal.json"):
        Detector(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "focal.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable manifest"):
        Detector(broken)


def test_manifest_round_trip_and_validation(tiny_artifact: Path, tmp_path: Path) -> None:
    manifest = load_manifest(tiny_artifact)
    save_manifest(manifest, tmp_path)
    assert load_manifest(tmp_path) == manifest
    raw = json.loads((tmp_path / "focal.json").read_text())
    raw["input"]["colour"] = "BGR"
    (tmp_path / "focal.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        load_manifest(tmp_path)
    raw["input"].pop("colour")
    raw["version"] = 99
    (tmp_path / "focal.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="newer than this focal reads"):
        load_manifest(tmp_path)
    raw["version"] = 2
    raw["models"][0]["target"] = "jetson"
    (tmp_path / "focal.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown target 'jetson'"):
        load_manifest(tmp_path)
    # version 1 (before ModelFile.target) still reads, every model for every backend
    raw["version"] = 1
    for m in raw["models"]:
        m.pop("target", None)
    (tmp_path / "focal.json").write_text(json.dumps(raw))
    old = load_manifest(tmp_path)
    assert all(m.target is None for m in old.models) and old.model_for("cpu", "fp32").file == "model.onnx"



def test_the_manifest_names_the_cues_its_decision_joins(tiny_artifact: Path, tmp_path: Path) -> None:
    raw = json.loads((tiny_artifact / "focal.json").read_text())
    assert load_manifest(tiny_artifact).cues == []  # an export without --cue: the paper's rule
    for bad in (["double_jpeg"], ["double-jpeg", "double-jpeg"], "double-jpeg", [{"a": 1}]):
        (tmp_path / "focal.json").write_text(json.dumps({**raw, "cues": bad}))
        with pytest.raises(ValueError, match="cues must be a list of distinct names"):
            load_manifest(tmp_path)
    (tmp_path / "focal.json").write_text(json.dumps({**raw, "cues": ["copy-move", "double-jpeg"], "version": 4}))
    both = load_manifest(tmp_path)
    assert both.cue("copy-move") and both.cue("double-jpeg") and not both.cue("double-jpeg", False)
    with pytest.raises(ValueError, match="unknown cue"):
        both.cue("zero")
    save_manifest(both, tmp_path)
    assert load_manifest(tmp_path) == both
    old = {k: v for k, v in raw.items() if k != "cues"} | {"version": 3}  # a version-3 artifact has no cues
    (tmp_path / "focal.json").write_text(json.dumps(old))
    assert load_manifest(tmp_path).cues == []


def test_a_cue_left_unsaid_runs_as_the_manifest_says(tiny_artifact: Path, tmp_path: Path) -> None:
    splice = write_double_jpeg_cases(tmp_path / "cases")["splice"]
    listed = Path(shutil.copytree(tiny_artifact, tmp_path / "listed"))
    save_manifest(replace(load_manifest(listed), cues=["double-jpeg"]), listed)
    with Detector(tiny_artifact) as det:  # no cue in the manifest: off
        assert det.config.double_jpeg is False and det.config.copy_move is False
        assert det(splice).double_jpeg is None
    with Detector(listed) as det:  # listed: on, unasked
        assert det.config.double_jpeg is True and det.config.copy_move is False
        on = det(splice)
    assert on.double_jpeg is not None and on.double_jpeg.any() and "double_jpeg" in on.timings
    with Detector(listed, double_jpeg=False) as det:  # a run's False wins over the manifest
        off = det(splice)
    assert off.double_jpeg is None and "double_jpeg" not in off.timings
    with Detector(tiny_artifact, double_jpeg=True) as det:  # and a run's True over its absence
        assert det(splice).double_jpeg is not None


def test_the_embedded_default_lists_both_cues() -> None:
    assert load_manifest(Path(__file__).resolve().parents[2] / "runtime/default_model").cues == ["copy-move", "double-jpeg"]


@pytest.mark.parametrize("order", ["general first", "cpu first"])
def test_model_files_are_chosen_by_precision_and_target_whatever_the_order(tiny_artifact: Path, tmp_path: Path,
                                                                          order: str) -> None:
    """The CPU provider takes the ``target="cpu"`` graph, everything TensorRT the general one, in any list order."""
    base = load_manifest(tiny_artifact)
    fp32 = base.model()
    general = replace(fp32, file="model.int8.onnx", precision="int8", sha256="a" * 64)
    cpu = replace(general, file="model.int8.cpu.onnx", sha256="c" * 64, target="cpu")
    engine = replace(general, file="model.int8.engine", kind="tensorrt", sha256="e" * 64,
                     onnx_sha256=general.sha256, tensorrt="10.3.0", compute_capability="9.0")
    models = [fp32, general, cpu, engine] if order == "general first" else [engine, cpu, general, fp32]
    manifest = replace(base, models=models)
    assert manifest.model_for("cpu", "int8").file == "model.int8.cpu.onnx"
    for backend in ("cuda", "tensorrt-ep"):
        assert manifest.model_for(backend, "int8").file == "model.int8.onnx"
    # The engine was built from the general graph: no complaint, whichever entry comes first.
    check_engine_compatibility(engine, manifest, tmp_path, "10.3.0", "9.0")
    with pytest.raises(ValueError, match="tuned for ONNX Runtime's CPU provider"):
        open_engine(tmp_path, manifest, "tensorrt-ep", "int8", model_file="model.int8.cpu.onnx")

    # The same on real files: ONNX Runtime's CPU provider opens the CPU variant.
    art = tmp_path / "artifact"
    art.mkdir()
    onnx = (tiny_artifact / fp32.file).read_bytes()
    for entry in (fp32, general, cpu):
        (art / entry.file).write_bytes(onnx)
    real = [replace(m, sha256=fp32.sha256) for m in (cpu, general, fp32)]
    save_manifest(replace(base, models=real if order == "cpu first" else real[::-1]), art)
    with Detector(art, backend="cpu", precision="int8") as det:
        assert "model.int8.cpu.onnx" in det.engine.name


def test_full_cpu_detection_never_imports_torch(tiny_artifact: Path, photo_dir: Path) -> None:
    code = (
        "import sys\n"
        "from focal.runtime import Detector\n"
        f"det = Detector({str(tiny_artifact)!r}, backend='cpu', clustering='hdbscan', min_cluster_size=50)\n"
        f"r = det({str(next(photo_dir.glob('*.jpg')))!r})\n"
        "assert r.mask.shape[0] > 0\n"
        "sys.exit(3 if 'torch' in sys.modules else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr or "detection imported torch"


def test_fusion_of_two_artifacts_matches_the_fused_reference(tmp_path: Path, tiny_artifact: Path, tiny_extractor,
                                                             sample_data: Path) -> None:
    """Detector([a, b]) fuses like FusedExtractor: nearest resize to a's map, normalise, concatenate."""
    torch = pytest.importorskip("torch")
    from focal.training import FusedExtractor, ReferenceConfig, ReferenceDetector, build_extractor

    torch.manual_seed(1)
    hrnet = build_extractor("hrnet")  # stride 4: its 32 x 32 map is resized to tiny's 16 x 16
    hrnet_art = export_artifact(hrnet, tmp_path / "hrnet", size=128)
    ref = ReferenceDetector(FusedExtractor([tiny_extractor, hrnet]),
                            ReferenceConfig(clustering="kmeans", input_size=128))
    with Detector([tiny_artifact, hrnet_art], backend="cpu", clustering="kmeans", keep_features=True) as det:
        for img in _photos(sample_data, 2):
            got, want = det(img), ref(img)
            assert got.features.shape == (16 * 16, 16 + 32)
            assert (got.features * want.features).sum(axis=1).min() >= 0.9999
            np.testing.assert_array_equal(got.labels, want.labels)


def test_api_edges_give_clear_value_errors(tiny_artifact: Path, tmp_path: Path) -> None:
    with Detector(tiny_artifact, backend="cpu") as det:
        for bad, words in [(np.zeros((0, 0, 3), np.uint8), "H, W >= 1"), ("", "path is empty"),
                           (None, "got NoneType"), (str(tmp_path), "is a folder"),
                           (np.zeros((4, 4), np.uint8), "[H, W, 3] uint8")]:
            with pytest.raises(ValueError, match=re.escape(words)):
                det(bad)


def test_default_names_the_embedded_model() -> None:
    from focal.runtime.default import DEFAULT_DIR

    if not (DEFAULT_DIR / "focal.json").is_file():
        pytest.skip("this build bundles no default model")
    with Detector("default", backend="cpu") as det:
        assert det.artifact == DEFAULT_DIR


def test_the_heatmap_is_the_features_soft_map_at_the_images_size(tiny_artifact: Path, photo_dir: Path) -> None:
    from focal.runtime.postprocess import soft_map
    from focal.runtime.render import heatmap

    path = sorted(photo_dir.glob("*.jpg"))[0]
    with Detector(tiny_artifact, backend="cpu") as plain, \
            Detector(tiny_artifact, backend="cpu", heatmap=True, keep_features=True) as heated:
        off, on = plain(path), heated(path)
    assert off.heatmap is None and "heatmap" not in off.timings
    assert np.array_equal(on.mask, off.mask) and on.score == off.score  # the decision does not change
    h, w = on.mask.shape
    assert on.heatmap.shape == (h, w) and on.heatmap.dtype == np.float32
    assert 0.0 <= on.heatmap.min() and on.heatmap.max() <= 1.0 and on.heatmap.max() > on.heatmap.min()
    assert np.array_equal(on.heatmap, soft_map(on.features, on.labels, h, w))
    picture = heatmap(on.heatmap)
    assert picture.shape == (h, w, 3) and picture.dtype == np.uint8
    # One fixed scale: zero is (near) black, the full-scale value and above the same brightest colour.
    ramp = heatmap(np.array([[0.0, 0.25, 0.5, 0.9]], np.float32)).astype(int)
    assert ramp[0, 0].sum() < 10 and np.array_equal(ramp[0, 2], ramp[0, 3])
    assert ramp[0, 0].sum() < ramp[0, 1].sum() < ramp[0, 2].sum()
