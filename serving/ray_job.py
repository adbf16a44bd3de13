"""``focal-detect --ray``: batch detection on Ray Data, with the local run's outputs, journal and exit codes.

A dataset of the inputs (one row per image: its index in the run and the
absolute path of its file) goes through ``map_batches`` on a fixed pool of
actors, each holding one :class:`focal.runtime.Detector` built once. An
actor reads the image bytes itself (so the inputs must be visible to every
worker at the same path: shared storage on a cluster) and sends back the
mask and overlay as PNG bytes with the record's figures. The driver is the
one writer: it claims each output name, writes the files and appends the
record through :class:`focal.runtime.cli.RunRecorder`, the same code the
local run uses, so ``results.jsonl``, resume, the locks shared with
concurrent runs, the summary line and the exit status are those of
:func:`focal.runtime.cli.detect`.

Faults: an actor whose process dies is restarted by Ray (``max_restarts``)
and the batch it held is run again (``max_task_retries``); its results reach
the driver only once a batch is done, so nothing is written twice. A file
that cannot be read is a failed record, not a failed job.

Nothing here is imported by :mod:`focal.runtime`; ``ray`` is imported only
when a job runs.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from focal._progress import Progress
from focal.runtime.cli import (
    DetectConfig, DetectSummary, ImageOutputs, RunError, RunRecorder, SetupError, StderrCapture,
    decode_input, error_text, open_detector, plan_run, quiet_opencv, render_outputs, sigint_ignored,
)
from focal.runtime.default import default_artifact
from focal.runtime.inputs import DetectJob
from focal.runtime.detector import Result

__all__ = ["CRASH_ENV", "RAY_EXTRA", "RayConfig", "RayUnavailable", "detect_on_ray", "require_ray", "start_local_ray"]

RAY_EXTRA = "pip install 'focal[cpu,ray]'"
# Fault injection for the tests, off unless set: "FILE_NAME:MARKER_PATH" makes the actor that reads an
# input named FILE_NAME exit its process (os._exit) once; MARKER_PATH, created first, stops the retry
# from dying again. Read on the driver and handed to the actors, so it works whatever their environment.
CRASH_ENV = "FOCAL_RAY_CRASH_ONCE"
# Tasks (blocks) per job at most: enough to balance a pool, few enough to keep Ray's bookkeeping small.
_MAX_BLOCKS = 2048
# Ray binds its servers to the node's address; with this set to 0 the node's address is the loopback one
# (ray._private.services.get_node_ip_address). Read by `ray` at import and by the processes it starts.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_GPU_BACKENDS = ("cuda", "tensorrt", "tensorrt-ep")
_CONNECT_TIMEOUT_S = 5.0


class RayUnavailable(SetupError):
    """Ray Data is not installed (the message names the extra); exit 2."""


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide a ``focal-detect --ray`` job runs."""

    # None: a Ray instance started for the job on this machine (loopback only, no dashboard), shut down
    # after; "auto", "HOST:PORT" or "ray://HOST:10001": an existing cluster, passed to ray.init unchanged.
    # A Ray already initialised in this process is used as it is.
    address: str | None = None
    actors: int = 2  # fixed actor pool size, one Detector each
    cpus_per_actor: float = 1.0  # Ray CPUs per actor; also ONNX Runtime's threads unless --threads says
    gpus_per_actor: float = 0.0  # Ray GPUs per actor (> 0 needs a GPU backend: cuda, tensorrt, tensorrt-ep)
    max_restarts: int = 3  # times Ray restarts an actor whose process died (-1: no limit)
    max_task_retries: int = 3  # times Ray re-runs a batch whose actor died (-1: no limit)
    local_cpus: int | None = None  # CPUs of the instance started for the job; None: the machine's
    progress_bars: bool = False  # Ray Data's own bars; the driver's progress line is always there

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ValueError(f"actors must be >= 1, got {self.actors}")
        if not self.cpus_per_actor > 0:
            raise ValueError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        if self.gpus_per_actor < 0:
            raise ValueError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor}")
        for name in ("max_restarts", "max_task_retries"):
            if getattr(self, name) < -1:
                raise ValueError(f"{name} must be >= -1 (-1: no limit), got {getattr(self, name)}")
        if self.local_cpus is not None and self.local_cpus < 1:
            raise ValueError(f"local_cpus must be >= 1, got {self.local_cpus}")


