"""PyTorch weights back from an exported FP32 ONNX graph: an artifact you can fine-tune.

The exporter folds every BatchNorm into the convolution before it
(``do_constant_folding``), so the graph keeps ``W_f = W * g / s`` and
``b_f = beta - g * m / s`` (``s = sqrt(var + eps)``) but not ``W``, ``g``,
``beta``, ``m`` and ``var`` apart. Those five cannot be recovered; a set that
gives the same network can:

* each convolution gets ``W_f``; a convolution without a BatchNorm after it
  gets ``b_f`` as its bias;
* each BatchNorm gets, as running statistics, the per-channel mean ``m'``
  and variance ``v'`` of its input ``W_f * x`` over a few real images, and
  the affine pair ``g' = sqrt(v' + eps)``, ``beta' = b_f + m'``.

In eval mode that BatchNorm is the identity plus ``b_f``: the module computes
exactly the graph's function (float rounding aside). In train mode it
normalises by batch statistics close to the running ones, so fine-tuning
starts from the same network too, as it would from the original checkpoint.

Convolutions are matched to the graph's ``Conv`` nodes in execution order
(both the tracer and forward hooks see them in that order), and every pair
is checked: weight shape and groups must agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["checkpoint_from_artifact", "load_folded_onnx"]


def _onnx_convs(path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None, int]]:
    """``(node name, weight, bias or None, groups)`` of every Conv node, in graph order."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # the `export` extra
        raise RuntimeError("reading an ONNX graph needs the `onnx` package (pip install '.[export]')") from exc
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in inits:
            raise ValueError(f"{path}: Conv {node.name!r} takes its weight from a computed tensor, not an initializer")
        bias = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        groups = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
        convs.append((node.name, inits[node.input[1]], bias, groups))
    return convs


def _execution_order(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv2d and BatchNorm2d modules in the order one forward pass runs them."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: order.append(mod))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def load_folded_onnx(model: nn.Module, onnx_path: str | Path, images: Iterable[torch.Tensor]) -> dict[str, int]:
    """Load an FP32 ONNX export of ``model``'s architecture into ``model``, in place.

    Args:
        model: a freshly built extractor of the architecture the graph was
            exported from (weights are overwritten); left in eval mode.
        onnx_path: the FP32 graph (an artifact's ``model.onnx``).
        images: batches ``[B, 3, H, W]`` float32 in ``[0, 1]``, the model's
            inputs (e.g. the runtime's preprocessing of real photos): the
            BatchNorm statistics are measured on them. Some 32 images are
            plenty.

    Returns:
        ``{"convs": n, "batchnorms": m, "images": k}``.

    Raises:
        ValueError: the graph's convolutions do not match the model's
            (count, order, shape or groups), or no images were given.
    """
    path = Path(onnx_path)
    graph = _onnx_convs(path)
    batches = [b.float() for b in images]
    if not batches:
        raise ValueError("load_folded_onnx needs at least one image batch to measure BatchNorm statistics")
    model.eval()
    order = _execution_order(model, batches[0][:1])
    convs = [m for m in order if isinstance(m, nn.Conv2d)]
    if len(convs) != len(graph) or len(set(map(id, convs))) != len(convs):
        raise ValueError(f"{path}: {len(graph)} Conv nodes, but the model runs {len(convs)} convolutions "
                         "(each once): not an export of this architecture")
    # The BatchNorm that reads each convolution's output: the next module run, if it is one.
    bn_after: dict[int, nn.BatchNorm2d] = {}
    for prev, cur in zip(order, order[1:]):
        if isinstance(prev, nn.Conv2d) and isinstance(cur, nn.BatchNorm2d):
            if cur.num_features != prev.out_channels:
                raise ValueError(f"{path}: a BatchNorm of {cur.num_features} channels follows a convolution of "
                                 f"{prev.out_channels}")
            bn_after[id(prev)] = cur
    # Only convolutions and the BatchNorms folded into them are recovered: any other weight
    # (a Linear, a LayerNorm, a lone BatchNorm) would keep its fresh value, silently.
    covered = {id(p) for m in [*convs, *bn_after.values()] for p in m.parameters(recurse=False)}
    others = [name for name, p in model.named_parameters() if id(p) not in covered]
    if others:
        raise ValueError(f"{path}: only convolutions and their BatchNorms are recovered; this model also has "
                         f"{len(others)} other weights ({', '.join(others[:3])}, ...)")
    for conv, (name, weight, _, groups) in zip(convs, graph):  # every pair checked before any weight is set
        if tuple(conv.weight.shape) != weight.shape or conv.groups != groups:
            raise ValueError(f"{path}: Conv {name!r} has weight {weight.shape} groups {groups}, the model's "
                             f"convolution there {tuple(conv.weight.shape)} groups {conv.groups}")
    with torch.no_grad():
        for conv, (name, weight, bias, groups) in zip(convs, graph):
            conv.weight.copy_(torch.from_numpy(weight.copy()))
            b = torch.from_numpy(bias.copy()) if bias is not None else torch.zeros(conv.out_channels)
            bn = bn_after.get(id(conv))
            if bn is None:
                if conv.bias is None:
                    if bias is not None and np.any(bias):
                        raise ValueError(f"{path}: Conv {name!r} has a bias the model's convolution lacks")
                else:
                    conv.bias.copy_(b)
                continue
            if conv.bias is not None:
                conv.bias.zero_()
            # An exact identity until the statistics are measured below (so they are measured on
            # the graph's own activations): mean 0, scale 1, shift b_f.
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(1.0).mul_(torch.sqrt(torch.tensor(1.0 + bn.eps)))
            bn.bias.copy_(b)
        sums: dict[int, list] = {}

        def record(mod: nn.BatchNorm2d, inp: tuple[torch.Tensor]) -> None:
            x = inp[0].double()
            acc = sums.setdefault(id(mod), [0.0, 0.0, 0])
            acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
            acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
            acc[2] += x.numel() // x.shape[1]

        bns = list(bn_after.values())
        hooks = [bn.register_forward_pre_hook(record) for bn in bns]
        try:
            for batch in batches:
                model(batch)
        finally:
            for h in hooks:
                h.remove()
        for bn in bns:
            s, ss, n = sums[id(bn)]
            mean = s / n
            var = (ss / n - mean * mean).clamp_min(0.0)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.add_(mean.float())
    return {"convs": len(convs), "batchnorms": len(bns), "images": sum(int(b.shape[0]) for b in batches)}


def _check_parity(model: nn.Module, onnx_file: Path, x: torch.Tensor, input_name: str,
                  tolerance: float = 1e-3) -> None:
    """Raises ValueError unless the module's features equal the graph's (max difference relative to the largest)."""
    import onnxruntime as ort

    graph = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).run(None, {input_name: x.numpy()})[0]
    with torch.no_grad():
        got = model(x).numpy()
    err = float(np.abs(got - graph).max() / max(float(np.abs(graph).max()), 1e-12))
    if err > tolerance:
        raise ValueError(f"{onnx_file}: the recovered module differs from the graph by {err:.2g} of its largest "
                         f"feature (more than {tolerance:g})")


