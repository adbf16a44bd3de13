"""``focal-serve``: the default model behind the Triton server bundled in nvidia-pytriton, on loopback.

Each server is the real console command in a subprocess; answers are
compared with the in-process ``Detector`` on the same files.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytriton", reason="needs the serve extra (nvidia-pytriton)")
from tritonclient.utils import InferenceServerException  # noqa: E402

from make_fixtures import copy_moved_texture, texture, write_double_jpeg_cases  # noqa: E402
from focal.runtime import Detector  # noqa: E402
from focal.runtime.detector import STAGES  # noqa: E402
from focal.runtime.manifest import load_manifest  # noqa: E402
from focal.serving._triton_env import interpreter_libdir, triton_env  # noqa: E402
from focal.serving.local_server import LocalServer, free_port_block  # noqa: E402
from focal.serving.serve_cli import build_parser, config_from_args  # noqa: E402
from focal.serving.triton_client import FocalClient  # noqa: E402

@pytest.fixture(scope="module")
def files(forgeries) -> list[Path]:
    found = sorted(p for p in forgeries.iterdir() if p.is_file())
    assert found
    return found


@pytest.fixture(scope="module")
def expected(files):
    with Detector() as det:
        return {p: det(p) for p in files}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LocalServer(tmp_path_factory.mktemp("serve") / "server.log", free_port_block()).start()
    yield srv
    assert srv.stop() == 0, srv.log.read_text()[-3000:]


def _counts(server: LocalServer) -> tuple[int, int]:
    """Triton's (inferences, model executions) of the focal model, from its Prometheus metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.port + 2}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("nv_inference_count", "nv_inference_exec_count"):
            if line.startswith(name + '{model="focal"'):
                values[name] = int(float(line.rsplit(" ", 1)[1]))
    return values["nv_inference_count"], values["nv_inference_exec_count"]


def _same(remote, local) -> None:
    assert remote.error is None, remote.error
    assert remote.mask.dtype == np.uint8 and remote.mask.shape == local.mask.shape
    assert np.array_equal(remote.mask, local.mask)
    assert remote.score == np.float32(local.score)
    assert remote.forged_fraction == np.float32(local.forged_fraction)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_sample_matches_the_detector(server, files, expected, protocol) -> None:
    port = server.port if protocol == "http" else server.port + 1
    with FocalClient(f"127.0.0.1:{port}", protocol=protocol) as client:
        for path in files:
            [remote] = client.detect([path.read_bytes()])
            _same(remote, expected[path])
            # The embedded default's manifest lists both cues: the server runs them unasked.
            assert set(remote.timings) == {*STAGES, "copy_move", "double_jpeg"}


def test_a_corrupt_element_fails_alone(server, files, expected) -> None:
    good = files[:2]
    blobs = [good[0].read_bytes(), good[1].read_bytes()[:300], b"not an image at all", good[1].read_bytes()]
    with FocalClient(f"127.0.0.1:{server.port}") as client:
        out = client.detect(blobs)
    _same(out[0], expected[good[0]])
    _same(out[3], expected[good[1]])
    assert out[1].error is not None and out[1].error.startswith("image[1]: ")
    assert out[2].error is not None and "image[2]: " in out[2].error and "unsupported format" in out[2].error
    assert out[1].mask.shape == (0, 0) and np.isnan(out[2].score)


def test_concurrent_requests_are_batched_and_a_bad_one_fails_alone(server, files, expected) -> None:
    jobs = [p.read_bytes() for p in files] + [b"\x89PNG\r\n\x1a\n broken"]
    answers: dict[int, object] = {}
    before = _counts(server)

    def send(k: int) -> None:
        with FocalClient(f"127.0.0.1:{server.port}") as client:
            answers[k] = client.detect([jobs[k]])[0]

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == len(jobs)
    for k, path in enumerate(files):
        _same(answers[k], expected[path])
    assert answers[len(files)].error is not None and answers[len(files)].error.startswith("image[0]: ")
    after = _counts(server)
    # Triton's dynamic batcher gathered requests: fewer model executions than images.
    images, executions = after[0] - before[0], after[1] - before[1]
    assert images == len(jobs) and executions < images, (images, executions)


def test_health_and_metrics_endpoints(server) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/focal/ready"):
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as response:
            assert response.status == 200, path
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.port + 2}/metrics", timeout=10).read().decode()
    assert 'nv_inference_pending_request_count{model="focal",version="1"}' in metrics  # queue depth
    assert 'nv_inference_request_success{model="focal",version="1"}' in metrics


