"""The one prepared GPU check: every GPU path of the project, its figures in one JSON file.

    python scripts/gpu_check.py [--out DIR] [--shared DIR] [--budget-s 540]

Each check runs in its own subprocess with a time limit and records
``{"status": "ok" | "failed" | "skipped", "reason"/"figures": ...}``; a
failure never stops the checks after it. Where CUDA is absent every GPU
check is recorded as skipped with the reason, so the script itself is
tested on CPU machines (``tests/package/test_gpu_check.py``). The figures
land in ``$OUT/gpu_check.json`` (``--out``, default ``$OUT`` or
``gpu-check/``), with each check's log beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent


def _cuda_reason() -> str | None:
    """None when a CUDA device is usable, else why not (one line)."""
    probe = (
        "import onnxruntime as ort, sys\n"
        "if 'CUDAExecutionProvider' not in ort.get_available_providers():\n"
        "    sys.exit('onnxruntime has no CUDAExecutionProvider (install focal[gpu])')\n"
        "try:\n"
        "    import pycuda.driver as cuda\n"
        "    cuda.init(); n = cuda.Device.count()\n"
        "except Exception as e:\n"
        "    sys.exit(f'CUDA driver not usable: {e}')\n"
        "sys.exit(0 if n else 'no CUDA device')\n"
    )
    run = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=120)
    return None if run.returncode == 0 else (run.stderr.strip().splitlines() or ["probe failed"])[-1]


class Checks:
    """Runs named checks in subprocesses and collects their records."""

    def __init__(self, out: Path, budget_s: float, cuda_reason: str | None) -> None:
        self.out, self.deadline, self.cuda_reason = out, time.monotonic() + budget_s, cuda_reason
        self.records: dict[str, dict] = {}

    def run(self, name: str, argv: list[str], limit_s: float, gpu: bool = True,
            env: dict[str, str] | None = None, parse=None) -> dict:
        """Runs ``argv``; ``parse(stdout) -> figures`` turns its output into figures."""
        left = self.deadline - time.monotonic()
        if gpu and self.cuda_reason:
            rec = {"status": "skipped", "reason": self.cuda_reason}
        elif left < 10:
            rec = {"status": "skipped", "reason": f"time budget spent ({left:.0f} s left)"}
        else:
            rec = self._execute(name, argv, min(limit_s, left), env, parse)
        self.records[name] = rec
        print(f"[gpu-check] {name}: {rec['status']} {rec.get('reason', '')}", flush=True)
        self.save()
        return rec

    def _execute(self, name, argv, limit_s, env, parse) -> dict:
        log = self.out / f"{name}.log"
        start = time.monotonic()
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=limit_s, cwd=REPO,
                                 env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired as exc:
            log.write_text(f"{exc.stdout or ''}\n{exc.stderr or ''}")
            return {"status": "failed", "reason": f"timed out after {limit_s:.0f} s", "log": log.name}
        log.write_text(f"$ {' '.join(argv)}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}")
        rec: dict = {"status": "ok" if run.returncode == 0 else "failed", "rc": run.returncode,
                     "seconds": round(time.monotonic() - start, 1), "log": log.name}
        if run.returncode != 0:
            rec["reason"] = (run.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]
        if parse is not None:
            try:
                rec["figures"] = parse(run.stdout)
            except Exception as exc:  # a figure that cannot be read is a finding, not a crash
                rec["parse_error"] = f"{type(exc).__name__}: {exc}"
        return rec

    def save(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.records, indent=2, sort_keys=True) + "\n")


def _last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def _pytest_summary(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


# Small Python programs run as checks; each prints one JSON line last.
BATCHES = """
import json, sys, numpy as np
from focal.runtime import Detector
art, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
rng = np.random.default_rng(0)
imgs = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(max(sizes))]
out = {}
for b in sizes:
    try:
        with Detector(art, backend="tensorrt", batch_size=b) as det:
            res = det.detect_many(imgs[:b])
            out[b] = {"ok": len(res) == b, "engine": det.engine.name}
    except Exception as e:
        out[b] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""
