"""The segment widget's object workflow in a real viewer, with the tiny model fine-tuned on
disks: a box gives a mask, commits give ids with classes, undo, segment all, propagation
through a stack, and the committed layer as training data."""

import numpy as np
import pytest
from inference.conftest import DISK_SLICES, disk_image
from napari.utils.key_bindings import coerce_keybinding

from napari_clip_guided_sam._widgets import _common
from napari_clip_guided_sam._widgets._layers import MARKER
from napari_clip_guided_sam._widgets._objects import COMMIT_KEY, OBJECTS
from napari_clip_guided_sam._widgets._segment import SegmentWidget
from napari_clip_guided_sam._widgets.training_widget import TrainingWidget
from napari_clip_guided_sam.inference.propagation import mask_iou
from napari_clip_guided_sam.model.checkpoint import save_checkpoint

TIMEOUT_MS = 60_000
ROWS, COLS = np.mgrid[:48, :64]
LEFT = (ROWS - 24) ** 2 + (COLS - 16) ** 2 <= 7**2
RIGHT = (ROWS - 24) ** 2 + (COLS - 46) ** 2 <= 7**2
LEFT_BOX = [[15, 7], [34, 26]]  # (y, x) corners of a rectangle around the left disk


@pytest.fixture(scope="session")
def disk_checkpoint(disk_model, tmp_path_factory):
    return save_checkpoint(disk_model, tmp_path_factory.mktemp("disk") / "disk.safetensors")


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    return shown


@pytest.fixture
def widget(viewer, qtbot, disk_checkpoint):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.device_combo.setCurrentText("cpu")
    widget.precision_combo.setCurrentText("fp32")
    widget.load_checkpoint(disk_checkpoint)
    widget.classes_edit.setText("disk")
    yield widget
    if widget.jobs.running:
        widget.jobs.cancel()
        qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)


def _wait(qtbot, widget, started=True):
    assert started
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)


def _two_disks(viewer):
    return viewer.add_image(disk_image(LEFT | RIGHT, seed=3), name="disks", rgb=True)


def _click(widget, yx):
    points = widget.add_points_layer()
    points.add([yx])
    return points


def test_a_box_gives_the_mask_of_its_object_and_moving_it_runs_the_decoder_only(
    viewer, widget, qtbot, errors
):
    _two_disks(viewer)
    widget.objects.boxes_button.click()
    assert widget.mode_combo.currentText() == OBJECTS
    boxes = viewer.layers["disks boxes"]
    assert boxes.metadata[MARKER]["role"] == "boxes" and boxes.mode == "add_rectangle"
    boxes.add_rectangles(np.array(LEFT_BOX, dtype=float))
    _wait(qtbot, widget, widget.objects.request_preview())
    preview = viewer.layers["disks object preview"].data
    assert mask_iou(preview == 1, LEFT) > 0.6 and not (preview & RIGHT).any()

    stats = widget.session.current.stats
    encoder_calls, decoder_calls = stats.encoder_calls, stats.decoder_calls
    boxes.data = [np.array([[15.0, 37.0], [34.0, 56.0]])]  # moved onto the right disk
    qtbot.waitUntil(lambda: stats.decoder_calls > decoder_calls, timeout=TIMEOUT_MS)
    _wait(qtbot, widget)
    preview = viewer.layers["disks object preview"].data
    assert mask_iou(preview == 1, RIGHT) > 0.6 and not (preview & LEFT).any()
    assert stats.encoder_calls == encoder_calls
    assert errors == []


