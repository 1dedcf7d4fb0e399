"""Batch segmentation of stacks and folders: generators of progress events (no Qt).

One code path serves the CLI (`clip-guided-sam segment`, driven with tqdm) and the plugin's
menu commands (driven in a napari worker, cancelled at the next yield):

- :func:`segment_stack` segments every 2D slice of one image or stack, reading slices one
  at a time (lazy TIFF pages or a memory map), so a stack larger than RAM works. Label
  slices are spooled to a temporary file next to the output (``data.label_writer``); when
  the last slice is done the label TIFF/OME-TIFF (zlib, the input's axes and pixel size) is
  written and moved into place in one step. A file at the output path is therefore always
  complete, and a cancelled or failed stack leaves nothing behind.
- :func:`segment_batch` runs :func:`segment_stack` over a file or a folder: files whose
  output exists are skipped (resume), unsupported files are listed and skipped, a failing
  file is recorded and the batch goes on; a CSV + JSON report is rewritten after each file.

Memory stays flat with stack length: one slice, its prediction and a bounded predictor
cache (cleared after every slice) are alive at a time.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import io
import json
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._atomic import atomic_write
from ..data.axes import leading_axes
from ..data.formats import SUPPORTED_SUFFIXES, image_stem, is_supported
from ..data.image import ImageData
from ..data.label_writer import LabelSpool, smallest_label_dtype, write_label_tiff
from ..data.normalize import NormalizeConfig, image_percentiles, normalize_image_slice
from ..data.reader import read_image_lazy
from ..data.slicing import iter_indices, leading_shape, n_slices
from .instances import InstanceConfig, labels_to_instances
from .points import PointPrompts

__all__ = [
    "REPORT_NAME",
    "BatchEvent",
    "BatchFinished",
    "BatchSummary",
    "FileDone",
    "FileFailed",
    "FileSkipped",
    "FileStarted",
    "SegmentOptions",
    "SliceDone",
    "collect_inputs",
    "iter_slice_labels",
    "output_path_for",
    "resolve_class_names",
    "segment_batch",
    "segment_stack",
    "segment_stack_to_array",
]

REPORT_NAME = "segment_report"  # .csv and .json in the output folder
OutputFormat = Literal["auto", "tif", "ome.tif"]
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SegmentOptions:
    """What to segment and how to write it.

    Attributes:
        class_names: class prompts, e.g. ``("nucleus",)``; empty = the classes a
            fine-tuned checkpoint was trained on. Label ``k + 1`` is ``class_names[k]``.
        threshold: mask probability above which a pixel takes its most probable class.
        instances: split each class mask into instances (one id per object, numbered per
            slice: class 1's objects first); None writes class labels.
        normalize: how slices become the model's RGB input (per-slice percentiles by
            default; channel choice for multichannel images).
        points: optional clicks (manual mode) from :func:`~.points.read_points_csv`.
        output_format: ``"auto"`` writes OME-TIFF for OME-TIFF input, TIFF otherwise.
        suffix: added to the input's stem to name its output, e.g. ``a_labels.tif``.
        overwrite: redo files whose output exists (otherwise they are skipped).
    """

    class_names: tuple[str, ...] = ()
    threshold: float = 0.5
    instances: InstanceConfig | None = None
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    points: PointPrompts | None = None
    output_format: OutputFormat = "auto"
    suffix: str = "_labels"
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.output_format not in ("auto", "tif", "ome.tif"):
            raise ValueError(
                f"output_format must be 'auto', 'tif' or 'ome.tif', got {self.output_format!r}"
            )
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON values, for the report."""
        return {
            "class_names": list(self.class_names),
            "threshold": self.threshold,
            "instances": asdict(self.instances) if self.instances else None,
            "normalize": asdict(self.normalize),
            "points": int(len(self.points.xy)) if self.points is not None else 0,
            "output_format": self.output_format,
            "suffix": self.suffix,
            "overwrite": self.overwrite,
        }