def test_client_disconnects_leave_the_server_serving(server, files, expected) -> None:
    body = files[0].read_bytes()
    for cut in (True, False):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = (f"POST /v2/models/focal/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                    f"Inference-Header-Content-Length: 0\r\nContent-Length: {len(body) + 1000}\r\n\r\n").encode()
            sock.sendall(head + (body[:1000] if cut else body + b"x" * 1000))
            # Gone mid-request (cut) or before reading the answer.
    with FocalClient(f"127.0.0.1:{server.port}") as client:
        _same(client.detect([files[0].read_bytes()])[0], expected[files[0]])


def test_a_full_queue_rejects_at_once(tmp_path, files, expected) -> None:
    srv = LocalServer(tmp_path / "small.log", free_port_block(), "--max-queue", "1", "--instances", "1",
                 "--max-batch-size", "1", "--queue-delay-us", "0").start()
    try:
        blob, want = files[0].read_bytes(), expected[files[0]]
        outcomes: list[object] = []
        lock = threading.Lock()

        def send() -> None:
            with FocalClient(f"127.0.0.1:{srv.port}") as client:
                try:
                    result = client.detect([blob])[0]
                except InferenceServerException as exc:
                    result = exc
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=send) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        rejected = [o for o in outcomes if isinstance(o, InferenceServerException)]
        accepted = [o for o in outcomes if not isinstance(o, InferenceServerException)]
        assert len(outcomes) == 12 and rejected and accepted
        assert all("queue" in str(r).lower() for r in rejected), [str(r) for r in rejected]
        for result in accepted:
            _same(result, want)
        with FocalClient(f"127.0.0.1:{srv.port}") as client:  # still serving
            _same(client.detect([blob])[0], want)
    finally:
        assert srv.stop() == 0


def test_a_restart_under_load_returns_nothing_wrong(tmp_path, files, expected) -> None:
    port = free_port_block()
    # One model instance: PyTriton 0.7.0's instance handshake can fail a start with two (serve()
    # starts again, test_a_start_that_misses_the_instance_handshake_is_started_again), and this
    # test is about the restart, not that race.
    one = ("--instances", "1")
    srv = LocalServer(tmp_path / "restart.log", port, *one).start()
    stop = threading.Event()
    good, failed, wrong = [0], [0], []

    def client_loop(k: int) -> None:
        path = files[k % len(files)]
        while not stop.is_set():
            try:
                with FocalClient(f"127.0.0.1:{port}", timeout_s=30) as client:
                    remote = client.detect([path.read_bytes()])[0]
            except Exception:  # refused / reset while the server is down: the client's retry business
                failed[0] += 1
                time.sleep(0.1)
                continue
            local = expected[path]
            if remote.error is not None or not np.array_equal(remote.mask, local.mask):
                wrong.append((path.name, remote.error))
            else:
                good[0] += 1

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        assert srv.stop() == 0
        before = good[0]
        srv = LocalServer(tmp_path / "restart.log", port, *one).start()
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        code = srv.stop()
    assert not wrong, wrong
    assert before > 0 and good[0] > before  # served before the restart, and again after it
    assert code == 0


@pytest.fixture(scope="module")
def copy_moves(tmp_path_factory) -> dict[str, Path]:
    """PNGs: ``copied``, a texture with a block pasted 130 px away; ``plain``, a texture with no repeat."""
    folder = tmp_path_factory.mktemp("copy-moves")
    files = {"copied": folder / "copied.png", "plain": folder / "plain.png"}
    cv2.imwrite(str(files["copied"]), copy_moved_texture(9)[0][:, :, ::-1])
    cv2.imwrite(str(files["plain"]), texture(11)[:, :, ::-1])
    return files


def test_copy_move_flag_reaches_the_detector_config() -> None:
    assert config_from_args(build_parser().parse_args(["--copy-move"])).detector.copy_move is True
    assert config_from_args(build_parser().parse_args(["--no-copy-move"])).detector.copy_move is False
    unsaid = config_from_args(build_parser().parse_args([]))
    assert unsaid.detector.copy_move is None  # left to the manifest, whose cues turn it on for the default
    assert load_manifest(unsaid.artifact).settle_cues(unsaid.detector).copy_move is True


