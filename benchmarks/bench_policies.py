"""Square vs native input policy: per-stage latency and points clustered, per photo size.

    .venv/bin/python benchmarks/bench_policies.py [--photo FILE] [--repeat 3] [--sizes 1024x768,1920x1080,6000x4000]

Exports the ``lite`` backbone twice (its ImageNet encoder, a seeded random
neck: timing does not depend on trained weights) as ``square`` at 512 and
``native`` with ``--max-side`` (default 1024) and ``--max-points`` (4096),
then runs both on one photo resized to each size, alternating the two in
each repeat so that both see the same machine load. Each size also runs
once in a fresh subprocess per policy to print its peak RSS. Prints one
Markdown table; every figure is the median over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from focal.runtime import STAGES, Detector

_RSS = """
import json, sys
from focal.runtime import Detector
with Detector(sys.argv[1], backend="cpu") as det:
    det(sys.argv[2])
# VmHWM is this process's own peak; ru_maxrss can carry the forking parent's.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"max_rss_mb": peak // 1024}))
"""


def _export(out: Path, policy: str, max_side: int, max_points: int) -> Path:
    from focal.export import ExportConfig, export

    cfg = ExportConfig(backbone="lite", input_size=512, out=str(out), input_policy=policy,
                       max_side=max_side if policy == "native" else None, max_points=max_points)
    export(cfg)
    return out


def _stages(det: Detector, image: np.ndarray) -> dict[str, float]:
    """One timed run: milliseconds per stage, their total, and the points clustered."""
    result = det(image)
    figures = {s: result.timings[s] for s in STAGES if s in result.timings}
    figures["total"] = sum(figures.values())
    figures["points"] = float(result.labels.size)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=None, help="photo resized to every size (default: a generated scene)")
    parser.add_argument("--sizes", default="1024x768,1920x1080,6000x4000", help="WxH list")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size and policy")
    parser.add_argument("--max-side", type=int, default=1024, help="native policy: cap of the longer side")
    parser.add_argument("--max-points", type=int, default=4096, help="native policy: most cells clustered")
    args = parser.parse_args(argv)
    base = cv2.imread(args.photo)[:, :, ::-1] if args.photo else _scene()
    rows = []
    with tempfile.TemporaryDirectory(prefix="focal-policies-") as tmp:
        arts = {p: _export(Path(tmp) / p, p, args.max_side, args.max_points) for p in ("square", "native")}
        dets = {p: Detector(a, backend="cpu") for p, a in arts.items()}
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            image = np.ascontiguousarray(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC))
            path = Path(tmp) / f"{w}x{h}.png"
            cv2.imwrite(str(path), image[:, :, ::-1])
            figures = {p: [] for p in dets}
            for det in dets.values():
                det(image)  # warm-up at this shape
            for _ in range(args.repeat):  # alternate: both policies see the same load
                for p, det in dets.items():
                    figures[p].append(_stages(det, image))
            for p in dets:
                med = {k: statistics.median(f[k] for f in figures[p]) for k in figures[p][0]}
                rss = subprocess.run([sys.executable, "-c", _RSS, str(arts[p]), str(path)], capture_output=True,
                                     text=True, timeout=600)
                med["max_rss_mb"] = json.loads(rss.stdout.splitlines()[-1])["max_rss_mb"] if rss.returncode == 0 else -1
                rows.append((f"{w} x {h}", p, med))
        for det in dets.values():
            det.close()
    stages = [s for s in STAGES if s in rows[0][2]]
    print("| photo | policy | points | " + " | ".join(stages) + " | total ms | native / square | peak RSS MB |")
    print("|---" * (len(stages) + 6) + "|")
    for i, (size, policy, med) in enumerate(rows):
        ratio = med["total"] / rows[i - 1][2]["total"] if policy == "native" else 1.0
        cells = " | ".join(f"{med[s]:.1f}" for s in stages)
        print(f"| {size} | {policy} | {int(med['points'])} | {cells} | {med['total']:.1f} | {ratio:.2f}x "
              f"| {med['max_rss_mb']} |")
    return 0


def _scene() -> np.ndarray:
    """A textured 600 x 800 RGB scene (smooth noise at three scales), when no photo is given."""
    rng = np.random.default_rng(0)
    layers = [cv2.resize(rng.random((600 // k, 800 // k, 3), np.float32), (800, 600), interpolation=cv2.INTER_CUBIC)
              for k in (4, 16, 64)]
    return np.clip(sum(layers) / 3 * 255, 0, 255).astype(np.uint8)


if __name__ == "__main__":
    sys.exit(main())
