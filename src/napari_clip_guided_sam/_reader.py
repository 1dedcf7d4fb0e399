"""npe2 readers: label TIFFs written by this plugin open as Labels on their image's grid;
OME-Zarr images open with their levels, physical scale and label images.

A label file `cells_labels.tif` belongs to the image `cells.*`. When that image is open in
the viewer, the labels take its layer's scale, translate and units, so they overlay it
however it was opened (napari's own TIFF reader opens images at scale 1, other readers at
their pixel size). Without the image, the labels open at the pixel size stored in the file.
Only files named like our outputs (`*_labels.tif`…) are claimed; napari offers this reader
first in its "choose reader" dialog for those.

A `*.zarr` / `*.ome.zarr` folder opens lazily (dask arrays over the store's chunks): an
OME-Zarr image as one multiscale Image layer (full resolution first, at its NGFF scale and
translation) followed by a Labels layer per label image in its `labels` group, which
overlay it; a label image or a standalone label store as Labels; a plain array as an Image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data.axes import SPATIAL_AXES
from .data.formats import LABEL_SUFFIX, image_stem, is_tiff, is_zarr
from .data.image import ImageData
from .data.ome_zarr import (
    LABELS_GROUP,
    geometry_of,
    is_label_image,
    label_images,
    read_zarr_image,
    zarr_levels,
)
from .data.reader import read_image, read_image_lazy
from .data.units import length_unit

EAGER_LOAD_BYTES = 512 * 2**20  # larger label outputs open lazily (memory-mapped)


def get_label_output_reader(path: str | list[str]):
    """npe2 reader: label files written by `segment` open as Labels on their image's grid."""
    if isinstance(path, list) or not is_label_output(path):
        return None
    return read_label_output


def is_label_output(path: str) -> bool:
    """Whether `path` is named like a label file of `segment` (`a_labels.tif`, ...)."""
    return is_tiff(path) and image_stem(path).endswith(LABEL_SUFFIX)


def read_label_output(path: str) -> list[tuple]:
    """``[(labels, {"scale", "translate", "units", "name"}, "labels")]`` for one label TIFF."""
    image = read_label_file(path)
    attributes: dict[str, Any] = {"name": Path(path).name.split(".")[0]}
    grid = _open_image_grid(path, tuple(image.array.shape))
    if grid is not None:
        attributes.update(grid)
    else:
        attributes["scale"] = [image.pixel_size_of(a) or 1.0 for a in image.axes]
        unit = length_unit(image.unit)
        if unit is not None and set(image.axes) <= set(SPATIAL_AXES):
            attributes["units"] = unit.name
    return [(image.array, attributes, "labels")]


def read_label_file(path: str | Path):
    """The label file as ImageData: in memory when small, memory-mapped when large."""
    small = Path(path).stat().st_size < EAGER_LOAD_BYTES
    return read_image(path) if small else read_image_lazy(path)


def _open_image_grid(path: str | Path, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """Scale, translate and units of the image the labels were made from, when it is open
    in the current viewer (same name stem, its last axes of the labels' shape)."""
    import napari
    from napari.layers import Image

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    stem = image_stem(path)[: -len(LABEL_SUFFIX)]
    for layer in viewer.layers:
        if not isinstance(layer, Image) or not _named(layer, stem):
            continue
        data_shape = tuple(layer.data[0].shape if layer.multiscale else layer.data.shape)
        grid = data_shape[:-1] if layer.rgb else data_shape
        if len(grid) >= len(shape) and grid[len(grid) - len(shape) :] == shape:
            last = slice(len(grid) - len(shape), None)
            return {
                "scale": list(layer.scale[last]),
                "translate": list(layer.translate[last]),
                "units": [str(unit) for unit in layer.units[last]],
            }
    return None


def _named(layer, stem: str) -> bool:
    source = layer.source.path
    return layer.name == stem or (bool(source) and image_stem(source) == stem)


def get_zarr_reader(path: str | list[str]):
    """npe2 reader: a zarr store (a folder named `*.zarr`) opens as layers, lazily."""
    if isinstance(path, list) or not is_zarr(path) or not Path(path).is_dir():
        return None
    return read_zarr_layers


def read_zarr_layers(path: str) -> list[tuple]:
    """The layers of a zarr store: image (multiscale) and its label images, or labels."""
    image = read_zarr_image(path, lazy=True)
    name = image_stem(path)
    if is_label_image(path):
        return [_zarr_labels_layer(path, name)]
    levels = zarr_levels(path)
    data = levels if len(levels) > 1 else levels[0]
    attributes = {"name": name, **_zarr_grid(image)}
    layers: list[tuple] = [(data, attributes, "image")]
    for label in label_images(path):
        layers.append(_zarr_labels_layer(Path(path) / LABELS_GROUP / label, label))
    return layers


def _zarr_labels_layer(path: str | Path, name: str) -> tuple:
    labels = read_zarr_image(path, lazy=True)
    return (labels.array, {"name": name, **_zarr_grid(labels)}, "labels")


def _zarr_grid(image: ImageData) -> dict[str, Any]:
    """Scale, translate and (for an all-spatial image) units of a zarr image's layer."""
    geometry = geometry_of(image)
    if geometry is None:
        return {}
    grid: dict[str, Any] = {
        "scale": list(geometry.scale),
        "translate": list(geometry.translation),
    }
    unit = length_unit(image.unit)
    if unit is not None and set(image.axes) <= set(SPATIAL_AXES):
        grid["units"] = unit.name
    return grid
