#!/usr/bin/env bash
# Cross-compiles the native core's kernels for aarch64 (Jetson) with zig's
# clang, to catch x86-only code before it reaches a Jetson. Compile only: no
# aarch64 machine or emulator is needed (nor can the objects run here).
#
#   bash scripts/check_aarch64.sh        # installs ziglang into .zig-venv once (~400 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .zig-venv/bin/python ]; then
  python3 -m venv .zig-venv
  .zig-venv/bin/pip install -q ziglang
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Same flags as CMakeLists.txt's release build (gemm.cpp may contract FMAs).
# Every kernel source beside the binding file (CMakeLists.txt builds the same set).
for src in runtime/native/*.cpp; do
  [ "$(basename "$src")" = bindings.cpp ] && continue
  contract=off
  [ "$(basename "$src")" = gemm.cpp ] && contract=fast
  .zig-venv/bin/python -m ziglang c++ -target aarch64-linux-gnu -std=c++17 -O3 -fno-math-errno \
    -ffp-contract=$contract -fPIC -Wall -Werror -c "$src" -o "$out/$(basename "$src" .cpp).o"
  echo "aarch64: $src compiled"
done
# The binding file and the whole extension, linked, where the dev venv has
# pybind11 (Python's headers are the same on both 64-bit Linuxes).
if .venv/bin/python -c "import pybind11" 2>/dev/null; then
  pyinc=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  pbinc=$(.venv/bin/python -c "import pybind11; print(pybind11.get_include())")
  .zig-venv/bin/python -m ziglang c++ -target aarch64-linux-gnu -std=c++17 -O3 -fno-math-errno -fPIC -shared \
    -I"$pyinc" -I"$pbinc" -Iruntime/native runtime/native/bindings.cpp "$out"/*.o -o "$out/_native.so"
  file "$out/_native.so" 2>/dev/null || true
  echo "aarch64: the extension links"
fi
echo "check_aarch64: the native core compiles for aarch64-linux-gnu"
