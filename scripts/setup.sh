#!/usr/bin/env bash
# Create .venv and install focal with the CPU runtime, training, export and
# test extras, at the tested versions. Idempotent: re-running only installs
# what changed. Set FOCAL_EDITABLE=1 for an editable (developer) install.
#   --runtime   only the torch-free runtime (base + cpu extra): what
#               focal-detect needs; no torch, no training stack.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
EXTRAS="cpu,train,export,test,serve,ray"
if [ "${1:-}" = "--runtime" ]; then
  EXTRAS="cpu"
fi
if [ "${FOCAL_EDITABLE:-0}" = 1 ]; then
  # Editable installs build in place: the build requirements must be present.
  .venv/bin/python -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12"
  .venv/bin/python -m pip install --quiet --no-build-isolation -c requirements/constraints.txt -e ".[$EXTRAS]"
else
  .venv/bin/python -m pip install --quiet -c requirements/constraints.txt ".[$EXTRAS]"
fi
echo "[setup] installed: $(.venv/bin/python -c 'import focal; print("focal", focal.__version__)')"
