"""Tests of focal.training.data: file reading, datasets, augmentation,
synthetic forgeries and the photo split.

Shared data (natural photos, BSDS500 segmentations, real forgeries) is read
from ../shared/data next to the repository (or $FOCAL_SHARED_DATA, or
$FOCAL_SHARED/data as in tests/conftest.py); tests that need it skip with the
reason when it is absent. The synthetic-forgery tests take the ``photos``
fixture (BSDS500, else generated photos) and the BSDS500 segmentations where
present (else the generator's own region shapes). Everything else runs on
tiny images written to a temporary folder.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from focal.training.data import (
    AugmentConfig,
    DatasetConfig,
    FolderDataset,
    JsonListDataset,
    NpyListDataset,
    SyntheticConfig,
    SyntheticDataset,
    SyntheticForgeryGenerator,
    augment,
    decode_image,
    list_images,
    load_segmentations,
    pick_segment,
    read_image,
    read_mask,
    read_npy_file_list,
    split_by_file,
)

SHARED = Path(os.environ.get("FOCAL_SHARED_DATA")
              or Path(os.environ.get("FOCAL_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data")
BSDS = SHARED / "natural" / "bsds500"
BSDS_GT = SHARED / "natural" / "bsds500_groundTruth_mat"
REAL = SHARED / "real-samples"

MAGENTA = np.array([255, 0, 255], dtype=np.uint8)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set FOCAL_SHARED_DATA to the data folder, or FOCAL_SHARED)")
    return path


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def _write_mask(path: Path, mask: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)
    return path


@pytest.fixture()
def pair_folders(tmp_path: Path) -> dict:
    """Three 40 x 60 images: a and c with masks at different places, b authentic.

    Each image has its forged block painted white on a background whose
    values stay below 200, so a mask paired with the wrong image shows.
    """
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    blocks = {"a": (slice(4, 14), slice(6, 20)), "c": (slice(22, 36), slice(30, 54))}
    expected = {}
    for stem in ("a", "b", "c"):
        image = rng.integers(0, 200, size=(40, 60, 3), dtype=np.uint8)
        mask = np.zeros((40, 60), dtype=bool)
        if stem in blocks:
            mask[blocks[stem]] = True
            image[mask] = 255
            _write_mask(masks / f"{stem}.png", mask)
        _write_rgb(images / f"{stem}.png", image)
        expected[stem] = (image, mask)
    _write_mask(masks / "orphan.png", np.ones((40, 60), dtype=bool))  # a mask without image: ignored
    return {"images": images, "masks": masks, "expected": expected, "root": tmp_path}


# --------------------------------------------------------------------------
# Decoding


def test_decode_gray_16bit_rgba_and_channel_order(tmp_path: Path) -> None:
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    assert cv2.imwrite(str(tmp_path / "gray.png"), gray)
    out = read_image(tmp_path / "gray.png")
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    assert np.array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))

    deep = (np.arange(12 * 10 * 3, dtype=np.uint32).reshape(12, 10, 3) * 181).astype(np.uint16)
    deep[0, 0] = (65535, 257 * 100, 0)  # BGR on disk
    assert cv2.imwrite(str(tmp_path / "deep.png"), deep)
    out = read_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    assert np.array_equal(out, np.rint(deep[:, :, ::-1] / 257.0).astype(np.uint8))
    assert tuple(out[0, 0]) == (0, 100, 255)

    deep_gray = np.full((5, 7), 257 * 42, dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "deep_gray.png"), deep_gray)
    assert np.array_equal(read_image(tmp_path / "deep_gray.png"), np.full((5, 7, 3), 42, np.uint8))

    bgra = np.zeros((6, 6, 4), dtype=np.uint8)
    bgra[..., 2] = 200  # red in OpenCV's BGR(A) order
    bgra[..., 3] = 10  # nearly transparent: alpha is dropped, not composited
    assert cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (6, 6, 3) and tuple(out[0, 0]) == (200, 0, 0)


@pytest.mark.parametrize(
    "name, content",
    [
        ("text.png", b"this is not an image at all"),
        ("empty.jpg", b""),
        ("truncated.png", "TRUNCATE"),
    ],
)
def test_decode_bad_file_raises_value_error_naming_it(tmp_path: Path, name: str, content) -> None:
    path = tmp_path / name
    if content == "TRUNCATE":
        ok, encoded = cv2.imencode(".png", np.zeros((30, 30, 3), np.uint8))
        content = encoded.tobytes()[:40]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=name):
        read_image(path)
    with pytest.raises(ValueError, match=name):
        read_mask(path)


def test_decode_missing_file_and_pixel_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    _write_rgb(tmp_path / "big.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="big.png.*max_pixels"):
        read_image(tmp_path / "big.png", max_pixels=399)
    assert read_image(tmp_path / "big.png", max_pixels=400).shape == (20, 20, 3)
    # A decompression bomb: a PNG header declaring 100000 x 100000 pixels is
    # refused from the header, before OpenCV allocates anything.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ValueError, match="bomb.png.*10000000000 pixels"):
        decode_image(b"\x89PNG\r\n\x1a\n" + chunk, "bomb.png")


def test_read_mask_thresholds_at_half(tmp_path: Path) -> None:
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "m.png"), values)
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]


# --------------------------------------------------------------------------
# Datasets


def test_folder_dataset_pairs_by_stem_and_mask_less_is_authentic(pair_folders: dict) -> None:
    size = 32
    dataset = FolderDataset(pair_folders["images"], pair_folders["masks"], DatasetConfig(size=size))
    assert len(dataset) == 3
    for index, stem in enumerate(("a", "b", "c")):
        item = dataset[index]
        image, mask = pair_folders["expected"][stem]
        assert Path(item["path"]).name == f"{stem}.png"
        assert item["authentic"] is (stem == "b")
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, size, size)
        assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, size, size)
        # The inference rule: OpenCV bilinear to S x S, aspect not kept, RGB in [0, 1].
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        assert torch.equal(item["image"], torch.from_numpy(resized).permute(2, 0, 1).float() / 255)
        nearest = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
        assert torch.equal(item["mask"][0], torch.from_numpy(nearest).float())
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        if stem == "b":
            assert not item["mask"].any()
        else:  # the right mask: it marks this image's white block
            assert item["mask"].sum() > 0
            # (bilinear blends the block's edge, so judge the average)
            assert item["image"][:, item["mask"][0] > 0].mean() > 0.9
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])  # DataLoader-ready
    assert batch["image"].shape == (2, 3, size, size) and batch["authentic"].tolist() == [False, True]


def test_dataset_input_matches_the_runtime_preprocessing(pair_folders: dict) -> None:
    preprocess = pytest.importorskip("focal.runtime.preprocess", reason="focal.runtime.preprocess not available")
    image, _ = pair_folders["expected"]["a"]
    item = FolderDataset(pair_folders["images"], pair_folders["masks"], DatasetConfig(size=48))[0]
    assert np.array_equal(item["image"].numpy(), preprocess.to_input(image, 48))


def test_folder_dataset_rejects_ambiguous_stems_and_mismatched_masks(pair_folders: dict) -> None:
    images, masks = pair_folders["images"], pair_folders["masks"]
    _write_mask(masks / "b.png", np.zeros((10, 10), dtype=bool))  # wrong size for b (40 x 60)
    dataset = FolderDataset(images, masks, DatasetConfig(size=16))
    with pytest.raises(ValueError, match="b.png"):
        dataset[1]
    _write_rgb(images / "a.jpg", np.zeros((8, 8, 3), np.uint8))  # a.png and a.jpg: which one?
    with pytest.raises(ValueError, match="'a'"):
        FolderDataset(images, masks)


def test_npy_and_json_lists_load_the_same_samples(pair_folders: dict) -> None:
    root, images, masks = pair_folders["root"], pair_folders["images"], pair_folders["masks"]
    config = DatasetConfig(size=24)
    folder = FolderDataset(images, masks, config)

    # Release format: string array [N, 2], empty mask = authentic; relative
    # paths against the .npy's folder.
    rows = [["images/a.png", "masks/a.png"], ["images/b.png", ""], ["images/c.png", "masks/c.png"]]
    np.save(root / "list.npy", np.array(rows))
    # IMDL-BenCo format: JSON list, "Negative" = authentic, relative paths
    # against the JSON's folder.
    lists = root / "lists"
    lists.mkdir()
    entries = [
        ["../images/a.png", "../masks/a.png"],
        ["../images/b.png", "Negative"],
        [str(images / "c.png"), str(masks / "c.png")],  # absolute paths stay as they are
    ]
    (lists / "list.json").write_text(json.dumps(entries))

    npy = NpyListDataset(root / "list.npy", config)
    js = JsonListDataset(lists / "list.json", config)
    assert len(npy) == len(js) == len(folder) == 3
    for index in range(3):
        want = folder[index]
        for other in (npy[index], js[index]):
            assert Path(other["path"]).resolve() == Path(want["path"]).resolve()
            assert other["authentic"] == want["authentic"]
            assert torch.equal(other["image"], want["image"])
            assert torch.equal(other["mask"], want["mask"])


def test_file_lists_reject_bad_content(tmp_path: Path) -> None:
    objects = np.empty((1, 2), dtype=object)
    objects[0] = ("a.png", None)
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy.*allow_pickle"):
        read_npy_file_list(tmp_path / "objects.npy")
    pairs = read_npy_file_list(tmp_path / "objects.npy", allow_pickle=True)
    assert pairs[0].image == tmp_path / "a.png" and pairs[0].mask is None

    (tmp_path / "text.npy").write_text("image.png,mask.png\n")
    with pytest.raises(ValueError, match="text.npy: not a .npy file"):
        read_npy_file_list(tmp_path / "text.npy")
    np.save(tmp_path / "flat.npy", np.array(["a.png", "b.png", "c.png"]))
    with pytest.raises(ValueError, match=r"flat.npy.*\[N, 2\]"):
        read_npy_file_list(tmp_path / "flat.npy")
    (tmp_path / "bad.json").write_text('[["a.png", "m.png"], ["only-one"]]')
    with pytest.raises(ValueError, match="bad.json: entry 1"):
        JsonListDataset(tmp_path / "bad.json")
    (tmp_path / "missing.json").write_text('[["nowhere.png", "Negative"]]')
    with pytest.raises(ValueError, match="nowhere.png"):
        JsonListDataset(tmp_path / "missing.json")


def test_real_forgeries_load_with_non_empty_masks() -> None:
    _need(REAL)
    dataset = FolderDataset(REAL / "images", REAL / "masks", DatasetConfig(size=64))
    assert len(dataset) == 11
    for index in range(len(dataset)):
        item = dataset[index]
        assert not item["authentic"], item["path"]
        assert 0 < item["mask"].mean() < 0.5, item["path"]
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0


# --------------------------------------------------------------------------
# Augmentation

_OFF = dict(
    p_downscale=0.0, p_hflip=0.0, p_vflip=0.0, p_rot90=0.0, p_color=0.0, p_blur=0.0, p_noise=0.0, p_jpeg=0.0
)


def _magenta_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 64 x 96 image whose forged block (aligned to 4 pixels) is the only
    magenta: the background keeps green >= 60, so no average of it is magenta."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(64, 96, 3)).astype(np.uint8)
    image[..., 1] = rng.integers(60, 256, size=(64, 96))
    mask = np.zeros((64, 96), dtype=bool)
    mask[8:24, 12:44] = True
    mask[40:56, 60:68] = True  # a second, off-centre piece catches transposed outputs
    image[mask] = MAGENTA
    return image, mask


@pytest.mark.parametrize(
    "geometry",
    [
        dict(p_hflip=1.0),
        dict(p_vflip=1.0),
        dict(p_rot90=1.0),
        dict(p_downscale=1.0, downscale_range=(0.5, 0.5)),
    ],
    ids=["hflip", "vflip", "rot90", "downscale-half"],
)
def test_mask_follows_every_geometric_augmentation_exactly(geometry: dict) -> None:
    image, mask = _magenta_scene()
    config = AugmentConfig(**{**_OFF, **geometry})
    shapes = set()
    for seed in range(8):
        out = augment(image, mask, np.random.default_rng(seed), config)
        assert out.mask.dtype == np.bool_ and out.mask.shape == out.image.shape[:2]
        assert out.mask.any()
        assert np.array_equal(out.mask, np.all(out.image == MAGENTA, axis=2))
        shapes.add(out.image.shape)
        assert out.mask.shape != mask.shape or not np.array_equal(out.mask, mask)  # it did act
    if "p_rot90" in geometry:  # quarter and half turns both happened
        assert shapes == {(96, 64, 3), (64, 96, 3)}


def test_mask_follows_arbitrary_downscale_and_survives_photometric_ops() -> None:
    image, mask = _magenta_scene()
    geometric = AugmentConfig(
        **{**_OFF, "p_downscale": 1.0, "downscale_range": (0.55, 0.9), "p_hflip": 0.5, "p_rot90": 0.5}
    )
    everything = AugmentConfig(
        p_downscale=1.0, downscale_range=(0.55, 0.9), p_hflip=0.5, p_vflip=0.0, p_rot90=0.5,
        p_color=1.0, p_blur=1.0, p_noise=1.0, p_jpeg=1.0,
    )
    for seed in range(4):
        geo = augment(image, mask, np.random.default_rng(seed), geometric)
        # Away from a 1-pixel resampling fringe, the mask is exactly the magenta.
        near_magenta = np.abs(geo.image.astype(int) - MAGENTA).max(axis=2) < 100
        agree = (geo.mask == near_magenta).mean()
        assert agree > 0.97, agree
        assert geo.mask.sum() > 0.5 * mask.sum() * (geo.image.size / image.size)
        # Photometric ops change the image only: same geometry, same mask.
        full = augment(image, mask, np.random.default_rng(seed), everything)
        assert np.array_equal(full.mask, geo.mask)
        assert full.image.shape == geo.image.shape and not np.array_equal(full.image, geo.image)


def test_augmentation_is_deterministic_and_validates_config() -> None:
    image, mask = _magenta_scene()
    config = AugmentConfig(p_downscale=0.5, p_color=1.0, p_noise=1.0, p_jpeg=1.0)
    one = augment(image, mask, np.random.default_rng(7), config)
    two = augment(image, mask, np.random.default_rng(7), config)
    assert np.array_equal(one.image, two.image) and np.array_equal(one.mask, two.mask)
    with pytest.raises(ValueError, match="p_hflip"):
        AugmentConfig(p_hflip=1.5)
    with pytest.raises(ValueError, match="jpeg_quality_range"):
        AugmentConfig(jpeg_quality_range=(90, 50))


# --------------------------------------------------------------------------
# Synthetic forgeries

_PHOTOS = ("train_100075.jpg", "test_100007.jpg", "val_101085.jpg", "train_12003.jpg")


def _photos(photos: Path) -> list[Path]:
    """Four photos of the ``photos`` fixture: the same BSDS500 ones each run, else the first generated ones."""
    named = [photos / name for name in _PHOTOS]
    return named if all(p.is_file() for p in named) else sorted(photos.glob("*.jpg"))[:4]


def _segmentations() -> Path | None:
    return BSDS_GT if BSDS_GT.is_dir() else None


def _only(kind: str, **changes) -> SyntheticConfig:
    weights = {"weight_splice": 0.0, "weight_copy_move": 0.0, "weight_inpaint": 0.0, f"weight_{kind}": 1.0}
    return SyntheticConfig(p_authentic=0.0, **weights, **changes)


def test_generator_is_deterministic_by_seed(photos: Path) -> None:
    generator = SyntheticForgeryGenerator(_photos(photos), SyntheticConfig(p_authentic=0.0, max_side=200),
                                          _segmentations())
    for index in range(3):
        one = generator.generate(index, np.random.default_rng(11))
        two = generator.generate(index, np.random.default_rng(11))
        other = generator.generate(index, np.random.default_rng(12))
        assert one.image.tobytes() == two.image.tobytes() and one.mask.tobytes() == two.mask.tobytes()
        assert one.kind == two.kind and one.donor == two.donor
        assert one.image.tobytes() != other.image.tobytes() or one.mask.tobytes() != other.mask.tobytes()


@pytest.mark.parametrize("kind", ["splice", "copy_move", "inpaint"])
def test_each_manipulation_makes_a_real_forgery_within_the_area_range(kind: str, photos: Path) -> None:
    area = (0.04, 0.3)
    config = _only(kind, area_range=area, p_final_jpeg=0.0, feather_sigma_range=(0.0, 1.5), max_side=240)
    generator = SyntheticForgeryGenerator(_photos(photos), config, _segmentations())
    # Radius 7: beyond the reach of the feather's blur kernel (radius 6 at sigma 1.5).
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    for index in range(4):
        sample = generator.generate(index, np.random.default_rng(100 + index))
        source = read_image(sample.host)
        source = cv2.resize(source, sample.image.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert sample.kind == kind and not sample.authentic
        assert sample.mask.dtype == np.bool_ and sample.mask.shape == sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape == source.shape
        assert area[0] <= sample.mask.mean() <= area[1]
        assert (sample.donor is not None) == (kind == "splice") and sample.donor != sample.host
        # Pixels far from the forged region are the untouched photo, exactly.
        far = cv2.dilate(sample.mask.astype(np.uint8), ring) == 0
        assert np.array_equal(sample.image[far], source[far])
        # Pixels inside the region really changed (nearly all of them: the
        # mask claims no untouched area).
        diff = np.abs(sample.image.astype(int) - source.astype(int)).max(axis=2)[sample.mask]
        changed = (diff > 3).mean()
        assert diff.mean() > 10 and changed > (0.8 if kind == "inpaint" else 0.9), (diff.mean(), changed)


@pytest.mark.parametrize("kind", ["splice", "copy_move", "inpaint"])
def test_awkward_photos_still_give_forgeries_in_range(tmp_path: Path, kind: str) -> None:
    # A panorama, a tall strip and a tiny image with a large area range: few
    # random regions fit, so the rectangle fallback must.
    rng = np.random.default_rng(0)
    photos = [
        _write_rgb(tmp_path / f"{name}.png", rng.integers(0, 256, size=shape, dtype=np.uint8))
        for name, shape in (("pano", (30, 300, 3)), ("tall", (240, 24, 3)), ("tiny", (16, 18, 3)))
    ]
    area = (0.3, 0.5)
    generator = SyntheticForgeryGenerator(photos, _only(kind, area_range=area, p_final_jpeg=0.0, max_attempts=2))
    for index in range(6):
        sample = generator.generate(index, np.random.default_rng(index))
        assert area[0] <= sample.mask.mean() <= area[1], (sample.host.name, sample.mask.mean())
        if kind != "inpaint":  # noise images: moved or pasted content differs almost everywhere
            source = read_image(sample.host)
            diff = np.abs(sample.image.astype(int) - source.astype(int)).max(axis=2)[sample.mask]
            assert (diff > 3).mean() > 0.8
    with pytest.raises(ValueError, match="tiny.png.*area_range"):  # 288 pixels: no share of exactly 0.37
        SyntheticForgeryGenerator(photos, _only(kind, area_range=(0.37, 0.37), max_attempts=1)).generate(
            2, np.random.default_rng(0)
        )


def test_authentic_samples_have_empty_masks(photos: Path) -> None:
    photos = _photos(photos)
    plain = SyntheticForgeryGenerator(photos, SyntheticConfig(p_authentic=1.0, p_final_jpeg=0.0))
    sample = plain.generate(1, np.random.default_rng(0))
    assert sample.authentic and sample.kind == "authentic" and not sample.mask.any()
    assert np.array_equal(sample.image, read_image(photos[1]))
    recompressed = SyntheticForgeryGenerator(photos, SyntheticConfig(p_authentic=1.0, p_final_jpeg=1.0))
    sample = recompressed.generate(1, np.random.default_rng(0))
    assert not sample.mask.any() and not np.array_equal(sample.image, read_image(photos[1]))


def test_synthetic_dataset_is_fixed_per_index_and_seed(photos: Path) -> None:
    generator = SyntheticForgeryGenerator(_photos(photos), SyntheticConfig(p_authentic=0.3, max_side=160),
                                          _segmentations())
    config = DatasetConfig(size=32, augment=AugmentConfig(), seed=5)
    first = SyntheticDataset(generator, length=6, config=config)
    again = SyntheticDataset(generator, length=6, config=config)
    reseeded_config = DatasetConfig(size=32, augment=AugmentConfig(), seed=6)
    reseeded = SyntheticDataset(generator, length=6, config=reseeded_config)
    for index in (0, 4, 5):
        a, b, c = first[index], again[index], reseeded[index]
        assert a["image"].shape == (3, 32, 32) and a["mask"].shape == (1, 32, 32)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert not torch.equal(a["image"], c["image"])
        assert a["authentic"] == (not a["mask"].any())
        assert Path(a["path"]) == generator.photos[index % len(generator)]
    with pytest.raises(IndexError):
        first[6]


def test_synthetic_config_validates() -> None:
    with pytest.raises(ValueError, match="area_range"):
        SyntheticConfig(area_range=(0.3, 0.1))
    with pytest.raises(ValueError, match="p_authentic"):
        SyntheticConfig(p_authentic=-0.1)
    with pytest.raises(ValueError, match="two photos"):
        SyntheticForgeryGenerator([Path("one.jpg")], SyntheticConfig())


def test_bsds_segmentations_give_object_regions() -> None:
    maps = load_segmentations(_need(BSDS_GT) / "test_100007.mat")
    assert len(maps) == 5
    assert all(m.dtype == np.uint16 and m.shape == (321, 481) and m.min() >= 1 for m in maps)
    region = pick_segment(maps, np.random.default_rng(0), (0.01, 0.3))
    assert region is not None and region.shape == (321, 481) and 0.005 < region.mean() <= 0.3


# --------------------------------------------------------------------------
# Photo listing and split


def test_list_images_is_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.jpeg", "sub/deeper/d.tif", ".hidden/e.png", "notes.txt", "sub/f.mat"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/d.tif"]
    with pytest.raises(ValueError, match="not a folder"):
        list_images(tmp_path / "nowhere")


def test_split_is_disjoint_deterministic_and_stable_per_file(tmp_path: Path) -> None:
    if BSDS.is_dir():
        photos = list_images(BSDS)
    else:  # the split reads file names only: 500 stand-ins for BSDS500's
        for i in range(500):
            (tmp_path / f"photo_{i:03d}.jpg").write_bytes(b"x")
        photos = list_images(tmp_path)
    assert len(photos) == 500
    split = split_by_file(photos, 0.2, seed=0)
    assert set(split.train).isdisjoint(split.val)
    assert set(split.train) | set(split.val) == set(photos)
    assert 0.12 < len(split.val) / len(photos) < 0.28
    again = split_by_file(list(reversed(photos)), 0.2, seed=0)  # order does not matter
    assert set(again.val) == set(split.val) and set(again.train) == set(split.train)
    assert split_by_file(photos, 0.2, seed=1).val != split.val
    # A photo's side depends on the photo alone: a subset keeps every side.
    subset = split_by_file(photos[::3], 0.2, seed=0)
    assert set(subset.val) == set(split.val) & set(photos[::3])
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_file(photos, 1.5)


def test_crop_sample_keeps_the_pixels_and_finds_the_forgery() -> None:
    from focal.training.data.datasets import crop_sample

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[250:270, 350:380] = True  # a small forged patch in a corner
    hits = 0
    for _ in range(200):
        crop, cmask = crop_sample(image, mask, 128, rng)
        assert crop.shape == (128, 128, 3) and cmask.shape == (128, 128)
        # The window is a slice of the image: no resampling.
        ys, xs = np.nonzero((image[..., 0] == crop[0, 0, 0]) & (image[..., 1] == crop[0, 0, 1]))
        assert any(np.array_equal(image[y : y + 128, x : x + 128], crop) for y, x in zip(ys, xs))
        hits += bool(cmask.any())
    assert 0.7 <= hits / 200 <= 0.95  # most windows hold the patch; a uniform one rarely would
    small, smask = crop_sample(image[:100, :150], mask[:100, :150], 128, rng)
    assert small.shape == (128, 128, 3) and smask.shape == (128, 128)  # enlarged just enough
