"""The console scripts' shared vocabulary: one parser factory and one builder per common option.

Every tool spells a shared option the same way and means the same by it:

- ``ARTIFACT`` (positional, dest ``artifact``): an artifact folder (with ``focal.json``);
- ``--backend``: choices from :data:`focal.runtime.engines.BACKENDS`, ``auto`` included;
- ``--precision``: choices from :data:`focal.runtime.manifest.PRECISIONS`;
- ``--clustering``: choices from :data:`focal.runtime.cluster.CLUSTER_METHODS`;
- ``--min-cluster-size``: HDBSCAN's smallest cluster;
- ``--batch-size``: images per call (engine call, training step); an exported
  graph's batch axis is ``--graph-batch`` in ``focal-export``, never "batch" alone;
- ``--json``: a flag: machine-readable JSON on stdout instead of the human text
  (a file report is ``--report PATH``);
- ``--photos`` / ``--segmentations``: shared data only through ``$FOCAL_PHOTOS`` /
  ``$FOCAL_SEGMENTATIONS``, never a path relative to the checkout.

The registries live in :mod:`focal.runtime`; the builders import it only when
called, so importing this module loads no package of the project.
"""

from __future__ import annotations

import argparse
import os

from focal import __version__

ARTIFACT_METAVAR = "ARTIFACT"
PHOTOS_ENV = "FOCAL_PHOTOS"
SEGMENTATIONS_ENV = "FOCAL_SEGMENTATIONS"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, unless there is none to show or the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # Identity tests: `0 in (None, False)` is true, and a seed of 0 is worth showing.
        if default is None or default is False or default is argparse.SUPPRESS or default == [] or "default:" in text:
            return text
        return super()._get_help_string(action)


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the project's help format (defaults shown) and ``--version``."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}",
                        help="print the version and exit")
    return parser


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _float_at_least(text: str, low: float, inclusive: bool) -> float:
    what = f"a number {'>=' if inclusive else '>'} {low:g}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (value >= low if inclusive else value > low):  # written so that NaN fails too
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """``argparse`` type: a number > 0."""
    return _float_at_least(text, 0.0, inclusive=False)


def non_negative_float(text: str) -> float:
    """``argparse`` type: a number >= 0."""
    return _float_at_least(text, 0.0, inclusive=True)


def add_artifact(parser: argparse.ArgumentParser, help: str, *, optional: bool = False) -> None:
    """The positional ``ARTIFACT`` (dest ``artifact``); ``optional`` makes it ``nargs='?'``."""
    parser.add_argument("artifact", metavar=ARTIFACT_METAVAR, nargs="?" if optional else None, help=help)


def _choice(parser: argparse.ArgumentParser, flag: str, choices: tuple[str, ...], default: str, repeatable: bool,
            help: str, repeat_help: str) -> None:
    """One ``--flag`` over ``choices``: a single value with ``default``, or repeatable (default: None)."""
    if repeatable:
        parser.add_argument(flag, action="append", choices=choices, default=None, help=repeat_help)
    else:
        parser.add_argument(flag, choices=choices, default=default, help=help)


def add_backend(parser: argparse.ArgumentParser, *, repeatable: bool = False, help: str | None = None) -> None:
    """``--backend`` with the runtime's backends (``auto`` = the fastest one usable here)."""
    from focal.runtime.engines import BACKENDS

    _choice(parser, "--backend", BACKENDS, "auto", repeatable, help or "engine backend (auto: the fastest usable here)",
            help or "engine backend, repeatable (auto: the fastest usable here)")


def add_precision(parser: argparse.ArgumentParser, *, repeatable: bool = False, help: str | None = None) -> None:
    """``--precision`` with the manifest's precisions."""
    from focal.runtime.manifest import PRECISIONS

    _choice(parser, "--precision", PRECISIONS, "fp32", repeatable, help or "model precision (the artifact must hold it)",
            help or "model precision, repeatable")


def add_clustering(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    default: str | None = "hdbscan",
    repeatable: bool = False,
    option: str = "--clustering",
    decisions: bool = True,
) -> None:
    """``--clustering`` (or another ``option`` name) with the runtime's methods.

    A repeatable option collects a list; its ``default`` is left for the caller
    to apply, since ``argparse`` appends to a default list rather than replacing it.
    ``decisions=False`` offers only the labelings (``hdbscan``, ``kmeans``): for
    tools that run before an artifact has a calibrated ``split`` threshold.
    """
    from focal.runtime.cluster import CLUSTER_METHODS, LABEL_METHODS

    choices = CLUSTER_METHODS if decisions else LABEL_METHODS
    if repeatable:
        parser.add_argument(option, action="append", choices=choices, default=None, help=help)
    else:
        parser.add_argument(option, choices=choices, default=default, help=help)


def add_min_cluster_size(parser: argparse.ArgumentParser, help: str, *, default: int | None = None) -> None:
    """``--min-cluster-size N``: HDBSCAN's smallest cluster, in feature-map pixels."""
    parser.add_argument("--min-cluster-size", type=positive_int, default=default, metavar="N", help=help)


def add_batch_size(parser: argparse.ArgumentParser, help: str, *, default: int | None = 1) -> None:
    """``--batch-size N``: images per call (engine call or training step)."""
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N", help=help)


# The cues' flags come in on/off pairs whose absence (None) leaves the choice to the artifact's
# manifest ("cues"): the embedded default runs both cues unless told --no-copy-move / --no-double-jpeg.
_AS_ARTIFACT = "default: as the artifact's manifest says (its cues)"


def add_copy_move(parser: argparse.ArgumentParser, what: str) -> None:
    """``--copy-move`` / ``--no-copy-move`` (dest ``copy_move``: True, False or None = the manifest's):
    the copy-move search (focal.runtime.copymove)."""
    parser.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None,
                        help=f"also search each image for copy-moves (a region repeated in it; source and target "
                             f"marked; 10-30 ms per image on 2 CPU cores): {what}; {_AS_ARTIFACT}")


def add_double_jpeg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--double-jpeg`` / ``--no-double-jpeg`` (dest ``double_jpeg``: True, False or None = the
    manifest's): the double-JPEG cue (focal.runtime.doublejpeg)."""
    parser.add_argument("--double-jpeg", action=argparse.BooleanOptionalAction, default=None,
                        help=f"also look in each JPEG file for regions that missed the compression the rest went "
                             f"through (the double-quantisation trace of most real edits): {what}; {_AS_ARTIFACT}")


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: a flag; ``what`` says which JSON goes to stdout."""
    parser.add_argument("--json", action="store_true", help=f"machine-readable JSON on stdout: {what}")


def add_photos(parser: argparse.ArgumentParser, help: str) -> None:
    """``--photos DIR`` (resolve with :func:`from_env` and :data:`PHOTOS_ENV`)."""
    parser.add_argument("--photos", default=None, metavar="DIR", help=f"{help} (default: ${PHOTOS_ENV})")


def add_segmentations(parser: argparse.ArgumentParser) -> None:
    """``--segmentations DIR`` (resolve with :func:`from_env` and :data:`SEGMENTATIONS_ENV`)."""
    parser.add_argument("--segmentations", default=None, metavar="DIR",
                        help="BSDS500 .mat folder: object-shaped forged regions "
                             f"(default: ${SEGMENTATIONS_ENV}; none: random polygons only)")


def from_env(value: str | None, env: str) -> str | None:
    """``value`` if given, else the environment variable ``env`` if set and non-empty, else ``None``."""
    if value is not None:
        return value
    return os.environ.get(env) or None
