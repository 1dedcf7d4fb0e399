"""Headless entry point: `clip-guided-sam {train,segment,evaluate,params,weights}`.

Every subcommand is a small function over the compute packages; long jobs run the same
generators the napari widgets run, with a text progress bar. Exit codes: 0 success,
1 the job failed (bad data, missing weights…), 2 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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


# --------------------------------------------------------------------------- segment
_SEGMENT_EPILOG = """\
examples:
  clip-guided-sam segment cells.tif -c nucleus
      one image or stack -> segmented/cells_labels.tif next to it, plus a report
  clip-guided-sam segment images/ -c nucleus mitochondrion -o labels/ --checkpoint ft.safetensors
      every image in a folder; a second run skips finished files (--overwrite redoes them)
  clip-guided-sam segment nuclei.png -c nucleus --points clicks.csv --instances watershed
      steer with clicks (CSV columns x,y[,label][,slice][,file], or a napari Points export)
      and give every nucleus its own id

Outputs are label TIFFs (0 = background, k = the k-th class name; with --instances one id per
object) with the input's axes and pixel size, written only when complete. The report
(segment_report.csv/.json in the output folder) lists every file as done, skipped, failed or
unsupported, with the reason.

exit codes: 0 every file done or skipped, 1 some file failed (see the report) or the job
could not start, 2 bad command line, 130 interrupted (finished outputs are kept).
"""


def _add_segment(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment images, stacks or folders by class name; writes label TIFFs",
        description="Segment an image, a Z/T stack (read slice by slice, any size) or every\n"
        "image of a folder with CLIP-Guided SAM, by class name.",
        epilog=_SEGMENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="an image/stack file or a folder of images")
    parser.add_argument(
        "-c",
        "--classes",
        nargs="+",
        default=[],
        metavar="NAME",
        help="class names, e.g. -c nucleus 'cell membrane' (default: the classes the "
        "checkpoint was trained on)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FOLDER",
        help="output folder (default: a 'segmented' folder inside the input's folder)",
    )
    parser.add_argument("--checkpoint", default=None, help="fine-tuned checkpoint (.safetensors)")
    parser.add_argument(
        "--preset",
        default=None,
        help="model preset (default: the checkpoint's, else paper); 'tiny' needs no weights",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="mask probability above which a pixel is labelled (default 0.5)",
    )
    parser.add_argument("--points", default=None, metavar="CSV", help="clicks to steer the model")
    parser.add_argument(
        "--instances",
        choices=("connected", "watershed"),
        default=None,
        help="one id per object: connected components, or a watershed that also splits "
        "touching objects (nuclei)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=None,
        metavar="INDEX",
        help="1-3 channel indices to use as RGB (needed for more than 3 channels)",
    )
    parser.add_argument(
        "--normalize",
        choices=("slice", "stack"),
        default="slice",
        help="intensity percentiles per slice (default) or once per stack",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=("auto", "tif", "ome.tif"),
        default="auto",
        help="output format (default: OME-TIFF for OME-TIFF input, else TIFF)",
    )
    parser.add_argument("--suffix", default="_labels", help="added to output names")
    parser.add_argument("--overwrite", action="store_true", help="redo files already done")
    parser.add_argument(
        "--allow-same-folder",
        action="store_true",
        help="allow the output folder to be the input folder",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_segment)


def _run_segment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from .data.normalize import NormalizeConfig
    from .inference import batch
    from .inference.instances import InstanceConfig
    from .inference.predictor import Predictor
    from .model.checkpoint import read_checkpoint

    source = Path(args.input)
    if not source.exists():
        raise CommandError(f"input not found: {source}")
    folder = source if source.is_dir() else source.parent
    output = Path(args.output) if args.output else folder / "segmented"
    options = batch.SegmentOptions(
        class_names=tuple(args.classes),
        threshold=args.threshold,
        instances=InstanceConfig(args.instances) if args.instances else None,
        normalize=NormalizeConfig(
            mode=args.normalize, channels=tuple(args.channels) if args.channels else None
        ),
        points=batch.read_points_csv(args.points) if args.points else None,
        output_format=args.output_format,
        suffix=args.suffix,
        overwrite=args.overwrite,
    )
    preset = args.preset
    if preset is None:
        preset = read_checkpoint(args.checkpoint).config.name if args.checkpoint else "paper"
    predictor = Predictor.from_preset(preset, args.checkpoint, args.device, args.precision)
    settings = {"preset": preset, "checkpoint": args.checkpoint, "device": str(predictor.device)}
    events = batch.segment_batch(
        predictor,
        source,
        output,
        options,
        allow_same_folder=args.allow_same_folder,
        settings=settings,
    )
    bar, finished = None, None
    try:
        for event in events:
            if isinstance(event, batch.FileStarted):
                if bar is not None:
                    bar.close()
                bar = tqdm(
                    total=event.n_slices,
                    unit="slice",
                    disable=args.no_progress,
                    desc=f"[{event.file_index + 1}/{event.n_files}] {Path(event.path).name}",
                )
            elif isinstance(event, batch.SliceDone) and bar is not None:
                bar.update(1)
            elif isinstance(event, batch.FileSkipped):
                tqdm.write(f"skipped {event.path.name}: {event.reason}")
            elif isinstance(event, batch.FileFailed):
                tqdm.write(f"FAILED {event.path.name}: {event.reason}", file=sys.stderr)
            elif isinstance(event, batch.BatchFinished):
                finished = event
    finally:
        if bar is not None:
            bar.close()
        events.close()
    print(
        f"{finished.n_done} done, {finished.n_skipped} skipped, {finished.n_failed} failed; "
        f"report: {finished.report_path.with_suffix('.csv')}"
    )
    if finished.stopped:
        print(f"error: stopped early: {finished.stopped}", file=sys.stderr)
    return EXIT_FAILED if finished.n_failed or finished.stopped else EXIT_OK


# --------------------------------------------------------------------------- train
_TRAIN_EPILOG = """\
examples:
  # one class, instance or binary labels (every nonzero label value is a nucleus)
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --output run1/
  # several classes: label value = class
  clip-guided-sam train --images imgs/ --labels labels/ --class-map 1=nucleus,2=cell \\
      --output run2/ --epochs 20
  # quick CPU try without pretrained weights (random base weights, small model)
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --preset tiny \\
      --output tiny_run/ --time-budget 300
  # continue an interrupted run (same folder; the saved settings are reused)
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --output run1/ --resume

