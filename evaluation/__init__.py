"""FOCAL evaluation: scores, robustness, benchmarks and pictures of results.

Builds on the torch-free :mod:`focal.runtime` (artifacts) and, for
checkpoints, on :mod:`focal.training` (the PyTorch reference); the runtime
never imports this package.
"""

from focal.evaluation.bench import BenchConfig, bench
from focal.evaluation.evaluate import EvalConfig, evaluate
from focal.evaluation.metrics import PixelScores, image_level, pixel_auc, pixel_scores

__all__ = ["BenchConfig", "EvalConfig", "PixelScores", "bench", "evaluate", "image_level", "pixel_auc", "pixel_scores"]
