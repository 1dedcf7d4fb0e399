"""Menu commands "Segment stack..." / "Segment folder...": same files as the CLI, cancel, report."""

import numpy as np
import tifffile
from napari.layers import Labels
from qtpy.QtCore import Qt

from napari_clip_guided_sam._widgets._common import Progress
from napari_clip_guided_sam._widgets.batch_commands import (
    FOLDER_PANEL,
    STACK_PANEL,
    segment_folder_command,
    segment_stack_command,
)
from napari_clip_guided_sam.cli import main

TIMEOUT_MS = 60_000


def configure(panel, output_dir, classes="nucleus, cell"):
    panel.classes.setText(classes)
    panel.preset.setCurrentText("tiny")
    panel.device.setCurrentText("cpu")
    panel.output_dir.setText(str(output_dir))


def test_menu_stack_and_cli_write_identical_label_files(
    make_napari_viewer, qtbot, tmp_path, write_stack
):
    source = write_stack(tmp_path / "cells.tif")
    cli_out = tmp_path / "cli"
    command = f"segment {source} -c nucleus cell -o {cli_out} --preset tiny --device cpu"
    assert main([*command.split(), "--no-progress"]) == 0

    viewer = make_napari_viewer()
    [layer] = viewer.open(str(source), plugin="napari")
    layer.scale = (2.0, 0.25, 0.25)
    panel = segment_stack_command(viewer)
    assert viewer.window.dock_widgets[STACK_PANEL] is panel
    assert panel.layer_choice.currentText() == layer.name
    configure(panel, tmp_path / "menu")
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)  # the user's path
    qtbot.waitUntil(lambda: (tmp_path / "menu" / "cells_labels.tif").exists(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT_MS)

    menu_file = tmp_path / "menu" / "cells_labels.tif"
    assert menu_file.read_bytes() == (cli_out / "cells_labels.tif").read_bytes()
    labels = panel.result_layer
    assert labels is not None and labels.data.shape == (2, 40, 48)
    assert tuple(labels.scale) == (2.0, 0.25, 0.25)
    np.testing.assert_array_equal(np.asarray(labels.data), tifffile.imread(menu_file))
    assert segment_stack_command(viewer) is panel  # the command shows the same panel again

    [opened] = viewer.open(str(cli_out / "cells_labels.tif"), plugin="napari-clip-guided-sam")
    assert isinstance(opened, Labels) and tuple(opened.scale) == (2.0, 0.25, 0.25)
    assert opened.units == layer.units  # on the grid of the open image


def test_cancelled_stack_leaves_no_output(make_napari_viewer, qtbot, tmp_path, write_stack):
    viewer = make_napari_viewer()
    stack = tifffile.imread(write_stack(tmp_path / "s.tif", n_slices=6))
    viewer.add_image(stack, name="stack")  # a layer without a source file
    panel = segment_stack_command(viewer)
    configure(panel, tmp_path / "out", classes="nucleus")
    assert panel.run()

    def cancel_after_first_slice(event):
        if isinstance(event, Progress) and event.done == 1:
            panel.jobs.cancel()

    panel.jobs.worker.yielded.connect(cancel_after_first_slice)
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT_MS)
    assert panel.jobs.cancelled and panel.result_layer is None
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary files


def test_folder_command_reports_the_corrupt_file(make_napari_viewer, qtbot, tmp_path, write_stack):
    images = tmp_path / "images"
    images.mkdir()
    write_stack(images / "a.tif")
    (images / "broken.tif").write_bytes(b"II*\x00broken")
    viewer = make_napari_viewer()
    panel = segment_folder_command(viewer)
    assert viewer.window.dock_widgets[FOLDER_PANEL] is panel
    configure(panel, tmp_path / "out", classes="nucleus")
    panel.input_dir.setText(str(images))
    assert panel.run()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT_MS)
    finished = panel.finished
    assert (finished.n_done, finished.n_failed) == (1, 1)
    assert (tmp_path / "out" / "a_labels.tif").is_file()
    assert "broken.tif,failed" in (tmp_path / "out" / "segment_report.csv").read_text()
    assert "1 failed" in panel.jobs.status.text()


def test_the_widgets_of_a_viewer_share_one_model_session(make_napari_viewer):
    from napari_clip_guided_sam._widgets._segment import SegmentWidget
    from napari_clip_guided_sam._widgets.training_widget import TrainingWidget

    viewer, other = make_napari_viewer(), make_napari_viewer()
    segment = SegmentWidget(viewer)
    sessions = {
        id(segment.session),
        id(segment_stack_command(viewer).session),
        id(segment_folder_command(viewer).session),
        id(TrainingWidget(viewer).preview.session),
    }
    assert len(sessions) == 1
    assert SegmentWidget(other).session is not segment.session


def test_the_tiling_choice_reaches_the_batch_options(make_napari_viewer):
    panel = segment_stack_command(make_napari_viewer())
    assert panel.options().tiling.enabled is None  # automatic by default
    panel.tiling.setCurrentText("off")
    assert panel.options().tiling.enabled is False


def test_menu_stack_on_a_zarr_layer_writes_an_ome_zarr_store_on_its_grid(
    make_napari_viewer, qtbot, tmp_path
):
    from data.conftest import write_ome_zarr

    from napari_clip_guided_sam.data.ome_zarr import geometry_of
    from napari_clip_guided_sam.data.reader import read_image

    stack = np.random.default_rng(0).integers(0, 300, size=(2, 40, 48)).astype(np.uint16)
    source = write_ome_zarr(tmp_path / "cells.ome.zarr", stack, translation=(0.0, 3.0, 4.0))
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(source), plugin="napari-clip-guided-sam")
    assert layer.multiscale
    panel = segment_stack_command(viewer)
    configure(panel, tmp_path / "menu", classes="nucleus")
    assert panel.run()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT_MS)

    written = read_image(tmp_path / "menu" / "cells_labels.ome.zarr")  # the store's metadata
    assert written.shape == (2, 40, 48) and written.pixel_size == (2.0, 0.5, 0.5)
    assert geometry_of(written).translation == (0.0, 3.0, 4.0)
    labels = panel.result_layer
    np.testing.assert_array_equal(labels.translate, layer.translate)
    np.testing.assert_array_equal(np.asarray(labels.data), written.array)
