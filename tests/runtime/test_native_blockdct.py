"""The double-JPEG cue's block DCT: the native kernel against its NumPy reference, bit for bit,
and the reference against OpenCV's DCT.

``block_dct`` of the native core repeats ``block_dct_reference`` operation for
operation (a row pass, then a column pass, each summed in index order, then
``rint``), so ``dct_coefficients`` gives the same coefficients whichever
backend runs, whatever the thread count or ISA. Skipped, with the reason,
where the extension is not built.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from focal.runtime import _native_api as na
from focal.runtime import doublejpeg as dj

pytestmark = pytest.mark.skipif(
    not na.available(), reason="focal.runtime._native is not built (pip install . with a C++17 compiler)"
)


def _plane(seed: int, h: int, w: int) -> np.ndarray:
    """[h, w] uint8: smoothed noise with flat and saturated patches (coefficients of every size)."""
    rng = np.random.default_rng(seed)
    grey = 128 + 60 * cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), 1.5) + 25 * rng.standard_normal((h, w))
    grey[: h // 3, : w // 4] = 255
    return np.clip(grey, 0, 255).astype(np.uint8)


def _table(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 40, (8, 8))


@pytest.mark.parametrize("shape", [(8, 8), (17, 33), (64, 120), (203, 251)])
@pytest.mark.parametrize("zigzag", [None, 10])
def test_the_coefficients_are_the_references_bits(shape: tuple[int, int], zigzag: int | None) -> None:
    gray, table = _plane(1, *shape), _table(2)
    native = dj.dct_coefficients(gray, table, zigzag, backend="native")
    reference = dj.dct_coefficients(gray, table, zigzag, backend="reference")
    blocks = (shape[0] // 8, shape[1] // 8)
    assert native.shape == reference.shape == ((*blocks, 8, 8) if zigzag is None else (*blocks, zigzag))
    assert native.dtype == reference.dtype == (np.int64 if zigzag is None else np.int32)
    assert np.array_equal(native, reference)
    assert np.count_nonzero(native) > native.size // 4  # the comparison covers values, not a plane of zeros


def test_the_reference_is_the_dct_of_the_blocks() -> None:
    # The two passes are JPEG's forward DCT: OpenCV's transform of each block, divided and rounded,
    # agrees except where the quotient lies within float noise of a half.
    gray, table = _plane(3, 64, 96), _table(4)
    ours = dj.block_dct_reference(gray, np.arange(64), table.reshape(64))
    for by in range(8):
        for bx in range(12):
            block = gray[by * 8 : by * 8 + 8, bx * 8 : bx * 8 + 8].astype(np.float64) - 128.0
            quotient = cv2.dct(block) / table
            near_half = np.abs(np.abs(quotient - np.floor(quotient)) - 0.5) < 1e-9
            assert np.array_equal(ours[by, bx].reshape(8, 8)[~near_half], np.rint(quotient)[~near_half])


def test_the_coefficients_do_not_depend_on_the_thread_count() -> None:
    gray, table = _plane(5, 331, 219), _table(6)
    index, steps = dj.ZIGZAG[1:11], table.reshape(64)[dj.ZIGZAG[1:11]]
    one = na.block_dct(gray, dj._DCT, index, steps, num_threads=1)
    two = na.block_dct(gray, dj._DCT, index, steps, num_threads=2)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_every_isa_gives_the_references_coefficients(isa: str, tmp_path) -> None:
    # FOCAL_NATIVE_ISA=generic forces the baseline rows (SSE2 / NEON), =avx2 the AVX2 ones where
    # the CPU has them. The family is read once per process, hence a subprocess.
    gray, table = _plane(7, 97, 140), _table(8)
    np.save(tmp_path / "gray.npy", gray)
    np.save(tmp_path / "table.npy", table)
    code = ("import numpy as np, sys; from focal.runtime import doublejpeg as dj;"
            "np.save(sys.argv[3], dj.dct_coefficients(np.load(sys.argv[1]), np.load(sys.argv[2]), backend='native'))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "gray.npy"), str(tmp_path / "table.npy"),
                    str(tmp_path / "out.npy")], env=dict(os.environ, FOCAL_NATIVE_ISA=isa), check=True)
    assert np.array_equal(np.load(tmp_path / "out.npy"), dj.dct_coefficients(gray, table, backend="reference"))


def test_bad_arguments_are_refused() -> None:
    gray = _plane(9, 16, 16)
    with pytest.raises(ValueError, match="positions"):
        na.block_dct(gray, dj._DCT, np.array([64]), np.array([1]))
    with pytest.raises(ValueError, match="steps"):
        na.block_dct(gray, dj._DCT, np.array([3]), np.array([0]))
    with pytest.raises(ValueError, match="one length"):
        na.block_dct(gray, dj._DCT, np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="cosines"):
        na.block_dct(gray, np.eye(4), np.array([1]), np.array([1]))


def test_a_plane_without_a_whole_block_gives_no_coefficients() -> None:
    out = dj.dct_coefficients(np.zeros((7, 30), np.uint8), np.ones((8, 8), np.int64), 10, backend="native")
    assert out.shape == (0, 3, 10)
