"""``calibrate``: measure activation ranges of an FP32 ONNX graph, once.

The ranges are what explicit INT8 quantization needs (one scale per
activation tensor, symmetric); they go into the Q/DQ nodes of the graph, so
TensorRT never calibrates itself (TensorRT 10 deprecated and 11 removed its
implicit calibrators).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focal.calibration.cache import CalibrationCache, cache_key
from focal.calibration.methods import CalibrationConfig
from focal.calibration.readers import CalibrationReader
from focal.runtime.manifest import sha256_file

__all__ = ["CalibrationResult", "calibrate", "read_ranges"]


@dataclass(frozen=True)
class CalibrationResult:
    """Where the measured ranges are and what they were measured on."""

    ranges_file: Path  # ONNX Runtime range JSON, usable as quantize_static's calibration_cache_path
    key: str  # cache key (graph, set, method)
    config: CalibrationConfig  # the method and its settings
    from_cache: bool  # True when nothing was run (a cache hit)
    tensors: int  # number of tensors with a range
    description: dict[str, Any] = field(default_factory=dict)  # the set, for the manifest
    seconds: float = 0.0  # time spent (0 on a hit, apart from hashing)


# Range files (save_tensors_data / load_tensors_data) and quantize_static's
# calibration_cache_path first appear in ONNX Runtime 1.27; the runtime alone
# runs on older builds (JetPack's), so the floor is checked here, not pinned.
EXPORT_MIN_ORT = (1, 27)


def _require_ort() -> Any:
    try:
        import onnxruntime
        from onnxruntime import quantization
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "calibration needs onnxruntime: pip install 'focal[cpu,export]' (or the gpu extra on CUDA machines)"
        ) from exc
    check_ort_version(onnxruntime.__version__)
    return quantization


def check_ort_version(version: str, minimum: tuple[int, int] = EXPORT_MIN_ORT) -> None:
    """Raises ImportError, naming both versions, when ``version`` is below what INT8 export needs."""
    parts = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
    if parts < minimum:
        raise ImportError(f"INT8 calibration and quantization need onnxruntime >= {minimum[0]}.{minimum[1]}, "
                          f"this is {version}: pip install -U 'onnxruntime>={minimum[0]}.{minimum[1]}' "
                          "(or onnxruntime-gpu)")


def calibrate(
    model_path: str | Path,
    reader: CalibrationReader,
    config: CalibrationConfig = CalibrationConfig(),
    cache: CalibrationCache | str | Path | None = None,
    progress: Any = None,
) -> CalibrationResult:
    """Measure (or fetch from the cache) the activation ranges of ``model_path``.

    Args:
        model_path: FP32 ONNX graph, with the tensor names the quantizer will see.
        reader: the calibration set.
        config: method and settings.
        cache: a :class:`CalibrationCache`, a folder for one, or ``None`` for
            the default folder (``~/.cache/focal/calibration``).
        progress: optional ``callable(str)`` for one-line progress messages.

    Returns:
        A :class:`CalibrationResult` whose ``ranges_file`` holds the ranges.

    Raises:
        FileNotFoundError: no such model.
        ValueError: the set yields no batch, or its batches do not fit the graph.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: ONNX model not found")
    if not isinstance(reader, CalibrationReader):
        raise TypeError(f"reader must be a focal.calibration reader, got {type(reader).__name__}")
    store = cache if isinstance(cache, CalibrationCache) else CalibrationCache(cache)
    key = cache_key(sha256_file(model_path), reader.fingerprint(), config.key())
    ranges_file = store.ranges_path(key)
    say = progress or (lambda _msg: None)

    if store.has(key):
        meta = store.meta(key)
        say(f"calibration: cache hit {ranges_file.name} ({meta.get('tensors', '?')} tensors, {config.method})")
        return CalibrationResult(
            ranges_file, key, config, True, int(meta.get("tensors", 0)), dict(meta.get("set", {})), 0.0
        )

    quantization = _require_ort()
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    start = time.perf_counter()
    say(f"calibration: {config.method} on {len(reader)} images ({reader.describe()['kind']})")
    with tempfile.TemporaryDirectory(prefix="focal-calib-") as tmp:
        calibrator = create_calibrator(
            model_path,
            list(config.op_types) if config.op_types is not None else [],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=config.ort_method(),
            extra_options=config.ort_options(),
        )
        reader.rewind()
        try:
            if reader.native is None:
                calibrator.collect_data(reader)
            else:
                _collect_each(calibrator, reader)
        except Exception as exc:  # ORT raises its own types for shape/name mismatches
            raise ValueError(f"calibration set does not fit {model_path.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            reader.rewind()
        ranges = calibrator.compute_data()
        del calibrator
    if not isinstance(ranges, quantization.TensorsData) or not len(list(ranges.keys())):
        raise ValueError(f"calibration of {model_path.name} produced no ranges (empty calibration set?)")
    save_tensors_data(ranges, ranges_file)
    seconds = time.perf_counter() - start
    description = dict(reader.describe(), method=config.key())
    tensors = len(list(ranges.keys()))
    store.write_meta(
        key,
        {"model": model_path.name, "model_sha256": sha256_file(model_path), "set": description, "tensors": tensors,
         "seconds": round(seconds, 2)},
    )
    say(f"calibration: {tensors} tensor ranges in {seconds:.1f} s -> {ranges_file}")
    return CalibrationResult(ranges_file, key, config, False, tensors, description, seconds)


class _OneBatch:
    """ORT's reader protocol over a single batch."""

    def __init__(self, batch: dict[str, np.ndarray]) -> None:
        self._batch: dict[str, np.ndarray] | None = batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch, self._batch = self._batch, None
        return batch


def _collect_each(calibrator: Any, reader: CalibrationReader) -> None:
    """Feed a native-policy set one image (one shape) per ``collect_data`` call.

    ORT's histogram calibrators (entropy, percentile) stack every collected
    output of a call with ``np.asarray`` before histogramming, which fails on
    tensors of different shapes; across calls they merge histograms, and the
    min-max calibrator merges ranges. So one call per image measures ranges
    over images of any shape (and holds one image's activations at a time).
    """
    for batch in reader.batches():
        calibrator.collect_data(_OneBatch(batch))


def read_ranges(ranges_file: str | Path | CalibrationResult) -> dict[str, tuple[float, float]]:
    """``{tensor name: (lowest, highest)}`` from a range file or result."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    path = ranges_file.ranges_file if isinstance(ranges_file, CalibrationResult) else Path(ranges_file)
    data = load_tensors_data(path)
    out = {}
    for name, td in data.items():
        lo, hi = td.range_value
        out[name] = (float(np.min(lo)), float(np.max(hi)))
    return out
