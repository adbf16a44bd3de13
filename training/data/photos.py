"""Listing natural photos and splitting them into training and validation.

The split is decided per file from a hash of its key (by default its file
name) and the seed, not from its position in a list: adding, removing or
re-ordering photos never moves a photo from one side to the other, so a
validation photo cannot leak into training when the collection changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from focal._files import list_images

__all__ = ["Split", "list_images", "split_by_file"]


@dataclass(frozen=True)
class Split:
    """A training/validation split of photo files."""

    train: tuple[Path, ...]  # photos for training, in input order
    val: tuple[Path, ...]  # photos held out for validation, in input order


def _unit_hash(key: str, seed: int) -> float:
    """Maps (key, seed) to a number in [0, 1), stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_by_file(
    paths: Iterable[str | Path],
    val_fraction: float,
    seed: int = 0,
    root: str | Path | None = None,
) -> Split:
    """Splits photos into training and validation, deterministically per file.

    A photo goes to validation when ``hash(seed, key) < val_fraction``, so the
    validation share is ``val_fraction`` on average (not exactly), and each
    photo's side depends only on its key and the seed. Photos sharing a key
    (e.g. the same file name in two folders, likely the same picture) always
    land on the same side.

    Args:
        paths: Photo files.
        val_fraction: Expected share of photos held out, in [0, 1].
        seed: Selects a different, equally deterministic split.
        root: If given, a photo's key is its path relative to ``root``;
            otherwise it is the file name alone, so moving the collection
            elsewhere keeps the split.

    Returns:
        The split; each side keeps the input order.

    Raises:
        ValueError: if ``val_fraction`` is outside [0, 1], a path is not under
            ``root``, or a fraction strictly between 0 and 1 leaves one side
            empty (too few photos).
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    root_path = Path(root) if root is not None else None
    train: list[Path] = []
    val: list[Path] = []
    for item in paths:
        path = Path(item)
        if root_path is None:
            key = path.name
        else:
            try:
                key = path.relative_to(root_path).as_posix()
            except ValueError as err:
                raise ValueError(f"{path}: not under root {root_path}") from err
        (val if _unit_hash(key, seed) < val_fraction else train).append(path)
    if 0.0 < val_fraction < 1.0 and (not train or not val):
        raise ValueError(
            f"val_fraction={val_fraction} with seed={seed} leaves the "
            f"{'training' if not train else 'validation'} side empty "
            f"({len(train) + len(val)} photos): use more photos or another fraction"
        )
    return Split(train=tuple(train), val=tuple(val))
