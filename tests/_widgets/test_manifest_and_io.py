"""The npe2 manifest, the sample data and the labels writer."""

from importlib.resources import files

import numpy as np
import pytest
from npe2 import PluginManifest

from napari_clip_guided_sam._sample_data import SAMPLES, load_sample
from napari_clip_guided_sam._writer import write_labels_layer
from napari_clip_guided_sam.data.reader import read_image

MANIFEST = files("napari_clip_guided_sam") / "napari.yaml"


def test_manifest_validates_and_its_commands_import():
    manifest = PluginManifest.from_file(str(MANIFEST))
    manifest.validate_imports()
    contributions = manifest.contributions
    assert "Segment (text + clicks)" in [w.display_name for w in contributions.widgets]
    assert {s.key for s in contributions.sample_data} == set(SAMPLES)
    assert any(w.layer_types == ["labels"] for w in contributions.writers)


@pytest.mark.parametrize("key", list(SAMPLES))
def test_sample_data_gives_an_image_and_its_labels(key):
    (image, image_meta, image_kind), (labels, _, labels_kind) = load_sample(key)
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image.dtype == np.uint8 and labels.max() > 0
    assert image.shape[:2] == labels.shape
    assert image_meta["rgb"] == (image.ndim == 3)


def test_writer_keeps_the_layer_scale_as_pixel_size(tmp_path):
    labels = np.zeros((3, 16, 20), dtype=np.int32)
    labels[1, 4:8, 5:9] = 2
    meta = {"scale": (2.0, 0.5, 0.25), "units": ("micrometer",) * 3, "name": "cells labels"}
    [written] = write_labels_layer(str(tmp_path / "labels.tif"), labels, meta)
    back = read_image(written)
    np.testing.assert_array_equal(back.array, labels)
    assert back.pixel_size == (2.0, 0.5, 0.25) and back.unit == "µm"
