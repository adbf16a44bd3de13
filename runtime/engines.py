"""Inference engines behind one interface: ``infer(dict[str, ndarray]) -> dict[str, ndarray]``.

Two runners, interchangeable and testable alike (Polygraphy's runner
pattern): :class:`OnnxRuntimeEngine` (CPU, CUDA and TensorRT execution
providers) and :class:`TensorRTEngine` (a serialised TensorRT engine run with
pycuda). Both are context managers. GPU packages are imported only inside the
code that needs them, with an error naming the extra to install.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from focal.runtime.geometry import ShapeProfile, input_profile
from focal.runtime.integrity import IntegrityError, verify_file
from focal.runtime.manifest import Manifest, ModelFile, sha256_file

BACKENDS: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt", "tensorrt-ep")


class Engine(Protocol):
    """What the detector needs from an engine."""

    name: str  # e.g. "onnxruntime/CPUExecutionProvider (model.int8.cpu.onnx)", "tensorrt 10.3.0"
    input_names: list[str]
    output_names: list[str]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``{input_name: array}``; returns ``{output_name: array}`` on the host."""
        ...

    def close(self) -> None:
        """Release the session / device memory."""
        ...


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(
            "ONNX Runtime is not installed: pip install 'focal[cpu]' (or 'focal[gpu]' on NVIDIA GPUs)"
        ) from exc
    return ort


class ProviderFallbackError(ValueError):
    """ONNX Runtime opened the session on another provider than the one asked for."""


class OnnxRuntimeEngine:
    """An ONNX model in an ONNX Runtime session tuned for latency.

    Args:
        model_path: the ``.onnx`` file.
        provider: ``"cpu"``, ``"cuda"`` or ``"tensorrt-ep"`` (ONNX Runtime's
            TensorRT execution provider, FP16 enabled for an FP16 graph).
        threads: intra-op threads; ``None`` = all cores.
        mem_arena: ONNX Runtime's CPU memory arena. On by default: without
            it every run maps and zeroes its activation buffers afresh
            (``lite`` at 512, 2-core x86-64: 47 ms per image instead of 30);
            off roughly halves the peak memory of big models (SAM ViT-B at
            1024: 3.7 GB instead of 6.9 GB) at that cost.
        trt_cache_dir: where the TensorRT EP caches its engines.
        trt_profile: the TensorRT EP's explicit optimisation profile
            (:func:`trt_ep_profile`) for a graph with dynamic axes; without
            one the EP builds an engine per new input shape it meets.

    On CUDA the outputs are bound on the device with IOBinding and copied
    back once, so ONNX Runtime does not allocate host buffers per call.
    """

    _PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt-ep": "TensorrtExecutionProvider"}

    def __init__(
        self,
        model_path: str | Path,
        provider: str = "cpu",
        threads: int | None = None,
        mem_arena: bool = True,
        trt_cache_dir: str | Path | None = None,
        fp16: bool = False,
        int8: bool = False,
        trt_profile: dict[str, str] | None = None,
    ) -> None:
        ort = _import_onnxruntime()
        if provider not in self._PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime provider {provider!r}; choose one of {sorted(self._PROVIDERS)}")
        wanted = self._PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted not in available:
            raise ValueError(
                f"{wanted} is not available in this onnxruntime build (available: {', '.join(available)}); "
                "install 'focal[gpu]' on a CUDA machine"
            )
        opts = ort.SessionOptions()
        # Full optimisation (fusions, constant folding) is where ONNX Runtime's
        # 2-3x over eager PyTorch comes from; sequential execution and a fixed
        # thread count keep latency predictable.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = mem_arena
        opts.log_severity_level = 3
        # Idle intra-op threads would spin and steal the cores the clustering
        # runs on right after inference (measured ~3x slower clustering).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = []
        if provider == "tensorrt-ep":
            cache = Path(trt_cache_dir or Path(model_path).parent / "trt-ep-cache")
            cache.mkdir(parents=True, exist_ok=True)
            providers.append((wanted, {
                "trt_fp16_enable": fp16,
                # A Q/DQ graph builds in TensorRT only with INT8 enabled; without it
                # the EP rejects the graph and ORT would quietly run it on CUDA.
                "trt_int8_enable": int8,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
                **(trt_profile or {}),
            }))
            providers.append("CUDAExecutionProvider")
        elif provider == "cuda":
            providers.append((wanted, {"cudnn_conv_algo_search": "EXHAUSTIVE"}))
        providers.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        # get_available_providers() says how ORT was built, not whether a GPU
        # works: a session asked for CUDA may silently run on the CPU.
        actual = self.session.get_providers()[0]
        if actual != wanted:
            raise ProviderFallbackError(
                f"{Path(model_path).name}: asked for {wanted}, but ONNX Runtime runs it on {actual} "
                f"(session providers {self.session.get_providers()}): no usable GPU, or the provider's libraries "
                "are missing"
            )
        self.provider = provider
        self.name = f"onnxruntime/{actual} ({Path(model_path).name})"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._on_gpu = provider != "cpu"

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``feeds``: ``{input_name: array}`` (float32 NCHW for FOCAL models)."""
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise ValueError(f"missing inputs {sorted(missing)}; the model takes {self.input_names}")
        if self._on_gpu:
            binding = self.session.io_binding()
            for name in self.input_names:
                binding.bind_cpu_input(name, np.ascontiguousarray(feeds[name]))
            for name in self.output_names:
                binding.bind_output(name, "cuda")
            self.session.run_with_iobinding(binding)
            return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
        outs = self.session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory with it)."""
        self.session = None  # type: ignore[assignment]

    def __enter__(self) -> "OnnxRuntimeEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _import_tensorrt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
        import pycuda.driver as cuda
    except ImportError as exc:
        raise ImportError(
            "TensorRT engines need the tensorrt and pycuda packages: pip install 'focal[gpu]' "
            "(on a Jetson they come with JetPack)"
        ) from exc
    return trt, cuda


