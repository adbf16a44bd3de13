"""--precision-report: per-block FP16/INT8 sensitivity."""

from __future__ import annotations

import json
from collections import Counter

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from focal.calibration import FolderReader  # noqa: E402
from focal.export import ExportConfig, ReportConfig, export, precision_report  # noqa: E402
from focal.export._graph import HEAVY_OPS, node_block  # noqa: E402
from focal.export.sensitivity import BlockSensitivity, PrecisionReport, Variant  # noqa: E402


@pytest.mark.parametrize(
    "name, block",
    [
        ("/backbone/blocks/blocks.3/attn/MatMul", "backbone/blocks/blocks.3"),
        ("/backbone/blocks.2/blocks.2.1/conv_pw/Conv", "backbone/blocks.2"),
        ("/parts.1/backbone/stage4/stage4.2/Add", "parts.1/backbone/stage4/stage4.2"),
        ("/backbone/neck/neck.3/LayerNormalization", "backbone/neck/neck.3"),
        ("/backbone/patch_embed/proj/Conv", "backbone/patch_embed"),
        ("/Concat", "(graph)"),
    ],
)
def test_node_blocks(name, block):
    assert node_block(name) == block


def test_report_ranks_blocks(tmp_path, tiny_extractor, photos, forgeries):
    out = tmp_path / "tiny"
    export(ExportConfig(backbone="tiny", input_size=64, out=str(out)), extractor=tiny_extractor)
    reader = FolderReader(photos, 64, limit=4)
    report = precision_report(out / "model.onnx", forgeries, ReportConfig(
        clustering="kmeans", images=2, int8_keep_stem=False, int8_keep_head=False, calib_cache=str(tmp_path / "c"),
    ), reader=reader)
    blocks = {b.block: b for b in report.blocks}
    assert set(blocks) == {"backbone/net/net.0", "backbone/net/net.3", "backbone/net/net.6"}
    assert abs(sum(b.macs_share for b in report.blocks) - 1.0) < 1e-6
    assert report.fp16_baseline.cosine > 0.999 and report.int8_baseline.cosine > 0.9
    for b in report.blocks:
        assert b.fp16 is not None and b.int8 is not None
        assert b.int8.cosine >= report.int8_baseline.cosine - 1e-3  # leaving a block in float never hurts much
    keys = [max(b.int8_recovered or 0.0, b.fp16_recovered or 0.0) for b in report.blocks]
    assert keys == sorted(keys, reverse=True)  # most sensitive first
    # Blocks and their node counts are those of the graph's heavy nodes; the MAC
    # shares are tiny's at 64 px: 3x3 convs 3->16 at 32x32, 16->16 at 16x16 and at 8x8.
    graph = onnx.load(str(out / "model.onnx")).graph
    heavy = Counter(node_block(n.name) for n in graph.node if n.op_type in HEAVY_OPS)
    assert {b.block: b.nodes for b in report.blocks} == dict(heavy) == {name: 1 for name in blocks}
    macs = {"backbone/net/net.0": 32 * 32 * 16 * 27, "backbone/net/net.3": 16 * 16 * 16 * 144,
            "backbone/net/net.6": 8 * 8 * 16 * 144}
    assert {b.block: b.macs_share for b in report.blocks} == pytest.approx(
        {k: v / sum(macs.values()) for k, v in macs.items()})
    # The JSON (strict: no NaN or inf) reads back to the same report, row for row.
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))

    def variant(d):
        return None if d is None else Variant(**d)

    back = PrecisionReport(
        images=data["images"], fp16_baseline=variant(data["fp16_baseline"]),
        int8_baseline=variant(data["int8_baseline"]),
        blocks=[BlockSensitivity(**{**b, "fp16": variant(b["fp16"]), "int8": variant(b["int8"])})
                for b in data["blocks"]],
        shapes=data["shapes"],
    )
    assert back == report and back.images == 2 and report.shapes == [[64, 64], [64, 64]]
    assert "err fixed" in report.table()


def test_native_report_runs_each_image_at_its_own_shape(tmp_path, tiny_extractor, photos, forgeries):
    from focal.calibration.readers import NativeInput
    from focal.export.verify import load_images
    from focal.runtime.geometry import image_geometry
    from focal.runtime.manifest import load_manifest

    out = tmp_path / "tiny-native"
    export(ExportConfig(backbone="tiny", input_size=64, out=str(out), input_policy="native", max_side=256,
                        max_points=1024), extractor=tiny_extractor)
    manifest = load_manifest(out)
    stride = manifest.members[0].stride
    reader = FolderReader(photos, 64, limit=2, native=NativeInput(max_side=256, stride=stride))
    report = precision_report(out / "model.onnx", forgeries, ReportConfig(
        clustering="kmeans", images=3, int8_keep_stem=False, int8_keep_head=False, calib_cache=str(tmp_path / "c"),
        policy="native", size=64, stride=stride, max_side=256, max_points=1024,
    ), reader=reader)
    # Each image at the shape the runtime gives it: aspect kept, capped at 256, padded to the stride.
    want = []
    for _, image in load_images(forgeries, 3):
        g = image_geometry(image.shape[0], image.shape[1], "native", 64, stride, 256, 1024)
        want.append([g.pad_height, g.pad_width])
    assert report.shapes == want and len({tuple(s) for s in want}) > 1
    assert report.fp16_baseline.cosine > 0.999 and report.int8_baseline.cosine > 0.9
    assert all(b.fp16 is not None and b.int8 is not None for b in report.blocks)
    # MAC shares of the size-dynamic graph (measured on a fixed-size twin) are the square graph's.
    macs = {"backbone/net/net.0": 4 * 16 * 27, "backbone/net/net.3": 16 * 144, "backbone/net/net.6": 16 * 144 / 4}
    assert {b.block: b.macs_share for b in report.blocks} == pytest.approx(
        {k: v / sum(macs.values()) for k, v in macs.items()})


def test_cli_precision_report_needs_images(tmp_path):
    from focal.export.cli import main

    with pytest.raises(SystemExit):
        main(["--backbone", "tiny", "--random-weights", "--precision-report", "--out", str(tmp_path)])
