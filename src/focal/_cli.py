"""Helpers shared by the console scripts (argument parsing conventions)."""

from __future__ import annotations

import argparse

from focal import __version__


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the project's common ``--version`` flag."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    return parser
