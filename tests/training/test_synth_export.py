"""focal-synth writes exactly the forgeries training validates on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from focal.training.data import DatasetConfig, FolderDataset, SyntheticDataset, split_by_file, list_images
from focal.training.data.export import SynthExportConfig, export_synthetic
from focal.training.data.synthetic import SyntheticConfig, SyntheticForgeryGenerator
from focal.training.synth_cli import main as synth_main

PHOTOS = ("train_100075.jpg", "test_100007.jpg", "val_101085.jpg", "train_12003.jpg", "train_12074.jpg",
          "test_100039.jpg")


@pytest.fixture()
def photo_pool(shared_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for name in PHOTOS:
        src = shared_data / "natural/bsds500" / name
        if not src.is_file():
            pytest.skip(f"{src} missing")
        shutil.copy(src, root / name)
    return root


def test_written_set_equals_the_training_validation_samples(photo_pool: Path, shared_data: Path, tmp_path: Path) -> None:
    seg = shared_data / "natural/bsds500_groundTruth_mat"
    cfg = SynthExportConfig(out=str(tmp_path / "set"), photos=str(photo_pool), segmentations=str(seg),
                            val_fraction=0.5, split_seed=3, count=7, seed=4, max_side=160,
                            authentic_list=str(tmp_path / "heldout.json"))
    counts = export_synthetic(cfg, progress=False)
    assert counts["samples"] == 7 and counts["forged"] + counts["authentic"] == 7

    # The validation dataset focal-train builds for seed 3 (its validation stream is seed + 1 = 4).
    split = split_by_file(list_images(photo_pool), 0.5, seed=3)
    assert counts["photos"] == len(split.val) > 0
    gen = SyntheticForgeryGenerator(split.val, SyntheticConfig(max_side=160), seg)
    val = SyntheticDataset(gen, 7, DatasetConfig(size=64, augment=None, seed=4))
    written = FolderDataset(tmp_path / "set/images", tmp_path / "set/masks", DatasetConfig(size=64, augment=None))
    assert len(written) == 7
    for i in range(7):
        a, b = val[i], written[i]
        assert torch.equal(a["image"], b["image"]), i
        assert torch.equal(a["mask"], b["mask"]), i
    records = [json.loads(line) for line in (tmp_path / "set/samples.jsonl").read_text().splitlines()]
    assert [r["kind"] == "authentic" for r in records] == [not (tmp_path / f"set/masks/syn_{i:03d}.png").exists()
                                                           for i in range(7)]
    listing = json.loads((tmp_path / "heldout.json").read_text())
    assert sorted(Path(p).name for p, m in listing) == sorted(p.name for p in split.val)
    assert all(m == "Negative" for _, m in listing)


def test_cli_reports_a_missing_photo_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_main(["--out", str(tmp_path / "x"), "--photos", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(ValueError, match="split"):
        SynthExportConfig(out="x", split="test")


def test_photos_are_required_not_defaulted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # The library config holds no repo-relative data path; the CLI names where the photos come from.
    assert SynthExportConfig(out="x", photos="p").segmentations is None
    for missing in (None, ""):
        with pytest.raises(ValueError, match=r"photos is required.*--photos.*\$FOCAL_PHOTOS"):
            SynthExportConfig(out="x", photos=missing)
    monkeypatch.delenv("FOCAL_PHOTOS", raising=False)
    with pytest.raises(SystemExit) as exc:
        synth_main(["--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "--photos DIR is required" in capsys.readouterr().err
