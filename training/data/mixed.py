"""A mixture of synthetic forgery generators: each sample drawn from one of them.

Real edits carry both kinds of evidence the generators teach apart: content
and colour that do not belong (the classic splices, copy-moves and
inpaintings) and a camera pipeline that differs (the trace-carrying ones).
A mixture teaches both in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .synthetic import SyntheticForgeryGenerator, SyntheticSample

__all__ = ["MixedForgeryGenerator"]


class MixedForgeryGenerator:
    """Draws each sample from one of several generators over the same photos.

    Args:
        generators: the generators, each over the same photo list.
        weights: their shares, positive (normalised here).

    Raises:
        ValueError: no generator, a weight that is not positive, a count
            mismatch, or generators over different photos.
    """

    def __init__(self, generators: Sequence[SyntheticForgeryGenerator], weights: Sequence[float]) -> None:
        if not generators or len(generators) != len(weights):
            raise ValueError(f"need as many weights as generators, got {len(generators)} and {len(weights)}")
        if any(w <= 0 for w in weights):
            raise ValueError(f"generator weights must be positive, got {list(weights)}")
        photos = generators[0].photos
        if any(g.photos != photos for g in generators[1:]):
            raise ValueError("the mixed generators must share one photo list (the training or the validation side)")
        self._generators = tuple(generators)
        w = np.asarray(weights, dtype=np.float64)
        self._cumulative = np.cumsum(w / w.sum())

    @property
    def photos(self) -> tuple[Path, ...]:
        """The shared photo pool."""
        return self._generators[0].photos

    def __len__(self) -> int:
        return len(self.photos)

    def generate(self, index: int, rng: np.random.Generator) -> SyntheticSample:
        """Sample ``index``: the generator is the first draw of ``rng``, the rest is that generator's."""
        k = int(np.searchsorted(self._cumulative, rng.random(), side="right"))
        return self._generators[min(k, len(self._generators) - 1)].generate(index, rng)
