"""``focal-serve``: the detector behind NVIDIA Triton Inference Server, through PyTriton.

Triton does the serving: the KServe v2 protocol over HTTP and gRPC, dynamic
batching, a bounded queue with its reject policy, health endpoints and
Prometheus metrics. PyTriton starts the ``tritonserver`` binary its wheel
bundles and forwards each batch Triton forms to :class:`FocalModel` in this
process, which runs one :class:`focal.runtime.Detector`.

The model (name ``focal`` unless configured), per request element:

==========  ======  ==========  =====================================================
tensor      dtype   shape       meaning
==========  ======  ==========  =====================================================
image       BYTES   [1]         one encoded image file (JPEG, PNG, TIFF, BMP, WebP, PNM)
mask        UINT8   [H, W]      255 = forged, at the image's resolution (see ``size``)
size        INT32   [2]         the image's (H, W), (0, 0) on error; masks of a
                                multi-image request are zero-padded to the largest
                                (at least 1 x 1): crop with ``size``
score       FP32    [1]         image-level forgery score (NaN for a failed element)
forged      FP32    [1]         fraction of pixels in the mask
timings     BYTES   [1]         JSON: milliseconds per stage (decode, preprocess,
                                infer, cluster, postprocess; copy_move and
                                double_jpeg when searched, heatmap when made)
copy_move   INT8    [1]         1 a copy-move was found (its mask is in ``mask``),
                                0 none found, -1 not searched (a server running
                                without the search, or a failed element)
double_jpeg INT8    [1]         1 a region that missed the file's first JPEG
                                compression was found (its mask is in ``mask``),
                                0 the file gives evidence (a double compression,
                                or a grid of its own) but no such region, -1 not
                                searched or no evidence (a server running
                                without the cue, a picture that never was a
                                JPEG, or a failed element)
error       BYTES   [1]         empty when fine; else one line naming the problem
heatmap     UINT8   [H, W]      only from a server run with ``--heatmap``: the features'
                                forgery map as levels, 255 at a cosine distance of 0.5
                                to the pristine direction (``focal.runtime.render.
                                heatmap_levels``), zero-padded as ``mask``
==========  ======  ==========  =====================================================

Copy-moves: with ``DetectorConfig.copy_move`` (on for an artifact whose manifest
lists the search, as the embedded default's does; ``--copy-move`` / ``--no-copy-move``)
each image is also searched for a region repeated inside it
(:mod:`focal.runtime.copymove`), as ``focal-detect`` does: ``mask`` and ``forged``
are the union, ``score`` is lifted where a copy was found (``joined_score``).

Double JPEG: with ``DetectorConfig.double_jpeg`` (on for an artifact whose manifest
lists the cue, as the embedded default's does; ``--double-jpeg`` / ``--no-double-jpeg``)
each file's bytes also go to the double-JPEG cue (:mod:`focal.runtime.doublejpeg`):
the server hands the Detector an :class:`~focal.runtime.detector.EncodedImage`
holding the pixels it decoded and the bytes they came from, so the cue reads
the very file that was decoded, as ``focal-detect --double-jpeg`` does. The
mask is the union (clustering, copy-move, double-JPEG); ``score`` is the
features', lifted where either cue found a region
(:func:`focal.runtime.score.joined_score`).

A bad element (corrupt file, over the pixel limit) gets its ``error`` and
an empty mask; the other elements of its request and of its batch are
unaffected. A full queue rejects at once (Triton's ``max_queue_size`` with
``REJECT``): the client sees HTTP 503 / gRPC UNAVAILABLE with Triton's
message rather than a latency growing without bound.

Overlap: ``instances`` model instances share the one Detector. The
Detector serialises engine calls, so while one instance's batch is being
clustered (the native core releases the GIL) another's is in the engine,
and within a batch :meth:`Detector.detect_many` clusters image k while
image k + 1 is inferred.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from focal.runtime.detector import STAGES, Detector, DetectorConfig, EncodedImage, Result
from focal.runtime.imageio import decode_image
from focal.runtime.render import heatmap_levels
from focal.serving._triton_env import ServeUnavailable, require_pytriton, triton_env

__all__ = ["FocalModel", "NOT_SEARCHED", "OUTPUT_NAMES", "ServeConfig", "ServeError", "ServeUnavailable",
           "serve"]

# Every server's outputs; one run with --heatmap adds "heatmap".
OUTPUT_NAMES = ("mask", "size", "score", "forged", "timings", "copy_move", "double_jpeg", "error")
# The ``copy_move`` / ``double_jpeg`` output where the cue did not run (or, for the double-JPEG cue,
# the file held no evidence): not "none found" (0), which only a search over evidence can say.
NOT_SEARCHED = -1
_LOG = logging.getLogger("focal.serve")


class ServeError(Exception):
    """A configuration, artifact or port problem found before serving (one line)."""


@dataclass(frozen=True)
class ServeConfig:
    """What ``focal-serve`` serves and how.

    Ports: ``grpc_port`` and ``metrics_port`` default to ``http_port + 1``
    and ``+ 2``. ``max_queue`` counts requests (not images) waiting for a
    model instance; 0 would mean unbounded and is refused.
    """

    artifact: Path
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    host: str = "127.0.0.1"  # loopback unless told otherwise
    http_port: int = 8000
    grpc_port: int | None = None
    metrics_port: int | None = None
    model_name: str = "focal"
    max_batch: int = 8  # elements per model call (Triton's max_batch_size)
    max_queue: int = 64  # requests waiting; a request beyond it is rejected at once
    queue_delay_us: int = 2000  # how long the batcher waits for more requests to join a batch
    queue_timeout_ms: int = 0  # a request waiting longer is rejected; 0: no limit
    instances: int = 2  # model instances sharing the Detector (one clusters while another infers)
    drain_s: int = 5  # on stop, how long in-flight requests may take to finish
    verbose: bool = False  # Triton's own log lines on stdout

    @property
    def ports(self) -> tuple[int, int, int]:
        """(HTTP, gRPC, metrics) ports."""
        grpc = self.grpc_port if self.grpc_port is not None else self.http_port + 1
        metrics = self.metrics_port if self.metrics_port is not None else self.http_port + 2
        return self.http_port, grpc, metrics

    def check(self) -> None:
        """Raises :class:`ServeError` for values Triton would refuse or misread."""
        for name, value in (("max_batch", self.max_batch), ("max_queue", self.max_queue),
                            ("instances", self.instances)):
            if value < 1:
                raise ServeError(f"{name} must be >= 1, got {value}")
        if self.queue_delay_us < 0 or self.queue_timeout_ms < 0:
            raise ServeError("queue_delay_us and queue_timeout_ms must be >= 0")
        ports = self.ports
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ServeError(f"HTTP, gRPC and metrics ports must be three different ports in 1..65535, got {ports}")


def _element_error(message: str) -> dict:
    return {"error": message}


def _result_fields(result: Result) -> dict:
    stages = STAGES if result.copy_move is None else (*STAGES, "copy_move")
    if "double_jpeg" in result.timings:  # the cue ran (the Detector times it even where it found no evidence)
        stages = (*stages, "double_jpeg")
    if result.heatmap is not None:
        stages = (*stages, "heatmap")
    timings = {k: round(float(result.timings.get(k, 0.0)), 3) for k in stages}
    copies = NOT_SEARCHED if result.copy_move is None else int(result.copy_move.any())
    # None: the cue off, or a file without evidence; all zero: double compression but no region (0).
    spliced = NOT_SEARCHED if result.double_jpeg is None else int(result.double_jpeg.any())
    fields = {"mask": result.mask, "score": float(result.score), "forged": float(result.forged_fraction),
              "timings": json.dumps(timings), "copy_move": copies, "double_jpeg": spliced, "error": ""}
    if result.heatmap is not None:
        fields["heatmap"] = heatmap_levels(result.heatmap)
    return fields


def _stack(elements: list[dict], heatmaps: bool = False) -> dict[str, np.ndarray]:
    """One request's outputs: masks (and under ``heatmaps`` the heatmaps) zero-padded to the largest,
    one row per element."""
    sizes = [e["mask"].shape if "mask" in e else (0, 0) for e in elements]
    # At least 1 x 1: PyTriton cannot pass a zero-size array, and one would fail the whole batch.
    height, width = max(1, *(s[0] for s in sizes)), max(1, *(s[1] for s in sizes))

    def planes(key: str) -> np.ndarray:
        out = np.zeros((len(elements), height, width), np.uint8)
        for k, e in enumerate(elements):
            if key in e:
                out[k, : sizes[k][0], : sizes[k][1]] = e[key]
        return out

    def column(key: str, default: object, dtype: object) -> np.ndarray:
        return np.array([[e.get(key, default)] for e in elements], dtype=dtype)

    stacked = {
        "mask": planes("mask"),
        "size": np.array(sizes, np.int32).reshape(len(elements), 2),
        "score": column("score", math.nan, np.float32),
        "forged": column("forged", math.nan, np.float32),
        "timings": np.array([[e.get("timings", "{}").encode()] for e in elements], dtype=object),
        "copy_move": column("copy_move", NOT_SEARCHED, np.int8),
        "double_jpeg": column("double_jpeg", NOT_SEARCHED, np.int8),
        "error": np.array([[e["error"].encode()] for e in elements], dtype=object),
    }
    if heatmaps:  # a failed element's is all zero, as its mask
        stacked["heatmap"] = planes("heatmap")
    return stacked


class FocalModel:
    """The inference callable PyTriton calls with each batch Triton forms.

    Args:
        detector: shared by every instance (engine calls are serialised inside it); its
            config's ``max_pixels`` / ``exif_orientation`` decode the files as ``focal-detect``
            does, and under its ``double_jpeg`` each file's bytes go to the Detector with its pixels.

    ``__call__`` takes the batch's requests (each ``request["image"]`` an
    object array ``[n, 1]`` of encoded files) and returns one dict of
    output arrays per request (see the module table). It never raises for
    a bad element.
    """

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        cfg = detector.config
        self._decode_kw = {"max_pixels": cfg.max_pixels, "apply_orientation": cfg.exif_orientation}
        # The double-JPEG cue reads the file's header and blocks: the Detector gets the bytes beside the pixels.
        self._encoded = cfg.double_jpeg
        self._heatmaps = cfg.heatmap

    def _decode(self, data: object, name: str) -> np.ndarray | ValueError:
        if not isinstance(data, (bytes, bytearray, np.bytes_)):
            return ValueError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
        try:
            return decode_image(bytes(data), name, **self._decode_kw)
        except ValueError as exc:
            return exc

    def detect(self, files: list[object], names: list[str] | None = None) -> list[dict]:
        """Detects on encoded files; one output dict per file, in order (errors in place, named by ``names``)."""
        names = names or [f"image[{k}]" for k in range(len(files))]
        elements: list[dict | None] = [None] * len(files)
        good: list[int] = []

        def images() -> Iterator[np.ndarray | EncodedImage]:
            # Runs in the Detector's prefetch thread: file k + 1 decodes while file k is in the engine.
            for k, data in enumerate(files):
                image = self._decode(data, names[k])
                if isinstance(image, Exception):
                    elements[k] = _element_error(str(image))
                    continue
                good.append(k)
                yield EncodedImage(image, bytes(data), names[k]) if self._encoded else image

        for n, result in enumerate(self.detector.detect_many(images())):
            k = good[n]  # detect_many yields one result per image it was given, in order
            elements[k] = _element_error(str(result)) if isinstance(result, Exception) else _result_fields(result)
        return [e if e is not None else _element_error("not processed") for e in elements]

    def __call__(self, requests: list) -> list[dict[str, np.ndarray]]:
        flat: list[object] = []
        names: list[str] = []  # "image[k]": the element's index in its own request, as its client sent it
        counts: list[int] = []
        for request in requests:
            column = np.asarray(request["image"], dtype=object).reshape(-1)
            flat.extend(column.tolist())
            names.extend(f"image[{k}]" for k in range(len(column)))
            counts.append(len(column))
        try:
            elements = self.detect(flat, names)
        except Exception as exc:  # an engine failure fails this batch with the reason, not the server
            _LOG.exception("batch of %d images failed", len(flat))
            elements = [_element_error(f"server error: {type(exc).__name__}: {exc}")] * len(flat)
        out, start = [], 0
        for n in counts:
            out.append(_stack(elements[start:start + n], self._heatmaps))
            start += n
        return out


def _check_ports_free(host: str, ports: tuple[int, ...]) -> None:
    """Raises :class:`ServeError` naming the first port already bound on ``host``."""
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            # SO_REUSEADDR as servers set it: a port in TIME_WAIT after a restart is free to them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise ServeError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); "
                                 "choose another --port / --grpc-port / --metrics-port") from None


def _model_config(cfg: ServeConfig):  # -> pytriton ModelConfig
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, TimeoutAction

    policy = QueuePolicy(timeout_action=TimeoutAction.REJECT, max_queue_size=cfg.max_queue,
                         default_timeout_microseconds=cfg.queue_timeout_ms * 1000)
    batcher = DynamicBatcher(max_queue_delay_microseconds=cfg.queue_delay_us, default_queue_policy=policy)
    return ModelConfig(batching=True, max_batch_size=cfg.max_batch, batcher=batcher)


def _tensors(heatmaps: bool = False):  # -> (inputs, outputs) as pytriton Tensors
    from pytriton.model_config import Tensor

    inputs = [Tensor(name="image", dtype=np.bytes_, shape=(1,))]
    outputs = [
        Tensor(name="mask", dtype=np.uint8, shape=(-1, -1)),
        Tensor(name="size", dtype=np.int32, shape=(2,)),
        Tensor(name="score", dtype=np.float32, shape=(1,)),
        Tensor(name="forged", dtype=np.float32, shape=(1,)),
        Tensor(name="timings", dtype=np.bytes_, shape=(1,)),
        Tensor(name="copy_move", dtype=np.int8, shape=(1,)),
        Tensor(name="double_jpeg", dtype=np.int8, shape=(1,)),
        Tensor(name="error", dtype=np.bytes_, shape=(1,)),
    ]
    if heatmaps:  # declared only where it is computed: a server without --heatmap spends nothing on it
        outputs.append(Tensor(name="heatmap", dtype=np.uint8, shape=(-1, -1)))
    return inputs, outputs


# PyTriton 0.7.0 starts model instances in parallel; each but the first fetches its configuration
# over a Unix socket the first creates, and one that connects before the first listens is refused,
# so the model fails to load (now and then, more often on a loaded machine). Starting again is safe:
# nothing was served yet.
START_ATTEMPTS = 3


def _is_start_race(exc: Exception) -> bool:
    """True for the model-load failure of PyTriton's instance handshake (and nothing else)."""
    text = str(exc)
    return "get_config_from_handshake_server" in text and "Connection refused" in text


