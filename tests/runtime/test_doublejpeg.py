"""The double-JPEG cue: reads the file's table, finds a splice that missed the first compression,
leaves single and uniformly double-compressed photos alone, and survives hostile headers."""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest

from focal.evaluation.metrics import pixel_scores
from focal.runtime.doublejpeg import (
    ZIGZAG, DoubleJpegConfig, dct_coefficients, detect_double_jpeg, exif_orientation, luma_quantization,
    orient,
)
from focal.runtime.score import joined_score
from make_fixtures import (  # tests/ is on sys.path (conftest.py)
    decode_rgb, double_jpeg_splice, jpeg_bytes, sample_photos, with_exif_orientation,
)

# IJG's luminance base table (JPEG standard, Annex K), natural order.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return sample_photos()  # 2 photos, 427 x 640


@pytest.mark.parametrize("quality", [50, 75, 90, 100])
def test_the_luminance_table_is_the_one_the_encoder_wrote(photos, quality) -> None:
    assert np.array_equal(luma_quantization(jpeg_bytes(photos[0], quality)), _ijg_table(quality))


def test_the_blocks_are_read_on_the_files_grid(photos) -> None:
    # Dividing the decoded blocks' DCT by the table gives near-integers only on the file's own
    # grid and table order: one pixel off, or a transposed table, and the residuals spread out.
    data = jpeg_bytes(photos[0], 50)
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    table = luma_quantization(data)

    def residual(plane: np.ndarray, t: np.ndarray) -> float:
        coef = dct_coefficients(plane, np.ones_like(t)).astype(np.float64)  # the raw DCT, rounded
        raw = coef / t
        return float(np.mean(np.abs(raw - np.rint(raw))[..., :3, :3]))

    aligned, shifted = residual(gray, table), residual(gray[1:, 1:], table)
    assert aligned < 0.12 < shifted
    assert residual(gray, table.T) > aligned


def test_a_splice_that_missed_the_first_compression_is_found(photos) -> None:
    data, truth = double_jpeg_splice(photos)
    found = detect_double_jpeg(data)
    assert found.found and found.evidence > DoubleJpegConfig().threshold
    assert found.mask.shape == truth.shape and found.mask.dtype == np.uint8
    assert pixel_scores(found.mask > 0, truth).iou > 0.5
    assert len(found.first_steps) >= 5


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_photos_compressed_once_are_not_flagged(photos, quality) -> None:
    for photo in photos:
        found = detect_double_jpeg(jpeg_bytes(photo, quality))
        assert not found.found, (quality, found.evidence)


def test_a_second_compression_shows_its_first_steps(photos) -> None:
    # An untouched photo saved twice is not flagged (the threshold is fitted to keep such photos
    # out), but the first compression's steps are read off its comb: the step of quality 50,
    # or a multiple of it where a sparser comb fits as well.
    for q1, q2 in ((50, 100), (50, 90), (70, 95)):
        data = jpeg_bytes(decode_rgb(jpeg_bytes(photos[0], q1)), q2)
        found = detect_double_jpeg(data)
        assert not found.found, (q1, q2, found.evidence)
        first = _ijg_table(q1)
        steps = {z: int(first.flat[ZIGZAG[z]]) for z in found.first_steps}
        assert len(steps) >= 5, (q1, q2, found.first_steps)
        right = [found.first_steps[z] % steps[z] == 0 for z in steps]
        assert np.mean(right) >= 0.8, (q1, q2, found.first_steps, steps)


def test_a_flat_photo_saved_twice_says_nothing() -> None:
    # every AC coefficient is zero: no frequency has values to fit a comb to
    flat = np.full((128, 128, 3), 117, np.uint8)
    found = detect_double_jpeg(jpeg_bytes(decode_rgb(jpeg_bytes(flat, 60)), 90))
    assert found.mask is None and found.evidence == 0.0 and found.first_steps == {}


def test_files_without_the_trace_give_no_evidence(photos) -> None:
    ok, png = cv2.imencode(".png", photos[0])
    aligned_only = DoubleJpegConfig(grid=None)
    for data in (png.tobytes(), b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xdb\x00\x43\x00" + b"\x01" * 10,
                 jpeg_bytes(photos[0][:40, :40], 80)):
        found = detect_double_jpeg(data, aligned_only, name="x.jpg")
        assert found.mask is None and found.evidence == 0.0 and not found.found and found.grid is None
    # The grid test reads any format: the PNG of a photo that was a JPEG shows its one grid, no region.
    found = detect_double_jpeg(png.tobytes(), name="x.png")
    assert found.mask is not None and not found.found and found.grid.grid == (0, 0)
    assert found.evidence == 0.0 and found.first_steps == {}
    for data in (b"", b"\xff\xd8\xff", jpeg_bytes(photos[0][:40, :40], 80)):
        assert detect_double_jpeg(data, name="x.jpg").mask is None


