"""INT8 Q/DQ placement side by side: ORT's default (Conv outputs quantized too) vs inputs only (TensorRT's).

Exports ``lite`` (ImageNet encoder, random seeded neck) with ``--int8``, then
quantizes the same prepared graph with the same calibration ranges once per
placement and target, and prints for each graph: the placement counts
(:func:`focal.export.qdq.count_qdq`), how many nodes ONNX Runtime's CPU
provider runs in integer kernels, the per-pixel feature cosine to the FP32
graph on real images (mean, min; the measure ``focal-export --verify``
reports), and the median ONNX Runtime CPU latency, every graph timed in
turn in the same loop so that the ratios share the machine's load.

Usage::

    .venv/bin/python benchmarks/int8_qdq_placement.py [--size 512] [--images 11] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCAL_SHARED", REPO.parent / "shared"))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel cosine of two ``[C, h, w]`` feature maps, ``[h * w]`` in ``[-1, 1]``."""
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    a = a / np.linalg.norm(a, axis=0, keepdims=True)
    b = b / np.linalg.norm(b, axis=0, keepdims=True)
    return (a * b).sum(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calib-count", type=int, default=16)
    parser.add_argument("--images", type=int, default=11, help="real images for the cosine")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (4 images each, all graphs in turn)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    from focal.export import ExportConfig, Int8Config, export, load_images, prepare_for_quantization, quantize_int8
    from focal.export.qdq import count_qdq
    from focal.export.verify import _ort_checked
    from focal.runtime.manifest import load_manifest
    from focal.runtime.preprocess import to_input

    with tempfile.TemporaryDirectory(prefix="focal-qdq-") as tmp:
        out = Path(tmp) / "lite"
        result = export(ExportConfig(backbone="lite", input_size=args.size, int8=True, int8_cpu=False,
                                     calib=f"synthetic:{SHARED / 'data/natural'}", calib_count=args.calib_count,
                                     out=str(out)))
        assert result.calibration is not None
        prepared = prepare_for_quantization(out / "model.onnx", Path(tmp) / "prepared.onnx")
        sym, cpu = Int8Config(), Int8Config(activations="uint8-asymmetric")
        graphs = {"fp32": out / "model.onnx"}
        for name, cfg in {
            "int8 (TensorRT), outputs too": replace(sym, quantize_outputs=True),
            "int8 (TensorRT), inputs only": sym,
            "int8.cpu, outputs too": cpu,
            "int8.cpu, inputs only": replace(cpu, quantize_outputs=False),
        }.items():
            graphs[name] = Path(tmp) / f"{len(graphs)}.onnx"
            quantize_int8(prepared, graphs[name], result.calibration, cfg)

        manifest = load_manifest(out)
        pictures = load_images(SHARED / "data/real-samples/images", args.images)
        xs = [to_input(im, manifest.input.size, manifest.input.mean, manifest.input.std)[None] for _, im in pictures]
        sessions = {}
        for name, path in graphs.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = manifest.input.name
        feats = {n: [s.run(None, {feed: x})[0][0] for x in xs] for n, s in sessions.items()}
        times: dict[str, list[float]] = {n: [] for n in sessions}
        for _ in range(args.rounds):
            for name, session in sessions.items():  # in turn, so every graph sees the same load
                for x in xs[:4]:
                    t0 = time.perf_counter()
                    session.run(None, {feed: x})
                    times[name].append((time.perf_counter() - t0) * 1e3)
        fp32_ms = statistics.median(times["fp32"])
        print(f"lite {args.size} px, {len(xs)} real images, {args.threads} thread(s), {args.rounds} rounds, "
              f"ORT {ort.__version__}")
        print(f"{'graph':<30} {'cos mean':>8} {'cos min':>8} {'ms':>7} {'x fp32':>6}  placement | ORT CPU")
        for name, path in graphs.items():
            cos = np.concatenate([_cosine(f, g) for f, g in zip(feats["fp32"], feats[name])])
            ms = statistics.median(times[name])
            if name == "fp32":
                placement = "-"
            else:
                kernels = _ort_checked(path, "int8", args.threads).split(": ", 1)[1].split(";")[0]
                placement = f"{count_qdq(onnx.load(str(path))).line()} | {kernels}"
            print(f"{name:<30} {cos.mean():8.5f} {cos.min():8.5f} {ms:7.1f} {ms / fp32_ms:6.2f}  {placement}")


if __name__ == "__main__":
    main()