def serve(cfg: ServeConfig, on_ready: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> int:
    """Serves ``cfg.artifact`` until SIGINT/SIGTERM (or ``stop`` is set); returns 0 on a clean stop, 1 if Triton died.

    Args:
        cfg: what to serve (:class:`ServeConfig`).
        on_ready: called with the HTTP URL once the model is ready.
        stop: set it to stop serving (tests, embedding).

    Raises:
        ServeError: bad configuration, an artifact that does not open, or a port in use.
        ServeUnavailable: the serve extra is missing or unusable here.
    """
    cfg.check()
    require_pytriton()
    _check_ports_free(cfg.host, cfg.ports)
    try:
        detector = Detector(cfg.artifact, cfg.detector)
    except Exception as exc:  # ONNX Runtime's own errors derive from Exception only
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ServeError(f"{cfg.artifact}: cannot open the model ({type(exc).__name__}: {text})") from None
    os.environ.update(triton_env())  # PyTriton starts tritonserver with a copy of this process's environment
    from pytriton.triton import Triton, TritonConfig

    http, grpc, metrics = cfg.ports
    tconfig = TritonConfig(http_address=cfg.host, http_port=http, grpc_address=cfg.host, grpc_port=grpc,
                           metrics_address=cfg.host, metrics_port=metrics, allow_metrics=True,
                           allow_gpu_metrics=False, exit_timeout_secs=cfg.drain_s, log_verbose=1 if cfg.verbose else 0)
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    inputs, outputs = _tensors(bool(detector.config.heatmap))
    model = FocalModel(detector)
    triton = None
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            triton = Triton(config=tconfig)
            triton.bind(model_name=cfg.model_name, infer_func=[model] * cfg.instances, inputs=inputs,
                        outputs=outputs, config=_model_config(cfg), strict=False)
            try:
                triton.run()
                break
            except Exception as exc:  # PyTriton raises tritonclient's exception, not one of its own
                if attempt == START_ATTEMPTS or not _is_start_race(exc):
                    raise
                _LOG.warning("focal-serve: a model instance missed PyTriton's handshake; starting again (%d of %d)",
                             attempt + 1, START_ATTEMPTS)
                triton.stop()
                triton = None
        url = f"http://{cfg.host}:{http}"
        if on_ready is not None:
            on_ready(url)
        while not stop.wait(0.5):
            if not triton.is_alive():
                return 1
        return 0
    finally:
        if triton is not None:
            triton.stop()
        detector.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

