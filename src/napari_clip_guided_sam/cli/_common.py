"""Pieces shared by the subcommands: exit codes, errors, common arguments, data loading."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback (exit 1)."""


class UsageError(CommandError):
    """The command line asks for something impossible (exit 2)."""


def add_data_arguments(parser: argparse.ArgumentParser, *, images_required: bool = True) -> None:
    """--images/--labels/--class/--class-map/--label-suffix/--background/--ignore-index,
    shared by train and evaluate."""
    parser.add_argument(
        "--images", required=images_required, metavar="DIR", help="folder of images"
    )
    parser.add_argument(
        "--labels", required=True, metavar="DIR", help="folder of label images (same names)"
    )
    classes = parser.add_mutually_exclusive_group(required=True)
    classes.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        help="the one class: every nonzero label value belongs to it (e.g. nucleus)",
    )
    classes.add_argument(
        "--class-map",
        metavar="V=NAME,...|FILE.json",
        help="label value to class name, e.g. 1=nucleus,2=cell (other values are an error), "
        "or the class_map.json of a training folder exported from napari",
    )
    parser.add_argument(
        "--label-suffix",
        default="",
        metavar="SUFFIX",
        help="end of label file names, e.g. _labels for a.png <-> a_labels.tif",
    )
    parser.add_argument(
        "--background",
        choices=("0", "none"),
        default=None,
        help="0 (default): label 0 is background; none: fully labelled maps where label 0 "
        "is a class too (give it in --class-map, e.g. 0=pore,1=clay,2=quartz,3=pyrite)",
    )
    parser.add_argument(
        "--ignore-index",
        type=int,
        default=None,
        metavar="VALUE",
        help="label value of unannotated pixels (e.g. 255): left out of the loss and the scores",
    )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --precision, shared by train, evaluate and segment."""
    from ..model.runtime import DEVICE_CHOICES, PRECISION_CHOICES

    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICE_CHOICES,
        help="auto (default: cuda, then mps, then cpu), cuda, mps or cpu",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="auto (the faster precision measured on this machine, see `clip-guided-sam "
        "info --system`), fp32, bf16 or fp16 (GPU only)",
    )


def add_embedding_cache_arguments(parser: argparse.ArgumentParser, *, flag: bool = True) -> None:
    """--embedding-cache (when ``flag``), --cache-dir and --cache-size: the on-disk store of
    embeddings (`inference.embedding_store`), shared by segment and precompute."""
    if flag:
        parser.add_argument(
            "--embedding-cache",
            action="store_true",
            help="read and write image embeddings in the on-disk cache, so slices and classes "
            "seen before (or precomputed with `clip-guided-sam precompute`) need only the "
            "decoder",
        )
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="FOLDER",
        help="embedding cache folder (default: 'embeddings' in the plugin's cache folder)",
    )
    parser.add_argument(
        "--cache-size",
        type=float,
        default=None,
        metavar="GB",
        help="embedding cache size limit; the least recently used entries go (default 8)",
    )


def embedding_store_from_args(args: argparse.Namespace, *, always: bool = False):
    """The embedding store the arguments ask for (None without --embedding-cache)."""
    from ..inference.embedding_store import DEFAULT_MAX_GB, EmbeddingStore

    if not (always or getattr(args, "embedding_cache", False)):
        return None
    size = DEFAULT_MAX_GB if args.cache_size is None else args.cache_size
    if not size > 0:
        raise UsageError(f"--cache-size must be positive, got {size}")
    return EmbeddingStore(args.cache_dir, size)


def add_architecture_arguments(parser: argparse.ArgumentParser) -> None:
    """--image-size/--adapter-blocks/--clip-trainable-blocks: the architecture choices that
    trade accuracy for training cost (`model.config.with_compute_choices`)."""
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help="side of SAM's input frame (the preset's: 1024; 512 has 4x fewer tokens, for "
        "images up to about 700 px); the base weights' position tables are interpolated",
    )
    parser.add_argument(
        "--adapter-blocks",
        type=int,
        default=None,
        metavar="N",
        help="adapters in the last N SAM encoder blocks only (default: the preset's, all for "
        "paper); the blocks before them are computed once per image",
    )
    parser.add_argument(
        "--clip-trainable-blocks",
        type=int,
        default=None,
        metavar="M",
        help="train CLIP's visual attention in its last M blocks only (default: the preset's)",
    )


def architecture_choices(args: argparse.Namespace) -> dict:
    """The keyword arguments of `with_compute_choices` given on the command line."""
    return {
        "image_size": args.image_size,
        "adapter_blocks": args.adapter_blocks,
        "clip_trainable_blocks": args.clip_trainable_blocks,
    }


def class_map_from_args(args: argparse.Namespace):
    """--class NAME, or --class-map "1=nucleus,2=cell" or a class_map.json (as exported),
    with --background and --ignore-index (which override a class_map.json's own)."""
    from ..data.class_map import ClassMap, parse_class_map
    from ..model.guide import validate_class_names

    background = getattr(args, "background", None)
    ignore_index = getattr(args, "ignore_index", None)
    option = "--class" if args.class_name is not None else "--class-map"
    try:
        if args.class_name is not None:
            if background == "none":
                raise UsageError(
                    "--background none needs --class-map naming every label value, 0 included "
                    "(e.g. 0=pore,1=clay)"
                )
            class_map = ClassMap.single_class(args.class_name, ignore_index=ignore_index)
        elif args.class_map.endswith(".json"):
            path = Path(args.class_map)
            if not path.is_file():
                raise UsageError(f"--class-map file not found: {path}")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise UsageError(f"--class-map: cannot read {path} as text: {error}") from None
            try:
                config = json.loads(text)
            except ValueError as error:
                raise UsageError(
                    f"--class-map: {path} is not valid JSON ({error}); write e.g. "
                    '{"classes": {"1": "nucleus"}}'
                ) from None
            if isinstance(config, dict):
                if background is not None:
                    config["background"] = background == "0"
                if ignore_index is not None:
                    config["ignore_index"] = ignore_index
            class_map = ClassMap.from_config(config)
        else:
            class_map = parse_class_map(
                args.class_map, background=background != "none", ignore_index=ignore_index
            )
        validate_class_names(list(class_map.class_names))
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{option}: {error}") from None
    return class_map


def load_folders(args: argparse.Namespace, class_map):
    """The dataset and the (file, reason) pairs skipped, warnings printed as they come."""
    import warnings

    from ..data.datasets import SliceDataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = SliceDataset.from_folders(
            args.images, args.labels, class_map, label_suffix=args.label_suffix
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    skipped = [(Path(path).name, reason) for path, reason in dataset.skipped]
    skipped += [(path.name, "no partner with the same name") for path in dataset.unmatched]
    return dataset, skipped


def print_skipped(skipped) -> None:
    if skipped:
        print(f"{len(skipped)} file(s) skipped:", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason}", file=sys.stderr)


def format_number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def add_base_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """--sam-weights/--clip-weights: the user's own base files instead of the official ones."""
    parser.add_argument(
        "--sam-weights",
        metavar="FILE",
        help="your own SAM base weights instead of the official file, e.g. a SAM ViT-B "
        "fine-tuned for microscopy in SAM's state-dict layout (.pth or .safetensors); it is "
        "not the official file, so its sha256 is recorded instead of checked",
    )
    parser.add_argument(
        "--clip-weights",
        metavar="FILE",
        help="your own CLIP base weights (OpenAI's layout, .safetensors or a plain torch "
        "file) instead of the official file; recorded by sha256",
    )


def model_summary(model, checkpoint: str | Path | None = None, classes=()) -> list[str]:
    """What model runs, in words: preset, adapter state (zero-shot or fine-tuned), classes,
    and any base weights that are not the official files."""
    if checkpoint is None:
        lines = [f"model: preset {model.config.name}, {model.adapter_state}"]
        if model.zero_shot:
            lines.append(
                "  the paper's training-free baseline: CLIP Surgery's similarity map prompts "
                "the vanilla SAM encoder; fine-tune with `clip-guided-sam train` for better masks"
            )
    else:
        names = ", ".join(classes) or "not recorded"
        lines = [
            f"model: {Path(checkpoint).name} (preset {model.config.name}, "
            f"{model.adapter_state}, classes {names})"
        ]
    return lines + custom_base_lines(model)


def custom_base_lines(model) -> list[str]:
    """An explicit statement for every backbone whose weights are not the official file."""
    from ..model.base_weights import ROLE_NAMES, ROLES

    return [
        f"  base weights: {ROLE_NAMES[role]} from a {source.describe()}"
        for role in ROLES
        if (source := getattr(model.base, role)).kind == "custom"
    ]


def preset_from_args(args: argparse.Namespace) -> str:
    """`--preset`, else the checkpoint's own preset, else `paper`."""
    if args.preset is not None:
        return args.preset
    if args.checkpoint:
        from ..model.checkpoint import read_checkpoint

        return read_checkpoint(args.checkpoint).config.name
    return "paper"


def predictor_from_args(args: argparse.Namespace, preset: str):
    """The predictor of `segment` and `precompute`: preset, checkpoint, device, precision
    and base weights as the command line gives them."""
    from ..inference.predictor import Predictor

    predictor = Predictor.from_preset(
        preset,
        args.checkpoint,
        args.device,
        args.precision,
        sam_weights=args.sam_weights,
        clip_weights=args.clip_weights,
    )
    if args.compile:
        from ..model.compilation import compile_image_encoder

        if not compile_image_encoder(predictor.model):
            print(
                f"--compile: {preset} runs its image encoder block by block (a frozen prefix "
                "shared between classes), which compilation does not cover; running uncompiled.",
                file=sys.stderr,
            )
    return predictor


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """--compile, shared by segment and precompute (the commands of long runs)."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile SAM's image encoder (torch.compile) at the first image: a minute or "
        "more of warm-up on a CPU, then each image faster (1.10x on a 2-core CPU, paying off "
        "after about 50 images; docs/performance.md). Every cluster worker compiles its own",
    )
