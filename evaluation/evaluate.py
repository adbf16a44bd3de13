"""``evaluate(cfg)``: localisation and detection metrics of a model on datasets.

The model is an exported artifact (run by the torch-free runtime) or a
checkpoint (run by the PyTorch reference; needs the ``train`` extra). Each
image is inferred once and its features clustered with every requested
method, so clustering methods are compared on identical features.

Outputs in ``cfg.out``:
    records.jsonl   one line per (dataset, image): every metric per method (resumable)
    metrics.csv     the same, flat
    metrics.json    dataset means per method, image-level scores, false alarms, robustness
    table.md        a Markdown table in the style of the paper's Table II
    masks/DATASET/STEM.png     each image's mask under the headline method (255 = forged)
    heatmaps/DATASET/STEM.png  its heatmap under that method: the soft map behind the pixel AUC as
                               8-bit levels (focal.runtime.render.heatmap_levels, the fixed scale of
                               focal-detect --heatmap)
    grid_best.png / grid_worst.png   image | ground truth | prediction | heatmap, by forged-class F1
    robustness.png  metrics against perturbation strength (with --robustness)
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from focal._datasets import FilePair, load_pairs
from focal.runtime.cluster import DEFAULT_MIN_CLUSTER_SIZE
from focal.runtime.copymove import CopyMoveConfig, detect_copy_move
from focal.runtime.doublejpeg import DoubleJpegConfig, detect_double_jpeg
from focal.runtime.geometry import Geometry
from focal.runtime.imageio import decode_image, read_bytes, read_image, read_mask
from focal.runtime.manifest import MANIFEST_NAME
from focal.evaluation.metrics import best_threshold_scores, image_level, pixel_auc, pixel_scores
from focal.evaluation.plots import line_panel, write_png
from focal.runtime.postprocess import localize, soft_map
from focal.runtime.render import colour_levels, heatmap_levels
from focal.runtime.score import joined_score
from focal._progress import Progress
from focal.runtime.render import overlay
from focal.evaluation.robustness import PERTURBATIONS, perturb

PIXEL_KEYS: tuple[str, ...] = ("f1", "f1_macro", "iou", "auc", "f1_best", "iou_best", "flagged")


class FeatureModel(Protocol):
    """Anything that maps an RGB image to its raw ``[D, h, w]`` feature map, and says how the map sits on it."""

    def feature_map(self, image: np.ndarray) -> np.ndarray: ...

    def geometry(self, height: int, width: int) -> Geometry | None: ...


# A clustering's row joined with the copy-move search (EvalConfig.copy_move): "hdbscan+copy-move".
COPY_MOVE_SUFFIX = "+copy-move"
# Joined with the double-JPEG cue (EvalConfig.double_jpeg): "hdbscan+double-jpeg"; with both cues on,
# also "hdbscan+copy-move+double-jpeg".
DOUBLE_JPEG_SUFFIX = "+double-jpeg"


@dataclass(frozen=True)
class EvalConfig:
    """What ``focal-eval`` measures."""

    model: str  # artifact folder (focal.json) or checkpoint (.safetensors ours, .pth the authors')
    data: list[str]  # datasets: folders with images/ (+ masks/), .npy or .json lists
    out: str  # output folder
    clustering: list[str] = field(default_factory=lambda: ["hdbscan"])  # first one is the headline
    min_cluster_size: int | None = None  # None: the artifact's (its manifest's clustering default) / the paper's 200
    backend: str = "auto"  # runtime backend for artifacts
    precision: str = "fp32"  # artifact precision
    backbone: str | None = None  # needed for an authors' .pth checkpoint
    robustness: bool = False  # also measure under JPEG, blur, noise, down-scaling
    compare: str | None = None  # second model (checkpoint or artifact) compared image by image
    limit: int | None = None  # at most this many images per dataset
    input_size: int | None = None  # checkpoint input size (None: the backbone's)
    # Also score each clustering's mask joined with the copy-move search (focal.runtime.copymove),
    # as `focal-detect --copy-move` gives it: extra rows "METHOD+copy-move", pixel AUC the features'.
    # None: where the artifact's manifest lists the cue (a checkpoint lists none), as focal-detect does.
    copy_move: bool | None = None
    # Likewise the double-JPEG cue (focal.runtime.doublejpeg) on each file's bytes: rows "METHOD+double-jpeg".
    double_jpeg: bool | None = None


def load_model(spec: str, cfg: EvalConfig) -> FeatureModel:
    """An artifact through the runtime, or a checkpoint through the PyTorch reference."""
    path = Path(spec)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        from focal.runtime.detector import Detector

        # Pixels as stored: ground-truth masks are drawn on the stored grid.
        return Detector(path, backend=cfg.backend, precision=cfg.precision, exif_orientation=False)
    if path.is_file():
        try:
            from focal.training import ReferenceConfig, ReferenceDetector, build_extractor
        except ImportError as exc:
            raise ImportError(f"{spec}: evaluating a checkpoint needs PyTorch: pip install 'focal[train]'") from exc
        extractor = build_extractor(cfg.backbone, weights=path)
        return ReferenceDetector(extractor, ReferenceConfig(input_size=cfg.input_size))
    raise FileNotFoundError(f"{spec}: neither an artifact folder (with {MANIFEST_NAME}) nor a checkpoint file")


def truth_mask(pair: FilePair, shape: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` bool ground truth of ``pair`` on an image of ``shape`` (all False for an authentic one)."""
    if pair.mask is None:
        return np.zeros(shape, bool)
    mask = read_mask(pair.mask)
    if mask.shape != shape:  # some datasets ship masks at another size: align to the image
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def score_image(model: FeatureModel, image: np.ndarray, truth: np.ndarray, methods: list[str],
                min_cluster_size: int, data: bytes | None = None,
                softs: dict[str, np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All metrics of one image for each clustering method, and the predicted masks.

    ``data`` is the image file's bytes, which rows ``+double-jpeg`` need (the
    cue reads the file's own blocks and table; pixels as stored, as ``image``).
    ``softs``, when given, receives each method's ``[H, W]`` float32 soft map
    (:func:`focal.runtime.postprocess.soft_map`, the one its pixel AUC scores).
    """
    feats = model.feature_map(image)
    h, w = image.shape[:2]
    # Under the native policy the map covers the padded input: crop, pool and map back as the runtime does.
    geometry = model.geometry(h, w)
    rec: dict[str, Any] = {}
    masks = {}
    threshold = split_threshold_of(model)
    copies = requantised = None
    for method in methods:
        base = method.removesuffix(DOUBLE_JPEG_SUFFIX).removesuffix(COPY_MOVE_SUFFIX)
        loc = localize(feats, h, w, base, min_cluster_size, geometry=geometry, split_threshold=threshold)
        pred = loc.mask > 0
        if COPY_MOVE_SUFFIX in method:
            if copies is None:  # one search per image, whatever the clustering
                copies = detect_copy_move(image) > 0
            pred = pred | copies
        if DOUBLE_JPEG_SUFFIX in method:
            if requantised is None:
                found = detect_double_jpeg(data) if data is not None else None
                usable = found is not None and found.mask is not None and found.mask.shape == (h, w)
                requantised = found.mask > 0 if usable else np.zeros((h, w), bool)
            pred = pred | requantised
        # The image score as the Detector gives it: the features', lifted where a joined cue found a region.
        score = joined_score(loc.score, copies, CopyMoveConfig.false_alarm) if COPY_MOVE_SUFFIX in method else loc.score
        if DOUBLE_JPEG_SUFFIX in method:
            score = joined_score(score, requantised, DoubleJpegConfig.false_alarm)
        soft = soft_map(loc.features, loc.labels, h, w, geometry)
        s = pixel_scores(pred, truth)
        f1_best, iou_best = best_threshold_scores(soft, truth)
        rec[method] = {
            "f1": s.f1, "f1_macro": s.f1_macro, "iou": s.iou, "auc": pixel_auc(soft, truth),
            "f1_best": f1_best, "iou_best": iou_best, "flagged": s.flagged, "any_flag": bool(pred.any()),
            "score": score,
        }
        masks[method] = pred
        if softs is not None:
            softs[method] = soft
    return rec, masks


def _mean(values: list[float]) -> float:
    good = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(good)) if good else float("nan")


def summarise(records: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Dataset means, image-level scores and false alarms per method."""
    out: dict[str, Any] = {}
    for ds in sorted({r["dataset"] for r in records}):
        rows = [r for r in records if r["dataset"] == ds and "error" not in r]
        forged = np.array([not r["authentic"] for r in rows], bool)
        per_method = {}
        for m in methods:
            forged_rows = [r[m] for r, f in zip(rows, forged) if f]
            auth_rows = [r[m] for r, f in zip(rows, forged) if not f]
            entry = {k: _mean([r[k] for r in forged_rows]) for k in PIXEL_KEYS}
            entry["images_forged"] = len(forged_rows)
            entry["images_authentic"] = len(auth_rows)
            if auth_rows:  # the paper's Table VIII
                entry["false_alarm_pixels"] = _mean([r["flagged"] for r in auth_rows])
                entry["false_alarm_images"] = _mean([float(r["any_flag"]) for r in auth_rows])
            entry["image"] = image_level(
                np.array([r[m]["score"] for r in rows]), np.array([r[m]["any_flag"] for r in rows]), forged
            )
            per_method[m] = entry
        out[ds] = {"images": len(rows), "errors": sum(1 for r in records if r["dataset"] == ds and "error" in r),
                   "methods": per_method}
    return out


def json_safe(obj: Any) -> Any:
    """NaN (undefined metrics) as JSON null, numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def markdown_table(summary: dict[str, Any], methods: list[str]) -> str:
    """The paper's Table II layout: one row per dataset, F1 (macro = the paper's) and IoU."""
    lines = []
    for m in methods:
        lines += [f"### clustering: {m}", "",
                  "| dataset | images (forged / authentic) | F1 macro (paper's) | F1 forged | IoU | pixel AUC "
                  "| best-thr F1 | false-alarm images | image AUC |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for ds, entry in summary.items():
            e = entry["methods"][m]
            fa = e.get("false_alarm_images", float("nan"))
            lines.append(f"| {ds} | {e['images_forged']} / {e['images_authentic']} | {e['f1_macro']:.3f} | {e['f1']:.3f} "
                         f"| {e['iou']:.3f} | {e['auc']:.3f} | {e['f1_best']:.3f} | {fa:.2f} | {e['image']['auc']:.3f} |")
        lines.append("")
    return "\n".join(lines).replace("nan", "-")


def _grid(items: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]], path: Path,
          height: int = 200) -> None:
    """Rows of image | ground truth | prediction overlay | heatmap (where the record has one)."""
    rows = []
    for image, truth, pred, levels in items:
        scale = height / image.shape[0]
        size = (max(1, int(image.shape[1] * scale)), height)
        tiles = [cv2.resize(image, size), cv2.resize(overlay(image, truth.astype(np.uint8) * 255), size),
                 cv2.resize(overlay(image, pred.astype(np.uint8) * 255), size)]
        if levels is not None:
            tiles.append(colour_levels(cv2.resize(levels, size, interpolation=cv2.INTER_AREA)))
        rows.append(np.hstack(tiles)[:, :, ::-1])
    if rows:
        width = max(r.shape[1] for r in rows)
        write_png(path, *[np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])


@dataclass(frozen=True)
class _Run:
    """What every image of one evaluation is measured with."""

    cfg: EvalConfig
    out: Path  # output folder
    methods: list[str]  # clustering methods, the headline one first
    min_cluster_size: int  # the user's, else the artifact's
    model: FeatureModel
    other: FeatureModel | None  # the compared model (``cfg.compare``)


def _open_models(cfg: EvalConfig) -> tuple[FeatureModel, FeatureModel | None]:
    """The evaluated model and the one it is compared with (None without ``cfg.compare``)."""
    model = load_model(cfg.model, cfg)
    if not cfg.compare:
        return model, None
    # A checkpoint compared with an artifact runs at the artifact's input size.
    manifest = getattr(model, "manifest", None)
    size = cfg.input_size or (manifest.input.size if manifest is not None else None)
    return model, load_model(cfg.compare, replace(cfg, input_size=size))


def split_threshold_of(model: FeatureModel) -> float | None:
    """The ``split`` rule's threshold of an artifact (its manifest's); None for a checkpoint or an unfitted artifact."""
    manifest = getattr(model, "manifest", None)
    return manifest.clustering.split_threshold if manifest is not None else None


def _settle_cues(cfg: EvalConfig, model: FeatureModel) -> EvalConfig:
    """``cfg`` with each cue left ``None`` decided as the artifact's manifest says (off for a checkpoint)."""
    manifest = getattr(model, "manifest", None)
    if manifest is None:
        return replace(cfg, copy_move=bool(cfg.copy_move), double_jpeg=bool(cfg.double_jpeg))
    return manifest.settle_cues(cfg)


