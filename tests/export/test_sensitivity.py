"""--precision-report: per-block FP16/INT8 sensitivity."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from focal.calibration import FolderReader  # noqa: E402
from focal.export import ExportConfig, ReportConfig, export, precision_report  # noqa: E402
from focal.export._graph import node_block  # noqa: E402


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
    json.dumps(report.to_dict())
    assert "err fixed" in report.table()


def test_cli_precision_report_needs_images(tmp_path):
    from focal.export.cli import main

    with pytest.raises(SystemExit):
        main(["--backbone", "tiny", "--precision-report", "--out", str(tmp_path)])
