"""The calibration cache: measured ranges keyed by what determines them.

Calibrating runs the FP32 graph over the whole set (minutes for a large
backbone); rebuilding an INT8 graph or engine with other excluded layers
must not redo it. A cache entry is ONNX Runtime's own range file
(``save_tensors_data`` JSON, which ``quantize_static`` reads back through its
``calibration_cache_path``) plus a ``.meta.json`` beside it saying what it
was measured on. The key is a hash of the FP32 graph's SHA-256, the
calibration set's fingerprint and the method's settings, so any change to
one of them is a miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from focal._files import cache_dir, write_atomic

__all__ = ["CalibrationCache", "cache_key", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$FOCAL_CACHE/calibration``, else ``$XDG_CACHE_HOME/focal/calibration``, else ``~/.cache/focal/calibration``."""
    return cache_dir("calibration")


def cache_key(model_sha256: str, set_fingerprint: str, method_key: dict[str, Any]) -> str:
    """Hex key (24 chars) of one calibration: graph, set and method settings."""
    payload = json.dumps({"model": model_sha256, "set": set_fingerprint, "method": method_key}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class CalibrationCache:
    """A folder of cached range files.

    Args:
        folder: where entries live (created on first store).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def ranges_path(self, key: str) -> Path:
        """ORT range file of ``key`` (may not exist)."""
        return self.folder / f"{key}.ranges.json"

    def meta_path(self, key: str) -> Path:
        """Description file of ``key`` (may not exist)."""
        return self.folder / f"{key}.meta.json"

    def has(self, key: str) -> bool:
        """Whether a complete entry exists (ranges and description)."""
        return self.ranges_path(key).is_file() and self.meta_path(key).is_file()

    def meta(self, key: str) -> dict[str, Any]:
        """The description stored with ``key``.

        Raises:
            FileNotFoundError: no such entry.
        """
        return json.loads(self.meta_path(key).read_text())

    def write_meta(self, key: str, meta: dict[str, Any]) -> Path:
        """Store the description of ``key`` atomically (the range file is written by ORT)."""
        path = self.meta_path(key)
        write_atomic(path, (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode())
        return path
