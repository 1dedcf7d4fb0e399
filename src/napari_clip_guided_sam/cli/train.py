"""`clip-guided-sam train`: fine-tune on a folder of images and labels."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ..evaluation.modes import PROMPT_MODES
from ..model.config import ADAPTER_INITS, adapted_blocks
from ..training.recipe import AUGMENTATIONS, SCHEDULES, augmentation_settings
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_architecture_arguments,
    add_base_weights_arguments,
    add_data_arguments,
    add_runtime_arguments,
    architecture_choices,
    class_map_from_args,
    custom_base_lines,
    format_number,
    load_folders,
    print_skipped,
)

_TRAIN_EPILOG = """\
examples:
  # one class, instance or binary labels (every nonzero label value is a nucleus)
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --output run1/
  # several classes: label value = class
  clip-guided-sam train --images imgs/ --labels labels/ --class-map 1=nucleus,2=cell \\
      --output run2/ --epochs 20
  # fully labelled maps (label 0 is a class too), 255 = unannotated
  clip-guided-sam train --images imgs/ --labels labels/ --background none \\
      --class-map 0=pore,1=clay,2=quartz,3=pyrite --ignore-index 255 --output run3/
  # train a small model from scratch on a CPU in 15 minutes (random base weights)
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --preset tiny_448 \\
      --output tiny_run/ --time-budget 900
  # 4 GPUs (DistributedDataParallel; batch 2 on each = one batch of 8; docs/scaling.md)
  torchrun --standalone --nproc_per_node 4 -m napari_clip_guided_sam.cli train \\
      --images imgs/ --labels labels/ --class nucleus --output run4/ --batch-size 2
  # continue an interrupted run (same folder; the saved settings are reused)
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --output run1/ --resume
  # CPU-friendly fine-tuning of the paper architecture (512 px, adapters in the last blocks,
  # frozen prefix computed once per image); --estimate measures time and memory first
  clip-guided-sam train --images imgs/ --labels labels/ --class nucleus --preset paper_cpu \
      --output cpu_run/ --estimate

Images and labels are paired by file name (a.tif <-> a.tif, or a.png <-> a_labels.tif with
--label-suffix _labels); labels are integer images of the same height and width, 0 being
background unless --background none. Unreadable or mismatched pairs are skipped with a
warning and listed at the end.
The output folder receives best.safetensors (highest validation mIoU), last.safetensors and
last.state.safetensors (what --resume needs). Use the checkpoint with `clip-guided-sam
segment`. Exit codes: 0 done, 1 failed (bad data, unwritable output, missing weights),
2 bad command line or output exists, 130 interrupted (Ctrl-C; the last checkpoint is kept).
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the adapters on a folder of images and labels",
        description="Fine-tune CLIP-Guided SAM (adapters, mask decoder, prompt encoder, CLIP "
        "attention) on labelled images, validating on a held-out fraction after every epoch.",
        epilog=_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for checkpoints (created)"
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="model preset: paper (default; needs the official SAM and CLIP weights), "
        "reference, tiny (random weights, for CPU tries), tiny_448 (tiny at 448 px: to train "
        "from scratch on a CPU), paper_cpu, paper_vit_l, ...",
    )
    add_base_weights_arguments(parser)
    parser.add_argument(
        "--adapter-init",
        choices=ADAPTER_INITS,
        default=None,
        help="how the adapters start: identity (the untrained model is exactly the zero-shot "
        "baseline) or released (the authors' initialisation); default: the preset's",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the data in total (preset default: 10; tiny, tiny_448: 30); with "
        "--time-budget and no --epochs, as many as the budget allows",
    )
    parser.add_argument(
        "--mode",
        choices=PROMPT_MODES,
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
        help="learning rate of adapters and decoder (preset default: 5e-5; tiny, tiny_448: 1e-3)",
    )
    parser.add_argument(
        "--clip-lr",
        type=float,
        default=None,
        help="learning rate of CLIP's attention (preset default: 1e-7; tiny, tiny_448: 1e-4)",
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
    parser.add_argument(
        "--augment",
        default=None,
        metavar="LIST",
        help="random changes of the training images, comma-separated from "
        f"{','.join(AUGMENTATIONS)}, or none (default: flips)",
    )
    parser.add_argument("--no-augment", action="store_true", help="same as --augment none")
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help="learning rate over the run: constant, or cosine (a short warm-up, then a cosine "
        "decay to 0 at the last planned step or at the end of --time-budget); preset default: "
        "constant, tiny and tiny_448 cosine",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        metavar="FRACTION",
        help="fraction of the run spent warming up with --schedule cosine (0.03)",
    )
    parser.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw training examples balanced over classes and foreground sizes (few or small "
        "objects come up more often); default: off",
    )
    add_architecture_arguments(parser)
    _add_compute_arguments(parser)
    add_runtime_arguments(parser)
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    again.add_argument(
        "--overwrite", action="store_true", help="start afresh, replacing checkpoints in --output"
    )
    parser.set_defaults(run=run)


