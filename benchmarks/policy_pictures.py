"""Masks of the same weights under the ``square`` and ``native`` input policies, side by side, as one picture.

    python benchmarks/policy_pictures.py --backbone lite --weights best.safetensors \\
        ../shared/data/real-samples/images/misc_korus_DSC06083.png --out docs/policy_masks.jpg

Exports the weights twice (``square`` at ``--size``, ``native`` with the
long side capped at ``--max-side``) into a temporary folder, runs each image
through both with ``Detector`` (HDBSCAN, the manifest's default), and writes
one row per image: the photo, its ground truth (``../masks/STEM.png`` beside
the image folder, when there is one), the square mask and the native mask,
each tinted over the photo and captioned with the IoU to the ground truth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from focal.export import ExportConfig, export
from focal.runtime import Detector
from focal.runtime.imageio import read_image, read_mask
from focal.runtime.render import overlay

TILE_HEIGHT = 320


def _tile(rgb: np.ndarray, caption: str) -> np.ndarray:
    """``rgb`` scaled to :data:`TILE_HEIGHT` rows with ``caption`` on a dark band (BGR out, for OpenCV)."""
    scale = TILE_HEIGHT / rgb.shape[0]
    img = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), TILE_HEIGHT), interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(img[:, :, ::-1])
    cv2.rectangle(img, (0, 0), (img.shape[1], 26), (0, 0, 0), -1)
    cv2.putText(img, caption, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _iou(mask: np.ndarray, truth: np.ndarray | None) -> str:
    if truth is None:
        return ""
    pred = mask > 127
    union = np.logical_or(pred, truth).sum()
    return f", IoU {np.logical_and(pred, truth).sum() / union:.2f}" if union else ", IoU n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--size", type=int, default=512, help="square side")
    parser.add_argument("--max-side", type=int, default=1024, help="native: cap of the longer side")
    parser.add_argument("--out", type=Path, required=True, help="picture to write (.jpg or .png)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="policy-pictures-") as tmp:
        arts = {}
        for policy in ("square", "native"):
            cfg = ExportConfig(backbone=args.backbone, weights=(args.weights,), input_size=args.size,
                               input_policy=policy, max_side=args.max_side if policy == "native" else None,
                               out=str(Path(tmp) / policy))
            export(cfg)
            arts[policy] = Path(tmp) / policy
        rows = []
        with Detector(arts["square"]) as square, Detector(arts["native"]) as native:
            for path in args.images:
                image = read_image(path, apply_orientation=True)
                truth_file = path.parent.parent / "masks" / f"{path.stem}.png"
                truth = read_mask(truth_file) if truth_file.is_file() else None
                tiles = [_tile(image, f"{path.name[:28]} {image.shape[1]}x{image.shape[0]}")]
                if truth is not None:
                    tiles.append(_tile(overlay(image, truth.astype(np.uint8) * 255), "ground truth"))
                for name, det, what in (("square", square, f"square {args.size}"),
                                        ("native", native, f"native, max side {args.max_side}")):
                    mask = det(image).mask
                    tiles.append(_tile(overlay(image, mask), what + _iou(mask, truth)))
                rows.append(np.hstack(tiles))
                print(f"policy_pictures: {path.name} done", file=sys.stderr)
    width = max(r.shape[1] for r in rows)
    picture = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    ok, buf = cv2.imencode(args.out.suffix or ".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        print(f"policy_pictures: {args.out}: cannot encode", file=sys.stderr)
        return 1
    args.out.write_bytes(buf.tobytes())
    print(f"policy_pictures: wrote {args.out} ({picture.shape[1]} x {picture.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
