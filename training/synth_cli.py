"""``focal-synth``: write synthetic forgeries (and held-out photos) as a dataset folder."""

from __future__ import annotations

import argparse
import sys

from focal._cli import PHOTOS_ENV, SEGMENTATIONS_ENV, add_photos, add_segmentations, from_env, make_parser, positive_int
from focal.training.data.export import SPLITS, SynthExportConfig, export_synthetic

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-synth`` argument parser."""
    p = make_parser("focal-synth", "Write synthetic forgeries from untouched photos as images/ + masks/ for focal-eval.")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    add_photos(p, "untouched photos, split as a training run splits them")
    add_segmentations(p)
    p.add_argument("--split", choices=SPLITS, default="val", help="photos training holds out (val), the rest, or all")
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="share of photos held out, as the training run's")
    p.add_argument("--split-seed", type=int, default=0, metavar="N", help="the training run's seed (decides the split)")
    p.add_argument("--count", type=positive_int, default=96, metavar="N", help="samples to write")
    p.add_argument("--seed", type=int, default=1, metavar="N",
                   help="sample seed (training validates with its seed + 1)")
    p.add_argument("--max-side", type=positive_int, default=768, metavar="N",
                   help="photos shrunk to this longer side first, as the training run's")
    p.add_argument("--authentic-list", metavar="FILE", help="also write the split's untouched photos to this JSON list")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-synth``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    photos = from_env(args.photos, PHOTOS_ENV)
    if photos is None:
        parser.error(f"--photos DIR is required (or set ${PHOTOS_ENV})")
    try:
        cfg = SynthExportConfig(
            out=args.out, photos=photos, segmentations=from_env(args.segmentations, SEGMENTATIONS_ENV),
            split=args.split, val_fraction=args.val_fraction, split_seed=args.split_seed, count=args.count,
            seed=args.seed, max_side=args.max_side, authentic_list=args.authentic_list,
        )
        counts = export_synthetic(cfg)
    except (OSError, ValueError) as exc:
        print(f"focal-synth: {exc}", file=sys.stderr)
        return 2
    print(f"focal-synth: wrote {counts['samples']} samples ({counts['forged']} forged, {counts['authentic']} authentic) "
          f"from {counts['photos']} photos to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
