"""``focal-detect``: forgery masks, overlays and scores for files, folders and globs.

    focal-detect [ARTIFACT | default] INPUT... --out DIR [options]

For each image it writes ``OUT/NAME.mask.png`` (255 = forged),
``OUT/NAME.overlay.png`` (the mask tinted over the image), under
``--heatmap`` ``OUT/NAME.heatmap.png`` (the features' forgery map, on one
fixed colour scale), and appends one line to ``OUT/results.jsonl`` (the run
journal, :mod:`focal.runtime.journal`).
``NAME`` is the input's path relative to its root, suffix kept: a folder
input's files keep their path inside it (``sub/a.png`` ->
``sub/a.png.mask.png``), files named explicitly or matched by a glob their
file name; two different files with one name get a short hash of their
resolved path in the second one's name (``a-1f3e5c2b.jpg``). Names never
depend on the order files are found, so adding files never renames outputs.

The first positional is the artifact when it is ``default`` or a folder
with ``focal.json``; otherwise every positional is an input and the
embedded default model runs, except that a first positional which cannot
be an input meant as one is an error (exit 2): a path that does not exist
when more positionals follow, a folder or file holding model files but no
``focal.json``, or a folder without images when more positionals follow.

The ``focal-detect`` console script is :mod:`focal.serving.detect_cli`: this
module's parser and run, plus ``--ray`` (the same outputs from a Ray Data job,
built on :func:`plan_run`, :class:`RunRecorder` and :func:`render_outputs`
here); the runtime itself never imports it.

Exit status: 0 every input done; 1 some inputs failed (each one reported on
its line and on stderr); 2 a usage, artifact or output-folder error, found
before any work; 130 interrupted (finished images are kept; a re-run goes
on from there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from focal._cli import (
    add_artifact, add_backend, add_batch_size, add_clustering, add_copy_move, add_double_jpeg, add_json, add_min_cluster_size,
    add_precision, make_parser, positive_int,
)
from focal._files import list_images, write_atomic
from focal._progress import Progress
from focal.runtime.default import default_artifact
from focal.runtime.detector import Detector, DetectorConfig, EncodedImage, Result
from focal.runtime.imageio import decode_image, read_bytes, read_image
from focal.runtime.integrity import IntegrityError
from focal.runtime.inputs import DetectJob, collect_inputs
from focal.runtime.journal import JOURNAL_NAME, Journal, RunLock, read_journal_state
from focal.runtime.manifest import MANIFEST_NAME, load_manifest
from focal.runtime.render import heatmap, overlay

RESULTS_NAME = JOURNAL_NAME
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Files that mark a folder (or name a file) meant as an artifact, not as images.
_MODEL_SUFFIXES = frozenset({".onnx", ".engine", ".plan", ".trt"})
_GLOB_MAGIC = re.compile(r"[*?[]")


class SetupError(Exception):
    """A usage, artifact or output-folder problem found before any work (exit 2); the message is one line."""


@dataclass(frozen=True)
class DetectSummary:
    """What a run did (the closing line on stderr)."""

    done: int  # images detected and written
    flagged: int  # of those, with a non-empty mask
    failed: int  # inputs that failed (unreadable files, inputs that matched nothing)
    skipped: int  # already done, by an earlier or a concurrent run
    seconds: float  # wall time of the run
    interrupted: bool = False  # Ctrl-C: what is done is kept

    def line(self) -> str:
        head = "interrupted, " if self.interrupted else ""
        tail = "; re-run to finish" if self.interrupted else ""
        return (f"focal-detect: {head}{self.done} done ({self.flagged} flagged), {self.failed} failed, "
                f"{self.skipped} skipped as already done, in {self.seconds:.1f}s{tail}")

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK


# -- outputs -----------------------------------------------------------------
def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def error_text(message: str, source: Path) -> str:
    """The error text without the leading ``PATH: `` the readers put there (the line names the file once)."""
    prefix = f"{source}: "
    return message[len(prefix):] if message.startswith(prefix) else message


@dataclass(frozen=True)
class ImageOutputs:
    """One detected image's files, encoded, and the figures of its record; made where it was detected.

    The local run makes it in-process; ``focal-detect --ray`` in a Ray actor,
    which sends it to the driver (the one writer of files and journal).
    """

    mask_png: bytes  # PNG of the [H, W] uint8 mask, 255 = forged
    overlay_png: bytes  # PNG of the [H, W, 3] mask-tinted image
    score: float  # image-level score in [0, 1]
    forged_fraction: float  # share of mask pixels flagged, in [0, 1]
    height: int  # image rows (H)
    width: int  # image columns (W)
    timings: dict[str, float]  # ms per stage (focal.runtime.detector.STAGES, + "copy_move" when searched)
    copy_move: bool | None = None  # under --copy-move: whether a copy-move was found; None: not searched
    # under --double-jpeg: whether a region missed the first compression; None: off, or no evidence
    double_jpeg: bool | None = None
    heatmap_png: bytes | None = None  # under --heatmap: PNG of the [H, W, 3] coloured forgery map


def render_outputs(job: DetectJob, result: Result, cfg: DetectorConfig, err: StderrCapture,
                   image: np.ndarray | EncodedImage | None = None) -> ImageOutputs | Exception:
    """Encodes one result's mask and overlay as PNG.

    Args:
        job: the input (its ``source`` is re-read for the overlay when ``image`` is not given).
        result: its detection.
        cfg: the decode options (as for the detection).
        err: where decoder messages of the re-read go.
        image: the decoded ``[H, W, 3]`` uint8 RGB image, if still at hand.

    Returns:
        The outputs, or the exception that stopped them (the file changed or vanished since: a failed record).
    """
    try:
        if image is None:
            # Re-decoding for the overlay keeps the run's memory flat on big images.
            image, error, _ = decode_input(job, cfg, err)
            if image is None:
                raise ValueError(error)
        if isinstance(image, EncodedImage):
            image = image.pixels
        return ImageOutputs(
            mask_png=_png(result.mask), overlay_png=_png(overlay(image, result.mask)[:, :, ::-1]),
            score=result.score, forged_fraction=result.forged_fraction,
            height=int(result.mask.shape[0]), width=int(result.mask.shape[1]), timings=dict(result.timings),
            copy_move=None if result.copy_move is None else bool(result.copy_move.any()),
            double_jpeg=None if result.double_jpeg is None else bool(result.double_jpeg.any()),
            heatmap_png=None if result.heatmap is None else _png(heatmap(result.heatmap)[:, :, ::-1]),
        )
    except (OSError, ValueError) as exc:
        return exc


def record_settings(cfg: DetectConfig) -> dict | None:
    """What a record's mask depends on, settled against the artifact's manifest.

    A run resumed into a folder skips only images done under the same
    settings, and redoes the others: the model (its manifest's sha256, first
    16 hex digits), the precision or model file, the clustering and its
    minimum cluster size, the cues and the EXIF rotation. The engine backend
    is left out on purpose: CPU, CUDA and TensorRT run the same model.

    Returns:
        The settings (a JSON-ready dict, stored as each record's
        ``"settings"``), or ``None`` when the artifact cannot be read: the
        run then treats no image as done, and the model's own loading
        reports the problem.
    """
    try:
        manifest = load_manifest(cfg.artifact)
        digest = hashlib.sha256((cfg.artifact / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
    except (OSError, ValueError):
        return None
    d = manifest.settle_cues(cfg.detector)
    return {
        "model": digest,
        "precision": d.model_file or d.precision,
        "clustering": d.clustering or manifest.clustering.method,
        "min_cluster_size": int(d.min_cluster_size or manifest.clustering.min_cluster_size),
        "copy_move": bool(d.copy_move),
        "double_jpeg": bool(d.double_jpeg),
        "exif_orientation": bool(d.exif_orientation),
    }


def _record(job: DetectJob, result: ImageOutputs | Exception | str, notes: list[str],
            settings: dict | None = None) -> dict:
    rec: dict = {"path": job.path}
    if isinstance(result, (Exception, str)):
        rec["error"] = error_text(str(result), job.source)
    else:
        rec.update({
            "mask": f"{job.key}.mask.png",
            "overlay": f"{job.key}.overlay.png",
            "score": round(result.score, 6),
            "forged_fraction": round(result.forged_fraction, 6),
            "height": result.height,
            "width": result.width,
            "timings_ms": {k: round(v, 3) for k, v in result.timings.items()},
            "error": None,
        })
        if result.copy_move is not None:
            rec["copy_move"] = result.copy_move
        if result.double_jpeg is not None:
            rec["double_jpeg"] = result.double_jpeg
        if result.heatmap_png is not None:
            rec["heatmap"] = f"{job.key}.heatmap.png"
        if settings is not None:
            rec["settings"] = settings
    if notes:
        rec["decoder_messages"] = notes
    return rec


def _is_written(job: DetectJob, rec: dict | None, out: Path) -> bool:
    """Whether the image's last record is good, names this job's outputs, and they exist."""
    return (
        rec is not None and rec.get("error") is None and rec.get("mask") == f"{job.key}.mask.png"
        and (out / f"{job.key}.mask.png").is_file() and (out / f"{job.key}.overlay.png").is_file()
        and ("heatmap" not in rec or (out / f"{job.key}.heatmap.png").is_file())
    )


def _same_settings(rec: dict, settings: dict | None) -> bool:
    """Whether a record was made under ``settings`` (records of versions before settings were kept count as made
    under them: there is nothing to compare)."""
    return settings is not None and rec.get("settings", settings) == settings


def _has_heatmap(job: DetectJob, rec: dict) -> bool:
    """Whether the record names this job's heatmap (:func:`_is_written` checks that the file exists)."""
    return rec.get("heatmap") == f"{job.key}.heatmap.png"


