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



def _integer_kernels(path, tmp):
    """Op types ONNX Runtime's CPU provider runs ``path`` with after its QDQ fusions, counted."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp / (path.stem + ".ort-opt.onnx"))
    opts.log_severity_level = 3  # its warning that the saved graph is machine-specific: it is read here only
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    return {op: ops.count(op) for op in set(ops) if op.startswith("QLinear") or op.endswith("Integer")}


def test_int8_tensorrt_graph_quantizes_conv_inputs_once_not_outputs(tiny_int8, rng):
    """The TensorRT graph: no Conv -> Q -> DQ -> Relu -> Q -> DQ; Q/DQ on every quantized Conv's inputs only."""
    from focal.export.qdq import count_qdq

    fp32, prepared, calib, tmp = tiny_int8
    everything = dict(keep_stem=False, keep_head=False)
    lowered = quantize_int8(prepared, tmp / "trt.onnx", calib, Int8Config(**everything))
    old = quantize_int8(prepared, tmp / "trt-old.onnx", calib, Int8Config(quantize_outputs=True, **everything))
    model = onnx.load(str(tmp / "trt.onnx"))
    onnx.checker.check_model(model, full_check=True)
    counts = count_qdq(model)
    assert counts.quantized == len(lowered.lowered_nodes) == 3
    assert not counts.double_pairs and not counts.inputs_not_dequantized
    # tiny is Conv -> Relu -> Conv -> Relu -> Conv: a Conv output is quantized only after its Relu, where the
    # next Conv reads it, and the last Conv's output (the graph output) not at all.
    assert not counts.outputs_quantized
    prod = {o: n for n in model.graph.node for o in n.output}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = prod[conv.input[0]]
        assert dq.op_type == "DequantizeLinear" and prod[dq.input[0]].op_type == "QuantizeLinear", conv.name
        assert prod[conv.input[1]].op_type == "DequantizeLinear", conv.name
    # ONNX Runtime's default placement, kept as the option's other side, has the double pairs this guards against.
    before = count_qdq(old.model)
    assert len(before.double_pairs) == 2 and before.double_via == {"Relu": 2}
    # Valid on ONNX Runtime's CPU provider, and no further from FP32 than the old placement.
    xs = [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(3)]
    refs = [_features(onnx.load(str(fp32)), x) for x in xs]
    cos_new = np.concatenate([_cosine(r, _features(model, x)) for r, x in zip(refs, xs)])
    cos_old = np.concatenate([_cosine(r, _features(old.model, x)) for r, x in zip(refs, xs)])
    figures = (f"cosine to FP32 mean/min: inputs-only {cos_new.mean():.5f}/{cos_new.min():.5f}, "
               f"with outputs {cos_old.mean():.5f}/{cos_old.min():.5f}")
    assert cos_new.mean() > 0.98, figures
    assert cos_new.mean() >= cos_old.mean() - 1e-3 and cos_new.min() >= cos_old.min() - 1e-2, figures


def test_int8_cpu_graph_keeps_the_outputs_ort_fuses_into_integer_kernels(tiny_int8):
    """ORT's CPU provider forms QLinearConv only from DQ -> Conv -> Q: its uint8 graph keeps Conv outputs quantized."""
    from focal.export.qdq import count_qdq

    _, prepared, calib, tmp = tiny_int8
    everything = dict(keep_stem=False, keep_head=False)
    cpu = quantize_int8(prepared, tmp / "cpu.onnx", calib, Int8Config(activations="uint8-asymmetric", **everything))
    assert len(count_qdq(cpu.model).outputs_quantized) == 3
    assert _integer_kernels(tmp / "cpu.onnx", tmp).get("QLinearConv") == 3
    # The inputs-only placement would leave it in float arithmetic there (the TensorRT graph's trade).
    quantize_int8(prepared, tmp / "cpu-inputs.onnx", calib,
                  Int8Config(activations="uint8-asymmetric", quantize_outputs=False, **everything))
    assert _integer_kernels(tmp / "cpu-inputs.onnx", tmp).get("QLinearConv", 0) < 3


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
