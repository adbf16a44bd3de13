"""TensorRT engines from the precision-bearing ONNX graphs.

The precision is already in the graph (:mod:`focal.export.precision`): FP16
tensors and Casts, INT8 Q/DQ nodes. So the network is parsed *strongly
typed* (TensorRT 11: the only mode; TensorRT 10: the ``STRONGLY_TYPED``
flag) and TensorRT runs each layer in its tensors' type, with no builder
precision flag. Where strong typing is missing (TensorRT before 10), the
equivalent is built with builder flags instead: the FP16 (and INT8) flag
plus FP32 precision constraints on the layers the manifest lists as kept in
FP32.

Also: a workspace limit, a timing cache reused across builds (one file per
GPU and TensorRT version: a second build of the same layers skips the
kernel timing), and an optimisation profile when the batch axis is dynamic
or, for ``native`` artifacts, when height and width are: min/opt/max
input shapes from the manifest (:func:`focal.runtime.geometry.input_profile`:
one cell, ``3/4 max_side x max_side``, ``max_side x max_side``), set with
TensorRT's ``IOptimizationProfile.set_shape``; the runtime sets each image's
own shape with ``IExecutionContext.set_input_shape``.
``tensorrt`` and ``pycuda`` are imported only here, inside the functions,
with an error naming the extra.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focal._files import cache_dir, write_atomic
from focal.runtime.engines import tensorrt_status
from focal.runtime.geometry import ShapeProfile
from focal.runtime.manifest import sha256_file

__all__ = [
    "EngineBuild",
    "EngineConfig",
    "EngineUnavailable",
    "build_engine",
    "check_tensorrt",
    "engine_file_name",
    "gpu_info",
    "profile_shapes",
]


class EngineUnavailable(RuntimeError):
    """This machine cannot build TensorRT engines (no TensorRT, no GPU); the message is one line."""


@dataclass(frozen=True)
class EngineConfig:
    """How an engine is built."""

    workspace_gb: float = 4.0  # builder scratch memory limit, GiB
    timing_cache: str | None = None  # timing cache file reused across builds; None = ~/.cache/focal/tensorrt/
    min_batch: int = 1  # dynamic batch axis: smallest batch of the optimisation profile
    opt_batch: int | None = None  # ... the batch kernels are tuned for (None: the export batch)
    max_batch: int | None = None  # ... the largest batch (None: 2 x the export batch, at least 4)
    optimization_level: int = 3  # TensorRT builder optimisation level, 0-5 (higher: longer build, maybe faster)
    device: int = 0  # CUDA device ordinal
    # dynamic height/width (the native policy): input (height, width) range of the profile; None = static H/W
    shapes: ShapeProfile | None = None

    def __post_init__(self) -> None:
        if self.workspace_gb <= 0:
            raise ValueError(f"workspace_gb must be > 0, got {self.workspace_gb}")
        if not 0 <= self.optimization_level <= 5:
            raise ValueError(f"optimization_level must be in [0, 5], got {self.optimization_level}")
        if self.min_batch < 1:
            raise ValueError(f"min_batch must be >= 1, got {self.min_batch}")


@dataclass(frozen=True)
class EngineBuild:
    """What :func:`build_engine` wrote."""

    path: Path  # the engine file
    sha256: str  # of the engine file
    size_bytes: int  # engine file size
    tensorrt: str  # TensorRT version that built it
    gpu: str  # GPU name
    compute_capability: str  # "major.minor"
    strongly_typed: bool  # True: precisions from the graph; False: flags + constraints
    constrained_layers: int  # weakly typed only: layers pinned to FP32
    timing_cache: Path  # the timing cache used and updated
    seconds: float  # build time


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineUnavailable(
            "--engine needs TensorRT and an NVIDIA GPU: TensorRT is not installed here "
            "(pip install 'focal[gpu]' on a CUDA machine; JetPack ships it on Jetsons)"
        ) from None
    return trt


def gpu_info(device: int = 0) -> tuple[str, str]:
    """``(name, "major.minor")`` of a CUDA GPU, from pycuda or else ``nvidia-smi``.

    Raises:
        EngineUnavailable: no CUDA GPU can be found.
    """
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() > device:
            dev = cuda.Device(device)
            major, minor = dev.compute_capability()
            return str(dev.name()), f"{major}.{minor}"
    except Exception:  # no pycuda, or no driver: try nvidia-smi before giving up
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip().splitlines()
            if len(out) > device:
                name, cap = (p.strip() for p in out[device].split(",", 1))
                return name, cap
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    raise EngineUnavailable("--engine needs an NVIDIA GPU: no CUDA device found on this machine")


def check_tensorrt(device: int = 0) -> tuple[str, str, str]:
    """``(tensorrt version, gpu name, compute capability)`` of the engines built here.

    Whether engines can be had at all is :func:`focal.runtime.engines.tensorrt_status`'s
    answer, the one TensorRT probe, so an engine is only built where it can also run.

    Raises:
        EngineUnavailable: no TensorRT, pycuda or CUDA device (one line naming the extra).
    """
    usable, reason = tensorrt_status()
    if not usable:
        raise EngineUnavailable(f"--engine needs TensorRT and an NVIDIA GPU: {reason}")
    trt = _import_tensorrt()
    name, cap = gpu_info(device)
    return str(trt.__version__), name, cap


def engine_file_name(precision: str, trt_version: str) -> str:
    """``model.<precision>.<trt-version>.engine``: an engine is only valid for the TensorRT that built it."""
    return f"model.{precision}.{trt_version}.engine"


def _default_timing_cache(gpu: str, trt_version: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-")
    return cache_dir("tensorrt") / f"{slug}-trt{trt_version}.timing"


@dataclass(frozen=True)
class _Network:
    """A parsed network and the objects TensorRT needs alive while it is built."""

    builder: Any  # trt.Builder
    network: Any  # trt.INetworkDefinition
    parser: Any  # trt.OnnxParser; the network refers to its weights
    strongly_typed: bool  # precisions come from the graph's tensor types


def profile_max_batch(max_batch: int | None, batch: int) -> int:
    """The largest batch of a dynamic-batch engine's profile: ``max_batch``, else 2 x ``batch``, at least 4."""
    return int(max_batch or max(4, 2 * batch))


