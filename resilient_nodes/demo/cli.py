"""The command line: ``python -m resilient_nodes.demo [--seed N] [--quiet]``.

Parses the arguments, runs the demo on stdout, says which extra to install when
langgraph is missing, and ends quietly when the reader goes away early
(``| head``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .run import run_demo

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m resilient_nodes.demo`` command.

    Args:
        argv: Arguments (``--seed N``, ``--quiet``); ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 once the batch has run (the summary says which
        failure modes were shown), also when stdout was closed early
        (``| head``): the rest of the output is dropped. 1 when langgraph is
        not installed, with a line on stderr saying which extra to install.
    """
    parser = argparse.ArgumentParser(
        prog="python -m resilient_nodes.demo",
        description="Run a story pipeline whose simulated LLM and tool calls fail on "
        "purpose, and show how resilient_nodes copes.",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the failure schedule (default: 7)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress display, only the summary"
    )
    args = parser.parse_args(argv)
    try:
        run_demo(seed=args.seed, out=sys.stdout, progress=not args.quiet)
    except ModuleNotFoundError as error:
        if error.name != "langgraph":
            raise
        # A missing extra is a setup step, not a bug: one line, no traceback.
        sys.stderr.write(f"{parser.prog}: {error}\n")
        return 1
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # The reader went away: what is still buffered would fail again when the
        # interpreter flushes at exit (exit status 120), so send it nowhere.
        _discard_stdout()
    return 0


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - no real stdout to redirect
        pass
