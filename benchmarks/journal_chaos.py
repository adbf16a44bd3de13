"""The run journal under kill -9 and concurrent runs, and the header bombs' peak memory: lost, duplicated and mismatched records.

Over a folder of small JPEGs (crops of the shared BSDS500 photos, 64 to 128
pixels a side; seeded noise where the shared data is absent), with the
embedded default model, k-means clustering (it flags every image, so no
mask is trivially equal to another) and one ONNX Runtime thread per run:

- reference: one uninterrupted run;
- (a) kill -9: a run is killed at each of ``--kills`` random points (a
  random journal length, then a random delay, so kills land in model
  loading, decoding, inference, file writes and journal appends), each
  followed by a re-run, the last of which runs to completion;
- (b) concurrent: two runs over the whole folder into one out folder, the
  second started a random fraction of a second after the first;
- (c) every header bomb of the fuzz corpus (``tests/fuzz_corpus.py``), each
  in a run of its own: the run's own peak RSS (``fuzz_corpus.peak_rss_argv``),
  beside a run on one good image for scale.

For (a) and (b) it prints: records lost (inputs without a good record),
duplicated (inputs with more than one good record), mismatched (good records
whose mask differs from the reference run's for that input) and whether
every mask is bit-identical to the reference. Figures only, no asserts.

Usage::

    .venv/bin/python benchmarks/journal_chaos.py [--count 700] [--kills 6] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from focal.runtime.journal import JOURNAL_NAME

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCAL_SHARED", REPO.parent / "shared")) / "data"
sys.path.insert(0, str(REPO / "tests"))
from fuzz_corpus import CASES, peak_rss_argv, read_peak_mb, write_corpus  # noqa: E402

_SCRIPT = Path(sys.executable).with_name("focal-detect")
FOCAL_DETECT = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "focal.runtime.cli"]


# -- inputs ---------------------------------------------------------------------------------------
def write_inputs(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` JPEGs of 64 to 128 pixels a side in ``folder`` (100 per subfolder); returns their paths.

    Crops of the shared BSDS500 photos when present, else seeded smooth noise.
    """
    rng = np.random.default_rng(seed)
    photos = sorted((SHARED / "natural/bsds500").glob("*.jpg"))
    paths = []
    for i in range(count):
        h, w = (int(v) for v in rng.integers(64, 129, 2))
        if photos:
            src = photos[int(rng.integers(len(photos)))]
            photo = cv2.imread(str(src))  # read per crop: caching 500 photos would hold 230 MB
            y, x = int(rng.integers(photo.shape[0] - h + 1)), int(rng.integers(photo.shape[1] - w + 1))
            image = photo[y: y + h, x: x + w]
        else:
            coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        path = folder / f"part{i // 100}" / f"img{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


# -- runs -----------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# k-means (seeded, deterministic) flags every image, so every mask has content to compare; HDBSCAN
# leaves most of these small crops unflagged, and two empty masks of one size are equal whatever happened.
CLUSTERING = ["--clustering", "kmeans"]


def spawn(inputs: list[str], out: Path, log: Path, peak_report: Path | None = None) -> subprocess.Popen:
    """``focal-detect INPUTS --out OUT`` on the CPU, one thread (so masks do not depend on the thread count).

    With ``peak_report`` the run is wrapped to write its own peak RSS there
    (``fuzz_corpus.peak_rss_argv``; a plain child's ``ru_maxrss`` would start
    from this process's). Kill only unwrapped runs: a kill would hit the wrapper.
    """
    command = FOCAL_DETECT + inputs + ["--out", str(out), "--backend", "cpu", "--threads", "1", *CLUSTERING]
    if peak_report is not None:
        command = peak_rss_argv(command, peak_report)
    with open(log, "ab") as err:
        return subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=err)


def journal_lines(out: Path) -> int:
    journal = out / JOURNAL_NAME
    return journal.read_bytes().count(b"\n") if journal.is_file() else 0


def run_to_end(inputs: list[str], out: Path, log: Path) -> tuple[int, float, float]:
    """One run to completion: (exit status, its peak RSS in MB, seconds)."""
    report = out.with_name(out.name + ".peak")
    t0 = time.perf_counter()
    code = spawn(inputs, out, log, report).wait()
    return code, read_peak_mb(report), time.perf_counter() - t0


