"""Segmenting a file or every image of a folder, with a report, resumable.

Files whose output exists are skipped (resume), unsupported files are listed and skipped, a
failing file is recorded and the batch goes on; the report is rewritten after each file.
Memory stays flat: one slice, its prediction and a bounded predictor cache (cleared after
every slice) are alive at a time.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._atomic import remove_stale_temporaries
from ..._locking import output_lock
from ...data.formats import (
    UNSUPPORTED,
    image_stem,
    is_image_path,
    is_ome_tiff,
    is_zarr,
    printable,
)
from ...data.image import ImageData
from ...data.ome_zarr import LABELS_GROUP, is_ome_zarr_image
from ...data.reader import read_image_lazy
from ...data.slicing import n_slices
from .options import SegmentOptions, SlicePredictor, with_classes
from .report import REPORT_NAME, BatchReport
from .stack import SliceDone, segment_stack

__all__ = [
    "BatchEvent",
    "BatchFinished",
    "BatchSummary",
    "FileDone",
    "FileFailed",
    "FileSkipped",
    "FileStarted",
    "collect_inputs",
    "output_path_for",
    "segment_batch",
]

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


@dataclass(frozen=True)
class FileStarted:
    """A file (or layer) is about to be segmented."""

    path: Path | str
    n_slices: int
    file_index: int  # 0-based position in the batch
    n_files: int


@dataclass(frozen=True)
class FileDone:
    """``path`` is segmented and its complete output written to ``output``."""

    path: Path | str
    output: Path


@dataclass(frozen=True)
class FileSkipped:
    """``path`` was not segmented: its output exists, or it is not a supported image."""

    path: Path
    reason: str


@dataclass(frozen=True)
class FileFailed:
    """``path`` failed; nothing was written for it."""

    path: Path
    reason: str


@dataclass(frozen=True)
class BatchFinished:
    """The batch ended; ``stopped`` says why it ended early (e.g. a full disk), or None;
    ``report_error`` why the report could not be written, or None."""

    report_path: Path
    n_done: int
    n_failed: int
    n_skipped: int
    stopped: str | None = None
    report_error: str | None = None  # the report could not be written (the events say all)


BatchEvent = FileStarted | SliceDone | FileDone | FileSkipped | FileFailed | BatchFinished


def collect_inputs(
    source: str | Path, *, exclude_suffix: str = ""
) -> tuple[list[Path], list[Path]]:
    """Images to segment under ``source`` and the files skipped as unsupported.

    A file (or a zarr store, which is a folder) is taken as is; a folder gives its supported
    images, zarr stores included (sorted, not recursive, hidden files ignored) and its other
    files. Files ending in ``exclude_suffix`` + an image suffix (earlier outputs in the
    same folder) and our report files are left out.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``source`` is a file of an unsupported type.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    if source.is_file() or is_image_path(source):
        if not is_image_path(source):
            raise ValueError(f"cannot segment {source}: {UNSUPPORTED}")
        return [source], []
    if not source.is_dir():
        raise ValueError(f"cannot segment {source}: it is neither a file nor a folder")
    images, unsupported = [], []
    reports = {f"{REPORT_NAME}.csv", f"{REPORT_NAME}.json"}
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or path.name in reports:
            continue
        if not path.is_file() and not is_image_path(path):
            continue
        if not is_image_path(path):
            unsupported.append(path)
        elif not (exclude_suffix and image_stem(path).endswith(exclude_suffix)):
            images.append(path)
    return images, unsupported


def output_path_for(path: Path, output_dir: Path, options: SegmentOptions) -> Path:
    """Output of ``path``: ``<output_dir>/<stem><suffix>.tif`` (``.ome.tif``, ``.ome.zarr``).

    ``auto``: OME-TIFF for OME-TIFF input; for an OME-Zarr image, a label image in its own
    ``labels`` group, ``<image>/labels/<stem><suffix>`` (a plain zarr array gets a
    standalone ``.ome.zarr`` store); TIFF otherwise.
    """
    fmt = options.output_format
    name = f"{image_stem(path)}{options.suffix}"
    if fmt == "auto" and is_zarr(path):
        if is_ome_zarr_image(path):
            return Path(path) / LABELS_GROUP / name
        fmt = "ome.zarr"
    if fmt == "ome.zarr":
        return Path(output_dir) / f"{name}.ome.zarr"
    ome = fmt == "ome.tif" or (fmt == "auto" and is_ome_tiff(path))
    return Path(output_dir) / f"{name}{'.ome.tif' if ome else '.tif'}"


