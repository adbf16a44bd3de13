"""Charts as PNG images drawn with OpenCV (the runtime has no plotting library)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_W, _H, _PAD = 900, 420, 60


PALETTE: tuple[tuple[int, int, int], ...] = ((200, 80, 20), (30, 140, 30), (30, 30, 200), (120, 120, 120), (160, 40, 160), (20, 150, 170))


def line_panel(
    values: dict[str, list[tuple[float, float]]],
    title: str,
    xlabel: str = "epoch",
    colors: dict[str, tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """One line chart as a BGR image.

    Args:
        values: series name -> ``(x, y)`` points (non-finite y are skipped).
        title: drawn at the top.
        xlabel: name of the x axis, drawn with its range.
        colors: BGR colour per series; default a fixed palette in order.

    Returns:
        ``[420, 900, 3]`` uint8 BGR.
    """
    colors = colors or {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(values)}
    img = np.full((_H, _W, 3), 255, np.uint8)
    pts = [p for series in values.values() for p in series if np.isfinite(p[1])]
    cv2.putText(img, title, (_PAD, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.rectangle(img, (_PAD, _PAD), (_W - _PAD, _H - _PAD), (180, 180, 180), 1)
    if not pts:
        return img
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)
        py = _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)
        return int(round(px)), int(round(py))

    for frac in (0.0, 0.5, 1.0):
        y = y0 + frac * (y1 - y0)
        cv2.putText(img, f"{y:.3g}", (5, to_px(x0, y)[1] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, f"{xlabel} {x0:g}", (_PAD, _H - 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x1:g}", (_W - _PAD - 20, _H - 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (name, series) in enumerate(values.items()):
        good = [p for p in series if np.isfinite(p[1])]
        color = colors[name]
        for a, b in zip(good, good[1:]):
            cv2.line(img, to_px(*a), to_px(*b), color, 2, cv2.LINE_AA)
        for p in good:
            cv2.circle(img, to_px(*p), 4, color, -1, cv2.LINE_AA)
        cv2.putText(img, name, (_W - _PAD - 160, _PAD + 25 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2, cv2.LINE_AA)
    return img


def write_png(path: str | Path, *panels: np.ndarray) -> None:
    """Stack BGR panels vertically and write them as one PNG."""
    width = max(p.shape[1] for p in panels)
    padded = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
    ok, buf = cv2.imencode(".png", np.vstack(padded))
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    Path(path).write_bytes(buf.tobytes())