# The option of each TrainingConfig field set on the command line, for messages.
_OPTIONS = {
    "epochs": "--epochs",
    "val_fraction": "--val-fraction",
    "seed": "--seed",
    "lr": "--lr",
    "clip_lr": "--clip-lr",
    "batch_size": "--batch-size",
    "grad_accumulation": "--grad-accumulation",
    "max_steps": "--max-steps",
    "time_budget_s": "--time-budget",
    "checkpoint_every": "--checkpoint-every",
    "warmup": "--warmup",
    "schedule": "--schedule",
    "activation_checkpointing": "--checkpointing",
    "prefix_cache_mb": "--prefix-cache-mb",
    "prefix_cache_disk_mb": "--prefix-cache-disk-mb",
    "augment_variants": "--augment-variants",
}


def _add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """How the run computes (training.compute): none of these changes the results."""
    from ..model.runtime import CHECKPOINTING_CHOICES

    parser.add_argument(
        "--checkpointing",
        choices=CHECKPOINTING_CHOICES,
        default=None,
        help="recompute the trained encoder blocks in the backward pass instead of keeping "
        "their activations: less memory, more time (auto, the default: on the CPU when they "
        "would keep more than 2 GiB)",
    )
    parser.add_argument(
        "--prefix-cache-mb",
        type=int,
        default=None,
        metavar="MB",
        help="memory for the frozen blocks' output per image, when adapters sit in the last "
        "blocks only (2048; 0 with --prefix-cache-disk-mb 0: no cache)",
    )
    parser.add_argument(
        "--prefix-cache-disk-mb",
        type=int,
        default=None,
        metavar="MB",
        help="temporary disk space for what does not fit in memory (8192; removed after the run)",
    )
    parser.add_argument(
        "--augment-variants",
        type=int,
        default=None,
        metavar="K",
        help="each image cycles through K fixed draws of the --augment changes, so its "
        "frozen blocks are computed K times in the whole run (default: 2 when adapters sit in "
        "the last blocks only; 0: a fresh draw at every visit)",
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="measure a few steps of this run on synthetic images and print the expected "
        "time and peak memory, then stop (no base weights needed)",
    )


def _chosen_settings(args: argparse.Namespace) -> dict:
    """The TrainingConfig fields given on the command line (None: not given)."""
    return {
        "epochs": args.epochs,
        "mode": args.mode,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "lr": args.lr,
        "clip_lr": args.clip_lr,
        "batch_size": args.batch_size,
        "grad_accumulation": args.grad_accumulation,
        **_augment_settings(args),
        "schedule": args.schedule,
        "warmup": args.warmup,
        "balance": args.balance,
        "device": args.device,
        "precision": args.precision,
        "max_steps": args.max_steps,
        "time_budget_s": args.time_budget,
        "checkpoint_every": args.checkpoint_every,
        "activation_checkpointing": args.checkpointing,
        "prefix_cache_mb": args.prefix_cache_mb,
        "prefix_cache_disk_mb": args.prefix_cache_disk_mb,
        "augment_variants": args.augment_variants,
    }


