"""`clip-guided-sam segment --workers N | --scheduler ADDRESS`: the batch on a dask cluster
(`inference.batch.distributed`; docs/scaling.md)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..data.formats import printable
from ..inference.batch.ranges import DEFAULT_SLICES_PER_TASK
from ._common import UsageError, predictor_from_args


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="segment the files on N worker processes of this machine (a dask LocalCluster; "
        "each loads the model once)",
    )
    cluster.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="segment the files on the workers of a running dask cluster, e.g. "
        "tcp://10.0.0.5:8786 (SLURM/PBS with dask-jobqueue, Kubernetes; docs/scaling.md)",
    )
    parser.add_argument(
        "--slices-per-task",
        type=int,
        default=None,
        metavar="N",
        help="with --workers/--scheduler: split a stack of more than N slices into tasks "
        f"of N slices (default {DEFAULT_SLICES_PER_TASK}; 0: one task per file). A stack "
        "whose instances are linked across slices stays one task",
    )


def check_cluster_arguments(args: argparse.Namespace) -> None:
    """Refuse cluster options without a cluster."""
    if args.slices_per_task is not None and not (args.workers or args.scheduler):
        raise UsageError(
            "--slices-per-task splits stacks on a cluster: add --workers or --scheduler"
        )
    if args.slices_per_task is not None and args.slices_per_task < 0:
        raise UsageError("--slices-per-task: give 0 (no split) or more")


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[tuple[object, int | None]]:
    """A dask client, and the torch threads each worker gets (None: the cluster's own)."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler) as client:
            yield client, None
        return
    if args.workers < 1:
        raise UsageError("--workers: give at least 1 worker")
    # One file at a time per worker; the machine's cores shared out among the workers.
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        yield client, threads


def _slices_per_task(args: argparse.Namespace) -> int | None:
    if args.slices_per_task is None:
        return DEFAULT_SLICES_PER_TASK
    return args.slices_per_task or None  # 0: never split


def run_on_cluster(
    args: argparse.Namespace,
    source: Path,
    output: Path,
    options,
    preset: str,
    report_outcome: Callable[[object], int],
) -> int:
    from tqdm import tqdm

    from ..inference import batch
    from ..inference.batch.distributed import segment_batch_on_cluster

    # Each worker builds the predictor as `segment` does here (the namespace pickles).
    load = functools.partial(predictor_from_args, args, preset)
    with _client(args) as (client, threads):
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        print(f"dask cluster: {workers} worker(s); dashboard: {client.dashboard_link}")
        settings = {"preset": preset, "checkpoint": args.checkpoint}  # the device: a worker's
        events = segment_batch_on_cluster(
            client,
            load,
            source,
            output,
            options,
            allow_same_folder=args.allow_same_folder,
            settings=settings,
            torch_threads=threads,
            slices_per_task=_slices_per_task(args),
        )
        bar, finished = None, None
        try:
            for event in events:
                if bar is None and not isinstance(event, batch.BatchFinished):
                    bar = tqdm(unit="file", disable=args.no_progress, desc="files")
                if isinstance(event, batch.FileDone):
                    tqdm.write(
                        f"done {printable(Path(event.path).name)} -> {printable(event.output)}"
                    )
                elif isinstance(event, batch.FileSkipped):
                    tqdm.write(f"skipped {printable(event.path.name)}: {event.reason}")
                elif isinstance(event, batch.FileFailed):
                    tqdm.write(
                        f"FAILED {printable(event.path.name)}: {event.reason}", file=sys.stderr
                    )
                elif isinstance(event, batch.BatchFinished):
                    finished = event
                if bar is not None and not isinstance(event, batch.BatchFinished):
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            events.close()
    return report_outcome(finished)