def check_engine_compatibility(entry: ModelFile, manifest: Manifest, artifact_dir: Path, trt_version: str,
                               compute_capability: str) -> None:
    """Refuse an engine built for another TensorRT, GPU or ONNX graph.

    TensorRT engines are only valid on the TensorRT version and GPU
    architecture that built them, and only mean what the manifest says if
    they come from the ONNX graph it lists.

    Raises:
        ValueError: one line naming the mismatch and the command that rebuilds the engine.
    """
    weights = manifest.source.get("weights")
    rebuild = (
        f"focal-export --backbone {manifest.extractor} --input-size {manifest.input.size}"
        + (f" --weights {weights}" if weights else "")
        + (f" --input-policy native --max-side {manifest.input.max_side} --max-points {manifest.input.max_points}"
           if manifest.input.policy == "native" else "")
        + ("" if entry.precision == "fp32" else f" --{entry.precision}")
        + f" --engine --out {artifact_dir}"
    )
    problems = []
    if entry.tensorrt and entry.tensorrt != trt_version:
        problems.append(f"built with TensorRT {entry.tensorrt}, this is {trt_version}")
    if entry.compute_capability and entry.compute_capability != compute_capability:
        problems.append(f"built for compute capability {entry.compute_capability}, this GPU is {compute_capability}")
    if entry.onnx_sha256:
        # Engines are built from the general graph (target None), never from the CPU variant beside it.
        onnx_entry = next((m for m in manifest.models
                           if m.kind == "onnx" and m.precision == entry.precision and m.target is None), None)
        if onnx_entry is None or onnx_entry.sha256 != entry.onnx_sha256:
            problems.append("built from an ONNX graph that is no longer the artifact's")
        elif (artifact_dir / onnx_entry.file).is_file() and sha256_file(artifact_dir / onnx_entry.file) != onnx_entry.sha256:
            problems.append(f"{onnx_entry.file} changed since the engine was built")
    if problems:
        raise ValueError(f"{artifact_dir / entry.file}: {'; '.join(problems)}. Rebuild it: {rebuild}")


