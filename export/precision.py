"""Lower-precision graphs: FP16 and explicit INT8, decided in the ONNX graph itself.

TensorRT 10 deprecated and TensorRT 11 removed the builder's FP16/INT8 flags
and its implicit INT8 calibrators: a network is *strongly typed*, each layer
running in the type of its tensors. So the precision of every op is written
into the ONNX graph here, and the same file is what ONNX Runtime checks on a
CPU and what TensorRT builds on a GPU.

FP16 (:func:`convert_fp16`): every float op that is safe in half precision
computes in FP16; the numerically fragile ones stay FP32 with Casts around
them:

* normalisations (LayerNorm, BatchNorm, Group/InstanceNorm): their variance
  is a sum of squares, which overflows FP16 (65504) as soon as activations
  pass ~256, the known failure of the SAM encoder in FP16;
* Softmax and the logits feeding it (back to the ``q @ k^T`` MatMul and the
  relative-position Einsums);
* reductions, Pow/Sqrt/Reciprocal/Exp/Log;
* the graph's tail after its last Conv/MatMul (the fusion's L2 normalisation
  and concat), so the features users cluster are rounded once, not twice;
* optionally, any node whose calibrated activation range comes near FP16's
  limit (``ranges``), e.g. a randomly initialised HRNet's ~1e9 activations.

Graph inputs and outputs stay FP32 unless asked. The conversion is our own
(not ``onnxruntime.transformers.float16``), so node names are kept, the
graph stays topologically sorted and the kept nodes are known exactly: they
go to the manifest.

INT8 (:func:`quantize_int8`): explicit quantization with ONNX Runtime's
QDQ quantizer: symmetric INT8 (zero point 0, what TensorRT accepts),
per-channel weights, per-tensor activations with ranges from
:func:`focal.calibration.calibrate`, biases left in float (TensorRT fuses
them itself). Only Conv/MatMul/Gemm inputs are quantized by default; the
layers reading maps at half resolution or finer (the pixel-level traces FOCAL
relies on), the feature head and attention's score products stay in float
unless asked, and any node can be named to stay unquantized.

Q/DQ placement differs by target. The TensorRT graph carries Q/DQ on the
*inputs* of the quantized ops only (ORT's ``OpTypesToExcludeOutputQuantization``
over ``op_types``), as TensorRT's explicit-quantization guide places them: a
Conv's output is quantized once, where the next quantized op reads it (after
its Clip/Relu/Add), so ``DQ -> Conv -> Clip -> Q`` fuses. The CPU graph keeps
ORT's default (outputs quantized too): ONNX Runtime's CPU provider forms
QLinearConv/QLinearAdd only from ``DQ -> op -> Q``. :mod:`focal.export.qdq`
counts the placement.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from focal.calibration.calibrate import CalibrationResult
from focal.calibration.methods import DEFAULT_QUANTIZED_OPS
from focal.export._graph import (
    consumers,
    first_heavy,
    high_resolution_nodes,
    last_heavy,
    match_nodes,
    output_tail,
    producers,
    softmax_logit_nodes,
)

__all__ = [
    "FP16_KEPT_OPS",
    "FP16_MAX",
    "INT8_ACTIVATIONS",
    "Fp16Config",
    "Int8Config",
    "LoweredGraph",
    "convert_fp16",
    "emulate_fp16_storage",
    "prepare_for_quantization",
    "quantize_int8",
]

FP16_MAX = 65504.0

# Int8Config.activations: symmetric int8 for TensorRT, asymmetric uint8 for ONNX Runtime's CPU provider.
INT8_ACTIVATIONS: tuple[str, ...] = ("int8-symmetric", "uint8-asymmetric")

# Op types computed in FP32 inside an FP16 graph (see the module docstring).
FP16_KEPT_OPS: tuple[str, ...] = (
    "LayerNormalization", "BatchNormalization", "GroupNormalization", "InstanceNormalization",
    "LpNormalization", "MeanVarianceNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd",
    "Pow", "Sqrt", "Reciprocal", "Exp", "Log",
)

# Ops whose float inputs and outputs all share one type T that may be
# float16 (ONNX opset >= 17), so they can simply be retyped. Anything else
# (Cast, ConstantOfShape, Range, ops with type attributes, unknown ops)
# stays as it is, which is always correct.
_FP16_CAPABLE: frozenset[str] = frozenset({
    "Abs", "Add", "AveragePool", "Ceil", "Clip", "Concat", "Conv", "ConvTranspose", "DepthToSpace", "Div",
    "Einsum", "Elu", "Erf", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "Gelu", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "MatMul", "Max",
    "MaxPool", "Min", "Mish", "Mul", "Neg", "Pad", "PRelu", "Relu", "Reshape", "Resize", "Selu", "Sigmoid",
    "Sign", "Slice", "Softplus", "SpaceToDepth", "Split", "Squeeze", "Sub", "Tanh", "Tile", "Transpose",
    "Unsqueeze", "Where", "ReduceMax", "ReduceMin", "Upsample",
})

# Inputs that must stay float32 whatever the node's type (Resize's roi/scales).
_ALWAYS_FP32_INPUTS: dict[str, frozenset[int]] = {"Resize": frozenset({1, 2}), "Upsample": frozenset({1})}

# Where Where's condition or Clip's bounds are not float, they are skipped by type anyway.

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fp16Config:
    """Which parts of a graph stay FP32 when it is converted to FP16."""

    keep_ops: tuple[str, ...] = FP16_KEPT_OPS  # op types always computed in FP32
    keep_nodes: tuple[str, ...] = ()  # node names or shell globs also kept in FP32 (e.g. a whole block)
    keep_softmax_logits: bool = True  # keep the ops computing each Softmax's input in FP32
    keep_output_tail: bool = True  # keep the ops after the last Conv/MatMul (final normalisation) in FP32
    keep_io_types: bool = True  # graph inputs/outputs stay float32 (Casts inside the graph)
    overflow_fraction: float = 0.25  # with ranges: keep a node whose |output| passed this share of 65504


@dataclass(frozen=True)
class Int8Config:
    """What explicit INT8 quantization touches."""

    op_types: tuple[str, ...] = DEFAULT_QUANTIZED_OPS  # ops whose inputs get Q/DQ
    per_channel: bool = True  # one weight scale per output channel
    exclude: tuple[str, ...] = ()  # node names or shell globs left unquantized
    keep_stem: bool = True  # leave layers reading >= half-resolution maps unquantized (they carry pixel-level traces)
    stem_stride: int = 2  # "half resolution": inputs at stride <= this count as stem
    keep_head: bool = True  # leave the last Conv/MatMul (its output is the feature users cluster)
    keep_attention: bool = True  # leave attention's q @ k^T and softmax @ v unquantized (8-bit probabilities are coarse)
    # "int8-symmetric" (zero point 0: what TensorRT needs) or "uint8-asymmetric" (ONNX Runtime's CPU
    # provider: its U8S8 kernels use VNNI / AVX2, its S8S8 path measured slower than FP32 on x86)
    activations: str = "int8-symmetric"
    # Q/DQ also on the outputs of op_types nodes (ONNX Runtime's default placement). None: by target. For
    # TensorRT (int8-symmetric) off: Q/DQ only on their inputs, as TensorRT's explicit-quantization guide places
    # them, so DQ -> Conv -> Clip -> Q fuses into one INT8 kernel instead of Conv -> Q -> DQ -> Clip -> Q -> DQ
    # quantizing the same values twice (focal.export.qdq counts them). For ORT's CPU provider (uint8-asymmetric)
    # on: its QLinearConv/QLinearAdd need a Q after the op (lite without it: 6 of 56 integer nodes, docs/export.md).
    quantize_outputs: bool | None = None
    # uint8-asymmetric only: weights in 7 bits. x86 CPUs without VNNI (AVX2; AVX-512 before Cascade Lake)
    # multiply u8 x s8 with VPMADDUBSW, whose int16 pair sums saturate with 8-bit weights: lite's CPU graph
    # measured cosine 0.94 to FP32 on an AVX2-only EPYC, 0.98 on VNNI. 7-bit weights cannot saturate it.
    reduce_range: bool = True

    @property
    def seven_bit_weights(self) -> bool:
        """Whether weights are quantized to 7 bits: ``reduce_range`` with uint8 activations only."""
        return self.reduce_range and self.activations != "int8-symmetric"

    def outputs_quantized(self) -> bool:
        """Whether op_types outputs get Q/DQ: ``quantize_outputs``, or by target when it is None."""
        return self.activations != "int8-symmetric" if self.quantize_outputs is None else self.quantize_outputs


@dataclass(frozen=True)
class LoweredGraph:
    """A graph in a lower precision and the record of what ran in which precision."""

    model: onnx.ModelProto  # the rewritten graph
    precision: str  # "fp16" or "int8"
    lowered_nodes: tuple[str, ...]  # nodes computing in the lower precision
    kept_nodes: tuple[str, ...]  # compute nodes left in FP32 (unquantized for int8)
    kept_ops: tuple[str, ...]  # op types of kept_nodes, sorted
    reasons: dict[str, str] = field(default_factory=dict)  # kept node -> why
    clipped_weights: int = 0  # fp16: initializer values beyond +-65504, saturated


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor we can type (after shape inference)."""
    types: dict[str, int] = {}
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def _select_kept(
    model: onnx.ModelProto,
    config: Fp16Config,
    types: Mapping[str, int],
    ranges: Mapping[str, tuple[float, float]] | None,
) -> tuple[dict[str, str], list[str]]:
    """``({kept node: reason}, [fp16 node])`` for the float compute nodes of ``model``."""
    reasons: dict[str, str] = {}
    for name in match_nodes(model, config.keep_nodes, "keep_nodes"):
        reasons[name] = "asked"
    if config.keep_softmax_logits:
        for name in softmax_logit_nodes(model):
            reasons.setdefault(name, "softmax logits")
    if config.keep_output_tail:
        for name in output_tail(model):
            reasons.setdefault(name, "output tail (final normalisation)")
    limit = config.overflow_fraction * FP16_MAX
    lowered = []
    for node in model.graph.node:
        floats_out = [o for o in node.output if types.get(o) == TensorProto.FLOAT]
        if not floats_out:
            continue  # shape arithmetic and the like: nothing to lower
        if node.name in reasons:
            continue
        if node.op_type in config.keep_ops:
            reasons[node.name] = f"op {node.op_type}"
        elif node.op_type not in _FP16_CAPABLE:
            reasons[node.name] = f"op {node.op_type} has no FP16 form here"
        elif ranges is not None and any(max(abs(v) for v in ranges.get(o, (0.0, 0.0))) > limit for o in floats_out):
            reasons[node.name] = f"activation range beyond {limit:.0f}"
        else:
            lowered.append(node.name)
    # Only float compute nodes are recorded as kept.
    reasons = {
        n.name: reasons[n.name]
        for n in model.graph.node
        if n.name in reasons and any(types.get(o) == TensorProto.FLOAT for o in n.output)
    }
    return reasons, lowered