def test_a_hostile_header_is_refused_by_name_before_decoding(photos) -> None:
    data = bytearray(jpeg_bytes(photos[0], 80))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # 3.6 gigapixels declared
    with pytest.raises(ValueError, match=r"^bomb\.jpg: .*over the limit"):
        detect_double_jpeg(bytes(data), name="bomb.jpg")
    # a truncated copy of a real file is not a crash either
    assert luma_quantization(bytes(data[:sof])) is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_masks_turn_as_opencv_turns_the_picture(photos, orientation) -> None:
    data = with_exif_orientation(jpeg_bytes(photos[0][:, :500], 80), orientation)
    assert exif_orientation(data) == orientation
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    shown = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(orient(stored, orientation), shown)


def test_bad_settings_are_refused() -> None:
    for bad in ({"frequencies": 0}, {"max_ratio": 1}, {"window": 0}, {"min_gain": 0.0}):
        with pytest.raises(ValueError, match="DoubleJpegConfig"):
            DoubleJpegConfig(**bad)


def test_the_detector_joins_the_cue_for_files_and_encoded_images(tiny_artifact, photos, tmp_path) -> None:
    from focal.runtime import Detector, EncodedImage

    data, truth = double_jpeg_splice(photos)
    path = tmp_path / "splice.jpg"
    path.write_bytes(data)
    with Detector(tiny_artifact, backend="cpu") as plain:
        alone = plain(path)
    with Detector(tiny_artifact, backend="cpu", double_jpeg=True) as both:
        joint = both(path)
        encoded = both(EncodedImage(decode_rgb(data), data, str(path)))
        array = both(decode_rgb(data))
    assert alone.double_jpeg is None and "double_jpeg" not in alone.timings
    assert np.array_equal(joint.double_jpeg, detect_double_jpeg(data).mask)
    assert np.array_equal(joint.mask, np.maximum(alone.mask, joint.double_jpeg))
    assert np.array_equal(joint.labels, alone.labels)  # the features' own
    # A region found lifts the score to the cue's confidence, and never lowers it.
    assert joint.score == joined_score(alone.score, joint.double_jpeg, 0.01) == max(alone.score, 0.99)
    assert array.score == alone.score  # no evidence: the features' score as it was
    assert np.array_equal(encoded.mask, joint.mask) and encoded.path == str(path)
    assert array.double_jpeg is None  # an array carries no JPEG header: no evidence, said as None
    assert joint.timings["double_jpeg"] > 0


def test_the_joined_score_is_lifted_only_by_a_found_region() -> None:
    found, empty = np.full((16, 16), 255, np.uint8), np.zeros((16, 16), np.uint8)
    assert joined_score(0.2, None, 0.01) == 0.2 and joined_score(0.2, empty, 0.01) == 0.2
    assert joined_score(0.2, found, 0.01) == 0.99 and joined_score(0.995, found, 0.01) == 0.995
    assert joined_score(0.2, found > 0, 0.05) == 0.95  # a bool mask too
    with pytest.raises(ValueError, match="false_alarm"):
        DoubleJpegConfig(false_alarm=0.0)


def test_the_detector_turns_the_mask_with_the_picture(tiny_artifact, photos, tmp_path) -> None:
    from focal.runtime import Detector

    data, _ = double_jpeg_splice(photos)
    path = tmp_path / "turned.jpg"
    path.write_bytes(with_exif_orientation(data, 6))
    with Detector(tiny_artifact, backend="cpu", double_jpeg=True) as det:
        result = det(path)
    assert result.mask.shape == (photos[0].shape[1], photos[0].shape[0])
    assert np.array_equal(result.double_jpeg, orient(detect_double_jpeg(data).mask, 6))


def test_focal_detect_and_focal_eval_report_the_cue(tiny_artifact, photos, tmp_path) -> None:
    from focal.evaluation.eval_cli import main as eval_main
    from focal.runtime.cli import main as detect_main

    data = tmp_path / "set"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    spliced, truth = double_jpeg_splice(photos)
    (data / "images" / "splice.jpg").write_bytes(spliced)
    cv2.imwrite(str(data / "masks" / "splice.png"), truth.astype(np.uint8) * 255)
    (data / "images" / "plain.png").write_bytes(cv2.imencode(".png", photos[1])[1].tobytes())
    out = tmp_path / "out"
    assert detect_main([str(tiny_artifact), str(data / "images"), "--out", str(out), "--backend", "cpu",
                        "--double-jpeg"]) == 0
    records = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    # the PNG of a once-JPEG photo: the grid test read it (its one grid) and found nothing
    assert records["splice.jpg"]["double_jpeg"] is True and records["plain.png"]["double_jpeg"] is False
    mask = cv2.imread(str(out / records["splice.jpg"]["mask"]), cv2.IMREAD_GRAYSCALE)
    assert (mask[truth] > 0).mean() > 0.5  # the splice is in the mask (k-means marks its own half too)

    ev = tmp_path / "eval"
    assert eval_main([str(tiny_artifact), "--data", str(data), "--out", str(ev), "--backend", "cpu",
                      "--clustering", "kmeans", "--double-jpeg"]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, (ev / "records.jsonl").read_text().splitlines())}
    plain, joint = rows["splice.jpg"]["kmeans"], rows["splice.jpg"]["kmeans+double-jpeg"]
    assert joint["auc"] == plain["auc"] and joint["iou"] > plain["iou"]
    assert json.loads((ev / "metrics.json").read_text())["clustering"] == ["kmeans", "kmeans+double-jpeg"]
