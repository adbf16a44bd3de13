"""The one home of the file jobs every package shares.

Which suffixes are images, how folders are listed, how outputs are written
atomically and where caches live. The runtime, training, export,
calibration and evaluation all call these; none writes its own.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "UNSUPPORTED_IMAGE_EXTENSIONS", "atomic_output", "cache_dir", "list_images", "write_atomic"]

# File suffixes (lower case) treated as images when listing folders. A file
# named explicitly is decoded whatever its suffix; this set only decides what
# a folder listing picks up.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
# Image formats the runtime refuses (no header reader to check the pixel count before a decode, or
# no decoder). A detection run lists them from folders anyway, so each gets a record saying
# "unsupported format" instead of vanishing from the run.
UNSUPPORTED_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".gif", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".jxl", ".exr", ".hdr", ".psd", ".ico", ".dng", ".cr2",
     ".nef", ".arw", ".raw"}
)


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files in a folder, in a stable order.

    Hidden files and folders (a name starting with ``.``) are skipped.

    Args:
        root: Folder to list.
        recursive: Also list subfolders.

    Returns:
        Paths (``root`` joined with the relative path), sorted by their POSIX
        relative path, so the order does not depend on the file system.

    Raises:
        ValueError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for path in candidates:
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block succeeds.

    The temporary name is unique per call (process id and random bits), so
    two writers of the same file never share one; a reader sees the old
    file or the new one, never a partial one. On error the temporary file is
    removed and ``path`` is left as it was.

    Args:
        path: Final file; its folder is created if missing.

    Yields:
        The temporary path to write to. It keeps ``path``'s suffix, so
        writers that choose a format by suffix (OpenCV, torch) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | memoryview) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def cache_dir(kind: str) -> Path:
    """The folder for one kind of cache (e.g. ``"calibration"``, ``"tensorrt"``).

    ``$FOCAL_CACHE/KIND``, else ``$XDG_CACHE_HOME/focal/KIND``, else
    ``~/.cache/focal/KIND``. Not created here.
    """
    if os.environ.get("FOCAL_CACHE"):
        return Path(os.environ["FOCAL_CACHE"]) / kind
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "focal" / kind