def _min_cluster_size(cfg: EvalConfig, model: FeatureModel) -> int:
    """The user's value, else the artifact's (its manifest's clustering default), else the paper's."""
    if cfg.min_cluster_size:
        return int(cfg.min_cluster_size)
    manifest = getattr(model, "manifest", None)
    return int(manifest.clustering.min_cluster_size) if manifest is not None else DEFAULT_MIN_CLUSTER_SIZE


def _read_records(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """An earlier run's records by (dataset, image path); unreadable lines (a run cut short) are skipped."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                done[(r["dataset"], r["path"])] = r
            except (json.JSONDecodeError, KeyError):
                continue
    return done


def _is_complete(prev: dict[str, Any] | None, run: _Run) -> bool:
    """Whether an earlier record already holds everything this run measures."""
    return (prev is not None and "error" not in prev and all(m in prev for m in run.methods)
            and (not run.cfg.robustness or prev["authentic"] or "robustness" in prev)
            and (run.other is None or "compare" in prev))


def _compare(run: _Run, image: np.ndarray, truth: np.ndarray, rec: dict[str, Any],
             mask: np.ndarray) -> dict[str, float]:
    """Mask IoU and score difference of the compared model on the same image (headline method)."""
    assert run.other is not None
    method = run.methods[0]
    o_rec, o_masks = score_image(run.other, image, truth, [method], run.min_cluster_size)
    other = o_masks[method]
    union = (mask | other).sum()
    return {"mask_iou": 1.0 if union == 0 else float((mask & other).sum() / union),
            "score_diff": abs(rec[method]["score"] - o_rec[method]["score"])}


def _robustness(run: _Run, image: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Headline-method F1 / IoU under each perturbation, keyed ``"name|strength"``."""
    method = run.methods[0]
    scores = {}
    for name, strength, perturbed in perturb(image):
        t2 = cv2.resize(truth.astype(np.uint8), (perturbed.shape[1], perturbed.shape[0]),
                        interpolation=cv2.INTER_NEAREST) > 0
        r2, _ = score_image(run.model, perturbed, t2, [method], run.min_cluster_size)
        scores[f"{name}|{strength}"] = {k: r2[method][k] for k in ("f1", "iou", "f1_macro")}
    return scores


def _record(run: _Run, ds: str, pair: FilePair) -> dict[str, Any]:
    """One image's line of ``records.jsonl`` (an ``error`` one if unreadable); its headline mask goes to ``masks/``."""
    try:
        data = read_bytes(pair.image)
        image = decode_image(data, str(pair.image))
        truth = truth_mask(pair, image.shape[:2])
        softs: dict[str, np.ndarray] = {}
        rec, masks = score_image(run.model, image, truth, run.methods, run.min_cluster_size, data, softs)
        rec.update(dataset=ds, path=str(pair.image), authentic=not truth.any())
        for key, folder, picture in (("mask", "masks", masks[run.methods[0]].astype(np.uint8) * 255),
                                     ("heatmap", "heatmaps", heatmap_levels(softs[run.methods[0]]))):
            file = run.out / folder / ds / f"{pair.image.stem}.png"
            file.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(file), picture)
            rec[key] = str(file.relative_to(run.out))
        if run.other is not None:
            rec["compare"] = _compare(run, image, truth, rec, masks[run.methods[0]])
        if run.cfg.robustness and truth.any():
            rec["robustness"] = _robustness(run, image, truth)
    except (OSError, ValueError) as exc:
        return {"dataset": ds, "path": str(pair.image), "error": str(exc)}
    return rec


