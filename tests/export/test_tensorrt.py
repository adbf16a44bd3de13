"""TensorRT engines from the precision-bearing graphs (GPU machines), and the CPU-side failure."""

from __future__ import annotations

import contextlib

import builtins

import pytest

pytest.importorskip("torch")

from focal.export import EngineConfig, EngineUnavailable, ExportConfig, build_engine, engine_file_name, export  # noqa: E402
from focal.runtime.manifest import load_manifest  # noqa: E402


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
def test_engines_strongly_typed_with_manifest_and_timing_cache(tmp_path, photos, forgeries, tensorrt_gpu):
    trt = tensorrt_gpu
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
def test_dynamic_batch_profile(tmp_path, tensorrt_gpu):
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


class _FakeTensorRT:
    """Just enough of the ``tensorrt`` module for build_engine's decisions to be checked on a CPU.

    Records what the builder was told: network flags, builder flags, layers
    pinned to FP32, the optimisation profile and the timing cache.
    """

    __version__ = "9.9.0"
    float32 = "float32"

    def __init__(self, strongly_typed: bool) -> None:
        names = {"STRONGLY_TYPED": 5} if strongly_typed else {"EXPLICIT_BATCH": 0}
        self.NetworkDefinitionCreationFlag = type("Flags", (), names)
        self.BuilderFlag = type("BuilderFlag", (), {"FP16": "fp16", "INT8": "int8", "OBEY_PRECISION_CONSTRAINTS": "obey"})
        self.MemoryPoolType = type("Pool", (), {"WORKSPACE": "workspace"})
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
        self.seen: dict = {"flags": set(), "pinned": [], "profile": None}
        fake = self

        class Layer:
            def __init__(self, name):
                self.name, self.num_outputs, self.precision = name, 1, None

            def set_output_type(self, index, dtype):
                fake.seen["pinned"].append((self.name, dtype))

        class Network:
            num_layers = 2

            def get_layer(self, i):
                return Layer(["/head/Conv", "/stem/Conv"][i])

            def get_input(self, i):
                return type("Input", (), {"name": "image", "shape": (-1, 3, 64, 64)})()

        class Config:
            builder_optimization_level = 0

            def set_memory_pool_limit(self, pool, size):
                fake.seen["workspace"] = size

            def set_flag(self, flag):
                fake.seen["flags"].add(flag)

            def create_timing_cache(self, data):
                fake.seen["cache_in"] = data
                return "cache"

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def add_optimization_profile(self, profile):
                fake.seen["profile"] = profile.shapes

            def get_timing_cache(self):
                return type("Cache", (), {"serialize": lambda self: b"timings"})()

        class Profile:
            def set_shape(self, name, *shapes):
                self.shapes = (name, *shapes)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.seen["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, cfg):
                return b"engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser


@pytest.mark.parametrize("strongly_typed", [True, False])
def test_build_engine_decisions_with_a_fake_tensorrt(tmp_path, monkeypatch, strongly_typed):
    import sys

    import focal.export.tensorrt as engine_module

    fake = _FakeTensorRT(strongly_typed)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(engine_module, "tensorrt_status", lambda: (True, ""))
    monkeypatch.setattr(engine_module, "gpu_info", lambda device=0: ("Fake GPU", "9.0"))
    devices = []  # the build must run with the asked-for device current

    @contextlib.contextmanager
    def on_device(device):
        devices.append(device)
        yield

    monkeypatch.setattr(engine_module, "_on_device", on_device)
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"old timings")
    build = build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "int8",
                         EngineConfig(workspace_gb=1, timing_cache=str(cache), max_batch=8, device=1),
                         fp32_nodes=["/head/Conv"], batch=2)
    assert devices == [1]
    assert build.strongly_typed == strongly_typed and build.tensorrt == "9.9.0" and build.gpu == "Fake GPU"
    assert (tmp_path / "m.engine").read_bytes() == b"engine" and cache.read_bytes() == b"timings"
    assert fake.seen["cache_in"] == b"old timings" and fake.seen["workspace"] == 1 << 30
    assert fake.seen["network_flags"] == (1 << 5 if strongly_typed else 1)
    assert fake.seen["profile"] == ("image", (1, 3, 64, 64), (2, 3, 64, 64), (8, 3, 64, 64))
    if strongly_typed:  # the graph's types decide: no flags, nothing pinned
        assert not fake.seen["flags"] and not fake.seen["pinned"] and build.constrained_layers == 0
    else:
        assert fake.seen["flags"] == {"fp16", "int8", "obey"}
        assert fake.seen["pinned"] == [("/head/Conv", "float32")] and build.constrained_layers == 1


def test_engines_need_what_the_runtime_probe_asks(tmp_path, monkeypatch):
    """check_tensorrt answers from the runtime's one probe, and says what is missing."""
    import focal.export.tensorrt as engine_module

    monkeypatch.setattr(engine_module, "tensorrt_status", lambda: (False, "no CUDA device"))
    with pytest.raises(EngineUnavailable, match="^--engine needs TensorRT and an NVIDIA GPU: no CUDA device$"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16")
