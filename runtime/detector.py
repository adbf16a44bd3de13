"""The torch-free FOCAL detector: artifact folder in, masks and scores out.

``Detector`` reads the artifact's manifest, opens the best engine for this
machine, and runs the pipeline of method.md per image: decode, preprocess as
trained (the manifest says how), infer, L2-normalise, cluster, mask back to
the image size, score. Several images share an engine call when the model has
a batch axis, and the next batch is decoded and preprocessed on a worker
thread while the current one is inferred.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from focal.runtime.cluster import CLUSTER_METHODS
from focal.runtime.cluster import resolve_backend as resolve_cluster_backend
from focal.runtime.copymove import CopyMoveConfig, detect_copy_move
from focal.runtime.default import default_artifact
from focal.runtime.doublejpeg import DoubleJpegConfig, double_jpeg_mask
from focal.runtime.engines import LockedEngine, ProviderFallbackError, open_engine, resolve_backend
from focal.runtime.imageio import DEFAULT_MAX_PIXELS, read_bytes, decode_image
from focal.runtime.manifest import PRECISIONS, Manifest, load_manifest
from focal.runtime.fusion import fuse_feature_maps
from focal.runtime.postprocess import localize, soft_map
from focal.runtime.geometry import Geometry, image_geometry
from focal.runtime.preprocess import network_input
from focal.runtime.score import joined_score

STAGES: tuple[str, ...] = ("decode", "preprocess", "infer", "cluster", "postprocess")

_log = logging.getLogger("focal")


@dataclass(frozen=True)
class DetectorConfig:
    """Run-time choices; the model's own facts come from the manifest."""

    backend: str = "auto"  # "auto", "cpu", "cuda", "tensorrt" (engine) or "tensorrt-ep" (ORT's TensorRT EP)
    precision: str = "fp32"  # which of the artifact's models: "fp32", "fp16", "int8"
    clustering: str | None = None  # "hdbscan" / "kmeans" / "split"; None = the manifest's default
    min_cluster_size: int | None = None  # None = the manifest's default (200 in the paper)
    # "native" (compiled core), "reference" (NumPy/hdbscan) or "auto": the clustering's and the
    # copy-move search's kernels (both give the same labels and masks either way)
    cluster_backend: str = "auto"
    threads: int | None = None  # CPU threads for ONNX Runtime; None = all cores
    mem_arena: bool = True  # ONNX Runtime's CPU arena: faster; off saves peak memory on big models
    batch_size: int = 1  # images per engine call (models with a dynamic batch axis)
    max_pixels: int = DEFAULT_MAX_PIXELS  # decode limit against decompression bombs
    exif_orientation: bool = True  # rotate as EXIF says, so masks match the picture as shown
    keep_features: bool = False  # keep each image's [h*w, D] features in its Result
    # detect_many: cluster batch i while batch i+1 is inferred: "auto" (= "on"), "on", "off"
    overlap_clustering: str = "auto"
    model_file: str | None = None  # an ONNX entry of the artifact by file name; None = the backend's choice
    verify: bool = True  # check the model file's sha256 against the manifest before running it (cached)
    # Also search each image for copy-moves (focal.runtime.copymove): a repeat the features cannot
    # see, since a copy carries its own image's traces. The mask is then the union of both.
    # None = as the artifact's manifest says (its "cues"; the embedded default has it on), True /
    # False = on / off for this run.
    copy_move: bool | None = None
    # Also look in each file for regions that missed the JPEG compression the rest went through,
    # or sit on another block grid (focal.runtime.doublejpeg, .jpeggrid): the traces most real edits
    # leave, which a network input at 512 px no longer holds. Needs the file's bytes (arrays carry no
    # JPEG header and may have been resampled); the mask is the union.
    # None = the manifest's "cues" (the embedded default has it on), True / False = on / off.
    double_jpeg: bool | None = None
    # Also give each image's heatmap (Result.heatmap): how unlike the pristine majority each pixel's
    # features are. It exists where the decision finds nothing (a forged region the features rank
    # high but HDBSCAN leaves as noise shows up), at the cost of one map at the image's size.
    heatmap: bool = False


