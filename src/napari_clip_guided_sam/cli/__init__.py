"""Headless entry point:
`clip-guided-sam {train,segment,precompute,evaluate,info,params,weights}`.

Every subcommand is a small module over the compute packages; long jobs run the same
generators the napari widgets run, with a text progress bar. Exit codes: 0 success,
1 the job failed (bad data, missing weights…), 2 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import evaluate, info, params, precompute, segment, train, weights
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    UsageError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "UsageError",
    "build_parser",
    "main",
]

SUBCOMMANDS = [
    params.add_parser,
    weights.add_parser,
    segment.add_parser,
    precompute.add_parser,
    train.add_parser,
    evaluate.add_parser,
    info.add_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-guided-sam",
        description="CLIP-Guided SAM: text-prompted segmentation of scientific images. "
        "Run `clip-guided-sam COMMAND --help` for each command.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # any file name prints, odd bytes as \xNN
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (CommandError, ValueError, TypeError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
