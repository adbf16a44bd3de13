"""PyTorch datasets of forged and authentic images.

Every dataset yields the same dict, so they can be concatenated:

- ``image``: float32 tensor [3, S, S], RGB in [0, 1] (no mean/std normalisation);
- ``mask``: float32 tensor [1, S, S] in {0, 1}, 1 = forged;
- ``path``: str, the image file (for synthetic samples, the host photo);
- ``authentic``: bool, True when the sample has no forged pixel.

A sample is read at full resolution, optionally augmented there (so random
down-scaling acts on real pixels), then resized to S x S with the inference
rule (:mod:`.resize`).

Randomness: augmentation of sample ``i`` draws from
``default_rng([seed, epoch, i, 1])`` and synthetic generation from
``default_rng([seed, i, 0])``, so results do not depend on worker count or
order; call :meth:`set_epoch` to vary augmentation between epochs (DataLoader
workers get the new epoch when they are re-created, i.e. unless
``persistent_workers=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AugmentConfig, augment
from focal._datasets import FilePair, pairs_from_folders, read_json_file_list, read_npy_file_list
from .io import DEFAULT_MAX_PIXELS, read_image, read_mask
from .resize import resize_image, resize_mask, to_tensors
from .synthetic import SyntheticForgeryGenerator

__all__ = [
    "DatasetConfig",
    "FolderDataset",
    "JsonListDataset",
    "NpyListDataset",
    "PairDataset",
    "SAMPLE_POLICIES",
    "SyntheticDataset",
    "crop_sample",
]

# Sub-streams of a sample's random numbers.
_GENERATE_STREAM = 0
_AUGMENT_STREAM = 1
_CROP_STREAM = 2

# How a sample becomes a model input: "square" stretches it to S x S (the release's); "crop" takes
# an S x S window at the sample's own resolution (native-policy training: no resampling, so pixel
# traces survive); "native" keeps the whole sample as it is (native-policy validation, where the
# runtime's own geometry caps and pads it).
SAMPLE_POLICIES: tuple[str, ...] = ("square", "crop", "native")
# Share of "crop" windows centred on a forged pixel (the rest fall anywhere): a uniform window
# would often miss a small forged region and teach only "authentic".
_CROP_ON_FORGERY = 0.75


@dataclass(frozen=True)
class DatasetConfig:
    """Settings shared by every dataset."""

    size: int = 1024  # side S of the square model input (1024 in the paper)
    augment: AugmentConfig | None = None  # None = no augmentation (validation, test)
    seed: int = 0  # seeds augmentation and synthetic generation
    max_pixels: int = DEFAULT_MAX_PIXELS  # decompression-bomb limit per image
    policy: str = "square"  # one of SAMPLE_POLICIES

    def __post_init__(self) -> None:
        if self.policy not in SAMPLE_POLICIES:
            raise ValueError(f"DatasetConfig.policy must be one of {SAMPLE_POLICIES}, got {self.policy!r}")
        if not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"DatasetConfig.size must be a positive int, got {self.size!r}")
        if self.seed < 0:
            raise ValueError(f"DatasetConfig.seed must be >= 0, got {self.seed}")
        if self.max_pixels <= 0:
            raise ValueError(f"DatasetConfig.max_pixels must be positive, got {self.max_pixels}")


def crop_sample(image: np.ndarray, mask: np.ndarray, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An ``size x size`` window of a sample at its own resolution.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        mask: ``[H, W]`` bool, True = forged.
        size: the window's side.
        rng: draws the window: centred on a random forged pixel for
            ``_CROP_ON_FORGERY`` of the samples that hold one, else uniform.

    Returns:
        ``([size, size, 3] uint8, [size, size] bool)``. A sample shorter than
        ``size`` on a side is first enlarged (aspect kept) just enough to
        hold the window: the one case that resamples.
    """
    h, w = mask.shape
    if min(h, w) < size:
        scale = size / min(h, w)
        h, w = max(size, round(h * scale)), max(size, round(w * scale))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    forged = np.flatnonzero(mask)
    if forged.size and rng.random() < _CROP_ON_FORGERY:
        cy, cx = divmod(int(forged[rng.integers(forged.size)]), w)
        top = int(np.clip(cy - size // 2, 0, h - size))
        left = int(np.clip(cx - size // 2, 0, w - size))
    else:
        top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


class _ForgeryDataset(Dataset):
    """Shared epoch handling, augmentation, resizing and output format."""

    def __init__(self, config: DatasetConfig) -> None:
        self._config = config
        self._epoch = 0

    @property
    def config(self) -> DatasetConfig:
        """The dataset settings."""
        return self._config

    def set_epoch(self, epoch: int) -> None:
        """Selects the augmentation draws of an epoch (>= 0)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = epoch

    def _index(self, index: int) -> int:
        """Normalises a possibly negative index, raising IndexError when out of range."""
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} samples")
        return index % length

    def _finish(
        self, index: int, image: np.ndarray, mask: np.ndarray, path: str, authentic: bool
    ) -> dict[str, torch.Tensor | str | bool]:
        """Augments (with this sample's own generator), shapes it by ``config.policy`` and packs the output dict."""
        cfg = self._config
        if cfg.augment is not None:
            rng = np.random.default_rng([cfg.seed, self._epoch, index, _AUGMENT_STREAM])
            result = augment(image, mask, rng, cfg.augment)
            image, mask = result.image, result.mask
        if cfg.policy == "square":
            image, mask = resize_image(image, cfg.size), resize_mask(mask, cfg.size)
        elif cfg.policy == "crop":
            image, mask = crop_sample(image, mask, cfg.size, np.random.default_rng(
                [cfg.seed, self._epoch, index, _CROP_STREAM]))
        image_t, mask_t = to_tensors(image, mask)
        return {"image": image_t, "mask": mask_t, "path": path, "authentic": authentic}


class PairDataset(_ForgeryDataset):
    """Images with ground-truth masks from a list of file pairs.

    A pair without a mask is authentic (all-zero mask); a pair whose mask has
    no forged pixel is reported as authentic too.

    Args:
        pairs: The (image, mask) files.
        config: Shared settings.

    Raises:
        ValueError: if ``pairs`` is empty or a listed file does not exist
            (the first few missing ones are named).
    """

    def __init__(self, pairs: Sequence[FilePair], config: DatasetConfig = DatasetConfig()) -> None:
        super().__init__(config)
        self._pairs = tuple(pairs)
        if not self._pairs:
            raise ValueError("PairDataset needs at least one (image, mask) pair, got none")
        # Checked up front so a typo in a list fails at start-up, not hours in.
        missing = [
            str(p) for pair in self._pairs for p in (pair.image, pair.mask) if p is not None and not p.is_file()
        ]
        if missing:
            raise ValueError(f"{len(missing)} listed files do not exist, e.g. {missing[:3]}")

    @property
    def pairs(self) -> tuple[FilePair, ...]:
        """The file pairs, in dataset order."""
        return self._pairs

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | bool]:
        """Reads, augments and resizes one pair.

        Raises:
            IndexError: if ``index`` is out of range.
            ValueError: if a file is unreadable, too large, or the mask's size
                differs from the image's (both files named).
        """
        index = self._index(index)
        pair = self._pairs[index]
        image = read_image(pair.image, self._config.max_pixels)
        if pair.mask is None:
            mask = np.zeros(image.shape[:2], dtype=bool)
        else:
            mask = read_mask(pair.mask, self._config.max_pixels)
            if mask.shape != image.shape[:2]:
                raise ValueError(
                    f"{pair.mask}: mask is {mask.shape[1]} x {mask.shape[0]} but image {pair.image} "
                    f"is {image.shape[1]} x {image.shape[0]}"
                )
        return self._finish(index, image, mask, str(pair.image), authentic=not mask.any())


class FolderDataset(PairDataset):
    """A folder of images and a folder of same-stem masks (see :func:`~focal._datasets.pairs_from_folders`).

    Args:
        image_dir: Folder of images.
        mask_dir: Folder of masks (255 = forged), or None if all are authentic.
        config: Shared settings.
        mask_suffix: Extra ending of mask stems, e.g. ``"_gt"``.
    """

    def __init__(
        self,
        image_dir: str | Path,
        mask_dir: str | Path | None,
        config: DatasetConfig = DatasetConfig(),
        mask_suffix: str = "",
    ) -> None:
        super().__init__(pairs_from_folders(image_dir, mask_dir, mask_suffix), config)


class NpyListDataset(PairDataset):
    """The authors' ``.npy`` file list (see :func:`~focal._datasets.read_npy_file_list`).

    Args:
        path: ``.npy`` string array [N, 2] of (image, mask) paths.
        config: Shared settings.
        root: Folder for relative paths; defaults to the file's folder.
        allow_pickle: Accept object arrays (unpickling: trusted files only).
    """

    def __init__(
        self,
        path: str | Path,
        config: DatasetConfig = DatasetConfig(),
        root: str | Path | None = None,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(read_npy_file_list(path, root, allow_pickle), config)


class JsonListDataset(PairDataset):
    """An IMDL-BenCo JSON list (see :func:`~focal._datasets.read_json_file_list`).

    Args:
        path: JSON list of ``[image, mask_or_"Negative"]``; relative paths
            are resolved against the JSON file's folder.
        config: Shared settings.
    """

    def __init__(self, path: str | Path, config: DatasetConfig = DatasetConfig()) -> None:
        super().__init__(read_json_file_list(path), config)


class SyntheticDataset(_ForgeryDataset):
    """Synthetic forgeries, sample ``i`` fixed by (``i``, ``config.seed``).

    Sample ``i`` uses host photo ``i % len(generator)``; a length larger than
    the photo pool gives each photo several different forgeries.

    Args:
        generator: Makes the forgeries.
        length: Number of samples, > 0.
        config: Shared settings.

    Raises:
        ValueError: if ``length`` is not positive.
    """

    def __init__(
        self,
        generator: SyntheticForgeryGenerator,
        length: int,
        config: DatasetConfig = DatasetConfig(),
        fresh_per_epoch: bool = False,
    ) -> None:
        super().__init__(config)
        # False: sample i is the same forgery every epoch (only augmentation
        # changes); True: a new forgery per (epoch, i), so a training run does
        # not see (and memorise) the same few hundred forgeries again.
        self._fresh = fresh_per_epoch
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        self._generator = generator
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | bool]:
        """Generates, augments and resizes one sample.

        Raises:
            IndexError: if ``index`` is out of range.
            ValueError: if a photo or segmentation file cannot be read.
        """
        index = self._index(index)
        key = [self._config.seed, index, _GENERATE_STREAM] + ([self._epoch] if self._fresh else [])
        rng = np.random.default_rng(key)
        sample = self._generator.generate(index, rng)
        return self._finish(index, sample.image, sample.mask, str(sample.host), authentic=sample.authentic)