@dataclass(frozen=True)
class Result:
    """One image's detection.

    Attributes:
        mask: ``[H, W]`` uint8 at the image's size, 255 = forged.
        labels: ``[h, w]`` uint8 at feature resolution, 1 = forged.
        score: image-level forgery score in ``[0, 1]``: the features' (0 when
            their clustering flags nothing), raised to at least 0.99 where the
            copy-move search or the double-JPEG cue found a region
            (:func:`focal.runtime.score.joined_score`).
        forged_fraction: share of mask pixels flagged, in ``[0, 1]``.
        timings: milliseconds per stage (``STAGES``); ``infer`` is this
            image's share of its batch's engine call.
        features: ``[h*w, D]`` float32 L2-normalised features when
            ``keep_features`` is set, else ``None``.
        path: the file it came from, if any.
        copy_move: under ``copy_move``, ``[H, W]`` uint8 mask of the
            copy-moves found (255 = source or target of a copy; already in
            ``mask``, and timed as ``timings["copy_move"]``), else ``None``.
            ``labels`` stay the features'.
        double_jpeg: under ``double_jpeg``, ``[H, W]`` uint8 mask of the
            regions that missed the file's first JPEG compression or sit on
            another 8 x 8 grid than the photo's (already in ``mask``; timed as
            ``timings["double_jpeg"]``, with the decode), all zero when the
            file gives evidence (a comb, or a grid of its own) but no such
            region; ``None`` when the cue is off or the input gives no
            evidence (an array, a picture that never was a JPEG).
        heatmap: under ``heatmap``, ``[H, W]`` float32 in ``[0, 1]``: each pixel's
            cosine distance to the pristine cluster's mean direction, halved
            (:func:`focal.runtime.postprocess.soft_map`; the features' only, the
            cues' masks are not in it; timed as ``timings["heatmap"]``), else ``None``.
    """

    mask: np.ndarray
    labels: np.ndarray
    score: float
    forged_fraction: float
    timings: dict[str, float]
    features: np.ndarray | None = None
    path: str | None = None
    copy_move: np.ndarray | None = None
    double_jpeg: np.ndarray | None = None
    heatmap: np.ndarray | None = None


@dataclass
class _Prepared:
    """An image decoded and preprocessed, waiting for the engine."""

    source: str | None
    height: int = 0
    width: int = 0
    tensors: list[np.ndarray] = field(default_factory=list)  # one [3, S, S] input per member
    geometry: Geometry | None = None  # "native" policy: where the image sits in the input; None = square
    error: Exception | None = None
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = None  # [H, W, 3] uint8, kept only for the copy-move search
    double_jpeg: np.ndarray | None = None  # [H, W] uint8 double-JPEG mask (see Result)


@dataclass(frozen=True)
class EncodedImage:
    """An image its caller decoded, with the file's bytes, for cues that read the file itself.

    ``focal-detect`` decodes each file itself (to capture decoder messages);
    under ``double_jpeg`` it hands the detector this, so the cue reads the
    header and blocks of the very bytes that were decoded.
    """

    pixels: np.ndarray  # [H, W, 3] uint8 RGB, as decoded (EXIF orientation as DetectorConfig says)
    data: bytes  # the file's bytes
    name: str  # the file's path, for messages and Result.path


def _check_item(item: object) -> None:
    """A clear ValueError for what can be neither read nor run, before OpenCV sees it."""
    if isinstance(item, EncodedImage):
        item = item.pixels
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8 or item.shape[0] == 0 or item.shape[1] == 0:
            raise ValueError(f"image array must be [H, W, 3] uint8 with H, W >= 1, got shape {item.shape} "
                             f"dtype {item.dtype}")
    elif not isinstance(item, (str, Path)):
        raise ValueError(f"image must be a file path or an [H, W, 3] uint8 array, got {type(item).__name__}")
    elif str(item) == "":
        raise ValueError("image path is empty")
    elif Path(item).is_dir():
        raise ValueError(f"{item}: is a folder, not an image file (focal-detect lists folders)")


