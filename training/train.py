"""``train(cfg)``: soft contrastive training of a FOCAL extractor.

One image at a time in the loss (features of two images never meet), Adam,
mixed precision on CUDA, periodic validation with the test-time clustering
(pixel F1 / IoU on a held-out split), checkpoints ``latest`` and ``best`` in
safetensors, resumable from the run folder, deterministic seeds, and
``torchrun`` (DistributedDataParallel) when launched with several processes.

Run folder layout::

    OUT/config.json            the TrainConfig of the run
    OUT/latest.safetensors     + latest.json       last epoch's weights (our checkpoint format)
    OUT/best.safetensors       + best.json         best validation IoU so far
    OUT/latest.optim.pt        optimiser state (torch.load(weights_only=True))
    OUT/state.json             epoch, step, best score: what resume needs
    OUT/history.jsonl          one line per epoch: loss, validation scores
    OUT/curves.png             loss and validation IoU/F1 per epoch
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from focal._datasets import load_pairs
from focal._files import atomic_output, write_atomic
from focal.evaluation.metrics import mean_scores, pixel_scores
from focal.runtime.geometry import check_native, image_geometry
from focal.runtime.postprocess import Localization, localize
from focal.runtime.preprocess import network_input
from focal.training.backbones import backbone_info
from focal.training.checkpoints import build_extractor, save_checkpoint
from focal.training.config import TrainConfig
from focal.training.curves import plot_history
from focal.training.data import (
    AugmentConfig,
    DatasetConfig,
    PairDataset,
    SyntheticConfig,
    SyntheticDataset,
    SyntheticForgeryGenerator,
    list_images,
    split_by_file,
)
from focal.training.data.forensic import TraceConfig, TraceForgeryGenerator, photos_for_crop
from focal.training.data.mixed import MixedForgeryGenerator
from focal.training.losses import compactness_loss, nce_loss, scl_loss
from focal.training.model import Extractor


@dataclass(frozen=True)
class TrainSummary:
    """What a finished run reports."""

    out: Path  # run folder
    epochs: int  # epochs completed in total (including resumed ones)
    steps: int  # optimiser steps in total
    first_loss: float | None  # mean loss of the first epoch of the run's history
    last_loss: float | None  # mean loss of the last epoch
    initial_val: dict[str, float] | None  # validation before any training
    best_val: dict[str, float] | None  # best validation (by IoU)
    seconds: float  # wall time of this invocation


@dataclass(frozen=True)
class _Dist:
    """Process-group facts (a single process when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


# How long ranks wait for rank 0's validation and checkpointing (and any collective).
DDP_TIMEOUT_MINUTES = 120


def _dist_setup() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    # NCCL between GPUs; gloo lets the same command run multi-process on CPU.
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        # Rank 0 validates, saves and plots while the others wait in the
        # barrier: torch's default 10-minute collective timeout would abort a
        # run whose validation takes longer, so the wait is bounded by the
        # config instead.
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=DDP_TIMEOUT_MINUTES))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else base / p


# Trace-carrying samples keep only augmentations that leave camera traces
# intact: flips, quarter turns and a global colour jitter. Blur, noise,
# resizing and JPEG would overwrite the very traces the samples teach.
TRACE_AUGMENT = AugmentConfig(p_downscale=0.0, p_blur=0.0, p_noise=0.0, p_jpeg=0.0, p_color=0.3)


def _generator_factory(cfg: TrainConfig, segmentations: str | None):
    """``photos -> generator`` for ``cfg.forgeries``, the same for training and validation."""
    syn = SyntheticConfig(max_side=cfg.max_side)
    if cfg.forgeries == "classic":
        return lambda photos: SyntheticForgeryGenerator(photos, syn, segmentations)
    trace = TraceConfig(crop=cfg.input_size, p_reprocess=cfg.reprocess)
    if cfg.forgeries == "traces":
        return lambda photos: TraceForgeryGenerator(photos, SyntheticConfig(), segmentations, trace)
    return lambda photos: MixedForgeryGenerator(  # "mixed"
        [SyntheticForgeryGenerator(photos, syn, segmentations),
         TraceForgeryGenerator(photos, SyntheticConfig(), segmentations, trace)], [0.5, 0.5])