Images and labels are paired by file name (a.tif <-> a.tif, or a.png <-> a_labels.tif with
--label-suffix _labels); labels are integer images of the same height and width, 0 being
background. Unreadable or mismatched pairs are skipped with a warning and listed at the end.
The output folder receives best.safetensors (highest validation mIoU), last.safetensors and
last.state.safetensors (what --resume needs). Use the checkpoint with `clip-guided-sam
segment`. Exit codes: 0 done, 1 failed (bad data, unwritable output, missing weights),
2 bad command line or output exists, 130 interrupted (Ctrl-C; the last checkpoint is kept).
"""


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--images/--labels/--class/--class-map/--label-suffix, shared by train and evaluate."""
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images")
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
        metavar="V=NAME,...",
        help="label value to class name, e.g. 1=nucleus,2=cell (other values are an error)",
    )
    parser.add_argument(
        "--label-suffix",
        default="",
        metavar="SUFFIX",
        help="end of label file names, e.g. _labels for a.png <-> a_labels.tif",
    )


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, mps or cpu"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 where supported), fp32, bf16 or fp16 (GPU only)",
    )


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the adapters on a folder of images and labels",
        description="Fine-tune CLIP-Guided SAM (adapters, mask decoder, prompt encoder, CLIP "
        "attention) on labelled images, validating on a held-out fraction after every epoch.",
        epilog=_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_arguments(parser)
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for checkpoints (created)"
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="model preset: paper (default; needs the official SAM and CLIP weights), "
        "reference, tiny (random weights, for CPU tries), paper_vit_l, ...",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="passes over the data in total (10)"
    )
    parser.add_argument(
        "--mode",
        choices=["text", "manual"],
        default=None,
        help="text (default): train with prompt points sampled from CLIP's similarity map, "
        "as used when segmenting by class name; manual: points from the ground truth",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="fraction of images held out for validation (0.2)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (0)")
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate of adapters and decoder (preset default: 5e-5; tiny 1e-3)",
    )
    parser.add_argument(
        "--clip-lr",
        type=float,
        default=None,
        help="learning rate of CLIP's attention (preset default: 1e-7; tiny 1e-4)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (1)")
    parser.add_argument(
        "--grad-accumulation", type=int, default=None, help="batches per optimiser step (1)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this much training time (a checkpoint is written)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="also save the last checkpoint every N steps (besides every epoch end)",
    )
    parser.add_argument("--no-augment", action="store_true", help="no random flips/rotations")
    _add_runtime_arguments(parser)
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    again.add_argument(
        "--overwrite", action="store_true", help="start afresh, replacing checkpoints in --output"
    )
    parser.set_defaults(run=_run_train)


