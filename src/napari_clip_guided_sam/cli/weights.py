"""`clip-guided-sam weights`: list, fetch, verify and import model weights."""

from __future__ import annotations

import argparse

from ._common import EXIT_FAILED, EXIT_OK


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="show, download, verify or import model weights",
        description="Manage base weights (official SAM and CLIP files) and import the "
        "authors' released checkpoint. Exit codes: 0 done, 1 failed (verify: a file is not "
        "the official one).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the official files and whether they are cached")
    fetch = actions.add_parser("fetch", help="download the base weights a preset needs")
    fetch.add_argument("--preset", default="paper")
    actions.add_parser(
        "verify", help="check every file in the weights folder against the registry's sha256"
    )
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
    actions = {"list": _list, "fetch": _fetch, "verify": _verify, "import": _import}
    return actions[args.action](args)


def _list(args: argparse.Namespace) -> int:
    from ..model import weights

    folder = weights.cache_dir()
    print(f"weights folder: {folder}  (set {weights.CACHE_ENV} to change)")
    for kind, table in (("SAM", weights.SAM_WEIGHTS), ("CLIP", weights.CLIP_WEIGHTS)):
        for name, file in table.items():
            present = (folder / file.filename).is_file()
            print(f"  {kind:4} {name:9} {file.filename:22} {'present' if present else 'missing'}")
            print(f"       {file.url}")
            print(f"       sha256 {file.sha256}")
    return EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    from ..model import base_weights, weights
    from ..model.config import get_preset

    config = get_preset(args.preset)
    files = [base_weights.official_file(role, config) for role in base_weights.ROLES]
    if None in files:
        print(f"preset {config.name} uses random base weights; nothing to fetch")
        return EXIT_OK
    for file, path in zip(files, weights.official_paths(files, preset=config.name), strict=True):
        print(f"{file.filename}: {path} (sha256 checked)")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from ..model import weights

    folder = weights.cache_dir()
    print(f"weights folder: {folder}")
    results = weights.verify_directory(folder)
    for result in results:
        print(f"  {result.name:24} {result.status}")
        if result.status == "WRONG HASH":
            print(f"    sha256   {result.sha256}\n    official {result.expected}")
    wrong = [r.name for r in results if r.status == "WRONG HASH"]
    if wrong:
        print(
            f"{len(wrong)} file(s) are not the official ones: delete them and run "
            f"`{weights.FETCH_COMMAND}`, or keep your own weights under another name and "
            "choose them with --sam-weights / --clip-weights."
        )
        return EXIT_FAILED
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
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