def resolve_class_names(predictor: Any, class_names: Sequence[str]) -> tuple[str, ...]:
    """The class names to segment: the given ones, else the checkpoint's closed set.

    Raises:
        ValueError: no names given and the model brings none.
    """
    names = tuple(n.strip() for n in class_names if n.strip())
    if names:
        return names
    closed = tuple(getattr(predictor, "closed_set_classes", ()) or ())
    if not closed:
        raise ValueError(
            "no class names given and the model has no trained classes: name at least one "
            "class, e.g. 'nucleus'"
        )
    return closed


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class FileStarted:
    """A file (or layer) is about to be segmented."""

    path: Path | str
    n_slices: int
    file_index: int  # 0-based position in the batch
    n_files: int


@dataclass(frozen=True)
class SliceDone:
    """One 2D slice of ``file`` is segmented (``index`` 0-based, of ``total``)."""

    file: Path | str
    index: int
    total: int


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
    """The batch ended; ``stopped`` says why it ended early (e.g. a full disk), or None."""

    report_path: Path
    n_done: int
    n_failed: int
    n_skipped: int
    stopped: str | None = None


BatchEvent = FileStarted | SliceDone | FileDone | FileSkipped | FileFailed | BatchFinished


# --------------------------------------------------------------------------- one stack


def iter_slice_labels(
    predictor: Any, image: ImageData, options: SegmentOptions
) -> Iterator[np.ndarray]:
    """Label image ``[H, W]`` of each 2D slice of ``image``, in row-major slice order.

    Slices are read one at a time; the predictor's caches are cleared after each slice so
    memory does not grow with the stack. ``options.class_names`` must be resolved (see
    :func:`resolve_class_names`).
    """
    if not options.class_names:
        raise ValueError("no class names: resolve them with resolve_class_names first")
    config = options.normalize
    stats = None
    if config.mode == "stack":
        stats = image_percentiles(image, config.percentiles, sample=config.sample)
    name = image.path.name if image.path is not None else ""
    for flat, index in enumerate(iter_indices(image)):
        rgb = normalize_image_slice(image, index, config, stats)
        clicks = options.points.for_slice(name, flat) if options.points is not None else None
        points, point_labels = clicks if clicks is not None else (None, None)
        try:
            prediction = predictor.segment(
                rgb, list(options.class_names), points, point_labels, options.threshold
            )
        finally:
            predictor.clear_cache()
        labels = prediction.labels
        if options.instances is not None:
            labels = labels_to_instances(labels, len(options.class_names), options.instances)
        yield labels


def _label_layout(image: ImageData) -> tuple[str, tuple[int, ...]]:
    """Axes and shape of the label image of ``image``: its leading axes, then Y, X."""
    lead = leading_axes(image.axes)  # raises a clear error without Y and X
    shape = leading_shape(image) + (
        image.shape[image.axes.index("Y")],
        image.shape[image.axes.index("X")],
    )
    return lead + "YX", shape


def segment_stack(
    predictor: Any,
    image: ImageData | str | Path,
    output: str | Path,
    options: SegmentOptions,
) -> Generator[SliceDone, None, Path]:
    """Segment every slice of ``image`` into a label TIFF at ``output``.

    Args:
        predictor: an :class:`~napari_clip_guided_sam.inference.predictor.Predictor`.
        image: an :class:`ImageData` (numpy or dask array) or a path, opened lazily.
        output: ``.tif``/``.tiff`` or ``.ome.tif``/``.ome.tiff``; written atomically with
            the image's leading axes, Y, X and its pixel size and unit.
        options: see :class:`SegmentOptions`; empty class names take the checkpoint's.

    Yields:
        :class:`SliceDone` after each slice.

    Returns:
        The output path.

    Raises:
        FileExistsError: ``output`` exists and ``options.overwrite`` is False.
        ValueError: bad image layout, channels or class names; OSError: writing failed.
    """
    if not isinstance(image, ImageData):
        image = read_image_lazy(image)
    output = Path(output)
    if not output.name.lower().endswith((".tif", ".tiff")):
        raise ValueError(f"label output must be a .tif or .ome.tif file, got {output}")
    if output.exists() and not options.overwrite:
        raise FileExistsError(f"{output} exists; allow overwriting to replace it")
    if image.path is not None and output.resolve() == Path(image.path).resolve():
        raise ValueError(f"the output {output} would replace its own input; change the suffix")
    options = _with_classes(predictor, options)
    axes, shape = _label_layout(image)
    label = image.path or image.name
    total = n_slices(image)
    spool_dtype = np.uint32 if options.instances is not None else _class_dtype(options)
    with LabelSpool(output.parent, output.name, shape, spool_dtype) as spool:
        for index, labels in enumerate(iter_slice_labels(predictor, image, options)):
            spool.append(labels)
            yield SliceDone(label, index, total)
        sizes = {a: image.pixel_size_of(a) for a in axes if image.pixel_size_of(a) is not None}
        ome = output.name.lower().endswith((".ome.tif", ".ome.tiff"))
        atomic_write(
            output,
            lambda temp: _write_label_tiff(temp, spool, axes, sizes, image.unit, ome),
            overwrite=options.overwrite,
        )
    return output