def _is_done(job: DetectJob, rec: dict | None, out: Path, settings: dict | None, heatmap: bool = False) -> bool:
    """An image is done when its outputs are written (:func:`_is_written`) under this run's settings,
    with a heatmap when the run asks for one (a heatmap is no setting of the mask: a run without
    ``--heatmap`` skips images done with one)."""
    return _is_written(job, rec, out) and _same_settings(rec, settings) and (not heatmap or _has_heatmap(job, rec))


class StderrCapture:
    """Decoder messages written to fd 2 by C libraries (libpng, libtiff, OpenCV), tied to the file being read.

    While a file decodes, fd 2 points at a temporary file (no pipe, so a
    chatty decoder cannot block); the captured text joins that file's
    record. Every line this tool prints takes the same lock, so its own
    lines never land in a capture.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._buf = tempfile.TemporaryFile()

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        notes: list[str] = []
        with self.lock:
            sys.stderr.flush()
            fd = self._buf.fileno()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            saved = os.dup(2)
            os.dup2(fd, 2)
            try:
                yield notes
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                size = os.fstat(fd).st_size
                text = os.pread(fd, min(size, 4096), 0).decode(errors="replace")
                notes.extend(line.strip()[:300] for line in text.splitlines() if line.strip())
                del notes[5:]

    def print(self, text: str) -> None:
        with self.lock:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self._buf.close()


# -- the run -----------------------------------------------------------------
@dataclass(frozen=True)
class DetectConfig:
    """Everything ``focal-detect`` was asked to do."""

    artifact: Path  # artifact folder
    out: Path  # output folder
    detector: DetectorConfig  # engine, precision, clustering, batch
    overwrite: bool = False  # redo images done by earlier runs
    json_stdout: bool = False  # print each record as JSON on stdout
    default_model: bool = False  # the artifact is the embedded default (said so on stderr)


def _prepare_out(out: Path, inputs: list[str]) -> list[Path]:
    """Checks the output folder before any work: not an input folder, creatable, writable.

    Returns:
        The folders this call created (removed again if the run stops before any work).

    Raises:
        SetupError: the folder is an input folder, cannot be created, or cannot be written.
    """
    out_res = out.resolve()
    for item in inputs:
        if Path(item).is_dir() and Path(item).resolve().is_relative_to(out_res):
            what = "is" if Path(item).resolve() == out_res else "holds"
            raise SetupError(f"--out {out} {what} the input folder {item}; outputs would be read as inputs: "
                             "choose another folder")
    created = [p for p in [out, *out.parents] if not p.exists() and not p.is_symlink()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SetupError(f"--out {out}: exists and is not a folder") from None
    except NotADirectoryError:
        raise SetupError(f"--out {out}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise SetupError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    probe = out / f".focal-detect-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        _remove_created(created)
        raise SetupError(f"--out {out}: cannot write in the folder ({exc.strerror or exc})") from None
    return created


def _remove_created(created: list[Path]) -> None:
    for folder in created:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            break


def decode_input(job: DetectJob, cfg: DetectorConfig,
                 err: StderrCapture) -> tuple[np.ndarray | EncodedImage | None, str | None, list[str]]:
    """Reads one input with its decoder messages captured: (image, error, messages).

    The image is the ``[H, W, 3]`` uint8 array, or under ``double_jpeg`` an
    :class:`EncodedImage` holding it with the file's bytes (the cue reads them).
    """
    with err.capture() as notes:
        try:
            if cfg.double_jpeg:
                data = read_bytes(job.source)
                pixels = decode_image(data, str(job.source), cfg.max_pixels, cfg.exif_orientation)
                return EncodedImage(pixels, data, str(job.source)), None, notes
            image = read_image(job.source, max_pixels=cfg.max_pixels, apply_orientation=cfg.exif_orientation)
            return image, None, notes
        except (OSError, ValueError) as exc:
            return None, str(exc), notes


@dataclass
class RunPlan:
    """What a run found to do before any work: shared by the local run and ``focal-detect --ray``."""

    pending: list[DetectJob]  # inputs not done yet, in a stable order
    counts: dict[str, int]  # "done", "flagged", "failed", "skipped" so far (unmatched inputs are failed)
    err: StderrCapture  # the run's stderr (decoder capture and its own lines)
    created: list[Path]  # folders made for --out (removed again if the run stops before any work)
    start: float  # time.perf_counter() at the start
    settings: dict | None  # record_settings(cfg): what this run's records store and resume compares

    def summary(self, interrupted: bool = False) -> DetectSummary:
        return DetectSummary(**self.counts, seconds=time.perf_counter() - self.start, interrupted=interrupted)

    def abandon(self) -> None:
        """Undoes the plan when the run stops before any work (the folders it made go again)."""
        _remove_created(self.created)
        self.err.close()


def plan_run(inputs: list[str], cfg: DetectConfig) -> RunPlan:
    """Checks the out folder, lists the inputs, and leaves out those already done.

    Raises:
        SetupError: the output folder cannot be used (nothing was processed).
    """
    t0 = time.perf_counter()
    created = _prepare_out(cfg.out, inputs)
    state, owners = read_journal_state(cfg.out / RESULTS_NAME)
    jobs, unmatched = collect_inputs(inputs, cfg.out, owners)
    err = StderrCapture()
    for item in unmatched:
        err.print(f"focal-detect: {item}: no such file, folder or matching image")
    settings = record_settings(cfg)
    heat = cfg.detector.heatmap
    pending = [j for j in jobs if cfg.overwrite or not _is_done(j, state.get(j.path), cfg.out, settings, heat)]
    counts = {"done": 0, "flagged": 0, "failed": len(unmatched), "skipped": len(jobs) - len(pending)}
    if counts["skipped"]:
        err.print(f"focal-detect: {counts['skipped']} image(s) already done in {cfg.out} (use --overwrite to redo)")
    other = [state[j.path]["settings"] for j in pending if not cfg.overwrite and settings is not None
             and _is_written(j, state.get(j.path), cfg.out) and not _same_settings(state[j.path], settings)]
    if other:  # a resumed run never mixes masks made under different settings without saying so
        changed = sorted({k for o in other for k in settings if o.get(k) != settings[k]})
        err.print(f"focal-detect: {len(other)} image(s) in {cfg.out} were done under other settings "
                  f"({', '.join(changed)}): redoing them")
    unheated = [j for j in pending if heat and not cfg.overwrite and _is_done(j, state.get(j.path), cfg.out, settings)]
    if unheated:
        err.print(f"focal-detect: {len(unheated)} image(s) in {cfg.out} were done without a heatmap: redoing them")
    return RunPlan(pending, counts, err, created, t0, settings)


def open_detector(cfg: DetectConfig) -> tuple[Detector, str]:
    """The run's detector and the stderr line that says which model runs on which engine.

    Raises:
        SetupError: the model cannot be opened (the message is one line).
    """
    try:
        det = Detector(cfg.artifact, cfg.detector)
    except Exception as exc:  # ONNX Runtime's own errors (InvalidProtobuf, ...) derive from Exception only
        text = error_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "", cfg.artifact)
        if isinstance(exc, ValueError) and not isinstance(exc, IntegrityError):
            # The artifact opens but cannot run as asked (a precision it lacks, split without a threshold).
            raise SetupError(f"{cfg.artifact}: {text}") from None
        raise SetupError(f"{cfg.artifact}: cannot open the model ({type(exc).__name__}: {text})") from None
    which = f"default model ({cfg.artifact})" if cfg.default_model else f"artifact {cfg.artifact}"
    return det, (f"focal-detect: {which}: {det.manifest.extractor} {cfg.detector.precision} on {det.engine.name}, "
                 f"clustering {det.clustering}"
                 + (f" above {det.split_threshold:.4f}" if det.clustering == "split" else "")
                 + f" ({det.cluster_backend})" + (" + copy-move search" if det.config.copy_move else "")
                 + (" + double-JPEG cue" if det.config.double_jpeg else ""))


def detect(inputs: list[str], cfg: DetectConfig) -> DetectSummary:
    """Run detection over ``inputs``, writing masks, overlays and journal records into ``cfg.out``.

    Several runs may share one output folder, at once or one after another:
    each image is written by one run only and gets one record (see
    :mod:`focal.runtime.journal`); an image already done is skipped.

    Returns:
        What the run did (:class:`DetectSummary`); ``interrupted`` after Ctrl-C.

    Raises:
        SetupError: the output folder or the model cannot be used (nothing was processed).
    """
    plan = plan_run(inputs, cfg)
    if not plan.pending:
        plan.abandon()
        return plan.summary()
    try:
        det, line = open_detector(cfg)
    except (KeyboardInterrupt, SetupError):
        plan.abandon()
        raise
    plan.err.print(line)
    cfg = replace(cfg, detector=det.config)  # decoding follows the cues settled against the manifest
    run = _Run(cfg, det, plan)
    try:
        run.go(plan.pending)
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        with sigint_ignored():  # a second Ctrl-C must not cut the clean-up short
            run.close()
            det.close()
            plan.err.close()
    return plan.summary(run.interrupted)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignores Ctrl-C inside (in the main thread), so clean-up is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class RunRecorder:
    """One run's journal, output-name locks and counters: claims images, writes their files and records.

    The one writer of an output folder's files in a process: the local run
    feeds it from its pipeline, ``focal-detect --ray`` from the results its
    Ray actors send back to the driver.

    Args:
        cfg: the run.
        err: the run's stderr.
        counts: the counters to update ("done", "flagged", "failed", "skipped").
        settings: the plan's :func:`record_settings`, stored in every record.
        stdout: where ``--json`` prints the records (default: ``sys.stdout`` now).
    """

    def __init__(self, cfg: DetectConfig, err: StderrCapture, counts: dict[str, int], settings: dict | None,
                 stdout: TextIO | None = None) -> None:
        self.cfg, self.err, self.counts = cfg, err, counts
        self.stdout = stdout or sys.stdout
        self.lock = RunLock(cfg.out)
        self.lock.remove_stale_temporaries()
        self.journal = Journal(cfg.out)
        self.settings = settings  # stored in every record; a resumed run compares them
        self.interrupted = False
        self.deferred: list[DetectJob] = []  # held by another run when their turn came
        self.progress: Progress | None = None

    def take(self, job: DetectJob, wait: bool) -> DetectJob | None:
        """Claims the job's output name and checks it is still to do.

        Args:
            job: the input.
            wait: wait for another run holding the name; else defer the job to ``deferred``.

        Returns:
            The job (its name held, ``key`` possibly its hashed name), or
            ``None``: another run holds the name (the job is deferred) or the
            image is done (counted as skipped).
        """
        for key in dict.fromkeys((job.key, job.alt_key)):
            if wait:
                self.lock.claim(key)
            elif not self.lock.try_claim(key):
                self.deferred.append(job)
                return None
            job = replace(job, key=key)
            self.journal.refresh()
            owner = self.journal.owners.get(f"{key}.mask.png")
            if owner is None or owner == job.path or key == job.alt_key:
                break
            self.lock.release(key)  # another input wrote this name meanwhile: take the hashed one
        rec = self.journal.latest.get(job.path)
        if _is_done(job, rec, self.cfg.out, self.settings, self.cfg.detector.heatmap) and (
                not self.cfg.overwrite or self.journal.written_since_start(job.path)):
            self.lock.release(job.key)
            self.counts["skipped"] += 1
            return None
        return job

    def finish(self, job: DetectJob, result: Result | ImageOutputs | Exception | str, notes: list[str]) -> None:
        """Writes one claimed image's files, then its record; releases its name.

        Args:
            job: the job as :meth:`take` returned it.
            result: the detection (encoded here), its encoded outputs, or why it failed.
            notes: the decoder's messages for the file.
        """
        try:
            if isinstance(result, Result):
                result = render_outputs(job, result, self.cfg.detector, self.err)
            if isinstance(result, ImageOutputs):
                try:
                    write_atomic(self.cfg.out / f"{job.key}.mask.png", result.mask_png)
                    write_atomic(self.cfg.out / f"{job.key}.overlay.png", result.overlay_png)
                    if result.heatmap_png is not None:
                        write_atomic(self.cfg.out / f"{job.key}.heatmap.png", result.heatmap_png)
                except OSError as exc:
                    result = exc
            rec = _record(job, result, notes, self.settings)
            self.journal.append(rec)
        finally:
            self.lock.release(job.key)
        if rec["error"] is not None:
            self.counts["failed"] += 1
            said = f" (decoder: {'; '.join(notes)})" if notes else ""
            self.err.print(f"focal-detect: {job.source}: {rec['error']}{said}")
        else:
            self.counts["done"] += 1
            self.counts["flagged"] += int(rec["forged_fraction"] > 0)
            if notes:
                self.err.print(f"focal-detect: {job.source}: decoder: {'; '.join(notes)}")
        if self.cfg.json_stdout:
            with self.err.lock:
                print(json.dumps(rec), file=self.stdout, flush=True)
        if self.progress is not None:
            with self.err.lock:
                self.progress.step(job.source.name)

    def end_progress(self) -> None:
        """Clears the progress line on a terminal (the summary line follows)."""
        if self.progress is not None and self.progress.tty:
            with self.err.lock:
                sys.stderr.write("\r\033[K")

    def close(self) -> None:
        # Claims of jobs decoded but never finished (Ctrl-C) go with the lock file's descriptor.
        self.journal.close()
        self.lock.close()


class _Run(RunRecorder):
    """The local run: images flow through ``Detector.detect_many`` into the recorder."""

    def __init__(self, cfg: DetectConfig, det: Detector, plan: RunPlan) -> None:
        super().__init__(cfg, plan.err, plan.counts, plan.settings)
        self.det = det
        self.stop = threading.Event()
        self.in_flight: deque[tuple[DetectJob, list[str], float]] = deque()  # fed to the detector, in order
        self.early: deque[tuple[DetectJob, str, list[str]]] = deque()  # failed before the engine

    def _feed(self, jobs: list[DetectJob], taken: bool) -> Iterator[np.ndarray]:
        """Claims (unless ``taken``), then decodes each job, in the detector's prefetch thread.

        Files that fail before the engine go to ``early``; the others to ``in_flight``.
        """
        for job in jobs:
            if self.stop.is_set():
                return
            claimed = job if taken else self.take(job, wait=False)
            if claimed is None:
                continue
            if claimed.error is not None:
                self.early.append((claimed, claimed.error, []))
                continue
            t0 = time.perf_counter()
            image, error, notes = decode_input(claimed, self.cfg.detector, self.err)
            if image is None:
                self.early.append((claimed, error, notes))
                continue
            self.in_flight.append((claimed, notes, (time.perf_counter() - t0) * 1e3))
            yield image

    def _drain_early(self) -> None:
        while self.early:
            self.finish(*self.early.popleft())

    def _pass(self, jobs: list[DetectJob], taken: bool = False) -> None:
        results = self.det.detect_many(self._feed(jobs, taken))
        try:
            for result in results:
                self._drain_early()
                job, notes, decode_ms = self.in_flight.popleft()
                if isinstance(result, Result):  # the detector got an array: the decode was ours
                    result = replace(result, timings={**result.timings, "decode": decode_ms})
                self.finish(job, result, notes)
            self._drain_early()
        finally:
            self.stop.set()
            results.close()
            self.stop.clear()

    def go(self, jobs: list[DetectJob]) -> None:
        self.progress = Progress(len(jobs), "detect", stream=sys.stderr)
        self._pass(jobs)
        # Images another run held when their turn came: wait for it here, in the main thread (so
        # Ctrl-C works), one at a time and holding no other name, and do those it did not finish.
        deferred, self.deferred = self.deferred, []
        for job in deferred:
            taken = self.take(job, wait=True)
            if taken is not None:
                self._pass([taken], taken=True)
        self.end_progress()

    def close(self) -> None:
        self.stop.set()
        super().close()


# -- arguments ---------------------------------------------------------------
def _is_artifact(arg: str) -> bool:
    return arg == "default" or (Path(arg).is_dir() and (Path(arg) / MANIFEST_NAME).is_file())


def choose_artifact(positionals: list[str]) -> tuple[str, list[str]]:
    """Splits the positionals into the artifact (``"default"`` for the embedded model) and the inputs.

    Raises:
        SetupError: the first positional looks meant as an artifact but is none (see the module notes).
    """
    first, rest = positionals[0], positionals[1:]
    if _is_artifact(first):
        if not rest:
            raise SetupError(f"{first}: an artifact, but no INPUT given")
        return first, rest
    path = Path(first)
    if path.is_dir():
        models = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _MODEL_SUFFIXES)
        if models:
            raise SetupError(f"{first}: not an artifact: {models[0]} but no {MANIFEST_NAME} here "
                             "(an artifact is a folder written by focal-export)")
        if rest and not list_images(path):
            raise SetupError(f"{first}: not an artifact (no {MANIFEST_NAME}) and holds no images")
    elif path.is_file() and (path.suffix.lower() in _MODEL_SUFFIXES or path.name == MANIFEST_NAME):
        raise SetupError(f"{first}: a model file; ARTIFACT is the folder holding {MANIFEST_NAME}")
    elif not path.exists() and not path.is_symlink() and rest and not _GLOB_MAGIC.search(first):
        raise SetupError(f"{first}: ARTIFACT not found (no such folder; an input named first must exist)")
    return "default", positionals


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-detect`` argument parser (choices from the runtime's registries)."""
    parser = make_parser("focal-detect", "FOCAL forgery localization on images (torch-free runtime).",
                         epilog="exit status: 0 all done, 1 some inputs failed, 2 usage, artifact or "
                                "output-folder error (before any work), 130 interrupted")
    add_artifact(parser, optional=True,
                 help="artifact folder (with focal.json) or 'default'; omitted, or an image input: the "
                      "embedded default model (a first path that does not exist is an error)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder: NAME.mask.png, NAME.overlay.png (NAME.heatmap.png), results.jsonl")
    add_backend(parser)
    add_precision(parser)
    add_clustering(parser, default=None, help="clustering method (default: the artifact's)")
    add_min_cluster_size(parser, help="HDBSCAN's smallest cluster, >= 2 (default: the artifact's)")
    add_batch_size(parser, help="images per engine call (more than 1 needs a dynamic-batch model)")
    add_copy_move(parser, "the mask is the union")
    add_double_jpeg(parser, "the mask is the union; records say double_jpeg true/false where the file gives evidence")
    parser.add_argument("--heatmap", action="store_true",
                        help="also write NAME.heatmap.png: how unlike the pristine majority each pixel's features are, "
                             "on one colour scale for all images (black: alike; yellow: at a right angle); shown "
                             "where the mask is empty too")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="ONNX Runtime CPU threads (default: all cores)")
    parser.add_argument("--low-memory", action="store_true",
                        help="turn ONNX Runtime's CPU memory arena off: about half the peak memory on big models, "
                             "slower")
    parser.add_argument("--overwrite", action="store_true", help="redo images done by earlier runs")
    parser.add_argument("--no-verify", action="store_true",
                        help="run model files even if their sha256 differs from the manifest's (logged)")
    add_json(parser, "one record per image, as appended to results.jsonl")
    return parser


