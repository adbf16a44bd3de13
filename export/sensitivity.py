"""``focal-export --precision-report``: which blocks cost the most fidelity in FP16 / INT8.

For every block of the graph (the module path up to its first indexed
module: ``blocks.3``, ``stage4.2``...), the lowered graph is rebuilt with
that one block kept in FP32 (FP16) or left unquantized (INT8), run on a few
images, and compared with the FP32 graph's features and masks. A block whose
exclusion removes a large share of the feature error, at a small share of
the network's multiply-accumulates, is the one to keep in high precision:
the report lists the error share each block recovers next to what it costs.

FP16 variants run through the storage-emulating twin
(:func:`~focal.export.precision.emulate_fp16_storage`), since ONNX
Runtime's CPU provider would otherwise compute them in FP32; INT8 variants
run natively (ONNX Runtime's integer kernels). INT8 variants reuse the
calibration cache: nothing is re-measured per block.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from focal.calibration import CalibrationConfig, calibrate
from focal.calibration.readers import CalibrationReader
from focal.export._graph import HEAVY_OPS, blocks_of
from focal.export.precision import (
    Fp16Config,
    Int8Config,
    convert_fp16,
    emulate_fp16_storage,
    prepare_for_quantization,
    quantize_int8,
    static_twin,
)
from focal.runtime.geometry import Geometry

__all__ = ["BlockSensitivity", "PrecisionReport", "ReportConfig", "Variant", "block_macs", "precision_report"]


@dataclass(frozen=True)
class ReportConfig:
    """What the precision report measures."""

    clustering: str = "hdbscan"  # clustering for the masks
    min_cluster_size: int = 200  # HDBSCAN's smallest cluster
    images: int = 4  # images per variant
    fp16: bool = True  # measure FP16 sensitivity
    int8: bool = True  # measure INT8 sensitivity (needs a calibration reader)
    fp16_keep: tuple[str, ...] = ()  # baseline FP16 policy: extra nodes kept FP32
    int8_exclude: tuple[str, ...] = ()  # baseline INT8 policy: nodes left unquantized
    int8_keep_stem: bool = True  # baseline INT8 policy: stem unquantized
    int8_keep_head: bool = True  # baseline INT8 policy: feature head unquantized
    calib_method: str = "minmax"  # calibration method of the INT8 variants
    calib_cache: str | None = None  # calibration cache folder
    # The artifact's input policy, as its manifest: under "native" every image runs at its own
    # shape (aspect kept, long side capped at max_side, padded to the stride) and is masked at its
    # own pixels, as the runtime does; "square" stretches it to the graph's fixed side.
    policy: str = "square"
    size: int | None = None  # nominal side S (native; square reads it from the graph)
    stride: int = 1  # network stride (native)
    max_side: int | None = None  # native: cap of the longer side
    max_points: int = 4096  # native: most feature cells clustered


@dataclass(frozen=True)
class Variant:
    """A lowered graph's parity with the FP32 graph."""

    cosine: float  # mean per-pixel feature cosine
    iou: float  # mean forged-class mask IoU


@dataclass(frozen=True)
class BlockSensitivity:
    """One block: its cost and what keeping it in high precision recovers."""

    block: str  # module path of the block
    nodes: int  # its Conv/MatMul/Gemm/Einsum nodes
    macs_share: float  # its share of the network's multiply-accumulates
    fp16: Variant | None = None  # FP16 graph with this block in FP32
    fp16_recovered: float | None = None  # share of the FP16 feature error (1 - cosine) this removes
    int8: Variant | None = None  # INT8 graph with this block unquantized
    int8_recovered: float | None = None  # share of the INT8 feature error this removes