def _measure(run: _Run, datasets: dict[str, list[FilePair]]) -> list[dict[str, Any]]:
    """Every image's record: an earlier run's where complete, the others measured and appended to ``records.jsonl``."""
    rec_path = run.out / "records.jsonl"
    done = _read_records(rec_path)
    progress = Progress(sum(len(p) for p in datasets.values()), "eval")
    with rec_path.open("a") as log:
        for ds, pairs in datasets.items():
            for pair in pairs:
                key = (ds, str(pair.image))
                if not _is_complete(done.get(key), run):
                    done[key] = _record(run, ds, pair)
                    log.write(json.dumps(done[key]) + "\n")
                    log.flush()
                progress.step(pair.image.name)
    progress.close()
    return [r for r in done.values() if r["dataset"] in datasets]


def _summary(run: _Run, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    summary: dict[str, Any] = {"model": run.cfg.model, "clustering": run.methods,
                               "min_cluster_size": run.min_cluster_size, "datasets": summarise(records, run.methods)}
    if run.other is not None:
        comp = [r["compare"] for r in records if "compare" in r]
        summary["compare"] = {"model": run.cfg.compare, "mask_iou": _mean([c["mask_iou"] for c in comp]),
                              "score_diff_max": max((c["score_diff"] for c in comp), default=float("nan"))}
    robust: dict[str, dict[str, list[float]]] = {}
    for r in records:
        for k, metrics in r.get("robustness", {}).items():
            for m, v in metrics.items():
                robust.setdefault(k, {}).setdefault(m, []).append(v)
    if robust:
        summary["robustness"] = {k: {m: _mean(v) for m, v in d.items()} for k, d in robust.items()}
    return summary


def _robustness_plot(robustness: dict[str, dict[str, float]], method: str, path: Path) -> None:
    """F1 and IoU against perturbation strength, one panel per perturbation."""
    panels = []
    for name in PERTURBATIONS:
        keys = sorted((k for k in robustness if k.startswith(name + "|")), key=lambda k: float(k.split("|")[1]))
        if keys:
            series = {m: [(float(k.split("|")[1]), robustness[k][m]) for k in keys] for m in ("f1", "iou")}
            panels.append(line_panel(series, f"{name} ({method})", xlabel=PERTURBATIONS[name]))
    write_png(path, *panels)


def _write_csv(records: list[dict[str, Any]], methods: list[str], path: Path) -> None:
    """``metrics.csv``: one row per (image, method), or one ``error`` row per unreadable image."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "path", "authentic", "method", *PIXEL_KEYS, "score", "error"])
        for r in records:
            if "error" in r:
                writer.writerow([r["dataset"], r["path"], "", "", *[""] * len(PIXEL_KEYS), "", r["error"]])
                continue
            for m in methods:
                writer.writerow([r["dataset"], r["path"], r["authentic"], m, *[r[m][k] for k in PIXEL_KEYS], r[m]["score"], ""])


def _write_grids(run: _Run, records: list[dict[str, Any]], datasets: dict[str, list[FilePair]]) -> None:
    """``grid_best.png`` / ``grid_worst.png``: the four forged images with the best / worst headline F1."""
    forged = (r for r in records if "error" not in r and not r["authentic"])
    ranked = sorted(forged, key=lambda r: r[run.methods[0]]["f1"])
    for name, chosen in (("grid_best.png", ranked[::-1][:4]), ("grid_worst.png", ranked[:4])):
        items = []
        for r in chosen:
            image = read_image(r["path"])
            pair = next(p for p in datasets[r["dataset"]] if str(p.image) == r["path"])
            pred = cv2.imread(str(run.out / r["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            # A record of a run before heatmaps were written has none: its row has three tiles.
            levels = cv2.imread(str(run.out / r["heatmap"]), cv2.IMREAD_GRAYSCALE) if "heatmap" in r else None
            items.append((image, truth_mask(pair, image.shape[:2]), pred, levels))
        _grid(items, run.out / name)


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the evaluation and write the outputs (see the module docstring).

    Returns:
        The content of ``metrics.json``.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, other = _open_models(cfg)
    if "split" in cfg.clustering:
        for spec, m in ((cfg.model, model), (cfg.compare, other)):
            if m is not None and split_threshold_of(m) is None:
                raise ValueError(f"{spec}: clustering 'split' needs an artifact with a fitted split threshold "
                                 "(focal-calibrate ARTIFACT --photos UNTOUCHED_PHOTOS)")
    cfg = _settle_cues(cfg, model)
    methods = list(dict.fromkeys(cfg.clustering))
    base_methods = list(methods)
    methods += [m + COPY_MOVE_SUFFIX for m in base_methods] if cfg.copy_move else []
    methods += [m + DOUBLE_JPEG_SUFFIX for m in base_methods] if cfg.double_jpeg else []
    methods += [m + COPY_MOVE_SUFFIX + DOUBLE_JPEG_SUFFIX for m in base_methods] if cfg.copy_move and cfg.double_jpeg else []
    run = _Run(cfg, out, methods, _min_cluster_size(cfg, model), model, other)
    datasets = {Path(d).name or d: load_pairs(d)[: cfg.limit] for d in cfg.data}
    records = _measure(run, datasets)
    summary = _summary(run, records)
    if "robustness" in summary:
        _robustness_plot(summary["robustness"], run.methods[0], out / "robustness.png")
    (out / "metrics.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(summary["datasets"], run.methods))
    _write_csv(records, run.methods, out / "metrics.csv")
    _write_grids(run, records, datasets)
    return summary
