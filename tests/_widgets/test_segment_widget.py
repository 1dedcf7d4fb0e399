"""The segment widget in a real viewer: layers it makes, click refresh, cancel, bad input."""

import numpy as np
import pytest
from data.conftest import write_ome_zarr

from napari_clip_guided_sam._widgets import _common
from napari_clip_guided_sam._widgets._layers import MARKER, NEGATIVE
from napari_clip_guided_sam._widgets._segment import TEXT_AND_POINTS, SegmentWidget

TIMEOUT_MS = 60_000


@pytest.fixture
def widget(viewer, qtbot):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.preset_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    yield widget
    if widget.jobs.running:
        widget.jobs.cancel()
        qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)


def _image(shape=(128, 160), seed=0):
    return np.random.default_rng(seed).integers(0, 255, size=shape, dtype=np.uint8)


def _run(qtbot, widget, action):
    assert action()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)


def test_typing_a_class_and_pressing_segment_creates_labels(viewer, widget, qtbot, errors):
    viewer.add_image(_image(), name="cells", scale=(0.5, 0.5))
    widget.classes_edit.setText("nucleus, cell")
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert errors == []
    labels = viewer.layers["cells labels"]
    assert labels.data.shape == (128, 160)
    assert tuple(labels.scale) == (0.5, 0.5)
    assert list(labels.features["class"]) == ["background", "nucleus", "cell"]
    assert labels.metadata[MARKER]["class_values"] == {"nucleus": 1, "cell": 2}
    np.testing.assert_array_equal(labels.data, widget.last_prediction.labels)
    _run(qtbot, widget, widget.segment_current_slice)  # re-running updates the same layer
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]


