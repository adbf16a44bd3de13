"""focal-detect results you can trust: no silent fallbacks, every input accounted for,
safe concurrent, interrupted and resumed runs. One test per defect; each fails on the old CLI."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from focal.runtime import cli
from focal.runtime.cli import main

_SCRIPT = Path(sys.executable).with_name("focal-detect")
FOCAL_DETECT = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "focal.runtime.cli"]


def _write_images(folder: Path, n: int, seed: int = 0, size: int = 64) -> list[Path]:
    """``n`` seeded random PNGs of ``size`` x ``size``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def _lines(out: Path) -> list[dict]:
    """Every parseable journal line (a cut line of a killed run is skipped, as readers do)."""
    recs = []
    for line in (out / "results.jsonl").read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return recs


def _by_input(out: Path) -> dict[Path, dict]:
    """The last record per input, keyed by the input's resolved path (journal paths are relative to ``out``)."""
    return {(out / r["path"]).resolve(): r for r in _lines(out)}


def _masks(out: Path) -> dict[str, bytes]:
    """Mask bytes by input file name."""
    return {(out / r["path"]).name: (out / r["mask"]).read_bytes() for r in _lines(out) if r.get("error") is None}


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not load")


# -- defect 1: a mistyped artifact never runs the default ----------------------------------------
def test_mistyped_artifact_is_an_error_not_the_default(tiny_artifact: Path, photo_dir: Path, tmp_path: Path,
                                                      monkeypatch, capsys) -> None:
    monkeypatch.setattr("focal.runtime.cli.default_artifact", lambda: tiny_artifact)  # a default that would run
    monkeypatch.setattr("focal.runtime.cli.Detector", _no_model)
    out = tmp_path / "out"
    assert main([str(tmp_path / "my-vit-artifact"), str(photo_dir), "--out", str(out)]) == 2
    assert "ARTIFACT not found" in capsys.readouterr().err
    half = tmp_path / "no-manifest"  # an artifact folder that lost its focal.json
    half.mkdir()
    shutil.copy(tiny_artifact / "model.onnx", half / "model.onnx")
    assert main([str(half), str(photo_dir), "--out", str(out)]) == 2
    assert "not an artifact" in capsys.readouterr().err
    assert main([str(tiny_artifact / "model.onnx"), str(photo_dir), "--out", str(out)]) == 2
    assert not out.exists()


