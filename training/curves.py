"""Training curves as a PNG (drawn with the runtime's OpenCV charts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from focal.evaluation.plots import line_panel, write_png


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
    write_png(path, line_panel(loss, "training loss"), line_panel(val, "validation (held-out photos)"))
