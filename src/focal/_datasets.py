"""Lists of (image, mask) file pairs: from folders, ``.npy`` and JSON lists.

All three give the same :class:`FilePair` list, so one dataset class reads
them all. A pair without a mask is an authentic image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from focal._files import IMAGE_EXTENSIONS, list_images

__all__ = ["FilePair", "load_pairs", "pairs_from_folders", "read_json_file_list", "read_npy_file_list"]

# Mask entries meaning "no mask: authentic image", compared case-insensitively
# ("Negative" is IMDL-BenCo's word; "None"/"nan" come from str() of missing
# values in numpy string arrays).
_NO_MASK = frozenset({"", "none", "null", "nan", "negative"})


@dataclass(frozen=True)
class FilePair:
    """An image file and its ground-truth mask file."""

    image: Path  # the image
    mask: Path | None  # its mask (255 = forged); None = authentic image


def _files_by_stem(folder: Path, suffix: str) -> dict[str, Path]:
    """Maps stem (minus ``suffix``) to file for the image files in ``folder``."""
    found: dict[str, Path] = {}
    for path in list_images(folder, recursive=False):
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if stem in found:
            raise ValueError(f"{folder}: two files share the stem {stem!r} ({found[stem].name}, {path.name})")
        found[stem] = path
    return found


def pairs_from_folders(
    image_dir: str | Path, mask_dir: str | Path | None, mask_suffix: str = ""
) -> list[FilePair]:
    """Pairs the images of a folder with same-stem masks of another.

    Args:
        image_dir: Folder of images (not searched recursively).
        mask_dir: Folder of masks, or ``None`` for a folder of authentic
            images. Masks without an image are ignored.
        mask_suffix: Extra ending of mask stems, e.g. ``"_gt"`` for
            ``x.jpg`` / ``x_gt.png``.

    Returns:
        Pairs sorted by image file name; images without a mask get
        ``mask=None`` (authentic).

    Raises:
        ValueError: if a folder is missing, holds no image, or two files in
            one folder share a stem (the pairing would be ambiguous).
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ValueError(f"{image_dir}: image folder not found")
    images = _files_by_stem(image_dir, "")
    if not images:
        raise ValueError(f"{image_dir}: no image files (extensions {sorted(IMAGE_EXTENSIONS)})")
    masks: dict[str, Path] = {}
    if mask_dir is not None:
        mask_dir = Path(mask_dir)
        if not mask_dir.is_dir():
            raise ValueError(f"{mask_dir}: mask folder not found")
        masks = _files_by_stem(mask_dir, mask_suffix)
    ordered = sorted(images.items(), key=lambda item: item[1].name)
    return [FilePair(image=path, mask=masks.get(stem)) for stem, path in ordered]


def _entry_path(value: object, base: Path, source: Path, row: int, column: str) -> Path | None:
    """Turns one list entry into a path (relative to ``base``), or None for "no mask"."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="strict")
    if not isinstance(value, str):
        raise ValueError(
            f"{source}: entry {row} {column} is {type(value).__name__} {value!r}, expected a path string"
        )
    text = value.strip()
    if text.lower() in _NO_MASK:
        return None
    path = Path(text)
    return path if path.is_absolute() else base / path


def _to_pairs(rows: Sequence[Sequence[object]], source: Path, base: Path) -> list[FilePair]:
    """Converts validated two-element rows to pairs; names ``source`` in errors."""
    pairs = []
    for row, (image_entry, mask_entry) in enumerate(rows):
        image = _entry_path(image_entry, base, source, row, "image")
        if image is None:
            raise ValueError(f"{source}: entry {row} has no image path")
        pairs.append(FilePair(image=image, mask=_entry_path(mask_entry, base, source, row, "mask")))
    if not pairs:
        raise ValueError(f"{source}: the file list is empty")
    return pairs


def read_npy_file_list(
    path: str | Path, root: str | Path | None = None, allow_pickle: bool = False
) -> list[FilePair]:
    """Reads the authors' release file-list format: an array of (image, mask) pairs.

    Args:
        path: ``.npy`` file holding a string array of shape [N, 2]; an empty
            (or ``None``/``Negative``) mask entry marks an authentic image.
        root: Folder that relative paths are resolved against; defaults to
            the ``.npy`` file's folder.
        allow_pickle: Also accept object arrays. Loading them unpickles, which
            can run code from the file: enable only for files you trust.

    Returns:
        The pairs in file order.

    Raises:
        ValueError: if the file cannot be read, needs pickle while
            ``allow_pickle`` is False, is not [N, 2], or has an empty image
            entry; the message names the file.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(6)
    except OSError as err:
        raise ValueError(f"{path}: cannot read .npy file ({err.strerror or err})") from err
    if magic != b"\x93NUMPY":  # checked first: np.load would try to unpickle anything else
        raise ValueError(f"{path}: not a .npy file (no NumPy header)")
    try:
        array = np.load(path, allow_pickle=allow_pickle)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(
                f"{path}: holds Python objects (dtype=object), which load only with allow_pickle=True; "
                "that unpickles and can run code from the file, so use it only for trusted files "
                "(or re-save the list as a string array)"
            ) from err
        raise ValueError(f"{path}: not a valid .npy file ({err})") from err
    except OSError as err:
        raise ValueError(f"{path}: cannot read .npy file ({err})") from err
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[1] != 2:
        shape = getattr(array, "shape", type(array).__name__)
        raise ValueError(f"{path}: expected an array of shape [N, 2] of (image, mask) paths, got {shape}")
    if array.dtype.kind not in "USO":
        raise ValueError(f"{path}: expected string paths, got dtype {array.dtype}")
    base = Path(root) if root is not None else path.parent
    return _to_pairs(array.tolist(), path, base)


def read_json_file_list(path: str | Path) -> list[FilePair]:
    """Reads an IMDL-BenCo-style JSON list of ``[image, mask]`` pairs.

    Args:
        path: JSON file holding a list of two-element lists; the mask is a
            path or ``"Negative"`` (authentic). Relative paths are resolved
            against the JSON file's folder.

    Returns:
        The pairs in file order.

    Raises:
        ValueError: if the file cannot be read or parsed, or is not a list
            of pairs of strings; the message names the file (and entry).
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"{path}: cannot read JSON file ({err})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(content, list):
        raise ValueError(f"{path}: expected a JSON list of [image, mask] pairs, got {type(content).__name__}")
    for row, entry in enumerate(content):
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError(f"{path}: entry {row} is {entry!r}, expected [image_path, mask_path_or_Negative]")
    return _to_pairs(content, path, path.parent)


def load_pairs(spec: str | Path) -> list[FilePair]:
    """The image/mask pairs of one dataset spec: the one reader of dataset specs.

    Args:
        spec: A folder holding ``images/`` (and ``masks/``, else all
            authentic), a bare folder of photos (all authentic), a ``.npy``
            list (the authors' release format) or a ``.json`` list
            (IMDL-BenCo's).

    Returns:
        The pairs, in the order the spec gives them.

    Raises:
        ValueError: ``spec`` is none of these, or its list is malformed;
            the message names it.
    """
    path = Path(spec)
    if path.suffix == ".npy":
        return read_npy_file_list(path)
    if path.suffix == ".json":
        return read_json_file_list(path)
    if (path / "images").is_dir():
        masks = path / "masks"
        return pairs_from_folders(path / "images", masks if masks.is_dir() else None)
    if path.is_dir():  # a bare folder of photos: all authentic
        return pairs_from_folders(path, None)
    raise ValueError(f"{spec}: not a dataset (a folder with images/ [+ masks/], a .npy or a .json list)")