class _Member:
    """One artifact's engine and the facts of its manifest."""

    def __init__(self, artifact: Path, cfg: DetectorConfig) -> None:
        self.artifact = artifact
        self.manifest: Manifest = load_manifest(artifact)
        spec = self.manifest.input
        if spec.color != "RGB" or abs(spec.scale - 1 / 255) > 1e-9 or spec.resize != "bilinear" or spec.keep_aspect:
            raise ValueError(
                f"{artifact}: preprocessing {spec.color}/scale {spec.scale}/{spec.resize}/keep_aspect "
                f"{spec.keep_aspect} is not one this runtime implements (RGB, 1/255, bilinear, stretched)"
            )
        self.backend = resolve_backend(cfg.backend, self.manifest, cfg.precision)
        try:
            if not cfg.verify:
                _log.warning("%s: model files not checked against the manifest (verify off)", artifact)
            engine = open_engine(artifact, self.manifest, self.backend, cfg.precision, cfg.threads, cfg.mem_arena,
                                 cfg.model_file, cfg.verify)
        except ProviderFallbackError as exc:
            if cfg.backend != "auto":
                raise  # a backend asked for by name that cannot run is an error, never a quiet CPU run
            # "auto" may settle for the CPU, and says so.
            _log.warning("backend auto: %s; running on the CPU provider", exc)
            self.backend = "cpu"
            engine = open_engine(artifact, self.manifest, "cpu", cfg.precision, cfg.threads, cfg.mem_arena,
                                 cfg.model_file, cfg.verify)
        self.engine = LockedEngine(engine)
        if self.manifest.source.get("random_weights"):
            _log.warning("%s: exported with random weights (--random-weights): its masks mean nothing", artifact)
        limit = self.manifest.input.max_batch
        # The TensorRT EP gets the same profile as the artifact's engines (engines.trt_ep_profile).
        if self.backend in ("tensorrt", "tensorrt-ep") and limit is not None and cfg.batch_size > limit:
            raise ValueError(f"{artifact}: batch_size {cfg.batch_size} is above the engine's profile maximum {limit} "
                             "(re-export with a larger --max-graph-batch, or lower --batch-size)")
        # A static batch axis takes exactly `batch` images per call; a dynamic one any number.
        self.static_batch = None if spec.dynamic_batch else int(spec.batch)

    @property
    def native(self) -> bool:
        """Whether the artifact keeps each image's aspect (``native`` policy)."""
        return self.manifest.input.policy == "native"

    def geometry(self, height: int, width: int) -> Geometry | None:
        """Where an image of that size sits in the input; None under the square policy."""
        spec = self.manifest.input
        return image_geometry(height, width, spec.policy, spec.size, self.manifest.members[0].stride,
                              spec.max_side, spec.max_points)

    def preprocess(self, image: np.ndarray, geometry: Geometry | None = None) -> np.ndarray:
        spec = self.manifest.input
        return network_input(image, spec.size, geometry, spec.mean, spec.std)

    def infer(self, tensors: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """``[B, 3, S, S]`` -> ``[B, D, h, w]``, padding or splitting to the model's batch rule.

        Under the ``native`` policy every image has its own shape and the
        result is a list of ``[D, h_i, w_i]`` maps, in input order. A graph
        with a dynamic batch axis runs the images of one shape together
        (``batch_size`` of them at most, which the constructor keeps within
        a TensorRT profile); a batch-1 graph runs each image alone.
        """
        name_in = self.engine.input_names[0]
        name_out = self.engine.output_names[0]
        if self.native:
            return self._infer_by_shape(tensors, name_in, name_out)
        if self.static_batch is None:
            return self.engine.infer({name_in: np.stack(tensors)})[name_out]
        outs = []
        step = self.static_batch
        for i in range(0, len(tensors), step):
            chunk = tensors[i : i + step]
            batch = np.stack(chunk + [chunk[-1]] * (step - len(chunk)))  # pad a short last batch
            outs.append(self.engine.infer({name_in: batch})[name_out][: len(chunk)])
        return np.concatenate(outs)

    def _infer_by_shape(self, tensors: list[np.ndarray], name_in: str, name_out: str) -> list[np.ndarray]:
        """``[3, H_i, W_i]`` inputs -> ``[D, h_i, w_i]`` maps in input order, one engine call per shape group."""
        step = len(tensors) if self.static_batch is None else 1
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(t.shape, []).append(i)  # dict order: the first image of each shape leads
        maps: list[np.ndarray | None] = [None] * len(tensors)
        for members in groups.values():
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                out = self.engine.infer({name_in: np.stack([tensors[i] for i in chunk])})[name_out]
                for i, m in zip(chunk, out):
                    maps[i] = m
        return maps  # type: ignore[return-value]


class Detector:
    """FOCAL forgery localization from an exported artifact, without torch.

    Args:
        artifact: folder with ``focal.json`` and the model files, or a list
            of such folders whose features are fused by the paper's rule
            (each member's map resized to the first one's with nearest
            interpolation, L2-normalised, concatenated; no retraining).
            ``None``: the model embedded in the package.
        config: run-time choices (:class:`DetectorConfig`); keyword
            arguments with the same names override its fields.

    Thread safety: ``__call__`` and :meth:`detect_many` may be called from
    several threads; engine calls are serialised (a TensorRT execution
    context is single-threaded and ONNX Runtime already uses every core).

    Raises:
        FileNotFoundError / ValueError: no artifact there, an invalid
            manifest, an unknown backend/precision/clustering, or a model
            the machine cannot run (the message says what to do).
    """

    def __init__(self, artifact: str | Path | list[str | Path] | None = None, config: DetectorConfig | None = None, **overrides: object) -> None:
        cfg = config or DetectorConfig()
        if overrides:
            cfg = DetectorConfig(**{**cfg.__dict__, **overrides})  # type: ignore[arg-type]
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {cfg.precision!r}; choose one of {PRECISIONS}")
        if cfg.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
        if cfg.overlap_clustering not in ("auto", "on", "off"):
            raise ValueError(f"overlap_clustering must be 'auto', 'on' or 'off', got {cfg.overlap_clustering!r}")
        if artifact is None or (isinstance(artifact, str) and artifact == "default"):
            artifact = default_artifact()  # "default" names it as focal-detect does
        paths = [Path(a) for a in ([artifact] if isinstance(artifact, (str, Path)) else artifact)]
        if not paths:
            raise ValueError("no artifact given")
        self.config = cfg
        if cfg.model_file is not None and len(paths) > 1:
            raise ValueError("model_file names one artifact's model; a fusion of several artifacts has no single one")
        self.members = [_Member(p, cfg) for p in paths]
        if len(self.members) > 1 and any(m.native for m in self.members):
            raise ValueError("a fusion of artifacts needs the 'square' input policy in each; "
                             f"{[str(m.artifact) for m in self.members if m.native]} use 'native'")
        self.artifact = paths[0]
        self.manifest: Manifest = self.members[0].manifest  # the first member sets size and defaults
        # From here on the config says plainly which cues run: the manifest's where the caller left None.
        cfg = self.config = self.manifest.settle_cues(cfg)
        self.clustering = cfg.clustering or self.manifest.clustering.method
        if self.clustering not in CLUSTER_METHODS:
            raise ValueError(f"unknown clustering {self.clustering!r}; choose one of {CLUSTER_METHODS}")
        self.min_cluster_size = int(cfg.min_cluster_size or self.manifest.clustering.min_cluster_size)
        # "split" keeps a k-means split only above the threshold fitted on this artifact's features.
        self.split_threshold = self.manifest.clustering.split_threshold
        if self.clustering == "split" and (self.split_threshold is None or len(self.members) > 1):
            self.close()
            why = ("a fusion of artifacts has none (each threshold belongs to one artifact's features)"
                   if len(self.members) > 1 else "fit one with focal-calibrate ARTIFACT --photos UNTOUCHED_PHOTOS")
            raise ValueError(f"{self.artifact}: clustering 'split' needs the artifact's split threshold: {why}")
        self.cluster_backend = resolve_cluster_backend(cfg.cluster_backend)  # which implementation runs
        self.backend = self.members[0].backend
        self.engine = self.members[0].engine

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the engines."""
        for member in self.members:
            member.engine.close()

    # -- stages ----------------------------------------------------------
    def _prepare(self, item: str | Path | np.ndarray | EncodedImage) -> _Prepared:
        """Decode (if a path) and preprocess one image, catching per-image errors."""
        source = item.name if isinstance(item, EncodedImage) else None if isinstance(item, np.ndarray) else str(item)
        prep = _Prepared(source=source)
        try:
            _check_item(item)
            t0 = time.perf_counter()
            data = None
            if isinstance(item, np.ndarray):
                image = item
            elif isinstance(item, EncodedImage):
                image, data = item.pixels, item.data
            else:  # the bytes are read once: the double-JPEG cue reads the same file's header and blocks
                data = read_bytes(item)
                image = decode_image(data, str(item), self.config.max_pixels, self.config.exif_orientation)
            t1 = time.perf_counter()
            dq_ms = None
            if data is not None and self.config.double_jpeg:
                prep.double_jpeg = double_jpeg_mask(data, image.shape[:2], self.config.exif_orientation, source,
                                                    self.config.max_pixels, colour=image)
                dq_ms = (time.perf_counter() - t1) * 1e3
            t2 = time.perf_counter()
            prep.height, prep.width = image.shape[:2]
            prep.geometry = self.members[0].geometry(prep.height, prep.width)
            prep.tensors = [m.preprocess(image, prep.geometry) for m in self.members]
            prep.timings = {"decode": (t1 - t0) * 1e3, "preprocess": (time.perf_counter() - t2) * 1e3}
            if dq_ms is not None:
                prep.timings["double_jpeg"] = dq_ms
            if self.config.copy_move:
                prep.image = image
        except (OSError, ValueError) as exc:
            prep.error = exc
        return prep

    def _infer(self, preps: list[_Prepared]) -> np.ndarray | list[np.ndarray]:
        """Feature maps of a batch, ``[B, D, h, w]`` (a list of maps under ``native``); several members are fused."""
        maps = [m.infer([p.tensors[k] for p in preps]) for k, m in enumerate(self.members)]
        return maps[0] if len(maps) == 1 else fuse_feature_maps(maps)

    def _finish(self, preps: list[_Prepared]) -> list[Result | Exception]:
        """Infer the good images of a batch together and localise each."""
        return self._localize(preps, *self._infer_good(preps))

    def _infer_good(self, preps: list[_Prepared]) -> tuple[np.ndarray | None, float]:
        """Feature maps of a batch's readable images, and the engine time per image (ms)."""
        good = [p for p in preps if p.error is None]
        if not good:
            return None, 0.0
        t0 = time.perf_counter()
        feats = self._infer(good)
        return feats, (time.perf_counter() - t0) * 1e3 / len(good)

    def _localize(self, preps: list[_Prepared], feats: np.ndarray | None, infer_ms: float) -> list[Result | Exception]:
        """Cluster, mask and score each readable image of a batch; errors stay in place."""
        results: list[Result | Exception] = []
        k = 0
        for p in preps:
            if p.error is not None:
                results.append(p.error)
                continue
            loc = localize(feats[k].astype(np.float32, copy=False), p.height, p.width, self.clustering,
                           self.min_cluster_size, self.cluster_backend, geometry=p.geometry,
                           split_threshold=self.split_threshold)
            k += 1
            timings = {**p.timings, "infer": infer_ms, "cluster": loc.cluster_ms, "postprocess": loc.post_ms}
            mask, fraction, copies = loc.mask, loc.forged_fraction, None
            if p.image is not None:
                t0 = time.perf_counter()
                copies = detect_copy_move(p.image, backend=self.cluster_backend)
                p.image = None  # the batch may be long: do not hold decoded images past their use
                timings["copy_move"] = (time.perf_counter() - t0) * 1e3
                mask = np.maximum(mask, copies)
            score = joined_score(loc.score, copies, CopyMoveConfig.false_alarm)
            if p.double_jpeg is not None:
                mask = np.maximum(mask, p.double_jpeg)
                score = joined_score(score, p.double_jpeg, DoubleJpegConfig.false_alarm)
            if copies is not None or p.double_jpeg is not None:
                fraction = float(np.count_nonzero(mask)) / mask.size
            heat = None
            if self.config.heatmap:
                t0 = time.perf_counter()
                heat = soft_map(loc.features, loc.labels, p.height, p.width, p.geometry)
                timings["heatmap"] = (time.perf_counter() - t0) * 1e3
            results.append(Result(
                mask=mask, labels=loc.labels, score=score, forged_fraction=fraction,
                timings=timings, features=loc.features if self.config.keep_features else None, path=p.source,
                copy_move=copies, double_jpeg=p.double_jpeg, heatmap=heat,
            ))
            p.double_jpeg = None
        return results

    # -- public API --------------------------------------------------------
    def geometry(self, height: int, width: int) -> Geometry | None:
        """Where an ``height x width`` image sits in the network input and its feature map.

        None under the ``square`` policy (the map covers the image whole);
        under ``native`` the plan that :func:`focal.runtime.postprocess.localize`
        needs to crop, pool and map back :meth:`feature_map`'s output.
        """
        return self.members[0].geometry(height, width)

    def feature_map(self, image: np.ndarray) -> np.ndarray:
        """The network's raw output for one image.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            ``[D, h, w]`` float32, not normalised (as the PyTorch
            reference's ``feature_map``). Under the ``native`` policy it
            covers the padded input: localise it with :meth:`geometry`.
        """
        prep = self._prepare(image)
        if prep.error is not None:
            raise prep.error
        return self._infer([prep])[0].astype(np.float32, copy=False)

    def __call__(self, image: str | Path | np.ndarray | EncodedImage) -> Result:
        """Detect forged regions in one image.

        Args:
            image: a file path, or an ``[H, W, 3]`` uint8 RGB array.

        Raises:
            ValueError / OSError: the file cannot be read or decoded (the message names it).
        """
        result = self._finish([self._prepare(image)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def detect_many(
        self, images: Iterable[str | Path | np.ndarray | EncodedImage], batch_size: int | None = None
    ) -> Iterator[Result | Exception]:
        """Detect on many images, in order, overlapping I/O with inference.

        A file that cannot be read yields its exception in its place and the
        run goes on. While a batch is in the engine, a worker thread decodes
        and preprocesses the next one (OpenCV and ONNX Runtime release the GIL).

        Args:
            images: paths, ``[H, W, 3]`` uint8 RGB arrays, or :class:`EncodedImage`.
            batch_size: images per engine call; default ``config.batch_size``.

        Yields:
            A :class:`Result` or the exception raised for that image.
        """
        size = int(batch_size or self.config.batch_size)
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        it = iter(images)

        def next_batch() -> list[_Prepared]:
            batch = []
            for item in it:
                batch.append(self._prepare(item))
                if len(batch) == size:
                    break
            return batch

        overlap = self._overlap_clustering()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="focal-prefetch") as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="focal-cluster") as clusterer:
            pending: Future[list[_Prepared]] = pool.submit(next_batch)
            localizing: Future[list[Result | Exception]] | None = None
            while True:
                batch = pending.result()
                if not batch:
                    break
                pending = pool.submit(next_batch)
                feats, infer_ms = self._infer_good(batch)
                if not overlap:
                    yield from self._localize(batch, feats, infer_ms)
                    continue
                # This batch's clustering runs while the next batch is in the
                # engine (the native core releases the GIL).
                if localizing is not None:
                    yield from localizing.result()
                localizing = clusterer.submit(self._localize, batch, feats, infer_ms)
            if localizing is not None:
                yield from localizing.result()

    def _overlap_clustering(self) -> bool:
        """Whether ``detect_many`` clusters one batch while the next is inferred.

        ``"auto"``: yes. On a GPU the CPU clustering hides behind the
        network; on CPU the stages share the cores, but Prim's loop runs on
        one thread and the network's threads fill the other core
        (docs/runtime.md, "Pipelining").
        """
        return self.config.overlap_clustering in ("auto", "on")
