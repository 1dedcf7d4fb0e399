"""`clip-guided-sam evaluate`: metrics of a model on labelled images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..evaluation.modes import PROMPT_MODES
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_base_weights_arguments,
    add_data_arguments,
    add_runtime_arguments,
    class_map_from_args,
    format_number,
    load_folders,
    model_summary,
    print_skipped,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint (or an untrained preset) on labelled images",
        description="Segment every image by class name (text-only mode, as in use) and "
        "compare with the labels: mIoU over {background, class}, foreground IoU, Dice, "
        "MAE, S-measure, E-measure and weighted F.",
        epilog="example:\n  clip-guided-sam evaluate --checkpoint run1/best.safetensors "
        "--images test_imgs/ --labels test_labels/ --class nucleus --json scores.json\n\n"
        "Exit codes: 0 done, 1 failed, 2 bad command line, 130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE", help="a trained checkpoint")
    source.add_argument(
        "--preset", help="an untrained preset: the zero-shot baseline (no fine-tuned adapters)"
    )
    add_data_arguments(parser)
    add_base_weights_arguments(parser)
    parser.add_argument(
        "--mode",
        choices=PROMPT_MODES,
        default="text",
        help="text (default): prompts from the class name only; manual: plus 5 points "
        "drawn from the ground truth (an upper bound for clicking)",
    )
    add_runtime_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the metrics to this file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from .._atomic import atomic_write
    from ..evaluation.scoring import iter_evaluation
    from ..model.checkpoint import load_model
    from ..model.factory import build_model
    from ..model.runtime import resolve_device, resolve_precision
    from ..training.inputs import PreparedCache

    class_map = class_map_from_args(args)
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    base = {"sam_weights": args.sam_weights, "clip_weights": args.clip_weights}
    classes = ()
    if args.checkpoint is not None:
        model, checkpoint = load_model(args.checkpoint, **base)
        classes = checkpoint.class_names
    else:
        model = build_model(args.preset, **base)
    for line in model_summary(model, args.checkpoint, classes):
        print(line)
    model.to(device)
    dataset, skipped = load_folders(args, class_map)
    prepared = PreparedCache(dataset, model.config, max_bytes=0)
    steps = iter_evaluation(model, prepared, args.mode, dtype=dtype)
    bar = tqdm(total=len(dataset), unit="image", dynamic_ncols=True, file=sys.stderr)
    try:
        while True:
            try:
                next(steps)
                bar.update(1)
            except StopIteration as stop:
                metrics = stop.value
                break
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: no metrics written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    print(f"{metrics['n_samples']} sample(s), {args.mode} mode")
    for key, value in metrics.items():
        if key != "n_samples":
            print(f"  {key:<28} {format_number(value)}")
    if args.json:
        report = {
            "checkpoint": args.checkpoint,
            "preset": model.config.name,
            "adapters": model.adapter_state,
            "base_weights": model.base.to_dict(),
            "mode": args.mode,
            "images": str(args.images),
            "labels": str(args.labels),
            "metrics": metrics,
            "skipped": [{"file": name, "reason": reason} for name, reason in skipped],
        }
        text = json.dumps(report, indent=2)
        atomic_write(Path(args.json), lambda temp: temp.write_text(text))
        print(f"wrote {args.json}")
    print_skipped(skipped)
    return EXIT_OK
