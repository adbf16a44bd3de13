"""The Q/DQ placement counter on hand-built graphs whose answer is known (the real graphs: test_precision.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from focal.export.qdq import count_qdq, main


def _graph(nodes, inits):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _qdq(tensor, name):
    """``tensor -> Q -> DQ``: the nodes and the dequantized name."""
    nodes = [helper.make_node("QuantizeLinear", [tensor, "s", "zp"], [f"{name}_q"], name=f"{name}/Q"),
             helper.make_node("DequantizeLinear", [f"{name}_q", "s", "zp"], [f"{name}_dq"], name=f"{name}/DQ")]
    return nodes, f"{name}_dq"


def _inits():
    """An int8 [2, 2, 1, 1] weight, one scale and zero point for every pair, Clip's bounds [0, 6]."""
    values = {"w_q": np.ones((2, 2, 1, 1), np.int8), "s": np.array(0.1, np.float32), "zp": np.array(0, np.int8),
              "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    return [numpy_helper.from_array(v, k) for k, v in values.items()]


def _conv(x, out, name):
    return [helper.make_node("DequantizeLinear", ["w_q", "s", "zp"], [f"{name}_w"], name=f"{name}/wDQ"),
            helper.make_node("Conv", [x, f"{name}_w"], [out], name=name)]


def test_counts_the_conv_q_dq_clip_q_dq_chain():
    """ORT's default placement: the Conv's output is quantized for nobody, then again after the Clip."""
    a, xa = _qdq("x", "in")
    b, xb = _qdq("c1", "c1")
    c, xc = _qdq("r", "r")
    nodes = a + _conv(xa, "c1", "conv1") + b + [helper.make_node("Clip", [xb, "lo", "hi"], ["r"], name="clip")] + c
    nodes += _conv(xc, "y", "conv2")
    counts = count_qdq(_graph(nodes, _inits()))
    assert counts.quantized == 2 and not counts.inputs_not_dequantized
    assert counts.outputs_quantized == ("conv1",) and counts.double_pairs == ("conv1",)
    assert counts.double_via == {"Clip": 1}
    assert (counts.quantize_linear, counts.dequantize_linear) == (3, 5)
    assert "1 double Q/DQ pairs (via Clip 1)" in counts.line()


def test_inputs_only_placement_and_a_shared_residual_pair_are_not_double():
    """DQ -> Conv -> Clip -> Q (TensorRT's placement), and a pair a quantized Conv reads that an Add shares."""
    a, xa = _qdq("x", "in")
    c, xc = _qdq("r", "r")
    nodes = a + _conv(xa, "c1", "conv1") + [helper.make_node("Clip", ["c1", "lo", "hi"], ["r"], name="clip")] + c
    nodes += _conv(xc, "c2", "conv2")
    d, xd = _qdq("c2", "c2")  # conv3 reads it: its input pair, shared by the residual Add
    nodes += d + _conv(xd, "c3", "conv3") + [helper.make_node("Add", ["c3", xd], ["s3"], name="add")]
    e, xe = _qdq("s3", "s3")
    nodes += e + _conv(xe, "y", "conv4")
    counts = count_qdq(_graph(nodes, _inits()))
    assert counts.quantized == 4 and not counts.double_pairs and not counts.double_via
    assert counts.outputs_quantized == ("conv2",)


def test_a_conv_with_a_float_weight_is_reported():
    a, xa = _qdq("x", "in")
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    nodes = a + [helper.make_node("Conv", [xa, "w"], ["y"], name="conv")]
    counts = count_qdq(_graph(nodes, _inits() + [w]))
    assert counts.quantized == 1 and counts.inputs_not_dequantized == ("conv",)


def test_cli_prints_one_line_per_file(tmp_path, capsys):
    a, xa = _qdq("x", "in")
    path = tmp_path / "m.onnx"
    onnx.save(_graph(a + _conv(xa, "y", "conv"), _inits()), str(path))
    assert main([str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: " + count_qdq(onnx.load(str(path))).line()
    assert main([str(tmp_path / "missing.onnx")]) == 2
    with pytest.raises(SystemExit):
        main([])
