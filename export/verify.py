"""Parity on what users see: every exported artifact against the PyTorch reference.

For each model file of an artifact (ONNX graphs on ONNX Runtime's CPU
provider; TensorRT engines where TensorRT and a GPU exist), the same images
go through the runtime's :class:`~focal.runtime.Detector` and through the
eager-PyTorch :class:`~focal.training.ReferenceDetector`, and the report
gives, per artifact:

* feature cosine per pixel (mean, min) between the L2-normalised features;
* mask IoU (forged class, 1 when both masks are empty) against the
  reference's mask, mean and min over images;
* the fraction of feature-map pixels with the same forged/pristine label;
* the image-score difference (mean, max);
* network latency (median ms per image) next to eager PyTorch's.

FP16 graphs on a CPU get a second row: ONNX Runtime's x86 provider has no
FP16 kernels for these ops and runs FP16 chains in FP32 (only the FP16
weights are exercised), so the graph is also run through its
storage-emulating twin (:func:`~focal.export.precision.emulate_fp16_storage`),
which rounds every FP16 tensor to FP16 after every op. Each row says in
``checked`` what its run exercised.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focal.evaluation.metrics import pixel_scores
from focal.runtime.engines import tensorrt_status
from focal.runtime.manifest import Manifest, load_manifest

__all__ = [
    "PARITY_THRESHOLDS",
    "Parity",
    "Thresholds",
    "VerifyConfig",
    "VerifyReport",
    "load_images",
    "verify",
]


@dataclass(frozen=True)
class Thresholds:
    """Minimum parity of an artifact of one precision."""

    cosine: float | None  # mean feature cosine, None = not judged
    iou: float  # mean mask IoU


# Acceptance levels per precision, on what users see: feature cosine and mask IoU
# (docs/export.md, "Checks"); tests enforce them on tiny/lite models.
PARITY_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(cosine=0.9999, iou=0.99),
    "fp16": Thresholds(cosine=0.999, iou=0.97),
    "int8": Thresholds(cosine=None, iou=0.90),
}


@dataclass(frozen=True)
class VerifyConfig:
    """How verification runs."""

    clustering: str | None = None  # None = the manifest's default
    min_cluster_size: int | None = None  # None = the manifest's default
    limit: int = 16  # at most this many images
    tensorrt: bool = True  # also verify engines (skipped, with the reason, where TensorRT/GPU are absent)
    emulate_fp16: bool = True  # also check FP16 graphs through their storage-emulating twin
    threads: int | None = None  # ONNX Runtime CPU threads; None = all cores
    warmup: int = 1  # untimed runs before timing each artifact


@dataclass(frozen=True)
class Parity:
    """One artifact against the reference."""

    artifact: str  # model file
    precision: str  # fp32 / fp16 / int8
    backend: str  # what ran it
    checked: str  # what that run exercised (FP16 storage vs arithmetic, INT8 kernels)
    images: int  # images compared
    cosine_mean: float  # mean per-pixel cosine of the normalised features
    cosine_min: float  # worst pixel
    iou_mean: float  # mean forged-class mask IoU
    iou_min: float  # worst image
    labels_same: float  # mean share of feature-map pixels with the same label
    score_diff_mean: float  # mean |score - reference score|
    score_diff_max: float  # worst image
    latency_ms: float | None  # median network time per image (None: not meaningful, e.g. emulation)
    reference_ms: float  # median eager-PyTorch network time per image
    passed: bool | None  # against PARITY_THRESHOLDS for this precision

    def line(self) -> str:
        """One table row."""
        lat = "-" if self.latency_ms is None else f"{self.latency_ms:8.1f}"
        verdict = {True: "ok", False: "FAIL", None: "-"}[self.passed]
        return (
            f"{self.artifact:<34} {self.precision:<5} {self.backend:<24} {self.cosine_mean:9.6f} {self.cosine_min:9.6f} "
            f"{self.iou_mean:7.4f} {self.iou_min:7.4f} {self.labels_same:7.4f} {self.score_diff_max:8.4f} "
            f"{lat:>8} {self.reference_ms:8.1f}  {verdict}"
        )


_HEADER = (
    f"{'artifact':<34} {'prec':<5} {'backend':<24} {'cos mean':>9} {'cos min':>9} {'IoU':>7} {'IoU min':>7} "
    f"{'labels':>7} {'score Δ':>8} {'ms':>8} {'torch ms':>8}  pass"
)


@dataclass(frozen=True)
class VerifyReport:
    """Parity of every artifact checked."""

    artifact_dir: str  # the artifact folder
    clustering: str  # clustering used on both sides
    min_cluster_size: int  # HDBSCAN's smallest cluster
    images: list[str]  # image names, in order
    rows: list[Parity]  # one per artifact run
    skipped: list[str] = field(default_factory=list)  # artifacts not run here, with the reason
    # network-input shapes "HxW" every row ran at (under native one per distinct capped image size)
    input_shapes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No row failed its threshold."""
        return all(r.passed is not False for r in self.rows)

    def table(self) -> str:
        """A plain-text table of the rows, then what was checked and what was skipped."""
        lines = [_HEADER] + [r.line() for r in self.rows]
        lines += [f"  {r.artifact} [{r.backend}]: {r.checked}" for r in self.rows]
        lines += [f"  skipped {s}" for s in self.skipped]
        if self.input_shapes:
            lines.append(f"  every row at {len(self.input_shapes)} input shape(s): {', '.join(self.input_shapes)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self) | {"passed": self.passed}


def load_images(images: str | Path | Sequence[str | Path | np.ndarray], limit: int = 16) -> list[tuple[str, np.ndarray]]:
    """Images to verify on, as ``(name, [H, W, 3] uint8 RGB)``.

    Args:
        images: a folder (files under it, sorted), one file, or a list of
            files / arrays.
        limit: at most this many (evenly spread over a folder).

    Raises:
        ValueError: nothing readable was given.
    """
    from focal.calibration.readers import list_image_files
    from focal.runtime.imageio import read_image

    if isinstance(images, (str, Path)):
        path = Path(images)
        if path.is_dir():
            files = list_image_files(path)
            if len(files) > limit:
                idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
                files = [files[i] for i in idx]
            items: list[Any] = files
        elif path.is_file():
            items = [path]
        else:
            raise ValueError(f"{path}: no such image file or folder")
    else:
        items = list(images)[:limit]
    out = []
    for i, item in enumerate(items[:limit]):
        if isinstance(item, np.ndarray):
            out.append((f"array{i}", item))
        else:
            out.append((Path(item).name, read_image(item)))
    if not out:
        raise ValueError("no images to verify on")
    return out


def _ort_checked(path: Path, precision: str, threads: int | None) -> str:
    """What ONNX Runtime's CPU provider actually runs in low precision for this graph."""
    import onnx
    import onnxruntime as ort

    data_ops = {"Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Split", "Slice", "Concat", "Gather",
                "Identity", "Expand", "Pad", "Flatten", "ReorderInput", "ReorderOutput"}
    with tempfile.TemporaryDirectory(prefix="focal-verify-") as tmp:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        opts.intra_op_num_threads = int(threads or 1)
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(Path(tmp) / "optimized.onnx"))
    compute = [n for n in optimized.graph.node if n.op_type not in data_ops and n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    if precision == "int8":
        int8 = [n for n in compute if n.op_type.startswith("QLinear") or n.op_type in ("ConvInteger", "MatMulInteger", "QGemm")]
        return (f"INT8 arithmetic: {len(int8)} nodes ran in ORT's integer kernels "
                f"({', '.join(sorted({n.op_type for n in int8})) or 'none'}); the rest in FP32 between Q/DQ")
    if precision == "fp16":
        try:
            typed = onnx.shape_inference.infer_shapes(optimized, strict_mode=False)
            types = {vi.name: vi.type.tensor_type.elem_type for vi in list(typed.graph.value_info) + list(typed.graph.input)}
            types.update({i.name: i.data_type for i in typed.graph.initializer})
            half = [n for n in compute if any(types.get(i) == onnx.TensorProto.FLOAT16 for i in n.input if i)]
            return (f"FP16 weights only: ORT CPU ran {len(half)} of {len(compute)} compute nodes in FP16 arithmetic, "
                    f"the rest as FP32 chains (no FP16 storage between them)")
        except Exception:  # contrib ops can defeat shape inference; say so rather than guess
            return "FP16 weights; which nodes ORT CPU ran in FP16 could not be determined"
    return "FP32"


def _compare(
    entry_name: str,
    precision: str,
    backend: str,
    checked: str,
    ref: list[Any],
    got: list[Any],
    latency: float | None,
    ref_ms: float,
) -> Parity:
    cos_all = []
    ious, same, sdiff = [], [], []
    for r, g in zip(ref, got):
        cos_all.append((r.features * g.features).sum(axis=1))
        ious.append(pixel_scores(g.mask, r.mask).iou)  # both empty: 1.0, they agree
        same.append(float((r.labels == g.labels).mean()))
        sdiff.append(abs(float(r.score) - float(g.score)))
    cos = np.concatenate(cos_all)
    cos_mean, iou_mean = float(cos.mean()), float(np.mean(ious))
    th = PARITY_THRESHOLDS[precision]
    passed = iou_mean >= th.iou and (th.cosine is None or cos_mean >= th.cosine)
    return Parity(
        artifact=entry_name, precision=precision, backend=backend, checked=checked, images=len(ref),
        cosine_mean=cos_mean, cosine_min=float(cos.min()), iou_mean=iou_mean, iou_min=float(np.min(ious)),
        labels_same=float(np.mean(same)), score_diff_mean=float(np.mean(sdiff)), score_diff_max=float(np.max(sdiff)),
        latency_ms=latency, reference_ms=ref_ms, passed=passed,
    )


def _run_detector(artifact: Path, backend: str, precision: str, cfg: VerifyConfig, clustering: str, mcs: int,
                  images: list[tuple[str, np.ndarray]], model_file: str | None = None) -> tuple[list[Any], float, str]:
    from focal.runtime.detector import Detector

    with Detector(artifact, backend=backend, precision=precision, clustering=clustering, min_cluster_size=mcs,
                  keep_features=True, threads=cfg.threads, model_file=model_file) as det:
        for _ in range(cfg.warmup):
            det(images[0][1])
        results = [det(im) for _, im in images]
        name = det.engine.name
    return results, statistics.median(r.timings["infer"] for r in results), name


def _run_emulated(model_path: Path, manifest: Manifest, cfg: VerifyConfig, clustering: str, mcs: int,
                  images: list[tuple[str, np.ndarray]]) -> list[Any]:
    import onnx

    from focal.export.precision import emulate_fp16_storage
    from focal.runtime.engines import OnnxRuntimeEngine
    from focal.runtime.postprocess import localize
    from focal.runtime.preprocess import network_input

    spec = manifest.input
    twin = emulate_fp16_storage(onnx.load(str(model_path)))
    with tempfile.TemporaryDirectory(prefix="focal-fp16emu-") as tmp:
        path = Path(tmp) / "emulated.onnx"
        onnx.save(twin, str(path))
        with OnnxRuntimeEngine(path, "cpu", threads=cfg.threads) as engine:
            out = []
            for _, im in images:
                # The same input policy as the runtime: each image at its own shape under native.
                geometry = _geometry(manifest, im)
                x = network_input(im, spec.size, geometry, spec.mean, spec.std)[None]
                batch = np.repeat(x, spec.batch, axis=0) if not spec.dynamic_batch else x
                feats = engine.infer({spec.name: batch})[manifest.output.name][0]
                out.append(localize(feats.astype(np.float32), im.shape[0], im.shape[1], clustering, mcs,
                                    geometry=geometry))
    return out


def _geometry(manifest: Manifest, image: np.ndarray) -> Any:
    """The runtime's plan for this image under the manifest's input policy (None under ``square``)."""
    from focal.runtime.geometry import image_geometry

    spec = manifest.input
    return image_geometry(image.shape[0], image.shape[1], spec.policy, spec.size, manifest.members[0].stride,
                          spec.max_side, spec.max_points)


def _input_shapes(manifest: Manifest, images: list[tuple[str, np.ndarray]]) -> list[str]:
    """The distinct network-input shapes (``"HxW"``) the images make, in first-seen order."""
    shapes: dict[str, None] = {}
    for _, im in images:
        g = _geometry(manifest, im)
        side = manifest.input.size
        shapes[f"{g.pad_height}x{g.pad_width}" if g is not None else f"{side}x{side}"] = None
    return list(shapes)


def verify(
    artifact_dir: str | Path,
    images: str | Path | Sequence[str | Path | np.ndarray],
    reference: Any = None,
    config: VerifyConfig = VerifyConfig(),
    progress: Any = None,
) -> VerifyReport:
    """Run the PyTorch reference and every artifact on the images and compare what users see.

    Args:
        artifact_dir: folder with ``focal.json``.
        images: folder, file, or list of files / ``[H, W, 3]`` uint8 RGB arrays.
        reference: the PyTorch extractor the artifact came from; ``None``
            rebuilds it from the manifest's ``source`` (weights or seed).
        config: clustering, image limit, backends.
        progress: optional ``callable(str)``.

    Returns:
        A :class:`VerifyReport` (``.table()`` to print, ``.passed``).

    Raises:
        ValueError: no images, or the reference cannot be rebuilt.
    """
    from focal.export.model import model_from_manifest
    from focal.runtime.postprocess import localize
    from focal.training.reference import ReferenceConfig, ReferenceDetector

    artifact_dir = Path(artifact_dir)
    manifest = load_manifest(artifact_dir)
    say = progress or (lambda _msg: None)
    clustering = config.clustering or manifest.clustering.method
    mcs = int(config.min_cluster_size or manifest.clustering.min_cluster_size)
    pictures = load_images(images, config.limit)
    model = reference if reference is not None else model_from_manifest(manifest)
    spec = manifest.input
    ref_det = ReferenceDetector(model, ReferenceConfig(clustering=clustering, min_cluster_size=mcs,
                                                       input_size=spec.size, policy=spec.policy,
                                                       max_side=spec.max_side, max_points=spec.max_points))
    say(f"verify: PyTorch reference on {len(pictures)} images ({clustering}, min cluster {mcs})")
    ref_det.feature_map(pictures[0][1])  # warm-up
    ref, ref_times = [], []
    for _, im in pictures:
        t0 = time.perf_counter()
        fmap = ref_det.feature_map(im)
        ref_times.append((time.perf_counter() - t0) * 1e3)
        ref.append(localize(fmap, im.shape[0], im.shape[1], clustering, mcs,
                            geometry=ref_det.geometry(im.shape[0], im.shape[1])))
    ref_ms = statistics.median(ref_times)

    rows: list[Parity] = []
    skipped: list[str] = []
    trt_usable, trt_reason = tensorrt_status() if config.tensorrt else (False, "not asked")
    for entry in manifest.models:
        if entry.kind == "tensorrt":
            if not trt_usable:
                skipped.append(f"{entry.file}: {trt_reason}")
                continue
            say(f"verify: {entry.file} on TensorRT")
            got, lat, name = _run_detector(artifact_dir, "tensorrt", entry.precision, config, clustering, mcs, pictures)
            rows.append(_compare(entry.file, entry.precision, name, f"{entry.precision} as built by {name}",
                                 ref, got, lat, ref_ms))
            continue
        say(f"verify: {entry.file} on ONNX Runtime CPU")
        got, lat, _ = _run_detector(artifact_dir, "cpu", entry.precision, config, clustering, mcs, pictures,
                                    model_file=entry.file)
        checked = _ort_checked(artifact_dir / entry.file, entry.precision, config.threads)
        rows.append(_compare(entry.file, entry.precision, "onnxruntime-cpu", checked, ref, got, lat, ref_ms))
        if entry.precision == "fp16" and config.emulate_fp16:
            say(f"verify: {entry.file} with FP16 storage emulated")
            emu = _run_emulated(artifact_dir / entry.file, manifest, config, clustering, mcs, pictures)
            rows.append(_compare(
                entry.file, "fp16", "ort-cpu fp16-storage-emu",
                "FP16 storage: every FP16 tensor rounded to FP16 after every op, FP16 weights; "
                "arithmetic/accumulation in FP32 (not FP16 accumulation)",
                ref, emu, None, ref_ms,
            ))
    return VerifyReport(str(artifact_dir), clustering, mcs, [n for n, _ in pictures], rows, skipped,
                        _input_shapes(manifest, pictures))