@contextmanager
def _on_device(device: int) -> Iterator[None]:
    """CUDA device ``device``'s primary context, current for the block (pycuda)."""
    import pycuda.driver as cuda

    cuda.init()
    ctx = cuda.Device(device).retain_primary_context()
    ctx.push()
    try:
        yield
    finally:
        ctx.pop()
        ctx.detach()


def _parse_network(trt: Any, logger: Any, onnx_path: Path) -> _Network:
    """Parse ``onnx_path`` strongly typed where TensorRT can (10+), else with an explicit batch.

    Raises:
        ValueError: the parser rejects the graph (its errors listed).
    """
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:  # "factory function returned nullptr": CUDA could not initialise
        raise EngineUnavailable(f"TensorRT could not create a builder, CUDA is not usable here ({exc})") from None
    flags = 0
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external data relative to the graph's folder.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT's ONNX parser rejected the graph: {errors}")
    return _Network(builder, network, parser, strongly_typed)


def _precision_flags(trt: Any, net: _Network, cfg: Any, precision: str, fp32_nodes: Sequence[str]) -> int:
    """Without strong typing: the precision flags, and FP32 pinned on ``fp32_nodes``.

    Returns:
        How many layers were pinned to FP32 (0 when strongly typed).
    """
    if net.strongly_typed:
        return 0
    if precision in ("fp16", "int8") and hasattr(trt.BuilderFlag, "FP16"):
        cfg.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        cfg.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ still needs it when weakly typed
    if not fp32_nodes:
        return 0
    cfg.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    keep = set(fp32_nodes)
    constrained = 0
    for i in range(net.network.num_layers):
        layer = net.network.get_layer(i)
        if layer.name in keep:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            constrained += 1
    return constrained


Shape = tuple[int, ...]


