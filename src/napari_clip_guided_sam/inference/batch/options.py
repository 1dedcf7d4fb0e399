"""What a batch segmentation does, and what it needs of a predictor."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from ...data.formats import LABEL_SUFFIX
from ...data.normalize import NormalizeConfig
from ..instances import InstanceConfig
from ..points import PointPrompts
from ..tiles import TilingConfig

if TYPE_CHECKING:  # the CLI reads OUTPUT_FORMATS without loading torch
    from ...data.class_map import LabelTable
    from ..predictions import Prediction

__all__ = ["OUTPUT_FORMATS", "SegmentOptions", "SlicePredictor", "resolve_class_names"]

OutputFormat = Literal["auto", "tif", "ome.tif", "ome.zarr"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("auto", "tif", "ome.tif", "ome.zarr")


class SlicePredictor(Protocol):
    """What batch segmentation needs of a predictor (`inference.predictor.Predictor`)."""

    @property
    def closed_set_classes(self) -> list[str]:
        """Class names a fine-tuned checkpoint brought (empty: none)."""
        ...

    def segment(
        self,
        rgb: np.ndarray,
        class_names: Sequence[str],
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        threshold: float = 0.5,
        *,
        tiling: TilingConfig | None = None,
    ) -> Prediction:
        """Masks of one uint8 RGB [H, W, 3] image for the class names."""
        ...

    def set_image(self, rgb: np.ndarray) -> str:
        """Make one window the current image (tiled slices, `inference.tiled`)."""
        ...

    def similarity_range(self, class_names: Sequence[str]) -> np.ndarray:
        """Raw (low, high) similarity of the current image to each class: [K, 2]."""
        ...

    def predict(
        self,
        class_names: Sequence[str],
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        threshold: float = 0.5,
        *,
        similarity_bounds: np.ndarray | None = None,
    ) -> Prediction:
        """Masks of the current image (one window of a tiled slice)."""
        ...

    @property
    def input_size(self) -> int:
        """Side of the model's square input: the size of a tile's window."""
        ...

    def clear_cache(self) -> None:
        """Drop what was computed for earlier images."""
        ...

    def provenance(self) -> dict[str, Any]:
        """What model this is: preset, adapter state, checkpoint, classes, base weights."""
        ...

    def label_table_for(self, class_names: Sequence[str]) -> LabelTable:
        """The label value each class gets in the output (and that of unlabelled pixels)."""
        ...


@dataclass(frozen=True)
class SegmentOptions:
    """What to segment and how to write it.

    Attributes:
        class_names: class prompts, e.g. ``("nucleus",)``; empty = the classes a
            fine-tuned checkpoint was trained on. Label ``k + 1`` is ``class_names[k]``,
            except that classes of a checkpoint keep the label values they were trained
            with (the predictor's ``label_table_for``; written to the report).
        threshold: mask probability above which a pixel takes its most probable class.
        instances: split each class mask into instances (one id per object, numbered per
            slice: class 1's objects first); None writes class labels.
        normalize: how slices become the model's RGB input (per-slice percentiles by
            default; channel choice for multichannel images).
        link_slices: with ``instances``, link each slice's instances to the previous
            slice's by overlap so an object keeps one id through the stack (along the
            innermost leading axis; `inference.linking`); None: on for Z, off for T
            (`data.axes.links_slices_by_default`).
        points: optional clicks (manual mode) from :func:`~.points.read_points_csv`.
        tiling: whether and how slices larger than the model's input are segmented in
            overlapping windows (automatic by default: above 1.5 times the input size;
            `inference.tiles.TilingConfig`).
        output_format: ``"auto"`` writes OME-TIFF for OME-TIFF input, a label image in the
            image's ``labels`` group for OME-Zarr input, TIFF otherwise; ``"ome.zarr"`` a
            standalone OME-Zarr label store.
        suffix: added to the input's stem to name its output, e.g. ``a_labels.tif``.
        overwrite: redo files whose output exists (otherwise they are skipped).
    """

    class_names: tuple[str, ...] = ()
    threshold: float = 0.5
    instances: InstanceConfig | None = None
    link_slices: bool | None = None
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    points: PointPrompts | None = None
    tiling: TilingConfig = field(default_factory=TilingConfig)
    output_format: OutputFormat = "auto"
    suffix: str = LABEL_SUFFIX
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got "
                f"{self.output_format!r}"
            )
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if any(c in self.suffix for c in ("/", "\\", "\0")) or self.suffix in (".", ".."):
            raise ValueError(
                f"the suffix {self.suffix!r} must be part of a file name (no / or \\): outputs "
                "are written inside the output folder only"
            )
        if self.link_slices and self.instances is None:
            raise ValueError("linking slices needs instances: choose an instance method")

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON values, for the report."""
        return {
            "class_names": list(self.class_names),
            "threshold": self.threshold,
            "instances": asdict(self.instances) if self.instances else None,
            "link_slices": self.link_slices,
            "normalize": asdict(self.normalize),
            "points": int(len(self.points.xy)) if self.points is not None else 0,
            "tiling": self.tiling.settings(),
            "output_format": self.output_format,
            "suffix": self.suffix,
            "overwrite": self.overwrite,
        }


def resolve_class_names(predictor: SlicePredictor, class_names: Sequence[str]) -> tuple[str, ...]:
    """The class names to segment: the given ones, else the checkpoint's closed set.

    Raises:
        ValueError: no names given and the model brings none, or a name the model refuses
            (too long, reserved such as "background"; `model.guide.validate_class_names`).
    """
    from ...model.guide import validate_class_names  # torch: not for the CLI's parser

    names = tuple(n.strip() for n in class_names if n.strip())
    if names:
        validate_class_names(names)
        return names
    closed = tuple(predictor.closed_set_classes)
    if not closed:
        raise ValueError(
            "no class names given and the model has no trained classes: name at least one "
            "class, e.g. 'nucleus'"
        )
    return closed


def with_classes(predictor: SlicePredictor, options: SegmentOptions) -> SegmentOptions:
    """``options`` with its class names resolved (see :func:`resolve_class_names`)."""
    return dataclasses.replace(
        options, class_names=resolve_class_names(predictor, options.class_names)
    )
