"""The PyTorch model an export starts from, and how to rebuild it from a manifest.

The manifest's ``source`` records what the graph was exported from (weight
files and their hashes, or the seed of a random initialisation, and the
members' constructor arguments), so that :func:`focal.export.verify` can
rebuild the very same PyTorch reference later without being told.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from focal.runtime.manifest import Manifest, sha256_file

__all__ = ["model_from_manifest", "model_source"]


def _member_kwargs(parts: Sequence[str], input_size: int | None) -> list[dict[str, Any]]:
    """Constructor overrides so that each member is built for ``input_size``.

    Only backbones whose weights depend on the size (the registry's
    ``fixed_input_size``: SAM's position embeddings) need it; CNNs are fully
    convolutional.
    """
    from focal.training import backbone_info

    fixed = input_size is not None
    return [{"img_size": int(input_size)} if fixed and backbone_info(p).fixed_input_size else {} for p in parts]


def _random_extractor(name: str, member_kwargs: Sequence[dict[str, Any]] | None) -> Any:
    """``name`` with random (or packaged) weights: each member from ``build_extractor``, fused if several.

    Raises:
        ValueError: unknown backbone, or not one kwargs dict per member.
    """
    from focal.training import FusedExtractor, build_extractor, parse_extractor_name

    parts = parse_extractor_name(name)
    kwargs = list(member_kwargs or [{} for _ in parts])
    if len(kwargs) != len(parts):
        raise ValueError(f"{len(kwargs)} kwargs dicts for {len(parts)} members of {name!r}")
    members = [build_extractor(part, **kw) for part, kw in zip(parts, kwargs)]
    return members[0] if len(members) == 1 else FusedExtractor(members).eval()


def _check_fixed_sizes(model: Any, input_size: int) -> None:
    """Refuse to export a loaded fixed-size member at another side than it was built for.

    Raises:
        ValueError: a member's weights are for another size.
    """
    from focal.training import backbone_info

    for member in model.members:
        if backbone_info(member.name).fixed_input_size and member.input_size != input_size:
            raise ValueError(
                f"{member.name} weights are for {member.input_size} px (SAM's position embeddings are per size); "
                f"export at --input-size {member.input_size}, not {input_size}"
            )


def _build_model(
    backbone: str, weights: Sequence[str | Path] = (), input_size: int | None = None, seed: int = 0
) -> Any:
    """Build the extractor to export, with its weights (the export's use of ``build_extractor``).

    Args:
        backbone: registry name or ``a+b`` fusion.
        weights: nothing (random weights, seeded; ``lite`` keeps its packaged
            ImageNet encoder), one checkpoint (ours or the authors'), or one
            per fusion member.
        input_size: the export side; fixed-size backbones (SAM ViTs) are
            built for it when random, and must match it when loaded.
        seed: ``torch.manual_seed`` before a random build.

    Returns:
        An ``Extractor`` or ``FusedExtractor`` in eval mode.

    Raises:
        ValueError: unknown backbone, mismatched checkpoint, or a loaded ViT
            whose size differs from ``input_size``.
    """
    import torch

    from focal.training import build_extractor, parse_extractor_name

    if not weights:
        torch.manual_seed(seed)
        model = _random_extractor(backbone, _member_kwargs(parse_extractor_name(backbone), input_size))
    else:
        files = [str(w) for w in weights]
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"{f}: weights not found")
        model = build_extractor(backbone, weights=files[0] if len(files) == 1 else files)
    if input_size is not None:
        _check_fixed_sizes(model, input_size)
    return model.eval()


def model_source(model: Any, weights: Sequence[str | Path] = (), seed: int | None = None) -> dict[str, Any]:
    """The manifest's ``source`` entry for a model built by :func:`_build_model`.

    ``weights`` is one space-joined string (what the runtime prints in its
    rebuild hint); ``weights_files`` keeps the list.
    """
    files = [str(Path(w).resolve()) for w in weights]
    return {
        "weights": " ".join(files) if files else None,
        "weights_files": files,
        "weights_sha256": [sha256_file(f) for f in files],
        "init_seed": None if files else seed,
        "random_weights": not files,  # the runtime warns: such an artifact's masks mean nothing
        "member_kwargs": [dict(m.kwargs) for m in model.members],
    }


def model_from_manifest(manifest: Manifest) -> Any:
    """Rebuild the PyTorch extractor an artifact was exported from.

    Raises:
        ValueError: the artifact came from an in-memory model (no weights
            and no seed recorded), or a weight file changed since the export.
    """
    import torch

    from focal.training import build_extractor

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
    return _random_extractor(manifest.extractor, [dict(k) for k in src.get("member_kwargs") or []] or None).eval()
