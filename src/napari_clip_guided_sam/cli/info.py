"""`clip-guided-sam info [MODEL] [--system]`: a checkpoint's model card; versions, the device
and what `auto` precision chose and why."""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_OK


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print a checkpoint's model card, or this machine's device and precision choice",
        description="With MODEL: print what a fine-tuned checkpoint is: preset, the base "
        "weights it needs (names and sha256), adapter initialisation, classes, training data "
        "and settings, validation scores per class, version and date. Without MODEL (or with "
        "--system): the package and torch versions, the device `auto` picks, CPU threads, and "
        "which precision `--precision auto` uses there, with the measured matrix-multiply "
        "rates behind the choice.",
    )
    parser.add_argument(
        "checkpoint", nargs="?", metavar="MODEL", help="a checkpoint (.safetensors)"
    )
    parser.add_argument("--json", action="store_true", help="print the model card as JSON")
    parser.add_argument(
        "--system", action="store_true", help="also print the device and precision report"
    )
    parser.add_argument("--device", default="auto", help="device to report (default: auto)")
    parser.add_argument(
        "--reprobe",
        action="store_true",
        help="measure the precisions again instead of reading the cached result",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        print_model_card(args.checkpoint, args.json)
    if args.checkpoint is None or args.system:
        print_system(args.device, args.reprobe)
    return EXIT_OK


def print_model_card(path: str, as_json: bool = False) -> None:
    from dataclasses import asdict

    from ..model.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    card = checkpoint.card
    if as_json:
        print(json.dumps(None if card is None else asdict(card), indent=2, sort_keys=True))
        return
    print(path)
    if card is not None:
        print(card.format())
        return
    print("no model card (written by an older version); from its header:")
    print(f"preset:          {checkpoint.config.name}")
    print(f"classes:         {', '.join(checkpoint.class_names) or '(none)'}")
    for line in checkpoint.base.describe():
        print(f"base weights:    {line}")
    for key, value in checkpoint.metadata.items():
        print(f"{key + ':':<16} {value}")


def print_system(device_name: str, reprobe: bool) -> None:
    import torch

    from .. import __version__
    from ..model.precision_probe import cache_path, probe_precision
    from ..model.runtime import resolve_device
    from ..model.threads import (
        THREADS_ENV,
        other_runnable_threads,
        thread_override,
        threads_for_work,
        usable_cpus,
    )

    device = resolve_device(device_name)
    choice = probe_precision(device, force=reprobe)
    print(f"napari-clip-guided-sam {__version__}, torch {torch.__version__}")
    print(f"device: {device}  ({choice.machine.split(' | ')[0]})")
    if device.type == "cpu":
        busy = other_runnable_threads()
        print(
            f"CPU threads: {threads_for_work()} for a unit of work now (torch "
            f"{torch.get_num_threads()} intra-op, {usable_cpus()} usable CPUs"
            + ("" if busy is None else f", {busy} other threads runnable")
            + ")"
        )
        if thread_override() is not None:
            print(f"  fixed by {THREADS_ENV}; unset it to follow the CPUs that are free")
        else:
            print(f"  follows the CPUs other processes leave free; {THREADS_ENV}=N fixes it")
    source = f"cached {choice.measured_at}" if choice.cached else "measured now"
    print(f"precision auto -> {choice.precision}  ({source})")
    print(f"  why: {choice.reason}")
    if choice.gflops:
        print(f"  probe cache: {cache_path()}  (--reprobe measures again)")