def test_copy_move_is_served_as_the_detector_finds_it(tmp_path, server, copy_moves) -> None:
    with Detector() as det:  # the embedded default's manifest turns the search on
        joint = {k: det(p) for k, p in copy_moves.items()}
    with Detector(copy_move=False) as det:
        alone = {k: det(p) for k, p in copy_moves.items()}
    # The image holds a copy the features miss: the two masks differ, so the checks below can tell them apart.
    assert joint["copied"].copy_move.any() and not joint["plain"].copy_move.any()
    assert not np.array_equal(joint["copied"].mask, alone["copied"].mask)
    blobs = [copy_moves["copied"].read_bytes(), copy_moves["plain"].read_bytes()]

    # The module's server runs the default with no flag: the search is on, as the manifest says.
    for protocol, port in (("http", server.port), ("grpc", server.port + 1)):
        with FocalClient(f"127.0.0.1:{port}", protocol=protocol) as client:
            copied, plain = client.detect(blobs)  # one request, two images
        _same(copied, joint["copied"])
        _same(plain, joint["plain"])
        assert copied.copy_move is True and plain.copy_move is False
        # the default's manifest adds the double-JPEG cue, which reads the PNG too and finds nothing
        assert set(copied.timings) == {*STAGES, "copy_move", "double_jpeg"} and copied.timings["copy_move"] > 0
    with FocalClient(server.http) as client:  # a failed element was not searched
        [bad] = client.detect([b"not an image at all"])
    assert bad.error is not None and bad.copy_move is None

    # --no-copy-move: the features' mask, and "not searched" (-1, int8).
    srv = LocalServer(tmp_path / "copy-move.log", free_port_block(), "--no-copy-move").start()
    try:
        with FocalClient(srv.http) as client:
            [remote] = client.detect([blobs[0]])
        _same(remote, alone["copied"])
        assert remote.copy_move is None and set(remote.timings) == {*STAGES, "double_jpeg"}
        flag = _raw(srv.http, [blobs[0]], "copy_move")
        assert flag.dtype == np.int8 and flag.tolist() == [[-1]]
    finally:
        assert srv.stop() == 0, srv.log.read_text()[-3000:]


def _raw(url: str, blobs: list[bytes], output: str) -> np.ndarray:
    """One output tensor of one request, as Triton sends it (no client-side interpretation)."""
    import tritonclient.http as httpclient

    raw = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("image", [len(blobs), 1], "BYTES")
        inp.set_data_from_numpy(np.array([[b] for b in blobs], dtype=object))
        return raw.infer("focal", [inp]).as_numpy(output)
    finally:
        raw.close()


@pytest.fixture(scope="module")
def double_jpegs(tmp_path_factory) -> dict[str, Path]:
    """The cue's four cases (make_fixtures.write_double_jpeg_cases): splice, turned, twice, plain."""
    return write_double_jpeg_cases(tmp_path_factory.mktemp("double-jpeg"))


def test_double_jpeg_flag_reaches_the_detector_config() -> None:
    assert config_from_args(build_parser().parse_args(["--double-jpeg"])).detector.double_jpeg is True
    assert config_from_args(build_parser().parse_args(["--no-double-jpeg"])).detector.double_jpeg is False
    unsaid = config_from_args(build_parser().parse_args([]))
    assert unsaid.detector.double_jpeg is None  # left to the manifest, whose cues turn it on for the default
    assert load_manifest(unsaid.artifact).settle_cues(unsaid.detector).double_jpeg is True


def test_double_jpeg_is_served_as_the_detector_finds_it(tmp_path, server, double_jpegs) -> None:
    with Detector() as det:  # the embedded default's manifest turns the cue on
        joint = {k: det(p) for k, p in double_jpegs.items()}
    with Detector(double_jpeg=False) as det:
        alone = {k: det(p) for k, p in double_jpegs.items()}
    # The cue finds the splice (turned with the picture), sees the untouched photo saved twice, and has nothing
    # to say on a PNG; its mask changes the splice's, so the checks below can tell the two servers apart.
    assert joint["splice"].double_jpeg.any() and joint["turned"].double_jpeg.any()
    assert joint["twice"].double_jpeg is not None and not joint["twice"].double_jpeg.any()
    assert joint["plain"].double_jpeg is None
    assert not np.array_equal(joint["splice"].mask, alone["splice"].mask)
    names = list(double_jpegs)
    blobs = [double_jpegs[k].read_bytes() for k in names]
    flags = {"splice": 1, "turned": 1, "twice": 0, "plain": -1}

    # The module's server runs the default with no flag: the cue is on, as the manifest says.
    with FocalClient(server.http) as client:
        remote = dict(zip(names, client.detect(blobs)))  # one request, four images of two shapes
    for k in names:
        _same(remote[k], joint[k])
        assert remote[k].copy_move is not None  # the manifest's other cue searched every file
        assert set(remote[k].timings) == {*STAGES, "copy_move", "double_jpeg"}, k  # the cue read every file
    want = {k: None if f < 0 else bool(f) for k, f in flags.items()}  # the client's reading of 1 / 0 / -1
    assert {k: r.double_jpeg for k, r in remote.items()} == want
    raw = _raw(server.http, blobs, "double_jpeg")
    assert raw.dtype == np.int8 and raw.tolist() == [[flags[k]] for k in names]
    with FocalClient(server.http) as client:  # a failed element was not searched
        [bad] = client.detect([blobs[0][:300]])
    assert bad.error is not None and bad.double_jpeg is None

    # --no-double-jpeg: the plain masks, and -1 for every file.
    srv = LocalServer(tmp_path / "double-jpeg.log", free_port_block(), "--no-double-jpeg").start()
    try:
        with FocalClient(srv.http) as client:
            plain = dict(zip(names, client.detect(blobs)))
        for k in names:
            _same(plain[k], alone[k])
            assert plain[k].double_jpeg is None and set(plain[k].timings) == {*STAGES, "copy_move"}
        assert _raw(srv.http, blobs, "double_jpeg").tolist() == [[-1]] * len(names)
    finally:
        assert srv.stop() == 0, srv.log.read_text()[-3000:]