def run_and_kill(inputs: list[str], out: Path, log: Path, at_lines: int, delay: float) -> tuple[bool, int]:
    """Starts a run, waits until the journal holds ``at_lines`` lines, then ``delay`` s, then kill -9.

    Returns:
        Whether the run was still going when the kill came, and the journal's lines just after.
    """
    proc = spawn(inputs, out, log)
    while proc.poll() is None and journal_lines(out) < at_lines:
        time.sleep(0.002)
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive, journal_lines(out)


# -- figures --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """How one out folder compares with the reference run."""

    records: int  # parseable journal lines
    cut: int  # journal lines that do not parse (cut by a kill in mid-write; readers skip them)
    lost: int  # inputs whose last record is missing, an error, or names a missing mask or overlay
    duplicated: int  # inputs with more than one good record
    mismatched: int  # good records whose mask differs from the reference's for that input
    failed: int  # records with an error
    flagged: int  # inputs whose last good record has a non-empty mask (empty masks would prove little)
    identical: bool  # no input lost, and every input's mask equals the reference's, pixel for pixel
    temporaries: int  # temporary files left in the out folder

    def line(self) -> str:
        return (f"{self.records} records ({self.cut} cut lines): lost {self.lost}, duplicated {self.duplicated}, "
                f"mismatched {self.mismatched}, failed {self.failed}; {self.flagged} masks non-empty; "
                f"every mask bit-identical to the reference: "
                f"{'yes' if self.identical else 'NO'}; temporary files left: {self.temporaries}")


def read_records(out: Path) -> list[dict]:
    """Every parseable journal line (a line cut by a kill is skipped, as readers do)."""
    recs = []
    journal = out / JOURNAL_NAME
    for line in (journal.read_bytes().splitlines() if journal.is_file() else []):
        try:
            recs.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return recs


def _input_of(out: Path, rec: dict) -> str:
    return os.path.normpath(os.path.join(out, rec["path"]))


def _mask(out: Path, name: str) -> np.ndarray | None:
    return cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED) if (out / name).is_file() else None


def reference_masks(out: Path) -> dict[str, np.ndarray]:
    """Input (absolute, normalised) -> its mask, from the reference run's last good records."""
    masks = {}
    for rec in read_records(out):
        if rec.get("error") is None:
            masks[_input_of(out, rec)] = _mask(out, rec["mask"])
    return masks


def compare(out: Path, inputs: list[Path], reference: dict[str, np.ndarray]) -> Figures:
    """Counts lost, duplicated and mismatched records of ``out`` against the reference masks."""
    recs = read_records(out)
    good: dict[str, list[dict]] = {}
    for rec in recs:
        if rec.get("error") is None:
            good.setdefault(_input_of(out, rec), []).append(rec)
    mismatched, last_equal = 0, {}
    for key, group in good.items():
        for rec in group:
            mask, ref = _mask(out, rec["mask"]), reference.get(key)
            same = mask is not None and ref is not None and mask.shape == ref.shape and np.array_equal(mask, ref)
            mismatched += not same
            last_equal[key] = same
    wanted = {os.path.normpath(p) for p in inputs}
    last = {_input_of(out, rec): rec for rec in recs}  # what a reader takes
    present = {k for k, rec in last.items() if rec.get("error") is None
               and (out / rec["mask"]).is_file() and (out / rec["overlay"]).is_file()}
    lost = len(wanted - present)
    journal = out / JOURNAL_NAME
    lines = [line for line in journal.read_bytes().split(b"\n") if line.strip()] if journal.is_file() else []
    return Figures(
        records=len(recs), cut=len(lines) - len(recs), lost=lost, duplicated=sum(len(g) > 1 for g in good.values()),
        mismatched=mismatched, failed=sum(r.get("error") is not None for r in recs),
        flagged=sum(r.get("error") is None and r.get("forged_fraction", 0) > 0 for r in last.values()),
        identical=lost == 0 and all(last_equal.get(k, False) for k in wanted),
        temporaries=sum(1 for p in out.rglob(".*.tmp*") if p.is_file()),
    )


# -- the scenarios --------------------------------------------------------------------------------
def kill_scenario(folder: Path, out: Path, log: Path, count: int, kills: int, rng: random.Random) -> None:
    points = sorted(rng.sample(range(count), kills))
    for i, at in enumerate(points, 1):
        delay = rng.uniform(0.0, 1.5) if at == 0 else rng.uniform(0.0, 0.2)  # at 0: somewhere in start-up
        alive, after = run_and_kill([str(folder)], out, log, at, delay)
        what = "killed" if alive else "had finished before its kill"
        print(f"  run {i}: {what} at journal line >= {at} + {delay * 1e3:.0f} ms; journal then {after} lines")
    code, peak, seconds = run_to_end([str(folder)], out, log)
    print(f"  run {kills + 1} (to completion): exit {code}, {seconds:.1f} s, peak RSS {peak:.0f} MB")


