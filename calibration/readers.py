"""Calibration sets: readers yielding ``{input_name: array}`` batches.

INT8 activation ranges are only as good as the images they are measured on.
FOCAL's features must separate pristine from forged pixels whatever the
compression history, so a calibration set mixes authentic and forged images
and re-encodes them across JPEG qualities: a set of clean PNGs alone would
give ranges that clip the blocking artefacts of a quality-50 JPEG.

Every reader:

* iterates over batches ``{input_name: [B, 3, S, S] float32 RGB in [0, 1]}``,
  preprocessed exactly as the runtime does (:func:`focal.runtime.to_input`);
  under the ``native`` input policy (``native=NativeInput(...)``) each image
  is one batch ``[1, 3, H', W']`` at its own shape instead: aspect kept, long
  side capped at ``max_side``, padded to the stride
  (:func:`focal.runtime.geometry.plan`), so the ranges are measured on the
  pixels the runtime will feed, not on a squashed square;
* also speaks ONNX Runtime's ``CalibrationDataReader`` protocol
  (``get_next()`` returning a batch or ``None``, ``rewind()``), so it can be
  handed to ORT's calibrators as is;
* describes itself (:meth:`CalibrationReader.describe`) for the manifest, and
  gives a :meth:`~CalibrationReader.fingerprint` that changes whenever the
  images or their treatment change, which keys the calibration cache.

Readers: :class:`FolderReader` (image files), :class:`SyntheticReader` (the
synthetic forgery generator over untouched photos), :class:`ArrayReader`
(images in memory) and :class:`DatasetReader` (a ``focal.training.data``
dataset).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from focal._files import IMAGE_EXTENSIONS, list_images
from focal.runtime.geometry import check_native, plan
from focal.runtime.imageio import read_image
from focal.runtime.preprocess import network_input, to_input

__all__ = [
    "DEFAULT_JPEG_QUALITIES",
    "ArrayReader",
    "CalibrationReader",
    "DatasetReader",
    "FolderReader",
    "NativeInput",
    "SyntheticReader",
    "jpeg_roundtrip",
    "list_image_files",
]

# Qualities cycled over the images: None keeps the file as it is; the others
# span what forensic benchmarks contain (camera JPEGs ~90-95, social media ~75,
# heavy re-compression ~50).
DEFAULT_JPEG_QUALITIES: tuple[int | None, ...] = (None, 95, 75, 50)

def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted by relative path (:func:`focal._files.list_images`).

    Raises:
        ValueError: ``folder`` is not a directory, or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: calibration folder not found (not a directory)")
    files = list_images(root)
    if not files:
        raise ValueError(f"{root}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in it")
    return files


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode an RGB image as JPEG.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        quality: JPEG quality in ``[1, 100]``.

    Returns:
        ``[H, W, 3]`` uint8 RGB, the decoded JPEG.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays, checked by callers
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]


@dataclass(frozen=True)
class NativeInput:
    """The ``native`` input policy of the graph being calibrated (the manifest's ``input`` fields)."""

    max_side: int  # cap of the longer side, pixels (a multiple of stride)
    stride: int  # input pixels per feature cell: inputs are padded to a multiple of it

    def __post_init__(self) -> None:
        check_native(self.max_side, self.stride)


@dataclass(frozen=True)
class _Item:
    """One calibration image before preprocessing."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, already JPEG re-encoded if asked
    forged: bool | None  # True/False when known, None when the source does not say
    quality: int | None  # JPEG quality applied here (None: as read)
    key: str  # stable identity of the source (file name, sample index)


class CalibrationReader:
    """Base class: batching, ORT's reader protocol, description, fingerprint.

    Subclasses implement :meth:`_items` (the images, in a fixed order) and
    :meth:`_source` (what the set is made of).

    Args:
        input_size: side S of the network input.
        input_name: graph input name the batches are keyed by.
        batch: images per batch (the exported graph's static batch).
        jpeg_qualities: qualities cycled over the images (image ``i`` gets
            ``jpeg_qualities[i % len]``); ``None`` entries leave the image as it is.
        native: the ``native`` input policy: each image at its own capped,
            stride-padded shape, one per batch (``batch`` must be 1); None:
            squashed to ``S x S`` (the square policy).
    """

    def __init__(
        self,
        input_size: int,
        input_name: str = "image",
        batch: int = 1,
        jpeg_qualities: Sequence[int | None] = DEFAULT_JPEG_QUALITIES,
        native: NativeInput | None = None,
    ) -> None:
        if int(input_size) < 8:
            raise ValueError(f"input_size must be >= 8, got {input_size}")
        if int(batch) < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if not jpeg_qualities:
            raise ValueError("jpeg_qualities must not be empty (use (None,) for no re-encoding)")
        for q in jpeg_qualities:
            if q is not None and not 1 <= int(q) <= 100:
                raise ValueError(f"JPEG quality must be None or in [1, 100], got {q}")
        if native is not None and int(batch) != 1:
            raise ValueError(f"native calibration runs each image at its own shape: batch must be 1, got {batch}")
        self.native = native
        self.input_size = int(input_size)
        self.input_name = str(input_name)
        self.batch = int(batch)
        self.jpeg_qualities = tuple(None if q is None else int(q) for q in jpeg_qualities)
        self._iterator: Iterator[dict[str, np.ndarray]] | None = None
        self._stats: dict[str, Any] | None = None

    # -- to implement -----------------------------------------------------

    def _items(self) -> Iterator[_Item]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _source(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        """Number of images (not batches)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------

    def _quality(self, index: int) -> int | None:
        return self.jpeg_qualities[index % len(self.jpeg_qualities)]

    def _with_quality(self, image: np.ndarray, index: int) -> tuple[np.ndarray, int | None]:
        quality = self._quality(index)
        return (image if quality is None else jpeg_roundtrip(image, quality)), quality

    def _preprocess(self, image: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 -> float32 ``[3, S, S]`` (square) or ``[3, H', W']`` (native, as the runtime plans)."""
        if self.native is None:
            return to_input(image, self.input_size)
        # max_points only sets the clustering grid, which calibration never sees: no pooling bound here.
        geometry = plan(image.shape[0], image.shape[1], "native", self.input_size, self.native.stride,
                        self.native.max_side, max_points=image.shape[0] * image.shape[1])
        return network_input(image, self.input_size, geometry)

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{input_name: [B, 3, S, S] float32}``; a short last batch is padded by repeating its last image.

        Padding keeps the batch static (the exported graph's shape); the
        repeated image only weighs that image a little more in the ranges.
        Under ``native`` every batch is ``[1, 3, H', W']``, its shape the image's own.
        """
        counts = {"images": 0, "forged": 0, "authentic": 0, "unknown": 0}
        per_quality: dict[str, int] = {}
        pending: list[np.ndarray] = []
        for item in self._items():
            pending.append(self._preprocess(item.image))
            counts["images"] += 1
            counts["unknown" if item.forged is None else ("forged" if item.forged else "authentic")] += 1
            q = "original" if item.quality is None else str(item.quality)
            per_quality[q] = per_quality.get(q, 0) + 1
            if len(pending) == self.batch:
                yield {self.input_name: np.stack(pending)}
                pending = []
        if pending:
            pending += [pending[-1]] * (self.batch - len(pending))
            yield {self.input_name: np.stack(pending)}
        self._stats = dict(counts, jpeg_qualities=per_quality)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.batches()

    def get_next(self) -> dict[str, np.ndarray] | None:
        """ONNX Runtime's reader protocol: the next batch, or ``None`` at the end."""
        if self._iterator is None:
            self._iterator = self.batches()
        return next(self._iterator, None)

    def rewind(self) -> None:
        """Start again from the first batch (ORT's protocol)."""
        self._iterator = None

    def describe(self) -> dict[str, Any]:
        """What the set is, for the manifest's ``calibration`` entry.

        Counts of forged/authentic images per JPEG quality are those of the
        last full pass (filled in after the set has been read once).
        """
        desc = {
            **self._source(),
            "images": len(self),
            "input_size": self.input_size,
            "batch": self.batch,
            "jpeg_qualities": ["original" if q is None else q for q in self.jpeg_qualities],
            "fingerprint": self.fingerprint(),
        }
        if self.native is not None:
            desc["policy"] = {"policy": "native", "max_side": self.native.max_side, "stride": self.native.stride}
        if self._stats is not None:
            desc["counts"] = self._stats
        return desc

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the source description and treatment."""
        payload = {
            "source": self._source(),
            "input_size": self.input_size,
            "batch": self.batch,
            "jpeg_qualities": list(self.jpeg_qualities),
            "keys": self._keys(),
        }
        if self.native is not None:  # only then, so square sets keep the cache keys they had
            payload["native"] = {"max_side": self.native.max_side, "stride": self.native.stride}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _keys(self) -> list[str]:
        """Identity of each image (subclasses with cheap keys override)."""
        return []


class FolderReader(CalibrationReader):
    """Image files from a folder (recursively), each re-encoded at one of the JPEG qualities.

    Args:
        folder: where the images are.
        input_size: side S of the network input.
        limit: use at most this many files (evenly spread over the sorted list).
        masks: optional folder of same-stem masks; an image whose mask has a
            pixel above 127 counts as forged, one with an empty mask as
            authentic; without masks the forged/authentic split is unknown.
        **kwargs: :class:`CalibrationReader` arguments.
    """

    def __init__(
        self,
        folder: str | Path,
        input_size: int,
        limit: int | None = 64,
        masks: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_size, **kwargs)
        files = list_image_files(folder)
        if limit is not None:
            if int(limit) < 1:
                raise ValueError(f"limit must be >= 1 or None, got {limit}")
            if len(files) > limit:
                idx = np.linspace(0, len(files) - 1, int(limit)).round().astype(int)
                files = [files[i] for i in idx]
        self.folder = Path(folder)
        self.files = files
        self.masks = None if masks is None else Path(masks)
        if self.masks is not None and not self.masks.is_dir():
            raise ValueError(f"{self.masks}: mask folder not found")

    def __len__(self) -> int:
        return len(self.files)

    def _forged(self, path: Path) -> bool | None:
        if self.masks is None:
            return None
        for candidate in sorted(self.masks.glob(path.stem + ".*")):
            mask = cv2.imread(str(candidate), cv2.IMREAD_GRAYSCALE)
            if mask is not None:
                return bool((mask > 127).any())
        return None

    def _items(self) -> Iterator[_Item]:
        for i, path in enumerate(self.files):
            image, quality = self._with_quality(read_image(path), i)
            yield _Item(image, self._forged(path), quality, path.name)

    def _source(self) -> dict[str, Any]:
        return {"kind": "folder", "path": str(self.folder), "masks": None if self.masks is None else str(self.masks)}

    def _keys(self) -> list[str]:
        return [f"{p.relative_to(self.folder).as_posix()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in self.files]


class SyntheticReader(CalibrationReader):
    """Synthetic forgeries (splice, copy-move, inpainting) and authentic photos.

    Uses ``focal.training.data.SyntheticForgeryGenerator`` (the training
    side's generator, so calibration sees the same kind of forgeries the
    model was trained on). Its own final JPEG is switched off: the reader
    applies :attr:`jpeg_qualities` itself, so every quality is represented
    among both forged and authentic samples.

    Args:
        photos: folder of untouched photos (hosts and donors).
        input_size: side S of the network input.
        count: number of samples.
        seed: seed of sample ``i``'s generator (``default_rng([seed, i])``).
        p_authentic: share of untouched samples.
        segmentation_dir: optional BSDS500 ``.mat`` folder (object-shaped regions).
        max_side: photos are shrunk to this longer side first (speed).
        **kwargs: :class:`CalibrationReader` arguments.
    """

    def __init__(
        self,
        photos: str | Path,
        input_size: int,
        count: int = 64,
        seed: int = 0,
        p_authentic: float = 0.3,
        segmentation_dir: str | Path | None = None,
        max_side: int | None = 768,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_size, **kwargs)
        if int(count) < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not 0.0 <= p_authentic <= 1.0:
            raise ValueError(f"p_authentic must be in [0, 1], got {p_authentic}")
        self.photos = Path(photos)
        self.files = list_image_files(self.photos)
        self.count = int(count)
        self.seed = int(seed)
        self.p_authentic = float(p_authentic)
        self.segmentation_dir = None if segmentation_dir is None else Path(segmentation_dir)
        self.max_side = max_side
        self._generator: Any = None

    def __len__(self) -> int:
        return self.count

    def _make_generator(self) -> Any:
        try:
            from focal.training.data import SyntheticConfig, SyntheticForgeryGenerator
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("synthetic calibration needs the training extra: pip install 'focal[train]'") from exc
        config = SyntheticConfig(
            p_authentic=self.p_authentic, p_final_jpeg=0.0, max_side=self.max_side
        )
        return SyntheticForgeryGenerator(self.files, config, segmentation_dir=self.segmentation_dir)

    def _items(self) -> Iterator[_Item]:
        if self._generator is None:
            self._generator = self._make_generator()
        # Hosts are spread over the whole photo list, not its first `count` files.
        step = max(1, len(self.files) // self.count)
        for i in range(self.count):
            rng = np.random.default_rng([self.seed, i])
            sample = self._generator.generate((i * step) % len(self.files), rng)
            image, quality = self._with_quality(sample.image, i)
            yield _Item(image, not sample.authentic, quality, f"{sample.kind}:{sample.host.name}")

    def _source(self) -> dict[str, Any]:
        return {
            "kind": "synthetic",
            "photos": str(self.photos),
            "photo_files": len(self.files),
            "count": self.count,  # 16 and 128 samples are different sets: never one cache entry
            "seed": self.seed,
            "p_authentic": self.p_authentic,
            "segmentation_dir": None if self.segmentation_dir is None else str(self.segmentation_dir),
            "max_side": self.max_side,
            "generator": "focal.training.data.SyntheticForgeryGenerator",
        }

    def _keys(self) -> list[str]:
        return [p.name for p in self.files]


class ArrayReader(CalibrationReader):
    """Images already in memory.

    Args:
        images: ``[H, W, 3]`` uint8 RGB arrays.
        input_size: side S of the network input.
        forged: optional flag per image (True = contains a forgery).
        name: a label for the manifest.
        **kwargs: :class:`CalibrationReader` arguments.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        input_size: int,
        forged: Sequence[bool] | None = None,
        name: str = "arrays",
        **kwargs: Any,
    ) -> None:
        super().__init__(input_size, **kwargs)
        if not len(images):
            raise ValueError("ArrayReader needs at least one image")
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"image {i}: expected [H, W, 3] uint8 RGB, got {getattr(im, 'shape', None)} {getattr(im, 'dtype', None)}")
        if forged is not None and len(forged) != len(images):
            raise ValueError(f"{len(forged)} forged flags for {len(images)} images")
        self.images = list(images)
        self.forged = None if forged is None else [bool(f) for f in forged]
        self.name = name

    def __len__(self) -> int:
        return len(self.images)

    def _items(self) -> Iterator[_Item]:
        for i, im in enumerate(self.images):
            image, quality = self._with_quality(im, i)
            yield _Item(image, None if self.forged is None else self.forged[i], quality, str(i))

    def _source(self) -> dict[str, Any]:
        return {"kind": "arrays", "name": self.name}

    def _keys(self) -> list[str]:
        return [hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest()[:16] for im in self.images]


class DatasetReader(CalibrationReader):
    """Samples of a ``focal.training.data`` dataset (or anything indexable alike).

    Each item is either a dict with ``image`` (``[3, S, S]`` float in
    ``[0, 1]``, tensor or array, as the training datasets yield) and
    optionally ``authentic``, or an ``[H, W, 3]`` uint8 RGB array. Float
    images are turned back into uint8 (the pixel grid the runtime sees) so
    they can be JPEG re-encoded and preprocessed exactly like files.

    Args:
        dataset: an indexable with ``len``.
        input_size: side S of the network input.
        limit: use at most this many items (the first ones).
        name: a label for the manifest.
        **kwargs: :class:`CalibrationReader` arguments.
    """

    def __init__(self, dataset: Any, input_size: int, limit: int | None = 64, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(input_size, **kwargs)
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be indexable with a length, got {type(dataset).__name__}")
        self.dataset = dataset
        self.count = len(dataset) if limit is None else min(len(dataset), int(limit))
        if self.count < 1:
            raise ValueError("the dataset is empty")
        self.name = name or type(dataset).__name__

    def __len__(self) -> int:
        return self.count

    @staticmethod
    def _to_uint8(image: Any) -> np.ndarray:
        arr = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
        if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
            return arr
        if arr.ndim == 3 and arr.shape[0] == 3 and np.issubdtype(arr.dtype, np.floating):
            return np.ascontiguousarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0))
        raise ValueError(f"dataset image must be [3, S, S] float in [0, 1] or [H, W, 3] uint8, got {arr.shape} {arr.dtype}")

    def _items(self) -> Iterator[_Item]:
        for i in range(self.count):
            item = self.dataset[i]
            if isinstance(item, dict):
                image = self._to_uint8(item["image"])
                forged = None if "authentic" not in item else not bool(item["authentic"])
            else:
                image, forged = self._to_uint8(item), None
            image, quality = self._with_quality(image, i)
            yield _Item(image, forged, quality, str(i))

    def _source(self) -> dict[str, Any]:
        return {"kind": "dataset", "name": self.name, "items": self.count}