def segment_stack_to_array(
    predictor: Any,
    image: ImageData,
    options: SegmentOptions,
) -> Generator[SliceDone, None, np.ndarray]:
    """Like :func:`segment_stack`, but the labels are returned as one array in memory.

    Returns:
        ``[..., H, W]`` labels (leading axes of the image, no channel axis), the smallest
        unsigned dtype that holds them.
    """
    options = _with_classes(predictor, options)
    _, shape = _label_layout(image)
    dtype = np.uint32 if options.instances is not None else _class_dtype(options)
    labels = np.zeros(shape, dtype=dtype)
    flat = labels.reshape(-1, *shape[-2:])
    label = image.path or image.name
    for index, slice_labels in enumerate(iter_slice_labels(predictor, image, options)):
        flat[index] = slice_labels
        yield SliceDone(label, index, len(flat))
    return labels.astype(smallest_label_dtype(int(labels.max(initial=0))), copy=False)


def _with_classes(predictor: Any, options: SegmentOptions) -> SegmentOptions:
    return dataclasses.replace(
        options, class_names=resolve_class_names(predictor, options.class_names)
    )


def _class_dtype(options: SegmentOptions) -> type:
    return np.uint8 if len(options.class_names) < 256 else np.uint16


def _write_label_tiff(
    path: Path,
    spool: LabelSpool,
    axes: str,
    sizes: dict[str, float],
    unit: str | None,
    ome: bool,
) -> None:
    """Write the spooled slices as one label TIFF (a seam for tests that fill the disk)."""
    write_label_tiff(path, spool, axes, sizes, unit, ome)


# --------------------------------------------------------------------------- folders


