"""OME-Zarr (OME-NGFF 0.4 and 0.5) and plain zarr arrays: read lazily, chunk by chunk, with
their physical scale; write label images into an image's ``labels`` group or as a store of
their own.

The NGFF metadata is read and written with zarr directly. ome-zarr-py (0.18) would do it,
but it requires ome-zarr-models, which pins pydantic below the version napari's own
dependencies install, and pulls in s3fs and aiobotocore; what this plugin needs is small:
the axes and level-0 transforms of a multiscales image, and one-level label images.

NGFF in brief: a multiscales image is a zarr group whose attributes (0.4: top level; 0.5:
under ``"ome"``) list ``axes`` (name, type, unit) and ``datasets`` (one array per level,
full resolution first, each with ``scale`` and optional ``translation`` transforms, which
compose with optional transforms of the whole multiscale). Labels live in the image's
``labels`` group, each a multiscales image with ``image-label`` metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._atomic import atomic_folder, remove_stale_temporaries
from .axes import PLANE_AXES, SPATIAL_AXES, placeholder_axes, stack_axes
from .formats import PROVENANCE_KEY
from .image import ImageData, ImageReadError
from .units import length_unit

__all__ = [
    "LABELS_GROUP",
    "NgffGeometry",
    "geometry_of",
    "is_label_image",
    "is_label_target",
    "is_ome_zarr_image",
    "label_images",
    "label_zarr_provenance",
    "open_zarr_image",
    "read_zarr_image",
    "write_label_zarr",
    "zarr_levels",
]

LABELS_GROUP = "labels"
METADATA_KEY = "ome_zarr"  # ImageData.metadata entry holding the image's NgffGeometry
WRITE_VERSION = "0.4"  # standalone label stores: zarr v2, read by most OME-Zarr tools today
_TYPES = {"T": "time", "C": "channel", **{a: "space" for a in SPATIAL_AXES}}
_LETTERS = "TCZYX"
_CHUNK_SIDE = 1024  # label chunks: one plane of up to 1024 x 1024 pixels


@dataclass(frozen=True)
class NgffGeometry:
    """Where an OME-Zarr image's full-resolution level lies: what its labels must copy."""

    version: str  # "0.4" or "0.5" (as the image's metadata says)
    zarr_format: int  # 2 (NGFF 0.4) or 3 (NGFF 0.5)
    axes: tuple[str, ...]  # the image's axis letters (ImageData's), one per array axis
    names: tuple[str, ...]  # the NGFF axis names, as written
    units: tuple[str | None, ...]  # the NGFF axis units, as written (None: none)
    scale: tuple[float, ...]  # level 0, per array axis (whole-image transforms composed)
    translation: tuple[float, ...]  # level 0, per array axis
    levels: tuple[str, ...]  # array paths of the levels, full resolution first

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NgffGeometry:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def scale_of(self, axis: str) -> float:
        return self.scale[self.axes.index(axis)] if axis in self.axes else 1.0

    def translation_of(self, axis: str) -> float:
        return self.translation[self.axes.index(axis)] if axis in self.axes else 0.0


# ---------------------------------------------------------------------------- reading
def read_zarr_image(path: str | Path, *, lazy: bool) -> ImageData:
    """An OME-Zarr image (its full-resolution level) or a plain zarr array at ``path``.

    ``lazy``: the array is a dask array with the store's chunks (nothing is read yet);
    otherwise it is read into memory.

    Raises:
        ImageReadError: not a zarr store, or a zarr group without multiscales metadata.
    """
    image = open_zarr_image(path, path=Path(path))
    if not lazy:
        image.array = np.asarray(image.array)
    return image