# -- defect 4: names from the path, so adding a file never renames or misattaches outputs ---------
def test_adding_a_file_never_attaches_another_files_mask(tiny_artifact: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(4)
    sizes = {"a.jpg": (64, 72), "a.png": (64, 88), "a.bmp": (64, 104)}  # a mask's size tells its image
    for name in ("a.jpg", "a.png"):
        cv2.imwrite(str(src / name), rng.integers(0, 256, (*sizes[name], 3), dtype=np.uint8))
    args = [str(tiny_artifact), str(src), "--out", str(out), "--backend", "cpu"]
    assert main(args) == 0
    cv2.imwrite(str(src / "a.bmp"), rng.integers(0, 256, (*sizes["a.bmp"], 3), dtype=np.uint8))
    assert main(args) == 0
    recs = _by_input(out)
    assert len(recs) == 3
    for name, (h, w) in sizes.items():
        rec = recs[(src / name).resolve()]
        assert cv2.imread(str(out / rec["mask"]), cv2.IMREAD_UNCHANGED).shape == (h, w), f"{name}: another's mask"
        assert rec["mask"] == f"{name}.mask.png"


# -- defect 5: --out inside an input folder ------------------------------------------------------
def test_out_inside_the_input_is_never_read_back(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    _write_images(src, 3)
    out = src / "results"
    for _ in range(2):
        assert main([str(tiny_artifact), str(src), "--out", str(out), "--backend", "cpu"]) == 0
    assert not [p for p in out.rglob("*.png") if p.name.count(".mask") + p.name.count(".overlay") > 1]
    assert {r["path"] for r in _lines(out)} == {f"../img00{i}.png" for i in range(3)}
    capsys.readouterr()
    assert main([str(tiny_artifact), str(src), "--out", str(src), "--backend", "cpu"]) == 2
    assert "is the input folder" in capsys.readouterr().err


# -- defect 9: every file considered gets a record -----------------------------------------------
def test_every_considered_file_gets_a_record(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _write_images(src, 1)
    gif = b"GIF89a" + bytes(64)
    (src / "anim.png").write_bytes(gif)  # GIF bytes under an image suffix
    (src / "dead.jpg").symlink_to(tmp_path / "gone.jpg")
    (src / "notes.txt").write_text("not considered: no image suffix")
    named = tmp_path / "named.gif"
    named.write_bytes(gif)
    assert main([str(tiny_artifact), str(src), str(named), "--out", str(out), "--backend", "cpu"]) == 1
    recs = _by_input(out)
    assert recs[(src / "dead.jpg").resolve()]["error"] == "dangling symlink"
    assert recs[(src / "img000.png").resolve()]["error"] is None
    assert recs[(src / "anim.png").resolve()]["error"].startswith("unsupported format GIF")
    assert recs[named.resolve()]["error"].startswith("unsupported format GIF")
    assert len(recs) == 4
    assert "dead.jpg: dangling symlink" in capsys.readouterr().err


# -- defect 10: one path per error line, decoder chatter tied to its file --------------------------
def test_error_lines_name_the_file_once_and_decoder_messages_join_it(tiny_artifact: Path, tmp_path: Path,
                                                                    capfd) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _write_images(src, 1)
    (src / "zero.jpg").write_bytes(b"")
    png = bytearray((src / "img000.png").read_bytes())
    png[60:80] = bytes(20)  # header intact, image data broken: libpng complains on fd 2
    (src / "broken.png").write_bytes(bytes(png))
    assert main([str(tiny_artifact), str(src), "--out", str(out), "--backend", "cpu"]) == 1
    err = capfd.readouterr().err.splitlines()
    zero = [line for line in err if "zero.jpg" in line]
    assert len(zero) == 1 and zero[0].count("zero.jpg") == 1
    assert all(line.startswith(("focal-detect: ", "detect ")) for line in err), err  # nothing untied
    broken = _by_input(out)[(src / "broken.png").resolve()]
    assert broken["error"] and any("libpng" in m for m in broken.get("decoder_messages", []))


# -- defects 12, 13: one-line errors and distinct exit codes -------------------------------------
def _assert_one_line_exit_2(args: list[str], capsys, expected: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err, err


def test_output_folder_problems_are_one_line_before_any_work(tiny_artifact: Path, photo_dir: Path,
                                                            tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("focal.runtime.cli.Detector", _no_model)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    base = [str(tiny_artifact), str(photo_dir), "--backend", "cpu", "--out"]
    _assert_one_line_exit_2(base + [str(a_file)], capsys, "not a folder")
    _assert_one_line_exit_2(base + [str(a_file / "below")], capsys, "is a file")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the probe meet what a user would
        real = Path.write_bytes

        def refuse(self, data):
            if self.name.startswith(".focal-detect-probe"):
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", refuse)
    _assert_one_line_exit_2(base + [str(read_only)], capsys, "cannot write")
    read_only.chmod(0o755)


def test_corrupt_model_is_one_line_and_leaves_no_out_folder(tiny_artifact: Path, photo_dir: Path, tmp_path: Path,
                                                           capsys) -> None:
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    (art / "model.onnx").write_bytes(b"this is no protobuf")
    out = tmp_path / "new" / "out"
    _assert_one_line_exit_2([str(art), str(photo_dir), "--out", str(out), "--backend", "cpu"], capsys, str(art))
    assert not (tmp_path / "new").exists()


def test_ctrl_c_keeps_what_is_done_and_exits_130(tiny_artifact: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _write_images(src, 6)
    real, calls = cli.write_atomic, []

    def write_then_interrupt(*args):  # Ctrl-C while the third image's mask is written
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        real(*args)

    monkeypatch.setattr(cli, "write_atomic", write_then_interrupt)
    args = [str(tiny_artifact), str(src), "--out", str(out), "--backend", "cpu"]
    try:
        code = main(args)
    except KeyboardInterrupt:
        code = "KeyboardInterrupt escaped"
    assert code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted, 2 done" in err
    assert len(_lines(out)) == 2 and not list(out.rglob(".*.tmp*"))
    monkeypatch.setattr(cli, "write_atomic", real)
    assert main(args) == 0
    assert "4 done" in capsys.readouterr().err and len(_lines(out)) == 6


# -- defect 16: options checked before any work -----------------------------------------------
@pytest.mark.parametrize("option", [["--min-cluster-size", "1"], ["--min-cluster-size", "0"],
                                    ["--threads", "0"], ["--threads", "-1"]])
def test_invalid_options_exit_2_before_the_model_loads(option: list[str], photo_dir: Path, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    monkeypatch.setattr("focal.runtime.cli.Detector", _no_model)
    with pytest.raises(SystemExit) as exit_info:
        main([str(photo_dir), "--out", str(tmp_path / "o"), *option])
    assert exit_info.value.code == 2 and option[0] in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- defects 17, 18: a closing summary; one root for the journal's paths ----------------------
def test_summary_on_stderr_json_on_stdout_paths_relative_to_out(tiny_artifact: Path, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _write_images(Path("in"), 3)
    Path("in/zero.png").write_bytes(b"")
    args = [str(tiny_artifact), "in", "--out", "res", "--backend", "cpu", "--json"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert [json.loads(line)["path"] for line in captured.out.splitlines()]  # stdout: JSON only
    assert captured.err.strip().splitlines()[-1].startswith("focal-detect: 3 done (")
    assert ", 1 failed, 0 skipped as already done, in " in captured.err
    for rec in _lines(Path("res")):
        assert (Path("res") / rec["path"]).is_file()  # input paths relative to the out folder
        assert rec.get("mask") is None or (Path("res") / rec["mask"]).is_file()
    assert main(args) == 1
    assert "0 done (0 flagged), 1 failed, 3 skipped as already done" in capsys.readouterr().err


# -- the journal: concurrent runs and kill -9 --------------------------------------------------
def _run_cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT back to its default in the child: a test runner started in the background by a
    # non-interactive shell ignores SIGINT, children inherit that, and Python then never raises
    # KeyboardInterrupt, so the interrupt test would see a run that cannot be interrupted.
    return subprocess.Popen(FOCAL_DETECT + args + ["--backend", "cpu", "--threads", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _check_complete(out: Path, inputs: list[Path], reference: dict[str, bytes]) -> None:
    lines = _lines(out)
    paths = [(out / r["path"]).resolve() for r in lines]
    expected = {p.resolve() for p in inputs}
    assert set(paths) == expected, "records lost"
    assert len(paths) == len(set(paths)), "records duplicated"
    assert all(r["error"] is None for r in lines)
    assert _masks(out) == reference  # every mask bit-identical to an uninterrupted run


@pytest.fixture
def sixty(tmp_path: Path, tiny_artifact: Path) -> tuple[list[Path], dict[str, bytes]]:
    """60 small images and the masks of an uninterrupted run."""
    inputs = _write_images(tmp_path / "in", 60, seed=7)
    ref = tmp_path / "reference"
    args = [str(tiny_artifact), str(tmp_path / "in"), "--out", str(ref), "--backend", "cpu", "--threads", "1"]
    assert main(args) == 0
    return inputs, _masks(ref)


def test_two_concurrent_runs_lose_and_duplicate_no_record(tiny_artifact: Path, tmp_path: Path, sixty) -> None:
    inputs, reference = sixty
    out = tmp_path / "out"
    # Overlapping sets (0-39 and 20-59), named by two globs: both runs write the shared third.
    globs = [str(tmp_path / "in" / "img0[0-3]*.png"), str(tmp_path / "in" / "img0[2-5]*.png")]
    runs = [_run_cli([str(tiny_artifact), pattern, "--out", str(out)]) for pattern in globs]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0 and "Traceback" not in err, err
    _check_complete(out, inputs, reference)
    assert len(_lines(out)) == 60


def test_kill_9_at_a_random_point_then_rerun_is_complete_and_identical(tiny_artifact: Path, tmp_path: Path,
                                                                       sixty) -> None:
    inputs, reference = sixty
    out = tmp_path / "out"
    args = [str(tiny_artifact), str(tmp_path / "in"), "--out", str(out)]
    point = random.Random(os.getpid()).randint(1, 50)  # records written before the kill
    run = _run_cli(args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.poll() is None:
        journal = out / "results.jsonl"
        if journal.is_file() and journal.read_bytes().count(b"\n") >= point:
            time.sleep(random.Random(point).uniform(0, 0.02))  # and on into the next image
            break
        time.sleep(0.002)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=30)
    rerun = _run_cli(args)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    _check_complete(out, inputs, reference)
    assert not list(out.rglob(".*.tmp*"))  # the killed run's temporary files are cleaned up


def test_a_line_cut_by_a_killed_writer_never_merges_with_the_next(tmp_path: Path) -> None:
    from focal.runtime.journal import Journal, read_journal

    journal = Journal(tmp_path)
    journal.append({"path": "a.png", "error": None, "mask": "a.png.mask.png"})
    with open(tmp_path / "results.jsonl", "ab") as handle:
        handle.write(b'{"path": "b.png", "err')  # kill -9 in the middle of a write
    journal.append({"path": "c.png", "error": None, "mask": "c.png.mask.png"})
    journal.refresh()
    journal.close()
    assert set(read_journal(tmp_path / "results.jsonl")) == {"a.png", "c.png"}
    assert set(journal.latest) == {"a.png", "c.png"} and journal.owners["c.png.mask.png"] == "c.png"


def test_a_real_sigint_exits_130_with_the_summary(tiny_artifact: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _write_images(src, 20, size=256)
    run = _run_cli([str(tiny_artifact), str(src), "--out", str(out)])
    journal = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.002)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "Traceback" not in err and "focal-detect: interrupted, " in err
    kept = len(_lines(out))
    assert 1 <= kept < 20 and all((out / r["mask"]).is_file() for r in _lines(out))
