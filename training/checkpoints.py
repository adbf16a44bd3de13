"""Loading and saving extractor weights: the authors' release and our own.

Two formats are read:

* the authors' released checkpoints (``FOCAL_ViT_weights.pth``,
  ``FOCAL_HRNet_weights.pth``): ``state_dict()`` of a ``DataParallel`` around
  a module whose ``net`` is the backbone, so keys start ``module.net.``; the
  ViT one holds a whole SAM model (``image_encoder.*`` is used,
  ``prompt_encoder.*`` / ``mask_decoder.*`` are not) and the HRNet one an
  unused ``final_layer.*``. Read with ``torch.load(weights_only=True)``:
  pickles from the internet cannot run code here.
* this project's checkpoints: ``NAME.safetensors`` (tensors) plus
  ``NAME.json`` beside it (extractor name, constructor overrides, provenance).

Every load is strict: a key that is missing or unexpected is an error that
lists them, never a silent partial load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from focal._files import atomic_output, write_atomic
from focal import __version__
from focal.training.backbones import backbone_info
from focal.training.model import Extractor, FusedExtractor, parse_extractor_name

CHECKPOINT_FORMAT = "focal-checkpoint"
CHECKPOINT_VERSION = 1

# Official keys that belong to parts of the released models FOCAL never runs.
_UNUSED_OFFICIAL_PREFIXES = ("prompt_encoder.", "mask_decoder.", "final_layer.")


@dataclass(frozen=True)
class CheckpointConfig:
    """The JSON beside a ``.safetensors`` checkpoint."""

    extractor: str  # registry name, ``+``-joined for fusion
    member_kwargs: list[dict[str, Any]]  # factory overrides per member
    format: str = CHECKPOINT_FORMAT  # marks the file as ours
    version: int = CHECKPOINT_VERSION  # layout version of this JSON
    focal_version: str = __version__  # package version that wrote it
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: training config, epoch, metrics


def _config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded without executing code.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``. A ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or not a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the loaders raise many types; one clear line for the user
        raise ValueError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def is_official_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """Whether keys follow the authors' ``(module.)net.`` layout."""
    return any(k.startswith(("module.net.", "net.")) for k in state)


