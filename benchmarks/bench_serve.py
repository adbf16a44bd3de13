"""Load test of ``focal-serve`` on loopback, against the in-process ``Detector`` in the same run.

    python benchmarks/bench_serve.py [IMAGES] [--seconds 60] [--clients 1 4 16] [--artifact default]

Prints, per client count: requests/s, p50/p95/p99 latency, rejected
requests, lost or wrong responses (every mask and score is checked against
the in-process answer for that file), and the server's RSS (its process
tree: focal-serve + tritonserver + Python backend stubs) at the start and
the end. Then a small-queue run (``--max-queue 2 --instances 1``) under
the largest client count: how fast rejections come back and how bounded the
accepted requests' latency stays. Last, the overhead: the server's best
requests/s against ``Detector.detect_many`` over the same files for the
same time, in this one run.

Bounded: each level runs ``--seconds``; clients are threads of this
process using Triton's HTTP client; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritonclient.utils import InferenceServerException

from focal._files import list_images
from focal.runtime import Detector
from focal.serving.local_server import LocalServer, free_port_block, process_tree_rss_mb
from focal.serving.triton_client import FocalClient


@dataclass
class Level:
    """What one load level measured."""

    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # accepted and correct
    rejected_ms: list[float] = field(default_factory=list)  # time until the rejection came back
    wrong: int = 0  # answered, but not the in-process mask/score
    lost: int = 0  # connection errors, timeouts, server errors other than a full queue
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    peak_mb: float = 0.0

    def line(self) -> str:
        done = len(self.latencies_ms)
        p50, p95, p99 = np.percentile(self.latencies_ms, [50, 95, 99]) if done else (float("nan"),) * 3
        rej = f"{len(self.rejected_ms)} rejected"
        if self.rejected_ms:
            rej += f" (answered in p50 {np.percentile(self.rejected_ms, 50):.1f} / p99 " \
                   f"{np.percentile(self.rejected_ms, 99):.1f} ms)"
        return (f"{self.clients:>3} clients: {done / self.seconds:6.2f} req/s, latency p50 {p50:7.1f} p95 {p95:7.1f} "
                f"p99 {p99:7.1f} ms, {rej}, {self.lost} lost, {self.wrong} wrong; server RSS {self.rss_start_mb:.0f} "
                f"-> {self.rss_end_mb:.0f} MB (peaks summed {self.peak_mb:.0f} MB)")


def _load(server: LocalServer, files: list[Path], expected: dict, clients: int, seconds: float) -> Level:
    level = Level(clients=clients)
    blobs = {p: p.read_bytes() for p in files}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(k: int) -> None:
        with FocalClient(server.http, timeout_s=120) as client:
            n = k
            while time.monotonic() < deadline:
                path = files[n % len(files)]
                n += clients
                t0 = time.perf_counter()
                try:
                    [remote] = client.detect([blobs[path]])
                except InferenceServerException as exc:
                    ms = (time.perf_counter() - t0) * 1e3
                    with lock:
                        if "queue" in str(exc).lower():
                            level.rejected_ms.append(ms)
                        else:
                            level.lost += 1
                    continue
                except Exception:  # connection reset, timeout
                    with lock:
                        level.lost += 1
                    continue
                ms = (time.perf_counter() - t0) * 1e3
                mask, score = expected[path]
                ok = remote.error is None and np.array_equal(remote.mask, mask) and remote.score == score
                with lock:
                    if ok:
                        level.latencies_ms.append(ms)
                    else:
                        level.wrong += 1

    assert server.proc is not None
    level.rss_start_mb = process_tree_rss_mb(server.proc.pid)[0]
    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    level.seconds = time.monotonic() - t0
    level.rss_end_mb, level.peak_mb = process_tree_rss_mb(server.proc.pid)
    return level


def _in_process(artifact: str, files: list[Path], seconds: float) -> float:
    """Images/s of ``detect_many`` over ``files`` (cycled) for ``seconds``, files read from disk as the server gets them."""
    with Detector(artifact) as det:
        list(det.detect_many(files[:2]))  # warm-up
        done, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            for result in det.detect_many(files):
                assert not isinstance(result, Exception), result
                done += 1
        return done / (time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="?", default="../shared/data/real-samples/images")
    parser.add_argument("--artifact", default="default")
    parser.add_argument("--seconds", type=float, default=60.0, help="per load level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--small-queue", type=int, default=2, help="--max-queue of the rejection run")
    args = parser.parse_args(argv)
    files = list_images(Path(args.images))
    if not files:
        print(f"bench_serve: {args.images}: no images", file=sys.stderr)
        return 2
    with Detector(args.artifact) as det:
        expected = {p: (r.mask, np.float32(r.score)) for p, r in zip(files, det.detect_many(files))}
    print(f"bench_serve: {len(files)} images from {args.images}, artifact {args.artifact}, {args.seconds:g} s per level")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    best = 0.0
    with LocalServer(log_dir / "server.log", free_port_block(), args.artifact) as server:
        for clients in args.clients:
            level = _load(server, files, expected, clients, args.seconds)
            best = max(best, len(level.latencies_ms) / level.seconds)
            print("  " + level.line(), flush=True)
    small = ("--max-queue", str(args.small_queue), "--instances", "1", "--max-batch-size", "1")
    with LocalServer(log_dir / "small.log", free_port_block(), args.artifact, *small) as server:
        level = _load(server, files, expected, max(args.clients), args.seconds)
        print(f"  small queue ({' '.join(small)}): " + level.line(), flush=True)
    local = _in_process(args.artifact, files, args.seconds)
    print(f"  overhead: server best {best:.2f} req/s vs in-process detect_many {local:.2f} images/s "
          f"= {best / local:.2f}x ({(1 - best / local) * 100:+.1f}% below in-process)")
    print(f"  server logs in {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