def _augment_settings(args: argparse.Namespace) -> dict:
    """--augment LIST (or --no-augment) as TrainingConfig fields; {} when not given."""
    text = "none" if args.no_augment else args.augment
    if text is None:
        return {}
    names = {name.strip() for name in text.split(",") if name.strip()}
    if names == {"none"}:
        names = set()
    unknown = names - set(AUGMENTATIONS)
    if unknown:
        raise UsageError(
            f"--augment: unknown {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(AUGMENTATIONS)} or none"
        )
    return augmentation_settings(names)


def run(args: argparse.Namespace) -> int:
    """Train on this process, or, under torchrun, on this process's share of every batch
    (docs/scaling.md): rank 0 prints, shows the progress bar and writes the files."""
    from ..training.distributed import process_group

    with process_group(args.device) as ranks:
        if ranks.is_main:
            return _run(args, ranks)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return _run(args, ranks)


def _run(args: argparse.Namespace, ranks) -> int:
    from ..training.recipe import describe_augmentation
    from ..training.run import ExistingRunError, plan_run
    from ..training.settings import SettingError

    class_map = class_map_from_args(args)
    output = Path(args.output)
    try:
        plan = plan_run(
            output,
            preset=args.preset,
            settings=_chosen_settings(args),
            resume=args.resume,
            overwrite=args.overwrite,
            adapter_init=args.adapter_init,
            sam_weights=args.sam_weights,
            clip_weights=args.clip_weights,
            architecture=architecture_choices(args),
            world_size=ranks.world_size,
        )
    except ExistingRunError:
        raise UsageError(
            f"{output} already holds checkpoints of a run; add --resume to continue "
            "it, --overwrite to start afresh, or choose another --output."
        ) from None
    except SettingError as error:
        raise UsageError(f"{_OPTIONS.get(error.name, error.name)}: {error}") from None
    config = plan.config
    if args.estimate:
        return _print_estimate(plan, args, class_map)
    # The model first: missing base weights should fail before a long folder scan.
    model = plan.build_model()
    dataset, skipped = load_folders(args, class_map)
    train_data, val_data = plan.split(dataset)
    print(
        f"{dataset.n_pairs} image/label pair(s), {len(dataset)} sample(s): "
        f"{len(train_data)} for training, {len(val_data)} for validation; "
        f"classes {', '.join(dataset.class_names)}"
    )
    length = f"{config.epochs} epoch(s)" if config.epochs is not None else "epochs: the time budget"
    if config.time_budget_s is not None:
        length += f", time budget {config.time_budget_s:g} s"
    print(
        f"preset {plan.preset}, adapters start '{plan.model_config.adapters.init}', "
        f"{config.mode} mode, lr {config.lr:g} ({config.schedule}), CLIP lr "
        f"{config.clip_lr:g}, augment {describe_augmentation(config)}, "
        f"{'balanced' if config.balance else 'shuffled'} sampling, {length} -> {output}"
    )
    model_config = plan.model_config
    adapted = adapted_blocks(model_config)
    if len(adapted) < model_config.sam.encoder_depth or model_config.sam.base_image_size:
        print(
            f"SAM at {model_config.sam.image_size} px, adapters in {len(adapted)} of "
            f"{model_config.sam.encoder_depth} encoder blocks, CLIP attention trained in its "
            f"last {model_config.trainable.clip_attention_blocks} blocks"
        )
    for line in custom_base_lines(model):
        print(line)
    note = plan.validation_note(dataset, val_data)
    if note:
        print(note)
    if ranks.distributed:
        print(f"{ranks.world_size} processes of batch {config.batch_size} (torchrun)")
    events = plan.train(model, train_data, val_data, ranks)
    if not ranks.is_main:  # rank 0 shows the progress
        for _ in events:
            pass
        return EXIT_OK
    return _consume_training(events, skipped)