@dataclass(frozen=True)
class PrecisionReport:
    """Per-block sensitivity of the FP16 and INT8 graphs."""

    images: int  # images each variant ran on
    fp16_baseline: Variant | None  # the FP16 graph as exported
    int8_baseline: Variant | None  # the INT8 graph as exported
    blocks: list[BlockSensitivity] = field(default_factory=list)  # most sensitive first
    shapes: list[list[int]] = field(default_factory=list)  # [H, W] of each network input the variants ran at

    def table(self) -> str:
        """Plain-text table, most sensitive blocks first."""
        def v(x: Variant | None) -> str:
            return f"{x.cosine:9.6f} {x.iou:6.3f}" if x else f"{'-':>9} {'-':>6}"

        def r(x: float | None) -> str:
            return f"{100 * x:7.1f}%" if x is not None else f"{'-':>8}"

        lines = [f"baseline ({self.images} images): FP16 {v(self.fp16_baseline).strip() or '-'} | "
                 f"INT8 {v(self.int8_baseline).strip() or '-'}   (cosine, mask IoU vs FP32)",
                 f"{'block':<44} {'MACs':>6} {'FP16 kept: cos':>14} {'IoU':>6} {'err fixed':>9} "
                 f"{'INT8 float: cos':>15} {'IoU':>6} {'err fixed':>9}"]
        for b in self.blocks:
            lines.append(f"{b.block[-44:]:<44} {100 * b.macs_share:5.1f}% {v(b.fp16):>21} {r(b.fp16_recovered):>9} "
                         f"{v(b.int8):>22} {r(b.int8_recovered):>9}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def block_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates of each Conv/ConvTranspose/MatMul/Gemm node (static shapes)."""
    typed = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    shapes: dict[str, list[int]] = {}
    for vi in list(typed.graph.value_info) + list(typed.graph.input) + list(typed.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in typed.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs: dict[str, int] = {}
    for node in typed.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if not out:
            continue
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in shapes:
            w = shapes[node.input[1]]
            per_out = int(np.prod(w[1:])) if node.op_type == "Conv" else int(np.prod(w[2:])) * w[0]
            macs[node.name] = int(np.prod(out)) * per_out
        elif node.op_type in ("MatMul", "Gemm") and node.input[0] in shapes:
            a = shapes[node.input[0]]
            k = a[-2] if node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute) else a[-1]
            macs[node.name] = int(np.prod(out)) * int(k)
    return macs


def _geometry(config: ReportConfig, height: int, width: int) -> Geometry | None:
    """Where an image of ``height x width`` sits in the network input under the report's policy (None: square)."""
    from focal.runtime.geometry import image_geometry

    if config.policy != "native":
        return None
    assert config.size is not None  # precision_report checks it
    return image_geometry(height, width, "native", config.size, config.stride, config.max_side, config.max_points)


def _inputs(images: Any, config: ReportConfig, size: int, batch: int,
            dynamic: bool) -> tuple[list[np.ndarray], list[Geometry | None]]:
    """Up to ``config.images`` network inputs, and each one's geometry.

    Square: ``[B, 3, S, S]`` each. Native: ``[1, 3, H_i, W_i]``, every image
    at its own padded shape; a calibration reader's inputs are already
    native network inputs, so each is its own image (no resize, no pad).
    """
    from focal.export.verify import load_images
    from focal.runtime.preprocess import network_input

    out: list[np.ndarray] = []
    geometries: list[Geometry | None] = []
    if isinstance(images, CalibrationReader):
        for feeds in images.batches():
            x = next(iter(feeds.values()))[:1]
            out.append(x)
            geometries.append(_geometry(config, x.shape[2], x.shape[3]))
            if len(out) == config.images:
                break
        images.rewind()
    else:
        for _, im in load_images(images, config.images):
            geometries.append(_geometry(config, im.shape[0], im.shape[1]))
            out.append(network_input(im, size, geometries[-1])[None])
    return [x if dynamic else np.repeat(x, batch, axis=0) for x in out], geometries


class _Runner:
    """Runs graphs on the report's inputs and compares them with the FP32 graph."""

    def __init__(self, fp32: onnx.ModelProto, inputs: list[np.ndarray], geometries: list[Geometry | None],
                 clustering: str, mcs: int) -> None:
        self.inputs = inputs
        self.geometries = geometries
        self.clustering = clustering
        self.mcs = mcs
        self.input_name = fp32.graph.input[0].name
        ref = self.features(fp32)
        self.ref = [self._localize(f, g) for f, g in zip(ref, geometries)]

    def features(self, model: onnx.ModelProto | Path) -> list[np.ndarray]:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = False
        src = str(model) if isinstance(model, Path) else model.SerializeToString()
        session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        return [session.run(None, {self.input_name: x})[0][0].astype(np.float32) for x in self.inputs]

    def _localize(self, fmap: np.ndarray, geometry: Geometry | None) -> Any:
        from focal.runtime.postprocess import localize

        if geometry is None:
            s = self.inputs[0].shape[-1]
            return localize(fmap, s, s, self.clustering, self.mcs)
        return localize(fmap, geometry.height, geometry.width, self.clustering, self.mcs, geometry=geometry)

    def compare(self, model: onnx.ModelProto | Path) -> Variant:
        cos, ious = [], []
        for ref, fmap, geometry in zip(self.ref, self.features(model), self.geometries):
            got = self._localize(fmap, geometry)
            cos.append((ref.features * got.features).sum(axis=1))
            a, b = ref.mask > 0, got.mask > 0
            union = int((a | b).sum())
            ious.append(1.0 if union == 0 else int((a & b).sum()) / union)
        return Variant(float(np.concatenate(cos).mean()), float(np.mean(ious)))


def _recovered(base: Variant, variant: Variant) -> float | None:
    err = 1.0 - base.cosine
    if err <= 1e-9:
        return None
    return (err - (1.0 - variant.cosine)) / err


def precision_report(
    fp32_path: str | Path,
    images: str | Path | Sequence[Any] | CalibrationReader,
    config: ReportConfig = ReportConfig(),
    reader: CalibrationReader | None = None,
    progress: Callable[[str], None] | None = None,
) -> PrecisionReport:
    """Measure per-block FP16 and INT8 sensitivity of an FP32 graph.

    Args:
        fp32_path: the artifact's ``model.onnx``.
        images: images to measure on (folder, files, arrays) or a calibration reader.
        config: what to measure and the baseline policies.
        reader: calibration set for the INT8 variants (``images`` when it is
            a reader); INT8 is skipped without one.
        progress: optional ``callable(str)``.

    Returns:
        A :class:`PrecisionReport`, most sensitive blocks first.
    """
    say = progress or (lambda _msg: None)
    fp32_path = Path(fp32_path)
    fp32 = onnx.load(str(fp32_path))
    dims = fp32.graph.input[0].type.tensor_type.shape.dim
    dynamic = not dims[0].HasField("dim_value")
    batch = 1 if dynamic else int(dims[0].dim_value)
    if config.policy == "native":
        if config.size is None or config.max_side is None:
            raise ValueError("a native precision report needs the manifest's size and max_side")
        size = int(config.size)
    else:
        size = int(dims[-1].dim_value)
    if reader is None and isinstance(images, CalibrationReader):
        reader = images
    inputs, geometries = _inputs(images, config, size, batch, dynamic)
    runner = _Runner(fp32, inputs, geometries, config.clustering, config.min_cluster_size)
    blocks = {b: [n for n in names] for b, names in blocks_of(fp32).items()}
    heavy = {b: [n.name for n in fp32.graph.node if n.name in set(names) and n.op_type in HEAVY_OPS]
             for b, names in blocks.items()}
    heavy = {b: names for b, names in heavy.items() if names}
    # A size-dynamic (native) graph's layers have no sizes to count; the MAC shares come from a
    # twin with a fixed input side (every layer's share is the same at any input size).
    macs = block_macs(static_twin(fp32))
    total = float(sum(macs.values())) or 1.0
    rows: dict[str, dict[str, Any]] = {
        b: {"block": b, "nodes": len(names), "macs_share": sum(macs.get(n, 0) for n in names) / total}
        for b, names in heavy.items()
    }

    fp16_base = None
    if config.fp16:
        base_cfg = Fp16Config(keep_nodes=config.fp16_keep)
        fp16_base = runner.compare(emulate_fp16_storage(convert_fp16(fp32, base_cfg).model))
        say(f"precision report: FP16 baseline cosine {fp16_base.cosine:.6f}, IoU {fp16_base.iou:.3f}; "
            f"{len(heavy)} blocks")
        for b in heavy:
            keep = tuple(config.fp16_keep) + tuple(blocks[b])
            variant = runner.compare(emulate_fp16_storage(convert_fp16(fp32, Fp16Config(keep_nodes=keep)).model))
            rows[b].update(fp16=variant, fp16_recovered=_recovered(fp16_base, variant))

    int8_base = None
    if config.int8 and reader is not None:
        with tempfile.TemporaryDirectory(prefix="focal-report-") as tmp:
            prepared = prepare_for_quantization(fp32_path, Path(tmp) / "prepared.onnx")
            calib = calibrate(prepared, reader, CalibrationConfig(method=config.calib_method), config.calib_cache, say)
            base_cfg = Int8Config(exclude=config.int8_exclude, keep_stem=config.int8_keep_stem,
                                  keep_head=config.int8_keep_head)
            path = Path(tmp) / "int8.onnx"
            base = quantize_int8(prepared, path, calib, base_cfg)
            int8_base = runner.compare(path)
            say(f"precision report: INT8 baseline cosine {int8_base.cosine:.6f}, IoU {int8_base.iou:.3f}")
            for b, names in heavy.items():
                todo = [n for n in names if n in set(base.lowered_nodes)]
                if not todo:
                    continue
                exclude = tuple(config.int8_exclude) + tuple(todo)
                quantize_int8(prepared, path, calib, Int8Config(exclude=exclude, keep_stem=config.int8_keep_stem,
                                                                keep_head=config.int8_keep_head))
                variant = runner.compare(path)
                rows[b].update(int8=variant, int8_recovered=_recovered(int8_base, variant))

    def order(r: dict[str, Any]) -> float:
        return -max(r.get("int8_recovered") or 0.0, r.get("fp16_recovered") or 0.0)

    ranked = [BlockSensitivity(**r) for r in sorted(rows.values(), key=order)]
    return PrecisionReport(images=len(inputs), fp16_baseline=fp16_base, int8_baseline=int8_base, blocks=ranked,
                           shapes=[[int(x.shape[2]), int(x.shape[3])] for x in inputs])
