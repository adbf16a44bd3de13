"""Classic training-free forgery detectors (PhotoHolmes) scored with focal's own metrics.

The baselines are real peers of FOCAL on the same images: ``zero`` (JPEG grid
origin, a-contrario), ``dq`` (double quantisation), ``splicebuster`` and
``noisesniffer``, all weight-free. PhotoHolmes is *not* a dependency of the
project: it lives in its own venv (it needs torch and its own pins), so the
work is split in two halves that talk through files:

``detect`` (run by the PhotoHolmes venv's python) runs one method on a
dataset spec and writes, under ``OUT/<method>/<dataset>/``::

    meta.json       method, spec, what the method outputs (heatmap / mask / detection)
    records.jsonl   one line per image (resumable; a failure is an ``error`` line)
    maps/<key>.npy        float32 [H, W] heatmap, where the method gives one
    maps/<key>_heat.png   the same as an 8-bit picture (0..1 -> 0..255), to look at
    maps/<key>_mask.png   0/255 binary mask, where the method gives one

    A record: ``{"index", "path", "mask" (ground truth or null), "shape" [H, W],
    "heatmap" (file name or null), "pred_mask" (file name or null),
    "detection" (float or null), "seconds"}`` or ``{"index", "path", "mask",
    "error", "seconds"}``.

``score`` (run by the project's venv) reads those folders and scores each map
exactly as ``focal-eval`` does (``focal.evaluation.metrics``): per-image
forged-class IoU/F1 at the ground truth's resolution, dataset means over the
forged images, pixel AUC, best-threshold F1, image AUC where both classes exist.

The binary decision is the method's own mask where it gives one (zero,
noisesniffer), else its heatmap at 0.5 (dq, splicebuster); the table's
``decision`` column says which. The soft map is the heatmap, else the mask
(0/1). The image score is the method's detection, else the heatmap's maximum
(uninformative for splicebuster, whose heatmap is min-max normalised per
image, so its maximum is always 1). dq reads the JPEG's own DCT coefficients;
a non-JPEG (PNG) is re-encoded at quality 100 first, as PhotoHolmes does, so
dq's map on a PNG says little. Images are read as stored (no EXIF rotation),
like focal-eval, so maps stay on the ground truth's and the JPEG's grid.

``run`` (the project's venv) does both: ``detect`` through ``--ph-python`` in a
subprocess per (method, dataset), then ``score``.

Examples::

    /tmp/ph/bin/python benchmarks/baselines.py detect --method zero --data DATA --out runs/baselines
    .venv/bin/python benchmarks/baselines.py score --maps runs/baselines
    .venv/bin/python benchmarks/baselines.py run --ph-python /tmp/ph/bin/python \\
        --method zero dq --data /work/shared/data/real-samples --out runs/baselines --limit 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

METHODS = ("zero", "dq", "splicebuster", "noisesniffer")
RECORDS = "records.jsonl"
META = "meta.json"
_REPO = Path(__file__).resolve().parents[1]


def _load_pairs(spec: str) -> list[Any]:
    """``focal._datasets.load_pairs``, from the source tree when focal is not installed (the PhotoHolmes venv)."""
    try:
        from focal._datasets import load_pairs
    except ImportError:  # only numpy is needed: take the module from the source tree
        sys.path.insert(0, str(_REPO / "src"))
        from focal._datasets import load_pairs
    return load_pairs(spec)


def dataset_name(spec: str) -> str:
    """The dataset's name in tables and folders, as ``focal-eval`` names it (the spec's last part)."""
    path = Path(spec)
    return path.name or spec


def map_key(index: int, image: Path) -> str:
    """File stem of one image's maps; the index keeps same-stem images of a list apart."""
    return f"{index:05d}_{image.stem}"


def _read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records by image path; unreadable lines (a run cut short) are skipped."""
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[rec["path"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def _progress_line(label: str, done: int, total: int, start: float, note: str) -> None:
    elapsed = time.perf_counter() - start
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    print(f"{label} [{done}/{total}] {elapsed:.0f}s eta {eta} {note}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# detect: the PhotoHolmes half
# --------------------------------------------------------------------------------------------


class _TimeCap(Exception):
    """An image ran past ``--time-cap``."""


@contextmanager
def _time_cap(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_TimeCap` in this (main) thread after ``seconds``.

    SIGALRM interrupts Python code between bytecodes; a single long C call
    (one numpy or torch op) finishes before the cap takes effect.
    """
    if not seconds or seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise _TimeCap(f"time cap of {seconds:g}s reached")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_rgb(path: Path) -> Any:
    """``[3, H, W]`` uint8 RGB tensor of the pixels *as stored* (no EXIF rotation, like focal-eval).

    PhotoHolmes' own ``read_image`` applies the EXIF orientation, which would
    move the pixels off the ground truth's grid (and off the JPEG grid).
    """
    import cv2
    import torch

    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    return torch.from_numpy(np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)))


