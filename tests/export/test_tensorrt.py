"""TensorRT engines from the precision-bearing graphs (GPU machines), and the CPU-side failure."""

from __future__ import annotations

import builtins

import pytest

pytest.importorskip("torch")

from focal.export import EngineConfig, EngineUnavailable, ExportConfig, build_engine, engine_file_name, export  # noqa: E402
from focal.runtime.manifest import load_manifest  # noqa: E402


def _require_gpu():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'focal[gpu]')")
    cuda = pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install 'focal[gpu]')")
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"CUDA unavailable: {exc}")
    return trt


def test_engine_unavailable_without_tensorrt(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("no tensorrt")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(EngineUnavailable, match=r"pip install 'focal\[gpu\]'"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16")


def test_engine_names_carry_precision_and_version():
    assert engine_file_name("int8", "10.3.0") == "model.int8.10.3.0.engine"


@pytest.mark.gpu
def test_engines_strongly_typed_with_manifest_and_timing_cache(tmp_path, photos, forgeries):
    trt = _require_gpu()
    out = tmp_path / "art"
    cache = tmp_path / "timing.cache"
    cfg = ExportConfig(backbone="tiny", input_size=128, out=str(out), fp16=True, int8=True, calib=str(photos),
                       calib_count=8, engine=True, timing_cache=str(cache), verify=str(forgeries), verify_limit=4,
                       clustering="kmeans", int8_keep_stem=False)
    result = export(cfg)
    manifest = load_manifest(out)
    engines = [m for m in manifest.models if m.kind == "tensorrt"]
    assert {m.precision for m in engines} == {"fp16", "int8"}
    for m in engines:
        assert (out / m.file).is_file() and m.tensorrt == trt.__version__
        assert m.gpu and m.compute_capability and m.onnx_sha256 == manifest.model("onnx", m.precision).sha256
    assert cache.is_file() and cache.stat().st_size > 0
    assert all(b.strongly_typed for b in result.engines) == (int(trt.__version__.split(".")[0]) >= 10)
    rows = {(r.precision, r.backend.startswith("tensorrt")): r for r in result.verification.rows}
    assert rows[("fp16", True)].cosine_mean >= 0.999 and rows[("fp16", True)].iou_mean >= 0.97
    assert rows[("int8", True)].iou_mean >= 0.90


@pytest.mark.gpu
def test_dynamic_batch_profile(tmp_path):
    _require_gpu()
    out = tmp_path / "dyn"
    export(ExportConfig(backbone="tiny", input_size=64, out=str(out), dynamic_batch=True, batch=2, max_batch=8))
    build = build_engine(out / "model.onnx", out / "model.fp32.engine", "fp32",
                         EngineConfig(workspace_gb=1, max_batch=8, timing_cache=str(tmp_path / "t.cache")), batch=2)
    from focal.runtime.engines import TensorRTEngine
    import numpy as np

    with TensorRTEngine(build.path) as engine:
        for b in (1, 3, 8):
            y = engine.infer({"image": np.random.rand(b, 3, 64, 64).astype(np.float32)})["features"]
            assert y.shape == (b, 16, 8, 8)