TRT_EP = """
import json, sys
from focal.runtime import Detector
with Detector(sys.argv[1], backend="tensorrt-ep", precision="int8") as det:
    det(__import__("numpy").zeros((256, 256, 3), "uint8"))
    print(json.dumps({"providers": det.engine.inner.session.get_providers(), "engine": det.engine.name}))
"""
CYCLES = """
import json, resource, sys
import pycuda.autoinit  # noqa: F401
import pycuda.driver as cuda
from focal.runtime import Detector
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
def pinned():
    for line in open("/proc/self/status"):
        if line.startswith(("VmPin", "VmLck")): yield line.split()[0], int(line.split()[1]) // 1024
start_free = cuda.mem_get_info()[0] // 2**20; start = dict(pinned()); r0 = rss()
for _ in range(int(sys.argv[2])):
    Detector(sys.argv[1], backend="tensorrt").close()
print(json.dumps({"device_free_mb": [start_free, cuda.mem_get_info()[0] // 2**20], "pinned_mb": [start, dict(pinned())],
                  "max_rss_mb": [r0, rss()]}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-check"), help="folder of the JSON and logs")
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared data folder")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget of all checks")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    samples = Path(args.shared) / "data/real-samples/images"
    photos = Path(args.shared) / "data/natural/bsds500"
    checks = Checks(out, args.budget_s, _cuda_reason())
    checks.records["_machine"] = {"cuda": checks.cuda_reason or "usable", "python": sys.version.split()[0]}
    checks.run("pytest_gpu", [PY, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rs"], 180,
               parse=_pytest_summary)
    lite = work / "lite"
    checks.run("export_lite_engine", [str(BIN / "focal-export"), "--backbone", "lite", "--random-weights", "--input-size", "512", "--fp16",
                                      "--int8", "--calib", str(photos), "--calib-count", "32", "--engine",
                                      "--verify", str(samples), "--out", str(lite)], 240)
    dyn = work / "lite-dyn"
    checks.run("export_dynamic_engine", [str(BIN / "focal-export"), "--backbone", "lite", "--random-weights", "--input-size", "256",
                                         "--dynamic-graph-batch", "--max-graph-batch", "8", "--engine",
                                         "--out", str(dyn), "-q"], 150)
    checks.run("engine_batches", [PY, "-c", BATCHES, str(dyn), "1", "3", "8", "9"], 90, parse=_last_json)
    checks.run("tensorrt_ep_int8", [PY, "-c", TRT_EP, str(lite)], 120, parse=_last_json)
    checks.run("auto_without_visible_gpu", [str(BIN / "focal-detect"), str(samples), "--out", str(work / "auto"),
                                            "--backend", "auto"], 60, env={"CUDA_VISIBLE_DEVICES": ""},
               parse=lambda s: s.strip().splitlines()[-1] if s.strip() else "")
    checks.run("engine_open_close_200", [PY, "-c", CYCLES, str(lite), "200"], 120, parse=_last_json)
    for backend, precision in (("cuda", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8")):
        checks.run(f"bench_{backend}_{precision}", [str(BIN / "focal-bench"), str(lite), "--backend", backend,
                                                    "--precision", precision, "--images", str(samples), "--json"],
                   90, parse=_last_json)
    checks.run("vit_b_1024_fp16", [str(BIN / "focal-export"), "--backbone", "vit-b", "--random-weights", "--input-size", "1024", "--fp16",
                                   "--engine", "--verify", str(samples), "--verify-limit", "4",
                                   "--out", str(work / "vitb")], 240)
    checks.save()
    failed = [k for k, v in checks.records.items() if v.get("status") == "failed"]
    print(f"[gpu-check] {len(failed)} failed: {failed}" if failed else "[gpu-check] no check failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
