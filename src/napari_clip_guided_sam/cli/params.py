"""`clip-guided-sam params`: parameter counts per component (paper Table 1)."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "params",
        help="print parameter counts (total / trainable) per component",
        description="Count parameters of a preset's real architecture without downloading "
        "weights (paper Table 1).",
    )
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model.accounting import count_parameters, format_table
    from ..model.config import get_preset

    config = get_preset(args.preset)
    print(
        f"preset {config.name}: SAM {config.sam.variant}, CLIP {config.clip.arch} "
        f"at {config.clip.clip_size} px"
    )
    print(format_table(count_parameters(config)))
    return EXIT_OK
