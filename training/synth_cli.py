"""``focal-synth``: write synthetic forgeries (and held-out photos) as a dataset folder."""

from __future__ import annotations

import sys

from focal._cli import make_parser
from focal.training.data.export import SPLITS, SynthExportConfig, export_synthetic


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-synth``."""
    p = make_parser("focal-synth", "Write synthetic forgeries from untouched photos as images/ + masks/ for focal-eval.")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--photos", default=SynthExportConfig.photos, help="untouched photos")
    p.add_argument("--segmentations", default=SynthExportConfig.segmentations, help="BSDS500 .mat folder")
    p.add_argument("--split", choices=SPLITS, default="val", help="photos training holds out (val), the rest, or all")
    p.add_argument("--val-fraction", type=float, default=0.1, help="as the training run's")
    p.add_argument("--split-seed", type=int, default=0, help="the training run's seed (decides the split)")
    p.add_argument("--count", type=int, default=96)
    p.add_argument("--seed", type=int, default=1, help="sample seed (training validates with its seed + 1)")
    p.add_argument("--max-side", type=int, default=768)
    p.add_argument("--authentic-list", help="also write the split's untouched photos to this JSON list")
    args = p.parse_args(argv)
    try:
        cfg = SynthExportConfig(
            out=args.out, photos=args.photos, segmentations=args.segmentations, split=args.split,
            val_fraction=args.val_fraction, split_seed=args.split_seed, count=args.count, seed=args.seed,
            max_side=args.max_side, authentic_list=args.authentic_list,
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