def check_engine_profile(manifest: Manifest, profile: tuple[tuple[int, ...], ...], where: Path | str) -> None:
    """Refuse, before any image runs, an engine whose profile cannot hold every input the manifest's policy makes.

    Under ``native`` the inputs range from one cell to ``max_side x max_side``
    (:func:`focal.runtime.geometry.input_profile`); an engine built for a
    smaller cap (or a static-shape engine) would fail on the first large photo.

    Args:
        manifest: the artifact's manifest.
        profile: the engine input's ``(min, opt, max)`` NCHW shapes.
        where: the engine file, for the message.

    Raises:
        ValueError: one line naming the engine's range and the one needed.
    """
    if manifest.input.policy != "native":
        return
    assert manifest.input.max_side is not None  # the manifest refuses native without it
    need = input_profile(manifest.input.max_side, manifest.members[0].stride)
    low, opt, high = profile
    have = ShapeProfile((low[2], low[3]), (opt[2], opt[3]), (high[2], high[3]))
    # The input range is a box, so holding its two corners is holding every capped image.
    if not (have.holds(*need.min) and have.holds(*need.max)):
        raise ValueError(f"{where}: its profile takes {low[2]} x {low[3]} .. {high[2]} x {high[3]} inputs, but the "
                         f"artifact's max_side {manifest.input.max_side} needs {need.min[0]} x {need.min[1]} .. "
                         f"{need.max[0]} x {need.max[1]}: rebuild the engine (focal-export --engine)")


class TensorRTEngine:
    """A serialised TensorRT engine run with pycuda on its own stream.

    Works with the TensorRT 10 and 11 Python APIs (named I/O tensors,
    ``set_tensor_address``, ``execute_async_v3``). Host buffers are pinned
    (page-locked) so copies run asynchronously on the stream; device buffers
    are allocated once for the engine's maximum shapes.

    Args:
        engine_path: the ``.engine`` / ``.plan`` file.
        device: CUDA device ordinal.

    Not thread-safe (one execution context); :class:`~focal.runtime.Detector`
    serialises calls.
    """

    def __init__(self, engine_path: str | Path, device: int = 0) -> None:
        trt, cuda = _import_tensorrt()
        self._trt, self._cuda = trt, cuda
        cuda.init()
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        try:
            logger = trt.Logger(trt.Logger.WARNING)
            try:
                runtime = trt.Runtime(logger)
            except TypeError as exc:  # "factory function returned nullptr": CUDA could not initialise
                raise RuntimeError(f"TensorRT could not start a runtime, CUDA is not usable here ({exc})") from None
            data = Path(engine_path).read_bytes()
            self.engine = runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise ValueError(f"{engine_path}: TensorRT could not deserialise the engine (built by another version?)")
            self.context = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
            self.input_names = [n for n in names if is_input[n]]
            self.output_names = [n for n in names if not is_input[n]]
            self._dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
            self._device: dict[str, Any] = {}
            self._host: dict[str, np.ndarray] = {}
            self._capacity: dict[str, int] = {}
        finally:
            self._ctx.pop()
        self.name = f"tensorrt {trt.__version__}"

    def profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(min, opt, max)`` shapes of input ``name`` in the engine's first optimisation profile
        (all three the static shape when the input has no dynamic axis)."""
        shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
        if -1 not in shape:  # no profile to ask for: the one shape is min, opt and max
            return shape, shape, shape
        low, opt, high = (tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, 0))
        return low, opt, high

    def _buffer(self, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
        """Pinned host and device buffers for ``name``, grown when a larger shape arrives."""
        nbytes = int(np.prod(shape)) * self._dtype[name].itemsize
        if self._capacity.get(name, -1) < nbytes:
            self._free(name)
            self._device[name] = self._cuda.mem_alloc(max(nbytes, 1))
            self._host[name] = self._cuda.pagelocked_empty(int(np.prod(shape)), self._dtype[name])
            self._capacity[name] = nbytes
        host = self._host[name][: int(np.prod(shape))].reshape(shape)
        return host, self._device[name]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs in, ``execute_async_v3``, copy outputs out, on one stream."""
        self._ctx.push()
        try:
            for name in self.input_names:
                arr = np.ascontiguousarray(feeds[name], dtype=self._dtype[name])
                # Every call sets its own shape: a native artifact's images differ in height and width,
                # and the output shapes (hence the buffers below) follow from the input's.
                if not self.context.set_input_shape(name, arr.shape):
                    low, _, high = self.profile(name)
                    raise ValueError(f"input {name!r} of shape {arr.shape} is outside the engine's optimisation "
                                     f"profile {low} .. {high} (rebuild it: a larger --max-graph-batch, or the "
                                     "artifact's --max-side)")
                host, dev = self._buffer(name, arr.shape)
                np.copyto(host, arr)
                self._cuda.memcpy_htod_async(dev, host, self.stream)
                self.context.set_tensor_address(name, int(dev))
            outputs = {}
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                host, dev = self._buffer(name, shape)
                self.context.set_tensor_address(name, int(dev))
                outputs[name] = host
            if not self.context.execute_async_v3(self.stream.handle):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            for name, host in outputs.items():
                self._cuda.memcpy_dtoh_async(host, self._device[name], self.stream)
            self.stream.synchronize()
            # Copies: the pinned buffers are reused by the next call.
            return {k: v.copy() for k, v in outputs.items()}
        finally:
            self._ctx.pop()

    def _free(self, name: str) -> None:
        """Free one tensor's device and pinned host buffers (pycuda frees neither after the context is gone)."""
        dev = self._device.pop(name, None)
        if dev is not None:
            dev.free()
        host = self._host.pop(name, None)
        if host is not None and getattr(host, "base", None) is not None and hasattr(host.base, "free"):
            host.base.free()
        self._capacity.pop(name, None)

    def close(self) -> None:
        """Free device and pinned host buffers and the stream, then release the CUDA context."""
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            for name in list(self._device):
                self._free(name)
            self.stream = None  # its destructor runs while the context is still current
            self.context = None
            self.engine = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None

    def __enter__(self) -> "TensorRTEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cuda_compute_capability(device: int = 0) -> str:
    """``"major.minor"`` of a CUDA device, via pycuda."""
    _, cuda = _import_tensorrt()
    cuda.init()
    major, minor = cuda.Device(device).compute_capability()
    return f"{major}.{minor}"


