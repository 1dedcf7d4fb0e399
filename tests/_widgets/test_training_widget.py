"""The training widget in a real viewer: a short tiny-preset run, cancel, close, bad input,
and the same checkpoint as the CLI for the same data and seed."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_clip_guided_sam import cli
from napari_clip_guided_sam._widgets import _common, training_widget
from napari_clip_guided_sam._widgets._segment import SegmentWidget
from napari_clip_guided_sam._widgets.training_widget import NEW_NAME, TrainingWidget
from napari_clip_guided_sam.model.checkpoint import load_model, read_checkpoint
from napari_clip_guided_sam.training.events import CheckpointEvent

TIMEOUT_MS = 120_000


@pytest.fixture
def notes(monkeypatch):
    """Error and info notifications shown by the plugin."""
    shown = {"error": [], "info": []}
    monkeypatch.setattr(_common, "show_error", shown["error"].append)
    monkeypatch.setattr(_common, "show_info", shown["info"].append)
    return shown


@pytest.fixture
def widget(viewer, qtbot, tmp_path):
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.settings.preset_combo.setCurrentText("tiny")
    widget.settings.device_combo.setCurrentText("cpu")
    widget.settings.val_spin.setValue(0.0)
    widget.settings.output_edit.setText(str(tmp_path / "run"))
    yield widget
    if widget.job is not None:  # a failed test left a run going (or the viewer was closed)
        assert widget.stop_and_wait(TIMEOUT_MS / 1000)


def _add_stack(viewer, annotated=(0, 1, 3), shape=(4, 64, 64)):
    """A stack of bright disks; labels only on the `annotated` slices."""
    rows, cols = np.mgrid[: shape[1], : shape[2]]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, shape).astype(np.uint8)
    labels = np.zeros(shape, dtype=np.uint8)
    for z in range(shape[0]):
        disk = (rows - 20 - 6 * z) ** 2 + (cols - 30) ** 2 < 100
        image[z][disk] = 200
        if z in annotated:
            labels[z][disk] = 1
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")


def _train(qtbot, widget, action=None):
    assert (action or widget.start_training)()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_short_run_writes_a_checkpoint_the_segment_widget_loads(viewer, widget, qtbot, notes):
    _add_stack(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    widget.settings.max_steps_spin.setValue(1)
    widget.sources.update_count()
    assert "3 of 4 slice(s) annotated" in widget.sources.count_label.text()
    _train(qtbot, widget)
    assert notes["error"] == []
    assert widget.run.result is not None and widget.run.result.steps == 1
    checkpoint = widget.checkpoint()
    assert checkpoint.name == "last.safetensors"
    assert widget.run_panel.progress.value() == widget.run_panel.progress.maximum()
    assert widget.run_panel.plot.losses and widget.probe_summary.ticks > 0

    segment = widget.load_into_segment_widget()
    assert isinstance(segment, SegmentWidget)
    assert segment.settings().checkpoint == str(checkpoint)
    assert segment.preset_combo.currentText() == "tiny"
    assert segment.classes_edit.text() == "nucleus"
    assert segment.segment_current_slice()
    qtbot.waitUntil(lambda: not segment.jobs.running, timeout=TIMEOUT_MS)
    assert segment.session.current.checkpoint_path == checkpoint
    assert notes["error"] == []

    viewer.dims.set_point(0, 2)
    assert widget.preview_current_slice()
    qtbot.waitUntil(lambda: not widget.preview_jobs.running, timeout=TIMEOUT_MS)
    preview = viewer.layers["cells preview"]
    assert preview.data.shape == (4, 64, 64)
    assert not preview.data[[0, 1, 3]].any()  # only the chosen slice is written
    assert viewer.layers["cells labels"].data[2].sum() == 0  # user layers untouched


def test_cancel_keeps_the_last_good_checkpoint_and_resume_continues(viewer, widget, qtbot, notes):
    _add_stack(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    widget.settings.epochs_spin.setValue(3)
    widget.settings.checkpoint_every_spin.setValue(1)
    widget.settings.precision_combo.setCurrentText("fp32")
    assert widget.start_training()
    qtbot.waitUntil(
        lambda: any(isinstance(e, CheckpointEvent) for e in widget.run.events), timeout=TIMEOUT_MS
    )
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.run.cancelled and widget.run.result is None
    assert "Cancelled" in widget.run_panel.status_label.text()
    model, checkpoint = load_model(widget.checkpoint())
    assert checkpoint.metadata["step"] < 9 and checkpoint.class_names == ["nucleus"]

    widget.settings.max_steps_spin.setValue(checkpoint.metadata["step"] + 1)
    _train(qtbot, widget, widget.resume_training)
    assert notes["error"] == []
    assert widget.run.result.steps == checkpoint.metadata["step"] + 1


def test_closing_the_viewer_stops_the_worker_and_the_checkpoint_stays_valid(viewer, widget, qtbot):
    _add_stack(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    widget.settings.epochs_spin.setValue(50)
    widget.settings.checkpoint_every_spin.setValue(1)
    assert widget.start_training()
    job = widget.job
    qtbot.waitUntil(
        lambda: any(isinstance(e, CheckpointEvent) for e in widget.run.events), timeout=TIMEOUT_MS
    )
    path = widget.checkpoint()
    viewer.close()
    assert job.done.wait(60)
    load_model(path)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda v: v.add_labels(np.ones((4, 64, 60), np.uint8), name="cells labels"), "mismatch"),
        (lambda v: v.add_labels(np.zeros((4, 64, 64), np.uint8), name="cells labels"), "empty"),
    ],
)
def test_bad_layers_are_refused_with_a_message(viewer, widget, notes, setup, message):
    viewer.add_image(np.zeros((4, 64, 64), np.uint8), name="cells")
    setup(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    widget.run_panel.train_button.click()
    assert not widget.running and widget.run is None
    assert len(notes["error"]) == 1 and message in notes["error"][0]
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]


def test_duplicate_class_names_and_missing_class_are_refused(viewer, widget, notes):
    _add_stack(viewer)
    widget.run_panel.train_button.click()
    assert "Type a class name" in notes["error"][-1]
    widget.sources.one_class_check.setChecked(False)
    widget.sources.class_map_edit.setText("1=nucleus, 2=nucleus")
    widget.run_panel.train_button.click()
    assert "'nucleus' is given to label values 1 and 2" in notes["error"][-1]
    assert not widget.running


def test_an_output_folder_with_checkpoints_is_not_overwritten_silently(
    viewer, widget, tmp_path, monkeypatch
):
    _add_stack(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/last.safetensors").write_bytes(b"earlier run")
    asked = []
    monkeypatch.setattr(widget, "_ask_existing_output", lambda path: asked.append(path) or NEW_NAME)
    monkeypatch.setattr(widget, "_start", lambda request: request)
    request = widget.start_training()
    assert asked == [tmp_path / "run"]
    assert request.plan.config.output_dir == str(tmp_path / "run-2")
    assert (tmp_path / "run/last.safetensors").read_bytes() == b"earlier run"


def test_gui_and_cli_write_the_same_checkpoint(viewer, widget, qtbot, tmp_path, notes):
    _add_stack(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    for spin, value in (
        (widget.settings.max_steps_spin, 2),
        (widget.settings.seed_spin, 3),
        (widget.settings.val_spin, 0.34),
    ):
        spin.setValue(value)
    widget.settings.precision_combo.setCurrentText("fp32")
    export = widget.export_training_folder(tmp_path / "data")
    assert export.n_slices == 3
    args = ["train", *export.cli_arguments(), "--output", str(tmp_path / "cli")]
    args += ["--preset", "tiny", "--max-steps", "2", "--seed", "3", "--val-fraction", "0.34"]
    args += ["--device", "cpu", "--precision", "fp32"]
    assert cli.main(args) == 0
    _train(qtbot, widget)
    assert notes["error"] == []
    gui = load_file(str(tmp_path / "run/last.safetensors"))
    from_cli = load_file(str(tmp_path / "cli/last.safetensors"))
    assert gui.keys() == from_cli.keys()
    for name, tensor in gui.items():
        torch.testing.assert_close(tensor, from_cli[name], rtol=0, atol=1e-6, msg=name)
    assert widget.run.result.best_metric is not None  # validation ran on the held-out slice
    gui_card = read_checkpoint(tmp_path / "run/last.safetensors").card
    cli_card = read_checkpoint(tmp_path / "cli/last.safetensors").card
    assert all(value is not None for value in dataclasses.asdict(gui_card).values())
    assert gui_card.adapters == cli_card.adapters == "fine-tuned adapters"
    assert gui_card.training["settings"] == cli_card.training["settings"]
    assert gui_card.training_data["slices"] == cli_card.training_data["slices"] == 3
    assert list(gui_card.validation["per_class"]) == ["nucleus"]


def test_format_seconds():
    assert training_widget.format_seconds(None) == "?"
    assert training_widget.format_seconds(75) == "1 min 15 s"
    assert training_widget.format_seconds(3 * 3600 + 120) == "3 h 02 min"


# ---------------------------------------------------------------------------- issue 12
def test_labels_of_another_shape_count_as_not_annotated(viewer, widget):
    viewer.add_image(np.zeros((4, 64, 64), np.uint8), name="cells")
    viewer.add_labels(np.ones((4, 64, 60), np.uint8), name="cells labels")
    widget.sources.update_count()
    text = widget.sources.count_label.text()
    assert "0 of 4 slice(s) usable" in text and "Shape mismatch" in text
    assert "annotated" not in text


def test_time_limit_and_own_sam_weights_reach_the_run(viewer, widget, tmp_path, monkeypatch):
    _add_stack(viewer)
    widget.sources.class_name_edit.setText("nucleus")
    widget.settings.time_limit_spin.setValue(2.0)  # minutes
    own = tmp_path / "my_sam.pth"
    own.write_bytes(b"not read before training starts")
    widget.settings.sam_weights_edit.setText(str(own))
    monkeypatch.setattr(widget, "_start", lambda request: request)
    request = widget.start_training()
    assert request.plan.config.time_budget_s == 120.0
    assert request.plan.sam_weights == str(own)
    widget.settings.time_limit_spin.setValue(0.0)
    assert widget.settings.time_limit_spin.text() == "no limit"
    assert widget.start_training().plan.config.time_budget_s is None


def test_the_run_box_names_the_phase_and_shows_time_left_only_once_steady(widget):
    from napari_clip_guided_sam._widgets._training_run import STEADY_STEPS
    from napari_clip_guided_sam.training.events import PreparingEvent, StepEvent

    panel = widget.run_panel
    panel.show_start("Starting", time_budget_s=None)
    panel.show_event(PreparingEvent(40, 312))
    assert panel.phase_label.text() == "Preparing 312 slice(s): 40/312"
    assert (panel.progress.maximum(), panel.progress.value()) == (312, 40)
    assert "left" not in panel.time_label.text()
    # The first step is slow (warm-up), the next ones take 2 s each.
    times = [30.0 + 2.0 * k for k in range(STEADY_STEPS + 1)]
    for step, elapsed in enumerate(times, start=1):
        assert "left" not in panel.time_label.text()
        panel.show_event(StepEvent(1, step, 100, 0.5, elapsed, eta_s=9999.0))
    assert panel.phase_label.text().startswith("Training: epoch 1, step 5 of 100")
    assert "about 3 min 10 s left" in panel.time_label.text()  # 95 steps x 2 s
    assert panel.time_label.text().startswith("Elapsed ")


def test_the_time_left_respects_the_time_limit():
    from napari_clip_guided_sam._widgets._training_run import TimeLeft

    left = TimeLeft()
    for step in range(1, 7):
        left.add(step, 10.0 * step)
    assert left.seconds(100) == pytest.approx(940.0)
    assert left.seconds(100, budget_left_s=30.0) == 30.0


def test_a_single_image_run_with_a_time_limit_through_the_plugin_dock(
    make_napari_viewer, qtbot, tmp_path, notes
):
    """The user's path: the widget docked by napari (which hands plugins a viewer that warns
    on private API), one annotated image, a time limit, then the result in the segment
    widget, shown."""
    import warnings

    viewer = make_napari_viewer(show=True)
    rows, cols = np.mgrid[:64, :64]
    disk = (rows - 30) ** 2 + (cols - 30) ** 2 < 120
    viewer.add_image(np.where(disk, 200, 20).astype(np.uint8), name="cells")
    viewer.add_labels(disk.astype(np.uint8), name="cells labels")
    _, widget = viewer.window.add_plugin_dock_widget(training_widget.PLUGIN, "Train (fine-tune)")
    settings = widget.settings
    settings.preset_combo.setCurrentText("tiny")
    settings.device_combo.setCurrentText("cpu")
    settings.epochs_spin.setValue(100_000)
    settings.time_limit_spin.setValue(0.1)  # 6 s of training
    settings.output_edit.setText(str(tmp_path / "run"))
    widget.sources.class_name_edit.setText("nucleus")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        widget.run_panel.train_button.click()
        assert widget.running
        assert "No validation: 1 annotated slice is too few" in widget.messages.message
        qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
        segment = widget.load_into_segment_widget()
    assert not [w for w in caught if "Private attribute access" in str(w.message)]
    assert notes["error"] == []
    result = widget.run.result
    assert result.stopped == "time_budget" and result.best_path is None
    assert "time limit reached" in widget.run_panel.status_label.text()
    assert widget.checkpoint().name == "last.safetensors"

    assert segment.settings().checkpoint == str(widget.checkpoint())
    assert segment.preset_combo.currentText() == "tiny" and not segment.preset_combo.isEnabled()
    assert segment.classes_edit.text() == "nucleus"
    window = segment.window()
    segment_dock, training_dock = segment.parent(), widget.parent()
    assert training_dock in window.tabifiedDockWidgets(segment_dock)  # tabbed together...
    qtbot.waitUntil(  # ...with the segment widget's tab on top
        lambda: not segment.visibleRegion().isEmpty() and widget.visibleRegion().isEmpty()
    )
    training_dock.raise_()  # the training tab on top: loading again brings the segment one up
    qtbot.waitUntil(lambda: segment.visibleRegion().isEmpty())
    assert widget.load_into_segment_widget() is segment
    qtbot.waitUntil(lambda: not segment.visibleRegion().isEmpty())
