"""``focal-eval``: metrics of an artifact or checkpoint on datasets (a thin layer over :func:`evaluate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from focal._cli import (
    add_artifact, add_backend, add_clustering, add_copy_move, add_double_jpeg, add_json, add_min_cluster_size, add_precision,
    make_parser, positive_int,
)
from focal.evaluation.evaluate import EvalConfig, evaluate

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-eval`` argument parser (choices from the runtime's registries)."""
    p = make_parser("focal-eval", "Evaluate FOCAL localisation (pixel F1/IoU/AUC, image AUC, false alarms).")
    add_artifact(p, help="artifact folder (focal.json), or a checkpoint (.safetensors, or the authors' .pth)")
    p.add_argument("--data", action="append", required=True, metavar="DATASET",
                   help="dataset: folder with images/ (+ masks/), .npy or .json list; repeatable")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (resumable)")
    add_clustering(p, repeatable=True,
                   help="clustering method, repeatable; the first is the headline (default: hdbscan)")
    add_min_cluster_size(p, help="HDBSCAN's smallest cluster (default: the artifact's; for a checkpoint 200, the paper's)")
    add_backend(p, help="engine backend for an artifact (auto: the fastest usable here)")
    add_precision(p, help="artifact precision (the artifact must hold it)")
    p.add_argument("--backbone", metavar="NAME", help="backbone of an authors' .pth checkpoint (vit, hrnet)")
    p.add_argument("--input-size", type=positive_int, metavar="N",
                   help="checkpoint input size (default: the backbone's)")
    p.add_argument("--robustness", action="store_true", help="also under JPEG, blur, noise and down-scaling")
    p.add_argument("--compare", metavar="MODEL",
                   help="a second model (checkpoint or artifact) compared on the same images")
    add_copy_move(p, "each clustering is also scored joined with it, rows METHOD+copy-move")
    add_double_jpeg(p, "each clustering is also scored joined with it, rows METHOD+double-jpeg")
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N images per dataset (default: all)")
    add_json(p, "the summary written to metrics.json, instead of the Markdown table")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-eval``."""
    args = build_parser().parse_args(argv)
    methods = list(dict.fromkeys(args.clustering or ["hdbscan"]))
    cfg = EvalConfig(
        model=args.artifact, data=args.data, out=args.out, clustering=methods, min_cluster_size=args.min_cluster_size,
        backend=args.backend, precision=args.precision, backbone=args.backbone, robustness=args.robustness,
        compare=args.compare, limit=args.limit, input_size=args.input_size, copy_move=args.copy_move,
        double_jpeg=args.double_jpeg,
    )
    try:
        summary = evaluate(cfg)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"focal-eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(Path(args.out, "metrics.json").read_text())  # as written: already JSON-safe (no NaN)
    else:
        print(Path(args.out, "table.md").read_text())
    print(f"focal-eval: wrote {args.out}/metrics.json, metrics.csv, table.md, grid_*.png"
          + (", robustness.png" if "robustness" in summary else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
