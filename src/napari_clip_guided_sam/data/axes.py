"""Axis letters of images and labels: the one place that says which letters are spatial,
which hold channels, and which axes an array has when nothing else says so.

Letters are tifffile's, uppercase: ``T`` time, ``Z`` depth, ``C`` channels (``S`` for RGB
samples), ``Y`` and ``X`` the plane. A 2D slice is the ``Y``, ``X`` plane; every other
non-channel axis is a *leading* axis that slices are taken along.
"""

from __future__ import annotations

__all__ = [
    "CHANNEL_AXES",
    "PLANE_AXES",
    "SPATIAL_AXES",
    "default_axes",
    "leading_axes",
    "links_slices_by_default",
    "placeholder_axes",
    "stack_axes",
]

CHANNEL_AXES = "CS"
SPATIAL_AXES = "ZYX"
PLANE_AXES = "YX"

# Axes of an array without channels, by its number of dimensions.
_DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}
# Letters for leading axes that have no meaning of their own (ImageData needs unique letters).
_PLACEHOLDERS = "QRUVWABDEFGHJKLMNOP"


def default_axes(ndim: int) -> str | None:
    """``YX``, ``ZYX`` or ``TZYX`` for an array of 2, 3 or 4 dimensions; None otherwise."""
    return _DEFAULT_AXES.get(ndim)


def placeholder_axes(count: int) -> str:
    """``count`` distinct letters for leading axes without a known meaning."""
    if count > len(_PLACEHOLDERS):
        raise ValueError(f"cannot name {count} leading axes; at most {len(_PLACEHOLDERS)}")
    return _PLACEHOLDERS[:count]


def stack_axes(ndim: int) -> str:
    """Axes of a channel-free array of ``ndim`` >= 2 dimensions: the default ones, else
    placeholder letters followed by ``YX``."""
    return default_axes(ndim) or placeholder_axes(ndim - 2) + PLANE_AXES


def leading_axes(axes: str) -> str:
    """The axes iterated over to get 2D slices: all but Y, X and the channel axis.

    Raises:
        ValueError: ``axes`` lacks Y or X.
    """
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} need both Y and X to be sliced into 2D images")
    return "".join(a for a in axes if a not in PLANE_AXES + CHANNEL_AXES)


def links_slices_by_default(axes: str) -> bool:
    """Whether instance ids are linked across slices unless the user says otherwise.

    Links run along the innermost leading axis: on by default when it is depth (``Z``: a
    nucleus goes on in the next plane), off for time (``T``) and axes without a meaning.
    """
    lead = leading_axes(axes)
    return bool(lead) and lead[-1] == "Z"
