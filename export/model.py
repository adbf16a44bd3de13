"""The PyTorch model an export starts from, and how to rebuild it from a manifest.

The manifest's ``source`` records what the graph was exported from (weight
files and their hashes, or the seed of a random initialisation, and the
members' constructor arguments), so that :func:`focal.export.verify` can
rebuild the very same PyTorch reference later without being told.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from focal.runtime.manifest import Manifest, sha256_file

__all__ = ["build_model", "model_from_manifest", "model_source"]


def _member_kwargs(parts: Sequence[str], input_size: int | None) -> list[dict[str, Any]]:
    """Constructor overrides so that each member is built for ``input_size``.

    Only backbones whose weights depend on the size (SAM's position
    embeddings: a factory taking ``img_size``) need it; CNNs are fully
    convolutional.
    """
    from focal.training.backbones import backbone_info

    out = []
    for part in parts:
        params = inspect.signature(backbone_info(part).factory).parameters
        out.append({"img_size": int(input_size)} if input_size is not None and "img_size" in params else {})
    return out


def build_model(
    backbone: str, weights: Sequence[str | Path] = (), input_size: int | None = None, seed: int = 0
) -> Any:
    """Build the extractor to export, with its weights.

    Args:
        backbone: registry name or ``a+b`` fusion.
        weights: nothing (random weights, seeded; ``lite`` keeps its packaged
            ImageNet encoder), one checkpoint (ours or the authors'), or one
            per fusion member.
        input_size: the export side; SAM ViTs are built for it when random,
            and must match it when loaded.
        seed: ``torch.manual_seed`` before a random build.

    Returns:
        An ``Extractor`` or ``FusedExtractor`` in eval mode.

    Raises:
        ValueError: unknown backbone, mismatched checkpoint, or a loaded ViT
            whose size differs from ``input_size``.
    """
    import torch

    from focal.training import build_extractor, create_extractor, parse_extractor_name

    parts = parse_extractor_name(backbone)
    if not weights:
        torch.manual_seed(seed)
        model = create_extractor(backbone, _member_kwargs(parts, input_size))
    else:
        files = [str(w) for w in weights]
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"{f}: weights not found")
        model = build_extractor(backbone, weights=files[0] if len(files) == 1 else files)
    if input_size is not None:
        for member in model.members:
            fixed = "img_size" in inspect.signature(type(member.backbone).__init__).parameters
            if fixed and member.input_size != input_size:
                raise ValueError(
                    f"{member.name} weights are for {member.input_size} px (SAM's position embeddings are per size); "
                    f"export at --input-size {member.input_size}, not {input_size}"
                )
    return model.eval()


def model_source(model: Any, weights: Sequence[str | Path] = (), seed: int | None = None) -> dict[str, Any]:
    """The manifest's ``source`` entry for a model built by :func:`build_model`.

    ``weights`` is one space-joined string (what the runtime prints in its
    rebuild hint); ``weights_files`` keeps the list.
    """
    files = [str(Path(w).resolve()) for w in weights]
    return {
        "weights": " ".join(files) if files else None,
        "weights_files": files,
        "weights_sha256": [sha256_file(f) for f in files],
        "init_seed": None if files else seed,
        "member_kwargs": [dict(m.kwargs) for m in model.members],
    }


def model_from_manifest(manifest: Manifest) -> Any:
    """Rebuild the PyTorch extractor an artifact was exported from.

    Raises:
        ValueError: the artifact came from an in-memory model (no weights
            and no seed recorded), or a weight file changed since the export.
    """
    import torch

    from focal.training import build_extractor, create_extractor

    src = manifest.source
    files = list(src.get("weights_files") or [])
    if files:
        for f, digest in zip(files, src.get("weights_sha256") or []):
            if not Path(f).is_file():
                raise ValueError(f"{f}: the weights this artifact was exported from are gone; pass the reference model")
            if sha256_file(f) != digest:
                raise ValueError(f"{f}: changed since the export (sha256 differs); pass the reference model")
        return build_extractor(manifest.extractor, weights=files[0] if len(files) == 1 else files).eval()
    if src.get("init_seed") is None:
        raise ValueError(
            "this artifact was exported from a model given in memory; pass it as verify(..., reference=model)"
        )
    torch.manual_seed(int(src["init_seed"]))
    return create_extractor(manifest.extractor, [dict(k) for k in src.get("member_kwargs") or []] or None).eval()
