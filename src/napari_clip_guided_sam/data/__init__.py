"""Image/label IO, axes and units, class maps, normalisation, datasets of slices, augmentation.

All modules but ``datasets`` need only numpy/tifffile/Pillow; ``datasets`` imports torch
and is loaded on first access of its names.
"""

from .axes import CHANNEL_AXES, SPATIAL_AXES, default_axes, leading_axes
from .class_map import ClassMap, format_class_map, parse_class_map, parse_class_names
from .folders import StemMatches, list_images, match_by_stem
from .formats import SUPPORTED_SUFFIXES, image_stem, is_ome_tiff, is_supported, is_tiff
from .image import ImageData, ImageReadError
from .label_writer import LabelSpool, label_tiff_kwargs, write_label_tiff, write_labels
from .normalize import (
    NormalizeConfig,
    PercentileStats,
    image_percentiles,
    normalize_image_slice,
    stack_percentiles,
    to_model_rgb,
)
from .reader import read_image, read_image_lazy
from .slicing import iter_indices, leading_shape, n_slices, slice_view, spatial_iter, take_slice
from .transforms import RandomFlipRotate, flip_rotate, random_flip_rotate
from .units import LengthUnit, length_unit

_DATASET_NAMES = ("Sample", "SliceDataset", "infer_axes", "train_val_split")

__all__ = [
    "CHANNEL_AXES",
    "SPATIAL_AXES",
    "SUPPORTED_SUFFIXES",
    "ClassMap",
    "ImageData",
    "ImageReadError",
    "LabelSpool",
    "LengthUnit",
    "NormalizeConfig",
    "PercentileStats",
    "RandomFlipRotate",
    "StemMatches",
    "default_axes",
    "flip_rotate",
    "format_class_map",
    "image_percentiles",
    "image_stem",
    "is_ome_tiff",
    "is_supported",
    "is_tiff",
    "iter_indices",
    "label_tiff_kwargs",
    "leading_axes",
    "leading_shape",
    "length_unit",
    "list_images",
    "match_by_stem",
    "n_slices",
    "normalize_image_slice",
    "parse_class_map",
    "parse_class_names",
    "random_flip_rotate",
    "read_image",
    "read_image_lazy",
    "slice_view",
    "spatial_iter",
    "stack_percentiles",
    "take_slice",
    "to_model_rgb",
    "write_label_tiff",
    "write_labels",
    *_DATASET_NAMES,
]


def __getattr__(name: str):
    """Load ``datasets`` (and torch) only when one of its names is used."""
    if name in _DATASET_NAMES:
        from . import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