def test_adding_a_click_refreshes_with_the_decoder_only(viewer, widget, qtbot, errors):
    viewer.add_image(_image(), name="cells")
    widget.classes_edit.setText("nucleus")
    _run(qtbot, widget, widget.segment_current_slice)
    stats = widget.session.current.stats
    encoder_calls, decoder_calls = stats.encoder_calls, stats.decoder_calls
    points = widget.add_points_layer()
    assert widget.mode_combo.currentText() == TEXT_AND_POINTS
    points.add([[40.0, 50.0]])
    qtbot.waitUntil(lambda: stats.decoder_calls > decoder_calls, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert stats.encoder_calls == encoder_calls
    assert errors == []


def test_toggle_key_switches_new_clicks_to_negative(viewer, widget):
    viewer.add_image(_image(), name="cells")
    points = widget.add_points_layer()
    widget._toggle_click_label(points)
    points.add([[10.0, 10.0]])
    assert list(points.features["label"]) == [NEGATIVE]
    assert points.name == "cells prompts"


def test_cancelling_a_stack_run_stops_at_the_next_slice(viewer, widget, qtbot, errors):
    viewer.add_image(_image((6, 64, 64)), name="stack")
    widget.classes_edit.setText("nucleus")
    computed_at_cancel = []
    original = widget._show_result

    def cancel_after_first_slice(request, event):
        original(request, event)
        if not computed_at_cancel:
            computed_at_cancel.append(widget.session.current.stats.encoder_calls)
            widget.jobs.cancel()

    widget._show_result = cancel_after_first_slice
    _run(qtbot, widget, widget.segment_stack)
    assert viewer.layers["stack labels"].data.shape == (6, 64, 64)
    # The worker may be one slice past the slices done when the cancel arrives, never
    # more. The GUI shows the first slice when it gets to it: on a loaded machine the
    # worker may have finished the stack by then, so count worker slices at the cancel.
    computed = widget.session.current.stats.encoder_calls
    assert computed - computed_at_cancel[0] <= 1
    if computed_at_cancel[0] < 5:  # slices were left to skip when the cancel came
        assert computed < 6
    assert widget.jobs.cancelled and errors == []


def test_current_slice_of_a_stack_fills_only_that_slice(viewer, widget, qtbot):
    viewer.add_image(_image((3, 64, 64)), name="stack")
    viewer.dims.set_current_step(0, 2)
    widget.classes_edit.setText("nucleus")
    widget.mask_threshold_spin.setValue(0.0)  # every pixel gets a label
    _run(qtbot, widget, widget.segment_current_slice)
    data = viewer.layers["stack labels"].data
    assert data[2].all() and not data[:2].any()


@pytest.mark.parametrize("classes", ["", " ,  , "])
def test_empty_prompt_is_an_error_notification(viewer, widget, errors, classes):
    viewer.add_image(_image(), name="cells")
    widget.classes_edit.setText(classes)
    widget.segment_button.click()
    assert not widget.jobs.running
    assert errors and "class name" in errors[0]
    assert [layer.name for layer in viewer.layers] == ["cells"]


def test_no_image_layer_is_an_error_notification(widget, errors):
    widget.classes_edit.setText("nucleus")
    widget.segment_button.click()
    assert errors and "No image layer" in errors[0]


def test_3d_view_refuses_a_current_slice_action(viewer, widget, errors):
    viewer.add_image(_image((3, 64, 64)), name="stack")
    viewer.dims.ndisplay = 3
    widget.classes_edit.setText("nucleus")
    widget.segment_button.click()
    assert errors and "2D view" in errors[0]
    assert len(viewer.layers) == 1


def test_click_outside_the_image_is_reported_and_layers_stay(viewer, widget, qtbot, errors):
    viewer.add_image(_image(), name="cells")
    widget.classes_edit.setText("nucleus")
    points = widget.add_points_layer()
    with points.events.data.blocker():
        points.add([[500.0, 20.0]])
    _run(qtbot, widget, widget.segment_current_slice)
    assert errors and "outside the image" in errors[0]
    assert "cells labels" not in viewer.layers


def test_missing_weights_name_the_file_to_download(viewer, widget, qtbot, errors):
    viewer.add_image(_image(), name="cells")
    widget.preset_combo.setCurrentText("paper")
    widget.classes_edit.setText("nucleus")
    _run(qtbot, widget, widget.segment_current_slice)
    assert errors and "sam_vit_b_01ec64.pth" in errors[0]
    assert "cells labels" not in viewer.layers


def test_a_users_layer_of_the_same_name_is_never_overwritten(viewer, widget, qtbot):
    viewer.add_image(_image(), name="cells")
    mine = viewer.add_labels(np.full((128, 160), 7, dtype=np.uint8), name="cells labels")
    widget.classes_edit.setText("nucleus")
    _run(qtbot, widget, widget.segment_current_slice)
    assert (mine.data == 7).all()
    assert "cells labels (2)" in viewer.layers


def test_similarity_map_layer_is_optional(viewer, widget, qtbot):
    viewer.add_image(_image(), name="cells")
    widget.classes_edit.setText("nucleus")
    widget.similarity_check.setChecked(True)
    _run(qtbot, widget, widget.segment_current_slice)
    similarity = viewer.layers["cells similarity: nucleus"]
    np.testing.assert_allclose(similarity.data, widget.last_prediction.similarity_maps[0])


def test_a_class_outside_a_closed_set_checkpoint_warns(
    viewer, widget, qtbot, tmp_path, errors, monkeypatch
):
    import torch

    from napari_clip_guided_sam.model.checkpoint import save_checkpoint
    from napari_clip_guided_sam.model.factory import build_model

    shown = []
    monkeypatch.setattr(_common, "show_warning", shown.append)
    model = build_model("tiny", seed=0)
    features = torch.randn(1, model.guide.embed_dim)
    path = tmp_path / "nuclei.safetensors"
    save_checkpoint(model, path, class_names=["nucleus"], text_features=features)
    viewer.add_image(_image(), name="cells")
    widget.checkpoint_edit.setText(str(path))
    widget.classes_edit.setText("mitochondrion")
    _run(qtbot, widget, widget.segment_current_slice)
    assert any("'mitochondrion' not among the classes" in message for message in shown)
    assert errors == [] and "cells labels" in viewer.layers


def test_multichannel_image_uses_the_chosen_channel_axis(viewer, widget, qtbot, errors):
    viewer.add_image(_image((4, 64, 80)), name="channels")
    widget.channel_axis_combo.setCurrentIndex(widget.channel_axis_combo.findData(0))
    widget.channels_edit.setText("0, 2")
    widget.classes_edit.setText("nucleus")
    _run(qtbot, widget, widget.segment_current_slice)
    assert errors == []
    assert viewer.layers["channels labels"].data.shape == (64, 80)


def test_a_checkpoint_subset_keeps_its_label_values_in_the_layer():
    """Classes of a multi-class checkpoint keep their trained label values; a class trained
    as label 0 (napari's empty label) gets the next free value."""
    from napari.layers import Labels

    from napari_clip_guided_sam._widgets._layers import write_labels_slice
    from napari_clip_guided_sam.data.class_map import LabelTable
    from napari_clip_guided_sam.inference.predictions import Prediction

    table = LabelTable({"pore": 0, "quartz": 2, "pyrite": 3}, unlabelled=255)
    labels = np.array([[255, 0], [2, 3]], dtype=np.int32)
    prediction = Prediction(
        labels=labels,
        probabilities=np.zeros((3, 2, 2), np.float32),
        similarity_maps=np.zeros((3, 2, 2), np.float32),
        class_names=["pore", "quartz", "pyrite"],
        iou_predictions=np.zeros(3, np.float32),
        label_table=table,
    )
    layer = Labels(np.zeros((2, 2, 2), np.uint16), metadata={MARKER: {"class_values": {}}})
    write_labels_slice(layer, (0,), prediction)
    values = layer.metadata[MARKER]["class_values"]
    assert values == {"pore": 1, "quartz": 2, "pyrite": 3}
    np.testing.assert_array_equal(layer.data[0], [[0, 1], [2, 3]])
    features = dict(zip(layer.features["index"], layer.features["class"], strict=True))
    assert features == {0: "background", 1: "pore", 2: "quartz", 3: "pyrite"}


def test_a_large_image_is_segmented_in_tiles_unless_tiling_is_off(viewer, widget, qtbot, errors):
    viewer.add_image(_image((400, 300)), name="big")  # 400 > 1.5 x 256 (the tiny input)
    widget.classes_edit.setText("nucleus")
    assert widget.tiling_combo.currentText() == "auto"
    _run(qtbot, widget, widget.segment_current_slice)
    stats = widget.session.current.stats
    assert stats.encoder_calls == 2 * 2  # 2 x 2 windows of 256 px
    assert viewer.layers["big labels"].data.shape == (400, 300)
    widget.tiling_combo.setCurrentText("off")
    _run(qtbot, widget, widget.segment_current_slice)
    assert stats.encoder_calls == 2 * 2 + 1  # the whole image, squashed
    assert errors == []


def test_a_multiscale_zarr_layer_is_segmented_at_full_resolution(widget, qtbot, errors, tmp_path):
    viewer = widget.viewer
    stack = np.random.default_rng(0).integers(0, 300, size=(2, 64, 80)).astype(np.uint16)
    source = write_ome_zarr(tmp_path / "cells.ome.zarr", stack)
    [image] = viewer.open(str(source), plugin="napari-clip-guided-sam")
    assert image.multiscale and image.data[1].shape == (2, 32, 40)
    widget.classes_edit.setText("nucleus")
    assert widget.segment_current_slice()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert errors == []
    labels = viewer.layers["cells labels"]
    assert labels.data.shape == (2, 64, 80)  # the full-resolution grid, not the view level
    np.testing.assert_array_equal(labels.scale, image.scale)
    assert widget.last_prediction.labels.shape == (64, 80)


def test_precompute_for_this_stack_makes_segmenting_decoder_only(viewer, widget, qtbot, errors):
    from napari_clip_guided_sam.inference.embedding_store import EmbeddingStore

    viewer.add_image(_image((3, 64, 64)), name="stack")
    widget.classes_edit.setText("nucleus")
    assert widget.precompute_stack()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert errors == [] and widget.embedding_cache_check.isChecked()
    assert widget.jobs.status.text() == "Done."
    assert len(EmbeddingStore().entries()) == 3 * 2  # tokens + the class, per slice
    stats = widget.session.current.stats
    encoder_calls = stats.encoder_calls
    widget.session.current.clear_cache()  # only the disk store holds them now

    _run(qtbot, widget, widget.segment_stack)
    assert errors == [] and stats.encoder_calls == encoder_calls  # decoder only
    assert viewer.layers["stack labels"].data.shape == (3, 64, 64)


def test_precompute_without_a_class_is_an_error_kept_in_the_panel(viewer, widget, errors):
    viewer.add_image(_image((2, 64, 64)), name="stack")
    widget.precompute_button.click()
    assert not widget.jobs.running and len(errors) == 1
    assert widget.messages.kind == "Error" and "class" in widget.messages.message.lower()


def test_cancelling_a_precompute_stops_at_the_next_slice(viewer, widget, qtbot, errors):
    from napari_clip_guided_sam._widgets._common import Progress
    from napari_clip_guided_sam.inference.embedding_store import EmbeddingStore

    viewer.add_image(_image((6, 64, 64)), name="stack")
    widget.classes_edit.setText("nucleus")
    at_cancel = []
    original = widget.jobs._on_yielded

    def cancel_after_first_slice(on_event, event):
        original(on_event, event)
        if isinstance(event, Progress) and event.done == 1 and not at_cancel:
            at_cancel.append(widget.session.current.stats.encoder_calls)
            widget.jobs.cancel()

    widget.jobs._on_yielded = cancel_after_first_slice
    _run(qtbot, widget, widget.precompute_stack)
    stats = widget.session.current.stats
    assert stats.encoder_calls - at_cancel[0] <= 1  # at most the slice under way
    if at_cancel[0] < 5:
        assert stats.encoder_calls < 6
    assert widget.jobs.cancelled and widget.jobs.status.text() == "Cancelled." and errors == []
    # every slice computed is stored whole: its tokens and its class embedding
    assert len(EmbeddingStore().entries()) == stats.clip_calls + stats.encoder_calls


def test_an_unwritable_cache_is_one_warning_and_the_precompute_goes_on(
    viewer, widget, qtbot, errors, monkeypatch
):
    from napari_clip_guided_sam.inference.embedding_store import default_store_folder

    warned = []
    monkeypatch.setattr(_common, "show_warning", warned.append)
    default_store_folder().parent.mkdir(parents=True, exist_ok=True)
    default_store_folder().write_text("a file where the cache folder should be")
    viewer.add_image(_image((3, 64, 64)), name="stack")
    widget.classes_edit.setText("nucleus")
    _run(qtbot, widget, widget.precompute_stack)
    assert errors == [] and widget.jobs.status.text() == "Done."
    assert len(warned) == 1 and "cannot keep embeddings in the cache" in warned[0]