def _is_float(types: Mapping[str, int], name: str) -> bool:
    return bool(name) and types.get(name) == TensorProto.FLOAT


def _wants(node: onnx.NodeProto, idx: int, lowered: set[str]) -> int:
    """The type input ``idx`` of ``node`` is read in: FP16 in an FP16 node, except Resize's roi/scales."""
    fp16 = node.name in lowered and idx not in _ALWAYS_FP32_INPUTS.get(node.op_type, ())
    return TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT


def _cast_fp16_outputs(graph: onnx.GraphProto, lowered: set[str], types: dict[str, int]) -> list[onnx.NodeProto]:
    """Rename graph outputs an FP16 node computes to an inner name; the Casts back to their FP32 names.

    ``graph`` and ``types`` are updated in place; the Casts are returned to go last.
    """
    prod = producers(graph)
    casts: list[onnx.NodeProto] = []
    for out in graph.output:
        node = prod.get(out.name)
        if node is None or node.name not in lowered or not _is_float(types, out.name):
            continue
        inner = out.name + "/fp16"
        for n in graph.node:
            n.output[:] = [inner if o == out.name else o for o in n.output]
            n.input[:] = [inner if i == out.name else i for i in n.input]
        types[inner] = TensorProto.FLOAT
        casts.append(helper.make_node("Cast", [inner], [out.name], name=out.name + "/Cast_fp32", to=TensorProto.FLOAT))
    return casts