def collect_inputs(
    source: str | Path, *, exclude_suffix: str = ""
) -> tuple[list[Path], list[Path]]:
    """Images to segment under ``source`` and the files skipped as unsupported.

    A file is taken as is; a folder gives its supported images (sorted, not recursive,
    hidden files ignored) and its other files. Files ending in ``exclude_suffix`` + an
    image suffix (earlier outputs in the same folder) and our report files are left out.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``source`` is a file of an unsupported type.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    if source.is_file():
        if not is_supported(source):
            raise ValueError(
                f"cannot segment {source}: unsupported file type; expected one of "
                f"{', '.join(SUPPORTED_SUFFIXES)}"
            )
        return [source], []
    images, unsupported = [], []
    reports = {f"{REPORT_NAME}.csv", f"{REPORT_NAME}.json"}
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.name in reports:
            continue
        if not is_supported(path):
            unsupported.append(path)
        elif not (exclude_suffix and image_stem(path).endswith(exclude_suffix)):
            images.append(path)
    return images, unsupported


def output_path_for(path: Path, output_dir: Path, options: SegmentOptions) -> Path:
    """Output file of ``path``: ``<output_dir>/<stem><suffix>.tif`` (or ``.ome.tif``)."""
    ome_input = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    fmt = options.output_format
    ome = fmt == "ome.tif" or (fmt == "auto" and ome_input)
    return Path(output_dir) / f"{image_stem(path)}{options.suffix}{'.ome.tif' if ome else '.tif'}"


@dataclass
class BatchSummary:
    """Counts and the report of a finished (or stopped) batch."""

    report_path: Path
    done: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    stopped: str | None = None


class _Report:
    """Rows of the batch report, rewritten atomically as CSV and JSON after each file."""

    COLUMNS = ("input", "status", "output", "slices", "seconds", "reason")

    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.csv_path = folder / f"{REPORT_NAME}.csv"
        self.json_path = folder / f"{REPORT_NAME}.json"
        self.settings = settings
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        path: Path,
        status: str,
        output: Path | None = None,
        slices: int = 0,
        seconds: float = 0.0,
        reason: str = "",
    ) -> None:
        self.rows.append(
            {
                "input": str(path),
                "status": status,
                "output": str(output) if output else "",
                "slices": slices,
                "seconds": round(seconds, 3),
                "reason": reason,
            }
        )

    def write(self, stopped: str | None = None) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        counts = {s: sum(r["status"] == s for r in self.rows) for s in ("done", "failed")}
        counts["skipped"] = len(self.rows) - counts["done"] - counts["failed"]
        document = {
            "settings": self.settings,
            "summary": {**counts, "stopped": stopped},
            "files": self.rows,
        }
        atomic_write(self.csv_path, lambda t: t.write_text(text.getvalue(), encoding="utf-8"))
        atomic_write(
            self.json_path,
            lambda t: t.write_text(
                json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8"
            ),
        )


def _same_folder(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def _channel_count(image: ImageData) -> int:
    """Channels the model sees differently: uint8 RGBA counts as RGB."""
    if image.channel_axis is None:
        return 1
    count = image.shape[image.channel_axis]
    return 3 if count == 4 and str(image.metadata.get("dtype")) == "uint8" else count


def segment_batch(
    predictor: Any,
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
    input_folder = source if source.is_dir() else source.parent
    same = _same_folder(input_folder, output_dir)
    if same and not allow_same_folder:
        raise ValueError(
            f"the output folder {output_dir} is the input folder; choose another output "
            "folder, or allow it explicitly (--allow-same-folder on the command line)"
        )
    options = _with_classes(predictor, options)
    images, unsupported = collect_inputs(source, exclude_suffix=options.suffix if same else "")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create output folder {output_dir}: {error}") from error
    report = _Report(
        output_dir,
        {
            **options.settings(),
            **(settings or {}),
            "source": str(source),
            "output_dir": str(output_dir),
        },
    )
    summary = BatchSummary(report.json_path)
    for path in unsupported:
        reason = f"unsupported file type (expected {', '.join(SUPPORTED_SUFFIXES)})"
        report.add(path, "unsupported", reason=reason)
        summary.skipped.append(path)
        yield FileSkipped(path, reason)
    reference: tuple[int, Path] | None = None
    for position, path in enumerate(images):
        output = output_path_for(path, output_dir, options)
        if output.exists() and not options.overwrite:
            report.add(path, "skipped", output, reason="output exists")
            summary.skipped.append(path)
            yield FileSkipped(path, f"output exists: {output.name}")
            continue
        start = time.perf_counter()
        total = 0
        try:
            image = read_image_lazy(path)
            total = n_slices(image)
            channels = _channel_count(image)
            if reference is not None and channels != reference[0]:
                raise ValueError(
                    f"{path.name} has {channels} channel(s) but {reference[1].name} has "
                    f"{reference[0]}; segment files with different channels in separate runs"
                )
            reference = reference or (channels, path)
            yield FileStarted(path, total, position, len(images))
            yield from segment_stack(predictor, image, output, options)
        except Exception as error:  # one bad file must not stop the batch
            reason = _failure_reason(error)
            report.add(
                path, "failed", slices=total, seconds=time.perf_counter() - start, reason=reason
            )
            summary.failed.append(path)
            yield FileFailed(path, reason)
            if isinstance(error, OSError) and error.errno in _DISK_FULL:
                summary.stopped = (
                    f"disk full while writing to {output_dir}: free some space and run again "
                    "(finished outputs are complete and will be skipped)"
                )
                break
        else:
            report.add(path, "done", output, total, time.perf_counter() - start)
            summary.done.append(path)
            yield FileDone(path, output)
        with contextlib.suppress(OSError):  # a full disk must not hide the real failure
            report.write()
    try:
        report.write(summary.stopped)
    except OSError as error:
        summary.stopped = summary.stopped or f"cannot write the report: {error}"
    yield BatchFinished(
        report.json_path,
        len(summary.done),
        len(summary.failed),
        len(summary.skipped),
        summary.stopped,
    )
    return summary


def _failure_reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        return f"disk full: {error}"
    text = str(error) or type(error).__name__
    return text if isinstance(error, ValueError | OSError) else f"{type(error).__name__}: {text}"
