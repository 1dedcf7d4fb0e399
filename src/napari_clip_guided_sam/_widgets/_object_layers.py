"""The layers of the object workflow (no Qt): boxes, the current object's preview, the
committed objects, and their class table.

Like the plugin's other outputs they carry its metadata marker, so the plugin only ever
updates layers it made. The committed layer holds one id per object and names each id's
class in its features (columns ``index`` and ``class``); the training widget offers it as
annotated labels and reads its classes from that table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points, Shapes

from ..data.class_map import ClassMap
from ..inference.objects import rectangle_to_box
from ._layers import (
    ImageGeometry,
    find_output,
    free_name,
    is_on_slice,
    output_metadata,
    output_role,
)

BOXES, PREVIEW, COMMITTED = "boxes", "object preview", "committed"
BOX_COLOR = "yellow"


def boxes_output(viewer, image: Image, geometry: ImageGeometry) -> Shapes:
    """The plugin's shapes layer of box prompts for `image`, created on first use."""
    layer = find_output(viewer, BOXES, image, Shapes)
    if layer is not None:
        return layer
    layer = viewer.add_shapes(
        None,
        ndim=len(geometry.labels_shape),
        name=free_name(viewer, f"{image.name} boxes"),
        scale=geometry.scale,
        translate=geometry.translate,
        edge_color=BOX_COLOR,
        face_color="transparent",
        edge_width=max(1.0, min(geometry.labels_shape[-2:]) / 128),
        metadata=output_metadata(BOXES, image),
    )
    return layer


def boxes_for_slice(geometry: ImageGeometry, layer: Shapes, index: tuple[int, ...]) -> np.ndarray:
    """The rectangles of `layer` on one slice as boxes ``float [m, 4]`` (x0, y0, x1, y1) in
    pixels; other shapes (ellipses, paths...) are no boxes and are left out."""
    boxes = []
    for vertices, kind in zip(layer.data, layer.shape_type, strict=True):
        if kind != "rectangle":
            continue
        coords = geometry.to_labels_data(layer, vertices)
        if is_on_slice(coords[:1], index)[0]:
            boxes.append(rectangle_to_box(coords[:, -2:]))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def remove_on_slice(geometry: ImageGeometry, layer: Points | Shapes, index: tuple[int, ...]) -> int:
    """Delete the points or shapes of `layer` that lie on slice `index`; returns how many."""
    if isinstance(layer, Points):
        on_slice = is_on_slice(geometry.to_labels_data(layer), index)
    else:
        on_slice = np.array(
            [is_on_slice(geometry.to_labels_data(layer, v)[:1], index)[0] for v in layer.data],
            dtype=bool,
        )
    chosen = {int(i) for i in np.flatnonzero(on_slice)}
    if chosen:
        layer.selected_data = chosen
        layer.remove_selected()
    return len(chosen)


def preview_output(viewer, image: Image, geometry: ImageGeometry) -> Labels:
    """The plugin's labels layer showing the current object(s) before they are committed."""
    layer = find_output(viewer, PREVIEW, image, Labels, geometry.labels_shape)
    if layer is not None:
        return layer
    return viewer.add_labels(
        np.zeros(geometry.labels_shape, dtype=np.uint8),
        name=free_name(viewer, f"{image.name} object preview"),
        scale=geometry.scale,
        translate=geometry.translate,
        opacity=0.5,
        metadata=output_metadata(PREVIEW, image),
    )


def show_preview(layer: Labels, index: tuple[int, ...], masks: np.ndarray | None) -> None:
    """Show the masks ``bool [N, H, W]`` of the current objects on slice `index` as 1..N
    (later objects on top); None or no masks clears the preview."""
    data = np.zeros(layer.data.shape, dtype=layer.data.dtype)
    if masks is not None:
        for number, mask in enumerate(masks, start=1):
            data[index][mask] = min(number, np.iinfo(data.dtype).max)
    layer.data = data


def committed_output(viewer, image: Image, geometry: ImageGeometry) -> Labels:
    """The plugin's labels layer of committed objects for `image`, created on first use."""
    layer = find_output(viewer, COMMITTED, image, Labels, geometry.labels_shape)
    if layer is not None:
        return layer
    return viewer.add_labels(
        np.zeros(geometry.labels_shape, dtype=np.uint32),
        name=free_name(viewer, f"{image.name} objects"),
        scale=geometry.scale,
        translate=geometry.translate,
        metadata=output_metadata(COMMITTED, image),
        features=pd.DataFrame({"index": [0], "class": ["background"]}),
    )


def is_committed_objects(layer) -> bool:
    """Whether the layer is the plugin's layer of committed objects (annotations the user
    accepted, unlike the plugin's other outputs)."""
    return isinstance(layer, Labels) and output_role(layer) == COMMITTED


def feature_classes(layer) -> dict[int, str]:
    """``{label value: class name}`` from a labels layer's features (columns ``index`` and
    ``class``; the background row 0 is left out); empty without such a table."""
    features = layer.features
    if not {"index", "class"} <= set(features.columns):
        return {}
    return {
        int(value): str(name)
        for value, name in zip(features["index"], features["class"], strict=True)
        if int(value) != 0 and isinstance(name, str) and name.strip()
    }


def feature_class_map(layer) -> ClassMap | None:
    """The class map a labels layer's class table gives: one class for all its objects
    (any id, as instance labels), or each id's class; None without a table."""
    classes = feature_classes(layer)
    if not classes:
        return None
    names = set(classes.values())
    if len(names) == 1:
        return ClassMap.single_class(names.pop())
    return ClassMap(classes)