def open_zarr_image(store: Any, *, path: Path | None = None) -> ImageData:
    """Open a zarr store (a path or a ``zarr`` store object) as a lazy ImageData.

    Axes come from the NGFF axes (``t``/``c``/``z``/``y``/``x``; a ``channel`` type is C;
    other names get placeholder letters); the pixel size of Z, Y, X from the level-0
    scale and their unit from the axes' units. A plain array gets the default axes of its
    number of dimensions and no calibration.
    """
    import dask.array as da
    import zarr

    where = path if path is not None else store
    try:
        node = zarr.open(store=store, mode="r")
    except Exception as error:  # zarr raises several types for a missing or bad store
        raise ImageReadError(
            f"cannot read {where}: not a zarr store ({type(error).__name__}: {error})"
        ) from error
    if isinstance(node, zarr.Array):
        plain: dict[str, Any] = {"dtype": str(node.dtype)}
        return ImageData(da.from_zarr(node), stack_axes(node.ndim), None, None, path, plain)
    multiscale = _multiscale(_attributes(node))
    if multiscale is None:
        raise ImageReadError(
            f"cannot read {where}: the zarr group has no OME-NGFF 'multiscales' metadata; "
            "open the image array inside it (e.g. its '0' folder) instead"
        )
    version, entry = multiscale
    levels = tuple(str(d["path"]) for d in entry["datasets"])
    array = node[levels[0]]
    if not isinstance(array, zarr.Array):
        raise ImageReadError(f"cannot read {where}: level {levels[0]!r} is not an array")
    names, axes, units = _axes(entry.get("axes"), array.ndim)
    scale, translation = _level_transforms(entry, 0, array.ndim)
    geometry = NgffGeometry(
        version,
        int(node.metadata.zarr_format),
        tuple(axes),
        tuple(names),
        tuple(None if u is None else str(u) for u in units),
        scale,
        translation,
        levels,
    )
    spatial = [i for i, a in enumerate(axes) if a in SPATIAL_AXES]
    pixel_size, unit = None, None
    if all(a in axes for a in PLANE_AXES):
        pixel_size = tuple(scale[i] for i in spatial)
        unit = _unit_symbol(next((units[i] for i in spatial if units[i]), None))
    metadata = {"dtype": str(array.dtype), METADATA_KEY: geometry.to_dict()}
    return ImageData(da.from_zarr(array), "".join(axes), pixel_size, unit, path, metadata)


def zarr_levels(path: str | Path) -> list[Any]:
    """The levels of an OME-Zarr image as dask arrays, full resolution first (napari's
    multiscale data); a plain array is one level."""
    import dask.array as da
    import zarr

    node = zarr.open(store=str(path), mode="r")
    if isinstance(node, zarr.Array):
        return [da.from_zarr(node)]
    multiscale = _multiscale(_attributes(node))
    if multiscale is None:
        raise ImageReadError(f"cannot read {path}: no OME-NGFF 'multiscales' metadata")
    return [da.from_zarr(node[str(d["path"])]) for d in multiscale[1]["datasets"]]


def geometry_of(image: ImageData) -> NgffGeometry | None:
    """The NGFF geometry an image was read with, None for other images."""
    data = image.metadata.get(METADATA_KEY)
    return NgffGeometry.from_dict(data) if data else None


def _attributes(node: Any) -> dict[str, Any]:
    """A zarr node's attributes as plain Python values."""
    return dict(node.attrs.asdict())


def _ngff_content(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The NGFF part of a group's attributes: under ``ome`` (0.5) or at the top (0.4)."""
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, Mapping) else dict(attrs)


