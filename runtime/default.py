"""The model bundled with the package, used when no artifact is named."""

from __future__ import annotations

from pathlib import Path

from focal.runtime.manifest import MANIFEST_NAME

DEFAULT_DIR = Path(__file__).resolve().parent / "default_model"


def default_artifact() -> Path:
    """Folder of the embedded default artifact.

    Raises:
        FileNotFoundError: this build bundles no default model yet.
    """
    if not (DEFAULT_DIR / MANIFEST_NAME).is_file():
        raise FileNotFoundError(
            "no embedded default model in this build of focal yet; give an artifact folder "
            "exported with focal-export"
        )
    return DEFAULT_DIR