def _print_estimate(plan, args: argparse.Namespace, class_map) -> int:
    from ..training.estimate import iter_estimate

    dataset, skipped = load_folders(args, class_map)
    train_data, val_data = plan.split(dataset)
    print(
        f"estimating preset {plan.preset} at {plan.model_config.sam.image_size} px: "
        f"{len(train_data)} training and {len(val_data)} validation sample(s), "
        + (
            f"{plan.config.epochs} epoch(s)"
            if plan.config.epochs is not None
            else f"as many epochs as fit in {plan.config.time_budget_s:g} s"
        ),
        file=sys.stderr,
    )
    steps = iter_estimate(plan.model_config, plan.config, len(train_data), len(val_data))
    while True:
        try:
            progress = next(steps)
        except StopIteration as stop:
            estimate = stop.value
            break
        print(f"  {progress.phase}", file=sys.stderr, flush=True)
    print(f"estimate: {estimate.summary()}")
    print(
        f"  {estimate.epochs} epoch(s) x {estimate.steps_per_epoch} step(s); frozen prefixes "
        f"computed {estimate.prefix_computations} time(s); validation "
        f"{estimate.seconds_per_validation:.2g} s per sample; activation checkpointing "
        f"{'on' if estimate.checkpointing else 'off'}"
    )
    print_skipped(skipped)
    return EXIT_OK


def _consume_training(events, skipped) -> int:
    from tqdm import tqdm

    from ..training.events import (
        CheckpointEvent,
        EpochEvent,
        FinishedEvent,
        PreparingEvent,
        StepEvent,
    )

    bar = preparing = None
    last_checkpoint = None
    result = None
    try:
        for event in events:
            if isinstance(event, PreparingEvent):
                if preparing is None:
                    preparing = tqdm(
                        total=event.total, desc="preparing slices", unit="slice",
                        dynamic_ncols=True, file=sys.stderr,
                    )  # fmt: skip
                preparing.update(event.done - preparing.n)
            elif isinstance(event, StepEvent):
                if preparing is not None:
                    preparing.close()
                    preparing = None
                if bar is None:  # resumed runs start part-way
                    bar = tqdm(
                        total=event.total_steps, initial=event.step - 1, unit="step",
                        dynamic_ncols=True, file=sys.stderr,
                    )  # fmt: skip
                if bar.total != event.total_steps:  # estimated when a time budget plans the run
                    bar.total = event.total_steps
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
        for open_bar in (preparing, bar):
            if open_bar is not None:
                open_bar.close()
        where = (
            f"the last checkpoint {last_checkpoint.path} (step {last_checkpoint.step}) is intact"
            if last_checkpoint is not None
            else "no checkpoint of this session was written yet"
        )
        print(
            f"interrupted: {where}. Resume with the same command plus --resume.",
            file=sys.stderr,
        )
        print_skipped(skipped)
        return EXIT_INTERRUPTED
    if bar is not None:
        bar.close()
    _print_training_summary(result)
    print_skipped(skipped)
    return EXIT_OK


def _describe_epoch(event) -> str:
    text = f"epoch {event.epoch}{'' if event.complete else ' (partial)'}: "
    text += "train loss " + ("-" if event.train_loss is None else f"{event.train_loss:.4f}")
    metrics = event.val_metrics
    if metrics:
        text += f", validation mIoU {format_number(metrics.get('miou'))}, "
        text += f"foreground IoU {format_number(metrics.get('fg_iou'))}"
        classes = [key.partition("/")[2] for key in metrics if key.startswith("iou/")]
        if classes:  # several classes: each one's IoU and Dice
            text += "; " + ", ".join(
                f"{name} IoU {format_number(metrics.get(f'iou/{name}'))} Dice "
                f"{format_number(metrics.get(f'dice/{name}'))}"
                for name in classes
            )
    return text


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