def _class_map(args: argparse.Namespace):
    from .data.datasets import ClassMap

    if args.class_name is not None:
        return ClassMap.single_class(args.class_name)
    mapping = {}
    for entry in args.class_map.split(","):
        value, sep, name = entry.partition("=")
        if not sep or not value.strip() or not name.strip():
            raise CommandError(
                f"--class-map entry {entry!r} is not VALUE=NAME (e.g. 1=nucleus,2=cell)."
            )
        try:
            mapping[int(value)] = name.strip()
        except ValueError:
            raise CommandError(f"--class-map: label value {value!r} is not an integer.") from None
    return ClassMap.from_dict(mapping)


def _load_folders(args: argparse.Namespace, class_map):
    """The dataset and the (file, reason) pairs skipped, warnings printed as they come."""
    import warnings

    from .data.datasets import SliceDataset

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


def _print_skipped(skipped) -> None:
    if skipped:
        print(f"{len(skipped)} file(s) skipped:", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason}", file=sys.stderr)


def _train_settings(args: argparse.Namespace, saved: dict | None) -> dict:
    """Settings from the command line, else the resumed run's, else the defaults."""
    from .training.engine import TrainingConfig, default_learning_rates

    saved_training = (saved or {}).get("training_config", {})
    defaults = TrainingConfig()
    preset = args.preset or (saved or {}).get("model_config", {}).get("name") or "paper"
    lr, clip_lr = default_learning_rates(preset)
    chosen = {"lr": lr, "clip_lr": clip_lr}
    for key in (
        "epochs",
        "mode",
        "val_fraction",
        "seed",
        "lr",
        "clip_lr",
        "batch_size",
        "grad_accumulation",
    ):
        given = getattr(args, key)
        fallback = saved_training.get(key, chosen.get(key, getattr(defaults, key)))
        chosen[key] = given if given is not None else fallback
    chosen["augment"] = saved_training.get("augment", True) if args.resume else not args.no_augment
    chosen["preset"] = preset
    return chosen