def _storage_types(
    graph: onnx.GraphProto, lowered: set[str], types: Mapping[str, int], keep_io_types: bool
) -> dict[str, int]:
    """Storage type of every float tensor: FP16 when an FP16 node produces it (or an FP16 graph input)."""
    prod = producers(graph)
    storage: dict[str, int] = {}
    for name, t in types.items():
        if t == TensorProto.FLOAT:
            node = prod.get(name)
            storage[name] = TensorProto.FLOAT16 if node is not None and node.name in lowered else TensorProto.FLOAT
    if not keep_io_types:
        for vi in graph.input:
            if _is_float(types, vi.name):
                storage[vi.name] = TensorProto.FLOAT16
    return storage


def _lower_initializers(
    graph: onnx.GraphProto, lowered: set[str], types: Mapping[str, int], storage: dict[str, int]
) -> tuple[int, dict[str, str]]:
    """Initializers to FP16 where every reader wants FP16; a second FP16 copy where readers are mixed.

    Values beyond +-65504 saturate. ``graph`` and ``storage`` are updated in place.

    Returns:
        ``(values clipped, {initializer: its FP16 copy})``.
    """
    inits = {i.name: i for i in graph.initializer}
    wants: dict[str, set[int]] = {}
    for node in graph.node:
        for idx, name in enumerate(node.input):
            if name in inits and _is_float(types, name):
                wants.setdefault(name, set()).add(_wants(node, idx, lowered))
    clipped = 0
    fp16_copy: dict[str, str] = {}
    new_inits = []
    for name, want in wants.items():
        if TensorProto.FLOAT16 not in want:
            continue
        array = numpy_helper.to_array(inits[name])
        clipped += int((np.abs(array) > FP16_MAX).sum())
        half = numpy_helper.from_array(np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16), name)
        if want == {TensorProto.FLOAT16}:
            inits[name].CopyFrom(half)
            storage[name] = TensorProto.FLOAT16
        else:
            half.name = name + "/fp16"
            fp16_copy[name] = half.name
            new_inits.append(half)
    graph.initializer.extend(new_inits)
    return clipped, fp16_copy


