"""Fixtures for the data tests: the bundled DSB2018 pairs and small synthetic stacks."""

from pathlib import Path

import numpy as np
import pytest
import zarr

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


@pytest.fixture
def dsb_dir() -> Path:
    """Folder with ``images/`` (RGBA PNG) and ``labels/`` (uint16 TIFF) of 3 DSB2018 pairs."""
    return RESOURCES / "dsb2018"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def write_ome_zarr(
    path: Path,
    array: np.ndarray,
    names=("z", "y", "x"),
    scale=(2.0, 0.5, 0.5),
    translation=(0.0, 10.0, 20.0),
    version: str = "0.4",
    chunks=None,
) -> Path:
    """An OME-Zarr image with two levels (the second halves Y and X), as other tools write."""
    zarr_format = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("0", data=array, chunks=chunks or array.shape)
    group.create_array("1", data=array[..., ::2, ::2])
    kinds = {"t": "time", "c": "channel"}
    axes = [
        {"name": n, "type": kinds.get(n, "space"), **({} if n in kinds else {"unit": "micrometer"})}
        for n in names
    ]
    coarse = [s * (2 if n in "yx" else 1) for n, s in zip(names, scale, strict=True)]
    multiscale = {
        "axes": axes,
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": list(scale)},
                    {"type": "translation", "translation": list(translation)},
                ],
            },
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": coarse}]},
        ],
    }
    if version == "0.4":
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": version, "multiscales": [multiscale]}
    return path
