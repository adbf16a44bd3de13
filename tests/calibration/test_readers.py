"""Calibration readers: batches as the runtime preprocesses, JPEG cycling, descriptions, ORT protocol."""

from __future__ import annotations

import numpy as np
import pytest

from focal.calibration import (
    ArrayReader,
    DatasetReader,
    FolderReader,
    SyntheticReader,
    jpeg_roundtrip,
    list_image_files,
)
from focal.runtime.preprocess import to_input


def test_folder_reader_batches_match_runtime_preprocessing(few_photos):
    reader = FolderReader(few_photos, input_size=64, limit=None, jpeg_qualities=(None,), batch=2)
    batches = list(reader)
    assert len(reader) == 6 and len(batches) == 3  # the hidden file is skipped
    x = batches[0]["image"]
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    first = list_image_files(few_photos)[0]
    import cv2

    rgb = cv2.imread(str(first))[:, :, ::-1]
    np.testing.assert_array_equal(x[0], to_input(np.ascontiguousarray(rgb), 64))


def test_short_last_batch_is_padded_and_counts_recorded(few_photos):
    reader = FolderReader(few_photos, input_size=32, limit=5, batch=2, jpeg_qualities=(None, 90, 50))
    batches = list(reader)
    assert [b["image"].shape[0] for b in batches] == [2, 2, 2]
    np.testing.assert_array_equal(batches[-1]["image"][0], batches[-1]["image"][1])
    counts = reader.describe()["counts"]
    assert counts["images"] == 5
    assert counts["jpeg_qualities"] == {"original": 2, "90": 2, "50": 1}


def test_jpeg_qualities_change_the_pixels(few_photos):
    plain = next(iter(FolderReader(few_photos, 64, limit=1, jpeg_qualities=(None,))))["image"]
    heavy = next(iter(FolderReader(few_photos, 64, limit=1, jpeg_qualities=(30,))))["image"]
    assert np.abs(plain - heavy).max() > 0.01


def test_ort_protocol_get_next_and_rewind(few_photos):
    reader = FolderReader(few_photos, 32, limit=3)
    seen = []
    while (batch := reader.get_next()) is not None:
        seen.append(batch["image"])
    assert len(seen) == 3 and reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["image"], seen[0])


def test_fingerprint_is_stable_and_tracks_treatment(few_photos):
    a = FolderReader(few_photos, 64, limit=4)
    assert a.fingerprint() == FolderReader(few_photos, 64, limit=4).fingerprint()
    assert a.fingerprint() != FolderReader(few_photos, 64, limit=4, jpeg_qualities=(None, 80)).fingerprint()
    assert a.fingerprint() != FolderReader(few_photos, 96, limit=4).fingerprint()
    assert a.fingerprint() != FolderReader(few_photos, 64, limit=3).fingerprint()
    desc = a.describe()
    assert desc["kind"] == "folder" and desc["images"] == 4 and desc["fingerprint"] == a.fingerprint()


def test_masks_folder_tells_forged_from_authentic(tmp_path, few_photos):
    import cv2

    masks = tmp_path / "masks"
    masks.mkdir()
    files = list_image_files(few_photos)
    for i, f in enumerate(files):
        m = np.zeros((8, 8), np.uint8)
        if i % 2:
            m[2:5, 2:5] = 255
        cv2.imwrite(str(masks / (f.stem + ".png")), m)
    reader = FolderReader(few_photos, 32, limit=None, masks=masks)
    list(reader)
    counts = reader.describe()["counts"]
    assert counts["forged"] == 3 and counts["authentic"] == 3 and counts["unknown"] == 0


def test_array_and_dataset_readers(rng):
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    arrays = ArrayReader(images, 32, forged=[True, False, True], jpeg_qualities=(None,))
    got = list(arrays)
    np.testing.assert_array_equal(got[1]["image"][0], to_input(images[1], 32))
    assert arrays.describe()["counts"]["forged"] == 2

    class Items:
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> dict:
            return {"image": images[i].transpose(2, 0, 1).astype(np.float32) / 255.0, "authentic": i == 0}

    ds = DatasetReader(Items(), 32, jpeg_qualities=(None,), name="items")
    out = list(ds)
    assert len(out) == 2
    np.testing.assert_allclose(out[0]["image"][0], to_input(images[0], 32), atol=1.5 / 255)
    assert ds.describe()["counts"] == {"images": 2, "forged": 1, "authentic": 1, "unknown": 0,
                                       "jpeg_qualities": {"original": 2}}


def test_synthetic_reader_mixes_forged_and_authentic(few_photos):
    pytest.importorskip("torch")
    reader = SyntheticReader(few_photos, 48, count=8, p_authentic=0.4, max_side=96, jpeg_qualities=(None, 75))
    batches = list(reader)
    assert len(batches) == 8 and batches[0]["image"].shape == (1, 3, 48, 48)
    counts = reader.describe()["counts"]
    assert counts["forged"] > 0 and counts["authentic"] > 0
    assert counts["jpeg_qualities"] == {"original": 4, "75": 4}
    # Same seed, same samples.
    again = list(SyntheticReader(few_photos, 48, count=8, p_authentic=0.4, max_side=96, jpeg_qualities=(None, 75)))
    np.testing.assert_array_equal(batches[3]["image"], again[3]["image"])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"input_size": 4}, "input_size"), ({"batch": 0}, "batch"), ({"jpeg_qualities": (101,)}, "quality"),
     ({"jpeg_qualities": ()}, "empty")],
)
def test_reader_arguments_are_validated(few_photos, kwargs, match):
    args = {"input_size": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        FolderReader(few_photos, **args)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        FolderReader(tmp_path / "nope", 32)
    with pytest.raises(ValueError, match="no image files"):
        FolderReader(tmp_path, 32)


def test_jpeg_roundtrip_keeps_shape(rng):
    img = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = jpeg_roundtrip(img, 60)
    assert out.shape == img.shape and out.dtype == np.uint8
    with pytest.raises(ValueError):
        jpeg_roundtrip(img, 0)


def test_the_fingerprint_follows_every_reader_option(photos) -> None:
    from focal.calibration.readers import FolderReader, SyntheticReader

    base = SyntheticReader(photos, 64, count=16).fingerprint()
    assert SyntheticReader(photos, 64, count=128).fingerprint() != base
    assert SyntheticReader(photos, 64, count=16, seed=1).fingerprint() != base
    assert SyntheticReader(photos, 64, count=16).fingerprint() == base
    folder = FolderReader(photos, 64, limit=4).fingerprint()
    assert FolderReader(photos, 64, limit=5).fingerprint() != folder
    assert FolderReader(photos, 64, limit=4, jpeg_qualities=(None,)).fingerprint() != folder