def tensorrt_status() -> tuple[bool, str]:
    """Whether TensorRT engines can run on this machine, and if not, why.

    The one probe of TensorRT availability: the runtime's backend choice,
    the export's engine build and its verification all ask it. Never raises.

    Returns:
        ``(True, "")`` when ``tensorrt`` and ``pycuda`` import and CUDA sees a
        device; else ``(False, reason)``, the reason one line naming what is
        missing (and the extra to install).
    """
    try:
        import pycuda.driver as cuda
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "TensorRT/pycuda not installed (pip install 'focal[gpu]')"
    except Exception as exc:  # an installed package whose native libraries fail to load
        return False, f"TensorRT/pycuda unusable ({type(exc).__name__}: {exc})"
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return False, "no CUDA device"
    except Exception as exc:  # driver missing or broken
        return False, f"CUDA unavailable ({type(exc).__name__})"
    return True, ""


def _ort_providers() -> list[str]:
    try:
        return list(_import_onnxruntime().get_available_providers())
    except ImportError:
        return []


def resolve_backend(backend: str, manifest: Manifest, precision: str) -> str:
    """Turn ``"auto"`` into the best backend this machine and artifact allow.

    Order: a TensorRT engine of the requested precision (TensorRT + pycuda +
    a GPU present), then ONNX Runtime's CUDA provider, then its CPU provider.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    has_engine = any(m.kind == "tensorrt" and m.precision == precision for m in manifest.models)
    if has_engine and tensorrt_status()[0]:
        return "tensorrt"
    if "CUDAExecutionProvider" in _ort_providers():
        return "cuda"
    return "cpu"


def open_engine(
    artifact_dir: Path, manifest: Manifest, backend: str, precision: str, threads: int | None = None,
    mem_arena: bool = True, model_file: str | None = None, verify: bool = True,
) -> Engine:
    """Open the artifact's model for ``backend`` and ``precision``: on ONNX
    Runtime's CPU provider the artifact's CPU-tuned variant where it has one
    (:meth:`Manifest.model_for`), unless ``model_file`` names the entry.

    Raises:
        ValueError: the artifact lacks that model, ``model_file`` is not an
            ONNX entry of that precision (or is the CPU variant, on the TensorRT
            execution provider), or a TensorRT engine does not match
            this machine (with the rebuild command).
        IntegrityError: with ``verify``, an ONNX file whose sha256 is not the
            manifest's (:mod:`focal.runtime.integrity`).
    """
    backend = resolve_backend(backend, manifest, precision)
    if backend == "tensorrt":
        entry = manifest.model("tensorrt", precision)
        trt, _ = _import_tensorrt()
        check_engine_compatibility(entry, manifest, artifact_dir, trt.__version__, cuda_compute_capability())
        engine = TensorRTEngine(artifact_dir / entry.file)
        if manifest.input.policy == "native":
            try:
                check_engine_profile(manifest, engine.profile(manifest.input.name), artifact_dir / entry.file)
            except ValueError:
                engine.close()
                raise
        return engine
    if model_file is not None:
        entry = manifest.entry(model_file)
        if entry.kind != "onnx" or entry.precision != precision:
            raise ValueError(f"{model_file} is an {entry.kind} {entry.precision} model, not an ONNX {precision} one")
        if entry.target == "cpu" and backend == "tensorrt-ep":
            raise ValueError(f"{model_file} is tuned for ONNX Runtime's CPU provider; TensorRT takes the general "
                             "graph (leave model_file unset)")
    else:
        entry = manifest.model_for(backend, precision)
    path = artifact_dir / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: listed in the manifest but missing")
    if verify:
        verify_file(path, entry.sha256)
        if entry.external_data is not None:  # the weights of a graph past 2 GB live in this file
            if entry.external_sha256 is None:
                raise IntegrityError(f"{artifact_dir / entry.external_data}: the manifest records no sha256 for "
                                     f"{entry.file}'s external weights, so they cannot be checked (re-export, "
                                     "or pass --no-verify to run them anyway)")
            verify_file(artifact_dir / entry.external_data, entry.external_sha256)
    return OnnxRuntimeEngine(path, provider=backend, threads=threads, mem_arena=mem_arena, fp16=precision == "fp16",
                             int8=precision == "int8",
                             trt_profile=trt_ep_profile(manifest) if backend == "tensorrt-ep" else None)


def trt_ep_profile(manifest: Manifest) -> dict[str, str] | None:
    """ONNX Runtime TensorRT EP options that fix one optimisation profile for the manifest's input, or None.

    The same range as the artifact's own TensorRT engines: batch
    ``1 .. max_batch`` (optimum: the export batch) on a dynamic batch axis;
    height and width from :func:`focal.runtime.geometry.input_profile` under
    ``native``. A fully static input needs none. Values are ONNX Runtime's
    ``"name:NxCxHxW"`` strings.
    """
    spec = manifest.input
    native = spec.policy == "native"
    if not (native or spec.dynamic_batch):
        return None
    n = int(spec.batch)
    batches = (1, n, int(spec.max_batch or n)) if spec.dynamic_batch else (n, n, n)
    if native:
        assert spec.max_side is not None  # the manifest refuses native without it
        hw = input_profile(spec.max_side, manifest.members[0].stride)
        sizes = (hw.min, hw.opt, hw.max)
    else:
        sizes = ((spec.size, spec.size),) * 3
    shapes = [f"{spec.name}:{b}x3x{h}x{w}" for b, (h, w) in zip(batches, sizes)]
    return dict(zip(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"), shapes))


class LockedEngine:
    """Serialises ``infer`` calls of an engine that is not thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.inner = engine  # the wrapped runner, for what only it knows (e.g. an ORT session's providers)
        self.name = engine.name
        self.input_names = engine.input_names
        self.output_names = engine.output_names

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._engine.infer(feeds)

    def close(self) -> None:
        with self._lock:
            self._engine.close()