def _multiscale(attrs: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(NGFF version, first multiscales entry) of a group's attributes, or None."""
    ome = attrs.get("ome")
    if isinstance(ome, Mapping) and ome.get("multiscales"):  # 0.5
        return str(ome.get("version", "0.5")), dict(ome["multiscales"][0])
    entries = attrs.get("multiscales")
    if entries:  # 0.4 and earlier
        entry = dict(entries[0])
        return str(entry.get("version", "0.4")), entry
    return None


def _axes(axes: Any, ndim: int) -> tuple[list[str], list[str], list[str | None]]:
    """NGFF names, ImageData letters and units of ``ndim`` axes (default axes if absent)."""
    if not axes:
        default = list(stack_axes(ndim))
        return [a.lower() for a in default], default, [None] * ndim
    if len(axes) != ndim:
        raise ImageReadError(f"the NGFF metadata names {len(axes)} axes for a {ndim}-D array")
    names, kinds, units = [], [], []
    for axis in axes:  # 0.3 wrote plain names, 0.4+ objects
        record = axis if isinstance(axis, Mapping) else {"name": str(axis)}
        names.append(str(record["name"]))
        kinds.append(str(record.get("type", "")))
        units.append(record.get("unit"))
    letters: list[str] = []
    spare = iter(placeholder_axes(ndim))
    for name, kind in zip(names, kinds, strict=True):
        letter = "C" if kind == "channel" else name.upper()
        if len(letter) != 1 or letter not in _LETTERS or letter in letters:
            letter = next(a for a in spare if a not in letters)
        letters.append(letter)
    return names, letters, units


def _level_transforms(
    entry: Mapping[str, Any], level: int, ndim: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translation of one level, composed with the whole multiscale's."""
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for transforms in (
        entry["datasets"][level].get("coordinateTransformations", []),
        entry.get("coordinateTransformations", []),
    ):  # level first, then the multiscale's, as the spec applies them
        for transform in transforms:
            kind = transform.get("type")
            if kind == "scale" and "scale" in transform:
                factor = np.asarray(transform["scale"], dtype=float)
                scale, translation = scale * factor, translation * factor
            elif kind == "translation" and "translation" in transform:
                translation = translation + np.asarray(transform["translation"], dtype=float)
    return tuple(float(s) for s in scale), tuple(float(t) for t in translation)


def _unit_symbol(unit: Any) -> str | None:
    if unit is None:
        return None
    known = length_unit(unit)
    return known.symbol if known is not None else str(unit)


# ---------------------------------------------------------------------------- writing
def write_label_zarr(
    target: str | Path,
    labels: Any,
    axes: str,
    sizes: Mapping[str, float],
    unit: str | None,
    *,
    provenance: Mapping[str, Any] | None = None,
    like: NgffGeometry | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a label image as a one-level OME-NGFF multiscales group at ``target``.

    With ``like``, the geometry of the OME-Zarr image the labels belong to, they take its
    NGFF version, zarr format, scale and translation (channel axis dropped), so they
    overlay it exactly; into the image's labels group when ``target`` is
    ``<image>/labels/<name>`` (the name is added to the group's list). Without it, a
    standalone store (NGFF 0.4) with ``sizes`` and ``unit``.

    Args:
        labels: an unsigned integer array ``[..., Y, X]``, or a ``LabelSpool`` or another
            source of slices with its ``shape``, ``max_label`` and ``slices(dtype)``
            (written slice by slice with the smallest dtype that holds its largest label).
        axes: the labels' axis letters, e.g. ``"ZYX"``.
        provenance: what made the labels, kept under ``clip_guided_sam`` as in label TIFFs.
        overwrite: replace an existing label image at ``target``; otherwise refuse.

    The group is written into a temporary folder next to ``target`` and renamed into place,
    so ``target`` is always complete or absent.

    Raises:
        FileExistsError: ``target`` exists and ``overwrite`` is False.
    """
    from .label_writer import smallest_label_dtype

    target = Path(target)
    in_image = like is not None and is_label_target(target)
    version = like.version if like is not None else WRITE_VERSION
    zarr_format = like.zarr_format if like is not None else 2
    by_slice = not isinstance(labels, np.ndarray) and hasattr(labels, "slices")
    if by_slice:
        dtype, shape = np.dtype(smallest_label_dtype(labels.max_label)), labels.shape
    else:
        labels = np.asarray(labels)
        dtype, shape = labels.dtype, labels.shape
    multiscale = _label_multiscale(axes, sizes, unit, like, version)
    image_label: dict[str, Any] = {"version": version}
    if in_image:
        image_label["source"] = {"image": "../../"}
    attributes = _ngff_attributes(
        version, {"multiscales": [multiscale], "image-label": image_label}
    )
    if provenance:
        attributes[PROVENANCE_KEY] = dict(provenance)

    def write(folder: Path) -> None:
        import zarr

        group = zarr.open_group(str(folder), mode="w", zarr_format=_format(zarr_format))
        chunks = (1,) * (len(shape) - 2) + tuple(min(s, _CHUNK_SIDE) for s in shape[-2:])
        array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
        if by_slice:
            lead = shape[:-2]
            for flat, plane in enumerate(labels.slices(dtype)):
                array[tuple(int(i) for i in np.unravel_index(flat, lead))] = plane
        else:
            array[...] = labels
        group.attrs.update(attributes)

    if in_image:
        _ensure_labels_group(target.parent, version, zarr_format)
        # a killed earlier run's temporaries (the batch cleans only its output folder)
        remove_stale_temporaries(target.parent)
    atomic_folder(target, write, overwrite=overwrite)
    if in_image:
        _list_label(target.parent, target.name, version)
    return target


def _label_multiscale(
    axes: str,
    sizes: Mapping[str, float],
    unit: str | None,
    like: NgffGeometry | None,
    version: str,
) -> dict[str, Any]:
    known = length_unit(unit)
    ngff_axes: list[dict[str, Any]] = []
    scale, translation = [], []
    for letter in axes:
        name = letter.lower()
        if like is not None and letter in like.axes:
            name = like.names[like.axes.index(letter)]
        record: dict[str, Any] = {"name": name}
        if letter in _TYPES:
            record["type"] = _TYPES[letter]
        if like is not None and letter in like.axes:
            if (axis_unit := like.units[like.axes.index(letter)]) is not None:
                record["unit"] = axis_unit
        elif letter in SPATIAL_AXES and known is not None:
            record["unit"] = known.name  # NGFF uses UDUNITS names, as napari does
        ngff_axes.append(record)
        if like is not None:
            scale.append(like.scale_of(letter))
            translation.append(like.translation_of(letter))
        else:
            scale.append(float(sizes.get(letter, 1.0)))
            translation.append(0.0)
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if any(translation):
        transforms.append({"type": "translation", "translation": translation})
    entry: dict[str, Any] = {
        "axes": ngff_axes,
        "datasets": [{"path": "0", "coordinateTransformations": transforms}],
        "name": "labels",
    }
    if version == "0.4":
        entry["version"] = version
    return entry


def _format(zarr_format: int) -> Literal[2, 3]:
    return 3 if zarr_format == 3 else 2


def _ngff_attributes(version: str, content: dict[str, Any]) -> dict[str, Any]:
    """NGFF metadata as group attributes: top level for 0.4, under ``ome`` for 0.5."""
    if version.startswith("0.5"):
        return {"ome": {"version": version, **content}}
    return dict(content)


def _ensure_labels_group(folder: Path, version: str, zarr_format: int) -> None:
    import zarr

    try:
        zarr.open_group(str(folder), mode="r", zarr_format=_format(zarr_format))
    except Exception:  # no group yet (the folder may hold our spool file already)
        group = zarr.open_group(str(folder), mode="a", zarr_format=_format(zarr_format))
        group.attrs.update(_ngff_attributes(version, {"labels": []}))


def _list_label(folder: Path, name: str, version: str) -> None:
    """Add ``name`` to the labels group's list of label images (once)."""
    import zarr

    group = zarr.open_group(str(folder), mode="r+")
    content = _ngff_content(_attributes(group))
    content.pop("version", None)
    names = list(content.get("labels", []))
    if name not in names:
        group.attrs.update(_ngff_attributes(version, {**content, "labels": [*names, name]}))


def label_zarr_provenance(path: str | Path) -> dict[str, Any] | None:
    """What made a label image written by :func:`write_label_zarr`, or None."""
    import zarr

    record = _attributes(zarr.open_group(str(path), mode="r")).get(PROVENANCE_KEY)
    return dict(record) if isinstance(record, Mapping) else None


def label_images(path: str | Path) -> list[str]:
    """Names of the label images listed in an OME-Zarr image's labels group."""
    import zarr

    folder = Path(path) / LABELS_GROUP
    if not folder.is_dir():
        return []
    try:
        content = _ngff_content(_attributes(zarr.open_group(str(folder), mode="r")))
    except Exception:  # an unreadable labels group hides no image: list nothing
        return []
    return [str(n) for n in content.get("labels", []) if (folder / str(n)).is_dir()]


def is_ome_zarr_image(path: str | Path) -> bool:
    """Whether ``path`` is a zarr group with NGFF multiscales metadata (not a plain array)."""
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception:
        return False
    return isinstance(node, zarr.Group) and _multiscale(_attributes(node)) is not None


def is_label_target(path: str | Path) -> bool:
    """Whether ``path`` names a label image in a zarr image's labels group."""
    path = Path(path)
    return path.parent.name == LABELS_GROUP and path.parent.parent.name.lower().endswith(".zarr")


def is_label_image(path: str | Path) -> bool:
    """Whether the zarr group at ``path`` is an NGFF label image (``image-label``)."""
    import zarr

    try:
        content = _ngff_content(_attributes(zarr.open_group(str(path), mode="r")))
    except Exception:
        return False
    return "image-label" in content