def _check_photos(cfg: TrainConfig) -> None:
    """Raise unless synthetic data has a photo folder to forge from.

    Raises:
        ValueError: ``cfg.data`` is ``"synthetic"`` and ``cfg.photos`` is unset.
    """
    # TrainConfig() leaves photos unset (the library knows no data location), so
    # a library caller gets this message rather than Path(None)'s TypeError.
    if cfg.data == "synthetic" and not cfg.photos:
        raise ValueError("photos is required for synthetic data: the folder of untouched photos to forge from "
                         "(focal-train --photos DIR or $FOCAL_PHOTOS)")


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset | None, str]:
    """Training and validation datasets for ``cfg``, and a one-line description.

    Synthetic data is forged from ``cfg.photos``, split by file so validation
    forgeries come from photos never used in training.

    Raises:
        ValueError: synthetic data without ``cfg.photos``.
        FileNotFoundError: ``cfg.photos`` is not a folder.
    """
    _check_photos(cfg)
    # A mixture keeps the trace-safe augmentations for all: the classic half already draws its own JPEG.
    aug = (AugmentConfig() if cfg.forgeries == "classic" else TRACE_AUGMENT) if cfg.augment else None
    native = cfg.input_policy == "native"
    train_cfg = DatasetConfig(size=cfg.input_size, augment=aug, seed=cfg.seed, policy="crop" if native else "square")
    val_cfg = DatasetConfig(size=cfg.input_size, augment=None, seed=cfg.seed + 1,
                            policy="native" if native else "square")
    if cfg.data == "synthetic":
        photos_root = Path(cfg.photos)
        if not photos_root.is_dir():
            raise FileNotFoundError(f"{photos_root}: photo folder for synthetic forgeries not found (--photos)")
        photos = list_images(photos_root)
        if cfg.forgeries in ("traces", "mixed"):
            photos, small = photos_for_crop(photos, cfg.input_size)
            if small:
                print(f"focal-train: {len(small)} photos smaller than a {cfg.input_size}-pixel crop left out "
                      f"(first: {small[0]})", file=sys.stderr)
        split = split_by_file(photos, cfg.val_fraction, seed=cfg.seed)
        seg = cfg.segmentations if cfg.segmentations and Path(cfg.segmentations).is_dir() else None
        make = _generator_factory(cfg, seg)
        train = SyntheticDataset(make(split.train), cfg.train_samples, train_cfg, fresh_per_epoch=cfg.fresh_forgeries)
        val = SyntheticDataset(make(split.val), cfg.val_samples, val_cfg)
        desc = (f"{cfg.forgeries} synthetic forgeries from {photos_root}: {len(split.train)} training photos, "
                f"{len(split.val)} held-out validation photos")
        return train, val, desc

    def load(spec: str, dcfg: DatasetConfig) -> Dataset:
        return PairDataset(load_pairs(spec), config=dcfg)

    train = load(cfg.data, train_cfg)
    val = load(cfg.val_data, val_cfg) if cfg.val_data else None
    return train, val, f"{cfg.data} ({len(train)} samples)"


def downsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, 1, S, S]`` {0, 1} -> ``[B, 1, h, w]`` {0, 1}: area average, then threshold at 0.5."""
    return (F.interpolate(mask, size=size, mode="area") > 0.5).to(mask.dtype)


def _min_cluster_size(points: int) -> int:
    # The paper's 200 is for 4096-point maps; smaller maps (tests, tiny
    # backbones) scale it down so a forged region can still form a cluster.
    return int(min(200, max(10, points // 20)))


@dataclass(frozen=True)
class NativeValidation:
    """The runtime's ``native`` geometry for validation: what a native export's manifest will hold."""

    max_side: int  # cap of the longer side, a multiple of the stride
    max_points: int  # most feature cells clustered


def native_validation(cfg: TrainConfig, stride: int) -> NativeValidation | None:
    """Validation geometry of ``cfg`` for a backbone of ``stride``; None under the square policy.

    Raises:
        ValueError: a cap that is not a positive multiple of the stride (as ``focal-export`` refuses it).
    """
    if cfg.input_policy != "native":
        return None
    max_side = int(cfg.native_max_side or 2 * cfg.input_size)
    check_native(max_side, stride)
    return NativeValidation(max_side, cfg.max_points)


@torch.no_grad()
def _localize_sample(model: Extractor, image: torch.Tensor, clustering: str, device: torch.device,
                     native: NativeValidation | None) -> Localization:
    """One ``[3, H, W]`` [0, 1] sample through the model and the runtime's localisation, at ``H x W``."""
    height, width = image.shape[1:]
    if native is None:
        feats = model(image[None].to(device))[0].float().cpu().numpy()
        h, w = feats.shape[1:]
        return localize(feats, height, width, clustering, _min_cluster_size(h * w))
    # As the runtime: the uint8 image (exact: the sample is k / 255), capped, padded, pooled.
    pixels = (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    geometry = image_geometry(height, width, "native", model.input_size, model.stride, native.max_side,
                              native.max_points)
    x = torch.from_numpy(network_input(pixels, model.input_size, geometry))[None].to(device)
    feats = model(x)[0].float().cpu().numpy()
    gh, gw = geometry.grid
    return localize(feats, height, width, clustering, _min_cluster_size(gh * gw), geometry=geometry)


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: Dataset, clustering: str, device: torch.device,
             native: NativeValidation | None = None) -> dict[str, float]:
    """Mean pixel scores with test-time clustering on ``dataset``.

    Every sample is localised exactly as at inference (normalise, cluster,
    mask at the sample's resolution; with ``native``, the runtime's native
    geometry); authentic samples score 1 only if nothing is flagged. Also
    returns ``false_alarm``: the share of authentic samples with any
    flagged pixel.
    """
    model.eval()
    scores = []
    false_alarms: list[float] = []
    forged_ious: list[float] = []
    for i in range(len(dataset)):
        sample = dataset[i]
        truth = sample["mask"][0].numpy() > 0.5
        loc = _localize_sample(model, sample["image"], clustering, device, native)
        scores.append(pixel_scores(loc.mask > 0, truth))
        if not truth.any():
            false_alarms.append(float(loc.forged_fraction > 0))
        else:
            forged_ious.append(scores[-1].iou)
    out = mean_scores(scores)
    # "iou" averages over all samples, an authentic one scoring 1 when nothing is
    # flagged; clean samples lift it, so localisation is also judged on forged ones alone.
    out["iou_forged"] = float(np.mean(forged_ious)) if forged_ious else float("nan")
    out["false_alarm"] = float(np.mean(false_alarms)) if false_alarms else float("nan")
    out["samples"] = float(len(scores))
    return out