def require_ray() -> ModuleType:
    """Imports Ray with Ray Data.

    Raises:
        RayUnavailable: ``ray[data]`` is not installed (the message says how to install it).
    """
    try:
        import ray
        import ray.data  # noqa: F401  (``ray`` without the data extra lacks pyarrow/pandas)
    except ImportError as exc:
        raise RayUnavailable(f"--ray needs Ray Data ({exc}): {RAY_EXTRA}") from None
    return ray


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Starts a Ray instance in this process, reachable on the loopback interface only, without dashboard.

    Args:
        num_cpus: CPUs Ray may schedule on; None: the machine's.
        num_gpus: GPUs Ray may schedule on; None: those it finds.
    """
    previous = os.environ.get(_LOOPBACK_ENV)
    os.environ[_LOOPBACK_ENV] = "0"  # before `import ray`, and for the raylet and workers it starts
    try:
        ray = require_ray()
        from ray._private import ray_constants

        # Ray may have been imported before the variable was set.
        saved, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
        try:
            # address "local": a new instance even where RAY_ADDRESS names a cluster.
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     _node_ip_address="127.0.0.1")
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = saved
    finally:
        if previous is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = previous


def _check_reachable(address: str) -> None:
    """Fails in seconds where nothing listens at an address's HOST:PORT (``ray.init`` would retry for minutes).

    Raises:
        SetupError: the connection is refused or times out.
    """
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "ray://HOST" (default port): Ray resolves and reports those itself
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SetupError(f"--ray {address}: no Ray cluster answers at {host}:{port} "
                         f"({exc.strerror or type(exc).__name__})") from None


@contextmanager
def _ray_session(ray_cfg: RayConfig) -> Iterator[None]:
    """Ray for the job: the one already initialised, a local instance, or the cluster at ``address``."""
    ray = require_ray()
    if ray_cfg.address is not None:
        _check_reachable(ray_cfg.address)  # even where Ray is up already: an address nothing answers is a typo
    if ray.is_initialized():
        yield
        return
    if ray_cfg.address is None:
        try:
            start_local_ray(ray_cfg.local_cpus)
        except (ConnectionError, RuntimeError, OSError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SetupError(f"--ray: cannot start a local Ray instance ({text})") from None
    else:
        try:
            ray.init(address=ray_cfg.address)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SetupError(f"--ray {ray_cfg.address}: cannot connect to the Ray cluster ({text})") from None
    try:
        yield
    finally:
        ray.shutdown()


# -- the actors --------------------------------------------------------------
# One output row per input row; numbers in their own dtypes, the rest as object columns (bytes, str).
_COLUMNS = ("index", "error", "notes", "mask_png", "overlay_png", "score", "forged_fraction", "height",
            "width", "timings", "copy_move", "double_jpeg", "heatmap_png")


def _on_worker(cfg: DetectConfig) -> DetectConfig:
    """The run as a worker sees it: the embedded default model is the worker's own copy of the package's."""
    return replace(cfg, artifact=default_artifact()) if cfg.default_model else cfg


def _check_model(cfg: DetectConfig) -> tuple[bool, str]:
    """Opens the model where an actor would (same resources) and closes it again.

    Returns:
        ``(True, the line saying what runs)`` or ``(False, the one-line error)``: returned, not raised,
        so the driver gets the message without a Ray traceback around it.
    """
    quiet_opencv()
    try:
        det, line = open_detector(_on_worker(cfg))
    except SetupError as exc:
        return False, str(exc)
    det.close()
    return True, line


class _DetectorActor:
    """A Ray Data callable class: one Detector for the actor's life, batches of input rows in, outputs out.

    Args:
        cfg: the run (its artifact and detector options; the paths are the driver's).
        crash: ``(file name, marker path)`` of the fault-injection hook (:data:`CRASH_ENV`), or None.
    """

    def __init__(self, cfg: DetectConfig, crash: tuple[str, str] | None = None) -> None:
        quiet_opencv()
        self.det, _ = open_detector(_on_worker(cfg))
        self.options = self.det.config  # the cues settled against the artifact's manifest
        self.err = StderrCapture()
        self.crash = crash

    def _maybe_crash(self, source: Path) -> None:
        if self.crash is None or source.name != self.crash[0]:
            return
        try:
            os.close(os.open(self.crash[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return  # died here once already: this is the retry
        os._exit(1)  # the process dies as if killed: no exception, no clean-up

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Detects one batch.

        Args:
            batch: ``{"index": [N] int64, "source": [N] object (str, absolute paths)}``.

        Returns:
            The columns of :data:`_COLUMNS`, ``[N]`` each: ``error`` is "" when the image is done, else
            the message without the path; ``notes`` a JSON list of decoder messages; ``mask_png`` /
            ``overlay_png`` PNG bytes (empty on error); ``score`` and ``forged_fraction`` float64 in
            ``[0, 1]``; ``height`` / ``width`` int64; ``timings`` a JSON object of ms per stage;
            ``copy_move`` JSON ``true``/``false`` under ``--copy-move``, else ``null``; ``double_jpeg``
            likewise under ``--double-jpeg`` (``null`` also for a file without the trace);
            ``heatmap_png`` PNG bytes under ``--heatmap``, else empty.
        """
        jobs = [DetectJob(Path(str(s)), "") for s in batch["source"]]
        decoded = []
        for job in jobs:
            self._maybe_crash(job.source)
            t0 = time.perf_counter()
            image, error, notes = decode_input(job, self.options, self.err)
            decoded.append((image, error, notes, (time.perf_counter() - t0) * 1e3))
        results = iter(self.det.detect_many([d[0] for d in decoded if d[0] is not None]))
        rows: dict[str, list] = {name: [] for name in _COLUMNS}
        for job, (image, error, notes, decode_ms) in zip(jobs, decoded):
            out: ImageOutputs | Exception | str
            if image is None:
                out = error or "unreadable"
            else:
                result = next(results)
                if isinstance(result, Result):  # the detector got an array: the decode was ours (as locally)
                    result = replace(result, timings={**result.timings, "decode": decode_ms})
                    out = render_outputs(job, result, self.options, self.err, image=image)
                else:
                    out = result
            ok = isinstance(out, ImageOutputs)
            rows["error"].append("" if ok else error_text(str(out), job.source) or type(out).__name__)
            rows["notes"].append(json.dumps(notes))
            rows["mask_png"].append(out.mask_png if ok else b"")
            rows["overlay_png"].append(out.overlay_png if ok else b"")
            rows["score"].append(out.score if ok else 0.0)
            rows["forged_fraction"].append(out.forged_fraction if ok else 0.0)
            rows["height"].append(out.height if ok else 0)
            rows["width"].append(out.width if ok else 0)
            rows["timings"].append(json.dumps(out.timings if ok else {}))
            rows["copy_move"].append(json.dumps(out.copy_move if ok else None))
            rows["double_jpeg"].append(json.dumps(out.double_jpeg if ok else None))
            rows["heatmap_png"].append((out.heatmap_png or b"") if ok else b"")
        rows["index"] = list(batch["index"])
        numeric = {"index": np.int64, "score": np.float64, "forged_fraction": np.float64, "height": np.int64,
                   "width": np.int64}
        return {name: np.array(values, dtype=numeric.get(name, object)) for name, values in rows.items()}


def _outcome(row: dict) -> tuple[ImageOutputs | str, list[str]]:
    """An output row back into what :meth:`RunRecorder.finish` takes: (outputs or error, decoder messages)."""
    notes = json.loads(row["notes"])
    if row["error"]:
        return str(row["error"]), notes
    return ImageOutputs(
        mask_png=bytes(row["mask_png"]), overlay_png=bytes(row["overlay_png"]),
        score=float(row["score"]), forged_fraction=float(row["forged_fraction"]),
        height=int(row["height"]), width=int(row["width"]), timings=json.loads(row["timings"]),
        copy_move=json.loads(row["copy_move"]),
        double_jpeg=json.loads(row["double_jpeg"]),
        heatmap_png=bytes(row["heatmap_png"]) or None,
    ), notes


# -- the job -----------------------------------------------------------------
def _actor_config(cfg: DetectConfig, ray_cfg: RayConfig) -> DetectConfig:
    """The run as an actor sees it: ONNX Runtime's threads follow the actor's CPUs unless set."""
    threads = cfg.detector.threads or max(1, math.floor(ray_cfg.cpus_per_actor))
    return replace(cfg, detector=replace(cfg.detector, threads=threads))


def _check_resources(cfg: DetectConfig, ray_cfg: RayConfig) -> None:
    """A GPU actor runs a GPU backend and a GPU backend gets a GPU: nothing falls back to the CPU unseen."""
    backend = cfg.detector.backend
    if ray_cfg.gpus_per_actor > 0 and backend not in _GPU_BACKENDS:
        raise SetupError(f"--gpus-per-actor {ray_cfg.gpus_per_actor:g} needs --backend cuda, tensorrt or "
                         f"tensorrt-ep (got {backend}; 'auto' could run on the CPU without saying so)")
    if backend in _GPU_BACKENDS and ray_cfg.gpus_per_actor <= 0:
        raise SetupError(f"--backend {backend} on Ray needs --gpus-per-actor > 0 "
                         "(an actor without a GPU sees no CUDA device)")


def _remote_args(ray_cfg: RayConfig) -> dict:
    args: dict = {"num_cpus": ray_cfg.cpus_per_actor}
    if ray_cfg.gpus_per_actor > 0:
        args["num_gpus"] = ray_cfg.gpus_per_actor
    return args


def _open_model_line(ray, cfg: DetectConfig, ray_cfg: RayConfig) -> str:
    """Opens the model once in a Ray task with an actor's resources, before any work.

    Raises:
        SetupError: the model cannot be opened there (exit 2, as locally).
    """
    task = ray.remote(max_retries=0, **_remote_args(ray_cfg))(_check_model)
    ok, text = ray.get(task.remote(cfg))
    if not ok:
        raise SetupError(text)
    return f"{text} [Ray: {ray_cfg.actors} actor(s) x {ray_cfg.cpus_per_actor:g} CPU, {ray_cfg.gpus_per_actor:g} GPU]"


def _crash_hook() -> tuple[str, str] | None:
    value = os.environ.get(CRASH_ENV)
    if not value:
        return None
    name, sep, marker = value.partition(":")
    if not sep or not name or not marker:
        raise SetupError(f"{CRASH_ENV}={value!r}: expected FILE_NAME:MARKER_PATH")
    return name, marker


def _map(ray, ds, cfg: DetectConfig, ray_cfg: RayConfig, crash: tuple[str, str] | None):
    """The actor-pool stage: rows of inputs in, rows of :data:`_COLUMNS` out."""
    return ds.map_batches(
        _DetectorActor,
        batch_size=cfg.detector.batch_size,  # one actor call = one engine batch
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=ray_cfg.actors),
        fn_constructor_kwargs={"cfg": cfg, "crash": crash},
        # Ray restarts a dead actor and re-runs its batch. Ray Data's defaults are -1 (no limit); a file
        # that kills every decoder would loop forever, so the job bounds both.
        max_restarts=ray_cfg.max_restarts,
        max_task_retries=ray_cfg.max_task_retries,
        **_remote_args(ray_cfg),
    )


