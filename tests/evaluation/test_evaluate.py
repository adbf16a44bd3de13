"""focal-eval on a real (tiny) exported model and the shared samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from focal.evaluation.eval_cli import main
from focal.evaluation.metrics import best_threshold_scores, image_level, pixel_auc
from focal.evaluation.robustness import apply


def _dataset(tmp_path: Path, sample_data: Path, n_forged: int = 2, n_auth: int = 2) -> Path:
    """A folder dataset: real forgeries with masks plus authentic photos without."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    src = sample_data / "real-samples"
    for img in sorted((src / "images").glob("casia2_*"))[:n_forged]:
        (root / "images" / img.name).write_bytes(img.read_bytes())
        mask = src / "masks" / f"{img.stem}.png"
        (root / "masks" / mask.name).write_bytes(mask.read_bytes())
    for img in sorted((sample_data / "natural/bsds500").glob("*.jpg"))[:n_auth]:
        (root / "images" / img.name).write_bytes(img.read_bytes())
    return root


def test_eval_writes_every_output_and_resumes(tiny_artifact: Path, sample_data: Path, tmp_path: Path, capsys) -> None:
    data = _dataset(tmp_path, sample_data)
    out = tmp_path / "eval"
    args = [str(tiny_artifact), "--data", str(data), "--out", str(out), "--clustering", "hdbscan",
            "--clustering", "kmeans", "--min-cluster-size", "50", "--backend", "cpu"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| ds | 2 / 2 |" in table and "clustering: kmeans" in table
    summary = json.loads((out / "metrics.json").read_text())
    ds = summary["datasets"]["ds"]["methods"]
    for method in ("hdbscan", "kmeans"):
        e = ds[method]
        assert 0.0 <= e["iou"] <= 1.0 and 0.0 <= e["f1_macro"] <= 1.0
        assert e["false_alarm_images"] in (0.0, 0.5, 1.0)
        assert e["image"]["accuracy"] is not None
    assert ds["kmeans"]["false_alarm_images"] == 1.0  # k-means always splits: the paper's Table VIII point
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 2
    for name in ("grid_best.png", "grid_worst.png", "table.md", "records.jsonl"):
        assert (out / name).is_file()
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for rec in records:  # each image's mask and heatmap (the headline method's), at the image's size
        image = cv2.imread(rec["path"])
        mask = cv2.imread(str(out / rec["mask"]), cv2.IMREAD_GRAYSCALE)
        heat = cv2.imread(str(out / rec["heatmap"]), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == heat.shape == image.shape[:2] and heat.max() > heat.min()
    grid = cv2.imread(str(out / "grid_best.png"))
    shapes = [cv2.imread(r["path"]).shape for r in records if not r["authentic"]]
    assert grid.shape[1] >= 4 * min(int(w * 200 / h) for h, w, _ in shapes)  # four tiles a row
    before = (out / "records.jsonl").read_text()
    capsys.readouterr()
    assert main(args + ["--json"]) == 0  # resumed: nothing recomputed
    assert (out / "records.jsonl").read_text() == before
    assert json.loads(capsys.readouterr().out) == summary  # --json: the summary on stdout, not the table


def test_robustness_and_compare(tiny_artifact: Path, tiny_extractor, sample_data: Path, tmp_path: Path, capsys) -> None:
    from focal.training import save_checkpoint

    ckpt = save_checkpoint(tiny_extractor, tmp_path / "tiny.safetensors")
    data = _dataset(tmp_path, sample_data, n_forged=1, n_auth=0)
    out = tmp_path / "eval"
    assert main([str(tiny_artifact), "--data", str(data), "--out", str(out), "--min-cluster-size", "50",
                 "--backend", "cpu", "--robustness", "--compare", str(ckpt)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    # The artifact is the same model as the checkpoint: identical masks.
    assert summary["compare"]["mask_iou"] == pytest.approx(1.0)
    assert summary["compare"]["score_diff_max"] < 1e-4
    assert {"jpeg|50", "blur|3.0", "noise|15.0", "resize|0.25"} <= set(summary["robustness"])
    assert (out / "robustness.png").is_file()



def test_the_artifacts_min_cluster_size_is_used_unless_overridden(tiny_artifact: Path, sample_data: Path,
                                                                   tmp_path: Path) -> None:
    from dataclasses import replace

    from focal.evaluation.evaluate import EvalConfig, evaluate
    from focal.runtime import Detector
    from focal.runtime.imageio import read_image
    from focal.runtime.manifest import ClusteringSpec, load_manifest, save_manifest
    from focal.runtime.postprocess import localize

    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, artifact)
    manifest = load_manifest(artifact)
    save_manifest(replace(manifest, clustering=ClusteringSpec("hdbscan", min_cluster_size=20)), artifact)
    data = _dataset(tmp_path, sample_data, n_forged=2, n_auth=1)
    cfg = EvalConfig(model=str(artifact), data=[str(data)], out=str(tmp_path / "eval"), backend="cpu")
    summary = evaluate(cfg)
    assert summary["min_cluster_size"] == 20  # the manifest's, on a 16 x 16 map; not the paper's 200
    records = [json.loads(line) for line in (tmp_path / "eval/records.jsonl").read_text().splitlines()]
    with Detector(artifact, backend="cpu") as det:
        for r in records:
            image = read_image(r["path"])
            want = localize(det.feature_map(image), *image.shape[:2], "hdbscan", 20).mask > 0
            got = cv2.imread(str(tmp_path / "eval" / r["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            np.testing.assert_array_equal(got, want)
    assert evaluate(replace(cfg, out=str(tmp_path / "eval50"), min_cluster_size=50))["min_cluster_size"] == 50


def test_missing_dataset_is_a_clear_error(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tiny_artifact), "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_auc_and_best_threshold_hand_cases() -> None:
    truth = np.array([[1, 1, 0, 0]], bool)
    assert pixel_auc(np.array([[0.9, 0.8, 0.1, 0.2]]), truth) == 1.0
    assert pixel_auc(np.array([[0.1, 0.2, 0.9, 0.8]]), truth) == 0.0
    assert pixel_auc(np.array([[0.5, 0.5, 0.5, 0.5]]), truth) == 0.5  # ties
    assert np.isnan(pixel_auc(np.zeros((1, 4)), np.zeros((1, 4), bool)))
    # Best threshold 0.8 flags pixels 0, 1 and 3: TP 2, FP 1 -> F1 0.8, IoU 2/3.
    f1, iou = best_threshold_scores(np.array([[0.9, 0.8, 0.1, 0.85]]), truth)
    assert (f1, iou) == (pytest.approx(0.8), pytest.approx(2 / 3))
    img = image_level(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 0, 1], bool), np.array([1, 0, 1, 0], bool))
    assert img["auc"] == 1.0 and img["accuracy"] == 0.5 and img["balanced_accuracy"] == 0.5


def test_perturbations_are_real_and_deterministic(rng: np.random.Generator) -> None:
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), (0, 0), 2)
    assert apply(img, "resize", 0.5).shape == (32, 40, 3)
    np.testing.assert_array_equal(apply(img, "noise", 7.0), apply(img, "noise", 7.0))
    assert np.abs(apply(img, "jpeg", 50).astype(int) - img).mean() > 0.1
    with pytest.raises(ValueError, match="unknown perturbation"):
        apply(img, "rotate", 1.0)


def test_a_native_artifact_is_scored_on_the_masks_the_runtime_gives(tiny_extractor, sample_data: Path,
                                                                    tmp_path: Path) -> None:
    # The runtime crops the padded map, pools it to max_points cells and maps the mask back: the
    # evaluation must score those masks, not the raw map stretched over the image.
    from focal.evaluation.evaluate import EvalConfig, evaluate
    from focal.export import ExportConfig, export
    from focal.runtime import Detector
    from focal.runtime.imageio import read_image

    artifact = tmp_path / "native"
    export(ExportConfig(backbone="tiny", input_size=64, out=str(artifact), input_policy="native", max_side=256,
                        max_points=256, clustering="kmeans", min_cluster_size=20), extractor=tiny_extractor)
    data = _dataset(tmp_path, sample_data, n_forged=2, n_auth=1)
    evaluate(EvalConfig(model=str(artifact), data=[str(data)], out=str(tmp_path / "eval"), backend="cpu",
                        clustering=["kmeans"]))
    records = [json.loads(line) for line in (tmp_path / "eval/records.jsonl").read_text().splitlines()]
    with Detector(artifact, backend="cpu", exif_orientation=False) as det:
        for r in records:
            image = read_image(r["path"], apply_orientation=False)
            assert det.geometry(*image.shape[:2]).pool > 1  # the pooling the raw map would skip
            want = det(image).mask > 0
            got = cv2.imread(str(tmp_path / "eval" / r["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            np.testing.assert_array_equal(got, want)
