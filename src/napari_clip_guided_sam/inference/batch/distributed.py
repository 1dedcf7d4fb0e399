"""Segmenting a folder on a dask.distributed cluster: one task per file, run by the serial
batch's own steps (docs/scaling.md).

Each worker loads the model once, when it starts or joins (:class:`ModelOnWorker`, a dask
worker plugin; a worker that dies and is restarted loads it again). The client (this
process) decides what to do exactly as :func:`.folder.segment_batch` does (the same
output names, the same skip of finished outputs, the same refusals) and holds the output
folder's lock; a task reads its file, checks it and segments it with
:func:`.stack.segment_stack`, which writes the output atomically from the worker, so a
worker killed mid-file leaves no output file and dask runs the task again elsewhere. The
client merges every task's result into one report as the tasks finish.

A stack of more than `slices_per_task` slices is split into ranges of slices, one task
each, written into one scratch array and then into its output by the client
(:mod:`.ranges`); a stack whose instances are linked across slices stays one task.

Differences from the serial run, by design: files finish in any order (the report lists
them as they finish), and a later input whose output name clashes with an earlier one's
fails even when the earlier one fails too (the serial run decides it after the earlier).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import WorkerPlugin, as_completed, get_worker

from ..._atomic import remove_stale_temporaries
from ..._locking import output_lock
from ...data.image import ImageData
from ...data.normalize import PercentileStats
from ...data.reader import read_image_lazy
from ...data.slicing import n_slices
from .folder import (
    BatchEvent,
    BatchSummary,
    InputGuard,
    channel_count,
    check_input,
    check_output_folder,
    collect_inputs,
    finish,
    output_path_for,
    pass_over,
    record_done,
    record_failure,
    skip_unsupported,
    write_quietly,
)
from .options import SegmentOptions, SlicePredictor, with_classes
from .ranges import DEFAULT_SLICES_PER_TASK, ScratchLabels, plan_ranges, segment_range, splits
from .report import BatchReport
from .stack import label_provenance, segment_stack, stack_stats, write_label_output

__all__ = ["PLUGIN_NAME", "ModelOnWorker", "segment_batch_on_cluster"]

PLUGIN_NAME = "clip-guided-sam-model"


class ModelOnWorker(WorkerPlugin):
    """The model of a worker, loaded once when the worker starts: `load()` builds it (a
    picklable callable, e.g. a `functools.partial` of `Predictor.from_preset`).
    `torch_threads`: the CPU threads torch uses on each worker (None: torch's default)."""

    name = PLUGIN_NAME

    def __init__(self, load: Callable[[], SlicePredictor], torch_threads: int | None = None):
        self.load = load
        self.torch_threads = torch_threads
        self.predictor: SlicePredictor | None = None

    def setup(self, worker) -> None:
        if self.torch_threads is not None:
            import torch

            torch.set_num_threads(self.torch_threads)
        self.predictor = self.load()

    def teardown(self, worker) -> None:
        self.predictor = None


def _read_in_this_task():
    """Lazy (dask) image reads inside a task run in the task's own thread: inside a worker
    dask would otherwise send each slice read to the cluster as tasks of their own, queued
    behind the file tasks that wait for them."""
    return dask.config.set(scheduler="synchronous")


def _worker_predictor() -> SlicePredictor:
    plugin = get_worker().plugins.get(PLUGIN_NAME)
    predictor = plugin.predictor if isinstance(plugin, ModelOnWorker) else None
    if predictor is None:
        raise RuntimeError("this worker has no model: register ModelOnWorker first")
    return predictor


def _describe_model(options: SegmentOptions) -> tuple[SegmentOptions, dict[str, Any], Any]:
    """On a worker: the options with their class names resolved, what the report's settings
    say of the model (output label table, device) and its provenance (the client loads no
    model)."""
    predictor = _worker_predictor()
    options = with_classes(predictor, options)
    table = predictor.label_table_for(options.class_names).to_config()
    device = getattr(predictor, "device", None)
    said = {"label_table": table, **({"device": str(device)} if device is not None else {})}
    return options, said, predictor.provenance()


@dataclass(frozen=True)
class FileResult:
    """What a task did with one file: `error` None when its output is written."""

    path: Path
    output: Path
    slices: int
    seconds: float
    error: BaseException | None = None


def _segment_file(
    path: Path,
    output: Path,
    options: SegmentOptions,
    images: list[Path],
    reference: tuple[int, Path] | None,
) -> FileResult:
    """On a worker: one file, as the serial batch segments it."""
    start, total = time.perf_counter(), 0
    try:
        with _read_in_this_task():
            image = read_image_lazy(path)
            total = n_slices(image)
            if output.exists() and not options.overwrite:
                # The client saw no output when it submitted this task, and outputs appear
                # whole (atomic rename): an earlier attempt of this very task wrote it, and
                # its worker died before dask heard that it had finished.
                return FileResult(path, output, total, time.perf_counter() - start)
            check_input(image, path, total, images, options, reference)
            for _ in segment_stack(_worker_predictor(), image, output, options):
                pass
    except Exception as error:  # one bad file must not stop the batch
        return FileResult(path, output, total, time.perf_counter() - start, _portable(error))
    return FileResult(path, output, total, time.perf_counter() - start)


def _segment_range(
    path: Path, scratch: Path, slices: range, options: SegmentOptions, stats: Any
) -> tuple[int, BaseException | None]:
    """On a worker: one range of a split stack; (its largest label, the error or None)."""
    try:
        with _read_in_this_task():
            image = read_image_lazy(path)
            predictor = _worker_predictor()
            return segment_range(predictor, image, scratch, slices, options, stats), None
    except Exception as error:  # the stack fails with the reason; its other ranges stop
        return 0, _portable(error)


@dataclass
class SplitStack:
    """A stack segmented as several range tasks: what the client tracks until the last
    range is in and the output written."""

    path: Path
    output: Path
    image: ImageData
    stats: PercentileStats | None
    scratch: ScratchLabels
    start: float
    futures: list[Any]
    left: int
    failed: bool = False

    @property
    def slices(self) -> int:
        return n_slices(self.image)


def _portable(error: Exception) -> BaseException:
    """`error`, or a RuntimeError with its text when it cannot travel to the client."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _reference(paths: list[Path]) -> tuple[int, Path] | None:
    """The first readable file's channel count and path: every file must have as many."""
    for path in paths:
        try:
            return channel_count(read_image_lazy(path)), path
        except Exception:  # its task fails with the reason
            continue
    return None


def segment_batch_on_cluster(
    client,
    load: Callable[[], SlicePredictor],
    source: str | Path,
    output_dir: str | Path,
    options: SegmentOptions,
    *,
    allow_same_folder: bool = False,
    settings: dict[str, Any] | None = None,
    torch_threads: int | None = None,
    slices_per_task: int | None = DEFAULT_SLICES_PER_TASK,
) -> Generator[BatchEvent, None, BatchSummary]:
    """:func:`.folder.segment_batch` on the workers of `client` (a `distributed.Client`),
    one task per file; `load()` builds each worker's model (once per worker, with
    `torch_threads` CPU threads, see :class:`ModelOnWorker`). A file of more than
    `slices_per_task` slices (None: never) whose instances are not linked across slices is
    split into ranges of that many slices, one task each (:mod:`.ranges`).

    Yields the serial batch's events but `FileStarted` and `SliceDone` (a file's progress
    stays on its worker): `FileSkipped`, `FileDone`, `FileFailed` as files finish, then
    `BatchFinished`. A file whose workers die too often (dask's `allowed-failures`, e.g.
    out of memory) fails with the reason. Closing the generator cancels what is left.
    """
    source, output_dir = Path(source), Path(output_dir)
    if slices_per_task is not None:
        plan_ranges(1, slices_per_task)  # a bad count is refused before any work
    same = check_output_folder(source, output_dir, allow_same_folder)
    client.register_plugin(ModelOnWorker(load, torch_threads), name=PLUGIN_NAME)
    options, said, provenance = client.submit(_describe_model, options, pure=False).result()
    images, unsupported = collect_inputs(source, exclude_suffix=options.suffix if same else "")
    if options.points is not None:
        options.points.check_targets(images, {})  # clicks on files that are not inputs
    with output_lock(output_dir, "a batch segmentation"):
        remove_stale_temporaries(output_dir)
        report = BatchReport(
            output_dir,
            {
                **options.settings(),
                **said,
                **(settings or {}),
                "source": str(source),
                "output_dir": str(output_dir),
            },
            provenance,
        )
        summary = BatchSummary(report.json_path)
        yield from skip_unsupported(unsupported, report, summary)
        guard = InputGuard(images + unsupported)
        todo: list[tuple[Path, Path]] = []
        for path in images:
            output = output_path_for(path, output_dir, options)
            if (passed := pass_over(guard, path, output, options, report, summary)) is not None:
                yield passed
                continue
            guard.written(path, output)  # taken now: the files run at the same time
            todo.append((path, output))
        reference = _reference([path for path, _ in todo])
        files: dict[Any, tuple[Path, Path] | SplitStack] = {}
        stacks: list[SplitStack] = []
        try:
            for path, output in todo:
                try:
                    stack = _split(path, output, options, slices_per_task, images, reference)
                except Exception as error:  # checked here: fails as its task would
                    yield record_failure(path, error, 0, 0.0, report, summary)
                    continue
                if stack is None:
                    future = client.submit(
                        _segment_file, path, output, options, images, reference, pure=False
                    )
                    files[future] = (path, output)
                    continue
                for slices in plan_ranges(stack.slices, slices_per_task or stack.slices):
                    scratch = stack.scratch.folder
                    future = client.submit(
                        _segment_range, path, scratch, slices, options, stack.stats, pure=False
                    )
                    stack.futures.append(future)
                    files[future] = stack
                stack.left = len(stack.futures)
                stacks.append(stack)
            write_quietly(report)
            done = _collect(as_completed(list(files)), files, client, provenance, options, report,
                            summary)  # fmt: skip
            yield from done
        finally:
            client.cancel(list(files))
            for stack in stacks:  # those not finished (a finished one removed its own)
                stack.scratch.remove()
            # What the workers killed mid-file left (their temporaries; no output).
            remove_stale_temporaries(output_dir)
        yield finish(report, summary)
    return summary


def _split(
    path: Path,
    output: Path,
    options: SegmentOptions,
    slices_per_task: int | None,
    images: list[Path],
    reference: tuple[int, Path] | None,
) -> SplitStack | None:
    """`path` as a split stack with its scratch array created, or None: one task."""
    if slices_per_task is None:
        return None
    image = read_image_lazy(path)
    if not splits(image, options, slices_per_task):
        return None
    check_input(image, path, n_slices(image), images, options, reference)
    stats = stack_stats(image, options.normalize)  # once, for every range
    scratch = ScratchLabels.create(output, image)
    return SplitStack(path, output, image, stats, scratch, time.perf_counter(), [], 0)


def _collect(finished, files, client, provenance, options, report, summary):
    """Record each file's result as its task (or a split stack's last range) finishes; a
    full disk stops the batch."""
    for future in finished:
        item = files[future]
        if isinstance(item, SplitStack):
            result = _range_finished(item, future, client, provenance, options)
            if result is None:
                continue
        else:
            path, output = item
            try:
                result = future.result()
            except Exception as error:  # the task's workers died (dask's KilledWorker)
                result = FileResult(path, output, 0, 0.0, error)
        timing = (result.slices, result.seconds, report, summary)
        if result.error is None:
            yield record_done(result.path, result.output, *timing)
        else:
            yield record_failure(result.path, result.error, *timing)
        write_quietly(report)
        if summary.stopped:
            break


def _range_finished(
    stack: SplitStack, future: Any, client: Any, provenance: Any, options: SegmentOptions
) -> FileResult | None:
    """Take in one finished range of `stack`: its file's result once the last range is in
    and the output written, or at the first failed range (the others are cancelled and
    the scratch array removed); None while ranges are left or once the stack failed."""
    if stack.failed:
        return None
    try:
        top, error = future.result()
    except Exception as died:  # the range's workers died (dask's KilledWorker)
        top, error = 0, died
    stack.left -= 1
    if error is None:
        stack.scratch.max_label = max(stack.scratch.max_label, top)
        if stack.left:
            return None
        try:
            labels = label_provenance(provenance)
            write_label_output(stack.output, stack.scratch, stack.image, labels, options)
        except Exception as failed:  # e.g. a full disk
            error = failed
    if error is not None:
        stack.failed = True
        client.cancel(stack.futures)
    stack.scratch.remove()
    seconds = time.perf_counter() - stack.start
    return FileResult(stack.path, stack.output, stack.slices, seconds, error)
