"""Segmenting one image or stack slice by slice, into a label TIFF, an OME-Zarr label image or
an array.

Slices are read one at a time (lazy TIFF pages or a memory map), so a stack larger than RAM
works. Label slices are spooled to a temporary file next to the output
(``data.label_writer.LabelSpool``); when the last slice is done the label TIFF/OME-TIFF
(zlib, the input's axes and pixel size) or OME-Zarr label image (a folder, renamed into
place; `data.ome_zarr`) is written and moved into place in one step. An output is therefore
always complete, and a cancelled or failed stack leaves nothing behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import atomic_write
from ...data.axes import PLANE_AXES, leading_axes, links_slices_by_default
from ...data.formats import is_ome_tiff, is_tiff, is_zarr
from ...data.image import ImageData
from ...data.label_writer import LabelSpool, smallest_label_dtype, write_label_tiff
from ...data.normalize import (
    NormalizeConfig,
    PercentileStats,
    image_percentiles,
    normalize_image_slice,
)
from ...data.ome_zarr import geometry_of, is_label_target, write_label_zarr
from ...data.reader import read_image_lazy
from ...data.slicing import iter_indices, leading_shape, n_slices
from ..instances import labels_to_instances
from ..linking import SliceLinker
from ..tiled import tiled_labels
from ..tiles import plan_tiles
from .options import SegmentOptions, SlicePredictor, with_classes
from .tile_source import SliceWindows

__all__ = [
    "SliceDone",
    "label_layout",
    "links",
    "stack_stats",
    "write_label_output",
    "iter_slice_labels",
    "iter_slice_rgb",
    "segment_stack",
    "segment_stack_to_array",
]


@dataclass(frozen=True)
class SliceDone:
    """One 2D slice of ``file`` is segmented (``index`` 0-based, of ``total``)."""

    file: Path | str
    index: int
    total: int


def iter_slice_labels(
    predictor: SlicePredictor,
    image: ImageData,
    options: SegmentOptions,
    *,
    slices: range | None = None,
    stats: PercentileStats | None = None,
) -> Iterator[np.ndarray]:
    """Label image ``[H, W]`` of each 2D slice of ``image``, in row-major slice order.

    ``slices``: only these row-major slice numbers (all when None), segmented exactly as in
    the whole stack; a range must not link instances across slices (its first slice would
    start new chains). ``stats``: the stack's percentiles (:func:`stack_stats`) when the
    caller has them; None computes them.

    Slices are read one at a time, and a slice larger than the model's input (under
    ``options.tiling``) one window at a time; the predictor's caches are cleared after each slice so
    memory does not grow with the stack. ``options.class_names`` must be resolved (see
    :func:`resolve_class_names`). Linked instances keep their id along the innermost
    leading axis (a new chain at its first slice).
    """
    if not options.class_names:
        raise ValueError("no class names: resolve them with resolve_class_names first")
    name = image.path.name if image.path is not None else ""
    table = predictor.label_table_for(options.class_names)
    values = [table.values[n] for n in options.class_names]
    linker = SliceLinker() if options.instances is not None and links(image, options) else None
    if linker is not None and slices is not None:
        raise ValueError("linked instances cannot be segmented in slice ranges")
    config = options.normalize
    stats = stats if stats is not None else stack_stats(image, config)
    names, threshold = list(options.class_names), options.threshold
    height, width = label_layout(image)[1][-2:]
    plan = plan_tiles((height, width), predictor.input_size, options.tiling)
    chosen = slices if slices is not None else range(n_slices(image))
    indices = itertools.islice(enumerate(iter_indices(image)), chosen.start, chosen.stop)
    for flat, index in indices:
        clicks = options.points.for_slice(name, flat) if options.points is not None else None
        points, point_labels = clicks if clicks is not None else (None, None)
        try:
            if plan.tiled:  # window by window: the slice is never read or held whole
                windows = SliceWindows(image, index, config, stats)
                class_labels = tiled_labels(
                    predictor, windows, plan, names, table, points, point_labels, threshold
                )
            else:
                rgb = normalize_image_slice(image, index, config, stats)
                class_labels = predictor.segment(
                    rgb, names, points, point_labels, threshold, tiling=options.tiling
                ).labels
        finally:
            predictor.clear_cache()
        labels = class_labels
        if options.instances is not None:
            labels = labels_to_instances(labels, config=options.instances, values=values)
            if linker is not None:
                if index[-1] == 0:
                    linker.restart()
                labels = linker.link(labels, class_labels)
        yield labels


def iter_slice_rgb(
    image: ImageData, config: NormalizeConfig
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """(leading index, the model's uint8 RGB input) of each 2D slice, in row-major order:
    the same normalisation as segmenting a slice that fits the model's input."""
    stats = stack_stats(image, config)
    for index in iter_indices(image):
        yield index, normalize_image_slice(image, index, config, stats)


def stack_stats(image: ImageData, config: NormalizeConfig) -> PercentileStats | None:
    """The intensity percentiles of the whole stack when `config` normalises per stack
    (else None: each slice is normalised on its own)."""
    if config.mode != "stack":
        return None
    return image_percentiles(image, config.percentiles, sample=config.sample)


def links(image: ImageData, options: SegmentOptions) -> bool:
    """Whether instance ids are linked across the slices of ``image``."""
    if options.link_slices is None:
        return links_slices_by_default(image.axes)
    return options.link_slices and bool(leading_axes(image.axes))


def label_layout(image: ImageData) -> tuple[str, tuple[int, ...]]:
    """Axes and shape of the label image of ``image``: its leading axes, then Y, X."""
    lead = leading_axes(image.axes)  # raises a clear error without Y and X
    shape = leading_shape(image) + (
        image.shape[image.axes.index("Y")],
        image.shape[image.axes.index("X")],
    )
    return lead + PLANE_AXES, shape


def segment_stack(
    predictor: SlicePredictor,
    image: ImageData | str | Path,
    output: str | Path,
    options: SegmentOptions,
) -> Generator[SliceDone, None, Path]:
    """Segment every slice of ``image`` into a label TIFF at ``output``.

    Args:
        predictor: an :class:`~napari_clip_guided_sam.inference.predictor.Predictor`.
        image: an :class:`ImageData` (numpy or dask array) or a path, opened lazily.
        output: ``.tif``/``.tiff`` or ``.ome.tif``/``.ome.tiff``, a ``.ome.zarr`` store, or
            ``<image>.ome.zarr/labels/<name>`` (the OME-Zarr image's labels group); written
            atomically with the image's leading axes, Y, X and its pixel size and unit.
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
    zarr_output = is_zarr(output) or is_label_target(output)
    if not is_tiff(output) and not zarr_output:
        raise ValueError(
            f"label output must be a .tif, .ome.tif or .ome.zarr path, or a label image in "
            f"an OME-Zarr image's labels group, got {output}"
        )
    if output.exists() and not options.overwrite:
        raise FileExistsError(f"{output} exists; allow overwriting to replace it")
    if image.path is not None and output.resolve() == Path(image.path).resolve():
        raise ValueError(f"the output {output} would replace its own input; change the suffix")
    options = with_classes(predictor, options)
    _, shape = label_layout(image)
    label = image.path or image.name
    total = n_slices(image)
    spool_dtype = np.uint32 if options.instances is not None else _class_dtype(predictor, options)
    with LabelSpool(output.parent, output.name, shape, spool_dtype) as spool:
        for index, labels in enumerate(iter_slice_labels(predictor, image, options)):
            spool.append(labels)
            yield SliceDone(label, index, total)
        write_label_output(output, spool, image, label_provenance_of(predictor), options)
    return output


def write_label_output(
    output: Path, labels: Any, image: ImageData, provenance: dict, options: SegmentOptions
) -> None:
    """Write the label image of `image` (a :class:`LabelSpool`, or anything with its
    `shape`, `max_label` and `slices(dtype)`) atomically at `output`: a label TIFF/OME-TIFF
    or an OME-Zarr label image, with the image's leading axes, Y, X, its pixel size and
    unit, in the smallest dtype that holds the largest label."""
    axes, _ = label_layout(image)
    sizes = {a: size for a in axes if (size := image.pixel_size_of(a)) is not None}
    if is_zarr(output) or is_label_target(output):
        write_label_zarr(
            output,
            labels,
            axes,
            sizes,
            image.unit,
            provenance=provenance,
            like=geometry_of(image),
            overwrite=options.overwrite,
        )
        return
    ome = is_ome_tiff(output)
    atomic_write(
        output,
        lambda temp: write_label_tiff(temp, labels, axes, sizes, image.unit, ome, provenance),
        overwrite=options.overwrite,
    )


def label_provenance_of(predictor: SlicePredictor) -> dict:
    """The model record a label file carries: the predictor's provenance without the
    checkpoint's full card (the checkpoint path and base weights identify it)."""
    return label_provenance(predictor.provenance())


def label_provenance(provenance: dict) -> dict:
    """:func:`label_provenance_of` from a predictor's `provenance()` record."""
    return {k: v for k, v in provenance.items() if k != "card"}


def segment_stack_to_array(
    predictor: SlicePredictor,
    image: ImageData,
    options: SegmentOptions,
) -> Generator[SliceDone, None, np.ndarray]:
    """Like :func:`segment_stack`, but the labels are returned as one array in memory.

    Returns:
        ``[..., H, W]`` labels (leading axes of the image, no channel axis), the smallest
        unsigned dtype that holds them.
    """
    options = with_classes(predictor, options)
    _, shape = label_layout(image)
    dtype = np.uint32 if options.instances is not None else _class_dtype(predictor, options)
    labels: np.ndarray = np.zeros(shape, dtype=dtype)
    flat = labels.reshape(-1, *shape[-2:])
    label = image.path or image.name
    for index, slice_labels in enumerate(iter_slice_labels(predictor, image, options)):
        flat[index] = slice_labels
        yield SliceDone(label, index, len(flat))
    return labels.astype(smallest_label_dtype(int(labels.max(initial=0))), copy=False)


def _class_dtype(predictor: SlicePredictor, options: SegmentOptions) -> type[np.unsignedinteger]:
    table = predictor.label_table_for(options.class_names)
    largest = max([table.unlabelled, *table.values.values()])
    return np.uint8 if largest < 256 else np.uint16
