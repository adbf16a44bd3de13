"""focal-bench on a real (tiny) artifact against its PyTorch reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from focal.evaluation.bench import STAGES, matmul_gflops, onnx_flops
from focal.evaluation.bench_cli import main


def test_bench_reports_stages_ratios_and_rates(tiny_artifact: Path, tiny_extractor, photos: Path, tmp_path: Path,
                                               capsys) -> None:
    from focal.training import save_checkpoint

    ckpt = save_checkpoint(tiny_extractor, tmp_path / "tiny.safetensors")
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:6]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "bench.json"
    assert main([str(tiny_artifact), "--reference", str(ckpt), "--backend", "cpu", "--warmup", "1",
                 "--images", str(images), "--repeat", "2", "--clustering", "kmeans", "--report", str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["images"] == 6  # the files given, not the 4 synthetic defaults
    (run,) = report["runs"]
    ref = report["reference"]
    assert "error" not in run and "error" not in ref, (run, ref)
    for row in (run, ref):
        assert set(row["stages"]) == set(STAGES)
        for s in STAGES:  # every stage does real work on every image: a positive time, p90 above the median
            assert 0 < row["stages"][s]["median"] <= row["stages"][s]["p90"], (row["backend"], s, row["stages"][s])
    medians = {s: run["stages"][s]["median"] for s in STAGES}
    # The stages are the whole per-image path: their sum is the end-to-end time of
    # an image, which the throughput pass measures independently (1.3-1.6 x the
    # sum on a loaded 2-core CPU: thread start-up; a pipeline overlapping I/O and
    # clustering with inference can be faster). Stages in the wrong unit or an
    # inverted or miscounted throughput are off by far more.
    per_image_ms = 1e3 / run["throughput"]
    assert sum(medians.values()) / 4 <= per_image_ms <= 5 * sum(medians.values()), (per_image_ms, medians)
    # The derived figures are those of the measured ones.
    assert run["cluster_share"] == pytest.approx(medians["cluster"] / sum(medians.values()))
    assert run["vs_reference"] == pytest.approx({s: ref["stages"][s]["median"] / medians[s] for s in STAGES})
    assert report["model_gflops"] == pytest.approx(ref["flops"] / 1e9)
    assert report["model_gflops"] * 1e9 == pytest.approx(onnx_flops(tiny_artifact / "model.onnx"))
    assert run["achieved_gflops"] == pytest.approx(report["model_gflops"] / (medians["infer"] / 1e3))
    assert run["peak_rss_mb"] > 0 and report["machine_matmul_gflops"] > 0
    # The table shows the same medians as the JSON.
    cpu_row = next(line for line in table.splitlines() if line.startswith("| cpu | fp32 |"))
    assert all(f"{medians[s]:.1f} (" in cpu_row for s in STAGES), cpu_row
    assert any(line.startswith("| pytorch-eager | fp32 |") for line in table.splitlines())


@pytest.mark.parametrize("flag, stage, label", [("--copy-move", "copy_move", "copy-move"),
                                               ("--double-jpeg", "double_jpeg", "double-JPEG")])
def test_cue_runs_are_timed_beside_the_plain_ones(tiny_artifact: Path, photos: Path, tmp_path: Path, capsys,
                                                  flag: str, stage: str, label: str) -> None:
    out = tmp_path / "bench.json"
    image = sorted(photos.glob("*.jpg"))[0]
    assert main([str(tiny_artifact), "--backend", "cpu", "--precision", "fp32", "--warmup", "0", "--images",
                 str(image), flag, "--report", str(out)]) == 0
    table = capsys.readouterr().out
    plain, cued = json.loads(out.read_text())["runs"]
    assert "error" not in plain and "error" not in cued, (plain, cued)
    assert (plain[stage], cued[stage]) == (False, True)
    assert set(plain["stages"]) == set(STAGES) and set(cued["stages"]) == {*STAGES, stage}
    assert cued["stages"][stage]["median"] > 0  # the cue ran on the image
    for run in (plain, cued):  # the total is the stages' sum, the cue's time included
        assert run["total_ms"] == pytest.approx(sum(v["median"] for v in run["stages"].values()))
    lines = table.splitlines()
    assert f"| {stage} | total |" in lines[0]
    row = next(line for line in lines if line.startswith(f"| cpu | fp32 + {label} |"))
    assert f"{cued['stages'][stage]['median']:.1f} (" in row and f"| {cued['total_ms']:.1f} |" in row
    column = [c.strip() for c in lines[0].split("|")].index(stage)
    plain_row = next(line for line in lines if line.startswith("| cpu | fp32 |"))
    assert [c.strip() for c in plain_row.split("|")][column] == "-"  # no cue in the plain run


def test_both_cues_are_also_timed_together(tiny_artifact: Path, photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    image = sorted(photos.glob("*.jpg"))[0]
    assert main([str(tiny_artifact), "--backend", "cpu", "--precision", "fp32", "--warmup", "0", "--images",
                 str(image), "--copy-move", "--double-jpeg", "--report", str(out)]) == 0
    table = capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert [(r["copy_move"], r["double_jpeg"]) for r in runs] == [(False, False), (True, False), (False, True),
                                                                  (True, True)]
    both = runs[-1]
    assert set(both["stages"]) == {*STAGES, "copy_move", "double_jpeg"}
    assert both["total_ms"] == pytest.approx(sum(v["median"] for v in both["stages"].values()))
    assert any(line.startswith("| cpu | fp32 + copy-move + double-JPEG |") for line in table.splitlines())


def test_onnx_flop_count_matches_the_convolutions(tiny_artifact: Path) -> None:
    # tiny at 128: three 3x3 convs 3->16 (64x64 out), 16->16 (32x32), 16->16 (16x16).
    expected = 2 * (64 * 64 * 16 * 3 * 9 + 32 * 32 * 16 * 16 * 9 + 16 * 16 * 16 * 16 * 9)
    assert onnx_flops(tiny_artifact / "model.onnx") == expected
    assert matmul_gflops(n=256, repeat=2) > 0


def test_cluster_benchmark_times_the_reference_path_not_the_native_one(monkeypatch) -> None:
    # benchmarks/bench_cluster.py once timed `cluster_features` with its default
    # backend ("auto" = native where built) as "the reference".
    import importlib.util
    import sys


    import focal.runtime.cluster as cluster

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cluster.py"
    spec = importlib.util.spec_from_file_location("bench_cluster", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_cluster", bench)
    spec.loader.exec_module(bench)
    seen: list[str] = []
    real = cluster.cluster_features

    def spy(*args, **kwargs):
        seen.append(kwargs.get("backend", "auto"))
        return real(*args, **kwargs)

    monkeypatch.setattr(cluster, "cluster_features", spy)
    feats = bench.feature_map(16, 8, seed=0)  # 256 points
    bench._work("reference", feats, 1, 1)
    bench._work("reference_kmeans", feats, 1, 1)
    assert seen == ["reference", "reference"]


def test_the_reference_is_timed_under_the_artifacts_input_policy(tiny_extractor, photos: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    # Run in this process (the CLI spawns it) so that the inputs the reference is given can be seen.
    import focal.runtime.preprocess as preprocess
    from focal.evaluation.bench import BenchConfig, _run_reference
    from focal.export import ExportConfig, export
    from focal.runtime import Detector
    from focal.runtime.imageio import read_image
    from focal.runtime.manifest import load_manifest
    from focal.training import save_checkpoint

    art = tmp_path / "native"
    export(ExportConfig(backbone="tiny", input_size=64, out=str(art), input_policy="native", max_side=256,
                        max_points=256), extractor=tiny_extractor)
    ckpt = save_checkpoint(tiny_extractor, tmp_path / "tiny.safetensors")
    paths = [str(p) for p in sorted(photos.glob("*.jpg"))[:2]]
    shapes: list[tuple[int, ...]] = []
    real = preprocess.network_input

    def recording(image, size, geometry=None, *args, **kwargs):
        out = real(image, size, geometry, *args, **kwargs)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(preprocess, "network_input", recording)

    class Queue(list):
        put = list.append

    queue = Queue()
    _run_reference(BenchConfig(artifact=str(art), reference=str(ckpt), clustering="kmeans", warmup=0),
                   load_manifest(art).input, None, paths, queue)
    assert "error" not in queue[0], queue[0]
    with Detector(art, backend="cpu") as det:
        want = []
        for p in paths:
            g = det.geometry(*read_image(p).shape[:2])
            want.append((3, g.pad_height, g.pad_width))
    assert shapes == want and all(s != (3, 64, 64) for s in shapes)  # native inputs, not the 64 x 64 square


def test_reference_without_a_value_runs_the_checkpoint_the_artifact_carries(tiny_artifact: Path, photos: Path,
                                                                             tmp_path: Path, capsys) -> None:
    import shutil

    from focal.training.from_onnx import checkpoint_from_artifact

    art = Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
    args = [str(art), "--reference", "--backend", "cpu", "--warmup", "0", "--clustering", "kmeans",
            "--report", str(tmp_path / "bench.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "carries no checkpoint" in err and "Traceback" not in err
    checkpoint_from_artifact(art, sorted(photos.glob("*.jpg"))[:2])
    assert main(args) == 0
    ref = json.loads((tmp_path / "bench.json").read_text())["reference"]
    assert "error" not in ref and ref["backend"] == "pytorch-eager", ref