def convert_official_state_dict(state: dict[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Map an authors' checkpoint onto :class:`Extractor` keys.

    Args:
        state: the released state dict (``module.net.`` keys).
        backbone: ``"vit"``/``"vit-b"`` (SAM encoder) or ``"hrnet"``.

    Returns:
        A state dict for ``Extractor(backbone)``, with the unused parts of
        the released model dropped and SAM's ``mlp.lin*`` renamed to timm's
        ``mlp.fc*``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        k = k[len("net."):] if k.startswith("net.") else k
        if k.startswith(_UNUSED_OFFICIAL_PREFIXES):
            continue
        if backbone.startswith("vit"):
            if k.startswith("image_encoder."):
                k = "encoder." + k[len("image_encoder."):].replace("mlp.lin", "mlp.fc")
        elif backbone == "hrnet":
            k = "body." + k
        out["backbone." + k] = tensor
    return out


def _strict_load(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... (+{len(items) - 8})" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing [{show(missing)}]")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected [{show(unexpected)}]")
        if mismatched:
            parts.append(f"{len(mismatched)} with wrong shape [{show(mismatched)}]")
        raise ValueError(f"{source}: checkpoint does not match the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_official_weights(extractor: Extractor, path: str | Path) -> None:
    """Load an authors' released checkpoint into ``extractor``, strictly.

    Raises:
        ValueError: unreadable file or keys/shapes that do not match.
    """
    state = read_state_dict(path)
    if not is_official_state_dict(state):
        raise ValueError(f"{path}: keys do not start with 'module.net.' or 'net.': not an authors' FOCAL checkpoint")
    _strict_load(extractor, convert_official_state_dict(state, extractor.name), str(path))


def read_checkpoint_config(path: str | Path) -> CheckpointConfig:
    """The JSON config beside one of our ``.safetensors`` checkpoints."""
    cfg_path = _config_path(Path(path))
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: its config {cfg_path.name} is missing beside it")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{cfg_path}: unreadable checkpoint config ({exc})") from exc
    if raw.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{cfg_path}: not a focal checkpoint config (format={raw.get('format')!r})")
    if int(raw.get("version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(f"{cfg_path}: checkpoint version {raw['version']} is newer than this focal reads")
    return CheckpointConfig(
        extractor=str(raw["extractor"]),
        member_kwargs=list(raw["member_kwargs"]),
        format=raw["format"],
        version=int(raw["version"]),
        focal_version=str(raw.get("focal_version", "")),
        extra=dict(raw.get("extra", {})),
    )


def save_checkpoint(
    extractor: Extractor | FusedExtractor, path: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``path`` (``.safetensors``) and its JSON config beside it.

    Files are written to a temporary name and renamed, so an interrupted save
    never leaves a half-written checkpoint under the real name.

    Returns:
        The ``.safetensors`` path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: our checkpoints are .safetensors files")
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = CheckpointConfig(
        extractor=extractor.name,
        member_kwargs=[dict(m.kwargs) for m in extractor.members],
        extra=dict(extra or {}),
    )
    state = {k: v.detach().contiguous().cpu() for k, v in extractor.state_dict().items()}
    # Weights first, then their description: a reader that finds the json
    # always finds the weights it describes.
    with atomic_output(path) as tmp:
        save_file(state, str(tmp))
    write_atomic(_config_path(path), (json.dumps(cfg.__dict__, indent=2, sort_keys=True) + "\n").encode())
    return path


def _skip_packaged(backbone: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Factory kwargs that skip loading packaged weights the checkpoint replaces anyway."""
    if backbone_info(backbone).packaged_weights:
        return {**kwargs, "pretrained": False}
    return dict(kwargs)


def _fresh_extractor(name: str, member_kwargs: list[dict[str, Any]] | None = None) -> Extractor | FusedExtractor:
    """An extractor with random or packaged weights, before any checkpoint is loaded.

    Args:
        name: a backbone name or several joined by ``+`` (fusion).
        member_kwargs: factory overrides per member, in order.

    Returns:
        An :class:`Extractor` or :class:`FusedExtractor` in eval mode.

    Raises:
        ValueError: unknown backbone, or not one kwargs dict per member.
    """
    parts = parse_extractor_name(name)
    kwargs = member_kwargs or [{} for _ in parts]
    if len(kwargs) != len(parts):
        raise ValueError(f"{len(kwargs)} kwargs dicts for {len(parts)} members of {name!r}")
    members = [Extractor(part, **kw) for part, kw in zip(parts, kwargs)]
    model = members[0] if len(members) == 1 else FusedExtractor(members)
    return model.eval()


def build_extractor(
    name: str | None = None,
    weights: str | Path | list[str | Path] | None = None,
    **kwargs: Any,
) -> Extractor | FusedExtractor:
    """Build an extractor and load its weights, whatever their origin: the one public way to build one.

    Args:
        name: backbone name(s), ``+``-joined for fusion. Optional for our own
            checkpoints (their JSON names the extractor); required otherwise.
        weights: ``None`` (random or packaged weights); one of our
            ``.safetensors`` checkpoints; an authors' ``.pth``; or, for a
            fusion, one path per member (each ours or the authors').
        **kwargs: factory overrides for a single, freshly built extractor
            (a fusion with overrides is fused from its members:
            ``FusedExtractor([build_extractor(a, **ka), build_extractor(b, **kb)])``).

    Returns:
        The extractor in eval mode on the CPU.

    Raises:
        ValueError: missing name, name/checkpoint disagreement, or a
            checkpoint whose keys do not match (the error lists them).
    """
    if isinstance(weights, (list, tuple)):
        if name is None:
            raise ValueError("a name is needed when weights are given per member")
        parts = parse_extractor_name(name)
        if len(parts) != len(weights):
            raise ValueError(f"{len(weights)} weight files for the {len(parts)} members of {name!r}")
        members = [build_extractor(p, w) for p, w in zip(parts, weights)]
        if len(members) == 1:
            return members[0]
        for m in members:
            if not isinstance(m, Extractor):
                raise ValueError(f"member weights must be single extractors, got a fusion {m.name!r}")
        return FusedExtractor(members).eval()  # type: ignore[arg-type]

    if weights is None:
        if name is None:
            raise ValueError("give an extractor name or a checkpoint")
        member_kwargs = [kwargs] if kwargs else None
        return _fresh_extractor(name, member_kwargs)

    path = Path(weights)
    if path.suffix == ".safetensors":
        cfg = read_checkpoint_config(path)
        if name is not None and name != cfg.extractor:
            raise ValueError(f"{path}: checkpoint is for {cfg.extractor!r}, not {name!r}")
        parts = parse_extractor_name(cfg.extractor)
        model = _fresh_extractor(cfg.extractor, [_skip_packaged(p, kw) for p, kw in zip(parts, cfg.member_kwargs)])
        _strict_load(model, read_state_dict(path), str(path))
        # Record the user's kwargs, not the load-time override.
        for member, kw in zip(model.members, cfg.member_kwargs):
            member.kwargs = dict(kw)
        return model.eval()

    if name is None:
        raise ValueError(f"{path}: name the backbone of an authors' checkpoint (vit or hrnet)")
    model = _fresh_extractor(name, [kwargs] if kwargs else None)
    if not isinstance(model, Extractor):
        raise ValueError(f"{path}: one authors' checkpoint cannot fill the fusion {name!r}; give one per member")
    load_official_weights(model, path)
    return model.eval()
