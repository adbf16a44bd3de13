"""CPU training-step speed: FP32 vs bfloat16 autocast, NCHW vs channels_last, side by side in one run.

    .venv/bin/python benchmarks/bench_train_step.py [--backbone lite-residual] [--size 256] [--batch 8]
        [--steps 6] [--threads N]

Times one optimiser step (forward, the training loss, backward, Adam) of
the backbone on random images and masks, alternating the variants within
each round so that all see the same machine load, and prints the median
seconds per step, the speed-up over FP32 NCHW, and the loss of the first
step (the same batch and weights for every variant: how far bfloat16 moves
it). Whether bfloat16 is fast depends on the CPU: oneDNN uses AMX or
AVX-512 BF16 kernels where the CPU has them (``lscpu`` flags ``amx_bf16``,
``avx512_bf16``), else emulates and is slower.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from focal.training.checkpoints import build_extractor
from focal.training.config import TrainConfig
from focal.training.train import _loss

VARIANTS = {  # name: (autocast dtype or None, channels_last)
    "fp32": (None, False),
    "fp32 channels_last": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16 channels_last": (torch.bfloat16, True),
}


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor,
          cfg: TrainConfig, dtype: torch.dtype | None) -> float:
    with torch.autocast(device_type="cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        feats = model(images)
    loss = _loss(cfg, feats, masks, torch.Generator().manual_seed(0))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="lite-residual")
    parser.add_argument("--size", type=int, default=256, help="input side (the lite-traces crops)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed rounds (each runs every variant once)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = TrainConfig(loss="nce-sym", authentic_weight=1.0)
    base = build_extractor(args.backbone)
    images = torch.rand(args.batch, 3, args.size, args.size)
    masks = torch.zeros(args.batch, 1, args.size, args.size)
    masks[:, :, args.size // 4 : args.size // 2, args.size // 3 : 2 * args.size // 3] = 1.0
    runs = {}
    for name in args.variants:
        dtype, cl = VARIANTS[name]
        model = copy.deepcopy(base).train()
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = images.contiguous(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        first = _step(model, opt, x, masks, cfg, dtype)  # warm-up; oneDNN picks its kernels here
        runs[name] = dict(model=model, opt=opt, x=x, dtype=dtype, first=first, times=[])
    for _ in range(args.steps):
        for name, r in runs.items():
            t0 = time.perf_counter()
            _step(r["model"], r["opt"], r["x"], masks, cfg, r["dtype"])
            r["times"].append(time.perf_counter() - t0)
    print(f"{args.backbone}, batch {args.batch} x {args.size}^2, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps")
    print("| variant | s / step | speed-up | first-step loss |")
    print("|---|---|---|---|")
    ref = statistics.median(runs[args.variants[0]]["times"])
    for name, r in runs.items():
        med = statistics.median(r["times"])
        print(f"| {name} | {med:.3f} | {ref / med:.2f}x | {r['first']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
