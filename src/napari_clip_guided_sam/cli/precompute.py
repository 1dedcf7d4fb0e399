"""`clip-guided-sam precompute`: a stack's embeddings into the on-disk cache, once.

`segment --embedding-cache` (and the segment widget with its cache on) then runs only the
prompt encoder and mask decoder on these slices and classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.formats import printable
from ..data.normalize import NORMALIZE_MODES
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    UsageError,
    add_base_weights_arguments,
    add_compile_argument,
    add_embedding_cache_arguments,
    add_runtime_arguments,
    embedding_store_from_args,
    predictor_from_args,
    preset_from_args,
)

_EPILOG = """\
examples:
  clip-guided-sam precompute stack.ome.zarr -c nucleus cell --checkpoint ft.safetensors
      every slice's embeddings for both classes, into the cache
  clip-guided-sam segment stack.ome.zarr -c nucleus cell --checkpoint ft.safetensors \\
      --embedding-cache
      then segmenting (again, with other thresholds or clicks) runs the decoder only
  clip-guided-sam precompute --clear
      empty the cache

Use the same model, precision, device kind, classes, --normalize and --channels as the
segmentation that follows: an entry serves only the same slice input, class and model.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "precompute",
        help="compute a stack's embeddings once, into the on-disk cache (or --clear it)",
        description="Compute the CLIP tokens and image embeddings of every slice of images,\n"
        "stacks or a folder, per class, into the on-disk embedding cache.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", nargs="?", help="an image/stack (or zarr store) or a folder")
    parser.add_argument("-c", "--classes", nargs="+", default=[], metavar="NAME")
    parser.add_argument("--checkpoint", default=None, help="fine-tuned checkpoint (.safetensors)")
    parser.add_argument(
        "--preset", default=None, help="model preset (default: the checkpoint's, else paper)"
    )
    add_base_weights_arguments(parser)
    add_runtime_arguments(parser)
    add_compile_argument(parser)
    parser.add_argument(
        "--channels", type=int, nargs="+", default=None, metavar="INDEX", help="as in segment"
    )
    parser.add_argument(
        "--normalize", choices=NORMALIZE_MODES, default="slice", help="as in segment"
    )
    add_embedding_cache_arguments(parser, flag=False)
    parser.add_argument(
        "--clear", action="store_true", help="remove every cached embedding and stop"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.normalize import NormalizeConfig
    from ..inference.batch import SegmentOptions, collect_inputs
    from ..inference.batch.precompute import precompute_stack

    store = embedding_store_from_args(args, always=True)
    if args.clear:
        removed = store.clear()
        print(f"removed {removed} cached entries from {printable(store.folder)}")
        return EXIT_OK
    if args.input is None:
        raise UsageError("name an image, stack or folder to precompute (or use --clear)")
    source = Path(args.input)
    if not source.exists():
        raise CommandError(f"input not found: {printable(source)}")
    try:
        options = SegmentOptions(
            class_names=tuple(args.classes),
            normalize=NormalizeConfig(
                mode=args.normalize, channels=tuple(args.channels) if args.channels else None
            ),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    images, _ = collect_inputs(source)
    preset = preset_from_args(args)
    predictor = predictor_from_args(args, preset)
    predictor.use_embedding_store(store)
    failed = 0
    for number, path in enumerate(images, 1):
        name = printable(path.name)
        bar = tqdm(unit="slice", disable=args.no_progress, desc=f"[{number}/{len(images)}] {name}")
        try:
            for event in precompute_stack(predictor, path, options):
                bar.total = event.total
                bar.update(1)
        except (ValueError, OSError) as error:
            failed += 1
            tqdm.write(f"FAILED {name}: {error}")
        finally:
            bar.close()
    size = store.size_bytes() / 2**30
    print(
        f"{len(images) - failed} of {len(images)} done; cache {printable(store.folder)} holds "
        f"{size:.2f} GB (limit {store.max_bytes / 2**30:.1f} GB)"
    )
    return EXIT_FAILED if failed else EXIT_OK
