#!/usr/bin/env bash
# The runtime on the lowest ONNX Runtime pyproject.toml allows: a fresh venv
# with onnxruntime==FLOOR, the base dependencies and this checkout, then
# focal-detect with the embedded default on IMAGES, its masks compared byte
# for byte with the development venv's. Exit 1 on any difference.
#   bash scripts/check_ort_floor.sh [IMAGES]      (needs .venv from scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-../shared/data/real-samples/images}
FLOOR=$(sed -n 's/^cpu = \["onnxruntime>=\([0-9.]*\)"\]/\1/p' pyproject.toml)
[ -n "$FLOOR" ] || { echo "check_ort_floor: no onnxruntime floor found in pyproject.toml" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "onnxruntime==$FLOOR" "numpy>=1.24" "opencv-python-headless>=4.8" "hdbscan>=0.8.33"
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
