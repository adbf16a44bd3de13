"""``focal-train``: SCL training from the command line (a thin layer over :func:`train`)."""

from __future__ import annotations

import json
import os
import sys

from focal._cli import make_parser
from focal.training.backbones import list_backbones
from focal.training.config import LOSSES, PRESETS, load_config


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-train``."""
    p = make_parser("focal-train", "Train a FOCAL extractor with soft contrastive learning.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named recipe")
    p.add_argument("--config", help="JSON file of TrainConfig fields")
    p.add_argument("--backbone", choices=list_backbones())
    p.add_argument("--data", help="'synthetic', a folder with images/ and masks/, a .npy or .json list")
    p.add_argument("--val-data", help="validation set for non-synthetic data")
    p.add_argument("--photos", help="untouched photos for synthetic forgeries")
    p.add_argument("--segmentations", help="BSDS500 .mat folder for object-shaped regions")
    p.add_argument("--init-weights", help="start from a checkpoint (ours or the authors')")
    p.add_argument("--input-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-samples", type=int, help="synthetic samples per epoch")
    p.add_argument("--val-samples", type=int)
    p.add_argument("--fresh-forgeries", action="store_true", default=None,
                   help="new synthetic forgeries every epoch instead of the same ones")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--loss", choices=LOSSES)
    p.add_argument("--fuzzy-iters", type=int, help="SCL alternating fuzzy rounds (0 = hard mask labels)")
    p.add_argument("--tau", type=float, help="contrastive temperature")
    p.add_argument("--authentic-weight", type=float,
                   help="weight of the compactness term on untouched samples (0 = the paper's recipe)")
    p.add_argument("--val-clustering", choices=["kmeans", "hdbscan"])
    p.add_argument("--workers", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    p.add_argument("--out", help="run folder (resumed if it holds a run)")
    args = p.parse_args(argv)

    overrides = {k: v for k, v in vars(args).items() if k not in ("preset", "config")}
    try:
        cfg = load_config(args.config, args.preset, **overrides)
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