def _loss(cfg: TrainConfig, feats: torch.Tensor, masks: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    small = downsample_mask(masks, tuple(feats.shape[-2:]))
    feats = feats.float()  # the loss runs in FP32 even under autocast
    if cfg.loss in ("scl", "scl-pixel"):
        loss = scl_loss(feats, small, tau=cfg.tau, max_iter=cfg.fuzzy_iters, per_pixel=cfg.loss == "scl-pixel")
    else:
        loss = nce_loss(feats, small, tau=cfg.tau, generator=gen)
        if cfg.loss == "nce-sym":
            # The release only compacts the pristine side; HDBSCAN also needs the
            # forged pixels to form one dense group, so they take a turn as queries.
            loss = 0.5 * (loss + nce_loss(feats, 1.0 - small, tau=cfg.tau, generator=gen))
    if cfg.authentic_weight > 0:
        loss = loss + cfg.authentic_weight * compactness_loss(feats, small)
    return loss


def _read_state(out: Path) -> dict[str, Any] | None:
    path = out / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _history(out: Path) -> list[dict[str, Any]]:
    path = out / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _append_history(out: Path, record: dict[str, Any]) -> None:
    with (out / "history.jsonl").open("a") as fh:
        fh.write(json.dumps(record) + "\n")


@dataclass(frozen=True)
class _Trainer:
    """The model and what updates it."""

    model: Extractor  # the bare model: checkpoints and validation
    net: torch.nn.Module  # what the training forward pass runs: the model or its DDP wrapper
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool  # FP16 autocast (CUDA only)
    device: torch.device


@dataclass
class _RunState:
    """Where the run stands, updated after every epoch (what ``state.json`` and ``history.jsonl`` keep)."""

    step: int  # optimiser steps taken
    best: dict[str, Any] | None  # best validation so far (by IoU), with its epoch
    history: list[dict[str, Any]]  # one record per epoch, epoch 0 the validation before training


def _prepare_run(cfg: TrainConfig, out: Path, ddp: _Dist) -> dict[str, Any] | None:
    """Create the run folder, refuse one holding another recipe, record ``cfg``; the resume state or None.

    Raises:
        ValueError: ``out`` holds a run with other settings.
    """
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    state = _read_state(out)
    if state is not None and config_path.is_file():
        previous = json.loads(config_path.read_text())
        # A key the old run did not know yet had its default value then.
        defaults = asdict(TrainConfig())
        changed = {k for k, v in asdict(cfg).items()
                   if previous.get(k, defaults[k]) != v and k not in ("epochs", "max_steps", "workers", "threads", "channels_last")}
        if changed:
            raise ValueError(f"{out}: holds a run with other settings ({sorted(changed)}); use another --out")
    if ddp.main:
        _write_json(config_path, asdict(cfg))
    return state


def _build_trainer(cfg: TrainConfig, out: Path, state: dict[str, Any] | None, ddp: _Dist,
                   device: torch.device) -> _Trainer:
    """The extractor (resumed, initialised from ``cfg.init_weights`` or fresh) and its optimiser.

    Raises:
        ValueError: ``cfg.backbone`` is a fusion of several backbones.
    """
    if state is not None:
        model = build_extractor(weights=out / "latest.safetensors")
    elif cfg.init_weights:
        model = build_extractor(cfg.backbone, weights=cfg.init_weights, **cfg.backbone_kwargs)
    else:
        model = build_extractor(cfg.backbone, **cfg.backbone_kwargs)
    if not isinstance(model, Extractor):
        raise ValueError("train one backbone at a time")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    if ddp.world > 1:
        ids = [ddp.local_rank] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None and (out / "latest.optim.pt").is_file():
        opt.load_state_dict(torch.load(out / "latest.optim.pt", map_location=device, weights_only=True))
    use_amp = cfg.amp and device.type == "cuda"
    return _Trainer(model, net, opt, torch.amp.GradScaler("cuda", enabled=use_amp), use_amp, device)


def _train_epoch(cfg: TrainConfig, tr: _Trainer, train_ds: Dataset, sampler: DistributedSampler | None,
                 epoch: int, step: int, ddp: _Dist) -> tuple[float, int]:
    """One pass over ``train_ds`` (or up to ``cfg.max_steps``): the mean loss over all ranks, the step count after."""
    from tqdm import tqdm

    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(epoch)  # new augmentation draws per epoch, still deterministic
    if sampler is not None:
        sampler.set_epoch(epoch)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    loader = DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, generator=gen,
        num_workers=cfg.workers, drop_last=len(train_ds) >= cfg.batch_size, persistent_workers=False,
    )
    tr.net.train()
    losses = []
    # A live bar on a terminal; in logs (CI, nohup) one line every 30 s.
    tty = sys.stderr.isatty()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not ddp.main, leave=False,
               dynamic_ncols=True, mininterval=0.1 if tty else 30.0, file=sys.stderr)
    loss_gen = torch.Generator().manual_seed(cfg.seed + epoch)
    for batch in bar:
        images = batch["image"].to(tr.device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = batch["mask"].to(tr.device, non_blocking=True)
        with torch.autocast(device_type=tr.device.type, dtype=torch.float16, enabled=tr.use_amp):
            feats = tr.net(images)
        loss = _loss(cfg, feats, masks, loss_gen)
        tr.opt.zero_grad(set_to_none=True)
        tr.scaler.scale(loss).backward()
        tr.scaler.step(tr.opt)
        tr.scaler.update()
        losses.append(float(loss.detach()))
        step += 1
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    bar.close()
    mean_loss = float(np.mean(losses)) if losses else float("nan")
    if ddp.world > 1:
        t = torch.tensor([mean_loss], device=tr.device)
        dist.all_reduce(t)
        mean_loss = float(t.item()) / ddp.world
    return mean_loss, step


def _end_epoch(cfg: TrainConfig, tr: _Trainer, val_ds: Dataset | None, run: _RunState, epoch: int,
               mean_loss: float, out: Path) -> None:
    """Validate when due, write ``latest`` (and ``best`` on a new best IoU), the history, the state and the curves."""
    record: dict[str, Any] = {"epoch": epoch + 1, "loss": mean_loss, "steps": run.step}
    last = epoch + 1 == cfg.epochs or (cfg.max_steps is not None and run.step >= cfg.max_steps)
    if val_ds is not None and ((epoch + 1) % cfg.val_every == 0 or last):
        record["val"] = validate(tr.model, val_ds, cfg.val_clustering, tr.device,
                                 native_validation(cfg, tr.model.stride))
    meta = {"epoch": epoch + 1, "step": run.step, "loss": mean_loss, "val": record.get("val"), "config": asdict(cfg)}
    save_checkpoint(tr.model, out / "latest.safetensors", extra=meta)
    with atomic_output(out / "latest.optim.pt") as tmp:
        torch.save(tr.opt.state_dict(), tmp)
    if "val" in record and (run.best is None or record["val"]["iou"] > run.best["iou"]):
        run.best = dict(record["val"], epoch=epoch + 1)
        save_checkpoint(tr.model, out / "best.safetensors", extra=meta)
    run.history.append(record)
    _append_history(out, record)
    _write_json(out / "state.json", {"epoch": epoch + 1, "step": run.step, "best": run.best})
    plot_history(run.history, out / "curves.png")
    val_txt = (f"; val IoU {record['val']['iou']:.3f} (forged only {record['val']['iou_forged']:.3f}) "
               f"F1 {record['val']['f1']:.3f} "
               f"false alarms {record['val']['false_alarm']:.2f}") if "val" in record else ""
    print(f"focal-train: epoch {epoch + 1}/{cfg.epochs} loss {mean_loss:.4f}{val_txt}", file=sys.stderr, flush=True)


def _summary(out: Path, run: _RunState, seconds: float) -> TrainSummary:
    losses = [h["loss"] for h in run.history if h.get("loss") is not None]
    return TrainSummary(
        out=out, epochs=max((h["epoch"] for h in run.history), default=0), steps=run.step,
        first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
        initial_val=next((h["val"] for h in run.history if h["epoch"] == 0 and "val" in h), None),
        best_val=run.best, seconds=seconds,
    )


def train(cfg: TrainConfig) -> TrainSummary:
    """Train ``cfg.backbone`` with SCL (or NCE) and write the run folder.

    Resumes automatically when ``cfg.out`` holds a run with the same config.

    Raises:
        ValueError: the run folder holds a run with another config, or bad data settings
            (synthetic data without ``cfg.photos`` is refused before anything is written).
    """
    _check_photos(cfg)
    native_validation(cfg, backbone_info(cfg.backbone).stride)  # a cap the export would refuse, before any work
    t_start = time.perf_counter()
    ddp = _dist_setup()
    device = torch.device(f"cuda:{ddp.local_rank}" if torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    state = _prepare_run(cfg, out, ddp)
    torch.manual_seed(cfg.seed)
    train_ds, val_ds, desc = build_datasets(cfg)
    tr = _build_trainer(cfg, out, state, ddp, device)
    start_epoch = int(state["epoch"]) if state else 0
    run = _RunState(step=int(state["step"]) if state else 0, best=state.get("best") if state else None,
                    history=_history(out))
    if ddp.main:
        print(f"focal-train: {cfg.backbone} ({sum(p.numel() for p in tr.model.parameters()) / 1e6:.1f} M params) "
              f"on {device}{f' x{ddp.world}' if ddp.world > 1 else ''}; data: {desc}; "
              + (f"resuming after epoch {start_epoch}" if state else "new run"), file=sys.stderr, flush=True)
    if ddp.main and val_ds is not None and state is None:
        initial = validate(tr.model, val_ds, cfg.val_clustering, device, native_validation(cfg, tr.model.stride))
        run.history.append({"epoch": 0, "loss": None, "val": initial})
        _append_history(out, run.history[-1])
        print(f"focal-train: before training: val IoU {initial['iou']:.3f} F1 {initial['f1']:.3f} "
              f"false alarms {initial['false_alarm']:.2f}", file=sys.stderr, flush=True)

    sampler = DistributedSampler(train_ds, num_replicas=ddp.world, rank=ddp.rank, seed=cfg.seed) if ddp.world > 1 else None
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and run.step >= cfg.max_steps:
            break
        mean_loss, run.step = _train_epoch(cfg, tr, train_ds, sampler, epoch, run.step, ddp)
        if ddp.main:
            _end_epoch(cfg, tr, val_ds, run, epoch, mean_loss, out)
        if ddp.world > 1:
            dist.barrier()
    if ddp.world > 1:
        dist.destroy_process_group()
    return _summary(out, run, time.perf_counter() - t_start)
