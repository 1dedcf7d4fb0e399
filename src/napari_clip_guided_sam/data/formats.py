"""Image file types and names: which files are read, how TIFF and OME-TIFF are told apart,
the stem an image's outputs are named after, and file names as printable text.

A zarr store (OME-Zarr or a plain array) is a folder named ``*.zarr`` / ``*.ome.zarr``; it
counts as one image file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "LABEL_SUFFIX",
    "OME_SUFFIXES",
    "PIL_SUFFIXES",
    "PROVENANCE_KEY",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "UNSUPPORTED",
    "ZARR_SUFFIXES",
    "image_stem",
    "is_image_path",
    "is_ome_tiff",
    "is_supported",
    "is_tiff",
    "is_zarr",
    "printable",
]

OME_SUFFIXES = (".ome.tif", ".ome.tiff")
TIFF_SUFFIXES = (".tif", ".tiff", *OME_SUFFIXES)
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ZARR_SUFFIXES = (".ome.zarr", ".zarr")  # folders
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + ZARR_SUFFIXES

LABEL_SUFFIX = "_labels"  # end of the stem of label files this plugin writes: a_labels.tif
# The metadata entry naming the model that made a label file (TIFF or OME-Zarr).
PROVENANCE_KEY = "clip_guided_sam"
UNSUPPORTED = f"unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"


def _lower_name(path: str | Path) -> str:
    return Path(path).name.lower()


def is_supported(path: str | Path) -> bool:
    """True if the file name ends in one of :data:`SUPPORTED_SUFFIXES` (any case)."""
    return _lower_name(path).endswith(SUPPORTED_SUFFIXES)


def is_tiff(path: str | Path) -> bool:
    """True for ``.tif``/``.tiff`` names, OME-TIFF included (any case)."""
    return _lower_name(path).endswith(TIFF_SUFFIXES)


def is_ome_tiff(path: str | Path) -> bool:
    """True for ``.ome.tif``/``.ome.tiff`` names (any case)."""
    return _lower_name(path).endswith(OME_SUFFIXES)


def is_zarr(path: str | Path) -> bool:
    """True for ``.zarr``/``.ome.zarr`` names (any case): a zarr store, a folder."""
    return _lower_name(path).endswith(ZARR_SUFFIXES)


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` is one image to read: a supported file, or a zarr store (folder)."""
    path = Path(path)
    if is_zarr(path):
        return path.is_dir()
    return is_supported(path) and path.is_file()


def image_stem(path: str | Path) -> str:
    """File name without its image suffix; ``a.ome.tif`` -> ``a``, ``a.png`` -> ``a``."""
    name = Path(path).name
    lower = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def printable(text: str | os.PathLike[str]) -> str:
    """A path (or a text holding paths) as valid Unicode for messages, CSV and JSON.

    Any name the operating system accepts can be processed; bytes of a name that are not
    UTF-8 (held by Python as surrogate escapes) are written as ``\\xNN``, e.g. ``b\\xff.png``.
    """
    text = os.fspath(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that no file name produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
