"""The npe2 manifest, the sample data and the labels writer."""

from importlib.resources import files

import numpy as np
import pytest
from npe2 import PluginManifest

from napari_clip_guided_sam._sample_data import SAMPLES, load_sample
from napari_clip_guided_sam._writer import write_labels_layer
from napari_clip_guided_sam.data.reader import read_image

MANIFEST = files("napari_clip_guided_sam") / "napari.yaml"
PLUGIN = "napari-clip-guided-sam"


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


def test_menu_and_widget_titles_name_the_plugin_once():
    """napari adds " (CLIP-Guided SAM)" to each command and widget in its menus."""
    manifest = PluginManifest.from_file(str(MANIFEST))
    name = manifest.display_name
    titles = [command.title for command in manifest.contributions.commands]
    titles += [widget.display_name for widget in manifest.contributions.widgets]
    assert titles and not [title for title in titles if name in title or "..." in title]


def test_labels_written_from_an_image_overlay_it_as_napari_opens_it(
    make_napari_viewer, tmp_path, write_stack
):
    from napari.layers import Labels
    from npe2 import PluginManager

    from napari_clip_guided_sam.cli import main

    source = write_stack(tmp_path / "cells.tif")  # 2 µm z, 0.25 µm xy in the file
    command = f"segment {source} -c nucleus -o {tmp_path / 'out'} --preset tiny --device cpu"
    assert main([*command.split(), "--no-progress"]) == 0
    labels_path = str(tmp_path / "out" / "cells_labels.tif")

    viewer = make_napari_viewer()
    [image] = viewer.open(str(source), plugin="napari")  # napari's own reader: pixels
    # napari's "choose reader" dialog offers the plugin's reader for label files
    offered = {
        r.plugin_name for r in PluginManager.instance().iter_compatible_readers([labels_path])
    }
    assert PLUGIN in offered
    [labels] = viewer.open(labels_path, plugin=PLUGIN)
    assert isinstance(labels, Labels)
    np.testing.assert_array_equal(labels.scale, image.scale)
    np.testing.assert_array_equal(labels.translate, image.translate)
    assert [str(unit) for unit in labels.units] == [str(unit) for unit in image.units]

    alone = make_napari_viewer()  # without its image, at the pixel size of the file
    [labels] = alone.open(labels_path, plugin=PLUGIN)
    assert tuple(labels.scale) == (2.0, 0.25, 0.25) and str(labels.units[-1]) == "micrometer"
