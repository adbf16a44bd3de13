"""FP16 and INT8 graph rewriting: what is kept in FP32, what TensorRT will accept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from focal.calibration import ArrayReader, calibrate  # noqa: E402
from focal.export import (  # noqa: E402
    Fp16Config,
    Int8Config,
    convert_fp16,
    emulate_fp16_storage,
    export_onnx,
    prepare_for_quantization,
    quantize_int8,
)


@pytest.fixture(scope="module")
def vit_onnx(tmp_path_factory, small_vit):
    path = tmp_path_factory.mktemp("vit") / "model.onnx"
    export_onnx(small_vit, path, 64)
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def fused_onnx(tmp_path_factory):
    from focal.training import build_extractor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fused") / "model.onnx"
    export_onnx(build_extractor("tiny+tiny"), path, 64)
    return onnx.load(str(path))


def _features(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _topologically_sorted(model) -> bool:
    known = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if any(i and i not in known for i in node.input):
            return False
        known.update(node.output)
    return True


def test_fp16_keeps_fragile_ops_in_fp32(vit_onnx):
    lowered = convert_fp16(vit_onnx)
    onnx.checker.check_model(lowered.model, full_check=True)
    assert _topologically_sorted(lowered.model)
    assert {"LayerNormalization", "Softmax"} <= set(lowered.kept_ops)
    reasons = lowered.reasons
    # Attention logits (q @ k^T and SAM's relative-position Einsums) stay FP32 ...
    assert any(n.endswith("attn/MatMul") and r == "softmax logits" for n, r in reasons.items())
    assert any("Einsum" in n and r == "softmax logits" for n, r in reasons.items())
    # ... while the MLP and projections run in FP16.
    typed = onnx.shape_inference.infer_shapes(lowered.model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in typed.graph.value_info}
    mlp = [n for n in typed.graph.node if "/mlp/fc1/" in n.name and n.op_type == "MatMul"]
    assert mlp and all(types[n.output[0]] == TensorProto.FLOAT16 for n in mlp)
    for node in typed.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(node.output[0], TensorProto.FLOAT) == TensorProto.FLOAT
    # Inputs and outputs stay FP32.
    assert typed.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert typed.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    # Names survive: the manifest lists them.
    names = {n.name for n in lowered.model.graph.node}
    assert set(lowered.kept_nodes) <= names and set(lowered.lowered_nodes) <= names


def test_fp16_parity_and_storage_emulation(vit_onnx, rng):
    x = rng.random((1, 3, 64, 64), dtype=np.float32)
    ref = _features(vit_onnx, x)
    lowered = convert_fp16(vit_onnx)
    native = _features(lowered.model, x)
    twin = emulate_fp16_storage(lowered.model)
    assert all(i.data_type != TensorProto.FLOAT16 for i in twin.graph.initializer)
    assert sum(n.op_type == "Cast" and n.name.endswith("/round_fp16") for n in twin.graph.node) > 10
    emulated = _features(twin, x)
    assert _cosine(ref, native).mean() >= 0.999
    assert _cosine(ref, emulated).mean() >= 0.999
    assert not np.array_equal(native, emulated)  # the twin does round between ops


def test_fp16_fusion_tail_and_user_nodes_kept(fused_onnx):
    lowered = convert_fp16(fused_onnx, Fp16Config(keep_nodes=("/parts.0/backbone/net/net.0/*",)))
    tail = [n for n, r in lowered.reasons.items() if r.startswith("output tail")]
    assert any(n.endswith("Concat") for n in tail) and any("Div" in n for n in tail)
    assert "ReduceL2" in lowered.kept_ops
    assert lowered.reasons["/parts.0/backbone/net/net.0/Conv"] == "asked"
    with pytest.raises(ValueError, match="matches no node"):
        convert_fp16(fused_onnx, Fp16Config(keep_nodes=("/no/such/node",)))


def test_fp16_ranges_keep_overflowing_nodes(fused_onnx):
    conv = next(n for n in fused_onnx.graph.node if n.op_type == "Conv")
    ranges = {conv.output[0]: (-1e6, 1e6)}
    lowered = convert_fp16(fused_onnx, ranges=ranges)
    assert lowered.reasons[conv.name].startswith("activation range beyond")


def test_fp16_saturates_huge_weights(fused_onnx):
    model = onnx.ModelProto()
    model.CopyFrom(fused_onnx)
    init = next(i for i in model.graph.initializer if len(i.dims) == 4)
    w = numpy_helper.to_array(init).copy()
    w.flat[0] = 1e6
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    assert convert_fp16(model).clipped_weights == 1


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory, tiny_extractor):
    rng = np.random.default_rng(0)
    tmp = tmp_path_factory.mktemp("int8")
    fp32 = tmp / "model.onnx"
    export_onnx(tiny_extractor, fp32, 64)
    prepared = prepare_for_quantization(fp32, tmp / "prepared.onnx")
    import cv2

    images = [cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 1.5) for _ in range(4)]
    calib = calibrate(prepared, ArrayReader(images, 64), cache=tmp / "cache")
    return fp32, prepared, calib, tmp


def test_int8_is_symmetric_per_channel_qdq(tiny_int8, rng):
    fp32, prepared, calib, tmp = tiny_int8
    lowered = quantize_int8(prepared, tmp / "int8.onnx", calib, Int8Config(keep_stem=False, keep_head=False))
    model = onnx.load(str(tmp / "int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert len(lowered.lowered_nodes) == 3 and not lowered.kept_nodes
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        if len(node.input) > 2 and node.input[2]:
            zp = inits[node.input[2]]
            assert zp.dtype == np.int8 and not zp.any()
    # Weights: int8 initializers with one scale per output channel.
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                 and inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 4]
    assert len(weight_dq) == 3
    assert all(inits[n.input[1]].ndim == 1 and inits[n.input[1]].size == inits[n.input[0]].shape[0] for n in weight_dq)
    # Biases stay float (TensorRT fuses them).
    assert not any(v.dtype == np.int32 for v in inits.values())
    x = rng.random((1, 3, 64, 64), dtype=np.float32)
    cos = _cosine(_features(onnx.load(str(fp32)), x), _features(model, x))
    assert cos.mean() > 0.98


def test_int8_default_policy_and_exclusions(tiny_int8):
    _, prepared, calib, tmp = tiny_int8
    default = quantize_int8(prepared, tmp / "d.onnx", calib)
    # tiny: conv0 reads the image, conv3 a stride-2 map (stem); conv6 is the feature head.
    assert set(default.kept_nodes) == {"/backbone/net/net.0/Conv", "/backbone/net/net.3/Conv", "/backbone/net/net.6/Conv"}
    assert "feature head" in default.reasons.values()
    asked = quantize_int8(prepared, tmp / "e.onnx", calib,
                          Int8Config(exclude=("*/net.3/*",), keep_stem=False, keep_head=False))
    assert asked.kept_nodes == ("/backbone/net/net.3/Conv",) and asked.reasons["/backbone/net/net.3/Conv"] == "asked"
    with pytest.raises(ValueError, match="matches no node"):
        quantize_int8(prepared, tmp / "f.onnx", calib, Int8Config(exclude=("nope",)))



def test_int8_quiets_only_the_quantizer_and_leaves_the_root_logger(tiny_int8, caplog):
    """ORT's quantizer logs through the root logger: its records under ERROR are dropped, nobody else's."""
    import logging
    import os

    import onnxruntime.quantization

    from focal.export.precision import _quiet_ort_quantizer

    _, prepared, calib, tmp = tiny_int8
    root = logging.getLogger()
    level, filters = root.level, list(root.filters)
    quantize_int8(prepared, tmp / "quiet.onnx", calib)
    assert (root.level, root.filters) == (level, filters)

    ort_file = os.path.join(os.path.dirname(onnxruntime.quantization.__file__), "quantize.py")
    with caplog.at_level(logging.INFO), _quiet_ort_quantizer():
        for path, lvl in ((ort_file, logging.INFO), (ort_file, logging.WARNING), (ort_file, logging.ERROR),
                          (__file__, logging.INFO)):
            root.handle(root.makeRecord("root", lvl, path, 1, "message", (), None))
        logging.getLogger("focal.elsewhere").warning("another library")
    assert [(r.pathname, r.levelno) for r in caplog.records] == [
        (ort_file, logging.ERROR), (__file__, logging.INFO), (caplog.records[-1].pathname, logging.WARNING)]
    assert caplog.records[-1].name == "focal.elsewhere" and root.filters == filters

def test_int8_vit_keeps_attention_scores_in_float(tmp_path, small_vit, rng):
    fp32 = tmp_path / "vit.onnx"
    export_onnx(small_vit, fp32, 64)
    prepared = prepare_for_quantization(fp32, tmp_path / "prepared.onnx")
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    calib = calibrate(prepared, ArrayReader(images, 64), cache=tmp_path / "cache")
    lowered = quantize_int8(prepared, tmp_path / "int8.onnx", calib)
    attention = [n for n, r in lowered.reasons.items() if r == "attention scores"]
    assert len(attention) == 4  # q @ k^T and softmax @ v in each of the 2 blocks
    assert any("/mlp/fc1/" in n for n in lowered.lowered_nodes)
    x = rng.random((1, 3, 64, 64), dtype=np.float32)
    cos = _cosine(_features(onnx.load(str(fp32)), x), _features(onnx.load(str(tmp_path / "int8.onnx")), x))
    assert cos.mean() > 0.95
