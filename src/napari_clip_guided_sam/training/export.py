"""Annotated slices of in-memory stacks as training data: a dataset, or a folder for the CLI.

A user annotates some slices of a stack (2D or more) in a labels layer. Only slices with at
least one nonzero label count as annotated. :func:`annotated_pairs` lists those slices as 2D
(image, labels) pairs in a fixed order (by file stem), :func:`training_dataset` turns them
into the same :class:`SliceDataset` the CLI builds from a folder, and
:func:`export_training_folder` writes them as such a folder (``images/``, ``labels/``,
``class_map.json``), so ``clip-guided-sam train`` on the folder sees exactly the same data.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .._atomic import atomic_write
from ..data.axes import default_axes
from ..data.class_map import ClassMap, format_class_map
from ..data.datasets import SliceDataset
from ..data.label_writer import write_labels

__all__ = [
    "AnnotatedStack",
    "ExportResult",
    "SlicePair",
    "annotated_pairs",
    "class_map_arguments",
    "export_training_folder",
    "training_dataset",
]

CLASS_MAP_FILE = "class_map.json"
IMAGES_DIR, LABELS_DIR = "images", "labels"


@dataclass(frozen=True)
class AnnotatedStack:
    """An image (2D or a stack) with its labels, as napari layers hold them.

    Attributes:
        name: used in messages and file names (e.g. the image layer's name).
        image: ``[..., Y, X]``, or ``[..., Y, X, C]`` with C 3 or 4 when ``rgb``.
        labels: integer ``[..., Y, X]``, 0 = not annotated / background.
        rgb: the image's last axis holds RGB(A) colour.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    rgb: bool = False

    def shape_problem(self) -> str | None:
        """Why the labels cannot belong to the image (None when their shapes fit)."""
        image_shape, labels_shape = tuple(np.shape(self.image)), tuple(np.shape(self.labels))
        spatial = image_shape[:-1] if self.rgb else image_shape
        if self.rgb and image_shape[-1:] not in ((3,), (4,)):
            return (
                f"{self.name!r} is marked RGB but its last axis has {image_shape[-1:]} values; "
                "expected 3 or 4 colour channels."
            )
        if spatial != labels_shape:
            return (
                f"Shape mismatch: image {self.name!r} is {_shape_text(spatial)}"
                f"{' (RGB)' if self.rgb else ''} but its labels are {_shape_text(labels_shape)}; "
                "pick a labels layer drawn on this image (same size and number of slices)."
            )
        if len(labels_shape) < 2:
            return f"{self.name!r} is not an image (shape {image_shape})."
        return None

    def check(self) -> None:
        """Raise ValueError when shapes differ, labels are not integers or have no label."""
        problem = self.shape_problem()
        if problem is not None:
            raise ValueError(problem)
        dtype = np.asarray(self.labels).dtype
        if dtype.kind not in "iub":
            raise ValueError(f"The labels of {self.name!r} are {dtype}; expected integers.")
        if not self.annotated_indices():
            raise ValueError(
                f"The labels of {self.name!r} are empty (no nonzero label on any slice): paint "
                "at least one object before training."
            )

    @property
    def leading_shape(self) -> tuple[int, ...]:
        """Sizes of the axes before Y and X (``()`` for a 2D image)."""
        return tuple(np.shape(self.labels))[:-2]

    def annotated_indices(self) -> list[tuple[int, ...]]:
        """Leading indices of the slices with at least one nonzero label, row-major."""
        labels = np.asarray(self.labels)
        if labels.ndim == 2:
            return [()] if labels.any() else []
        flags = labels.reshape(-1, *labels.shape[-2:]).any(axis=(1, 2))
        lead = labels.shape[:-2]
        return [tuple(int(i) for i in np.unravel_index(k, lead)) for k in np.flatnonzero(flags)]

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.leading_shape, dtype=np.int64))


@dataclass(frozen=True)
class SlicePair:
    """One annotated 2D slice: the file stem it is saved under, its pixels and labels."""

    stem: str
    image: np.ndarray  # [Y, X] or [Y, X, C]
    labels: np.ndarray  # [Y, X]
    source: str  # e.g. "cells Z=3"

    @property
    def axes(self) -> str:
        return "YXC" if self.image.ndim == 3 else "YX"


def annotated_pairs(stacks: Sequence[AnnotatedStack]) -> list[SlicePair]:
    """The annotated slices of all stacks (copied), sorted by file stem.

    The order is the order in which ``SliceDataset.from_folders`` lists the exported folder,
    so a dataset built from these pairs and one read from the folder are item for item equal.

    Raises:
        ValueError: a stack fails :meth:`AnnotatedStack.check`, or none is given.
    """
    if not stacks:
        raise ValueError("Choose at least one (image, labels) pair to train on.")
    pairs = []
    width = len(str(len(stacks) - 1))
    for number, stack in enumerate(stacks):
        stack.check()
        digits = [len(str(max(size - 1, 0))) for size in stack.leading_shape]
        for index in stack.annotated_indices():
            position = "_".join(f"{i:0{d}d}" for i, d in zip(index, digits, strict=True))
            stem = "_".join(p for p in (f"{number:0{width}d}", _safe(stack.name), position) if p)
            where = " ".join(f"{a}={i}" for a, i in zip(_lead_axes(index), index, strict=True))
            pairs.append(
                SlicePair(
                    stem=stem,
                    image=np.array(stack.image[index]),
                    labels=np.array(stack.labels[index]),
                    source=f"{stack.name} {where}".strip(),
                )
            )
    return sorted(pairs, key=lambda pair: pair.stem)


