"""The copy-move detector (`focal.runtime.copymove`) on any `focal-eval` dataset, beside a `focal-eval` run.

For each dataset: forged-class IoU over the forged images (an empty mask
scores 0), the share of forged images whose mask overlaps the truth
(IoU > 0.1), the share of authentic images flagged, and the median
milliseconds per image. With ``--backend native --backend reference`` each
dataset gets a row per backend, timed side by side in one run (both give
the same masks).
With ``--eval DIR`` (a `focal-eval --out` folder of the same datasets) it
adds the union of the copy-move mask with that run's mask (its first
``--clustering``) per image: what a detector reporting both would score.

Usage::

    .venv/bin/python benchmarks/copy_move.py --data ../shared/data/real-dev/comofod \
        --data ../shared/data/real-dev/imd2020 --data ../shared/data/real-dev/imd2020/authentic \
        --data ../shared/data/real-samples --data heldout.json [--eval eval] [--backend native --backend reference]
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
from focal.runtime._native_api import BACKENDS
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


def _rows(spec: str, config: CopyMoveConfig, backends: list[str], other: dict[str, Path]) -> list[str]:
    """The table rows of one dataset, one per backend; the backends take turns on each image."""
    pairs = load_pairs(spec)
    ious = {b: [] for b in backends}
    union_ious, flags, union_flags, seconds = [], {b: [] for b in backends}, [], {b: [] for b in backends}
    progress = Progress(len(pairs), Path(spec).name, stream=sys.stderr)
    for pair in pairs:
        image = read_image(pair.image)
        truth = truth_mask(pair, image.shape[:2]) if pair.mask is not None else None
        for backend in backends:
            start = time.perf_counter()
            mask = detect_copy_move(image, config, backend=backend) > 0
            seconds[backend].append(time.perf_counter() - start)
            if truth is None:
                flags[backend].append(mask.any())
            else:
                ious[backend].append(pixel_scores(mask, truth).iou)
        theirs = other.get(str(pair.image.resolve()))
        if theirs is not None:  # the union with the first backend's mask (all give the same)
            joint = mask | (read_mask(theirs) > 0)
            if truth is None:
                union_flags.append(joint.any())
            else:
                union_ious.append(pixel_scores(joint, truth).iou)
        progress.step()
    progress.close()
    rows = []
    for backend in backends:
        label = Path(spec).name + (f" ({backend})" if len(backends) > 1 else "")
        forged, authentic = len(ious[backend]), len(flags[backend])
        overlap = f"{np.mean(np.array(ious[backend]) > 0.1):.2f}" if forged else "-"
        row = (f"| {label} | {forged} / {authentic} | {_mean_text(ious[backend])} | {overlap} | "
               f"{_mean_text(flags[backend])} | {1e3 * np.median(seconds[backend]):.0f} |")
        if other:
            row += f" {_mean_text(union_ious)} | {_mean_text(union_flags)} |"
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="a focal-eval dataset spec (repeatable)")
    parser.add_argument("--eval", type=Path, help="a focal-eval --out folder of the same datasets: adds the union")
    parser.add_argument("--max-cost", type=lambda v: None if v == "none" else float(v), default=CopyMoveConfig.max_cost,
                        help=f"CopyMoveConfig.max_cost, or 'none' (default: {CopyMoveConfig.max_cost})")
    parser.add_argument("--iterations", type=int, default=CopyMoveConfig.iterations,
                        help=f"CopyMoveConfig.iterations (default: {CopyMoveConfig.iterations})")
    parser.add_argument("--stride", type=int, default=CopyMoveConfig.stride,
                        help=f"CopyMoveConfig.stride, the grid step of the matched cells (default: {CopyMoveConfig.stride})")
    parser.add_argument("--tolerance", type=float, default=CopyMoveConfig.tolerance,
                        help=f"CopyMoveConfig.tolerance, pixels (default: {CopyMoveConfig.tolerance})")
    parser.add_argument("--backend", action="append", choices=BACKENDS,
                        help="copy-move kernels: auto (default), native or reference; repeat to time several")
    args = parser.parse_args()
    config = CopyMoveConfig(max_cost=args.max_cost, iterations=args.iterations, stride=args.stride,
                            tolerance=args.tolerance)
    backends = args.backend or ["auto"]
    other = _eval_masks(args.eval) if args.eval else {}
    print(f"| dataset | images (forged / authentic) | IoU | overlapping (IoU > 0.1) | authentic flagged | ms / image |"
          f"{' IoU, union | authentic flagged, union |' if other else ''}")
    print(f"|---|---|---|---|---|---|{'---|---|' if other else ''}")
    for spec in args.data:
        for row in _rows(spec, config, backends, other):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
