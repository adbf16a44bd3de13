"""Helpers shared by the Python-backend models (they run inside Triton's stub process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from focal.runtime.manifest import Manifest, load_manifest


def version_dir(args: dict[str, str]) -> Path:
    """The model's version folder (``MODEL/1``), from the arguments Triton passes to ``initialize``."""
    return Path(args["model_repository"]) / args["model_version"]


def parameters(args: dict[str, str]) -> dict[str, str]:
    """The ``parameters`` of the model's ``config.pbtxt`` as ``{key: string_value}``."""
    config: dict[str, Any] = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def manifest(args: dict[str, str]) -> Manifest:
    """The copy of the artifact's manifest in the model's version folder."""
    return load_manifest(version_dir(args))


def request_name(request: Any, index: int) -> str:
    """What to call one element of a request in an error message: its request id, if any, and index."""
    rid = request.request_id()
    return f"request {rid!r} image {index}" if rid else f"image {index}"
