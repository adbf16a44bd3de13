"""One CLI vocabulary: every console script spells a shared option the same way and means the same by it.

Parametrised over ``[project.scripts]`` in ``pyproject.toml``, so a new tool
is checked without being listed here.
"""

from __future__ import annotations

import argparse
import importlib
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from focal._cli import ARTIFACT_METAVAR, HelpFormatter
from focal.runtime.cluster import CLUSTER_METHODS, LABEL_METHODS
from focal.runtime.engines import BACKENDS
from focal.runtime.manifest import PRECISIONS

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
SCRIPTS: dict[str, str] = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
TORCH_PACKAGES = ("focal.training", "focal.export")  # their parsers list the backbone registry

# Shared options: argparse dest -> the one spelling every tool uses (the cues' on/off pairs: both).
SPELLING = {
    "backend": "--backend",
    "precision": "--precision",
    "clustering": "--clustering",
    "min_cluster_size": "--min-cluster-size",
    "batch_size": "--batch-size",
    "json": "--json",
    "photos": "--photos",
    "segmentations": "--segmentations",
    "copy_move": ["--copy-move", "--no-copy-move"],
    "double_jpeg": ["--double-jpeg", "--no-double-jpeg"],
}
# Every spelling with "batch" in it: images per call, the exported graph's batch axis, or Triton's
# max_batch_size (the largest batch its dynamic batcher forms, in Triton's own words).
BATCH_OPTIONS = {"--batch-size", "--graph-batch", "--dynamic-graph-batch", "--max-graph-batch", "--max-batch-size"}
# Tools that run an artifact take it as their positional ARTIFACT.
ARTIFACT_TOOLS = {"focal-detect", "focal-eval", "focal-bench", "focal-serve", "focal-calibrate"}


def _module(script: str):
    name = SCRIPTS[script].split(":")[0]
    if name.startswith(TORCH_PACKAGES):
        pytest.importorskip("torch")
    return importlib.import_module(name)


def _parser(script: str) -> argparse.ArgumentParser:
    return _module(script).build_parser()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def test_every_console_script_is_covered() -> None:
    # A walk that found nothing would make the tests below vacuous.
    assert {"focal-detect", "focal-eval", "focal-bench", "focal-export", "focal-train", "focal-synth"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_entry_point_parses_with_build_parser(script: str) -> None:
    module = _module(script)
    assert SCRIPTS[script].endswith(":main") and callable(module.main)
    parser = module.build_parser()
    assert parser.prog == script
    assert issubclass(parser.formatter_class, HelpFormatter)  # defaults shown in --help


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_argument_has_help(script: str) -> None:
    parser = _parser(script)
    missing = [a.option_strings or a.dest for a in parser._actions if not (a.help or "").strip()]
    assert missing == []
    parser.format_help()  # a stray '%' in a help text fails here, not at a user's --help


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_shared_options_have_one_spelling(script: str) -> None:
    for action in _options(_parser(script)):
        if action.dest in SPELLING:
            spelling = SPELLING[action.dest]
            assert action.option_strings == (spelling if isinstance(spelling, list) else [spelling])
            if isinstance(spelling, list):  # a cue left unsaid is the artifact's manifest's to decide
                assert action.default is None, (script, action.option_strings, action.default)
        batchy = [s for s in action.option_strings if "batch" in s]
        assert set(batchy) <= BATCH_OPTIONS, batchy
        if "--max-batch-size" in batchy:
            assert script == "focal-serve", f"{script} {batchy}: only the Triton server has a max_batch_size"
        elif any(s != "--batch-size" for s in batchy):
            assert script == "focal-export", f"{script} {batchy}: only an exported graph has a graph batch"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_choices_come_from_the_registries(script: str) -> None:
    for action in _options(_parser(script)):
        if action.dest == "backend":
            assert tuple(action.choices) == BACKENDS and "auto" in action.choices
        elif action.dest == "precision":
            assert tuple(action.choices) == PRECISIONS
        elif "clustering" in action.dest:
            # Tools that run before an artifact has a fitted split threshold offer only the labelings.
            want = LABEL_METHODS if script in ("focal-export", "focal-train") else CLUSTER_METHODS
            assert tuple(action.choices) == want, action.option_strings


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_json_is_a_stdout_flag(script: str) -> None:
    for action in _options(_parser(script)):
        if "--json" in action.option_strings:
            assert isinstance(action, argparse._StoreTrueAction)
            assert action.help.startswith("machine-readable JSON on stdout")
        assert not any(s.startswith("--json") and s != "--json" for s in action.option_strings)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_positional_artifact_has_one_name(script: str) -> None:
    positionals = {a.dest: a for a in _parser(script)._actions if not a.option_strings}
    if script in ARTIFACT_TOOLS:
        assert positionals["artifact"].metavar == ARTIFACT_METAVAR
    else:
        assert "artifact" not in positionals
    assert set(positionals) <= {"artifact", "inputs"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_no_default_points_into_the_checkout(script: str) -> None:
    for action in _parser(script)._actions:
        if isinstance(action.default, str):
            assert "../" not in action.default and "shared/" not in action.default, (action.dest, action.default)


def test_library_config_has_no_repo_relative_paths() -> None:
    pytest.importorskip("torch")
    from focal.training.config import TrainConfig

    for f in fields(TrainConfig):
        if isinstance(f.default, str):
            assert "../" not in f.default and "shared/" not in f.default, (f.name, f.default)


def test_bench_backend_takes_auto_and_repeats() -> None:
    args = _parser("focal-bench").parse_args(["art", "--backend", "auto", "--backend", "cpu"])
    assert args.backend == ["auto", "cpu"] and args.batch_size == 1 and args.json is False


def test_eval_clustering_repeats_in_order() -> None:
    args = _parser("focal-eval").parse_args(["art", "--data", "d", "--out", "o", "--clustering", "kmeans",
                                             "--clustering", "hdbscan"])
    assert args.artifact == "art" and args.clustering == ["kmeans", "hdbscan"]
    with pytest.raises(SystemExit):
        _parser("focal-eval").parse_args(["art", "--data", "d", "--out", "o", "--clustering", "hdbscan,kmeans"])


def test_batch_sizes_must_be_positive(capsys) -> None:
    with pytest.raises(SystemExit):
        _parser("focal-detect").parse_args(["x.jpg", "--out", "o", "--batch-size", "0"])
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_synth_without_photos_names_the_option_and_the_variable(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.delenv("FOCAL_PHOTOS", raising=False)
    main = _module("focal-synth").main
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path / "set")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--photos" in err and "FOCAL_PHOTOS" in err
    monkeypatch.setenv("FOCAL_PHOTOS", str(tmp_path / "no-photos-here"))
    assert main(["--out", str(tmp_path / "set")]) == 2  # the variable is used: its folder is missing
    assert "no-photos-here" in capsys.readouterr().err


def test_train_without_photos_names_the_option_and_the_variable(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.delenv("FOCAL_PHOTOS", raising=False)
    main = _module("focal-train").main
    assert main(["--preset", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--photos" in err and "FOCAL_PHOTOS" in err
    assert not (tmp_path / "run").exists()  # refused before any work
