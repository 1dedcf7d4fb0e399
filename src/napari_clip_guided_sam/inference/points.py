"""Clicks that steer the model (manual mode), read from a CSV file per file and slice."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.formats import image_stem

__all__ = ["PointPrompts", "read_points_csv"]


@dataclass(frozen=True)
class PointPrompts:
    """Clicks that steer the model (manual mode), per file and slice.

    Attributes:
        xy: ``float [n, 2]`` (x, y) in original pixel coordinates.
        labels: ``int [n]`` 1 positive, 0 negative.
        slices: ``int [n]`` flat (row-major) slice index each point belongs to, -1 = all
            slices.
        files: file name (or stem) each point belongs to, ``""`` = all files.
    """

    xy: np.ndarray
    labels: np.ndarray
    slices: np.ndarray
    files: tuple[str, ...]

    def for_slice(self, file: str, flat_index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Points ``[m, 2]`` and labels ``[m]`` of one slice of ``file``; None if none."""
        stem = image_stem(file) if file else ""
        names = np.array(self.files, dtype=object)
        use = ((names == "") | (names == file) | (names == stem)) & (
            (self.slices == -1) | (self.slices == flat_index)
        )
        if not use.any():
            return None
        return self.xy[use], self.labels[use]

    def check_targets(self, files: Sequence[str | Path], n_slices: dict[str, int]) -> None:
        """Refuse clicks that can never be used: on a file that is not among `files`, or on
        a slice beyond the stack they belong to (`n_slices`: slice count by file name).

        A click for every file (no file column) is checked against the slice counts only
        when there is one file.

        Raises:
            ValueError: naming the click's file or slice and what exists.
        """
        names = {Path(f).name for f in files}
        stems = {image_stem(n): n for n in names}
        unknown = sorted({f for f in self.files if f and f not in names and f not in stems})
        if unknown:
            raise ValueError(
                f"the points file names {', '.join(unknown)}, which is not among the images "
                f"to segment ({', '.join(sorted(names)[:5])}{'...' if len(names) > 5 else ''}); "
                "correct the file column"
            )
        for (
            file,
            slice_,
        ) in zip(self.files, self.slices, strict=True):
            targets = [stems.get(file, file)] if file else (list(names) if len(names) == 1 else [])
            for target in targets:
                count = n_slices.get(target)
                if count is not None and slice_ >= count:
                    raise ValueError(
                        f"a click is on slice {slice_} of {target}, which has {count} "
                        f"slice(s) (0 to {count - 1}); correct the slice column"
                    )


def read_points_csv(path: str | Path) -> PointPrompts:
    """Read clicks from a CSV file.

    Two layouts are understood (header names are case-insensitive):

    - ``x,y[,label][,slice][,file]``: pixel coordinates; ``label`` 1 positive / 0
      negative (default 1); ``slice`` the 0-based slice index in a stack (default: every
      slice); ``file`` the image name or stem it belongs to (default: every file).
    - napari's Points layer export ``index,axis-0,...,axis-n[,label]``: the last two axes
      are y, x; for a stack, ``axis-0`` is the slice index.

    Raises:
        ValueError: missing columns or values that are not numbers (NaN and infinities
            included), with the line number.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError(f"points file {path} is empty; expected a header like x,y,label")
            fields = {name.strip().lower(): name for name in reader.fieldnames}
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(
            f"points file {path} is not a CSV text file ({error}); save the clicks as CSV "
            "with columns x,y[,label][,slice][,file]"
        ) from None
    axis_columns = sorted((f for f in fields if f.startswith("axis-")), key=lambda f: int(f[5:]))
    if "x" in fields and "y" in fields:
        x_col, y_col, slice_col = fields["x"], fields["y"], fields.get("slice")
    elif len(axis_columns) >= 2:
        x_col, y_col = fields[axis_columns[-1]], fields[axis_columns[-2]]
        slice_col = fields[axis_columns[0]] if len(axis_columns) == 3 else None
        if len(axis_columns) > 3:
            raise ValueError(
                f"points file {path} has {len(axis_columns)} axes; only 2D images and "
                "single-axis stacks (axis-0 = slice) are supported"
            )
    else:
        raise ValueError(
            f"points file {path} needs columns x,y (or napari's axis-0,axis-1); found "
            f"{', '.join(reader.fieldnames)}"
        )
    xy, labels, slices, files = [], [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            point = (float(row[x_col]), float(row[y_col]))
            if not all(math.isfinite(v) for v in point):
                raise ValueError(f"x, y = {point} are not finite pixel positions")
            xy.append(point)
            label = row.get(fields["label"], "1") if "label" in fields else "1"
            labels.append(int(float(label or 1)))
            value = row.get(slice_col, "") if slice_col else ""
            slices.append(int(round(float(value))) if value not in ("", None) else -1)
            if value not in ("", None) and slices[-1] < 0:
                raise ValueError(f"slice {value} is negative; slices count from 0")
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(
                f"{path} line {line}: not a number ({error}); x and y must be pixel "
                "positions, label 1 or 0, slice a slice index"
            ) from error
        files.append((row.get(fields["file"], "") or "").strip() if "file" in fields else "")
    if not xy:
        raise ValueError(f"points file {path} has a header but no points")
    bad = sorted({v for v in labels if v not in (0, 1)})
    if bad:
        raise ValueError(f"{path}: point labels must be 1 (positive) or 0 (negative), got {bad}")
    return PointPrompts(
        np.asarray(xy, np.float64), np.asarray(labels, np.int64), np.asarray(slices), tuple(files)
    )
