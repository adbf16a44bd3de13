"""export(cfg) and focal-export: the artifact folder, its manifest, the one-line engine failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from focal.export import EngineUnavailable, ExportConfig, export  # noqa: E402
from focal.export.cli import main  # noqa: E402
from focal.runtime.manifest import load_manifest, sha256_file  # noqa: E402


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("tiny-artifact")
    cfg = ExportConfig(backbone="tiny", input_size=64, out=str(out), fp16=True, int8=True, calib=str(photos),
                       calib_count=4, int8_keep_stem=False, calib_cache=str(out.parent / "calib-cache"))
    return export(cfg), out


def test_artifact_files_and_manifest(tiny_artifact):
    result, out = tiny_artifact
    manifest = load_manifest(out)
    assert {p.name for p in out.iterdir()} >= {"focal.json", "model.onnx", "model.fp16.onnx", "model.int8.onnx",
                                                "model.int8.cpu.onnx"}
    assert [(m.file, m.kind, m.precision, m.target) for m in manifest.models] == [
        ("model.onnx", "onnx", "fp32", None), ("model.fp16.onnx", "onnx", "fp16", None),
        ("model.int8.onnx", "onnx", "int8", None), ("model.int8.cpu.onnx", "onnx", "int8", "cpu")]
    for m in manifest.models:
        assert m.sha256 == sha256_file(out / m.file)
    assert manifest.extractor == "tiny" and manifest.fusion is None
    assert manifest.input.size == 64 and manifest.input.mean is None and manifest.input.name == "image"
    assert (manifest.output.feature_dim, manifest.output.height, manifest.output.width) == (16, 8, 8)
    assert manifest.tools["opset"] >= 17 and "onnxruntime" in manifest.tools and "torch" in manifest.tools
    assert manifest.source["init_seed"] == 0 and manifest.source["weights"] is None
    int8 = manifest.model("onnx", "int8")
    assert int8.calibration["kind"] == "folder" and int8.calibration["method"]["method"] == "minmax"
    assert int8.excluded_nodes == ["/backbone/net/net.6/Conv"]  # the feature head
    assert "original" in int8.calibration["jpeg_qualities"]
    summary = result.summary()
    assert "model.int8.onnx" in summary and "max abs diff" in summary


def test_int8_for_the_cpu_provider_has_uint8_activations(tiny_artifact):
    import onnx
    from onnx import numpy_helper

    _, out = tiny_artifact
    manifest = load_manifest(out)

    def activation_zero_points(name: str) -> list[np.ndarray]:
        model = onnx.load(str(out / name))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        weights = {i.name for i in model.graph.initializer}
        return [inits[n.input[2]] for n in model.graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] not in weights and len(n.input) > 2]

    trt, cpu = manifest.model("onnx", "int8"), manifest.model("onnx", "int8", target="cpu")
    assert trt.excluded_nodes == cpu.excluded_nodes  # the same nodes quantized
    assert cpu.calibration["quantization"]["activations"] == "uint8 asymmetric per-tensor"
    sym, asym = activation_zero_points(trt.file), activation_zero_points(cpu.file)
    assert sym and all(z.dtype == np.int8 and not z.any() for z in sym)  # what TensorRT needs
    assert asym and all(z.dtype == np.uint8 for z in asym) and any(z.any() for z in asym)

    def weight_extremes(name: str) -> int:
        model = onnx.load(str(out / name))
        dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        ws = [numpy_helper.to_array(i) for i in model.graph.initializer
              if i.name in dq_inputs and i.data_type == onnx.TensorProto.INT8 and i.dims]
        return int(max(np.abs(w.astype(np.int32)).max() for w in ws))

    # 7-bit weights in the CPU graph: u8 x s8 pair sums fit VPMADDUBSW's int16 on CPUs without VNNI
    assert weight_extremes(trt.file) == 127 and weight_extremes(cpu.file) <= 64
    # ONNX Runtime's CPU provider takes the CPU variant, every other backend the general graph
    assert manifest.model_for("cpu", "int8").file == "model.int8.cpu.onnx"
    assert manifest.model_for("cuda", "int8").file == "model.int8.onnx"
    assert manifest.model_for("cpu", "fp32").file == "model.onnx"


def test_detector_picks_and_names_int8_models(tiny_artifact, rng):
    from focal.runtime import Detector

    _, out = tiny_artifact
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    masks = {}
    for model_file in (None, "model.int8.onnx", "model.int8.cpu.onnx"):
        with Detector(out, backend="cpu", precision="int8", clustering="kmeans", model_file=model_file,
                      keep_features=True) as det:
            masks[model_file] = det(image).features
    np.testing.assert_array_equal(masks[None], masks["model.int8.cpu.onnx"])
    assert not np.array_equal(masks["model.int8.onnx"], masks["model.int8.cpu.onnx"])  # really another graph
    with pytest.raises(ValueError, match="model.fp16.onnx is an onnx fp16 model"):
        Detector(out, backend="cpu", precision="int8", model_file="model.fp16.onnx")
    with pytest.raises(ValueError, match="no model file 'nope.onnx'"):
        Detector(out, backend="cpu", precision="int8", model_file="nope.onnx")


def test_runtime_detector_runs_every_precision(tiny_artifact, rng):
    from focal.runtime import Detector

    _, out = tiny_artifact
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    for precision in ("fp32", "fp16", "int8"):
        with Detector(out, backend="cpu", precision=precision, clustering="kmeans") as det:
            assert det(image).mask.shape == (70, 90)


def test_rebuild_reuses_the_calibration_cache(tiny_artifact, photos, tmp_path):
    _, out = tiny_artifact
    cfg = ExportConfig(backbone="tiny", input_size=64, out=str(tmp_path / "again"), int8=True, calib=str(photos),
                       calib_count=4, int8_keep_stem=False, calib_cache=str(out.parent / "calib-cache"))
    again = export(cfg)
    assert again.calibration.from_cache
    assert sha256_file(tmp_path / "again/model.int8.onnx") == sha256_file(out / "model.int8.onnx")
    assert sha256_file(tmp_path / "again/model.int8.cpu.onnx") == sha256_file(out / "model.int8.cpu.onnx")


def test_int8_cpu_graph_can_be_skipped(tiny_artifact, photos, tmp_path):
    _, out = tiny_artifact
    cfg = ExportConfig(backbone="tiny", input_size=64, out=str(tmp_path), int8=True, calib=str(photos), calib_count=4,
                       int8_keep_stem=False, calib_cache=str(out.parent / "calib-cache"), int8_cpu=False)
    export(cfg)
    manifest = load_manifest(tmp_path)
    assert not (tmp_path / "model.int8.cpu.onnx").exists()
    assert [m.file for m in manifest.models] == ["model.onnx", "model.int8.onnx"]
    assert manifest.model_for("cpu", "int8").file == "model.int8.onnx"  # the CPU falls back to the general graph


def test_fusion_manifest(tmp_path):
    result = export(ExportConfig(backbone="tiny+tiny", input_size=64, out=str(tmp_path)))
    manifest = load_manifest(tmp_path)
    assert manifest.fusion == "concat-l2-nearest" and [m.name for m in manifest.members] == ["tiny", "tiny"]
    assert manifest.output.feature_dim == 32
    assert result.onnx.max_abs_diff < 1e-4


def test_cue_flags_are_written_into_the_manifest(tmp_path, capsys):
    out = tmp_path / "cued"
    assert main(["--backbone", "tiny", "--random-weights", "--input-size", "64", "--cue", "double-jpeg",
                 "--out", str(out), "-q"]) == 0
    assert load_manifest(out).cues == ["double-jpeg"]
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices: one line naming the allowed cues
        main(["--backbone", "tiny", "--random-weights", "--cue", "zero", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "invalid choice: 'zero'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cues must be distinct"):
        ExportConfig(backbone="tiny", cues=("double-jpeg", "double-jpeg"))


def test_weights_round_trip_through_our_checkpoint(tmp_path, tiny_extractor):
    from focal.export import model_from_manifest
    from focal.training import save_checkpoint

    ckpt = save_checkpoint(tiny_extractor, tmp_path / "tiny.safetensors")
    export(ExportConfig(backbone="tiny", weights=(str(ckpt),), input_size=64, out=str(tmp_path / "a")))
    manifest = load_manifest(tmp_path / "a")
    assert manifest.source["weights_sha256"] == [sha256_file(ckpt)]
    rebuilt = model_from_manifest(manifest)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), tiny_extractor(x))


def test_the_artifact_can_carry_its_checkpoint(tmp_path, tiny_extractor):
    from focal.evaluation.bench import reference_checkpoint
    from focal.training import build_extractor

    out = tmp_path / "a"
    export(ExportConfig(backbone="tiny", input_size=64, out=str(out), checkpoint=True), extractor=tiny_extractor)
    manifest = load_manifest(out)
    path = reference_checkpoint(out, manifest)  # listed, and its digest checked
    assert path == out / "checkpoint.safetensors" and (out / "checkpoint.json").is_file()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(build_extractor(weights=path)(x), tiny_extractor(x))
    export(ExportConfig(backbone="tiny", input_size=64, out=str(tmp_path / "b")), extractor=tiny_extractor)
    assert load_manifest(tmp_path / "b").checkpoint is None and not (tmp_path / "b" / "checkpoint.safetensors").exists()



def test_steps_are_numbered_among_those_that_run_and_timed(tmp_path, tiny_extractor):
    """A given extractor skips the build step; the numbering counts only the steps that run."""
    import re

    lines: list[str] = []
    result = export(ExportConfig(backbone="tiny", input_size=64, out=str(tmp_path / "a"), fp16=True),
                    extractor=tiny_extractor, progress=lines.append)
    numbered = [line for line in lines if line.startswith("[")]
    assert numbered[0].startswith("[1/2] exporting ONNX") and numbered[-2].startswith("[2/2] FP16 graph")
    assert re.fullmatch(r"\[1/2\] onnx: \d+\.\d s", numbered[1])
    assert re.fullmatch(r"\[2/2\] fp16: \d+\.\d s", numbered[-1])
    assert list(result.step_seconds) == ["onnx", "fp16"] and all(t >= 0 for t in result.step_seconds.values())
    assert [f.path.name for f in result.files] == ["model.onnx", "model.fp16.onnx", "focal.json"]


def test_fixed_size_weights_refuse_another_export_size(tmp_path, small_vit):
    """The registry says SAM ViTs are per size: a 64 px checkpoint is not exported at 128 px."""
    from focal.training import save_checkpoint

    ckpt = save_checkpoint(small_vit, tmp_path / "vit.safetensors")
    with pytest.raises(ValueError, match="weights are for 64 px"):
        export(ExportConfig(backbone="vit-b", weights=(str(ckpt),), input_size=128, out=str(tmp_path / "a")))

@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the engine path is covered by test_tensorrt")
def test_engine_without_tensorrt_fails_with_one_line_and_keeps_onnx(tmp_path, capsys):
    out = tmp_path / "art"
    code = main(["--backbone", "tiny", "--random-weights", "--input-size", "64", "--fp16", "--engine", "--out", str(out), "-q"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("focal-export: error: --engine needs TensorRT")
    assert "pip install 'focal[gpu]'" in err[0]
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx").is_file()
    assert [m.kind for m in load_manifest(out).models] == ["onnx", "onnx"]
    with pytest.raises(EngineUnavailable) as info:
        export(ExportConfig(backbone="tiny", input_size=64, out=str(tmp_path / "b"), engine=True))
    assert info.value.result.files  # the partial result is attached


def test_cli_usage_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--backbone", "tiny", "--random-weights", "--int8", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--int8 needs calibration data" in capsys.readouterr().err
    assert main(["--backbone", "nope", "--random-weights", "--out", str(tmp_path), "-q"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err


def test_cli_help_lists_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in ("vit", "vit-b", "hrnet", "lite", "tiny"):
        assert name in text
    assert "--precision-report" in text and "--calib" in text


def test_cli_writes_summary_and_parity(tmp_path, forgeries, capsys):
    out = tmp_path / "art"
    code = main(["--backbone", "tiny", "--random-weights", "--input-size", "128", "--fp16", "--out", str(out), "--verify", str(forgeries),
                 "--verify-limit", "3", "--clustering", "kmeans"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # build, onnx, fp16 and verify run; int8, engines and the report do not and are not counted.
    assert "focal-export: [2/4] exporting ONNX" in captured.err
    assert "focal-export: [4/4] verifying on" in captured.err
    assert "parity against the PyTorch reference" in captured.out
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and {r["precision"] for r in parity["rows"]} == {"fp32", "fp16"}


def test_in_memory_models_need_their_reference_for_verify(tmp_path, tiny_extractor, forgeries):
    from focal.export import verify

    export(ExportConfig(backbone="tiny", input_size=64, out=str(tmp_path)), extractor=tiny_extractor)
    assert load_manifest(tmp_path).source["init_seed"] is None
    with pytest.raises(ValueError, match="given in memory"):
        verify(tmp_path, forgeries)
    with pytest.raises(ValueError, match="extractor is 'tiny'"):
        export(ExportConfig(backbone="lite", out=str(tmp_path / "x")), extractor=tiny_extractor)


def test_cli_refuses_a_random_head_unless_asked(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--backbone", "tiny", "--out", str(tmp_path / "a")])
    assert exit_info.value.code == 2
    assert "no --weights: the exported model would have a random head" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["--backbone", "tiny", "--random-weights", "--input-size", "64", "--out", str(tmp_path / "b"), "-q"]) == 0
    assert load_manifest(tmp_path / "b").source["random_weights"] is True
