"""The GPU training recipe runs end to end at toy scale on a CPU: checkpoint, then a native-policy artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_train_gpu_script_at_toy_scale(photos: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "run"
    env = {**os.environ, "TOY": "1", "FOCAL_PHOTOS": str(photos), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(REPO / "scripts/train_gpu.sh"), str(out)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "best.safetensors").is_file()
    manifest = json.loads((out / "artifact/focal.json").read_text())
    assert manifest["input"]["policy"] == "native" and manifest["extractor"] == "tiny"
    assert (out / "artifact" / manifest["checkpoint"]["file"]).is_file()
    held = len(json.loads((out / "heldout.json").read_text()))
    assert (manifest["clustering"]["split_threshold"] is not None) == (held >= 10), (held, run.stdout[-500:])
