"""The native core's C++ tests (tests/native), built and run by CMake/ctest.

They check the kernels themselves, below the Python binding: the Gram and
distance kernels of every instruction-set family against a double-precision
reference, the selection kernels against ``std::nth_element``, IEEE half
decoding and the matrix storage round trip, the spanning tree against a
naive O(N^2) Prim's, k-means on separated blobs. The second test cross-builds
the same tests for aarch64 and runs them under qemu (scripts/check_aarch64.sh).
Each is skipped, with the reason, where its tools are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cxx() -> str | None:
    for name in (os.environ.get("CXX", ""), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _summaries(log: str) -> list[tuple[int, int, int]]:
    """(passed, failed, skipped) of every test-executable run in a log."""
    found = re.findall(r"focal native tests: (\d+) passed, (\d+) failed, (\d+) skipped", log)
    return [(int(p), int(f), int(s)) for p, f, s in found]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found (apt-get install cmake)")
@pytest.mark.skipif(_cxx() is None, reason="no C++ compiler found (c++, g++ or clang++; or set CXX)")
def test_cpp_kernel_tests_pass(tmp_path: Path) -> None:
    build = tmp_path / "native-tests"
    cfg = ["cmake", "-S", str(REPO), "-B", str(build), "-DFOCAL_NATIVE_MODULE=OFF", "-DFOCAL_NATIVE_TESTS=ON",
           f"-DCMAKE_CXX_COMPILER={_cxx()}", "-DCMAKE_CXX_FLAGS=-Wall -Werror"]
    if shutil.which("ninja"):
        cfg += ["-G", "Ninja"]
    configured = subprocess.run(cfg, capture_output=True, text=True)
    assert configured.returncode == 0, configured.stdout[-4000:] + configured.stderr[-4000:]
    built = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    ran = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout[-6000:]
    assert "100% tests passed" in ran.stdout, ran.stdout[-2000:]
    runs = _summaries((build / "Testing" / "Temporary" / "LastTest.log").read_text())
    assert runs and all(failed == 0 for _, failed, _ in runs), runs
    assert sum(passed for passed, _, _ in runs) >= 20, runs  # every group ran its tests


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found (apt-get install cmake)")
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="no aarch64 cross compiler (apt-get install g++-aarch64-linux-gnu)")
@pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="no aarch64 emulator (apt-get install qemu-user)")
def test_cpp_kernel_tests_pass_on_aarch64_under_qemu() -> None:
    ran = subprocess.run(["bash", str(REPO / "scripts" / "check_aarch64.sh")], capture_output=True, text=True)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 0, out[-6000:]
    assert "C++ tests pass under qemu-aarch64" in out, out[-3000:]
    assert "focal_native_tests is an ELF for aarch64" in out  # the tests really ran as an aarch64 binary
    runs = _summaries(out)
    assert runs and all(failed == 0 for _, failed, _ in runs), runs
    assert sum(passed for passed, _, _ in runs) >= 19, runs  # all but the half storage (x86 F16C only)
