"""``focal-train``: SCL training from the command line (a thin layer over :func:`train`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields, replace

from focal._cli import (
    PHOTOS_ENV, SEGMENTATIONS_ENV, add_batch_size, add_clustering, add_photos, add_segmentations, from_env,
    make_parser, positive_int,
)
from focal.training.backbones import list_backbones
from focal.training.config import FORGERIES, LOSSES, PRESETS, TrainConfig, load_config

__all__ = ["build_parser", "main"]

_EPILOG = ("An option left out takes the --config file's value, else the --preset's, else the default shown. "
           f"Synthetic data needs untouched photos: --photos DIR or ${PHOTOS_ENV}.")


def _default(name: str) -> str:
    """``(default: X)`` with ``TrainConfig``'s own default for the field ``name``."""
    (f,) = (f for f in fields(TrainConfig) if f.name == name)
    return f"(default: {f.default})"


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-train`` argument parser (backbone and clustering choices from the registries)."""
    p = make_parser("focal-train", "Train a FOCAL extractor with soft contrastive learning.", epilog=_EPILOG)
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named recipe")
    p.add_argument("--config", metavar="FILE", help="JSON file of TrainConfig fields (over the preset)")
    p.add_argument("--backbone", choices=list_backbones(), help=f"registry name {_default('backbone')}")
    p.add_argument("--data", metavar="SPEC",
                   help=f"'synthetic', a folder with images/ and masks/, a .npy or .json list {_default('data')}")
    p.add_argument("--val-data", metavar="SPEC", help="validation set for non-synthetic data (default: none)")
    add_photos(p, "untouched photos for synthetic forgeries")
    add_segmentations(p)
    p.add_argument("--forgeries", choices=FORGERIES,
                   help="synthetic generator (classic; traces, native-resolution crops of --input-size with "
                        f"camera-pipeline traces; mixed, half of each) {_default('forgeries')}")
    p.add_argument("--init-weights", metavar="CHECKPOINT",
                   help="start from a checkpoint, ours or the authors' (default: packaged or random weights)")
    p.add_argument("--input-size", type=positive_int, metavar="N",
                   help=f"square input side; under --input-policy native the crops' side {_default('input_size')}")
    p.add_argument("--input-policy", choices=("square", "native"),
                   help="square: samples stretched to the input side; native: training on crops at each sample's "
                        "own resolution, validation as `focal-export --input-policy native` runs "
                        f"{_default('input_policy')}")
    p.add_argument("--native-max-side", type=positive_int, metavar="N",
                   help="native validation: cap of the longer side, a multiple of the stride (default: 2 x input side)")
    p.add_argument("--max-points", type=positive_int, metavar="N",
                   help=f"native validation: most feature cells clustered {_default('max_points')}")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help=f"passes over the training samples {_default('epochs')}")
    p.add_argument("--train-samples", type=positive_int, metavar="N",
                   help=f"synthetic samples per epoch {_default('train_samples')}")
    p.add_argument("--val-samples", type=positive_int, metavar="N",
                   help=f"synthetic validation samples {_default('val_samples')}")
    p.add_argument("--fresh-forgeries", action="store_true", default=None,
                   help="new synthetic forgeries every epoch instead of the same ones")
    add_batch_size(p, default=None, help=f"images per training step {_default('batch_size')}")
    p.add_argument("--lr", type=float, help=f"Adam learning rate {_default('lr')}")
    p.add_argument("--loss", choices=LOSSES, help=f"contrastive loss {_default('loss')}")
    p.add_argument("--fuzzy-iters", type=int, metavar="N",
                   help=f"SCL alternating fuzzy rounds, 0 = hard mask labels {_default('fuzzy_iters')}")
    p.add_argument("--tau", type=float, help=f"contrastive temperature {_default('tau')}")
    p.add_argument("--authentic-weight", type=float,
                   help="weight of the compactness term on untouched samples, 0 = the paper's recipe "
                        f"{_default('authentic_weight')}")
    p.add_argument("--reprocess", type=float, metavar="P",
                   help="share of camera-trace forgeries that put a region of the host's own scene, through "
                        f"another camera, back in place (only the traces differ) {_default('reprocess')}")
    add_clustering(p, option="--val-clustering", default=None, decisions=False,
                   help=f"clustering method in validation {_default('val_clustering')}")
    p.add_argument("--workers", type=int, metavar="N", help=f"DataLoader worker processes {_default('workers')}")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help=f"NHWC activations, faster convolutions on CPU {_default('channels_last')}")
    p.add_argument("--seed", type=int, metavar="N",
                   help=f"seeds data, augmentation, forgeries and init {_default('seed')}")
    p.add_argument("--max-steps", type=positive_int, metavar="N",
                   help="stop after this many steps, for smoke runs (default: none)")
    p.add_argument("--out", metavar="DIR", help=f"run folder, resumed if it holds a run {_default('out')}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-train``."""
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("preset", "config")}
    try:
        cfg = load_config(args.config, args.preset, **overrides)
        # The environment is the last fallback: below the flags, the config file and the preset.
        cfg = replace(cfg, photos=from_env(cfg.photos, PHOTOS_ENV),
                      segmentations=from_env(cfg.segmentations, SEGMENTATIONS_ENV))
        if cfg.data == "synthetic" and cfg.photos is None:
            raise ValueError(f"synthetic data needs untouched photos: give --photos DIR or set ${PHOTOS_ENV}")
        from focal.training.train import train  # imports torch: after argument errors are reported

        summary = train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        print(f"focal-train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 reports
    print(json.dumps({
        "out": str(summary.out), "epochs": summary.epochs, "steps": summary.steps,
        "first_loss": summary.first_loss, "last_loss": summary.last_loss,
        "initial_val": summary.initial_val, "best_val": summary.best_val, "seconds": round(summary.seconds, 1),
    }, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
