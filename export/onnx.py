"""PyTorch extractor -> clean, checked FP32 ONNX graph.

Choices, and why:

* The TorchScript-based exporter (``torch.onnx.export(dynamo=False)``):
  the dynamo exporter fails on timm's SAM ViT (its attention calls
  ``scaled_dot_product_attention`` on 3-D tensors), while the TorchScript one
  exports every backbone here, SAM's fused attention switched off for the
  export (``fused_attn=False``, the same arithmetic written out as MatMul and
  Softmax) and back on afterwards.
* Static input shape by default. SAM's windowed attention pads the token
  grid to a multiple of the window size with shapes computed at trace time,
  so a graph is valid for the one side it was exported at; CNNs export the
  same way so that every artifact has one contract. The batch axis may be
  dynamic (``dynamic_batch``), which TensorRT serves with an optimisation
  profile.
* Opset 17 or newer, so LayerNorm is one ``LayerNormalization`` node (which
  the FP16 pass keeps in FP32 and TensorRT runs as one fused layer).
* Cleaned with onnxscript's optimiser (constant folding, shape-op folding
  under the static shape, dead nodes and unused initializers removed), node
  names restored afterwards, then ``onnx.checker`` with full type checking.
* Saved with external data (``model.onnx.data`` beside it) only past
  protobuf's 2 GB limit.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from focal.export._graph import ensure_unique_names, op_counts, restore_node_names
from focal.export.config import MIN_OPSET
from focal.runtime.manifest import sha256_file

if TYPE_CHECKING:  # torch is imported lazily: the module must load without it for type-only users
    import torch
    from torch import nn

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "OnnxExport",
    "check_onnx",
    "clean_graph",
    "export_onnx",
    "save_onnx",
]

INPUT_NAME = "image"
OUTPUT_NAME = "features"
# Protobuf refuses messages of 2 GiB; stay clear of it with headroom for the graph itself.
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path  # the .onnx file
    external_data: Path | None  # its weights file when saved as external data
    sha256: str  # of the .onnx file
    size_bytes: int  # .onnx plus external data
    opset: int  # default-domain opset of the graph
    nodes: int  # node count after cleaning
    ops: dict[str, int]  # op type -> count
    output_shape: tuple[int, ...]  # [B, D, h, w] for the export batch
    max_abs_diff: float  # ORT vs PyTorch on a seeded input
    max_rel_diff: float  # max_abs_diff / max |PyTorch output|
    seconds: float  # wall time of export + cleaning + check


@contextlib.contextmanager
def _exportable(model: "nn.Module") -> Iterator[None]:
    """Switch SAM's fused attention off for tracing (and back on after)."""
    sams = [m for m in model.modules() if hasattr(m, "set_fused_attention")]
    for m in sams:
        m.set_fused_attention(False)
    try:
        yield
    finally:
        for m in sams:
            m.set_fused_attention(True)


