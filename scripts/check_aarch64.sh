#!/usr/bin/env bash
# The native core on aarch64 (Jetson), checked from an x86-64 machine:
#
#  1. every kernel source compiles for aarch64-linux-gnu with -Wall -Werror
#     and the wheel's flags, and the extension (bindings.cpp) links, where
#     the dev venv has pybind11 (Python's headers are the same on both
#     64-bit Linuxes);
#  2. the C++ tests (tests/native) cross-build and run under qemu-aarch64
#     through ctest, and their results are printed: the NEON kernels'
#     answers checked on an emulated aarch64 CPU, not only compiled.
#
#   apt-get install -y cmake g++-aarch64-linux-gnu qemu-user
#   bash scripts/check_aarch64.sh
#
# Without g++-aarch64-linux-gnu, step 1 falls back to zig's clang (installed
# into .zig-venv once, ~400 MB) and step 2 is skipped; without qemu-aarch64
# the tests are built but not run. Either is said on the last line, and the
# exit status is 0 only when everything that ran passed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
jobs=${FOCAL_JOBS:-2}
sysroot=/usr/aarch64-linux-gnu

# The machine an ELF file is built for (its e_machine field), failing unless aarch64.
require_aarch64() {
  local machine
  machine=$(python3 -c 'import struct, sys
m = struct.unpack("<H", open(sys.argv[1], "rb").read(20)[18:20])[0]
print({183: "aarch64", 62: "x86-64"}.get(m, f"machine {m}"))' "$1")
  echo "aarch64: $1 is an ELF for $machine"
  [ "$machine" = aarch64 ] || { echo "check_aarch64: $1 is not an aarch64 binary" >&2; exit 1; }
}

if command -v aarch64-linux-gnu-g++ >/dev/null; then
  cxx=(aarch64-linux-gnu-g++)
else
  if [ ! -x .zig-venv/bin/python ]; then
    python3 -m venv .zig-venv
    .zig-venv/bin/pip install -q ziglang
  fi
  cxx=(.zig-venv/bin/python -m ziglang c++ -target aarch64-linux-gnu)
fi
echo "aarch64: compiler: ${cxx[*]} ($("${cxx[@]}" --version | head -n 1))"

# 1. Same flags as CMakeLists.txt's release build (gemm.cpp may contract FMAs).
for src in runtime/native/*.cpp; do
  [ "$(basename "$src")" = bindings.cpp ] && continue
  contract=off
  [ "$(basename "$src")" = gemm.cpp ] && contract=fast
  "${cxx[@]}" -std=c++17 -O3 -fno-math-errno -ffp-contract=$contract -fPIC -Wall -Werror -c "$src" \
    -o "$out/$(basename "$src" .cpp).o"
  echo "aarch64: $src compiled"
done
if .venv/bin/python -c "import pybind11" 2>/dev/null; then
  pyinc=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  pbinc=$(.venv/bin/python -c "import pybind11; print(pybind11.get_include())")
  "${cxx[@]}" -std=c++17 -O3 -fno-math-errno -ffp-contract=off -fPIC -shared -I"$pyinc" -I"$pbinc" \
    -Iruntime/native runtime/native/bindings.cpp "$out"/*.o -o "$out/_native.so"
  require_aarch64 "$out/_native.so"
  echo "aarch64: the extension links"
fi

# 2. The C++ tests, cross-built by CMake (the same target definition as the
# native build) and run through ctest under the emulator.
if [ "${cxx[0]}" != aarch64-linux-gnu-g++ ]; then
  echo "check_aarch64: compiled only; the C++ tests need g++-aarch64-linux-gnu and qemu-user (apt-get)"
  exit 0
fi
if ! command -v cmake >/dev/null; then
  echo "check_aarch64: compiled only; the C++ tests need cmake" >&2
  exit 1
fi
emulator=""
command -v qemu-aarch64 >/dev/null && emulator="qemu-aarch64;-L;$sysroot"
cmake -S . -B "$out/tests" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_CXX_FLAGS="-Wall -Werror" \
  -DCMAKE_CROSSCOMPILING_EMULATOR="$emulator" -DFOCAL_NATIVE_MODULE=OFF -DFOCAL_NATIVE_TESTS=ON >"$out/configure.log" \
  || { cat "$out/configure.log"; exit 1; }
cmake --build "$out/tests" -j "$jobs" >"$out/build.log" || { cat "$out/build.log"; exit 1; }
require_aarch64 "$out/tests/focal_native_tests"
if [ -z "$emulator" ]; then
  echo "check_aarch64: compiled and the C++ tests built; not run (no qemu-aarch64: apt-get install qemu-user)"
  exit 0
fi
echo "aarch64: $(qemu-aarch64 --version | head -n 1)"
status=0
(cd "$out/tests" && ctest --output-on-failure) || status=$?
# Each test's own lines (one per check group, with its counts), from ctest's log.
grep -E '^\[ +(OK|FAIL|SKIP) +\]|^focal native tests:' "$out/tests/Testing/Temporary/LastTest.log" || true
if [ "$status" -ne 0 ]; then
  echo "check_aarch64: C++ tests FAILED under qemu-aarch64" >&2
  exit "$status"
fi
echo "check_aarch64: the native core compiles for aarch64-linux-gnu and its C++ tests pass under qemu-aarch64"
