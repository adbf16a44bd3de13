"""Typed configuration of training runs, and named presets.

A JSON file given to ``focal-train --config`` is loaded into
:class:`TrainConfig` field by field, nothing cleverer; command-line flags
override it; ``--preset NAME`` starts from one of :data:`PRESETS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

LOSSES: tuple[str, ...] = ("scl", "scl-pixel", "nce", "nce-sym")
# Synthetic forgery generators: "classic" (photos shrunk to max_side, squashed to input_size),
# "traces" (camera-pipeline traces, native-resolution crops of input_size: no resize) and "mixed"
# (each sample from one of the two, half and half).
FORGERIES: tuple[str, ...] = ("classic", "traces", "mixed")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (same config + seed = same model on the same hardware)."""

    out: str = "runs/focal"  # run folder: checkpoints, history, curves; resumed if it holds a run
    backbone: str = "lite"  # registry name ('+' fusion is for inference, not training)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # factory overrides
    init_weights: str | None = None  # start from this checkpoint (ours or the authors'), else packaged/random
    data: str = "synthetic"  # "synthetic", a folder (images/ + masks/), a .npy or a .json list
    forgeries: str = "classic"  # synthetic generator, one of FORGERIES
    val_data: str | None = None  # validation set for non-synthetic data (same formats); None = none
    photos: str | None = None  # untouched photos for synthetic forgeries (needed when data is "synthetic")
    segmentations: str | None = None  # BSDS500 .mat folder of object shapes; None = random polygons only
    val_fraction: float = 0.1  # share of photos held out (by file) for synthetic validation
    train_samples: int = 400  # synthetic samples per epoch
    fresh_forgeries: bool = False  # synthetic training samples: new forgeries every epoch (not the same ones)
    val_samples: int = 32  # synthetic validation samples (fixed across epochs)
    max_side: int | None = 768  # photos shrunk to this longer side before forging (speed)
    input_size: int = 512  # square side S fed to the backbone (native: the training crops' side)
    # "square": samples stretched to S x S, as the square artifact runs; "native": training on S x S
    # crops at each sample's own resolution, validation on whole samples with the runtime's native
    # geometry (aspect kept, long side capped at native_max_side, padded to the stride, clustered on
    # at most max_points cells), so the checkpoint is chosen as `focal-export --input-policy native` runs it.
    input_policy: str = "square"
    native_max_side: int | None = None  # native validation: cap of the longer side (default 2 x S)
    max_points: int = 4096  # native validation: most feature cells clustered
    augment: bool = True  # method.md augmentations on training samples
    epochs: int = 10  # passes over train_samples
    batch_size: int = 4  # images per step (paper: 4)
    lr: float = 1e-4  # Adam learning rate (paper: 1e-4)
    weight_decay: float = 0.0  # Adam weight decay
    # "scl" (the paper's), "scl-pixel" (per-pixel queries), "nce" (the release's) or "nce-sym"
    # (the release's loss from both sides: forged pixels as queries against pristine negatives too)
    loss: str = "scl"
    tau: float = 0.1  # contrastive temperature
    # Weight of losses.compactness_loss on untouched samples (method.md allows "a compactness
    # term" there); 0 = the paper's recipe, where untouched images teach nothing.
    authentic_weight: float = 0.0
    # Share of camera-trace forgeries ("traces", "mixed") that are a region of the host's own scene
    # through another camera, put back in place (TraceConfig.p_reprocess): only the traces differ.
    reprocess: float = 0.0
    # SCL alternating fuzzy rounds; 0 = weights stay the hard mask labels. 0 by default because
    # from random init the fuzzy rounds wash out the labels (both centres start close, so every
    # weight is ~0.5) and validation IoU stays flat while the loss falls (docs/training.md,
    # "SCL's fuzzy rounds").
    fuzzy_iters: int = 0
    val_clustering: str = "kmeans"  # clustering in validation; kmeans is fast, hdbscan is the paper's
    val_every: int = 1  # validate every N epochs (and after the last)
    workers: int = 2  # DataLoader worker processes (synthetic forging is CPU work)
    threads: int | None = None  # torch intra-op threads; None = torch's default
    amp: bool = True  # mixed precision where a CUDA GPU exists (ignored on CPU)
    # NHWC activations: oneDNN's convolutions run faster on them (benchmarks/bench_train_step.py,
    # docs/training.md); the weights and checkpoints are the same either way.
    channels_last: bool = True
    seed: int = 0  # seeds data order, augmentation, synthetic forgeries and init
    max_steps: int | None = None  # stop after this many optimiser steps in total (smoke runs)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.forgeries not in FORGERIES:
            raise ValueError(f"forgeries must be one of {FORGERIES}, got {self.forgeries!r}")
        if "+" in self.backbone:
            raise ValueError(f"train one backbone at a time; fuse at inference (got {self.backbone!r})")
        for name in ("epochs", "batch_size", "input_size", "train_samples", "val_samples", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.input_policy not in ("square", "native"):
            raise ValueError(f"input_policy must be 'square' or 'native', got {self.input_policy!r}")
        if self.max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {self.max_points}")
        if self.authentic_weight < 0:
            raise ValueError(f"authentic_weight must be >= 0, got {self.authentic_weight}")
        if not 0.0 <= self.reprocess <= 1.0:
            raise ValueError(f"reprocess must lie in [0, 1], got {self.reprocess}")
        if self.lr <= 0 or self.tau <= 0:
            raise ValueError(f"lr and tau must be positive, got lr={self.lr}, tau={self.tau}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


# Named, reproducible recipes. `lite-synthetic` is the embedded default model's.
PRESETS: dict[str, dict[str, Any]] = {
    # Loss: the release's NCE from both sides plus compactness on untouched samples, chosen over the
    # paper's SCL, scl-pixel and the one-sided NCE by docs/training.md ("The losses compared").
    "lite-synthetic": dict(
        backbone="lite", data="synthetic", input_size=512, epochs=19, train_samples=400, val_samples=32,
        fresh_forgeries=True, batch_size=4, lr=1e-4, max_side=768, augment=True, val_clustering="hdbscan",
        val_every=1, loss="nce-sym", authentic_weight=1.0, fuzzy_iters=0, workers=1,
    ),
    # Camera-trace forgeries at native resolution (256-pixel crops, no resize) into the lite
    # backbone with SRM + Bayar residual channels; the same loss as lite-synthetic.
    "lite-traces": dict(
        backbone="lite-residual", data="synthetic", forgeries="traces", input_size=256, epochs=40,
        train_samples=400, val_samples=48, fresh_forgeries=True, batch_size=8, lr=2e-4, augment=True,
        val_clustering="kmeans", val_every=2, loss="nce-sym", authentic_weight=1.0, fuzzy_iters=0, workers=1,
    ),
    # Half classic, half camera-trace forgeries, trained and validated under the native input
    # policy (256-pixel crops at native resolution; validation as a native export at 1024 runs).
    "lite-mixed": dict(
        backbone="lite-residual", data="synthetic", forgeries="mixed", input_policy="native", input_size=256,
        native_max_side=1024, max_points=4096, epochs=40, train_samples=400, val_samples=48, fresh_forgeries=True,
        batch_size=8, lr=2e-4, augment=True, val_clustering="kmeans", val_every=2, loss="nce-sym",
        authentic_weight=1.0, fuzzy_iters=0, workers=1,
    ),
    "smoke": dict(
        backbone="tiny", data="synthetic", input_size=128, epochs=1, train_samples=8, val_samples=4,
        batch_size=2, max_side=256, workers=0,
    ),
}


def load_config(path: str | Path | None = None, preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Preset, then JSON file, then explicit overrides (``None`` values are ignored).

    Raises:
        ValueError: unknown preset or unknown keys in the file.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
        values.update(PRESETS[preset])
    if path is not None:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable config ({exc})") from exc
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        values.update(raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)