def _run_train(args: argparse.Namespace) -> int:
    from .model.checkpoint import same_architecture
    from .model.config import ModelConfig, get_preset
    from .model.factory import build_model
    from .training.engine import TrainingConfig, train
    from .training.inputs import split_dataset
    from .training.state import load_state, resolve_resume_path

    try:
        class_map = _class_map(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    output = Path(args.output)
    last = output / TrainingConfig.last_name
    saved = None
    if args.resume:
        saved = load_state(resolve_resume_path(output, TrainingConfig.last_name)).info
    elif (last.exists() or (output / TrainingConfig.best_name).exists()) and not args.overwrite:
        print(
            f"error: {output} already holds checkpoints of a run; add --resume to continue "
            "it, --overwrite to start afresh, or choose another --output.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    settings = _train_settings(args, saved)
    if saved is not None:
        model_config = ModelConfig.from_dict(saved["model_config"])
        if args.preset and not same_architecture(model_config, get_preset(args.preset)):
            raise CommandError(
                f"--preset {args.preset} differs from the resumed run's preset "
                f"{model_config.name!r}; leave --preset out to resume."
            )
    else:
        model_config = get_preset(settings["preset"])
    config = TrainingConfig(
        epochs=settings["epochs"],
        lr=settings["lr"],
        clip_lr=settings["clip_lr"],
        batch_size=settings["batch_size"],
        grad_accumulation=settings["grad_accumulation"],
        mode=settings["mode"],
        val_fraction=settings["val_fraction"],
        seed=settings["seed"],
        device=args.device,
        precision=args.precision,
        output_dir=str(output),
        augment=settings["augment"],
        max_steps=args.max_steps,
        time_budget_s=args.time_budget,
        checkpoint_every=args.checkpoint_every,
    )
    # The model first: missing base weights should fail before a long folder scan.
    random_base = saved is not None and saved["base_weights"].startswith("random:")
    base = {"base_weights": "random", "seed": int(saved["base_weights"][7:])} if random_base else {}
    model = build_model(model_config, **base)
    dataset, skipped = _load_folders(args, class_map)
    train_data, val_data = split_dataset(dataset, config.val_fraction, config.seed)
    print(
        f"{dataset.n_pairs} image/label pair(s), {len(dataset)} sample(s): "
        f"{len(train_data)} for training, {len(val_data)} for validation; "
        f"classes {', '.join(dataset.class_names)}"
    )
    print(
        f"preset {model_config.name}, {config.mode} mode, lr {config.lr:g}, "
        f"CLIP lr {config.clip_lr:g}, {config.epochs} epoch(s) -> {output}"
    )
    events = train(
        model,
        train_data,
        val_data if len(val_data) else None,
        config,
        resume_from=output if args.resume else None,
    )
    return _consume_training(events, args, skipped)


def _consume_training(events, args: argparse.Namespace, skipped) -> int:
    from tqdm import tqdm

    from .training.engine import CheckpointEvent, EpochEvent, FinishedEvent, StepEvent

    bar = None
    last_checkpoint = None
    result = None
    try:
        for event in events:
            if isinstance(event, StepEvent):
                if bar is None:  # resumed runs start part-way
                    bar = tqdm(
                        total=event.total_steps, initial=event.step - 1, unit="step",
                        dynamic_ncols=True, file=sys.stderr,
                    )  # fmt: skip
                bar.update(1)
                bar.set_postfix(epoch=event.epoch, loss=f"{event.loss:.4f}", refresh=False)
            elif isinstance(event, EpochEvent):
                tqdm.write(_describe_epoch(event))
            elif isinstance(event, CheckpointEvent):
                last_checkpoint = event if event.kind == "last" else last_checkpoint
            elif isinstance(event, FinishedEvent):
                result = event.result
    except KeyboardInterrupt:
        events.close()
        if bar is not None:
            bar.close()
        where = (
            f"the last checkpoint {last_checkpoint.path} (step {last_checkpoint.step}) is intact"
            if last_checkpoint is not None
            else "no checkpoint of this session was written yet"
        )
        print(
            f"interrupted: {where}. Resume with the same command plus --resume.",
            file=sys.stderr,
        )
        _print_skipped(skipped)
        return EXIT_INTERRUPTED
    if bar is not None:
        bar.close()
    _print_training_summary(result)
    _print_skipped(skipped)
    return EXIT_OK


def _describe_epoch(event) -> str:
    text = f"epoch {event.epoch}{'' if event.complete else ' (partial)'}: "
    text += "train loss " + ("-" if event.train_loss is None else f"{event.train_loss:.4f}")
    metrics = event.val_metrics
    if metrics:
        text += f", validation mIoU {_number(metrics.get('miou'))}, "
        text += f"foreground IoU {_number(metrics.get('fg_iou'))}"
    return text


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _print_training_summary(result) -> None:
    reason = {
        "completed": "all epochs done",
        "max_steps": "step limit reached",
        "time_budget": "time budget used",
    }[result.stopped]
    print(
        f"finished ({reason}): {result.steps} steps, {result.epochs_completed} complete "
        f"epoch(s), {result.elapsed_s:.0f} s"
    )
    if result.best_path is not None:
        print(f"best checkpoint: {result.best_path} (validation mIoU {result.best_metric:.4f})")
    print(f"last checkpoint: {result.last_path}")
    use = result.best_path or result.last_path
    print(f"segment with it: clip-guided-sam segment IMAGES --checkpoint {use} -o OUTPUT")


# --------------------------------------------------------------------------- evaluate
def _add_evaluate(subparsers) -> None:
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
    source.add_argument("--preset", help="an untrained preset (base weights only)")
    _add_data_arguments(parser)
    parser.add_argument(
        "--mode",
        choices=["text", "manual"],
        default="text",
        help="text (default): prompts from the class name only; manual: plus 5 points "
        "drawn from the ground truth (an upper bound for clicking)",
    )
    _add_runtime_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the metrics to this file")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from .model.checkpoint import atomic_write, load_model
    from .model.factory import build_model
    from .model.runtime import resolve_device, resolve_precision
    from .training.validation import iter_evaluation

    try:
        class_map = _class_map(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    if args.checkpoint is not None:
        model, _ = load_model(args.checkpoint)
    else:
        model = build_model(args.preset)
    model.to(device)
    dataset, skipped = _load_folders(args, class_map)
    steps = iter_evaluation(model, dataset, args.mode, dtype=dtype)
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
            print(f"  {key:<28} {_number(value)}")
    if args.json:
        report = {
            "checkpoint": args.checkpoint,
            "preset": model.config.name,
            "mode": args.mode,
            "images": str(args.images),
            "labels": str(args.labels),
            "metrics": metrics,
            "skipped": [{"file": name, "reason": reason} for name, reason in skipped],
        }
        text = json.dumps(report, indent=2)
        atomic_write(Path(args.json), lambda temp: temp.write_text(text))
        print(f"wrote {args.json}")
    _print_skipped(skipped)
    return EXIT_OK


# --------------------------------------------------------------------------- main
SUBCOMMANDS: list[Callable] = [_add_params, _add_weights, _add_segment, _add_train, _add_evaluate]


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
