"""`clip-guided-sam info`: versions, the device, and what `auto` precision chose and why."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show versions, the compute device and the automatic precision choice",
        description="Print the package and torch versions, the device `auto` picks, CPU "
        "threads, and which precision `--precision auto` uses on it with the measured "
        "matrix-multiply rates behind the choice.",
    )
    parser.add_argument("--device", default="auto", help="device to report (default: auto)")
    parser.add_argument(
        "--reprobe",
        action="store_true",
        help="measure the precisions again instead of reading the cached result",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__
    from ..model.precision_probe import cache_path, probe_precision
    from ..model.runtime import resolve_device
    from ..model.threads import other_runnable_threads, usable_cpus

    device = resolve_device(args.device)
    choice = probe_precision(device, force=args.reprobe)
    print(f"napari-clip-guided-sam {__version__}, torch {torch.__version__}")
    print(f"device: {device}  ({choice.machine.split(' | ')[0]})")
    if device.type == "cpu":
        busy = other_runnable_threads()
        print(
            f"CPU threads: {torch.get_num_threads()} intra-op, {usable_cpus()} usable CPUs"
            + ("" if busy is None else f", {busy} other threads runnable now")
        )
    source = f"cached {choice.measured_at}" if choice.cached else "measured now"
    print(f"precision auto -> {choice.precision}  ({source})")
    print(f"  why: {choice.reason}")
    if choice.gflops:
        print(f"  probe cache: {cache_path()}  (--reprobe measures again)")
    return EXIT_OK
