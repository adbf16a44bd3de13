"""Writing synthetic forgeries and held-out photos to disk, for ``focal-eval``.

Training validates on synthetic forgeries made *in memory* from the photos
its split holds out. To measure a model on exactly that distribution with
the runtime (``focal-eval``), the same samples are written as a dataset
folder: ``images/NAME.png`` (lossless: the generator's own JPEG steps are
already in the pixels), ``masks/NAME.png`` (255 = forged; none for an
authentic sample), ``samples.jsonl`` (kind, host and donor photo per
sample) and, with ``authentic_list``, an IMDL-BenCo JSON list of the split's
untouched photos (all "Negative") for false-alarm counts.

Sample ``i`` is the generator's draw with the random stream
``(seed, i, 0)``, the stream :class:`~.datasets.SyntheticDataset` uses, so
``seed = training seed + 1`` reproduces a run's validation forgeries at the
generator's resolution (training shrinks them to its input size after).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .photos import list_images, split_by_file
from .synthetic import SyntheticConfig, SyntheticForgeryGenerator

from focal._files import atomic_output

SPLITS: tuple[str, ...] = ("val", "train", "all")


@dataclass(frozen=True)
class SynthExportConfig:
    """What ``focal-synth`` writes."""

    out: str  # dataset folder (images/, masks/, samples.jsonl)
    # Untouched photos; required (None only so the other fields keep their defaults): the
    # library knows no data location, focal-synth takes it from --photos or $FOCAL_PHOTOS.
    photos: str | None = None
    segmentations: str | None = None  # BSDS500 .mat folder of object shapes; None = random polygons only
    split: str = "val"  # which photos: those training holds out ("val"), the others ("train"), or "all"
    val_fraction: float = 0.1  # as the training run's
    split_seed: int = 0  # the training run's seed: it decides the split
    count: int = 96  # samples to write
    seed: int = 1  # sample streams; training validates with its seed + 1
    max_side: int | None = 768  # as the training run's
    authentic_list: str | None = None  # also write the split's untouched photos as a JSON list here

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if not self.photos:
            raise ValueError("photos is required: the folder of untouched photos to forge from "
                             "(focal-synth --photos DIR or $FOCAL_PHOTOS)")


def _write_png(path: Path, image: np.ndarray) -> None:
    """Atomic PNG write (a partial file never looks finished)."""
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{path}: cannot write")


def export_synthetic(cfg: SynthExportConfig, progress: bool = True) -> dict[str, int]:
    """Writes ``cfg.count`` synthetic samples (and optionally the authentic list).

    Returns:
        Counts: ``{"samples", "forged", "authentic", "photos"}``.

    Raises:
        ValueError: the photo folder is missing or yields no photos for the split.
    """
    photos = list_images(cfg.photos)
    split = split_by_file(photos, cfg.val_fraction, seed=cfg.split_seed)
    chosen = {"val": split.val, "train": split.train, "all": tuple(photos)}[cfg.split]
    if not chosen:
        raise ValueError(f"{cfg.photos}: no photos on the {cfg.split!r} side of the split")
    seg = cfg.segmentations if cfg.segmentations and Path(cfg.segmentations).is_dir() else None
    gen = SyntheticForgeryGenerator(chosen, SyntheticConfig(max_side=cfg.max_side), seg)
    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    forged = 0
    records = []
    for i in range(cfg.count):
        sample = gen.generate(i, np.random.default_rng([cfg.seed, i, 0]))  # SyntheticDataset's stream
        name = f"syn_{i:03d}"
        _write_png(out / "images" / f"{name}.png", np.ascontiguousarray(sample.image[:, :, ::-1]))
        if not sample.authentic:
            _write_png(out / "masks" / f"{name}.png", np.where(sample.mask, 255, 0).astype(np.uint8))
            forged += 1
        records.append({"name": name, "kind": sample.kind, "host": str(sample.host),
                        "donor": None if sample.donor is None else str(sample.donor)})
        if progress and (sys.stderr.isatty() or (i + 1) % 16 == 0 or i + 1 == cfg.count):
            # A live counter on a terminal, a line every 16 samples in logs.
            end = "" if sys.stderr.isatty() else "\n"
            print(f"\rfocal-synth: {i + 1}/{cfg.count}", end=end, file=sys.stderr, flush=True)
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if cfg.authentic_list:
        listing = [[str(Path(p).resolve()), "Negative"] for p in chosen]
        Path(cfg.authentic_list).write_text(json.dumps(listing, indent=1) + "\n")
    return {"samples": cfg.count, "forged": forged, "authentic": cfg.count - forged, "photos": len(chosen)}
