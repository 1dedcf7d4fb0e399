"""One large stack as several dask tasks: its slices split into ranges (docs/scaling.md).

The client (the process running the batch) creates a scratch zarr array next to the
output, one slice per chunk, and sends one task per range of slices; each worker segments
its range with the serial run's per-slice path (:func:`.stack.iter_slice_labels`, with the
stack-wide intensity percentiles the client computed once) and writes its own slices, so
workers write disjoint chunks without locks. A range a dead worker left half done is run
again and rewrites its slices. When every range has succeeded, the client writes the
output with the serial run's writer (:func:`.stack.write_label_output`: the same format,
dtype, axes, scale and provenance), atomically, and removes the scratch array; a failed
range leaves no output.

Instances linked across slices cannot be split (each range would start new chains), so
such a stack stays one task, as does a stack of at most `slices_per_task` slices.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import ensure_folder, temporary_folder
from ...data.image import ImageData
from ...data.slicing import leading_shape, n_slices
from .options import SegmentOptions, SlicePredictor
from .stack import iter_slice_labels, label_layout, links

__all__ = ["DEFAULT_SLICES_PER_TASK", "ScratchLabels", "plan_ranges", "segment_range", "splits"]

DEFAULT_SLICES_PER_TASK = 16


def splits(image: ImageData, options: SegmentOptions, slices_per_task: int | None) -> bool:
    """Whether a cluster run splits `image` into ranges of `slices_per_task` slices: it
    has more slices than that and its instances are not linked across slices."""
    if slices_per_task is None or n_slices(image) <= slices_per_task:
        return False
    return options.instances is None or not links(image, options)


def plan_ranges(total: int, slices_per_task: int) -> list[range]:
    """Consecutive ranges of at most `slices_per_task` of `total` slices."""
    if slices_per_task < 1:
        raise ValueError(f"slices per task must be at least 1, got {slices_per_task}")
    return [range(s, min(s + slices_per_task, total)) for s in range(0, total, slices_per_task)]


@dataclass
class ScratchLabels:
    """The scratch zarr array (uint32, one slice per chunk) the ranges of one stack are
    written into, in a temporary folder next to `output`; also the source the output is
    written from (`shape`, `max_label`, `slices(dtype)`, as a `LabelSpool`)."""

    folder: Path
    shape: tuple[int, ...]
    max_label: int = 0
    done: set[int] = field(default_factory=set)

    @classmethod
    def create(cls, output: Path, image: ImageData) -> ScratchLabels:
        import zarr

        _, shape = label_layout(image)
        folder = temporary_folder(ensure_folder(output.parent), output.name, "spool")
        chunks = (1,) * (len(shape) - 2) + shape[-2:]
        zarr.open_array(
            str(folder), mode="w", shape=shape, chunks=chunks, dtype=np.uint32,
            fill_value=0, zarr_format=2,
        )  # fmt: skip
        return cls(folder, shape)

    def slices(self, dtype: Any) -> Iterator[np.ndarray]:
        import zarr

        array = zarr.open_array(str(self.folder), mode="r")
        lead = self.shape[:-2]
        for flat in range(int(np.prod(lead, dtype=np.int64))):
            yield np.asarray(array[_position(flat, lead)]).astype(dtype, copy=False)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def segment_range(
    predictor: SlicePredictor,
    image: ImageData,
    scratch: Path,
    slices: range,
    options: SegmentOptions,
    stats: Any,
) -> int:
    """On a worker: segment `slices` of `image` into the scratch array at `scratch` (each
    slice its own chunk); returns the range's largest label."""
    import zarr

    array = zarr.open_array(str(scratch), mode="r+")
    lead = leading_shape(image)
    top = 0
    labels_of = iter_slice_labels(predictor, image, options, slices=slices, stats=stats)
    for flat, labels in zip(slices, labels_of, strict=True):
        array[_position(flat, lead)] = labels
        top = max(top, int(labels.max(initial=0)))
    return top


def _position(flat: int, lead: tuple[int, ...]) -> tuple[int, ...]:
    """The leading index of row-major slice number `flat`."""
    return tuple(int(i) for i in np.unravel_index(flat, lead))
