"""A model file that is not the manifest's does not run: hashed once, then vouched for by (size, mtime)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from focal.runtime import Detector
from focal.runtime.integrity import IntegrityError, verify_file
from focal.runtime.manifest import load_manifest


def _tampered(src: Path, dest: Path) -> Path:
    """The artifact with one weight tensor scaled by -3 (a valid graph, other masks)."""
    shutil.copytree(src, dest)
    model = onnx.load(str(dest / "model.onnx"))
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).size > 8)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(-3), init.name))
    onnx.save(model, str(dest / "model.onnx"))
    return dest


def test_a_tampered_graph_is_refused_and_runs_only_when_asked(tiny_artifact: Path, tmp_path: Path) -> None:
    bad = _tampered(tiny_artifact, tmp_path / "bad")
    with pytest.raises(IntegrityError, match="is not the manifest's"):
        Detector(bad, backend="cpu")
    with Detector(bad, backend="cpu", verify=False) as det:
        det(np.zeros((64, 64, 3), np.uint8))


def test_the_digest_is_cached_by_size_and_mtime(tiny_artifact: Path, tmp_path: Path) -> None:
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    model, digest = art / "model.onnx", load_manifest(art).model("onnx", "fp32").sha256
    assert verify_file(model, digest) is True  # hashed
    assert verify_file(model, digest) is False  # vouched for
    data = bytearray(model.read_bytes())
    data[-1] ^= 1  # same size, new mtime: hashed again, and caught
    model.write_bytes(bytes(data))
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(IntegrityError):
        verify_file(model, digest)


def test_focal_detect_exits_2_on_a_tampered_model(tiny_artifact: Path, tmp_path: Path) -> None:
    bad = _tampered(tiny_artifact, tmp_path / "bad")
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    import cv2

    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    exe = Path(sys.executable).parent / "focal-detect"
    run = subprocess.run([str(exe), str(bad), str(image.parent), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "is not the manifest's" in run.stderr and "Traceback" not in run.stderr
    ok = subprocess.run([str(exe), str(bad), str(image.parent), "--out", str(tmp_path / "out2"), "--no-verify"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_external_weights_are_checked_too(tiny_extractor, tmp_path: Path, monkeypatch) -> None:
    # A graph past ONNX's 2 GB limit keeps its weights in model.onnx.data; 1000 bytes forces that here.
    from runtime_artifacts import export_artifact

    monkeypatch.setattr("focal.export.onnx._EXTERNAL_DATA_BYTES", 1000)
    art = export_artifact(tiny_extractor, tmp_path / "art", 64)
    entry = load_manifest(art).model("onnx", "fp32")
    assert entry.external_data == "model.onnx.data" and entry.external_sha256
    image = np.zeros((64, 64, 3), np.uint8)
    with Detector(art, backend="cpu") as det:
        det(image)
    data = art / "model.onnx.data"
    raw = np.frombuffer(data.read_bytes(), np.float32).copy()
    data.write_bytes((raw * np.float32(-3)).tobytes())  # same size, other weights
    with pytest.raises(IntegrityError, match=r"model\.onnx\.data: sha256 .* is not the manifest's"):
        Detector(art, backend="cpu")
    with Detector(art, backend="cpu", verify=False) as det:
        det(image)
    manifest = json.loads((art / "focal.json").read_text())
    manifest["models"][0]["external_sha256"] = None  # a manifest that cannot vouch for its weights
    (art / "focal.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="records no sha256"):
        Detector(art, backend="cpu")
