"""`clip-guided-sam params`: parameter counts per component (paper Table 1)."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK, add_architecture_arguments, architecture_choices


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "params",
        help="print parameter counts (total / trainable) per component",
        description="Count parameters of a preset's real architecture without downloading "
        "weights (paper Table 1).",
    )
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    add_architecture_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model.accounting import (
        adapter_depth_table,
        count_parameters,
        format_depth_table,
        format_table,
    )
    from ..model.config import adapted_blocks, get_preset, with_compute_choices

    config = with_compute_choices(get_preset(args.preset), **architecture_choices(args))
    adapted = adapted_blocks(config)
    print(
        f"preset {config.name}: SAM {config.sam.variant} at {config.sam.image_size} px, "
        f"CLIP {config.clip.arch} at {config.clip.clip_size} px; adapters in "
        f"{len(adapted)} of {config.sam.encoder_depth} encoder blocks, CLIP attention trained "
        f"in its last {config.trainable.clip_attention_blocks} blocks"
    )
    print(format_table(count_parameters(config)))
    depth_rows = adapter_depth_table(config)
    if depth_rows:
        print("\nAdapters in the last N blocks only (--adapter-blocks N):")
        print(format_depth_table(depth_rows, len(adapted)))
    return EXIT_OK
