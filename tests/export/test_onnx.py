"""FP32 ONNX export: clean, checked graphs that match PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from focal.export import MIN_OPSET, export_onnx  # noqa: E402


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_tiny_matches_pytorch(tmp_path, tiny_extractor, rng):
    result = export_onnx(tiny_extractor, tmp_path / "model.onnx", 128)
    assert result.path.is_file() and result.external_data is None
    assert result.opset >= MIN_OPSET and result.output_shape == (1, 16, 16, 16)
    x = rng.random((1, 3, 128, 128), dtype=np.float32)
    with torch.no_grad():
        ref = tiny_extractor(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(result.path, x), ref, rtol=1e-3, atol=1e-4)
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["features"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 128, 128]


def test_sam_vit_exports_with_single_layernorm_nodes_and_named_nodes(tmp_path, small_vit, rng):
    result = export_onnx(small_vit, tmp_path / "vit.onnx", 64)
    model = onnx.load(str(result.path))
    ops = result.ops
    assert ops.get("LayerNormalization", 0) >= 5  # 2 blocks x 2 + the neck's LayerNorm2d
    assert "ReduceMean" not in ops  # not decomposed
    assert "Identity" not in ops and "Shape" not in ops  # cleaned: static shapes folded
    assert all(not n.name.startswith("node_") for n in model.graph.node)  # exporter names kept
    assert any("/blocks/blocks.1/attn/" in n.name for n in model.graph.node)
    # Fused attention is switched back on after the export.
    assert all(m.fused_attn for m in small_vit.modules() if hasattr(m, "fused_attn"))
    x = rng.random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = small_vit(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(result.path, x), ref, rtol=1e-3, atol=1e-4)
    assert result.max_rel_diff < 1e-4


def test_dynamic_batch(tmp_path, tiny_extractor, rng):
    result = export_onnx(tiny_extractor, tmp_path / "model.onnx", 64, batch=2, dynamic_batch=True)
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    x = rng.random((3, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = tiny_extractor(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(result.path, x), ref, rtol=1e-3, atol=1e-4)


def test_fusion_exports_one_graph_with_the_fused_map(tmp_path, rng):
    from focal.training import build_extractor

    torch.manual_seed(0)
    fused = build_extractor("tiny+tiny")
    result = export_onnx(fused, tmp_path / "fused.onnx", 64)
    assert result.output_shape == (1, 32, 8, 8)
    out = _run(result.path, rng.random((1, 3, 64, 64), dtype=np.float32))[0]
    # Each member's part is unit-norm per pixel.
    np.testing.assert_allclose(np.linalg.norm(out[:16], axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out[16:], axis=0), 1.0, atol=1e-5)


def test_large_models_go_to_external_data(tmp_path, tiny_extractor, monkeypatch):
    monkeypatch.setattr("focal.export.onnx._EXTERNAL_DATA_BYTES", 1000)
    result = export_onnx(tiny_extractor, tmp_path / "model.onnx", 64)
    assert result.external_data == tmp_path / "model.onnx.data" and result.external_data.is_file()
    assert result.size_bytes > result.path.stat().st_size
    assert result.max_abs_diff < 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [({"opset": 16}, "opset"), ({"input_size": 100}, "multiple of"), ({"batch": 0}, "batch")],
)
def test_bad_arguments(tmp_path, tiny_extractor, kwargs, match):
    args = {"input_size": 128, **kwargs}
    with pytest.raises(ValueError, match=match):
        export_onnx(tiny_extractor, tmp_path / "m.onnx", **args)
