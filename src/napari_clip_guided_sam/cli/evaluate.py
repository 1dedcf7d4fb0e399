"""`clip-guided-sam evaluate`: metrics of a model, or of label images, on labelled images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.formats import LABEL_SUFFIX
from ..evaluation.modes import PROMPT_MODES
from ..inference.instances import INSTANCE_METHODS
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    UsageError,
    add_base_weights_arguments,
    add_data_arguments,
    add_runtime_arguments,
    class_map_from_args,
    format_number,
    load_folders,
    model_summary,
    print_skipped,
)

_EVALUATE_EPILOG = """\
examples:
  # a checkpoint on held-out images: pixel scores (mIoU, IoU, Dice, MAE, S/E/weighted F)
  clip-guided-sam evaluate --checkpoint run1/best.safetensors --images test_imgs/ \\
      --labels test_labels/ --class nucleus --json scores.json
  # plus instance scores: DSB score (= mSA), F1/precision/recall/PQ at IoU 0.5
  clip-guided-sam evaluate --checkpoint run1/best.safetensors --images test_imgs/ \\
      --labels test_labels/ --class nucleus --instances watershed
  # label images written by `segment` (object ids, or class labels) against the truth
  clip-guided-sam evaluate --predictions segmented/ --labels test_labels/ --class nucleus
  # a fully labelled 4-class map (label 0 is a class, 255 unannotated): IoU and Dice per class
  clip-guided-sam evaluate --checkpoint run3/best.safetensors --images imgs/ --labels labels/ \\
      --background none --class-map 0=pore,1=clay,2=quartz,3=pyrite --ignore-index 255

Objects: with --class every label value is one object (instance labels); with --class-map each
8-connected region of a class is one object. Instance matching is one to one at IoU above
0.5, 0.55, ..., 0.95; the DSB score is the mean over those thresholds of TP / (TP + FP + FN),
averaged over images. The JSON holds per-image rows, per-threshold tables and per-class
results.

