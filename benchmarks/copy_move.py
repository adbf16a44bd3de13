"""The copy-move detector (`focal.runtime.copymove`) on any `focal-eval` dataset, beside a `focal-eval` run.

For each dataset: forged-class IoU over the forged images (an empty mask
scores 0), the share of forged images whose mask overlaps the truth
(IoU > 0.1), the share of authentic images flagged, and seconds per image.
With ``--eval DIR`` (a `focal-eval --out` folder of the same datasets) it
adds the union of the copy-move mask with that run's mask (its first
``--clustering``) per image: what a detector reporting both would score.

Usage::

    .venv/bin/python benchmarks/copy_move.py --data ../shared/data/real-dev/comofod \
        --data ../shared/data/real-dev/imd2020 --data ../shared/data/real-dev/imd2020/authentic \
        --data ../shared/data/real-samples --data heldout.json [--eval eval]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from focal._datasets import load_pairs
from focal._progress import Progress
from focal.evaluation.evaluate import truth_mask
from focal.evaluation.metrics import pixel_scores
from focal.runtime.copymove import CopyMoveConfig, detect_copy_move
from focal.runtime.imageio import read_image, read_mask


def _eval_masks(eval_dir: Path) -> dict[str, Path]:
    """Image path -> mask file of a `focal-eval` run (its first --clustering), from its records."""
    masks: dict[str, Path] = {}
    for line in (eval_dir / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("mask"):
            masks[str(Path(record["path"]).resolve())] = eval_dir / record["mask"]
    return masks


def _mean_text(values: list) -> str:
    return f"{np.mean(values):.3f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="a focal-eval dataset spec (repeatable)")
    parser.add_argument("--eval", type=Path, help="a focal-eval --out folder of the same datasets: adds the union")
    parser.add_argument("--max-cost", type=lambda v: None if v == "none" else float(v), default=CopyMoveConfig.max_cost,
                        help=f"CopyMoveConfig.max_cost, or 'none' (default: {CopyMoveConfig.max_cost})")
    args = parser.parse_args()
    config = CopyMoveConfig(max_cost=args.max_cost)
    other = _eval_masks(args.eval) if args.eval else {}
    print(f"| dataset | images (forged / authentic) | IoU | overlapping (IoU > 0.1) | authentic flagged | s / image |"
          f"{' IoU, union | authentic flagged, union |' if other else ''}")
    print(f"|---|---|---|---|---|---|{'---|---|' if other else ''}")
    for spec in args.data:
        pairs = load_pairs(spec)
        ious, union_ious, flags, union_flags, seconds = [], [], [], [], []
        progress = Progress(len(pairs), Path(spec).name, stream=sys.stderr)
        for pair in pairs:
            image = read_image(pair.image)
            start = time.perf_counter()
            mask = detect_copy_move(image, config) > 0
            seconds.append(time.perf_counter() - start)
            theirs = other.get(str(pair.image.resolve()))
            joint = mask | (read_mask(theirs) > 0) if theirs is not None else None
            if pair.mask is None:
                flags.append(mask.any())
                if joint is not None:
                    union_flags.append(joint.any())
            else:
                truth = truth_mask(pair, image.shape[:2])
                ious.append(pixel_scores(mask, truth).iou)
                if joint is not None:
                    union_ious.append(pixel_scores(joint, truth).iou)
            progress.step()
        progress.close()
        forged, authentic = len(ious), len(flags)
        overlap = f"{np.mean(np.array(ious) > 0.1):.2f}" if ious else "-"
        row = (f"| {Path(spec).name} | {forged} / {authentic} | {_mean_text(ious)} | {overlap} | {_mean_text(flags)} | "
               f"{np.median(seconds):.2f} |")
        if other:
            row += f" {_mean_text(union_ious)} | {_mean_text(union_flags)} |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
