"""Image and mask decoding for training: the runtime's reader, re-exported.

Training, evaluation and the detector must decode files identically (same
bit-depth scaling, channel order, pixel limit and EXIF handling), so the
one implementation lives in the torch-free :mod:`focal.runtime.imageio`.
Training reads pixels as stored (no EXIF rotation), because ground-truth
masks are drawn on the stored pixel grid.
"""

from __future__ import annotations

from focal._files import IMAGE_EXTENSIONS
from focal.runtime.imageio import DEFAULT_MAX_PIXELS, decode_image, read_image, read_mask

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "decode_image",
    "read_image",
    "read_mask",
]
