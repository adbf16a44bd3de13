"""The prepared GPU check runs end to end where there is no GPU, recording every skip with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_records_each_check(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is present: run scripts/gpu_check.sh itself")
    run = subprocess.run([sys.executable, str(REPO / "scripts/gpu_check.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    records = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {k: v for k, v in records.items() if not k.startswith("_")}
    expected = {"pytest_gpu", "export_lite_engine", "export_dynamic_engine", "engine_batches", "tensorrt_ep_int8",
                "auto_without_visible_gpu", "engine_open_close_200", "vit_b_1024_fp16"}
    assert expected <= set(checks)
    reason = records["_machine"]["cuda"]
    assert reason != "usable" and "CUDA" in reason
    for name, rec in checks.items():
        assert rec["status"] == "skipped" and rec["reason"] == reason, (name, rec)