def _read_dct(path: Path) -> Any:
    """DCT coefficients as PhotoHolmes' datasets load them (a non-JPEG is re-encoded at quality 100)."""
    from photoholmes.utils.image import read_jpeg_data

    if path.suffix.lower() in (".jpg", ".jpeg") and path.suffix not in (".jpg", ".jpeg"):
        # read_jpeg_data recognises only lower-case suffixes; a ".JPG" would be re-encoded
        with tempfile.TemporaryDirectory() as tmp:
            link = Path(tmp) / "image.jpg"
            link.symlink_to(path.resolve())
            dct, _ = read_jpeg_data(str(link), suppress_not_jpeg_warning=True)
            return dct
    dct, _ = read_jpeg_data(str(path), suppress_not_jpeg_warning=True)
    return dct


def _as_array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _detect_one(method: Any, preprocess: Any, path: Path) -> tuple[tuple[int, int], np.ndarray | None,
                                                                    np.ndarray | None, float | None]:
    """One image through the method: ``(shape, heatmap, mask, detection)``."""
    image = _read_rgb(path)
    inputs: dict[str, Any] = {"image": image}
    if "dct_coefficients" in preprocess.inputs:
        inputs["dct_coefficients"] = _read_dct(path)
    out = method.benchmark(**preprocess(**inputs))
    heatmap = _as_array(out.get("heatmap"))
    mask = _as_array(out.get("mask"))
    det = _as_array(out.get("detection"))
    detection = None if det is None else float(det.reshape(-1)[0])
    return (int(image.shape[1]), int(image.shape[2])), heatmap, mask, detection


def _write_maps(folder: Path, key: str, heatmap: np.ndarray | None, mask: np.ndarray | None) -> dict[str, Any]:
    import cv2

    files: dict[str, Any] = {"heatmap": None, "pred_mask": None}
    if heatmap is not None:
        heat = heatmap.astype(np.float32)
        np.save(folder / f"{key}.npy", heat)
        view = np.nan_to_num(np.clip(heat, 0.0, 1.0), nan=0.0)
        cv2.imwrite(str(folder / f"{key}_heat.png"), (view * 255).round().astype(np.uint8))
        files["heatmap"] = f"{key}.npy"
    if mask is not None:
        cv2.imwrite(str(folder / f"{key}_mask.png"), (mask > 0).astype(np.uint8) * 255)
        files["pred_mask"] = f"{key}_mask.png"
    return files


