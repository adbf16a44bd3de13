"""focal-bench on a real (tiny) artifact against its PyTorch reference."""

from __future__ import annotations

import json
from pathlib import Path

from focal.evaluation.bench import STAGES, matmul_gflops, onnx_flops
from focal.evaluation.bench_cli import main


def test_bench_reports_stages_ratios_and_rates(tiny_artifact: Path, tiny_extractor, tmp_path: Path, capsys) -> None:
    from focal.training import save_checkpoint

    ckpt = save_checkpoint(tiny_extractor, tmp_path / "tiny.safetensors")
    out = tmp_path / "bench.json"
    assert main([str(tiny_artifact), "--reference", str(ckpt), "--backend", "cpu", "--warmup", "1",
                 "--clustering", "kmeans", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| cpu | fp32 |" in table and "| pytorch-eager | fp32 |" in table
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert set(run["stages"]) == set(STAGES)
    assert all(run["stages"][s]["median"] >= 0 for s in STAGES)
    assert run["vs_reference"]["infer"] > 0 and run["peak_rss_mb"] > 0 and run["throughput"] > 0
    assert report["model_gflops"] > 0 and report["machine_matmul_gflops"] > 0
    assert report["reference"]["flops"] > 0


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

    import numpy as np

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
