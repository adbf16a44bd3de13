"""GPU paths of the runtime: ONNX Runtime's CUDA provider and TensorRT engines.

Marked ``gpu``: they run wherever CUDA (and the named package) exists and are
skipped, with the reason, elsewhere. The engine-compatibility rules are plain
logic and are tested everywhere.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from focal.runtime import Detector
from focal.runtime.engines import check_engine_compatibility, trt_ep_profile
from focal.runtime.manifest import ModelFile, load_manifest, save_manifest


def _cuda_ort() -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no CUDAExecutionProvider here (providers: {ort.get_available_providers()})")


@pytest.mark.gpu
def test_onnxruntime_cuda_matches_cpu(tiny_artifact: Path, rng: np.random.Generator) -> None:
    _cuda_ort()
    img = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    with Detector(tiny_artifact, backend="cpu", keep_features=True) as cpu, \
            Detector(tiny_artifact, backend="cuda", keep_features=True) as gpu:
        a, b = cpu(img), gpu(img)
    # The provider the session really runs on (ORT may fall back to CPU silently).
    assert gpu.engine.inner.session.get_providers()[0] == "CUDAExecutionProvider"
    assert gpu.engine.name.startswith("onnxruntime/CUDAExecutionProvider (")
    assert (a.features * b.features).sum(axis=1).min() >= 0.9999


@pytest.mark.gpu
def test_auto_backend_prefers_the_gpu(tiny_artifact: Path) -> None:
    _cuda_ort()
    with Detector(tiny_artifact) as det:
        assert det.backend in ("cuda", "tensorrt")


def _engine_entry(**kw: object) -> ModelFile:
    base = dict(file="model.fp32.10.3.0.engine", kind="tensorrt", precision="fp32", sha256="e" * 64,
                tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", onnx_sha256=None)
    base.update(kw)
    return ModelFile(**base)  # type: ignore[arg-type]


def test_engine_from_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(tiny_artifact: Path) -> None:
    manifest = load_manifest(tiny_artifact)
    onnx_sha = manifest.model("onnx", "fp32").sha256
    good = _engine_entry(onnx_sha256=onnx_sha)
    check_engine_compatibility(good, manifest, tiny_artifact, "10.3.0", "8.7")  # same: accepted
    with pytest.raises(ValueError, match=r"built with TensorRT 10.3.0, this is 11.0.0.*focal-export --backbone tiny .*--engine"):
        check_engine_compatibility(good, manifest, tiny_artifact, "11.0.0", "8.7")
    with pytest.raises(ValueError, match="compute capability 8.7, this GPU is 9.0"):
        check_engine_compatibility(good, manifest, tiny_artifact, "10.3.0", "9.0")
    stale = dataclasses.replace(good, onnx_sha256="0" * 64)
    with pytest.raises(ValueError, match="ONNX graph that is no longer the artifact's"):
        check_engine_compatibility(stale, manifest, tiny_artifact, "10.3.0", "8.7")


def test_tensorrt_backend_without_tensorrt_says_which_extra(tiny_artifact: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; the missing-package message is not reachable")
    except ImportError:
        pass
    manifest = load_manifest(tiny_artifact)
    entry = _engine_entry(onnx_sha256=manifest.model().sha256)
    art = tiny_artifact.parent / "with-engine"
    shutil.copytree(tiny_artifact, art, dirs_exist_ok=True)
    save_manifest(manifest.with_model(entry), art)
    with pytest.raises(ImportError, match=r"pip install 'focal\[gpu\]'"):
        Detector(art, backend="tensorrt")


def test_tensorrt_ep_profile_spans_what_the_manifest_lets_in(tiny_artifact: Path) -> None:
    manifest = load_manifest(tiny_artifact)
    spec, stride = manifest.input, manifest.members[0].stride
    assert spec.policy == "square"
    static = dataclasses.replace(manifest, input=dataclasses.replace(spec, dynamic_batch=False, max_batch=None))
    assert trt_ep_profile(static) is None  # one static shape: nothing to profile
    native = dataclasses.replace(manifest, input=dataclasses.replace(spec, policy="native", max_side=64 * stride,
                                                                     dynamic_batch=True, batch=2, max_batch=8))
    assert trt_ep_profile(native) == {
        "trt_profile_min_shapes": f"{spec.name}:1x3x{stride}x{stride}",
        "trt_profile_opt_shapes": f"{spec.name}:2x3x{48 * stride}x{64 * stride}",
        "trt_profile_max_shapes": f"{spec.name}:8x3x{64 * stride}x{64 * stride}",
    }
    batched = dataclasses.replace(manifest, input=dataclasses.replace(spec, dynamic_batch=True, max_batch=4))
    assert trt_ep_profile(batched)["trt_profile_max_shapes"] == f"{spec.name}:4x3x{spec.size}x{spec.size}"


@pytest.mark.gpu
def test_tensorrt_ep_runs_a_native_graph_at_several_shapes(tiny_extractor, tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no TensorrtExecutionProvider here (providers: {ort.get_available_providers()})")
    from focal.export import ExportConfig, export

    art = tmp_path / "tiny-native"
    export(ExportConfig(backbone="tiny", input_size=128, out=str(art), input_policy="native", max_side=512,
                        max_points=1024, clustering="kmeans", min_cluster_size=20), extractor=tiny_extractor)
    with Detector(art, backend="cpu", keep_features=True) as cpu, \
            Detector(art, backend="tensorrt-ep", keep_features=True) as gpu:
        assert gpu.engine.inner.session.get_providers()[0] == "TensorrtExecutionProvider"
        for h, w in [(256, 384), (300, 200), (512, 341)]:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            a, b = cpu(img), gpu(img)
            assert (a.features * b.features).sum(axis=1).min() >= 0.999, (h, w)
