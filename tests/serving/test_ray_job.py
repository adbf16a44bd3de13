"""``focal-detect --ray``: what the local run writes, bad files recorded, resumable, a dead actor survived.

One local Ray instance (loopback, 2 CPUs) serves the module; every job runs
the embedded default model on the real samples and is compared with the
local ``focal-detect`` on the same inputs: masks and overlays byte for byte,
records field for field (all but the timings).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from make_fixtures import copy_moved_texture, write_double_jpeg_cases  # tests/ is on sys.path (conftest.py)

from focal.runtime.cli import DetectConfig, RunError, config_from_args, parse_args
from focal.runtime.default import default_artifact
from focal.runtime.journal import JOURNAL_NAME
from focal.serving import detect_cli

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from focal.serving.ray_job import CRASH_ENV, RayConfig, detect_on_ray, start_local_ray  # noqa: E402

# Small ones: the fault and bad-file tests need a few images, not the 9-megapixel one.
FEW = 4


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(sample_data: Path) -> Path:
    return sample_data / "real-samples" / "images"


@pytest.fixture(scope="module")
def few(images: Path, tmp_path_factory) -> Path:
    """Copies of the FEW smallest samples."""
    folder = tmp_path_factory.mktemp("few")
    for path in sorted(images.iterdir(), key=lambda p: p.stat().st_size)[:FEW]:
        shutil.copy(path, folder / path.name)
    return folder


def _cli(args: list[str]) -> int:
    return detect_cli.main(args + ["--backend", "cpu"])


def _config(args: list[str]) -> tuple[list[str], DetectConfig]:
    return config_from_args(parse_args(detect_cli.build_parser(), args + ["--backend", "cpu"]))


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines()]


def _by_path(out: Path) -> dict[str, dict]:
    recs = _records(out)
    by = {r["path"]: r for r in recs}
    assert len(by) == len(recs), "an image was recorded twice"
    return by


def _assert_same_outputs(local: Path, other: Path) -> None:
    """Same records but for timings (paths are relative to each out folder: siblings compare equal), same files."""
    want, got = _by_path(local), _by_path(other)
    assert sorted(got) == sorted(want)
    for path, rec in want.items():
        assert {k: v for k, v in got[path].items() if k != "timings_ms"} == \
            {k: v for k, v in rec.items() if k != "timings_ms"}, path
        if rec["error"] is None:
            assert set(got[path]["timings_ms"]) == set(rec["timings_ms"])
            for name in (rec["mask"], rec["overlay"], *([rec["heatmap"]] if "heatmap" in rec else [])):
                assert (other / name).read_bytes() == (local / name).read_bytes(), name
    assert sorted(p.name for p in other.rglob("*.png")) == sorted(p.name for p in local.rglob("*.png"))


@pytest.fixture(scope="module")
def local_out(images: Path, tmp_path_factory) -> Path:
    """The local focal-detect on all samples (the reference)."""
    out = tmp_path_factory.mktemp("runs") / "local"
    assert _cli([str(images), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ray_out(local_ray, images: Path, local_out: Path) -> Path:
    """The Ray job, two actors, on all samples, into a sibling of ``local_out``."""
    out = local_out.parent / "ray"
    inputs, cfg = _config([str(images), "--out", str(out)])
    summary = detect_on_ray(inputs, cfg, RayConfig(actors=2))
    assert (summary.done, summary.failed, summary.skipped, summary.exit_code) == (len(_records(local_out)), 0, 0, 0)
    return out


def test_two_actors_write_what_the_local_run_writes(ray_out: Path, local_out: Path) -> None:
    assert len(_records(local_out)) >= 2
    _assert_same_outputs(local_out, ray_out)


def test_heatmaps_come_back_from_the_actors(local_ray, few: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert _cli([str(few), "--out", str(local), "--heatmap"]) == 0
    inputs, cfg = _config([str(few), "--out", str(remote), "--heatmap"])
    assert detect_on_ray(inputs, cfg, RayConfig(actors=1)).done == FEW
    assert all("heatmap" in r for r in _records(remote))
    _assert_same_outputs(local, remote)


def test_a_rerun_skips_what_is_done_and_redoes_what_is_missing(ray_out: Path, images: Path, local_out: Path) -> None:
    ray_out = shutil.copytree(ray_out, ray_out.parent / "ray-again")  # a sibling: the same relative paths
    n = len(_records(ray_out))
    inputs, cfg = _config([str(images), "--out", str(ray_out)])
    again = detect_on_ray(inputs, cfg, RayConfig(actors=2))
    assert (again.done, again.skipped, again.failed, again.exit_code) == (0, n, 0, 0)
    assert len(_records(ray_out)) == n  # nothing appended
    # One image's mask gone: only that one is done again, and it comes out the same.
    victim = sorted(_by_path(ray_out).values(), key=lambda r: r["mask"])[0]
    (ray_out / victim["mask"]).unlink()
    resumed = detect_on_ray(inputs, cfg, RayConfig(actors=1))
    assert (resumed.done, resumed.skipped, resumed.exit_code) == (1, n - 1, 0)
    assert (ray_out / victim["mask"]).read_bytes() == (local_out / victim["mask"]).read_bytes()
    assert len(_records(ray_out)) == n + 1
    latest = {r["path"]: r for r in _records(ray_out)}  # the last record per input, as readers take it
    assert {k: v for k, v in latest[victim["path"]].items() if k != "timings_ms"} == \
        {k: v for k, v in victim.items() if k != "timings_ms"}


def test_a_local_run_and_a_ray_job_on_one_folder_record_each_image_once(local_ray, images: Path, local_out: Path,
                                                                       tmp_path: Path) -> None:
    out = local_out.parent / "shared-out"  # a sibling of local_out: the same relative paths
    local = subprocess.Popen([sys.executable, "-m", "focal.serving.detect_cli", str(images), "--out", str(out),
                              "--backend", "cpu", "--threads", "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        inputs, cfg = _config([str(images), "--out", str(out)])
        summary = detect_on_ray(inputs, cfg, RayConfig(actors=1))
    finally:
        _, err = local.communicate(timeout=300)
    assert local.returncode == 0, err[-2000:]
    local_done = int(err.splitlines()[-1].split("focal-detect: ")[1].split(" done")[0])
    n = len(_records(local_out))
    assert summary.failed == 0 and summary.done + summary.skipped == n
    assert summary.done + local_done == n  # each image done by one of the two
    _assert_same_outputs(local_out, out)  # and recorded once (_by_path refuses a second record)


def test_a_corrupt_file_is_a_failed_record_and_the_others_are_done(local_ray, few: Path, tmp_path: Path) -> None:
    # The console script in its own process: its own local Ray instance, --json, and a dead actor on the way.
    inputs = tmp_path / "inputs"
    shutil.copytree(few, inputs)
    good = sorted(inputs.iterdir())[0]
    (inputs / "broken.jpg").write_bytes(good.read_bytes()[:300])  # a JPEG cut after its header
    (inputs / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert _cli([str(inputs), "--out", str(tmp_path / "local")]) == 1
    marker = tmp_path / "died-once"
    env = {**os.environ, CRASH_ENV: f"{good.name}:{marker}"}
    run = subprocess.run([sys.executable, "-m", "focal.serving.detect_cli", str(inputs), "--out", str(tmp_path / "ray"),
                          "--ray", "--actors", "2", "--backend", "cpu", "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr[-2000:]
    assert marker.is_file()
    _assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    recs = _by_path(tmp_path / "ray")
    failed = sorted(Path(p).name for p, r in recs.items() if r["error"] is not None)
    assert failed == ["broken.jpg", "noise.png"]
    assert sum(r["error"] is None for r in recs.values()) == FEW
    # stdout holds the records and nothing else (Ray's own messages go to stderr); stderr ends on the summary.
    assert [json.loads(line) for line in run.stdout.splitlines()] == _records(tmp_path / "ray")
    last = run.stderr.splitlines()[-1]
    assert last.startswith(f"focal-detect: {FEW} done (") and ", 2 failed, 0 skipped" in last


def test_an_actor_killed_mid_job_is_retried_and_the_outputs_are_complete(local_ray, few: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    victim = sorted(p.name for p in few.iterdir())[FEW // 2]  # not the first: other batches are done or in flight
    marker = tmp_path / "died-once"
    monkeypatch.setenv(CRASH_ENV, f"{victim}:{marker}")
    inputs, cfg = _config([str(few), "--out", str(tmp_path / "ray")])
    # Without restarts the death fails the job (so the retry below is what saves it); what is done stays.
    with pytest.raises(RunError, match="the Ray job failed"):
        detect_on_ray(inputs, cfg, RayConfig(actors=2, max_restarts=0, max_task_retries=0))
    assert marker.is_file()  # the actor did die on it
    assert all(r["error"] is None for r in _records(tmp_path / "ray")) and victim not in str(_records(tmp_path / "ray"))
    marker.unlink()
    summary = detect_on_ray(inputs, cfg, RayConfig(actors=2, max_restarts=2, max_task_retries=2))
    assert marker.is_file()  # it died again, and Ray restarted it and re-ran its batch
    assert (summary.done + summary.skipped, summary.failed, summary.exit_code) == (FEW, 0, 0)
    monkeypatch.delenv(CRASH_ENV)
    assert _cli([str(few), "--out", str(tmp_path / "local")]) == 0
    _assert_same_outputs(tmp_path / "local", tmp_path / "ray")


def test_without_ray_the_flag_names_the_extra(few: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from focal.serving.detect_cli import main; "
            f"sys.exit(main([{str(few)!r}, '--out', {str(tmp_path / 'o')!r}, '--ray']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "pip install 'focal[cpu,ray]'" in run.stderr
    assert not (tmp_path / "o").exists()


def test_ray_options_parse_beside_inputs() -> None:
    parse = detect_cli._bare_ray_flag
    assert parse(["photos/", "--ray", "more/", "--out", "o"]) == ["photos/", "--ray=local", "more/", "--out", "o"]
    assert parse(["photos/", "--ray"]) == ["photos/", "--ray=local"]
    for address in ("auto", "ray://head:10001", "10.0.0.5:6379", "head.cluster:6379"):
        assert parse(["--ray", address, "photos/"]) == ["--ray", address, "photos/"]
    args = parse_args(detect_cli.build_parser(), parse(["default", "a.jpg", "--ray", "b.jpg", "--out", "o"]))
    assert args.ray == "local" and [args.artifact, *args.inputs] == ["default", "a.jpg", "b.jpg"]


def test_misused_ray_options_stop_before_any_work(few: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        _cli([str(few), "--out", str(tmp_path / "o"), "--actors", "3"])  # --actors without --ray
    assert info.value.code == 2 and "--actors need(s) --ray" in capsys.readouterr().err
    # A GPU actor must run a GPU backend: 'auto' could fall back to the CPU unseen.
    assert detect_cli.main([str(few), "--out", str(tmp_path / "o"), "--ray", "--gpus-per-actor", "1"]) == 2
    assert "--gpus-per-actor 1 needs --backend cuda" in capsys.readouterr().err
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert _cli([str(few), "--out", str(tmp_path / "o"), "--ray", f"127.0.0.1:{port}"]) == 2
    assert f"--ray 127.0.0.1:{port}: no Ray cluster answers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_model_the_actors_cannot_open_stops_before_any_work(local_ray, few: Path, tmp_path: Path, capsys) -> None:
    artifact = tmp_path / "artifact"
    shutil.copytree(default_artifact(), artifact)
    model = artifact / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1000])  # cut: its sha256 is no longer the manifest's
    assert _cli([str(artifact), str(few), "--out", str(tmp_path / "o"), "--ray"]) == 2
    err = capsys.readouterr().err
    assert f"focal-detect: {artifact}: cannot open the model" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_the_local_instance_is_on_the_loopback_interface(local_ray) -> None:
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


def test_the_cues_run_in_the_actors_as_they_run_locally(local_ray, tmp_path: Path) -> None:
    # --copy-move and --double-jpeg on Ray: the same masks, records (copy_move, double_jpeg) and files
    # as the local run, on inputs where each cue finds something and where it finds nothing.
    inputs = tmp_path / "in"
    write_double_jpeg_cases(inputs)
    copied, _ = copy_moved_texture(21)
    cv2.imwrite(str(inputs / "copied.png"), copied[:, :, ::-1])
    cues = ["--copy-move", "--double-jpeg"]
    local = tmp_path / "local"
    assert _cli([str(inputs), "--out", str(local), *cues]) == 0
    out = tmp_path / "ray"
    args, cfg = _config([str(inputs), "--out", str(out), *cues])
    summary = detect_on_ray(args, cfg, RayConfig(actors=2))
    assert (summary.done, summary.failed, summary.exit_code) == (5, 0, 0)
    _assert_same_outputs(local, out)
    recs = {Path(r["path"]).name: r for r in _records(out)}
    assert recs["splice.jpg"]["double_jpeg"] is True and recs["twice.jpg"]["double_jpeg"] is False
    assert "double_jpeg" not in recs["plain.png"] and recs["copied.png"]["copy_move"] is True