def test_two_commits_give_two_ids_with_their_classes_and_undo_removes_the_last(
    viewer, widget, qtbot, errors
):
    _two_disks(viewer)
    widget.classes_edit.setText("disk, round thing")
    widget.mode_combo.setCurrentText(OBJECTS)
    points = _click(widget, [24, 16])
    _wait(qtbot, widget, widget.objects.commit())  # segments the stale preview, then commits
    objects = viewer.layers["disks objects"]
    assert mask_iou(objects.data == 1, LEFT) > 0.6
    assert len(points.data) == 0  # the committed object's prompts are cleared

    widget.objects.class_combo.setCurrentText("round thing")
    points.add([[24, 46]])
    _wait(qtbot, widget)  # the refresh previews the new object
    objects.selected_label = 1
    points.keymap[coerce_keybinding(COMMIT_KEY)](points)  # the commit key
    _wait(qtbot, widget)
    assert set(np.unique(objects.data)) == {0, 1, 2}
    assert mask_iou(objects.data == 2, RIGHT) > 0.6
    assert list(objects.features["index"]) == [0, 1, 2]
    assert list(objects.features["class"]) == ["background", "disk", "round thing"]
    assert objects.selected_label == 2

    widget.objects.undo_button.click()
    assert set(np.unique(objects.data)) == {0, 1}
    assert list(objects.features["class"]) == ["background", "disk"]
    widget.objects.undo_button.click()
    widget.objects.undo_button.click()  # nothing left: says so, changes nothing
    assert not objects.data.any() and errors == []


def test_a_commit_during_a_run_waits_for_its_end(viewer, widget, qtbot, errors):
    _two_disks(viewer)
    widget.mode_combo.setCurrentText(OBJECTS)
    points = _click(widget, [24, 46])
    assert widget.objects.request_preview()
    assert widget.objects.commit()  # the preview is still running: the commit waits
    qtbot.waitUntil(lambda: "disks objects" in viewer.layers, timeout=TIMEOUT_MS)
    _wait(qtbot, widget)
    objects = viewer.layers["disks objects"]
    assert set(np.unique(objects.data)) == {0, 1} and mask_iou(objects.data == 1, RIGHT) > 0.6
    assert len(points.data) == 0 and errors == []


def test_without_the_text_guide_an_object_needs_a_click_or_box(viewer, widget, errors):
    _two_disks(viewer)
    widget.objects.text_guide_check.setChecked(False)
    widget.objects.preview_button.click()
    assert "text guide is off" in errors[-1] and not widget.jobs.running


def test_clear_drops_the_slices_prompts_and_the_preview(viewer, widget, qtbot):
    _two_disks(viewer)
    widget.mode_combo.setCurrentText(OBJECTS)
    points = _click(widget, [24, 16])
    widget.objects.add_boxes_layer()
    viewer.layers["disks boxes"].add_rectangles(np.array(LEFT_BOX, dtype=float))
    _wait(qtbot, widget, widget.objects.request_preview())
    assert viewer.layers["disks object preview"].data.any()
    widget.objects.clear_button.click()
    assert len(points.data) == 0 and len(viewer.layers["disks boxes"].data) == 0
    assert not viewer.layers["disks object preview"].data.any()


def test_segment_all_commits_every_instance_in_one_undoable_change(viewer, widget, qtbot, errors):
    three = LEFT | RIGHT | ((ROWS - 10) ** 2 + (COLS - 31) ** 2 <= 6**2)
    viewer.add_image(disk_image(three, seed=4), name="disks", rgb=True)
    _wait(qtbot, widget, widget.objects.segment_all())
    objects = viewer.layers["disks objects"]
    assert set(np.unique(objects.data)) == {0, 1, 2, 3}
    assert list(objects.features["class"]) == ["background", "disk", "disk", "disk"]
    for disk in (LEFT, RIGHT):
        ids = np.unique(objects.data[disk])
        assert len(ids[ids != 0]) == 1  # each disk is one instance
        assert mask_iou(objects.data == ids[-1], disk) > 0.6
    widget.objects.undo()
    assert not objects.data.any() and errors == []