def quiet_opencv() -> None:
    # OpenCV's own warnings and infos go; its errors stay, and during a decode they are captured
    # and tied to the file (see StderrCapture).
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "setLogLevel"):
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


class RunError(Exception):
    """The run stopped part-way (out folder gone, the cluster lost): what is done is kept (exit 1)."""


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parses ``focal-detect``'s arguments (exits 2 on bad usage, as argparse does)."""
    # Intermixed: `focal-detect ARTIFACT --out DIR a.jpg b.jpg` keeps every positional.
    args = parser.parse_intermixed_args(argv)
    if args.min_cluster_size is not None and args.min_cluster_size < 2:
        parser.error(f"argument --min-cluster-size: expected an integer >= 2 (HDBSCAN's smallest cluster), "
                     f"got {args.min_cluster_size}")
    return args


def config_from_args(args: argparse.Namespace) -> tuple[list[str], DetectConfig]:
    """The inputs and the run's config from parsed arguments.

    Raises:
        SetupError / FileNotFoundError: the artifact positional is wrong (see the module notes).
    """
    positionals = ([args.artifact] if args.artifact is not None else []) + list(args.inputs)
    artifact_arg, inputs = choose_artifact(positionals)
    artifact = default_artifact() if artifact_arg == "default" else Path(artifact_arg)
    cfg = DetectConfig(
        artifact=artifact,
        out=args.out,
        detector=DetectorConfig(
            backend=args.backend, precision=args.precision, clustering=args.clustering,
            min_cluster_size=args.min_cluster_size, threads=args.threads, batch_size=args.batch_size,
            mem_arena=not args.low_memory, verify=not args.no_verify, copy_move=args.copy_move,
            double_jpeg=args.double_jpeg, heatmap=args.heatmap,
        ),
        overwrite=args.overwrite,
        json_stdout=args.json,
        default_model=artifact_arg == "default",
    )
    return inputs, cfg


