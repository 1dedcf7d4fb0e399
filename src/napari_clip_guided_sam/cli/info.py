"""`clip-guided-sam info [MODEL]`: a checkpoint's model card, or the installed version."""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_OK


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print a checkpoint's model card (classes, base weights, training, scores)",
        description="With MODEL: print what a fine-tuned checkpoint is: preset, the base "
        "weights it needs (names and sha256), adapter initialisation, classes, training data "
        "and settings, validation scores per class, version and date. Without: the version.",
    )
    parser.add_argument(
        "checkpoint", nargs="?", metavar="MODEL", help="a checkpoint (.safetensors)"
    )
    parser.add_argument("--json", action="store_true", help="print the card as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.checkpoint is None:
        from .. import __version__

        print(f"napari-clip-guided-sam {__version__}")
        return EXIT_OK
    return print_model_card(args.checkpoint, args.json)


def print_model_card(path: str, as_json: bool = False) -> int:
    from dataclasses import asdict

    from ..model.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    card = checkpoint.card
    if as_json:
        print(json.dumps(None if card is None else asdict(card), indent=2, sort_keys=True))
        return EXIT_OK
    print(path)
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
