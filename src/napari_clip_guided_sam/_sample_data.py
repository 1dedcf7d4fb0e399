"""Sample data for napari: DSB2018 nuclei images with their instance labels (CC0).

Attribution and image ids: resources/samples/README.md.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import tifffile
from PIL import Image

SAMPLES = {
    "fluorescence": "DSB2018 fluorescence",
    "tissue": "DSB2018 stained tissue",
    "fluorescence_wide": "DSB2018 sparse fluorescence",
}
SOURCE = "DSB2018 / BBBC038v1 (CC0), Caicedo et al., Nature Methods 2019"


def load_sample(key: str) -> list[tuple]:
    """napari layer data for one sample: the image and its ground-truth labels."""
    if key not in SAMPLES:
        raise ValueError(f"Unknown sample {key!r}; choose one of {', '.join(SAMPLES)}.")
    folder = files("napari_clip_guided_sam") / "resources" / "samples"
    with (folder / f"{key}.png").open("rb") as handle:
        rgba = np.asarray(Image.open(handle))
    with (folder / f"{key}_labels.tif").open("rb") as handle:
        labels = tifffile.imread(handle)
    rgb = rgba[..., :3]
    grey = bool((rgb == rgb[..., :1]).all())
    image = np.ascontiguousarray(rgb[..., 0] if grey else rgb)
    name = SAMPLES[key]
    metadata = {"source": SOURCE}
    return [
        (image, {"name": name, "rgb": not grey, "metadata": metadata}, "image"),
        (labels, {"name": f"{name} ground truth", "metadata": metadata, "opacity": 0.4}, "labels"),
    ]


def fluorescence() -> list[tuple]:
    return load_sample("fluorescence")


def tissue() -> list[tuple]:
    return load_sample("tissue")


def fluorescence_wide() -> list[tuple]:
    return load_sample("fluorescence_wide")
