"""The ``split`` decision's threshold: a false-alarm rate fitted on untouched photos.

FOCAL localises without a classifier, and HDBSCAN's "a second cluster
exists" is its only image-level decision, with a false-alarm rate nobody
chose. The ``split`` rule separates the two questions:

1. *where*: every image is split in two by cosine k-means (the forged side
   is the smaller cluster, as for ``kmeans``);
2. *whether*: the split is kept only if its correlation ratio
   (:func:`focal.runtime.score.forgery_score`) exceeds a threshold ``tau``.

``tau`` is the ``(1 - alpha)`` quantile of that score over untouched photos
(a CFAR test: on photos like those, at most a share ``alpha`` is flagged).
It is fitted on training-side photos, e.g. the photos training held out
(``focal-synth --authentic-list``), never on the sets it is measured on, and
written into the artifact's manifest with what it was fitted on. The
quantile is NumPy's ``"higher"`` one and the test strict (``score > tau``),
so on the fitting photos the flagged share is at most ``alpha``.

The threshold belongs to the artifact's features at the precision it was
fitted with (FP32 by default); INT8 features score slightly differently.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from focal._datasets import load_pairs
from focal.runtime.manifest import load_manifest, save_manifest, sha256_file

__all__ = ["SplitFitConfig", "fit_split", "split_threshold"]

MIN_PHOTOS = 10  # below this a quantile of the score says little about any rate


@dataclass(frozen=True)
class SplitFitConfig:
    """What ``focal-calibrate`` fits, and on what."""

    artifact: str | None  # artifact folder; None = the embedded default (read-only: refused)
    photos: tuple[str, ...]  # dataset specs of untouched photos (folders, JSON/.npy lists)
    false_alarm: float = 0.1  # alpha: the share of untouched photos the rule may flag
    make_default: bool = False  # also make "split" the artifact's default clustering
    backend: str = "auto"  # the runtime backend that computes the scores
    precision: str = "fp32"  # which of the artifact's models scores them
    limit: int | None = None  # at most this many photos (the first ones, in the specs' order)

    def __post_init__(self) -> None:
        if not 0.0 < self.false_alarm < 1.0:
            raise ValueError(f"false_alarm must be in (0, 1), got {self.false_alarm}")
        if not self.photos:
            raise ValueError("no photos to fit the threshold on")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit}")


def split_threshold(scores: np.ndarray, false_alarm: float) -> float:
    """The ``(1 - false_alarm)`` quantile of ``scores`` (``[N]`` floats in ``[0, 1]``), NumPy's ``"higher"``.

    With the strict test ``score > tau`` at most ``floor(false_alarm * N)``
    of these scores pass.

    Raises:
        ValueError: fewer than ``max(MIN_PHOTOS, ceil(1 / false_alarm))``
            scores: the quantile would be the maximum, no rate at all.
    """
    scores = np.asarray(scores, dtype=np.float64)
    need = max(MIN_PHOTOS, math.ceil(1.0 / false_alarm))
    if scores.ndim != 1 or scores.size < need:
        raise ValueError(f"a false-alarm rate of {false_alarm:g} needs at least {need} photos, got {scores.size}")
    return float(np.quantile(scores, 1.0 - false_alarm, method="higher"))


def _photos(cfg: SplitFitConfig) -> list[Path]:
    out: list[Path] = []
    for spec in cfg.photos:
        for pair in load_pairs(spec):
            if pair.mask is not None:
                raise ValueError(f"{spec}: {pair.image.name} has a mask: the threshold is fitted on untouched photos only")
            out.append(pair.image)
    return out[: cfg.limit]


def fit_split(cfg: SplitFitConfig, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score the photos, fit ``tau``, write it into the artifact's ``focal.json``.

    Args:
        cfg: the artifact, the photos and the rate.
        progress: called as ``progress(done, total)`` after each photo.

    Returns:
        The ``split_calibration`` record written (threshold, rate, photos,
        the share of them flagged, score quantiles).

    Raises:
        ValueError: no artifact folder, a photo that has a mask or cannot be
            read (named), too few photos for the rate.
        FileNotFoundError: no such artifact or photos.
    """
    from focal.runtime import Detector, DetectorConfig

    if cfg.artifact is None:
        raise ValueError("the embedded default is read-only: copy it to a folder and fit that one")
    manifest = load_manifest(cfg.artifact)
    photos = _photos(cfg)
    det_cfg = DetectorConfig(backend=cfg.backend, precision=cfg.precision, clustering="kmeans")
    scores = []
    with Detector(cfg.artifact, det_cfg) as det:
        for i, (path, result) in enumerate(zip(photos, det.detect_many(photos))):
            if isinstance(result, Exception):
                raise ValueError(f"{path}: {result}")
            scores.append(result.score)
            if progress:
                progress(i + 1, len(photos))
    arr = np.asarray(scores)
    tau = split_threshold(arr, cfg.false_alarm)
    # Which photos, whatever paths they were given by: the digest of their contents, in name order.
    digest = hashlib.sha256()
    for path in sorted(photos, key=lambda p: p.name):
        digest.update(sha256_file(path).encode())
    record = {
        "false_alarm": cfg.false_alarm,
        "photos": len(photos),
        "photos_sha256": digest.hexdigest(),
        "flagged": float(np.mean(arr > tau)),
        "sources": list(cfg.photos),
        "precision": cfg.precision,
        "score_median": float(np.median(arr)),
        "score_max": float(arr.max()),
    }
    clustering = replace(manifest.clustering, split_threshold=tau, split_calibration=record,
                         method="split" if cfg.make_default else manifest.clustering.method)
    save_manifest(replace(manifest, clustering=clustering), cfg.artifact)
    return {"threshold": tau, **record}