def checkpoint_from_artifact(artifact: str | Path, photos: list[str | Path], out: str | Path | None = None,
                             batch: int = 8) -> Path:
    """Recover the PyTorch checkpoint of an artifact's FP32 graph and record it in the artifact.

    Args:
        artifact: artifact folder (``focal.json`` + ``model.onnx``) of one
            extractor exported by this project (its manifest names the
            backbone and its constructor overrides).
        photos: image files the BatchNorm statistics are measured on
            (training-side photos; 16-64 are plenty), read and resized as
            the artifact's input policy resizes them (square side, or the
            ``native`` cap).
        out: the ``.safetensors`` to write; default ``ARTIFACT/checkpoint.safetensors``.
        batch: images per forward pass while measuring.

    Returns:
        The checkpoint path; the manifest's ``checkpoint`` entry names it
        when it lies inside the artifact.

    Raises:
        ValueError: a fusion, an artifact of another architecture, no photos,
            or a recovered module whose features differ from the graph's.
    """
    from dataclasses import replace

    from focal.runtime.geometry import image_geometry
    from focal.runtime.imageio import read_image
    from focal.runtime.manifest import CheckpointFile, load_manifest, save_manifest, sha256_file
    from focal.runtime.preprocess import network_input
    from focal.training.checkpoints import _fresh_extractor, _skip_packaged, save_checkpoint

    folder = Path(artifact)
    manifest = load_manifest(folder)
    if len(manifest.members) != 1:
        raise ValueError(f"{folder}: a fusion artifact; recover each member's checkpoint from its own export")
    if not photos:
        raise ValueError("no photos to measure the BatchNorm statistics on")
    kwargs = list(manifest.source.get("member_kwargs") or [{}])
    # The graph replaces every weight: packaged ImageNet weights are not loaded first.
    model = _fresh_extractor(manifest.extractor, [_skip_packaged(manifest.extractor, kw) for kw in kwargs])
    spec = manifest.input
    stride = manifest.members[0].stride
    inputs = []
    for p in photos:
        image = read_image(p)
        geometry = image_geometry(image.shape[0], image.shape[1], spec.policy, spec.size, stride, spec.max_side,
                                  spec.max_points)
        inputs.append(torch.from_numpy(network_input(image, spec.size, geometry, spec.mean, spec.std)))
    # Same-shaped batches: under "native" each photo has its own padded shape.
    batches: list[torch.Tensor] = []
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for x in inputs:
        by_shape.setdefault(tuple(x.shape), []).append(x)
    for group in by_shape.values():
        batches += [torch.stack(group[i: i + batch]) for i in range(0, len(group), batch)]
    fp32 = manifest.model("onnx", "fp32")
    onnx_file = folder / fp32.file
    stats = load_folded_onnx(model, onnx_file, batches)
    _check_parity(model, onnx_file, batches[0][:1], spec.name)
    target = Path(out) if out is not None else folder / "checkpoint.safetensors"
    origin = f"recovered from {onnx_file.name} (sha256 {fp32.sha256[:16]}), BatchNorm statistics of " \
             f"{stats['images']} photos"
    save_checkpoint(model, target, extra={"origin": origin, "artifact_source": manifest.source})
    if target.resolve().parent == folder.resolve():
        save_manifest(replace(manifest, checkpoint=CheckpointFile(file=target.name, sha256=sha256_file(target),
                                                                  origin=origin)), folder)
    return target
