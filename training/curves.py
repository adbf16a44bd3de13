"""Training curves as a PNG (OpenCV drawing: no plotting library needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

_W, _H, _PAD = 900, 420, 60


def _panel(values: dict[str, list[tuple[int, float]]], title: str, colors: dict[str, tuple[int, int, int]]) -> np.ndarray:
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
    cv2.putText(img, f"epoch {x0}", (_PAD, _H - 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x1}", (_W - _PAD - 20, _H - 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (name, series) in enumerate(values.items()):
        good = [p for p in series if np.isfinite(p[1])]
        color = colors[name]
        for a, b in zip(good, good[1:]):
            cv2.line(img, to_px(*a), to_px(*b), color, 2, cv2.LINE_AA)
        for p in good:
            cv2.circle(img, to_px(*p), 4, color, -1, cv2.LINE_AA)
        cv2.putText(img, name, (_W - _PAD - 160, _PAD + 25 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2, cv2.LINE_AA)
    return img


def plot_history(history: list[dict[str, Any]], path: str | Path) -> None:
    """Write loss (top) and validation IoU / F1 / false alarms (bottom) per epoch.

    Args:
        history: ``history.jsonl`` records (``epoch``, ``loss``, optional ``val``).
        path: the PNG to write.
    """
    loss = {"train loss": [(h["epoch"], h["loss"]) for h in history if h.get("loss") is not None]}
    val = {
        key: [(h["epoch"], h["val"][field]) for h in history if "val" in h]
        for key, field in (("val IoU", "iou"), ("val F1", "f1"), ("false alarms", "false_alarm"))
    }
    top = _panel(loss, "training loss", {"train loss": (200, 80, 20)})
    bottom = _panel(val, "validation (held-out photos)",
                    {"val IoU": (30, 140, 30), "val F1": (30, 30, 200), "false alarms": (120, 120, 120)})
    ok, buf = cv2.imencode(".png", np.vstack([top, bottom]))
    if ok:
        Path(path).write_bytes(buf.tobytes())
