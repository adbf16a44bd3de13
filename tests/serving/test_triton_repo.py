"""The Triton model repository writer (focal.serving.triton_repo), checked by parsing and by serving.

- Every ``config.pbtxt`` parses into tritonclient's ``ModelConfig`` protobuf
  (field names, enums), for onnxruntime, tensorrt and python repositories,
  and the ensemble's maps name real inputs and outputs of its steps.
- The ``python``-features repository runs under the tritonserver bundled in
  the nvidia-pytriton wheel (one server for the module): the ensemble's masks
  are byte-identical and its scores equal to ``Detector(default)``'s on
  every sample image, over HTTP and gRPC; a corrupt image sent among others
  fails alone, with the decoder's message.
- The default (onnxruntime) repository beside it: the wheel's server has no
  onnxruntime backend, so ``focalort_features`` does not load (the message
  says so) while its Python pre/post models load and match the Detector.
- The module's repository runs the default's cues (its manifest lists both);
  repositories told ``copy_move=False`` and ``double_jpeg=False`` beside it:
  on an image holding a pasted copy the module's ensemble answers
  ``Detector()``'s mask and score, byte for byte, and ``copy_move`` 1 / 0, the
  ``copy_move=False`` one ``Detector(copy_move=False)``'s and -1; on a splice
  that missed the first JPEG compression (as stored, and EXIF-turned), an
  untouched photo saved twice and a PNG the module's masks are ``Detector()``'s
  on the file paths and ``double_jpeg`` says 1 / 1 / 0 / -1, the
  ``double_jpeg=False`` one ``Detector(double_jpeg=False)``'s and -1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from make_fixtures import copy_moved_texture, texture, write_double_jpeg_cases
from focal._files import list_images
from focal.runtime import Detector
from focal.runtime.default import default_artifact
from focal.runtime.imageio import decode_image
from focal.runtime.manifest import ModelFile, load_manifest, save_manifest
from focal.serving.triton_repo import TritonRepoConfig, model_names, repository_config, write_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

ROLES = ("preprocess", "features", "postprocess", "ensemble")


def _parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _configs(repo: Path, prefix: str = "focal") -> dict[str, object]:
    return {role: _parse(repo / name / "config.pbtxt") for role, name in model_names(prefix).items()}


def _engine_artifact(root: Path, dynamic: bool) -> Path:
    """The default artifact plus a TensorRT entry (placeholder bytes: only the configs are checked here)."""
    art = root / ("trt-dynamic" if dynamic else "trt-static")
    art.mkdir()
    manifest = load_manifest(default_artifact())
    (art / "model.onnx").write_bytes((default_artifact() / "model.onnx").read_bytes())
    (art / "model.fp32.engine").write_bytes(b"not a real plan")
    engine = ModelFile(file="model.fp32.engine", kind="tensorrt", precision="fp32", sha256="0" * 64,
                       tensorrt="10.3.0", gpu="NVIDIA Orin", compute_capability="8.7")
    manifest = replace(manifest, models=[manifest.model("onnx", "fp32"), engine])
    if dynamic:
        manifest = replace(manifest, input=replace(manifest.input, dynamic_batch=True, batch=2, max_batch=6))
    save_manifest(manifest, art)
    return art


# -- the configs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("features", ["onnxruntime", "tensorrt", "python"])
def test_every_config_parses_into_model_config(tmp_path: Path, features: str) -> None:
    artifact = _engine_artifact(tmp_path, dynamic=False) if features == "tensorrt" else None
    repo = write_repository(artifact, tmp_path / "repo", TritonRepoConfig(features=features, max_queue_size=7))
    configs = _configs(repo)
    names = model_names()
    assert sorted(p.name for p in repo.iterdir()) == sorted(names.values())
    for role, config in configs.items():
        assert config.name == names[role]
        assert (repo / names[role] / "1").is_dir()
    feat = configs["features"]
    expected = {"onnxruntime": ("onnxruntime_onnx", "", "model.onnx"), "tensorrt": ("tensorrt_plan", "", "model.plan"),
                "python": ("", "python", "model.py")}[features]
    assert (feat.platform, feat.backend) == expected[:2]
    assert (repo / names["features"] / "1" / expected[2]).is_file()
    # A fixed batch-1 graph: no Triton batching, full shapes with the graph's own batch axis.
    assert feat.max_batch_size == 0
    assert list(feat.input[0].dims) == [1, 3, 512, 512] and list(feat.output[0].dims) == [1, 64, 64, 64]
    for role in ("preprocess", "features", "postprocess"):
        policy = configs[role].dynamic_batching.default_queue_policy
        assert policy.max_queue_size == 7
        assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    kind = model_config_pb2.ModelInstanceGroup.KIND_CPU if features == "python" else \
        model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert feat.instance_group[0].kind == kind
    if features == "tensorrt":
        assert list(feat.instance_group[0].profile) == ["0"]
    for role in ("preprocess", "postprocess"):
        assert configs[role].backend == "python"
        assert (repo / names[role] / "1" / "model.py").is_file()
        assert load_manifest(repo / names[role] / "1").clustering == load_manifest(default_artifact()).clustering


@pytest.mark.parametrize(("copy_move", "double_jpeg", "heatmap"),
                         [(False, False, False), (True, False, False), (False, True, False), (True, True, False),
                          (False, False, True)])
def test_ensemble_steps_name_real_tensors(tmp_path: Path, copy_move: bool, double_jpeg: bool, heatmap: bool) -> None:
    repo = write_repository(None, tmp_path / "repo",
                            TritonRepoConfig(features="python", copy_move=copy_move, double_jpeg=double_jpeg,
                                             heatmap=heatmap))
    configs = _configs(repo)
    ensemble = configs["ensemble"]
    by_name = {c.name: c for c in configs.values()}
    produced = {i.name for i in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = by_name[step.model_name]
        assert set(step.input_map) == {i.name for i in model.input}, step.model_name
        assert set(step.input_map) and set(step.input_map.values()) <= produced, step.model_name
        assert set(step.output_map) <= {o.name for o in model.output}, step.model_name
        produced |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= produced
    assert {"mask", "score", "copy_move", "double_jpeg"} <= {o.name for o in ensemble.output}  # in every repository
    assert ("heatmap" in {o.name for o in ensemble.output}) is heatmap  # only where asked for
    # Both cues need the file: the ensemble's own input goes to the postprocess model too.
    post = configs["postprocess"]
    [post_step] = [s for s in ensemble.ensemble_scheduling.step if s.model_name == post.name]
    assert (post_step.input_map.get("image") == "image") is (copy_move or double_jpeg)
    assert post.parameters["copy_move"].string_value == str(copy_move).lower()
    assert post.parameters["double_jpeg"].string_value == str(double_jpeg).lower()
    assert post.parameters["heatmap"].string_value == str(heatmap).lower()
    if copy_move or double_jpeg:  # read as the preprocess model reads it
        pre = configs["preprocess"]
        for key in ("max_pixels", "exif_orientation"):
            assert post.parameters[key].string_value == pre.parameters[key].string_value


def test_cli_triton_copy_move_reaches_the_config() -> None:
    from focal.export.cli import build_triton_parser, triton_config_from_args

    base = ["--from-artifact", "default", "--triton", "out"]
    assert triton_config_from_args(build_triton_parser().parse_args([*base, "--triton-copy-move"])).copy_move
    assert triton_config_from_args(build_triton_parser().parse_args([*base, "--no-triton-copy-move"])).copy_move is False
    unsaid = triton_config_from_args(build_triton_parser().parse_args(base))
    # Unsaid, the default's manifest decides: its cues list the copy-move search.
    assert unsaid.copy_move is None and repository_config("default", unsaid).copy_move is True


def test_cli_triton_heatmap_reaches_the_config() -> None:
    from focal.export.cli import build_triton_parser, triton_config_from_args

    base = ["--from-artifact", "default", "--triton", "out"]
    assert triton_config_from_args(build_triton_parser().parse_args([*base, "--triton-heatmap"])).heatmap is True
    assert triton_config_from_args(build_triton_parser().parse_args(base)).heatmap is False


def test_cli_triton_double_jpeg_reaches_the_config() -> None:
    from focal.export.cli import build_triton_parser, triton_config_from_args

    base = ["--from-artifact", "default", "--triton", "out"]
    assert triton_config_from_args(build_triton_parser().parse_args([*base, "--triton-double-jpeg"])).double_jpeg
    no = triton_config_from_args(build_triton_parser().parse_args([*base, "--no-triton-double-jpeg"]))
    assert no.double_jpeg is False and repository_config("default", no).double_jpeg is False
    # Unsaid, the default's manifest decides: its cues list the double-JPEG cue.
    unsaid = triton_config_from_args(build_triton_parser().parse_args(base))
    assert unsaid.double_jpeg is None and repository_config("default", unsaid).double_jpeg is True


def test_dynamic_tensorrt_graph_batches_up_to_its_profile(tmp_path: Path) -> None:
    artifact = _engine_artifact(tmp_path, dynamic=True)
    repo = write_repository(artifact, tmp_path / "repo", TritonRepoConfig(features="tensorrt"))
    feat = _configs(repo)["features"]
    assert feat.max_batch_size == 6  # the engine profile's largest batch
    assert list(feat.input[0].dims) == [3, 512, 512]
    with pytest.raises(ValueError, match="profile maximum 6"):
        write_repository(artifact, tmp_path / "again", TritonRepoConfig(features="tensorrt", max_batch=7))


def test_native_policy_runs_one_image_per_call(tmp_path: Path) -> None:
    manifest = load_manifest(default_artifact())
    native = tmp_path / "native"
    native.mkdir()
    (native / "model.onnx").write_bytes((default_artifact() / "model.onnx").read_bytes())
    save_manifest(replace(manifest, models=[manifest.model("onnx", "fp32")],
                          input=replace(manifest.input, policy="native", max_side=1024)), native)
    configs = _configs(write_repository(native, tmp_path / "repo", TritonRepoConfig(features="python")))
    assert configs["features"].max_batch_size == 0
    assert list(configs["features"].input[0].dims) == [1, 3, -1, -1]
    assert list(configs["features"].output[0].dims) == [1, 64, -1, -1]
    assert list(configs["preprocess"].output[0].dims) == [3, -1, -1]
    with pytest.raises(ValueError, match="input policy 'native'") as exc:
        write_repository(native, tmp_path / "trt", TritonRepoConfig(features="tensorrt"))
    assert "\n" not in str(exc.value)


def test_refusals_are_one_line(tmp_path: Path) -> None:
    manifest = load_manifest(default_artifact())
    fixed = tmp_path / "fixed2"
    fixed.mkdir()
    save_manifest(replace(manifest, input=replace(manifest.input, batch=2)), fixed)
    with pytest.raises(ValueError, match="fixed batch of 2") as exc:
        write_repository(fixed, tmp_path / "r1")
    assert "\n" not in str(exc.value) and str(fixed) in str(exc.value)
    with pytest.raises(ValueError, match="no tensorrt model"):
        write_repository(None, tmp_path / "r2", TritonRepoConfig(features="tensorrt"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        write_repository(None, tmp_path / "full")
    with pytest.raises(ValueError, match="unknown features backend"):
        TritonRepoConfig(features="openvino")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_cli_from_artifact_imports_no_torch_and_no_onnx(tmp_path: Path) -> None:
    # A runtime-only install has neither: the packages are made unimportable, as there.
    code = ("import sys, json; sys.modules.update(torch=None, onnx=None, timm=None); "
            "from focal.export.cli import main; "
            f"rc = main(['--from-artifact', 'default', '--triton', {str(tmp_path / 'repo')!r}, '-q']); "
            "print(json.dumps([rc, sorted(m for m in sys.modules if sys.modules[m] is not None and "
            "m.split('.')[0] in ('torch', 'timm', 'onnx', 'tritonclient', 'pytriton'))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [0, []]
    assert _configs(tmp_path / "repo")["features"].platform == "onnxruntime_onnx"
    bad = subprocess.run([sys.executable, "-m", "focal.export.cli", "--from-artifact", str(tmp_path / "none"),
                          "--triton", str(tmp_path / "r2")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "no focal.json" in bad.stderr


# -- served by the bundled tritonserver ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(sample_data: Path) -> list[Path]:
    """The real samples (11 JPEG/PNG/TIFF files), or the generated stand-ins where the shared data is absent."""
    return list_images(sample_data / "real-samples" / "images")


@pytest.fixture(scope="module")
def expected(images: list[Path]) -> dict[str, tuple[np.ndarray, float]]:
    with Detector() as det:
        return {p.name: (r.mask, r.score) for p, r in zip(images, det.detect_many(images))}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("tritonclient.http")
    pytest.importorskip("tritonclient.grpc")
    from focal.serving._triton_env import ServeUnavailable
    from focal.serving._triton_launch import BundledServer, LaunchConfig

    root = tmp_path_factory.mktemp("triton")
    # A long queue delay, so that concurrent requests share the Python models' execute() calls.
    python_repo = write_repository(None, root / "python", TritonRepoConfig(features="python", queue_delay_us=50_000))
    # Its Python models go through EXECUTION_ENV_PATH (this interpreter's venv, unpacked: it has bin/activate),
    # the route documented for servers whose own Python lacks focal.
    # No cue: its postprocess model is called straight with features and size, as the features model hands them.
    ort_repo = write_repository(None, root / "ort", TritonRepoConfig(prefix="focalort", python_env=sys.prefix,
                                                                     copy_move=False, double_jpeg=False))
    # The default with "split" as its default decision: the postprocess model applies its threshold.
    split_artifact = Path(shutil.copytree(default_artifact(), root / "split-artifact"))
    manifest = load_manifest(split_artifact)
    save_manifest(replace(manifest, clustering=replace(manifest.clustering, method="split")), split_artifact)
    split_repo = write_repository(split_artifact, root / "split",
                                  TritonRepoConfig(prefix="focalsplit", features="python"))
    # The module's plain repository runs the default's cues (its manifest lists both); these are told not to.
    no_cm_repo = write_repository(None, root / "no-copy-move",
                                  TritonRepoConfig(prefix="focalnocm", features="python", copy_move=False))
    # ... and this one also outputs heatmaps (the module's plain repository has no such output).
    no_dq_repo = write_repository(None, root / "no-double-jpeg",
                                  TritonRepoConfig(prefix="focalnodq", features="python", double_jpeg=False,
                                                   heatmap=True))
    launch = LaunchConfig(repositories=(python_repo, ort_repo, split_repo, no_cm_repo, no_dq_repo),
                          load=(*model_names().values(), *model_names("focalsplit").values(),
                                *model_names("focalnocm").values(), *model_names("focalnodq").values()))
    try:
        srv = BundledServer(launch).start()
    except ServeUnavailable as exc:
        pytest.skip(str(exc))
    yield srv
    srv.stop()


def _http(server):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(server.http_url, concurrency=8)


def _infer_http(client, data: bytes, model: str = "focal"):
    """One image to the ensemble (``[1]``), or straight to a preprocess model (batched: ``[1, 1]``)."""
    import tritonclient.http as httpclient

    value = np.array([[data]] if model.endswith("_preprocess") else [data], dtype=np.object_)
    inp = httpclient.InferInput("image", list(value.shape), "BYTES")
    inp.set_data_from_numpy(value)
    return client.infer(model, [inp])


def test_all_four_models_load(server) -> None:
    client = _http(server)
    try:
        for name in model_names().values():
            assert client.is_model_ready(name), name
    finally:
        client.close()


def test_ensemble_over_http_matches_detector(server, images, expected) -> None:
    client = _http(server)
    try:
        for path in images:
            result = _infer_http(client, path.read_bytes())
            mask, score = expected[path.name]
            got = result.as_numpy("mask")
            assert got.dtype == np.uint8 and got.shape == (1, *mask.shape), path.name
            assert got[0].tobytes() == mask.tobytes(), path.name
            assert float(result.as_numpy("score")[0, 0]) == np.float32(score), path.name
            assert result.as_numpy("pre_ms").shape == (1, 2) and result.as_numpy("post_ms").shape == (1, 2)
    finally:
        client.close()


def test_a_split_default_is_served_with_its_threshold(server, images) -> None:
    with Detector(clustering="split") as det:
        want = {p.name: r for p, r in zip(images, det.detect_many(images))}
    assert any(r.mask.any() for r in want.values()) or len(images) < 11  # the real samples: one passes
    client = _http(server)
    try:
        for path in images:
            result = _infer_http(client, path.read_bytes(), model="focalsplit")
            assert result.as_numpy("mask")[0].tobytes() == want[path.name].mask.tobytes(), path.name
            assert float(result.as_numpy("score")[0, 0]) == np.float32(want[path.name].score), path.name
    finally:
        client.close()


def test_ensemble_over_grpc_matches_detector(server, images, expected) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for path in images:
            inp = grpcclient.InferInput("image", [1], "BYTES")
            inp.set_data_from_numpy(np.array([path.read_bytes()], dtype=np.object_))
            result = client.infer("focal", [inp])
            mask, score = expected[path.name]
            assert result.as_numpy("mask")[0].tobytes() == mask.tobytes(), path.name
            assert float(result.as_numpy("score")[0, 0]) == np.float32(score), path.name
    finally:
        client.close()


def test_corrupt_image_fails_only_its_own_request(server, images, expected) -> None:
    from tritonclient.utils import InferenceServerException

    good = images[:6]
    source = next((p for p in images if p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"), images[0]).read_bytes()
    corrupt = source[: len(source) // 3]  # header intact, pixel data cut short
    with pytest.raises(ValueError) as why:
        decode_image(corrupt, "x")
    message = str(why.value).removeprefix("x: ")
    payloads = [p.read_bytes() for p in good]
    payloads.insert(3, corrupt)

    import tritonclient.http as httpclient

    client = _http(server)  # concurrency 8: async_infer sends them all at once (gevent, not threads)
    before = client.get_inference_statistics(model_name="focal_preprocess")["model_stats"][0]

    def result(pending):
        try:
            return pending.get_result()
        except InferenceServerException as exc:
            return exc

    try:
        pending = []
        for data in payloads:
            inp = httpclient.InferInput("image", [1], "BYTES")
            inp.set_data_from_numpy(np.array([data], dtype=np.object_))
            pending.append(client.async_infer("focal", [inp]))
        results = [result(p) for p in pending]
        after = client.get_inference_statistics(model_name="focal_preprocess")["model_stats"][0]
    finally:
        client.close()
    failed = results.pop(3)
    assert isinstance(failed, InferenceServerException)
    assert message in failed.message(), failed.message()
    for path, result in zip(good, results):
        assert not isinstance(result, Exception), f"{path.name}: {result}"
        assert result.as_numpy("mask")[0].tobytes() == expected[path.name][0].tobytes(), path.name
    runs = after["execution_count"] - before["execution_count"]
    requests = after["inference_count"] - before["inference_count"]
    print(f"preprocess: {requests} images in {runs} execute() calls")


def test_onnxruntime_repository_beside_it(server, images) -> None:
    from tritonclient.utils import InferenceServerException
    import tritonclient.http as httpclient

    client = _http(server)
    try:
        with pytest.raises(InferenceServerException) as exc:
            client.load_model("focalort_features")
        print(f"bundled server on focalort_features: {exc.value.message()}")
        assert "onnxruntime" in exc.value.message()
        client.load_model("focalort_preprocess")
        client.load_model("focalort_postprocess")
        assert f"Using Python execution env {sys.prefix}" in server.log_text()
        path = images[0]
        with Detector(copy_move=False) as det:  # as the repository: no cue (an array gives double-JPEG none)
            image = decode_image(path.read_bytes(), path.name, apply_orientation=True)
            tensor = det.members[0].preprocess(image)
            feats = det.feature_map(image)
            mask = det(image).mask
        pre = _infer_http(client, path.read_bytes(), "focalort_preprocess")
        assert pre.as_numpy("input")[0].tobytes() == tensor.tobytes()
        assert pre.as_numpy("size").tolist() == [list(image.shape[:2])]
        inputs = [httpclient.InferInput("features", [1, *feats.shape], "FP32"),
                  httpclient.InferInput("size", [1, 2], "INT32")]
        inputs[0].set_data_from_numpy(feats[None])
        inputs[1].set_data_from_numpy(pre.as_numpy("size"))
        post = client.infer("focalort_postprocess", inputs)
        assert post.as_numpy("mask")[0].tobytes() == mask.tobytes()
    finally:
        client.close()


def test_copy_move_repository_joins_the_search_as_the_detector(server, tmp_path: Path) -> None:
    files = {"copied": tmp_path / "copied.png", "plain": tmp_path / "plain.png"}
    cv2.imwrite(str(files["copied"]), copy_moved_texture(9)[0][:, :, ::-1])
    cv2.imwrite(str(files["plain"]), texture(11)[:, :, ::-1])
    with Detector() as det:  # the default's manifest turns the search on
        joint = {k: det(p) for k, p in files.items()}
    with Detector(copy_move=False) as det:
        alone = {k: det(p) for k, p in files.items()}
    # The copy is one the features miss: the masks differ, so the checks below tell the two apart.
    assert joint["copied"].copy_move.any() and not joint["plain"].copy_move.any()
    assert not np.array_equal(joint["copied"].mask, alone["copied"].mask)
    client = _http(server)
    try:
        for name, want in joint.items():
            result = _infer_http(client, files[name].read_bytes())  # the module's repository, no cue flag
            assert result.as_numpy("mask")[0].tobytes() == want.mask.tobytes(), name
            assert float(result.as_numpy("score")[0, 0]) == np.float32(want.score), name
            assert float(result.as_numpy("forged_fraction")[0, 0]) == np.float32(want.forged_fraction), name
            flag = result.as_numpy("copy_move")
            assert flag.dtype == np.int8 and flag.tolist() == [[int(want.copy_move.any())]], name
            assert result.as_numpy("double_jpeg").tolist() == [[-1]], name  # on, but a PNG gives it no evidence
        plain = _infer_http(client, files["copied"].read_bytes(), model="focalnocm")  # told no search
        assert plain.as_numpy("mask")[0].tobytes() == alone["copied"].mask.tobytes()
        assert float(plain.as_numpy("score")[0, 0]) == np.float32(alone["copied"].score)
        assert plain.as_numpy("copy_move").tolist() == [[-1]]
    finally:
        client.close()


def test_double_jpeg_repository_joins_the_cue_as_the_detector(server, tmp_path: Path) -> None:
    files = write_double_jpeg_cases(tmp_path)
    with Detector() as det:  # the default's manifest turns the cue on
        joint = {k: det(p) for k, p in files.items()}
    with Detector(double_jpeg=False) as det:
        alone = {k: det(p) for k, p in files.items()}
    # Found as stored and turned with the picture, double compression without a region, no evidence; and a
    # mask the cue changes, so the checks below tell the two repositories apart.
    assert joint["splice"].double_jpeg.any() and joint["turned"].double_jpeg.any()
    assert joint["turned"].mask.shape == joint["splice"].mask.shape[::-1]
    assert joint["twice"].double_jpeg is not None and not joint["twice"].double_jpeg.any()
    assert joint["plain"].double_jpeg is None
    assert not np.array_equal(joint["splice"].mask, alone["splice"].mask)
    flags = {"splice": 1, "turned": 1, "twice": 0, "plain": -1}
    client = _http(server)
    try:
        for name, want in joint.items():
            data = files[name].read_bytes()
            result = _infer_http(client, data)  # the module's repository, written with no cue flag
            assert result.as_numpy("mask")[0].tobytes() == want.mask.tobytes(), name
            assert result.as_numpy("mask").shape == (1, *want.mask.shape), name
            assert float(result.as_numpy("score")[0, 0]) == np.float32(want.score), name
            assert float(result.as_numpy("forged_fraction")[0, 0]) == np.float32(want.forged_fraction), name
            flag = result.as_numpy("double_jpeg")
            assert flag.dtype == np.int8 and flag.tolist() == [[flags[name]]], name
            assert result.as_numpy("copy_move").tolist() == [[int(want.copy_move.any())]], name  # searched too
            plain = _infer_http(client, data, model="focalnodq")
            assert plain.as_numpy("mask")[0].tobytes() == alone[name].mask.tobytes(), name
            assert plain.as_numpy("double_jpeg").tolist() == [[-1]], name
    finally:
        client.close()


def test_a_heatmap_repository_outputs_the_detectors_heatmap_levels(server, images) -> None:
    from focal.runtime.render import heatmap_levels

    picks = sorted(images, key=lambda p: p.stat().st_size)[:2]
    with Detector(double_jpeg=False, heatmap=True) as det:
        want = {p.name: det(p) for p in picks}
    client = _http(server)
    try:
        for path in picks:
            result = _infer_http(client, path.read_bytes(), model="focalnodq")  # written with heatmap=True
            heat = result.as_numpy("heatmap")
            assert heat.dtype == np.uint8 and heat.shape == (1, *want[path.name].mask.shape), path.name
            assert np.array_equal(heat[0], heatmap_levels(want[path.name].heatmap)), path.name
            assert result.as_numpy("mask")[0].tobytes() == want[path.name].mask.tobytes(), path.name
            assert _infer_http(client, path.read_bytes()).as_numpy("heatmap") is None  # the plain repository
    finally:
        client.close()


def test_cli_export_then_triton(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from focal.export.cli import main

    artifact, repo = tmp_path / "tiny", tmp_path / "repo"
    code = main(["--backbone", "tiny", "--random-weights", "--input-size", "64", "--out", str(artifact),
                 "--triton", str(repo), "--triton-features", "python", "--triton-max-queue", "3", "-q"])
    assert code == 0
    manifest = load_manifest(artifact)
    feat = _configs(repo)["features"]
    assert list(feat.input[0].dims) == [1, 3, 64, 64]
    assert list(feat.output[0].dims) == [1, manifest.output.feature_dim, manifest.output.height, manifest.output.width]
    assert feat.dynamic_batching.default_queue_policy.max_queue_size == 3
    assert (repo / "focal_features" / "1" / "model.onnx").read_bytes() == (artifact / "model.onnx").read_bytes()
