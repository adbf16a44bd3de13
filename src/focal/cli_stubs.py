"""Entry points of verbs whose issues are still open.

They exist so that the console scripts and ``--version`` are stable from the
start; each says plainly that the verb is not implemented yet and exits 2.
"""

from __future__ import annotations

import sys

from focal._cli import make_parser


def _not_yet(prog: str, what: str, argv: list[str] | None) -> int:
    parser = make_parser(prog, what)
    parser.parse_known_args(argv)
    print(f"{prog}: not implemented yet ({what}); see the project's open issues", file=sys.stderr)
    return 2


def bench_main(argv: list[str] | None = None) -> int:
    """``focal-bench``: per-stage latency of the runtime vs. the reference (pending)."""
    return _not_yet("focal-bench", "benchmarks", argv)
