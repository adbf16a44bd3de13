"""focal-train end to end on CPU: a real (tiny) run on synthetic forgeries, resume, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from focal.training.checkpoints import read_state_dict
from focal.training.cli import main
from focal.training.config import TrainConfig, load_config
from focal.training.train import build_datasets, downsample_mask, train


def _args(photos: Path, out: Path, *extra: str) -> list[str]:
    # BSDS500 shapes sit beside the shared photos; generated photos have none (random polygons).
    seg = photos.parent / "bsds500_groundTruth_mat"
    if seg.is_dir():
        data = ["--segmentations", str(seg)]
    else:
        # The generated photos are few: hold out half, so validation has a host and a donor to splice.
        few = out.parent / f"{out.name}-few-photos.json"
        few.write_text(json.dumps({"val_fraction": 0.5}))
        data = ["--config", str(few)]
    return ["--preset", "smoke", "--photos", str(photos), *data, "--out", str(out), *extra]


def test_run_writes_checkpoints_history_and_curves(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_args(photos, out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and summary["steps"] == 4
    for name in ("latest.safetensors", "latest.json", "best.safetensors", "best.json", "latest.optim.pt",
                 "state.json", "history.jsonl", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]  # validation before training, then epoch 1
    assert 0.0 <= history[1]["val"]["iou"] <= 1.0

    # Resume: a second invocation with more epochs continues, it does not restart.
    assert main(_args(photos, out, "--epochs", "2")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 2 and summary["steps"] == 8
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2]

    # Another recipe in the same folder is refused rather than mixed in.
    assert main(_args(photos, out, "--lr", "0.5")) == 2
    assert "other settings" in capsys.readouterr().err


def test_same_seed_same_weights(photos: Path, tmp_path: Path, capsys) -> None:
    for name in ("a", "b"):
        assert main(_args(photos, tmp_path / name, "--max-steps", "2")) == 0
    capsys.readouterr()
    a = read_state_dict(tmp_path / "a/latest.safetensors")
    b = read_state_dict(tmp_path / "b/latest.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = read_state_dict(tmp_path / "a/best.safetensors")
    assert set(init) == set(a)


def test_downsample_mask_is_area_then_threshold() -> None:
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :3] = 1  # the top-left 4x4 cell is 3/4 forged
    small = downsample_mask(mask, (2, 2))
    # Cell (0, 0) covers columns 0-3 of which 3 are forged (0.75 > 0.5); cell (0, 1) none.
    assert small[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_library_train_without_photos_says_which_setting(tmp_path: Path) -> None:
    # TrainConfig() has synthetic data and no photos: refused by name, before the run folder exists.
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"photos is required.*--photos.*\$FOCAL_PHOTOS"):
        train(TrainConfig(out=str(out)))
    assert not out.exists()
    with pytest.raises(ValueError, match="photos is required"):
        build_datasets(TrainConfig(out=str(out)))


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        load_config(preset="huge")
    bad = tmp_path / "cfg.json"
    bad.write_text(json.dumps({"lr": 1e-3, "learning_rate": 2}))
    with pytest.raises(ValueError, match="unknown config keys \\['learning_rate'\\]"):
        load_config(bad)
    with pytest.raises(ValueError, match="train one backbone"):
        TrainConfig(backbone="vit+hrnet")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"lr": 1e-3, "epochs": 3}))
    cfg = load_config(good, preset="smoke", epochs=5)
    assert (cfg.lr, cfg.epochs, cfg.backbone) == (1e-3, 5, "tiny")  # preset < file < flags


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(photos: Path, tmp_path: Path) -> None:
    """The same command under torchrun trains with DistributedDataParallel (gloo on CPU)."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not found beside the interpreter")
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "focal.training.cli", *_args(photos, out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["steps"] == 2  # 8 samples, batch 2, split over 2 ranks: 2 steps each
    assert "on cpu x2" in proc.stderr
    assert (out / "latest.safetensors").is_file()


def test_fresh_forgeries_change_with_the_epoch_and_stay_deterministic(sample_data: Path) -> None:
    from focal.training.data import DatasetConfig, SyntheticDataset, SyntheticForgeryGenerator, list_images

    photos = list_images(sample_data / "natural/bsds500")[:12]
    for fresh in (False, True):
        ds = SyntheticDataset(SyntheticForgeryGenerator(photos), 3, DatasetConfig(size=64), fresh_per_epoch=fresh)
        first = ds[1]["mask"]
        ds.set_epoch(1)
        second = ds[1]["mask"]
        ds.set_epoch(0)
        assert torch.equal(ds[1]["mask"], first)  # deterministic per (epoch, index)
        assert torch.equal(first, second) is (not fresh)


def test_ranks_wait_for_rank_0_longer_than_torchs_default(monkeypatch) -> None:
    import datetime

    import torch.distributed as dist

    from focal.training import train as train_module

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    train_module._dist_setup()
    assert seen["timeout"] == datetime.timedelta(minutes=train_module.DDP_TIMEOUT_MINUTES)
    assert seen["timeout"] > datetime.timedelta(minutes=10)  # torch's default, which validation outlasts


def test_native_policy_trains_on_crops_and_validates_as_the_runtime_runs(photos: Path, tmp_path: Path,
                                                                          capsys) -> None:
    import numpy as np

    from focal.runtime.postprocess import localize
    from focal.training import ReferenceConfig, ReferenceDetector
    from focal.training.checkpoints import build_extractor
    from focal.training.train import _localize_sample, _min_cluster_size, native_validation

    out = tmp_path / "native"
    args = _args(photos, out, "--input-policy", "native", "--native-max-side", "192", "--max-points", "256")
    assert main(args) == 0
    capsys.readouterr()
    cfg = load_config(None, "smoke", photos=str(photos), input_policy="native", native_max_side=192, max_points=256)
    train_ds, val_ds, _ = build_datasets(cfg)
    assert tuple(train_ds[0]["image"].shape) == (3, 128, 128)  # a crop at the photo's own resolution
    model = build_extractor(weights=out / "latest.safetensors").eval()
    native = native_validation(cfg, model.stride)
    sample = val_ds[0]
    height, width = sample["image"].shape[1:]
    assert (height, width) != (128, 128) and max(height, width) > 192  # the whole sample: the cap applies
    got = _localize_sample(model, sample["image"], "kmeans", torch.device("cpu"), native)
    pixels = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ref = ReferenceDetector(model, ReferenceConfig(clustering="kmeans", policy="native", max_side=192, max_points=256))
    geometry = ref.geometry(height, width)
    gh, gw = geometry.grid
    want = localize(ref.feature_map(pixels), height, width, "kmeans", _min_cluster_size(gh * gw), geometry=geometry)
    assert got.mask.shape == (height, width) and np.array_equal(got.mask, want.mask)
    assert gh * gw <= 256


def test_native_policy_cap_off_the_stride_is_refused_before_any_work(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bad"
    assert main(_args(photos, out, "--input-policy", "native", "--native-max-side", "100")) == 2
    err = capsys.readouterr().err
    assert err.startswith("focal-train: ") and "100" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