def profile_shapes(input_shape: Sequence[int], config: EngineConfig,
                   batch: int = 1) -> tuple[Shape, Shape, Shape] | None:
    """The ``(min, opt, max)`` NCHW shapes of the optimisation profile for an input, or None when it is static.

    A pure function of the parsed input's shape (``-1`` marks a dynamic axis,
    as TensorRT reports it) and the config, so the profile is testable
    without TensorRT.

    Args:
        input_shape: ``[N, C, H, W]``, ``-1`` on dynamic axes.
        config: the batch range and, for dynamic H/W, ``config.shapes``.
        batch: the export batch (the default optimum of a dynamic batch).

    Raises:
        ValueError: dynamic H/W without ``config.shapes``, or a batch range
            that is not ``min <= opt <= max``.
    """
    dims = tuple(int(d) for d in input_shape)
    if len(dims) != 4:
        raise ValueError(f"expected an NCHW input, got shape {dims}")
    if -1 not in dims:
        return None
    if dims[1] == -1:
        raise ValueError(f"input {dims}: a dynamic channel axis is not supported")
    if dims[0] == -1:
        opt_n, top = config.opt_batch or batch, profile_max_batch(config.max_batch, batch)
        if not config.min_batch <= opt_n <= top:
            raise ValueError(f"batch profile must satisfy min <= opt <= max, got {config.min_batch}, {opt_n}, {top}")
        batches = (config.min_batch, opt_n, top)
    else:
        batches = (dims[0],) * 3
    if -1 in dims[2:]:
        if config.shapes is None:
            raise ValueError(f"input {dims} has a dynamic height/width: the engine needs a shape profile "
                             "(EngineConfig.shapes, from the manifest's max_side)")
        hw = (config.shapes.min, config.shapes.opt, config.shapes.max)
    else:
        hw = ((dims[2], dims[3]),) * 3
    low, opt, high = ((n, dims[1], h, w) for n, (h, w) in zip(batches, hw))
    return low, opt, high


def _shape_profile(net: _Network, cfg: Any, config: EngineConfig, batch: int) -> None:
    """An optimisation profile for the dynamic axes of the input (nothing for a static one).

    Raises:
        ValueError: see :func:`profile_shapes`.
    """
    image = net.network.get_input(0)
    shapes = profile_shapes(tuple(image.shape), config, batch)
    if shapes is None:
        return
    profile = net.builder.create_optimization_profile()
    profile.set_shape(image.name, *shapes)
    cfg.add_optimization_profile(profile)


def _builder_config(trt: Any, net: _Network, config: EngineConfig, cache_path: Path) -> Any:
    """Workspace limit, optimisation level and the timing cache read from ``cache_path``."""
    cfg = net.builder.create_builder_config()
    cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gb * (1 << 30)))
    if hasattr(cfg, "builder_optimization_level"):
        cfg.builder_optimization_level = config.optimization_level
    timing = cfg.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    cfg.set_timing_cache(timing, ignore_mismatch=False)
    return cfg


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str,
    config: EngineConfig = EngineConfig(),
    fp32_nodes: Sequence[str] = (),
    batch: int = 1,
    progress: Any = None,
) -> EngineBuild:
    """Build and save a TensorRT engine from one of the artifact's ONNX graphs.

    Args:
        onnx_path: the graph (FP32, FP16 or INT8 Q/DQ).
        engine_path: where the serialised engine goes.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (only used without strong typing).
        config: workspace, timing cache, batch and (native) height/width profile.
        fp32_nodes: ONNX node names kept in FP32 (weakly typed builds pin them).
        batch: the export batch (the profile's default optimum).
        progress: optional ``callable(str)``.

    Returns:
        An :class:`EngineBuild`.

    Raises:
        EngineUnavailable: no TensorRT or no GPU (one line).
        ValueError: the parser rejects the graph (its errors listed).
        RuntimeError: the builder fails.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    trt_version, gpu, capability = check_tensorrt(config.device)
    trt = _import_tensorrt()
    say = progress or (lambda _msg: None)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    start = time.perf_counter()

    # TensorRT builds on the current CUDA device: make config.device current
    # for the build, or every engine lands on device 0 whatever was asked.
    with _on_device(config.device):
        net = _parse_network(trt, trt.Logger(trt.Logger.WARNING), onnx_path)
        cache_path = Path(config.timing_cache) if config.timing_cache else _default_timing_cache(gpu, trt_version)
        cfg = _builder_config(trt, net, config, cache_path)
        constrained = _precision_flags(trt, net, cfg, precision, fp32_nodes)
        _shape_profile(net, cfg, config, batch)
        say(f"tensorrt {trt_version}: building {engine_path.name} on {gpu} (sm {capability}, "
            f"{'strongly typed' if net.strongly_typed else 'precision flags'})")
        serialized = net.builder.build_serialized_network(net.network, cfg)
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt_version} failed to build an engine from {onnx_path} (see its log above)")
    write_atomic(engine_path, memoryview(serialized))
    write_atomic(cache_path, memoryview(cfg.get_timing_cache().serialize()))
    return EngineBuild(
        path=engine_path,
        sha256=sha256_file(engine_path),
        size_bytes=engine_path.stat().st_size,
        tensorrt=trt_version,
        gpu=gpu,
        compute_capability=capability,
        strongly_typed=net.strongly_typed,
        constrained_layers=constrained,
        timing_cache=cache_path,
        seconds=time.perf_counter() - start,
    )
