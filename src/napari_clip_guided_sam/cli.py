"""Headless entry point: `clip-guided-sam {train,segment,evaluate,params,weights}`.

Every subcommand is a small function over the compute packages; long jobs run the same
generators the napari widgets run, with a text progress bar. Exit codes: 0 success,
1 the job failed (bad data, missing weights…), 2 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback."""


# --------------------------------------------------------------------------- params
def _add_params(subparsers) -> None:
    parser = subparsers.add_parser(
        "params",
        help="print parameter counts (total / trainable) per component",
        description="Count parameters of a preset's real architecture without downloading "
        "weights (paper Table 1).",
    )
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    parser.set_defaults(run=_run_params)


def _run_params(args: argparse.Namespace) -> int:
    from .model.accounting import count_parameters, format_table
    from .model.config import get_preset

    config = get_preset(args.preset)
    print(
        f"preset {config.name}: SAM {config.sam.variant}, CLIP {config.clip.arch} "
        f"at {config.clip.clip_size} px"
    )
    print(format_table(count_parameters(config)))
    return EXIT_OK


# --------------------------------------------------------------------------- weights
def _add_weights(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="show, download or import model weights",
        description="Manage base weights (official SAM and CLIP files) and import the "
        "authors' released checkpoint.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the official files and whether they are cached")
    fetch = actions.add_parser("fetch", help="download the base weights a preset needs")
    fetch.add_argument("--preset", default="paper")
    imported = actions.add_parser(
        "import", help="convert the authors' released checkpoint into our format"
    )
    imported.add_argument("source", help="released checkpoint (.pth with model_state_dict)")
    imported.add_argument("output", help="output checkpoint (.safetensors)")
    imported.add_argument(
        "--classes",
        nargs="*",
        default=[],
        help="class names to cache text features for (closed-set use)",
    )
    imported.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(run=_run_weights)


def _run_weights(args: argparse.Namespace) -> int:
    from .model import weights

    if args.action == "list":
        print(f"weights directory: {weights.cache_dir()}  (set {weights.CACHE_ENV} to change)")
        for kind, table in (("SAM", weights.SAM_WEIGHTS), ("CLIP", weights.CLIP_WEIGHTS)):
            for name, file in table.items():
                present = (weights.cache_dir() / file.filename).is_file()
                print(
                    f"  {kind:4} {name:9} {file.filename:22} {'cached' if present else 'missing'}"
                )
                print(f"       {file.url}")
        return EXIT_OK
    if args.action == "fetch":
        from .model.config import get_preset

        config = get_preset(args.preset)
        for file in (
            weights.SAM_WEIGHTS.get(config.sam.variant),
            weights.CLIP_WEIGHTS.get(config.clip.arch),
        ):
            if file is None:
                print(f"preset {config.name} uses random base weights; nothing to fetch")
                continue
            print(f"{file.filename}: {weights.fetch(file)}")
        return EXIT_OK
    from .model.checkpoint import save_checkpoint
    from .model.released import import_released_checkpoint

    model = import_released_checkpoint(args.source)
    features = model.text_features(args.classes) if args.classes else None
    path = save_checkpoint(
        model,
        args.output,
        class_names=args.classes,
        text_features=features,
        metadata={"imported_from": str(args.source)},
        overwrite=args.overwrite,
    )
    print(f"wrote {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- main
SUBCOMMANDS: list[Callable] = [_add_params, _add_weights]


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
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CommandError, ValueError, TypeError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