def test_propagation_keeps_one_id_and_stops_where_the_disk_ends(
    viewer, widget, qtbot, drifting_disk, errors
):
    images, masks = drifting_disk
    viewer.add_image(images, name="stack", rgb=True)
    viewer.dims.set_current_step(0, 5)
    widget.mode_combo.setCurrentText(OBJECTS)
    _click(widget, [5, 24, 30])
    _wait(qtbot, widget, widget.objects.commit())
    objects = viewer.layers["stack objects"]
    assert [z for z in range(12) if objects.data[z].any()] == [5]

    widget.objects.propagate_button.click()
    _wait(qtbot, widget)
    assert set(np.unique(objects.data)) == {0, 1}  # one id through the stack
    assert [z for z in range(12) if objects.data[z].any()] == list(DISK_SLICES)
    for z in DISK_SLICES:
        assert mask_iou(objects.data[z] == 1, masks[z]) > 0.6, z
    status = widget.jobs.status.text()
    assert "propagated to 7 slice(s) (2-9)" in status and "empty mask at slice 10" in status
    assert errors == []

    widget.objects.undo()  # the propagation is one change
    assert [z for z in range(12) if objects.data[z].any()] == [5]


def test_a_cancelled_propagation_keeps_the_slices_done(viewer, widget, qtbot, drifting_disk):
    images, _ = drifting_disk
    viewer.add_image(images, name="stack", rgb=True)
    viewer.dims.set_current_step(0, 5)
    widget.mode_combo.setCurrentText(OBJECTS)
    _click(widget, [5, 24, 30])
    _wait(qtbot, widget, widget.objects.commit())
    stats = widget.session.current.stats
    before, at_cancel = stats.decoder_calls, []
    original = widget.objects._on_propagation_event

    def cancel_after_the_first_step(event):
        original(event)
        if not at_cancel:
            at_cancel.append(stats.decoder_calls)
            widget.jobs.cancel()

    widget.objects._on_propagation_event = cancel_after_the_first_step
    _wait(qtbot, widget, widget.objects.propagate())
    # The worker may be a step ahead of the GUI when the cancel arrives, never more (how far
    # ahead the GUI lags depends on the machine's load, so count the worker's steps).
    steps = stats.decoder_calls - before  # one decoder call per slice tried, upwards first
    assert stats.decoder_calls - at_cancel[0] <= 1 and steps < 9
    objects = viewer.layers["stack objects"]
    slices = [z for z in range(12) if objects.data[z].any()]
    assert slices == list(range(5, 5 + len(slices))) and len(slices) >= 2
    assert len(slices) - 1 in (steps - 1, steps)  # the step after the cancel may be dropped
    assert set(np.unique(objects.data)) == {0, 1}
    assert widget.jobs.cancelled and "cancelled" in widget.jobs.status.text()


def test_propagation_needs_a_committed_object_on_the_slice(viewer, widget, errors, drifting_disk):
    viewer.add_image(drifting_disk[0], name="stack", rgb=True)
    widget.objects.propagate_button.click()
    assert "Commit an object" in errors[-1]
    assert "Commit an object" in widget.messages.message
    assert not widget.jobs.running


def test_the_committed_layer_is_training_data_with_its_classes(viewer, widget, qtbot):
    _two_disks(viewer)
    _wait(qtbot, widget, widget.objects.segment_all())
    training = TrainingWidget(viewer)
    viewer.window.add_dock_widget(training)
    sources = training.sources
    sources.labels_combo.setCurrentText("disks objects")
    assert sources.image_combo.currentText() == "disks"
    assert sources.one_class_check.isChecked()
    assert sources.class_name_edit.text() == "disk"
    dataset, description = sources.dataset()
    assert description == "1 annotated of 1 slice(s)" and len(dataset) >= 1

    widget.classes_edit.setText("disk, blob")  # a second class: the class map follows
    widget.objects.class_combo.setCurrentText("blob")
    widget.objects.overlap_combo.setCurrentText("overwrite")
    widget.mode_combo.setCurrentText(OBJECTS)
    _click(widget, [24, 46])
    _wait(qtbot, widget, widget.objects.commit())
    assert list(viewer.layers["disks objects"].features["class"])[-1] == "blob"
    assert not sources.one_class_check.isChecked()
    assert sources.class_map_edit.text() == "1+2=disk,3=blob"
    dataset, _ = sources.dataset()
    assert dataset.class_map.class_names == ("disk", "blob")
