"""focal-detect end to end: files, folders, globs, bad inputs, re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from focal.runtime.cli import DetectSummary, build_parser, main
from focal.runtime.inputs import collect_inputs
from focal.runtime.manifest import load_manifest


def _records(out: Path) -> dict[str, dict]:
    """Journal records by input, as absolute paths (the journal's paths are relative to the out folder)."""
    recs = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    return {str(Path(os.path.normpath(out / r["path"]))): r for r in recs}


def test_folder_run_with_bad_files_writes_every_good_result(tiny_artifact: Path, photo_dir: Path, tmp_path: Path, capsys) -> None:
    good = sorted(photo_dir.rglob("*.jpg"))
    (photo_dir / "truncated.jpg").write_bytes(good[0].read_bytes()[:500])
    (photo_dir / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    code = main([str(tiny_artifact), str(photo_dir), str(tmp_path / "missing*.jpg"), "--out", str(out), "--backend", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert "truncated.jpg" in err and "notes.png" in err and "missing*.jpg" in err
    recs = _records(out)
    assert len(recs) == len(good) + 2
    for f in good:
        rec = recs[str(f)]
        assert rec["error"] is None and 0.0 <= rec["score"] <= 1.0
        mask = cv2.imread(str(out / rec["mask"]), cv2.IMREAD_UNCHANGED)
        over = cv2.imread(str(out / rec["overlay"]))
        src = cv2.imread(str(f))
        assert mask.shape == src.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert over.shape == src.shape
        assert set(rec["timings_ms"]) == {"decode", "preprocess", "infer", "cluster", "postprocess"}
    assert any(r.get("mask", "").startswith("sub/") for r in recs.values())  # folder structure kept
    assert "not a readable image" in recs[str(photo_dir / "truncated.jpg")]["error"]
    assert not list(out.rglob("*.tmp"))


def test_rerun_skips_done_images_unless_overwrite(tiny_artifact: Path, photo_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = [str(tiny_artifact), str(photo_dir), "--out", str(out), "--backend", "cpu"]
    assert main(args) == 0
    first = (out / "results.jsonl").read_text()
    capsys.readouterr()
    assert main(args + ["--json"]) == 0
    captured = capsys.readouterr()
    assert "already done" in captured.err and captured.out == ""
    assert (out / "results.jsonl").read_text() == first
    assert main(args + ["--overwrite", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(json.loads(line)["error"] is None for line in lines)


def test_a_rerun_under_other_settings_redoes_the_images_and_says_why(tiny_artifact: Path, photo_dir: Path,
                                                                     tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = [str(tiny_artifact), str(photo_dir), "--out", str(out), "--backend", "cpu"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["settings"]["copy_move"] for r in records} == {False}
    size = load_manifest(tiny_artifact).clustering.min_cluster_size
    assert {r["settings"]["min_cluster_size"] for r in records} == {size}
    capsys.readouterr()
    # The copy-move search changes masks: the images done without it are redone, not skipped.
    assert main(args + ["--copy-move", "--json"]) == 0
    captured = capsys.readouterr()
    assert "5 image(s) in" in captured.err and "under other settings (copy_move): redoing them" in captured.err
    redone = [json.loads(line) for line in captured.out.splitlines()]
    assert len(redone) == 5 and all(r["settings"]["copy_move"] for r in redone)
    # Under the same settings again, everything is done; two settings changed at once are both named.
    assert main(args + ["--copy-move"]) == 0
    assert "5 image(s) already done" in capsys.readouterr().err
    assert main(args + ["--min-cluster-size", str(size + 7)]) == 0
    assert "(copy_move, min_cluster_size): redoing them" in capsys.readouterr().err


def test_records_without_settings_count_as_done(tiny_artifact: Path, photo_dir: Path, tmp_path: Path,
                                                capsys) -> None:
    """Folders written before records kept their settings resume as they did: nothing to compare."""
    out = tmp_path / "out"
    args = [str(tiny_artifact), str(photo_dir), "--out", str(out), "--backend", "cpu"]
    assert main(args) == 0
    journal = out / "results.jsonl"
    old = [json.loads(line) for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "settings"}) + "\n" for r in old))
    capsys.readouterr()
    assert main(args + ["--copy-move"]) == 0
    err = capsys.readouterr().err
    assert "5 image(s) already done" in err and "other settings" not in err


def test_artifact_is_an_optional_first_positional_and_options_may_come_between() -> None:
    args = build_parser().parse_intermixed_args(["art", "--out", "o", "a.jpg", "b.jpg", "--batch-size", "2"])
    assert (args.artifact, args.inputs, args.batch_size) == ("art", ["a.jpg", "b.jpg"], 2)
    args = build_parser().parse_intermixed_args(["a.jpg", "--out", "o"])
    assert (args.artifact, args.inputs) == (None, ["a.jpg"])


def test_a_first_input_that_is_no_artifact_is_an_input(tiny_artifact: Path, photo_dir: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    # Two image folders: the first is not an artifact, so both are inputs of the default model.
    seen = {}

    def fake_detect(inputs, cfg):
        seen.update(inputs=inputs, artifact=cfg.artifact)
        return DetectSummary(0, 0, 0, 0, 0.0)

    monkeypatch.setattr("focal.runtime.cli.detect", fake_detect)
    monkeypatch.setattr("focal.runtime.cli.default_artifact", lambda: Path("DEFAULT"))
    assert main([str(photo_dir), str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert seen == {"inputs": [str(photo_dir), str(tmp_path)], "artifact": Path("DEFAULT")}
    assert main([str(tiny_artifact), "--out", str(tmp_path / "o"), str(photo_dir)]) == 0
    assert seen == {"inputs": [str(photo_dir)], "artifact": tiny_artifact}


def test_same_stem_in_two_places_gets_two_outputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.jpg").write_bytes(b"")
    jobs, unmatched = collect_inputs([str(tmp_path / "a/x.jpg"), str(tmp_path / "b/x.jpg"), str(tmp_path / "a/x.jpg")])
    # Names keep the suffix; the second file of one name gets a hash of its resolved path, never a counter.
    assert jobs[0].key == "x.jpg" and jobs[1].key.startswith("x-") and jobs[1].key.endswith(".jpg")
    assert len(jobs) == 2 and not unmatched


def test_console_script_reports_missing_default_model(tmp_path: Path, photo_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "focal.runtime.cli", str(photo_dir), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    from focal.runtime.default import DEFAULT_DIR

    if (DEFAULT_DIR / "focal.json").is_file():
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2 and "no embedded default model" in proc.stderr


def test_heatmaps_are_written_on_request_and_a_rerun_adds_the_missing_ones(tiny_artifact: Path, photo_dir: Path,
                                                                           tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = [str(tiny_artifact), str(photo_dir), "--out", str(out), "--backend", "cpu"]
    assert main(args) == 0
    assert not list(out.rglob("*.heatmap.png"))
    capsys.readouterr()
    # Asked for heatmaps, a folder done without them is redone (the masks' settings are the same).
    assert main(args + ["--heatmap", "--json"]) == 0
    captured = capsys.readouterr()
    assert "5 image(s) in" in captured.err and "without a heatmap: redoing them" in captured.err
    redone = [json.loads(line) for line in captured.out.splitlines()]
    assert len(redone) == 5
    for rec in redone:
        heat = cv2.imread(str(out / rec["heatmap"]))
        src = cv2.imread(str(Path(os.path.normpath(out / rec["path"]))))
        assert rec["heatmap"] == rec["mask"].replace(".mask.png", ".heatmap.png")
        assert heat.shape == src.shape and "heatmap" in rec["timings_ms"]
    # Done with heatmaps, the folder is done for a run with or without them.
    assert main(args) == 0
    assert "5 image(s) already done" in capsys.readouterr().err
    assert main(args + ["--heatmap"]) == 0
    assert "5 image(s) already done" in capsys.readouterr().err
    # A heatmap the record names but the folder lost makes the image undone.
    (out / redone[0]["heatmap"]).unlink()
    assert main(args + ["--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
