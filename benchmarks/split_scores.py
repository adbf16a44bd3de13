"""How the ``split`` decision's score falls on forged and untouched photos, as a picture.

    .venv/bin/python benchmarks/split_scores.py EVAL_DIR --artifact ARTIFACT --pair FORGED_SET UNTOUCHED_SET
        [--pair ...] --out docs/split_scores.png

Reads the per-image records a ``focal-eval ... --clustering split`` run
wrote (``EVAL_DIR/records.jsonl``). Per ``--pair`` (dataset names as in
``focal-eval``'s table; one name twice for a set holding both) it draws one
panel: the share of forged and of untouched images whose split score is at
least x, and the artifact's threshold as a vertical line. Where the features
separate the classes the forged curve stays high past the threshold while
the untouched one falls below the false-alarm rate; where they do not, the
two curves coincide.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from focal.evaluation.plots import line_panel, write_png
from focal.runtime.manifest import load_manifest


def survival(scores: np.ndarray) -> list[tuple[float, float]]:
    """``(x, share of scores >= x)`` at every score, from the lowest: a step curve drawn through its corners."""
    xs = np.sort(scores)
    return [(float(x), float((xs >= x).mean())) for x in xs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path, help="a focal-eval --out folder that ran --clustering split")
    parser.add_argument("--artifact", required=True, help="the artifact evaluated (its split threshold is drawn)")
    parser.add_argument("--pair", nargs=2, action="append", required=True, metavar=("FORGED_SET", "UNTOUCHED_SET"))
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    tau = load_manifest(args.artifact).clustering.split_threshold
    if tau is None:
        parser.error(f"{args.artifact}: no split threshold (focal-calibrate)")
    records = [json.loads(line) for line in (args.eval_dir / "records.jsonl").read_text().splitlines() if line]
    records = [r for r in records if "split" in r]
    if not records:
        parser.error(f"{args.eval_dir}: no records with the split decision")
    panels = []
    for forged_set, untouched_set in args.pair:
        forged = np.array([r["split"]["score"] for r in records if r["dataset"] == forged_set and not r["authentic"]])
        clean = np.array([r["split"]["score"] for r in records if r["dataset"] == untouched_set and r["authentic"]])
        if not forged.size or not clean.size:
            parser.error(f"no forged images in {forged_set!r} or no untouched ones in {untouched_set!r}")
        title = (f"{forged_set} ({forged.size} forged) vs {untouched_set} ({clean.size} untouched): "
                 f"flagged {np.mean(forged > tau):.0%} / {np.mean(clean > tau):.0%}")
        panels.append(line_panel({"forged": survival(forged), "untouched": survival(clean),
                                  f"threshold {tau:.3f}": [(tau, 0.0), (tau, 1.0)]},
                                 title, xlabel="split score x; y: share of images scoring >= x"))
        print(title)
    write_png(args.out, *panels)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
