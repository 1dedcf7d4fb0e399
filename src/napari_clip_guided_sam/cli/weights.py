"""`clip-guided-sam weights`: list, fetch and import model weights."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK


def add_parser(subparsers) -> None:
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model import weights

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
        from ..model.config import get_preset

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
    from ..model.checkpoint import save_checkpoint
    from ..model.released import import_released_checkpoint

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