Exit codes: 0 done, 1 failed, 2 bad command line, 130 interrupted.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint, an untrained preset, or label images on labelled images",
        description="Segment every image by class name (text-only mode, as in use), or read "
        "label images segmented earlier, and compare with the labels: mIoU, IoU and Dice "
        "(per class with several), MAE, S-measure, E-measure and weighted F; with instances, "
        "the DSB score (mSA), F1, precision, recall and panoptic quality.",
        epilog=_EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE", help="a trained checkpoint")
    source.add_argument(
        "--preset", help="an untrained preset: the zero-shot baseline (no fine-tuned adapters)"
    )
    source.add_argument(
        "--predictions",
        metavar="DIR",
        help="label images to score instead of running a model (e.g. `segment` output; "
        "paired with --labels by name, see --prediction-suffix)",
    )
    add_data_arguments(parser, images_required=False)
    parser.add_argument(
        "--prediction-suffix",
        default=LABEL_SUFFIX,
        metavar="SUFFIX",
        help=f"end of prediction file names (default {LABEL_SUFFIX}, as segment writes them)",
    )
    parser.add_argument(
        "--instances",
        choices=INSTANCE_METHODS,
        default=None,
        help="score objects too: split each class's predicted mask with this method "
        "(with --predictions: split the predicted class masks instead of taking their ids)",
    )
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
    class_map = class_map_from_args(args)
    if args.predictions is None and args.images is None:
        raise UsageError("--images is required with --checkpoint or --preset")
    steps, report, skipped = (
        _score_predictions(args, class_map)
        if args.predictions is not None
        else _score_model(args, class_map)
    )
    from tqdm import tqdm

    bar = None
    try:
        while True:
            try:
                event = next(steps)
            except StopIteration as stop:
                metrics = stop.value
                break
            if bar is None:
                bar = tqdm(total=event.total, unit="image", dynamic_ncols=True, file=sys.stderr)
            bar.update(1)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("interrupted: no metrics written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if bar is not None:
        bar.close()
    for line in describe_metrics(metrics, args.mode if args.predictions is None else None):
        print(line)
    if args.json:
        _write_json(args, report, metrics, skipped)
    print_skipped(skipped)
    return EXIT_OK


def _score_model(args: argparse.Namespace, class_map):
    from ..evaluation.instances import true_objects
    from ..evaluation.scoring import InstanceScoring, iter_evaluation
    from ..inference.instances import InstanceConfig, split_instances
    from ..model.checkpoint import load_model
    from ..model.factory import build_model
    from ..model.runtime import resolve_device, resolve_precision
    from ..training.inputs import PreparedCache

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
    prepared = PreparedCache(dataset, model.config, max_bytes=0, windows=False)
    instances = None
    if args.instances is not None:
        config = InstanceConfig(args.instances)

        def truth(index: int):
            labels = dataset.labels_of(index)
            name = dataset.items[index][2]
            return true_objects(labels, class_map.mask(labels, name), class_map.is_single_class)

        instances = InstanceScoring(lambda mask: split_instances(mask, config), truth)
    steps = iter_evaluation(model, prepared, args.mode, dtype=dtype, instances=instances, rows=True)
    report = {
        "checkpoint": args.checkpoint,
        "preset": model.config.name,
        "adapters": model.adapter_state,
        "base_weights": model.base.to_dict(),
        "mode": args.mode,
        "images": str(args.images),
    }
    return steps, report, skipped


def _score_predictions(args: argparse.Namespace, class_map):
    from ..data.folders import match_by_stem
    from ..evaluation.label_images import iter_label_image_scores
    from ..inference.instances import InstanceConfig, split_instances

    try:
        pairs = match_by_stem(
            args.labels,
            args.predictions,
            image_suffix=args.label_suffix,
            label_suffix=args.prediction_suffix,
        )
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    skipped = [(path.name, "no partner with the same name") for path in pairs.unmatched]
    split = None
    if args.instances is not None:
        config = InstanceConfig(args.instances)

        def split(mask):
            return split_instances(mask, config)

    steps = iter_label_image_scores(list(pairs), class_map, split, skipped)
    report = {"predictions": str(args.predictions), "instances_from": args.instances or "ids"}
    return steps, report, skipped


def describe_metrics(metrics: dict, mode: str | None) -> list[str]:
    """The summary printed on screen: pixel scores, per class, and instance scores."""
    what = f", {mode} mode" if mode else ""
    lines = [f"{metrics['n_samples']} sample(s){what}"]
    lines += [
        f"  {key:<28} {format_number(value)}"
        for key, value in metrics.items()
        if key not in ("n_samples", "rows", "instances") and not isinstance(value, dict)
    ]
    objects = metrics.get("instances")
    if objects:
        lines.append("instances (one-to-one matching at IoU > 0.5, 0.55, ..., 0.95):")
        lines.append(_instance_line("all", objects["overall"]))
        for name, summary in objects.get("per_class", {}).items():
            lines.append(_instance_line(name, summary))
    return lines


def _instance_line(name: str, summary: dict) -> str:
    return (
        f"  {name:<12} DSB score (mSA) {summary['dsb_score']:.4f}  F1@0.5 "
        f"{summary['f1@0.5']:.4f}  precision@0.5 {summary['precision@0.5']:.4f}  recall@0.5 "
        f"{summary['recall@0.5']:.4f}  PQ@0.5 {summary['pq@0.5']:.4f}  "
        f"({summary['n_pred']} predicted / {summary['n_true']} true objects)"
    )


def _write_json(args, report: dict, metrics: dict, skipped) -> None:
    import json

    from .._atomic import atomic_write

    document = {
        **report,
        "labels": str(args.labels),
        "class_map": class_map_from_args(args).to_config(),
        "metrics": {k: v for k, v in metrics.items() if k not in ("rows", "instances")},
        "per_image": metrics.get("rows", []),
        "instances": metrics.get("instances"),
        "skipped": [{"file": name, "reason": reason} for name, reason in skipped],
    }
    text = json.dumps(document, indent=2)
    atomic_write(Path(args.json), lambda temp: temp.write_text(text))
    print(f"wrote {args.json}")
