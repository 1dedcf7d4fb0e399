"""Image/label IO, intensity normalisation, datasets of slices and augmentation.

``io``, ``normalize`` and ``transforms`` need only numpy/tifffile/Pillow; ``datasets``
imports torch and is loaded on first access of its names.
"""

from .io import (
    SUPPORTED_SUFFIXES,
    ImageData,
    ImageReadError,
    StemMatches,
    image_stem,
    list_images,
    match_by_stem,
    read_image,
    read_image_lazy,
    write_labels,
)
from .label_writer import LabelSpool, label_tiff_kwargs, write_label_tiff
from .normalize import (
    NormalizeConfig,
    PercentileStats,
    image_percentiles,
    iter_indices,
    leading_axes,
    leading_shape,
    n_slices,
    normalize_image_slice,
    slice_view,
    spatial_iter,
    stack_percentiles,
    take_slice,
    to_model_rgb,
)
from .transforms import RandomFlipRotate, flip_rotate, random_flip_rotate

_DATASET_NAMES = ("ClassMap", "Sample", "SliceDataset", "infer_axes", "train_val_split")

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "LabelSpool",
    "NormalizeConfig",
    "PercentileStats",
    "RandomFlipRotate",
    "StemMatches",
    "flip_rotate",
    "image_percentiles",
    "image_stem",
    "label_tiff_kwargs",
    "iter_indices",
    "leading_axes",
    "leading_shape",
    "list_images",
    "match_by_stem",
    "n_slices",
    "normalize_image_slice",
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