def _run_rows(ray, recorder: RunRecorder, jobs: list[DetectJob], cfg: DetectConfig, ray_cfg: RayConfig,
              crash: tuple[str, str] | None) -> None:
    """Runs ``jobs`` on the actor pool; the driver records each result as it comes back."""
    items = [{"index": i, "source": os.path.abspath(job.source)} for i, job in enumerate(jobs)]
    per_block = max(cfg.detector.batch_size, math.ceil(len(items) / _MAX_BLOCKS))
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars
    context.enable_progress_bars = ray_cfg.progress_bars  # copied into the dataset when it is made
    try:
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / per_block))
        with warnings.catch_warnings():
            # Up to Ray 2.63 the pool's restart limits go through **ray_remote_args, deprecated since 2.60
            # and due to go in 2.64 (hence the extra's upper bound); there is no other way to set them.
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            ds = _map(ray, ds, cfg, ray_cfg, crash)
    finally:
        context.enable_progress_bars = saved
    rows = iter(ds.iter_rows())
    seen: set[int] = set()
    try:
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except Exception as exc:  # Ray's errors (actors out of restarts, a node lost) derive from Exception
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise RunError(f"the Ray job failed ({type(exc).__name__}: {text})") from None
            index = int(row["index"])
            if index in seen:  # a retried batch's rows, should Ray ever deliver one twice
                continue
            seen.add(index)
            taken = recorder.take(jobs[index], wait=True)
            if taken is not None:
                recorder.finish(taken, *_outcome(row))
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