@dataclass
class BatchSummary:
    """Counts and the report of a finished (or stopped) batch."""

    report_path: Path
    done: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    stopped: str | None = None


def _same_folder(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def channel_count(image: ImageData) -> int:
    """Channels the model sees differently: uint8 RGBA counts as RGB."""
    if image.channel_axis is None:
        return 1
    count = image.shape[image.channel_axis]
    return 3 if count == 4 and str(image.metadata.get("dtype")) == "uint8" else count


def segment_batch(
    predictor: SlicePredictor,
    source: str | Path,
    output_dir: str | Path,
    options: SegmentOptions,
    *,
    allow_same_folder: bool = False,
    settings: dict[str, Any] | None = None,
) -> Generator[BatchEvent, None, BatchSummary]:
    """Segment a file or every image of a folder into ``output_dir``.

    Files whose output exists are skipped (outputs are complete by construction) unless
    ``options.overwrite``; unsupported files are listed and skipped; a failing file
    (corrupt, wrong channels, no Y/X axes...) is recorded and the batch goes on. A full disk
    stops the batch (every later file would fail too); finished outputs stay intact. The
    report (``segment_report.csv`` / ``.json``) in ``output_dir`` is rewritten after every
    file, so an interrupted run still says what was finished.

    Args:
        predictor: a Predictor; options: see :class:`SegmentOptions`.
        allow_same_folder: allow ``output_dir`` to be the input folder (refused by default
            so outputs never mix with inputs by accident).
        settings: extra entries for the report's settings (model preset, checkpoint...).

    Yields:
        :class:`FileStarted`, :class:`SliceDone`, :class:`FileDone`, :class:`FileSkipped`,
        :class:`FileFailed`, and finally :class:`BatchFinished`.

    Returns:
        :class:`BatchSummary`.
    """
    source, output_dir = Path(source), Path(output_dir)
    same = check_output_folder(source, output_dir, allow_same_folder)
    options = with_classes(predictor, options)
    images, unsupported = collect_inputs(source, exclude_suffix=options.suffix if same else "")
    if options.points is not None:
        options.points.check_targets(images, {})  # clicks on files that are not inputs
    with output_lock(output_dir, "a batch segmentation"):
        remove_stale_temporaries(output_dir)
        report = BatchReport(
            output_dir,
            {
                **options.settings(),
                "label_table": predictor.label_table_for(options.class_names).to_config(),
                **(settings or {}),
                "source": str(source),
                "output_dir": str(output_dir),
            },
            predictor.provenance(),
        )
        return (yield from _segment_files(predictor, images, unsupported, report, options))


def check_output_folder(source: Path, output_dir: Path, allow_same_folder: bool) -> bool:
    """Whether `output_dir` is the input folder (refused unless `allow_same_folder`)."""
    input_folder = source if source.is_dir() and not is_zarr(source) else source.parent
    same = _same_folder(input_folder, output_dir)
    if same and not allow_same_folder:
        raise ValueError(
            f"the output folder {output_dir} is the input folder; choose another output "
            "folder, or allow it explicitly (--allow-same-folder on the command line)"
        )
    return same


def skip_unsupported(
    unsupported: list[Path], report: BatchReport, summary: BatchSummary
) -> Generator[FileSkipped, None, None]:
    """Record the files that are not supported images."""
    for path in unsupported:
        report.add(path, "unsupported", reason=UNSUPPORTED)
        summary.skipped.append(path)
        yield FileSkipped(path, UNSUPPORTED)


def _segment_files(
    predictor: SlicePredictor,
    images: list[Path],
    unsupported: list[Path],
    report: BatchReport,
    options: SegmentOptions,
) -> Generator[BatchEvent, None, BatchSummary]:
    output_dir = report.folder
    summary = BatchSummary(report.json_path)
    yield from skip_unsupported(unsupported, report, summary)
    guard = InputGuard(images + unsupported)
    reference: tuple[int, Path] | None = None
    for position, path in enumerate(images):
        output = output_path_for(path, output_dir, options)
        if (passed := pass_over(guard, path, output, options, report, summary)) is not None:
            yield passed
            continue
        start = time.perf_counter()
        total = 0
        try:
            image = read_image_lazy(path)
            total = n_slices(image)
            channels = check_input(image, path, total, images, options, reference)
            reference = reference or (channels, path)
            yield FileStarted(path, total, position, len(images))
            yield from segment_stack(predictor, image, output, options)
        except Exception as error:  # one bad file must not stop the batch
            yield record_failure(path, error, total, time.perf_counter() - start, report, summary)
            if summary.stopped:
                break
        else:
            guard.written(path, output)
            yield record_done(path, output, total, time.perf_counter() - start, report, summary)
        write_quietly(report)
    yield finish(report, summary)
    return summary


def pass_over(
    guard: InputGuard,
    path: Path,
    output: Path,
    options: SegmentOptions,
    report: BatchReport,
    summary: BatchSummary,
) -> FileFailed | FileSkipped | None:
    """Why `path` is not segmented, recorded (its output would clash with an input or an
    earlier output, or exists already); None: segment it."""
    if (clash := guard.clash(path, output)) is not None:
        report.add(path, "failed", reason=clash)
        summary.failed.append(path)
        write_quietly(report)
        return FileFailed(path, clash)
    if output.exists() and not options.overwrite:
        report.add(path, "skipped", output, reason="output exists")
        summary.skipped.append(path)
        return FileSkipped(path, f"output exists: {printable(output.name)}")
    return None


def check_input(
    image: ImageData,
    path: Path,
    total: int,
    images: list[Path],
    options: SegmentOptions,
    reference: tuple[int, Path] | None,
) -> int:
    """Check an input before segmenting it: its clicks, and its channels against the first
    file's (`reference`: channel count and file). Returns its channel count."""
    if options.points is not None:
        options.points.check_targets(images, {path.name: total})
    channels = channel_count(image)
    if reference is not None and channels != reference[0]:
        raise ValueError(
            f"{printable(path.name)} has {channels} channel(s) but "
            f"{printable(reference[1].name)} has {reference[0]}; segment files with "
            "different channels in separate runs"
        )
    return channels


def record_done(
    path: Path,
    output: Path,
    total: int,
    seconds: float,
    report: BatchReport,
    summary: BatchSummary,
) -> FileDone:
    """Record that `path` was segmented into `output` (complete, written atomically)."""
    report.add(path, "done", output, total, seconds)
    summary.done.append(path)
    return FileDone(path, output)


def record_failure(
    path: Path,
    error: BaseException,
    total: int,
    seconds: float,
    report: BatchReport,
    summary: BatchSummary,
) -> FileFailed:
    """Record that `path` failed with `error`; a full disk stops the batch
    (`summary.stopped`: every later file would fail too)."""
    reason = failure_reason(error)
    report.add(path, "failed", slices=total, seconds=seconds, reason=reason)
    summary.failed.append(path)
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        summary.stopped = (
            f"disk full while writing to {printable(report.folder)}: free some space and "
            "run again (finished outputs are complete and will be skipped)"
        )
    return FileFailed(path, reason)


def finish(report: BatchReport, summary: BatchSummary) -> BatchFinished:
    """Write the final report; the batch's last event."""
    report_error = None
    try:
        report.write(summary.stopped)
    except (OSError, ValueError) as error:
        report_error = f"cannot write the report {printable(report.csv_path)}: {error}"
    return BatchFinished(
        report.json_path,
        len(summary.done),
        len(summary.failed),
        len(summary.skipped),
        summary.stopped,
        report_error,
    )


def write_quietly(report: BatchReport) -> None:
    """Rewrite the report after a file; a failure here (e.g. a full disk) must not hide the
    file's own result, and the final write reports it."""
    with contextlib.suppress(OSError, ValueError):
        report.write()


class InputGuard:
    """The rule that a batch never writes over one of its inputs, nor twice to one output."""

    def __init__(self, inputs: list[Path]):
        self._inputs = {_identity(p): p for p in inputs}
        self._outputs: dict[Path, Path] = {}  # output -> the input it was written for

    def clash(self, path: Path, output: Path) -> str | None:
        """Why `path` must not be written to `output` (None: it may)."""
        target = _identity(output)
        if (other := self._inputs.get(target)) is not None:
            whose = "itself" if other == path else f"the input {printable(other.name)}"
            return (
                f"its output {printable(output.name)} would replace {whose}; choose another "
                "output folder or a non-empty suffix (inputs are never overwritten)"
            )
        if (other := self._outputs.get(target)) is not None:
            return (
                f"its output {printable(output.name)} was already written for "
                f"{printable(other.name)} in this run; rename one of the two inputs or "
                "segment them in separate runs"
            )
        return None

    def written(self, path: Path, output: Path) -> None:
        self._outputs[_identity(output)] = path


def _identity(path: Path) -> Path:
    """A path as the file it names (links and relative parts resolved)."""
    return path.resolve()


def failure_reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        return printable(f"disk full: {error}")
    text = str(error) or type(error).__name__
    if not isinstance(error, ValueError | OSError):
        text = f"{type(error).__name__}: {text}"
    return printable(text)
