#!/usr/bin/env bash
# The runtime on the lowest ONNX Runtime pyproject.toml allows: a fresh venv
# with onnxruntime==FLOOR, the base dependencies at the development venv's
# versions and this checkout, then focal-detect with the embedded default on
# IMAGES, its masks compared byte for byte with the development venv's. Exit
# 1 on any difference. Only ONNX Runtime differs between the two: NumPy's
# argsort orders tied HDBSCAN tree weights by its own version's (and CPU's)
# sort, which the hdbscan package, and so the native core, follow; on an
# AVX2-only CPU NumPy 1.26 and 2.4 flip one point of one real sample.
#   bash scripts/check_ort_floor.sh [IMAGES]      (needs .venv from scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-../shared/data/real-samples/images}
FLOOR=$(sed -n 's/^cpu = \["onnxruntime>=\([0-9.]*\)"\]/\1/p' pyproject.toml)
[ -n "$FLOOR" ] || { echo "check_ort_floor: no onnxruntime floor found in pyproject.toml" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
PINS=$(.venv/bin/python -c 'from importlib.metadata import version as v
print(" ".join(f"{p}=={v(p)}" for p in ("numpy", "opencv-python-headless", "hdbscan")))')
"$WORK/venv/bin/pip" install -q "onnxruntime==$FLOOR" $PINS
"$WORK/venv/bin/pip" install -q --no-deps .
echo "[ort-floor] onnxruntime $("$WORK/venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)'), numpy $("$WORK/venv/bin/python" -c 'import numpy; print(numpy.__version__)')"
(cd "$WORK" && "$WORK/venv/bin/focal-detect" "$OLDPWD/$IMAGES" --out floor --backend cpu >/dev/null)
.venv/bin/focal-detect "$IMAGES" --out "$WORK/dev" --backend cpu >/dev/null
(cd "$WORK/floor" && sha256sum $(find . -name '*.mask.png' | sort)) > "$WORK/floor.sha"
(cd "$WORK/dev" && sha256sum $(find . -name '*.mask.png' | sort)) > "$WORK/dev.sha"
if diff -q "$WORK/floor.sha" "$WORK/dev.sha" >/dev/null; then
  echo "[ort-floor] $(wc -l < "$WORK/dev.sha") masks identical to onnxruntime $(.venv/bin/python -c 'import onnxruntime; print(onnxruntime.__version__)')"
else
  echo "[ort-floor] masks differ:" >&2; diff "$WORK/floor.sha" "$WORK/dev.sha" >&2; exit 1
fi