def _insert_casts(
    graph: onnx.GraphProto,
    lowered: set[str],
    storage: Mapping[str, int],
    fp16_copy: Mapping[str, str],
    tail: list[onnx.NodeProto],
) -> None:
    """Rebuild the node list in order with a Cast wherever a reader wants another type than is stored.

    One Cast per tensor and type, placed before its first reader; ``tail`` goes last.
    """
    casts: dict[tuple[str, int], str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        for idx, name in enumerate(node.input):
            if name not in storage:
                continue
            want = _wants(node, idx, lowered)
            if want == storage[name]:
                continue
            if want == TensorProto.FLOAT16 and name in fp16_copy:
                node.input[idx] = fp16_copy[name]
                continue
            key = (name, want)
            if key not in casts:
                suffix = "fp16" if want == TensorProto.FLOAT16 else "fp32"
                casts[key] = f"{name}/to_{suffix}"
                nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"{name}/Cast_{suffix}", to=want))
            node.input[idx] = casts[key]
        nodes.append(node)
    nodes.extend(tail)
    del graph.node[:]
    graph.node.extend(nodes)


def _type_checked(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    """Retype the graph's I/O (unless kept FP32), then strict shape/type inference and the checker.

    Raises:
        ValueError: the rewritten graph does not type-check.
    """
    graph = model.graph
    if not keep_io_types:
        for vi in list(graph.input) + list(graph.output):
            if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    del graph.value_info[:]
    try:
        typed = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(typed)
    except Exception as exc:  # shape inference raises several types; one message
        raise ValueError(f"FP16 graph failed type checking: {type(exc).__name__}: {exc}") from exc
    del typed.graph.value_info[:]  # keep the file lean; runtimes re-infer
    return typed


def convert_fp16(
    model: onnx.ModelProto,
    config: Fp16Config = Fp16Config(),
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> LoweredGraph:
    """Rewrite an FP32 graph so that its safe ops compute in FP16.

    Args:
        model: FP32 graph (not modified), opset >= 17.
        config: what stays FP32.
        ranges: optional ``{tensor: (min, max)}`` activation ranges (from
            :func:`focal.calibration.read_ranges` with a ``minmax`` run over
            every op); nodes whose outputs come near FP16's limit stay FP32.

    Returns:
        The FP16 graph with its record (nodes kept in FP32 and why). The
        graph passes ``onnx.checker`` with full shape/type checking.

    Raises:
        ValueError: a ``keep_nodes`` pattern matches nothing, or the graph
            cannot be typed.
    """
    if not 0.0 < config.overflow_fraction <= 1.0:
        raise ValueError(f"overflow_fraction must be in (0, 1], got {config.overflow_fraction}")
    work = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = _float_types(work)
    reasons, lowered_list = _select_kept(work, config, types, ranges)
    lowered = set(lowered_list)
    output_casts = _cast_fp16_outputs(work.graph, lowered, types) if config.keep_io_types else []
    storage = _storage_types(work.graph, lowered, types, config.keep_io_types)
    clipped, fp16_copy = _lower_initializers(work.graph, lowered, types, storage)
    _insert_casts(work.graph, lowered, storage, fp16_copy, output_casts)
    typed = _type_checked(work, config.keep_io_types)
    return LoweredGraph(
        model=typed,
        precision="fp16",
        lowered_nodes=tuple(lowered_list),
        kept_nodes=tuple(reasons),
        kept_ops=tuple(sorted({n.op_type for n in typed.graph.node if n.name in reasons})),
        reasons=dict(reasons),
        clipped_weights=clipped,
    )


def emulate_fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """An FP32 twin of an FP16 graph that rounds every FP16 tensor to FP16 values.

    ONNX Runtime's x86 CPU provider has almost no FP16 kernels: it runs an
    FP16 graph by casting whole chains of nodes to FP32 and back, so neither
    FP16 arithmetic nor the rounding between nodes is exercised, only the
    FP16 weights. This twin makes the rounding explicit: every node computes
    in FP32 and each tensor the FP16 graph stores in FP16 passes through
    ``Cast(FP16) -> Cast(FP32)`` (lossy Cast pairs are never optimised away),
    weights carry their FP16 values. It checks FP16 *storage* (overflow past
    65504, rounding after every op, as on a GPU with FP32 accumulation), not
    FP16 *accumulation* inside a kernel.

    Args:
        model: a graph from :func:`convert_fp16` (or any FP16/mixed graph).

    Returns:
        The FP32 emulation graph (a new proto), same inputs/outputs as FP32.
    """
    work = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = _float_types(work)
    graph = work.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        half_outputs = [o for o in node.output if o and types.get(o) == TensorProto.FLOAT16]
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            if to == TensorProto.FLOAT:
                nodes.append(helper.make_node("Identity", list(node.input), list(node.output), name=node.name))
                continue
        for attr in node.attribute:  # ops with a dtype attribute (rare here) produce FP32 instead
            if attr.name in ("to", "dtype") and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
        renamed = {o: o + "/f32" for o in half_outputs}
        node.output[:] = [renamed.get(o, o) for o in node.output]
        nodes.append(node)
        for out, tmp in renamed.items():
            nodes.append(helper.make_node("Cast", [tmp], [out + "/h"], name=out + "/round_fp16", to=TensorProto.FLOAT16))
            nodes.append(helper.make_node("Cast", [out + "/h"], [out], name=out + "/back_fp32", to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    for vi in list(graph.input) + list(graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    del graph.value_info[:]
    onnx.checker.check_model(work)
    return work


def prepare_for_quantization(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Shape-annotate an FP32 graph for ONNX Runtime's quantizer (and its calibrator).

    Only shape inference runs (symbolic where possible); ORT's graph
    optimisations are skipped so that node and tensor names, and the op set,
    stay those of ``model.onnx``. Calibrate and quantize this same file, so the
    calibrated tensor names match.

    Returns:
        ``out_path``.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    try:
        quant_pre_process(str(fp32_path), str(out_path), skip_optimization=True, skip_symbolic_shape=False)
    except Exception as exc:  # symbolic inference does not know every op; ONNX's own then
        log.info("symbolic shape inference failed (%s); using ONNX shape inference only", exc)
        quant_pre_process(str(fp32_path), str(out_path), skip_optimization=True, skip_symbolic_shape=True)
    return out_path


def _zero_points_symmetric(model: onnx.ModelProto) -> list[str]:
    """Names of Q/DQ zero points that are not all-zero INT8 (TensorRT rejects them)."""
    inits = {i.name: i for i in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            zp = inits.get(node.input[2])
            if zp is None:
                continue
            if zp.data_type not in (TensorProto.INT8, TensorProto.INT32) or np.any(numpy_helper.to_array(zp) != 0):
                bad.append(node.input[2])
    return bad


def _int8_exclusions(prepared: onnx.ModelProto, config: Int8Config) -> dict[str, str]:
    """``{node: why it stays in float}`` by the policy of ``config`` (asked, stem, head, attention).

    Raises:
        ValueError: an ``exclude`` pattern matches no node.
    """
    reasons: dict[str, str] = {}
    for name in match_nodes(prepared, config.exclude, "int8 exclude"):
        reasons[name] = "asked"
    if config.keep_stem:
        for name in first_heavy(prepared, config.op_types) + high_resolution_nodes(
            static_twin(prepared), config.op_types, config.stem_stride
        ):
            reasons.setdefault(name, f"stem (reads a map at stride <= {config.stem_stride})")
    if config.keep_head:
        for name in last_heavy(prepared, config.op_types):
            reasons.setdefault(name, "feature head")
    if config.keep_attention:
        for name in _attention_products(prepared, config.op_types):
            reasons.setdefault(name, "attention scores")
    return reasons


# Side given to a size-dynamic graph's input to find its high-resolution layers: only the ratio of a
# layer's map to the input matters, and 512 (2^9) divides by every downsampling of the backbones here.
_STEM_PROBE_SIDE = 512


def static_twin(model: onnx.ModelProto, side: int = _STEM_PROBE_SIDE) -> onnx.ModelProto:
    """``model`` itself when its input's height and width are fixed; else a copy with them set to ``side``.

    The ``native`` policy's graphs have symbolic height/width, so shape
    inference knows no layer's resolution and the stem rule would keep
    nothing but the first layer; the twin's shapes are inferred with data
    propagation (through the Shape -> Resize arithmetic of an FPN neck).
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or all(d.HasField("dim_value") for d in dims[2:]):
        return model
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    for d in twin.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.Clear()
        d.dim_value = side
    del twin.graph.value_info[:]  # symbolic shapes from the quantizer's pre-processing would win otherwise
    for out in twin.graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.Clear()
    return onnx.shape_inference.infer_shapes(twin, strict_mode=False, data_prop=True)


def _attention_products(prepared: onnx.ModelProto, op_types: tuple[str, ...]) -> list[str]:
    """Attention's ``q @ k^T`` (the softmax logits) and ``softmax @ v`` among ``op_types`` nodes, in graph order."""
    users = consumers(prepared.graph)
    logits = set(softmax_logit_nodes(prepared))
    softmax_out = [n.output[0] for n in prepared.graph.node if n.op_type == "Softmax"]
    attention = {n.name for n in prepared.graph.node if n.name in logits} | {
        u.name for t in softmax_out for u in users.get(t, []) if u.op_type in ("MatMul", "Einsum")
    }
    return [n.name for n in prepared.graph.node if n.name in attention and n.op_type in op_types]


class _BelowErrorFrom(logging.Filter):
    """Drops records under ERROR whose source file lies under ``folder``."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self._folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(self._folder)


@contextlib.contextmanager
def _quiet_ort_quantizer() -> Iterator[None]:
    """Hide ONNX Runtime's quantizer messages under ERROR for the duration, and nobody else's.

    ORT logs a pre-processing hint and per-tensor messages at INFO/WARNING; our
    graph was prepared by :func:`prepare_for_quantization`, so they are noise.
    It logs them through the root logger itself (module-level ``logging.info``,
    no named logger whose level could be set), so a filter goes on the root
    logger: a logger's filters see only the records logged on it directly
    (records of named loggers reach the root's handlers without them), and
    this one drops only records from ORT's quantization package. The root's
    level and handlers are never changed, so other threads log as before.
    """
    import onnxruntime.quantization

    quiet = _BelowErrorFrom(os.path.dirname(onnxruntime.quantization.__file__) + os.sep)
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _run_quantizer(
    prepared_path: Path, out_path: Path, calibration: CalibrationResult, config: Int8Config, excluded: list[str]
) -> None:
    """ORT's static QDQ quantizer on the cached calibration ranges (nothing re-measured)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    symmetric = config.activations == "int8-symmetric"
    extra = {
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
        "QuantizeBias": False,  # TensorRT fuses float biases itself; INT32 DQ biases are not portable
        "DedicatedQDQPair": False,
    }
    if not config.outputs_quantized():
        # A quantized node's output is then quantized only where a later quantized node reads it (after the
        # activation, Add or Resize between them), once: the placement TensorRT fuses.
        extra["OpTypesToExcludeOutputQuantization"] = list(config.op_types)
    with _quiet_ort_quantizer():
        quantize_static(
            str(prepared_path),
            str(out_path),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(config.op_types),
            per_channel=config.per_channel,
            reduce_range=config.seven_bit_weights,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=calibration.config.ort_method(),
            extra_options=extra,
            calibration_cache_path=str(calibration.ranges_file),
        )


def _int8_record(
    model: onnx.ModelProto, prepared: onnx.ModelProto, candidates: list[str], reasons: dict[str, str],
    config: Int8Config,
) -> LoweredGraph:
    """What the quantizer did: candidates whose first input is dequantized ran in INT8, the rest stayed float."""
    prod = producers(model.graph)
    lowered = tuple(
        n.name
        for n in model.graph.node
        if n.op_type in config.op_types
        and n.input
        and prod.get(n.input[0]) is not None
        and prod[n.input[0]].op_type == "DequantizeLinear"
    )
    kept = tuple(n for n in candidates if n not in set(lowered))
    for name in kept:
        reasons.setdefault(name, "not quantized by the quantizer")
    kept_ops = tuple(sorted({n.op_type for n in prepared.graph.node if n.name in set(kept)}))
    return LoweredGraph(
        model=model,
        precision="int8",
        lowered_nodes=lowered,
        kept_nodes=kept,
        kept_ops=kept_ops,
        reasons={k: reasons[k] for k in kept},
    )


def quantize_int8(
    prepared_path: str | Path,
    out_path: str | Path,
    calibration: CalibrationResult,
    config: Int8Config = Int8Config(),
) -> LoweredGraph:
    """Insert symmetric INT8 Q/DQ nodes into a prepared FP32 graph.

    Args:
        prepared_path: output of :func:`prepare_for_quantization` (the graph
            ``calibration`` was measured on).
        out_path: where the INT8 graph is written.
        calibration: ranges of ``prepared_path``'s tensors (from
            :func:`focal.calibration.calibrate`); nothing is re-measured.
        config: what is quantized.

    Returns:
        The INT8 graph (also saved to ``out_path``) with its record.

    Raises:
        ValueError: an ``exclude`` pattern matches no node, unknown
            activations, or the result has a non-zero zero point.
    """
    prepared = onnx.load(str(prepared_path), load_external_data=False)
    candidates = [n.name for n in prepared.graph.node if n.op_type in config.op_types]
    reasons = _int8_exclusions(prepared, config)
    if config.activations not in INT8_ACTIVATIONS:
        raise ValueError(f"unknown INT8 activations {config.activations!r}; choose one of {INT8_ACTIVATIONS}")
    out_path = Path(out_path)
    _run_quantizer(Path(prepared_path), out_path, calibration, config, [n for n in candidates if n in reasons])
    model = onnx.load(str(out_path))
    bad = _zero_points_symmetric(model) if config.activations == "int8-symmetric" else []
    if bad:
        raise ValueError(f"INT8 graph has non-zero zero points (TensorRT needs symmetric INT8): {bad[:5]}")
    return _int8_record(model, prepared, candidates, reasons, config)