def training_dataset(pairs: Sequence[SlicePair], class_map: ClassMap) -> SliceDataset:
    """The dataset the CLI would read from the exported folder (same items, same order)."""
    return SliceDataset([(p.image, p.labels, p.axes) for p in pairs], class_map)


# --------------------------------------------------------------------------- class maps
def class_map_arguments(class_map: ClassMap) -> list[str]:
    """The CLI arguments that give ``class_map``: ``--class NAME`` or ``--class-map V=N,...``,
    with ``--background none`` and ``--ignore-index V`` when it has them."""
    if class_map.is_single_class:
        arguments = ["--class", class_map.class_names[0]]
    else:
        arguments = ["--class-map", format_class_map(class_map)]
        if not class_map.background:
            arguments += ["--background", "none"]
    if class_map.ignore_index is not None:
        arguments += ["--ignore-index", str(class_map.ignore_index)]
    return arguments


# --------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_training_folder` wrote."""

    folder: Path
    n_slices: int
    class_map: ClassMap

    @property
    def images(self) -> Path:
        return self.folder / IMAGES_DIR

    @property
    def labels(self) -> Path:
        return self.folder / LABELS_DIR

    def cli_arguments(self) -> list[str]:
        """``clip-guided-sam train`` data arguments for this folder."""
        data = ["--images", str(self.images), "--labels", str(self.labels)]
        return data + class_map_arguments(self.class_map)

    def cli_command(self, output: str = "run1") -> str:
        args = ["clip-guided-sam", "train", *self.cli_arguments(), "--output", output]
        return shlex.join(args)


def export_training_folder(
    folder: str | Path,
    pairs: Sequence[SlicePair],
    class_map: ClassMap,
    *,
    overwrite: bool = False,
) -> ExportResult:
    """Write annotated slices as a training folder the CLI reads.

    Layout: ``images/<stem>.tif`` (the raw slice, dtype kept; RGB(A) as an RGB TIFF),
    ``labels/<stem>.tif`` (label values kept), ``class_map.json`` and ``README.txt`` (the
    ``clip-guided-sam train`` command). Every file is written atomically.

    Args:
        overwrite: replace an earlier export in ``folder`` (its images/labels are removed
            first, so no stale slice remains); without it an existing non-empty folder is an
            error.

    Raises:
        FileExistsError: ``folder`` is not empty and ``overwrite`` is False, or it holds
            something other than an earlier export.
        ValueError: no pairs, or labels not covered by the class map.
    """
    folder = Path(folder)
    if not pairs:
        raise ValueError("Nothing to save: no slice has a nonzero label.")
    training_dataset(pairs, class_map)  # refuses labels the class map does not cover
    _prepare_folder(folder, overwrite)
    for pair in pairs:
        _write_image(folder / IMAGES_DIR / f"{pair.stem}.tif", pair.image)
        write_labels(folder / LABELS_DIR / f"{pair.stem}.tif", pair.labels, overwrite=True)
    result = ExportResult(folder, len(pairs), class_map)
    _write_text(folder / CLASS_MAP_FILE, json.dumps(class_map.to_config(), indent=2) + "\n")
    _write_text(folder / "README.txt", _readme(result, pairs))
    return result


def _prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; choose a folder for the training data.")
    if not folder.exists() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{folder} is not empty; choose a new folder, or overwrite the earlier export."
        )
    if not (folder / CLASS_MAP_FILE).is_file():
        raise FileExistsError(
            f"{folder} holds other files (no {CLASS_MAP_FILE} of an earlier export); choose a "
            "new or empty folder."
        )
    for sub in (IMAGES_DIR, LABELS_DIR):
        shutil.rmtree(folder / sub, ignore_errors=True)


def _write_image(path: Path, image: np.ndarray) -> None:
    photometric = "rgb" if image.ndim == 3 else "minisblack"
    atomic_write(
        path,
        lambda temp: tifffile.imwrite(temp, image, photometric=photometric, compression="zlib"),
    )


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def _readme(result: ExportResult, pairs: Sequence[SlicePair]) -> str:
    sources = "\n".join(f"  {p.stem}: {p.source}" for p in pairs)
    return (
        f"Training data exported by napari-clip-guided-sam: {result.n_slices} annotated "
        "slice(s).\n\nTrain on it (e.g. on a GPU machine; add --preset, --epochs, ...):\n"
        f"  {result.cli_command()}\n\nSlices:\n{sources}\n"
    )


def _safe(name: str) -> str:
    """A file-name-safe version of a layer name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "image"


def _lead_axes(index: tuple[int, ...]) -> list[str]:
    """Names of the leading axes for messages: Z, then T Z, else axis0 axis1 ..."""
    axes = default_axes(len(index) + 2)
    if axes is not None:
        return list(axes[: len(index)])
    return [f"axis{i}" for i in range(len(index))]


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)