def test_heatmaps_are_served_on_request(tmp_path, server, files) -> None:
    from focal.runtime.render import heatmap_levels

    assert config_from_args(build_parser().parse_args(["--heatmap"])).detector.heatmap is True
    two = sorted(files, key=lambda p: p.stat().st_size)[:2]  # two sizes: the smaller one is padded, then cropped
    with Detector(heatmap=True) as det:
        local = [det(p) for p in two]
    blobs = [p.read_bytes() for p in two]
    with FocalClient(server.http) as client:  # the module's server runs without --heatmap
        assert all(r.heatmap is None for r in client.detect(blobs))
    srv = LocalServer(tmp_path / "heatmap.log", free_port_block(), "--heatmap").start()
    try:
        for protocol, port in (("http", srv.port), ("grpc", srv.port + 1)):
            with FocalClient(f"127.0.0.1:{port}", protocol=protocol) as client:
                remote = client.detect(blobs + [b"not an image at all"])
            for r, want in zip(remote, local):
                _same(r, want)
                assert r.heatmap.dtype == np.uint8 and np.array_equal(r.heatmap, heatmap_levels(want.heatmap))
                assert r.heatmap.max() > r.heatmap.min() and "heatmap" in r.timings
            assert remote[2].error is not None and remote[2].heatmap is None
    finally:
        assert srv.stop() == 0, srv.log.read_text()[-3000:]


def test_port_in_use_and_bad_artifact_exit_2(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "focal.serving.serve_cli", "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and f"127.0.0.1:{port}" in run.stderr
    (tmp_path / "model.onnx").write_bytes(b"x")
    run = subprocess.run([sys.executable, "-m", "focal.serving.serve_cli", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "not an artifact" in run.stderr and "Traceback" not in run.stderr


def test_triton_env_puts_this_interpreters_libpython_first() -> None:
    libdir = interpreter_libdir()
    given = {"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu:/opt/x", "PATH": "/usr/bin"}
    env = triton_env(given)
    if libdir is None:  # a static build: nothing to put first, and nothing changed
        assert env["LD_LIBRARY_PATH"] == "/usr/lib/x86_64-linux-gnu:/opt/x"
    else:
        assert env["LD_LIBRARY_PATH"].split(":") == [str(libdir), "/usr/lib/x86_64-linux-gnu", "/opt/x"]
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert given == {"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu:/opt/x", "PATH": "/usr/bin"}  # a copy


def test_a_start_that_misses_the_instance_handshake_is_started_again(monkeypatch) -> None:
    # PyTriton's instance handshake race, made to happen once: serve() starts Triton again on the
    # same ports and serves; any other start failure is not retried.
    from pytriton.triton import Triton

    from focal.runtime.default import default_artifact
    from focal.serving import triton_server

    real_run, calls = Triton.run, []

    def flaky_run(self):
        calls.append(1)
        if len(calls) == 1:
            raise InferenceServerException("load failed for model 'focal': ... get_config_from_handshake_server"
                                           " ... ConnectionRefusedError: [Errno 111] Connection refused")
        return real_run(self)

    monkeypatch.setattr(Triton, "run", flaky_run)
    stop, urls = threading.Event(), []
    cfg = triton_server.ServeConfig(artifact=default_artifact(), http_port=free_port_block())

    def ready(url: str) -> None:
        urls.append(url)
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=10) as response:
            urls.append(response.status)
        stop.set()

    assert triton_server.serve(cfg, on_ready=ready, stop=stop) == 0
    assert len(calls) == 2 and urls[1] == 200
    assert not triton_server._is_start_race(RuntimeError("load failed: some other reason"))
