"""Where an INT8 graph's Q/DQ pairs sit: the counts that show whether a placement lets TensorRT fuse.

TensorRT's explicit quantization fuses ``DQ -> Conv (+bias) (+Relu/Clip) -> Q``
into one INT8 kernel; a Q/DQ pair between the Conv and its activation splits
that fusion, and a second pair after the activation quantizes the same values
twice. :func:`count_qdq` counts, in a Q/DQ graph, the quantized compute
nodes, those whose inputs are not all dequantized, the Conv/MatMul outputs
that go straight into a QuantizeLinear, and the *double pairs*: a compute
node's output quantized and dequantized for no INT8 reader, passed through
a float op (Clip, Relu, Add, ...) and quantized again.

``python -m focal.export.qdq MODEL.onnx [MODEL.onnx ...]`` prints the counts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from focal.calibration.methods import DEFAULT_QUANTIZED_OPS
from focal.export._graph import consumers, producers

__all__ = ["QdqCounts", "count_qdq", "main"]

_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class QdqCounts:
    """Q/DQ placement of one graph (see the module docstring)."""

    quantized: int  # op_types nodes with a DequantizeLinear on an input (they run in INT8)
    inputs_not_dequantized: tuple[str, ...]  # quantized nodes whose data/weight inputs (0 and 1) are not all DQ outputs
    outputs_quantized: tuple[str, ...]  # op_types nodes whose output feeds a QuantizeLinear directly
    double_pairs: tuple[str, ...]  # op_types nodes whose output goes Q -> DQ -> float op -> Q, no INT8 node on the DQ
    double_via: dict[str, int] = field(default_factory=dict)  # op type between the two pairs -> count
    quantize_linear: int = 0  # QuantizeLinear nodes in the graph
    dequantize_linear: int = 0  # DequantizeLinear nodes in the graph (weights included)

    def line(self) -> str:
        """One line for a table or a log."""
        via = ", ".join(f"{k} {v}" for k, v in sorted(self.double_via.items())) or "-"
        return (f"{self.quantized} quantized, {len(self.inputs_not_dequantized)} with an input not dequantized, "
                f"{len(self.outputs_quantized)} outputs quantized, {len(self.double_pairs)} double Q/DQ pairs "
                f"(via {via}), {self.quantize_linear} Q + {self.dequantize_linear} DQ nodes")


def count_qdq(model: onnx.ModelProto, op_types: Sequence[str] = DEFAULT_QUANTIZED_OPS) -> QdqCounts:
    """Count how the Q/DQ pairs of ``model`` sit around its ``op_types`` nodes.

    Args:
        model: a QDQ-format graph (e.g. ``model.int8.onnx``); not modified.
        op_types: the compute ops quantization targets (Conv, MatMul, ...).

    Returns:
        The counts; node names are in graph order.
    """
    graph = model.graph
    prod = producers(graph)
    users = consumers(graph)
    wanted = set(op_types)

    def from_dq(name: str) -> bool:
        node = prod.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    def feeds_q(name: str) -> bool:
        return any(u.op_type == "QuantizeLinear" for u in users.get(name, []))

    compute = [n for n in graph.node if n.op_type in wanted]
    quantized = [n for n in compute if any(from_dq(i) for i in n.input[:2] if i)]
    quantized_names = {n.name for n in quantized}
    missing = [n.name for n in quantized if not all(from_dq(i) for i in n.input[:2] if i)]
    outputs_q = [n.name for n in compute if n.output and feeds_q(n.output[0])]

    double: list[str] = []
    via: dict[str, int] = {}
    for node in compute:
        if node.name not in set(outputs_q):
            continue
        # node -> Q -> DQ -> M, where M computes in float (not Q/DQ, not a quantized compute node) and its output
        # is quantized again: the same values pass through two pairs.
        # A pair that a quantized node also reads is not counted: it is that node's input pair, and float readers
        # sharing it (a residual Add's skip input) are where TensorRT's guide wants Q/DQ too.
        hops = [
            m
            for q in users.get(node.output[0], []) if q.op_type == "QuantizeLinear"
            for dq in users.get(q.output[0], []) if dq.op_type == "DequantizeLinear"
            if not any(r.name in quantized_names for r in users.get(dq.output[0], []))
            for m in users.get(dq.output[0], [])
            if m.op_type not in _QDQ and m.output and feeds_q(m.output[0])
        ]
        if hops:
            double.append(node.name)
            for m in {m.op_type for m in hops}:
                via[m] = via.get(m, 0) + 1
    return QdqCounts(
        quantized=len(quantized),
        inputs_not_dequantized=tuple(missing),
        outputs_quantized=tuple(outputs_q),
        double_pairs=tuple(double),
        double_via=via,
        quantize_linear=sum(n.op_type == "QuantizeLinear" for n in graph.node),
        dequantize_linear=sum(n.op_type == "DequantizeLinear" for n in graph.node),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print :func:`count_qdq` for each model file; exit 2 on a missing file."""
    parser = argparse.ArgumentParser(prog="python -m focal.export.qdq", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="Q/DQ ONNX graphs (model.int8.onnx, ...)")
    args = parser.parse_args(argv)
    for path in args.models:
        if not path.is_file():
            print(f"no such file: {path}", file=sys.stderr)
            return 2
        print(f"{path}: {count_qdq(onnx.load(str(path), load_external_data=False)).line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