def detect(method_name: str, spec: str, out: Path, limit: int | None = None, time_cap: float | None = None,
           config: str | None = None, threads: int | None = None) -> Path:
    """Run one PhotoHolmes method on a dataset spec; returns the method's output folder.

    Resumable: images already in ``records.jsonl`` without an error are skipped.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    from photoholmes.methods.factory import MethodFactory

    pairs = _load_pairs(spec)[:limit]
    folder = out / method_name / dataset_name(spec)
    maps = folder / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    method, preprocess = MethodFactory.load(method_name, config)
    meta = {"method": method_name, "data": spec, "dataset": dataset_name(spec), "config": config,
            "limit": limit, "time_cap": time_cap}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    done = _read_records(folder / RECORDS)
    start = time.perf_counter()
    label = f"{method_name}/{dataset_name(spec)}"
    with (folder / RECORDS).open("a") as log:
        for index, pair in enumerate(pairs):
            key = str(pair.image)
            prev = done.get(key)
            if prev is not None and "error" not in prev:
                _progress_line(label, index + 1, len(pairs), start, f"{pair.image.name} (done before)")
                continue
            rec: dict[str, Any] = {"index": index, "path": key,
                                   "mask": None if pair.mask is None else str(pair.mask)}
            t0 = time.perf_counter()
            try:
                with _time_cap(time_cap):
                    shape, heatmap, mask, detection = _detect_one(method, preprocess, pair.image)
                rec["seconds"] = time.perf_counter() - t0
                rec.update(shape=list(shape), detection=detection,
                           **_write_maps(maps, map_key(index, pair.image), heatmap, mask))
                note = f"{pair.image.name} {rec['seconds']:.1f}s"
            except (Exception, _TimeCap) as exc:  # a failing image is a record, not the end of the run
                rec.update(error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0)
                note = f"{pair.image.name} FAILED ({rec['error'][:80]})"
            log.write(json.dumps(rec) + "\n")
            log.flush()
            _progress_line(label, index + 1, len(pairs), start, note)
    return folder


# --------------------------------------------------------------------------------------------
# score: the focal half
# --------------------------------------------------------------------------------------------


def _resize(array: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    import cv2

    if array.shape == shape:
        return array
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(array.astype(np.float32), (shape[1], shape[0]), interpolation=interp)


def score_record(rec: dict[str, Any], maps: Path, threshold: float = 0.5) -> dict[str, Any]:
    """focal-eval's per-image metrics of one detect record (raises on unreadable maps/masks)."""
    import cv2

    from focal.evaluation.metrics import best_threshold_scores, pixel_auc, pixel_scores
    from focal.runtime.imageio import read_mask

    shape = (int(rec["shape"][0]), int(rec["shape"][1]))
    if rec.get("mask"):  # as focal-eval's _truth: masks of another size are aligned to the image
        truth = read_mask(rec["mask"])
        if truth.shape != shape:
            truth = cv2.resize(truth.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    else:
        truth = np.zeros(shape, bool)
    heat = None
    if rec.get("heatmap"):
        heat = np.load(maps / rec["heatmap"]).astype(np.float32)
        heat = _resize(np.nan_to_num(heat, nan=0.0, posinf=1.0, neginf=0.0), shape, nearest=False)
    mask = None
    if rec.get("pred_mask"):
        raw = cv2.imread(str(maps / rec["pred_mask"]), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise ValueError(f"{maps / rec['pred_mask']}: cannot read the predicted mask")
        mask = _resize(raw, shape, nearest=True) > 0
    if heat is None and mask is None:
        raise ValueError("the method gave neither a heatmap nor a mask")
    pred = mask if mask is not None else heat >= threshold
    soft = heat if heat is not None else mask.astype(np.float32)
    s = pixel_scores(pred, truth)
    f1_best, iou_best = best_threshold_scores(soft, truth)
    if rec.get("detection") is not None:
        score = float(rec["detection"])
    else:
        score = float(np.max(soft))
    return {"f1": s.f1, "f1_macro": s.f1_macro, "iou": s.iou, "auc": pixel_auc(soft, truth),
            "f1_best": f1_best, "iou_best": iou_best, "flagged": s.flagged, "any_flag": bool(pred.any()),
            "score": score, "authentic": not bool(truth.any()),
            "decision": "mask" if mask is not None else f"heatmap>={threshold:g}",
            "image_score": "detection" if rec.get("detection") is not None else "heatmap max"}


def _mean(values: list[float]) -> float:
    good = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(good)) if good else float("nan")


def score_folder(folder: Path, threshold: float = 0.5) -> dict[str, Any]:
    """Dataset summary of one ``OUT/<method>/<dataset>`` folder, summarised as focal-eval's ``summarise``."""
    from focal.evaluation.metrics import image_level

    meta = json.loads((folder / META).read_text()) if (folder / META).is_file() else {}
    records = list(_read_records(folder / RECORDS).values())
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    seconds: list[float] = []
    for rec in records:
        if "error" in rec:
            errors.append({"path": rec["path"], "error": rec["error"]})
            continue
        try:
            rows.append(score_record(rec, folder / "maps", threshold))
            seconds.append(float(rec["seconds"]))
        except (OSError, ValueError, KeyError) as exc:
            errors.append({"path": rec["path"], "error": f"scoring: {exc}"})
    forged_rows = [r for r in rows if not r["authentic"]]
    auth_rows = [r for r in rows if r["authentic"]]
    keys = ("f1", "f1_macro", "iou", "auc", "f1_best", "iou_best", "flagged")
    entry: dict[str, Any] = {k: _mean([r[k] for r in forged_rows]) for k in keys}
    forged = np.array([not r["authentic"] for r in rows], bool)
    entry.update(
        method=meta.get("method", folder.parent.name), dataset=meta.get("dataset", folder.name),
        images_forged=len(forged_rows), images_authentic=len(auth_rows), errors=errors,
        decision=", ".join(sorted({r["decision"] for r in rows})) or "-",
        image_score=", ".join(sorted({r["image_score"] for r in rows})) or "-",
        seconds_per_image=_mean(seconds),
        image=image_level(np.array([r["score"] for r in rows], np.float64),
                          np.array([r["any_flag"] for r in rows], bool), forged),
    )
    if auth_rows:
        entry["false_alarm_images"] = _mean([float(r["any_flag"]) for r in auth_rows])
    return entry


def method_folders(maps: Path) -> list[Path]:
    """Every ``<method>/<dataset>`` folder under ``maps`` (or ``maps`` itself if it is one)."""
    if (maps / RECORDS).is_file():
        return [maps]
    return sorted(p.parent for p in maps.glob(f"*/*/{RECORDS}"))


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(entries: list[dict[str, Any]]) -> str:
    """One row per (method, dataset); IoU/F1 are means over the forged images, as in focal-eval's table."""
    lines = ["| method | dataset | images (forged / authentic / failed) | decision | IoU (forged class) | F1 "
             "| pixel AUC | best-thr F1 | image AUC | s / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(
            f"| {e['method']} | {e['dataset']} | {e['images_forged']} / {e['images_authentic']} / {len(e['errors'])} "
            f"| {e['decision']} | {_fmt(e['iou'])} | {_fmt(e['f1'])} | {_fmt(e['auc'])} | {_fmt(e['f1_best'])} "
            f"| {_fmt(e['image']['auc'])} | {_fmt(e['seconds_per_image'], 2)} |")
    return "\n".join(lines) + "\n"


def score(maps: Path, data: list[str] | None = None, threshold: float = 0.5) -> tuple[str, list[dict[str, Any]]]:
    """The table (and summaries) of every method folder under ``maps``, optionally only those of ``data``."""
    folders = method_folders(maps)
    if data:
        names = {dataset_name(d) for d in data}
        folders = [f for f in folders if f.name in names]
    if not folders:
        raise SystemExit(f"{maps}: no {RECORDS} under <method>/<dataset>/ (run `detect` first)")
    entries = [score_folder(f, threshold) for f in folders]
    return markdown_table(entries), entries


def _print_score(maps: Path, data: list[str] | None, threshold: float) -> None:
    from focal.evaluation.evaluate import json_safe  # the project venv's half: focal is importable here

    table, entries = score(maps, data, threshold)
    notes = []
    for e in entries:
        notes.append(f"- {e['method']}/{e['dataset']}: decision = {e['decision']}; image score = {e['image_score']}")
        for err in e["errors"]:
            notes.append(f"  - failed: {Path(err['path']).name}: {err['error']}")
    text = table + "\n" + "\n".join(notes) + "\n"
    print(text)
    (maps / "table.md").write_text(text)
    (maps / "summary.json").write_text(json.dumps(json_safe(entries), indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common_detect(q: argparse.ArgumentParser, many: bool) -> None:
        q.add_argument("--method", nargs="+" if many else None, required=True, choices=METHODS)
        q.add_argument("--data", nargs="+" if many else None, required=True,
                       help="dataset spec: folder with images/ [+ masks/], bare folder, .npy or .json list")
        q.add_argument("--out", type=Path, required=True, help="output folder (maps under <method>/<dataset>/)")
        q.add_argument("--limit", type=int, default=None, help="at most this many images per dataset")
        q.add_argument("--time-cap", type=float, default=None,
                       help="seconds per image; an image past it becomes an error record")
        q.add_argument("--config", default=None, help="PhotoHolmes method config (yaml); default: the class defaults, as `photoholmes run` "
                            "uses (the config.yaml beside each method differs: dq number_frecs 10 vs 8, "
                            "noisesniffer b 2000 vs 20000)")
        q.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")

    d = sub.add_parser("detect", help="run one method (needs the PhotoHolmes venv)")
    common_detect(d, many=False)
    s = sub.add_parser("score", help="score the maps with focal's metrics (needs the project venv)")
    s.add_argument("--maps", type=Path, required=True, help="the --out folder of detect (or one method folder)")
    s.add_argument("--data", nargs="*", default=None, help="only these datasets (default: all found)")
    s.add_argument("--threshold", type=float, default=0.5, help="heatmap threshold for methods without a mask")
    r = sub.add_parser("run", help="detect through --ph-python for each method and dataset, then score")
    common_detect(r, many=True)
    r.add_argument("--ph-python", default=os.environ.get("PH_PYTHON", "/tmp/ph/bin/python"),
                   help="python of the PhotoHolmes venv (env PH_PYTHON)")
    r.add_argument("--threshold", type=float, default=0.5)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "detect":
        detect(args.method, args.data, args.out, args.limit, args.time_cap, args.config, args.threads)
        return 0
    if args.command == "score":
        _print_score(args.maps, args.data, args.threshold)
        return 0
    failed = []
    for method in args.method:
        for spec in args.data:
            cmd = [args.ph_python, str(Path(__file__).resolve()), "detect", "--method", method, "--data", spec,
                   "--out", str(args.out)]
            for flag, value in (("--limit", args.limit), ("--time-cap", args.time_cap), ("--config", args.config),
                                ("--threads", args.threads)):
                if value is not None:
                    cmd += [flag, str(value)]
            print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
            if subprocess.run(cmd, check=False).returncode != 0:
                failed.append(f"{method} on {spec}")
    if failed:
        print("detect failed for: " + "; ".join(failed), file=sys.stderr)
    _print_score(args.out, args.data, args.threshold)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
