"""Small ONNX graph helpers shared by the exporters (private).

Node names matter here: they are what the manifest lists as kept in FP32 or
left unquantized, what ``--fp32-nodes`` / ``--int8-exclude`` match, and
what the precision report groups into blocks. The TorchScript exporter names
nodes after the module path (``/backbone/blocks/blocks.3/attn/MatMul``), so
every rewrite here keeps those names.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

import onnx

# Ops that do the arithmetic of a network (where lower precision buys speed).
HEAVY_OPS: frozenset[str] = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"})

_INDEXED = re.compile(r"^[A-Za-z_][\w]*\.\d+(\.\d+)*$")


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """``{op type: count}`` of the main graph, sorted by op type."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """``{tensor name: node producing it}``."""
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """``{tensor name: nodes reading it}`` (each node once per tensor)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in dict.fromkeys(i for i in node.input if i):
            users.setdefault(name, []).append(node)
    return users


def ensure_unique_names(model: onnx.ModelProto) -> None:
    """Give every unnamed or duplicate node a unique name (in place), keeping existing ones."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def restore_node_names(reference: onnx.ModelProto, rewritten: onnx.ModelProto) -> int:
    """Rename nodes a rewrite renamed, by matching their first output tensor.

    Graph optimisers (onnxscript's rewriter) rebuild some nodes under
    generated names (``node_Conv_0``) while keeping the tensor names; the
    original name is recovered from the node that produced the same tensor.

    Returns:
        The number of nodes renamed.
    """
    original = {out: node.name for node in reference.graph.node for out in node.output[:1] if node.name}
    taken = {node.name for node in rewritten.graph.node}
    renamed = 0
    for node in rewritten.graph.node:
        old = original.get(node.output[0]) if node.output else None
        if old and node.name != old and old not in taken:
            taken.discard(node.name)
            node.name = old
            taken.add(old)
            renamed += 1
    ensure_unique_names(rewritten)
    return renamed


def match_nodes(model: onnx.ModelProto, patterns: Iterable[str], what: str) -> list[str]:
    """Node names matching any of ``patterns`` (exact names or shell globs).

    Raises:
        ValueError: a pattern matches no node (the message names it and shows
            a few node names, so a typo does not silently do nothing).
    """
    names = [n.name for n in model.graph.node]
    chosen: dict[str, None] = {}
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            sample = ", ".join(names[:3])
            raise ValueError(f"{what}: {pattern!r} matches no node of the graph (node names look like: {sample})")
        chosen.update(dict.fromkeys(hits))
    return list(chosen)


def node_block(name: str) -> str:
    """The block a node belongs to, from its module path.

    The block is the path up to the first indexed module (``blocks.3``,
    ``stage4.2``, ``net.0``); fused extractors' ``parts.N`` prefix is kept
    and the rule applied inside the member. Nodes outside any indexed module
    belong to their first path component (``backbone``, ``neck``).

    Examples:
        ``/backbone/blocks/blocks.3/attn/MatMul`` -> ``backbone/blocks/blocks.3``;
        ``/parts.1/backbone/stage4/stage4.2/Add`` -> ``parts.1/backbone/stage4/stage4.2``.
    """
    parts = [p for p in name.split("/") if p][:-1]  # drop the op's own name
    if not parts:
        return "(graph)"
    prefix: list[str] = []
    if re.fullmatch(r"parts\.\d+", parts[0]):
        prefix, parts = parts[:1], parts[1:]
        if not parts:
            return prefix[0]
    for i, part in enumerate(parts):
        if _INDEXED.match(part):
            return "/".join(prefix + parts[: i + 1])
    return "/".join(prefix + parts[:2] if len(parts) > 1 else prefix + parts)


def blocks_of(model: onnx.ModelProto, op_types: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{block: node names}`` in graph order, counting only ``op_types`` when given."""
    blocks: dict[str, list[str]] = {}
    for node in model.graph.node:
        if op_types is None or node.op_type in op_types:
            blocks.setdefault(node_block(node.name), []).append(node.name)
    return blocks


def output_tail(model: onnx.ModelProto, heavy: frozenset[str] = HEAVY_OPS) -> list[str]:
    """Nodes after the last heavy op: those from which no Conv/MatMul can be reached.

    This is the graph's final post-processing (the fusion's per-member L2
    normalisation, nearest resize and concat, the SAM neck's last LayerNorm,
    HRNet's last fuse): cheap, and where rounding shows directly in the
    features. A residual spine (Add/Relu between blocks) is not in it: convs
    follow it.
    """
    users = consumers(model.graph)
    feeds_heavy: dict[str, bool] = {}
    for node in reversed(model.graph.node):  # consumers come later in a sorted graph
        feeds_heavy[node.name] = any(
            u.op_type in heavy or feeds_heavy.get(u.name, False) for out in node.output for u in users.get(out, [])
        )
    return [n.name for n in model.graph.node if n.op_type not in heavy and not feeds_heavy[n.name]]


def last_heavy(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    """The ``op_types`` nodes after which no other ``op_types`` node follows (the feature head).

    Found from descendants, not by walking back from the outputs: a walk back
    through a residual spine (HRNet's Add/Relu) would reach every block's
    last conv.
    """
    wanted = set(op_types)
    users = consumers(model.graph)
    feeds: dict[str, bool] = {}
    for node in reversed(model.graph.node):
        feeds[node.name] = any(
            u.op_type in wanted or feeds.get(u.name, False) for out in node.output for u in users.get(out, [])
        )
    return [n.name for n in model.graph.node if n.op_type in wanted and not feeds[n.name]]


def first_heavy(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    """The ``op_types`` nodes reached first walking forward from the inputs (the stem that sees pixels)."""
    wanted = set(op_types)
    users = consumers(model.graph)
    found: dict[str, None] = {}
    seen: set[str] = set()
    stack = [i.name for i in model.graph.input]
    while stack:
        for node in users.get(stack.pop(), []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in wanted:
                found[node.name] = None
            else:
                stack.extend(o for o in node.output if o)
    return [n.name for n in model.graph.node if n.name in found]


def high_resolution_nodes(model: onnx.ModelProto, op_types: Iterable[str], max_stride: int = 2) -> list[str]:
    """``op_types`` nodes reading a 4-D tensor at or above ``1 / max_stride`` of the input's resolution.

    These are the layers that see pixel-level detail (camera noise, JPEG
    blocking, resampling traces): what a forensic feature extractor is built
    on, and what an 8-bit activation step erases first. Needs static shapes.
    """
    wanted = set(op_types)
    typed = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    heights: dict[str, int] = {}
    for vi in list(typed.graph.value_info) + list(typed.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[2].HasField("dim_value"):
            heights[vi.name] = int(dims[2].dim_value)
    image = typed.graph.input[0].name
    if image not in heights:
        return []
    limit = heights[image] / max_stride
    return [
        n.name for n in typed.graph.node
        if n.op_type in wanted and n.input and heights.get(n.input[0], 0) >= limit
    ]


def softmax_logit_nodes(model: onnx.ModelProto, max_depth: int = 12) -> list[str]:
    """Nodes computing the logits of each Softmax, back to the matrix products.

    Attention logits (``q @ k^T``, plus SAM's decomposed relative positions)
    are the widest-ranging values of a ViT; in FP16 they overflow or lose the
    small differences Softmax turns into weights. From each Softmax input the
    walk goes back through element-wise and shape ops and stops at (and
    includes) MatMul / Einsum / Gemm.
    """
    prod = producers(model.graph)
    passthrough = {
        "Add", "Sub", "Mul", "Div", "Reshape", "Transpose", "Unsqueeze", "Squeeze",
        "Expand", "Where", "Cast", "Identity", "Flatten", "Slice", "Concat",
    }
    keep: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in ("Softmax", "LogSoftmax"):
            continue
        frontier = [(node.input[0], 0)]
        while frontier:
            name, depth = frontier.pop()
            src = prod.get(name)
            if src is None or src.name in keep or depth > max_depth:
                continue
            if src.op_type in ("MatMul", "Einsum", "Gemm"):
                keep[src.name] = None
            elif src.op_type in passthrough:
                keep[src.name] = None
                frontier.extend((i, depth + 1) for i in src.input if i)
    return [n.name for n in model.graph.node if n.name in keep]
