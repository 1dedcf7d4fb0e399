"""`clip-guided-sam info`: print the model card of a checkpoint."""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_OK


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print a checkpoint's model card (classes, base weights, training, scores)",
        description="Print what a fine-tuned checkpoint is: preset, base weights it needs "
        "(names and sha256), adapter initialisation, classes, training data and settings, "
        "validation scores per class, version and date.",
    )
    parser.add_argument("checkpoint", metavar="MODEL", help="a checkpoint (.safetensors)")
    parser.add_argument("--json", action="store_true", help="print the card as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..model.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(args.checkpoint)
    card = checkpoint.card
    if args.json:
        print(json.dumps(None if card is None else asdict(card), indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{args.checkpoint}")
    if card is not None:
        print(card.format())
        return EXIT_OK
    print("no model card (written by an older version); from its header:")
    print(f"preset:          {checkpoint.config.name}")
    print(f"classes:         {', '.join(checkpoint.class_names) or '(none)'}")
    for line in checkpoint.base.describe():
        print(f"base weights:    {line}")
    for key, value in checkpoint.metadata.items():
        print(f"{key + ':':<16} {value}")
    return EXIT_OK
