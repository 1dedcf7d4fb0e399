"""How the plugin reads napari image and prompt layers and writes its output layers (no Qt).

An image layer is seen as leading axes (stack, time...), then Y and X; RGB layers carry their
channels in a last axis, other multichannel layers in a leading axis the user picks. The
plugin's output layers (labels, similarity maps, prompts) carry a metadata marker, so the
plugin updates its own layers and never a user's layer of the same name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points

from ..data.normalize import to_model_rgb
from ..inference.predictions import Prediction

MARKER = "napari_clip_guided_sam"  # metadata key of the layers this plugin created
POSITIVE, NEGATIVE = "positive", "negative"
POINT_COLORS = {POSITIVE: "lime", NEGATIVE: "red"}


def full_resolution(layer):
    """The layer's data at full resolution (the first level of a multiscale layer)."""
    return layer.data[0] if layer.multiscale else layer.data


@dataclass(frozen=True)
class ImageGeometry:
    """The axes of an image layer as the plugin uses them."""

    shape: tuple[int, ...]  # data shape (full-resolution level)
    rgb: bool
    channel_axis: int | None  # a leading axis of channels (non-RGB layers only)
    scale: tuple[float, ...]  # per labels axis (channel axes removed)
    translate: tuple[float, ...]

    @classmethod
    def of(cls, layer: Image, channel_axis: int | None = None) -> ImageGeometry:
        """Geometry of `layer`; `channel_axis` must be a leading axis of a non-RGB layer."""
        data = full_resolution(layer)
        shape = tuple(int(s) for s in data.shape)
        spatial_ndim = len(shape) - (1 if layer.rgb else 0)
        if spatial_ndim < 2:
            raise ValueError(f"Layer {layer.name!r} is not an image (shape {shape}).")
        scale, translate = list(layer.scale), list(layer.translate)
        if channel_axis is not None:
            if layer.rgb:
                raise ValueError(
                    f"{layer.name!r} is an RGB layer: its channels are the last axis; set "
                    "'Channel axis' to none."
                )
            if not 0 <= channel_axis < spatial_ndim - 2:
                raise ValueError(
                    f"Channel axis {channel_axis} is not a leading axis of {layer.name!r} "
                    f"(shape {shape}); the last two axes are Y and X."
                )
            del scale[channel_axis], translate[channel_axis]
        return cls(shape, bool(layer.rgb), channel_axis, tuple(scale), tuple(translate))

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of a labels layer for this image: channel axes removed."""
        shape = list(self.shape[:-1] if self.rgb else self.shape)
        if self.channel_axis is not None:
            del shape[self.channel_axis]
        return tuple(shape)

    @property
    def leading_shape(self) -> tuple[int, ...]:
        """Sizes of the axes iterated over to get 2D slices."""
        return self.labels_shape[:-2]

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.leading_shape, dtype=np.int64))

    def slice_indices(self) -> list[tuple[int, ...]]:
        """Every leading index, row-major (`[()]` for a 2D image)."""
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.leading_shape)]

    def current_index(self, layer: Image, world_point: Sequence[float]) -> tuple[int, ...]:
        """The leading index of the slice shown at the viewer's current position."""
        position = list(layer.world_to_data(world_point))
        if self.channel_axis is not None:
            del position[self.channel_axis]
        lead = position[: len(self.leading_shape)]
        return tuple(
            int(np.clip(round(float(p)), 0, size - 1))
            for p, size in zip(lead, self.leading_shape, strict=True)
        )

    def slice_rgb(
        self, layer: Image, index: tuple[int, ...], channels: Sequence[int] | None = None
    ) -> np.ndarray:
        """The model's uint8 RGB [H, W, 3] input for one slice (via `to_model_rgb`)."""
        data = full_resolution(layer)
        lead = iter(index)
        n_lead = len(self.shape) - (3 if self.rgb else 2)
        key = [slice(None) if axis == self.channel_axis else next(lead) for axis in range(n_lead)]
        plane = np.asarray(data[tuple(key)])
        if self.rgb:
            return to_model_rgb(plane, channel_axis=-1, channels=channels)
        if self.channel_axis is not None:
            return to_model_rgb(plane, channel_axis=0, channels=channels)
        if channels:
            raise ValueError("Channels were chosen but the image has no channel axis.")
        return to_model_rgb(plane)

    def to_labels_data(self, layer, coords: np.ndarray | None = None) -> np.ndarray:
        """Coordinates of `layer` (its points, or `coords` given in its data frame) in this
        image's labels-data coordinates: [n, labels ndim].

        Goes through world coordinates with scale and translate (rotations are ignored);
        a layer with fewer axes than the image gets NaN leading coordinates.
        """
        points = np.asarray(layer.data if coords is None else coords, dtype=np.float64)
        points = points.reshape(-1, layer.ndim)
        world = points * np.asarray(layer.scale) + np.asarray(layer.translate)
        ndim = len(self.labels_shape)
        if world.shape[1] < ndim:
            pad = np.full((world.shape[0], ndim - world.shape[1]), np.nan)
            world = np.concatenate([pad, world], axis=1)
        world = world[:, -ndim:]
        return (world - np.asarray(self.translate)) / np.asarray(self.scale)

    def points_for_slice(
        self, layer: Points, index: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Clicks on one slice: (x, y) [n, 2] in pixels and labels [n] (1 pos, 0 neg)."""
        coords = self.to_labels_data(layer)
        on_slice = is_on_slice(coords, index)
        labels = point_labels(layer)[on_slice]
        return coords[on_slice][:, ::-1][:, :2].copy(), labels


def is_on_slice(coords: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Which labels-data coordinates [n, ndim] lie on the slice `index` (NaN leading
    coordinates, from a layer with fewer axes, lie on every slice): bool [n]."""
    lead = np.asarray(coords)[:, : len(index)]
    return np.all(np.isnan(lead) | (np.round(lead) == np.asarray(index)), axis=1)


def point_labels(layer: Points) -> np.ndarray:
    """1 for positive clicks, 0 for negative ones (all positive without a `label` feature)."""
    if "label" not in layer.features:
        return np.ones(len(layer.data), dtype=np.int64)
    return (layer.features["label"].astype(str).to_numpy() != NEGATIVE).astype(np.int64)


# ---------------------------------------------------------------------------- output layers
def _marker(layer) -> dict | None:
    value = layer.metadata.get(MARKER) if isinstance(layer.metadata, dict) else None
    return value if isinstance(value, dict) else None


def output_role(layer) -> str | None:
    """The role of a layer this plugin made ("labels", "prompts"...), None for others."""
    marker = _marker(layer)
    return None if marker is None else marker.get("role")


def is_plugin_output(layer) -> bool:
    """Whether this plugin made the layer (such layers are never offered as input)."""
    return isinstance(layer.metadata, dict) and MARKER in layer.metadata


def layer_named(viewer, name: str, kind: type):
    """The layer called `name` if it is a `kind` layer, else None."""
    if name and name in viewer.layers and isinstance(viewer.layers[name], kind):
        return viewer.layers[name]
    return None


def find_output(viewer, role: str, image: Image, kind: type, shape=None):
    """The layer of `role` this plugin made for `image` (None if absent or reshaped)."""
    for layer in viewer.layers:
        marker = _marker(layer)
        if (
            isinstance(layer, kind)
            and marker is not None
            and marker.get("role") == role
            and marker.get("image") == image.name
            and (shape is None or tuple(layer.data.shape) == tuple(shape))
        ):
            return layer
    return None


def free_name(viewer, wanted: str) -> str:
    """`wanted`, or a variant of it that no layer uses (a user's layer is never replaced)."""
    names = {layer.name for layer in viewer.layers}
    if wanted not in names:
        return wanted
    number = 2
    while f"{wanted} ({number})" in names:
        number += 1
    return f"{wanted} ({number})"


def output_metadata(role: str, image: Image, **extra) -> dict:
    return {MARKER: {"role": role, "image": image.name, **extra}}


def labels_output(viewer, image: Image, geometry: ImageGeometry, role: str = "labels") -> Labels:
    """The plugin's '<image> <role>' labels layer for `image`, created (empty) on first use."""
    layer = find_output(viewer, role, image, Labels, geometry.labels_shape)
    if layer is not None:
        return layer
    return viewer.add_labels(
        np.zeros(geometry.labels_shape, dtype=np.uint16),
        name=free_name(viewer, f"{image.name} {role}"),
        scale=geometry.scale,
        translate=geometry.translate,
        metadata=output_metadata(role, image, class_values={}),
        features=class_features({}),
    )


def class_features(values: dict[str, int]) -> pd.DataFrame:
    """The labels layer's features: the class name of every label value (0 = background)."""
    rows = sorted(values.items(), key=lambda item: item[1])
    return pd.DataFrame(
        {
            "index": [0] + [value for _, value in rows],
            "class": ["background"] + [n for n, _ in rows],
        }
    )


def _layer_values(values: dict[str, int], prediction: Prediction) -> dict[str, int]:
    """The layer's label value of every class, adding the prediction's new classes.

    A class keeps the value it already has in the layer, so "nucleus" keeps its value when
    slices are segmented with different class lists. A new class takes the value its
    checkpoint trained it with (`Prediction.label_table`) when that value is free and not 0
    (0 is napari's empty label), else the next free value.
    """
    values = dict(values)
    for name in prediction.class_names:
        if name in values:
            continue
        wanted = prediction.label_table.values.get(name, 0)
        if wanted < 1 or wanted in values.values():
            wanted = max(values.values(), default=0) + 1
        values[name] = wanted
    return values


def write_labels_slice(layer: Labels, index: tuple[int, ...], prediction: Prediction) -> None:
    """Put a prediction into one slice of the labels layer, with consistent class values
    (`_layer_values`) and a features table naming each value."""
    marker = _marker(layer) or {}
    values = _layer_values(dict(marker.get("class_values", {})), prediction)
    table = prediction.label_table
    slice_labels = np.zeros(prediction.labels.shape, dtype=layer.data.dtype)
    for name in prediction.class_names:
        slice_labels[prediction.labels == table.values[name]] = values[name]
    layer.data[index] = slice_labels
    layer.metadata = {**layer.metadata, MARKER: {**marker, "class_values": values}}
    if len(layer.features) != len(values) + 1:
        layer.features = class_features(values)
    layer.refresh()


def write_similarity_slices(
    viewer, image: Image, geometry: ImageGeometry, index: tuple[int, ...], prediction: Prediction
) -> list[Image]:
    """Show each class's similarity map as an image layer (one per class)."""
    layers = []
    for name, similarity in zip(prediction.class_names, prediction.similarity_maps, strict=True):
        role = f"similarity:{name}"
        layer = find_output(viewer, role, image, Image, geometry.labels_shape)
        if layer is None:
            layer = viewer.add_image(
                np.zeros(geometry.labels_shape, dtype=np.float32),
                name=free_name(viewer, f"{image.name} similarity: {name}"),
                scale=geometry.scale,
                translate=geometry.translate,
                colormap="inferno",
                contrast_limits=(0.0, 1.0),
                opacity=0.7,
                blending="translucent",
                metadata=output_metadata(role, image),
            )
        layer.data[index] = similarity
        layer.refresh()
        layers.append(layer)
    return layers


def prompts_output(viewer, image: Image, geometry: ImageGeometry) -> Points:
    """The plugin's points layer of clicks for `image`, created on first use."""
    layer = find_output(viewer, "prompts", image, Points)
    if layer is not None:
        return layer
    layer = viewer.add_points(
        np.empty((0, len(geometry.labels_shape))),
        ndim=len(geometry.labels_shape),
        name=free_name(viewer, f"{image.name} prompts"),
        scale=geometry.scale,
        translate=geometry.translate,
        features=pd.DataFrame({"label": pd.Categorical([], categories=[POSITIVE, NEGATIVE])}),
        face_color="label",
        face_color_cycle=[POINT_COLORS[POSITIVE], POINT_COLORS[NEGATIVE]],
        border_color="white",
        size=max(4.0, min(geometry.labels_shape[-2:]) / 32),
        metadata=output_metadata("prompts", image),
    )
    layer.feature_defaults = {"label": POSITIVE}
    return layer
