"""The native copy-move kernels against their NumPy references, bit for bit.

``ring_descriptors`` and ``patchmatch`` of the native core must give the
same bits as ``ring_descriptors_reference`` and ``patchmatch_reference``
(same operations in the same order, a counter-based random stream), for any
thread count, so ``detect_copy_move`` gives one mask whichever backend runs.
Skipped, with the reason, where the extension is not built.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from focal.runtime import _native_api as na
from focal.runtime import copymove as cm

pytestmark = pytest.mark.skipif(
    not na.available(), reason="focal.runtime._native is not built (pip install . with a C++17 compiler)"
)


def _grey(seed: int, h: int, w: int) -> np.ndarray:
    """[h, w] float32 grey levels in [0, 255]: smoothed noise, a little structure at several scales."""
    rng = np.random.default_rng(seed)
    grey = np.zeros((h, w), np.float32)
    for sigma, weight in ((1.0, 40.0), (4.0, 70.0)):
        grey += weight * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    return np.clip(128 + grey, 0, 255).astype(np.float32)


@pytest.mark.parametrize("shape,radius", [((40, 57), 1), ((64, 48), 6), ((33, 90), 9)])
def test_descriptors_are_the_references_bits(shape: tuple[int, int], radius: int) -> None:
    grey = _grey(1, *shape)
    native = cm.ring_descriptors(grey, radius, backend="native")
    reference = cm.ring_descriptors(grey, radius, backend="reference")
    assert native.shape == (*shape, cm.descriptor_width(radius)) and native.dtype == np.int16
    assert np.array_equal(native, reference)
    assert not native[:, :, 2 * radius + 1 :].any()  # the padding is zeros


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_every_isa_gives_the_references_descriptors_and_field(isa: str, tmp_path) -> None:
    # FOCAL_NATIVE_ISA=generic forces the baseline rows and search (SSE2 / NEON), =avx2 the AVX2
    # builds where the CPU has them: other vector widths, the same bits. The family is read once per
    # process.
    grey = _grey(3, 45, 77)
    np.save(tmp_path / "grey.npy", grey)
    code = ("import numpy as np, sys; from focal.runtime import copymove as cm, _native_api as n;"
            "d = cm.ring_descriptors(np.load(sys.argv[1]), 6, backend='native'); np.save(sys.argv[2], d);"
            "np.save(sys.argv[3], np.stack(n.patchmatch(d, 2, 8, 3, 5)))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "grey.npy"), str(tmp_path / "out.npy"),
                    str(tmp_path / "field.npy")], env=dict(os.environ, FOCAL_NATIVE_ISA=isa), check=True)
    reference = cm.ring_descriptors(grey, 6, backend="reference")
    assert np.array_equal(np.load(tmp_path / "out.npy"), reference)
    field = np.stack([a.astype(np.float32) for a in cm.patchmatch_reference(reference, 2, 8, 3, 5)])
    assert np.array_equal(np.load(tmp_path / "field.npy"), field)


def test_descriptors_do_not_depend_on_the_thread_count() -> None:
    smooth, magnitude = cm._planes(_grey(2, 70, 61))
    one = na.ring_descriptors(smooth, magnitude, 6, num_threads=1)
    two = na.ring_descriptors(smooth, magnitude, 6, num_threads=2)
    assert np.array_equal(one, two)


@pytest.mark.parametrize(
    "shape,stride,min_offset,iterations,seed",
    [((64, 80), 2, 24, 3, 0), ((50, 37), 1, 10, 2, 7), ((72, 72), 3, 30, 4, 2**64 - 1), ((40, 40), 2, 0, 1, 5)],
)
def test_the_field_is_the_references_bits(shape, stride, min_offset, iterations, seed) -> None:
    desc = cm.ring_descriptors(_grey(3, *shape), 6, backend="reference")
    reference = cm.patchmatch_reference(desc, stride, min_offset, iterations, seed)
    for threads in (1, 2):
        native = na.patchmatch(desc, stride, min_offset, iterations, seed, num_threads=threads)
        for a, b in zip(native, reference):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b)
    oy, ox, cost = reference
    assert oy.shape == (-(-shape[0] // stride), -(-shape[1] // stride))
    finite = np.isfinite(cost)
    assert finite.mean() > 0.9  # the search found valid matches, so the comparison covers them
    assert (oy[finite].astype(np.int64) ** 2 + ox[finite].astype(np.int64) ** 2 >= min_offset**2).all()


def test_the_seed_changes_the_field() -> None:
    desc = cm.ring_descriptors(_grey(4, 48, 48), 6, backend="native")
    a = na.patchmatch(desc, 2, 16, 1, 0)
    b = na.patchmatch(desc, 2, 16, 1, 1)
    assert not np.array_equal(a[0], b[0])


def test_both_backends_give_the_same_mask() -> None:
    rng = np.random.default_rng(5)
    grey = np.clip(_grey(5, 128, 160) + rng.normal(0, 3, (128, 160)), 0, 255).astype(np.uint8)
    image = np.dstack([grey, np.roll(grey, 2, axis=1), grey // 2 + 60])
    image[70:110, 100:140] = image[10:50, 15:55]
    native = cm.detect_copy_move(image, backend="native")
    reference = cm.detect_copy_move(image, backend="reference")
    assert native.any() and np.array_equal(native, reference)


def test_bad_arguments_are_refused() -> None:
    smooth, magnitude = cm._planes(_grey(6, 20, 20))
    with pytest.raises(ValueError, match="radius"):
        na.ring_descriptors(smooth, magnitude, 20)
    with pytest.raises(ValueError, match="radius"):
        na.ring_descriptors(*cm._planes(_grey(6, 40, 40)), 16)  # int32 distances need radius <= 15
    with pytest.raises(ValueError, match="multiple of 16"):
        na.patchmatch(np.zeros((8, 8, 13), np.int16), 1, 1, 1, 0)
    with pytest.raises(ValueError, match="multiple of 16"):
        cm.patchmatch_reference(np.zeros((8, 8, 13), np.int16), 1, 1, 1, 0)
    with pytest.raises(ValueError, match="16 or 32"):
        na.patchmatch(np.zeros((8, 8, 48), np.int16), 1, 1, 1, 0)
    for kernel in (na.patchmatch, cm.patchmatch_reference):  # a float field would be cast unasked
        with pytest.raises(TypeError, match="int16"):
            kernel(np.zeros((8, 8, 16), np.float32), 1, 1, 1, 0)


def test_descriptors_round_to_eighths_of_a_grey_level() -> None:
    """A flat grey 100.3 is 802.4 eighths: 802 on every ring; a flat image has no gradient."""
    flat = np.full((20, 24), 100.3, np.float32)
    for backend in ("native", "reference"):
        desc = cm.ring_descriptors(flat, 3, backend=backend)
        assert (desc[:, :, :4] == 802).all() and not desc[:, :, 4:].any()


def test_distances_are_exact_in_grey_levels_squared() -> None:
    """Two halves of one constant image, 1/8 grey level apart on 7 values: cost 7/64 across."""
    desc = np.zeros((4, 64, 16), np.int16)
    desc[:, :32, :7] = 800
    desc[:, 32:, :7] = 801
    for field in (na.patchmatch(desc, 1, 32, 1, 0), cm.patchmatch_reference(desc, 1, 32, 1, 0)):
        oy, ox, cost = field
        found = np.isfinite(cost)  # a few cells may never be offered a valid match in one round
        assert found.mean() > 0.9 and cost.dtype == np.float32
        assert (np.abs(ox[found]) >= 32).all() and (cost[found] == np.float32(7 / 64)).all()
