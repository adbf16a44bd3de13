"""``bench(cfg)``: per-stage latency of the runtime against the PyTorch reference, in one run.

For every backend and precision the artifact and machine allow, a fresh
``Detector`` is warmed up and then times each stage (decode, preprocess,
infer, cluster, postprocess) per image; throughput comes from batched
``detect_many`` passes (``repeat`` of them). The PyTorch reference
(``--reference``), when given, runs the same images in the same process,
so every ratio printed is measured in one run on one machine. Each
configuration runs in its own subprocess so its peak memory (max RSS) is
its own.

Also reported: the model's FLOPs (PyTorch's FLOP counter on the reference,
else a count of Conv/MatMul/Gemm in the ONNX graph) and the machine's
measured float32 matrix-multiply rate, so the report says how close
inference is to what this machine can do.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from focal._files import list_images
from focal.runtime.imageio import read_image
from focal.runtime.detector import STAGES
from focal.runtime.integrity import verify_file
from focal.runtime.manifest import InputSpec, Manifest, load_manifest


ARTIFACT_CHECKPOINT = "artifact"  # BenchConfig.reference: the checkpoint the artifact carries
COPY_MOVE_STAGE = "copy_move"  # the copy-move search's timing key (Result.timings), under BenchConfig.copy_move
DOUBLE_JPEG_STAGE = "double_jpeg"  # the double-JPEG cue's timing key, under BenchConfig.double_jpeg


@dataclass(frozen=True)
class BenchConfig:
    """What ``focal-bench`` measures."""

    artifact: str  # artifact folder
    images: list[str] = field(default_factory=list)  # image files; empty = synthetic 640x480 photos-like images
    # checkpoint for the PyTorch reference on the same images; ARTIFACT_CHECKPOINT: the one the artifact carries
    reference: str | None = None
    backends: list[str] | None = None  # None = every backend available here
    precisions: list[str] | None = None  # None = every ONNX precision in the artifact
    clustering: str = "hdbscan"  # clustering method timed
    batch: int = 1  # images per engine call in the throughput pass
    warmup: int = 2  # untimed runs first
    repeat: int = 1  # passes over the images, timed stage by stage and then for throughput
    threads: int | None = None  # ONNX Runtime / torch CPU threads
    # also time each backend/precision with the copy-move search on, beside the plain run (one
    # report, so the end-to-end ratio is measured side by side); its time is the "copy_move" column.
    # None: where the artifact's manifest lists the cue (the "plain" row is always timed without cues)
    copy_move: bool | None = None
    # likewise with the double-JPEG cue on (the images are timed as the JPEG files the bench writes)
    double_jpeg: bool | None = None


def _stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"median": statistics.median(v), "p90": v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]}


def matmul_gflops(n: int = 1024, repeat: int = 5) -> float:
    """Measured float32 matrix-multiply rate of this machine (NumPy's BLAS), GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def onnx_flops(model_path: Path) -> float | None:
    """Multiply-add FLOPs (x2) of Conv, MatMul and Gemm nodes, from ONNX shape inference."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        return None
    model = shape_inference.infer_shapes(onnx.load(str(model_path)))
    shapes: dict[str, list[int]] = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        # Symbolic dims (a dynamic batch) count as 1: FLOPs per image.
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
    total = 0.0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.output[0] in shapes and node.input[1] in shapes:
            out = shapes[node.output[0]]
            w = shapes[node.input[1]]  # [Cout, Cin/groups, kh, kw]
            total += 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
        elif node.op_type in ("MatMul", "Gemm") and all(i in shapes for i in node.input[:2]):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            if a and b:
                total += 2.0 * float(np.prod(a)) * float(b[-1])
    return total or None


def _images(cfg: BenchConfig) -> list[np.ndarray]:
    files: list[Path] = []
    for spec in cfg.images:
        p = Path(spec)
        files += list_images(p) if p.is_dir() else [p]
    if files:
        return [read_image(f) for f in files]
    rng = np.random.default_rng(0)
    return [np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8) for _ in range(4)]


def _encode_all(images: list[np.ndarray], folder: Path) -> list[Path]:
    """Write the images as JPEG files so the decode stage is measured on real files."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"bench_{i:03d}.jpg"
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(path)
    return paths


def _run_runtime(cfg: BenchConfig, backend: str, precision: str, cues: tuple[bool, bool], paths: list[str],
                 queue: Any) -> None:
    """Child process: time one backend/precision, with the cues ``(copy_move, double_jpeg)`` on or off,
    and report through ``queue``."""
    copy_move, double_jpeg = cues
    try:
        from focal.runtime import cluster
        from focal.runtime.detector import Detector

        stages = STAGES + ((COPY_MOVE_STAGE,) if copy_move else ()) + ((DOUBLE_JPEG_STAGE,) if double_jpeg else ())
        with Detector(cfg.artifact, backend=backend, precision=precision, clustering=cfg.clustering,
                      threads=cfg.threads, batch_size=cfg.batch, copy_move=copy_move, double_jpeg=double_jpeg) as det:
            for p in paths[: cfg.warmup]:
                det(p)
            per_stage: dict[str, list[float]] = {s: [] for s in stages}
            for _ in range(cfg.repeat):
                for p in paths:
                    r = det(p)
                    for s in stages:
                        per_stage[s].append(r.timings[s])
            # As many passes as the per-stage timing: one pass over a few images is too short a
            # window on a shared machine.
            t0 = time.perf_counter()
            n = sum(1 for _ in det.detect_many(paths * cfg.repeat, batch_size=cfg.batch))
            throughput = n / (time.perf_counter() - t0)
            queue.put({
                "backend": backend, "precision": precision, "copy_move": copy_move, "double_jpeg": double_jpeg,
                "engine": det.engine.name,
                "clustering_impl": cluster.resolve_backend("auto"),
                "stages": {s: _stats(v) for s, v in per_stage.items()},
                "throughput": throughput, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            })
    except Exception as exc:  # reported as a row of the table, the benchmark goes on
        queue.put({"backend": backend, "precision": precision, "copy_move": copy_move, "double_jpeg": double_jpeg,
                   "error": f"{type(exc).__name__}: {exc}"})


def _run_reference(cfg: BenchConfig, spec: InputSpec, split_threshold: float | None, paths: list[str],
                   queue: Any) -> None:
    """Child process: the PyTorch reference on the same files, stage by stage, under the artifact's input policy."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from focal.runtime.postprocess import localize
        from focal.runtime.preprocess import network_input
        from focal.training import ReferenceConfig, ReferenceDetector, build_extractor

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        input_size = spec.size
        ref = ReferenceDetector(build_extractor(weights=cfg.reference), ReferenceConfig(
            input_size=input_size, policy=spec.policy, max_side=spec.max_side, max_points=spec.max_points))
        per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
        for i, p in enumerate([*paths[: cfg.warmup], *paths * cfg.repeat]):
            t0 = time.perf_counter()
            img = read_image(p)
            t1 = time.perf_counter()
            geometry = ref.geometry(img.shape[0], img.shape[1])
            x = torch.from_numpy(network_input(img, input_size, geometry))[None]
            t2 = time.perf_counter()
            with torch.inference_mode():
                feats = ref.extractor(x)[0].float().numpy()
            t3 = time.perf_counter()
            loc = localize(feats, img.shape[0], img.shape[1], cfg.clustering, geometry=geometry,
                           split_threshold=split_threshold)
            if i >= cfg.warmup:
                for s, v in zip(STAGES, ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, loc.cluster_ms, loc.post_ms)):
                    per_stage[s].append(v)
        # FLOPs at the nominal S x S input (under "native" each image has its own cost).
        flops = FlopCounterMode(display=False)
        with flops, torch.inference_mode():
            ref.extractor(torch.zeros(1, 3, input_size, input_size))
        queue.put({
            "backend": "pytorch-eager", "precision": "fp32", "engine": f"torch {torch.__version__}",
            "stages": {s: _stats(v) for s, v in per_stage.items()},
            "flops": float(flops.get_total_flops()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })
    except Exception as exc:
        queue.put({"backend": "pytorch-eager", "precision": "fp32", "error": f"{type(exc).__name__}: {exc}"})


def _in_subprocess(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a clean process: its own peak memory, no inherited threads
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def available_backends() -> list[str]:
    """Backends this machine can run (``cpu`` always, ``cuda`` with onnxruntime-gpu, ``tensorrt`` with TensorRT)."""
    from focal.runtime.engines import _ort_providers, tensorrt_status

    out = ["cpu"]
    if "CUDAExecutionProvider" in _ort_providers():
        out.append("cuda")
    if tensorrt_status()[0]:
        out.append("tensorrt")
    return out


def reference_checkpoint(artifact: str | Path, manifest: Manifest) -> Path:
    """The checkpoint an artifact carries (its manifest's ``checkpoint``), its sha256 checked.

    Raises:
        ValueError: the artifact carries none, or the file is not the one the manifest names.
    """
    if manifest.checkpoint is None:
        raise ValueError(f"{artifact}: the artifact carries no checkpoint; pass --reference CHECKPOINT")
    path = Path(artifact) / manifest.checkpoint.file
    verify_file(path, manifest.checkpoint.sha256)
    return path


def _cue_label(copy_move: bool, double_jpeg: bool) -> str:
    """The cues of a run as its table label says them: " + copy-move", " + double-JPEG" or ""."""
    return (" + copy-move" if copy_move else "") + (" + double-JPEG" if double_jpeg else "")


def bench(cfg: BenchConfig, workdir: Path) -> dict[str, Any]:
    """Run every configuration and the reference; return the report (also the JSON written by the CLI)."""
    manifest = load_manifest(cfg.artifact)
    if cfg.reference == ARTIFACT_CHECKPOINT:
        cfg = replace(cfg, reference=str(reference_checkpoint(cfg.artifact, manifest)))
    paths = [str(p) for p in _encode_all(_images(cfg), workdir / "images")]
    backends = cfg.backends or available_backends()
    precisions = cfg.precisions or sorted({m.precision for m in manifest.models if m.kind == "onnx"})
    rows = []
    copy_move, double_jpeg = manifest.cue("copy-move", cfg.copy_move), manifest.cue("double-jpeg", cfg.double_jpeg)
    # The plain run, each cue alone and, with both on, the two together: what a run with both costs.
    cues = ([(False, False)] + ([(True, False)] if copy_move else []) + ([(False, True)] if double_jpeg else [])
            + ([(True, True)] if copy_move and double_jpeg else []))
    plan = [(b, p, c) for b in backends for p in precisions for c in cues
            if b != "tensorrt" or any(m.kind == "tensorrt" and m.precision == p for m in manifest.models)]
    for i, (b, p, c) in enumerate(plan, 1):
        print(f"focal-bench: [{i}/{len(plan) + bool(cfg.reference)}] {b} {p}{_cue_label(*c)} ...",
              file=sys.stderr, flush=True)
        rows.append(_in_subprocess(_run_runtime, cfg, b, p, c, paths))
    reference = None
    if cfg.reference:
        print(f"focal-bench: [{len(plan) + 1}/{len(plan) + 1}] PyTorch reference ...", file=sys.stderr, flush=True)
        reference = _in_subprocess(_run_reference, cfg, manifest.input, manifest.clustering.split_threshold, paths)
    model_file = Path(cfg.artifact) / manifest.model("onnx", "fp32").file
    flops = (reference or {}).get("flops") or onnx_flops(model_file)
    gflops_machine = matmul_gflops()
    for row in rows:
        if "error" in row:
            continue
        infer_s = row["stages"]["infer"]["median"] / 1e3
        if flops:
            row["achieved_gflops"] = flops / infer_s / 1e9
            row["share_of_matmul_peak"] = row["achieved_gflops"] / gflops_machine
        if reference and "error" not in reference:
            row["vs_reference"] = {s: reference["stages"][s]["median"] / max(row["stages"][s]["median"], 1e-9) for s in STAGES}
        total = sum(stage["median"] for stage in row["stages"].values())
        row["total_ms"] = total
        row["cluster_share"] = row["stages"]["cluster"]["median"] / total
        row["io_share_of_infer"] = sum(row["stages"][s]["median"] for s in ("decode", "preprocess", "postprocess")) / max(
            row["stages"]["infer"]["median"], 1e-9)
    return {
        "artifact": cfg.artifact, "extractor": manifest.extractor, "input_size": manifest.input.size,
        "images": len(paths), "config": asdict(cfg), "model_gflops": flops / 1e9 if flops else None,
        "machine_matmul_gflops": gflops_machine, "runs": rows, "reference": reference,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (medians in ms; p90 in brackets)."""
    rows = list(report["runs"]) + ([report["reference"]] if report.get("reference") else [])
    stages = (STAGES + ((COPY_MOVE_STAGE,) if any(r.get("copy_move") for r in rows) else ())
              + ((DOUBLE_JPEG_STAGE,) if any(r.get("double_jpeg") for r in rows) else ()))
    head = ("| backend | precision | " + " | ".join(stages)
            + " | total | img/s | peak MB | infer vs torch | cluster share |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        precision = r["precision"] + _cue_label(r.get("copy_move", False), r.get("double_jpeg", False))
        if "error" in r:
            lines.append(f"| {r['backend']} | {precision} | {r['error']} |")
            continue
        cells = [f"{r['stages'][s]['median']:.1f} ({r['stages'][s]['p90']:.1f})" if s in r["stages"] else "-"
                 for s in stages]
        cells.append(f"{r['total_ms']:.1f}" if "total_ms" in r else "-")
        speed = f"{r['vs_reference']['infer']:.2f}x" if "vs_reference" in r else "-"
        share = f"{r['cluster_share']:.0%}" if "cluster_share" in r else "-"
        thr = f"{r['throughput']:.2f}" if "throughput" in r else "-"
        lines.append(f"| {r['backend']} | {precision} | " + " | ".join(cells)
                     + f" | {thr} | {r['peak_rss_mb']:.0f} | {speed} | {share} |")
    extra = [f"model: {report['extractor']} at {report['input_size']} px, "
             + (f"{report['model_gflops']:.2f} GFLOP per image; " if report.get("model_gflops") else "")
             + f"machine float32 matmul: {report['machine_matmul_gflops']:.1f} GFLOP/s"]
    for r in report["runs"]:
        if "achieved_gflops" in r:
            extra.append(f"{r['backend']}/{r['precision']}: inference at {r['achieved_gflops']:.1f} GFLOP/s "
                         f"= {r['share_of_matmul_peak']:.0%} of the matmul rate; clustering: {r['clustering_impl']}")
    return "\n".join(lines + [""] + extra)


def write_report(report: dict[str, Any], path: Path) -> None:
    """JSON report on disk."""
    path.write_text(json.dumps(report, indent=2) + "\n")