def detect_on_ray(inputs: list[str], cfg: DetectConfig, ray_cfg: RayConfig | None = None) -> DetectSummary:
    """:func:`focal.runtime.cli.detect` with the detection on a Ray Data actor pool.

    Writes exactly what the local run writes into ``cfg.out``: ``NAME.mask.png``,
    ``NAME.overlay.png`` and one ``results.jsonl`` record per image, skipping
    images already done (unless ``cfg.overwrite``). Several runs, local or on
    Ray, may share the folder: each image is written and recorded once (a
    concurrent run may compute it twice; the driver claims its name only when
    its result is back).

    Args:
        inputs: files, folders and globs, as paths the Ray workers can read (shared storage on a cluster).
        cfg: the run, as for the local CLI.
        ray_cfg: where and how wide (:class:`RayConfig`); default a local instance with 2 actors.

    Returns:
        What the run did; ``interrupted`` after Ctrl-C.

    Raises:
        SetupError: bad options, no Ray, no cluster at the address, or a model the actors cannot open
            (nothing was processed).
        RunError: the Ray job failed part-way (what is done is kept; a re-run goes on from there).
    """
    ray_cfg = ray_cfg or RayConfig()
    _check_resources(cfg, ray_cfg)
    crash = _crash_hook()
    ray = require_ray()
    plan = plan_run(inputs, cfg)
    if not plan.pending:
        plan.abandon()
        return plan.summary()
    actor_cfg = _actor_config(cfg, ray_cfg)
    stdout = sys.stdout  # the records' (--json); Ray prints its raylet messages on sys.stdout: they go to stderr
    with ExitStack() as stack:
        stack.enter_context(redirect_stdout(sys.stderr))
        try:
            stack.enter_context(_ray_session(ray_cfg))
            line = _open_model_line(ray, actor_cfg, ray_cfg)
        except (SetupError, KeyboardInterrupt):
            plan.abandon()
            raise
        plan.err.print(line)
        recorder = RunRecorder(cfg, plan.err, plan.counts, plan.settings, stdout=stdout)
        recorder.progress = Progress(len(plan.pending), "detect", stream=sys.stderr)
        try:
            # Inputs known bad without reading them (dangling symlinks) are recorded here.
            for job in [j for j in plan.pending if j.error is not None]:
                taken = recorder.take(job, wait=True)
                if taken is not None:
                    recorder.finish(taken, taken.error, [])
            readable = [j for j in plan.pending if j.error is None]
            if readable:
                _run_rows(ray, recorder, readable, actor_cfg, ray_cfg, crash)
            recorder.end_progress()
        except KeyboardInterrupt:
            recorder.interrupted = True
        finally:
            with sigint_ignored():  # a second Ctrl-C must not cut the clean-up short
                recorder.close()
                plan.err.close()
    return plan.summary(recorder.interrupted)