def clean_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold, drop dead nodes and unused initializers; keep node names.

    Args:
        model: a graph straight from the exporter.

    Returns:
        The cleaned graph (a new proto), nodes named as the exporter named them.
    """
    import onnxscript.optimizer

    ensure_unique_names(model)
    # Identity nodes from the TorchScript exporter's weight de-duplication hide
    # the initializers from constant folding; the optimiser removes them.
    cleaned = onnxscript.optimizer.optimize(model)
    restore_node_names(model, cleaned)
    return cleaned


def _external_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path | None:
    """Save a graph, with external data past the protobuf limit.

    Returns:
        The external data file, or ``None`` when everything is in ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    if _external_bytes(model) > _EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        return data
    onnx.save_model(model, str(path))
    return None


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` with full shape/type inference (by path: works past 2 GB).

    Raises:
        ValueError: the graph is invalid (the checker's message).
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"{path}: invalid ONNX graph: {exc}") from exc


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = False  # halves peak memory on big graphs at the same speed
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _check_export_args(model: "nn.Module", input_size: int, batch: int, opset: int) -> None:
    """Raises ``ValueError`` for an opset, side or batch the export cannot honour."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (LayerNormalization as one node), got {opset}")
    if input_size < 8:
        raise ValueError(f"input_size must be >= 8, got {input_size}")
    stride = int(getattr(model, "stride", 1))
    if input_size % stride:
        raise ValueError(f"input_size {input_size} is not a multiple of the extractor's stride {stride}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")


def _trace(model: "nn.Module", x: "torch.Tensor", dynamic_batch: bool, opset: int,
           dynamic_size: bool = False) -> onnx.ModelProto:
    """The TorchScript exporter's raw graph of ``model`` on ``x`` (SAM's fused attention off)."""
    import torch

    axes_in: dict[int, str] = {0: "batch"} if dynamic_batch else {}
    axes_out: dict[int, str] = dict(axes_in)
    if dynamic_size:
        axes_in.update({2: "height", 3: "width"})
        axes_out.update({2: "feature_height", 3: "feature_width"})
    dynamic_axes = {INPUT_NAME: axes_in, OUTPUT_NAME: axes_out} if axes_in else None
    with tempfile.TemporaryDirectory(prefix="focal-onnx-") as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        with _exportable(model), warnings.catch_warnings(), torch.no_grad():
            # The tracer warns about Python-side shape arithmetic (SAM's
            # padding); it is exactly what the static shape bakes in.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(raw_path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        return onnx.load(str(raw_path))


def _other_shape_diff(model: "nn.Module", path: Path, batch: int, input_size: int, generator: "torch.Generator") -> float:
    """Largest |ORT - torch| of a size-dynamic graph at a non-square shape that is not the traced one."""
    import torch

    stride = int(getattr(model, "stride", 1))
    h = max(stride, (input_size * 3 // 4) // stride * stride)
    w = input_size + stride
    x = torch.rand(batch, 3, h, w, generator=generator)
    with torch.inference_mode():
        reference = model(x).float().numpy()
    got = _ort_run(path, x.numpy())
    if got.shape != reference.shape:
        raise ValueError(f"{path}: at {h} x {w} ONNX gives {got.shape}, PyTorch {reference.shape}")
    return float(np.abs(got - reference).max())


def export_onnx(
    model: "nn.Module",
    path: str | Path,
    input_size: int,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = MIN_OPSET,
    seed: int = 0,
    dynamic_size: bool = False,
) -> OnnxExport:
    """Export an extractor to a cleaned, checked FP32 ONNX graph and compare it with PyTorch.

    Args:
        model: an ``Extractor`` or ``FusedExtractor`` (any ``nn.Module``
            mapping ``[B, 3, S, S]`` to ``[B, D, h, w]``), in eval mode.
        path: the ``.onnx`` file to write.
        input_size: side S of the square input.
        batch: the batch size traced (the static batch, or the example for a dynamic one).
        dynamic_batch: make the batch axis symbolic (``"batch"``).
        opset: default-domain opset, >= 17.
        seed: seed of the random input the parity check uses.
        dynamic_size: make height and width symbolic (the ``native`` input
            policy); the parity check then also runs at a non-square shape.

    Returns:
        An :class:`OnnxExport` with the file's hash, size, ops and the
        ONNX Runtime vs PyTorch difference.

    Raises:
        ValueError: bad opset, size or batch; an invalid graph.
    """
    import torch

    _check_export_args(model, input_size, batch, opset)
    path = Path(path)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, input_size, input_size, generator=generator)
    model.eval()
    with torch.inference_mode():
        reference = model(x).float().numpy()
    cleaned = clean_graph(_trace(model, x, dynamic_batch, opset, dynamic_size))
    cleaned.producer_name = "focal"
    external = save_onnx(cleaned, path)
    check_onnx(path)
    got = _ort_run(path, x.numpy())
    if got.shape != reference.shape:
        raise ValueError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {reference.shape}")
    max_abs = float(np.abs(got - reference).max())
    if dynamic_size:
        max_abs = max(max_abs, _other_shape_diff(model, path, batch, input_size, generator))
    scale = float(np.abs(reference).max()) or 1.0
    size = path.stat().st_size + (external.stat().st_size if external else 0)
    opset_found = next((o.version for o in cleaned.opset_import if o.domain in ("", "ai.onnx")), opset)
    return OnnxExport(
        path=path,
        external_data=external,
        sha256=sha256_file(path),
        size_bytes=size,
        opset=int(opset_found),
        nodes=len(cleaned.graph.node),
        ops=op_counts(cleaned),
        output_shape=tuple(int(d) for d in reference.shape),
        max_abs_diff=max_abs,
        max_rel_diff=max_abs / scale,
        seconds=time.perf_counter() - start,
    )
