#!/usr/bin/env bash
# The prepared GPU check (docs/hardware.md): run once on a CUDA machine with
# the gpu extra installed; figures go to $OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/gpu_check.py "$@"