def run_and_report(args: argparse.Namespace, run: Callable[[list[str], DetectConfig], DetectSummary]) -> int:
    """Builds the config from ``args``, calls ``run`` (:func:`detect`, or the Ray job) and prints the summary.

    Returns:
        The exit status (see the module notes); every error is one line on stderr.
    """
    try:
        try:
            inputs, cfg = config_from_args(args)
        except (SetupError, FileNotFoundError) as exc:
            print(f"focal-detect: {exc}", file=sys.stderr)
            return EXIT_USAGE
        quiet_opencv()
        try:
            summary = run(inputs, cfg)
        except SetupError as exc:
            print(f"focal-detect: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (OSError, RunError) as exc:  # the out folder failed mid-run (disk full, removed): what is done is kept
            print(f"focal-detect: {exc}; stopped, a re-run goes on from there", file=sys.stderr)
            return EXIT_FAILED
    except KeyboardInterrupt:
        print("focal-detect: interrupted before any image was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.line(), file=sys.stderr)
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    """The local ``focal-detect`` (``--ray`` is :mod:`focal.serving.detect_cli`'s); returns the exit status."""
    try:
        args = parse_args(build_parser(), argv)
    except KeyboardInterrupt:
        print("focal-detect: interrupted before any image was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run_and_report(args, detect)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