def concurrent_scenario(folder: Path, out: Path, log: Path, rng: random.Random) -> None:
    offset = rng.uniform(0.0, 0.5)
    t0 = time.perf_counter()
    logs = [log.with_name(f"{log.stem}-concurrent-{i}.log") for i in (1, 2)]
    first = spawn([str(folder)], out, logs[0])
    time.sleep(offset)
    second = spawn([str(folder)], out, logs[1])
    codes = [first.wait(), second.wait()]
    # Each run's closing line says how many images it did and how many it found done by the other.
    summaries = [lg.read_text(errors="replace").strip().splitlines()[-1].removeprefix("focal-detect: ")
                 for lg in logs]
    print(f"  two runs, the second {offset * 1e3:.0f} ms after the first: exits {codes}, "
          f"{time.perf_counter() - t0:.1f} s in all")
    for i, summary in enumerate(summaries, 1):
        print(f"    run {i}: {summary}")
    with open(log, "ab") as merged:  # so the traceback count covers them
        for lg in logs:
            merged.write(lg.read_bytes())


def bomb_scenario(work: Path) -> None:
    bombs = [c for c in CASES if c.run == "bombs"]
    corpus = work / "bombs"
    write_corpus(corpus, bombs)
    good = corpus / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    code, base, _ = run_to_end([str(good)], work / "out-good", work / "bombs.log")
    print(f"  for scale, one good 64 x 64 image: exit {code}, peak RSS {base:.0f} MB")
    peaks = []
    for case in bombs:
        out = work / f"out-{case.name}"
        code, peak, _ = run_to_end([str(corpus / case.path)], out, work / "bombs.log")
        rec = read_records(out)
        refused = bool(rec) and "over the limit" in (rec[-1].get("error") or "")
        peaks.append((peak, case.name))
        print(f"  {case.name:24} {'a filled canvas' if case.real_bomb else 'header only':16} exit {code}, "
              f"refused from the header: {'yes' if refused else 'NO'}, peak RSS {peak:.0f} MB")
    peak, name = max(peaks)
    print(f"  largest peak RSS over {len(bombs)} bomb cases: {peak:.0f} MB ({name})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=700, help="images in the folder")
    parser.add_argument("--kills", type=int, default=6, help="kill -9 points in (a)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the images, kill points and delays")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp dir)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="focal-chaos-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # The model's verified-sha256 record goes here, not to the user's cache.
        os.environ.setdefault("FOCAL_CACHE", str(work / "focal-cache"))
        folder = work / "in"
        inputs = write_inputs(folder, args.count, args.seed)
        log = work / "stderr.log"
        print(f"focal-detect {FOCAL_DETECT[-1]}; {args.count} images in {folder} "
              f"({'BSDS500 crops' if (SHARED / 'natural/bsds500').is_dir() else 'noise'}), seed {args.seed}")
        code, peak, seconds = run_to_end([str(folder)], work / "out-reference", log)
        print(f"reference, uninterrupted: exit {code}, {seconds:.1f} s ({args.count / seconds:.1f} images/s), "
              f"peak RSS {peak:.0f} MB")
        reference = reference_masks(work / "out-reference")
        print(f"  {compare(work / 'out-reference', inputs, reference).line()}")
        print(f"(a) kill -9 at {args.kills} random points, each followed by a re-run:")
        kill_scenario(folder, work / "out-kill", log, args.count, args.kills, rng)
        print(f"  {compare(work / 'out-kill', inputs, reference).line()}")
        print("(b) two concurrent runs on one out folder:")
        concurrent_scenario(folder, work / "out-concurrent", log, rng)
        print(f"  {compare(work / 'out-concurrent', inputs, reference).line()}")
        print("(c) header bombs, each in a run of its own:")
        bomb_scenario(work)
        tracebacks = log.read_text(errors="replace").count("Traceback")
        print(f"tracebacks on stderr over all runs: {tracebacks} (stderr: {log if args.keep else 'deleted'})")


if __name__ == "__main__":
    main()
