"""Screenshots of the training widget in a 1280 x 800 napari window (mid-run, after a run,
the result loaded in the segment widget), plus the event-loop delay.

Run under a virtual display from the project root:
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/images/training_screenshots.py

The fluorescence sample (256 x 256) is cut into a stack of four 128 x 128 tiles; the ground
truth is kept on three of them ("annotated"), the fourth is left for the model. The `tiny`
preset (random base weights, CPU) trains for 12 epochs under a 2-minute time limit; the
script prints the event-loop delay measured by the widget's QTimer probe while training,
and the foreground IoU on the unannotated tile before and after training. The widgets'
remembered settings go to a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QApplication

from napari_clip_guided_sam._sample_data import load_sample
from napari_clip_guided_sam.inference.predictor import Predictor

HERE = Path(__file__).parent
PLUGIN = "napari-clip-guided-sam"
WINDOW = (1280, 800)
HELD_OUT = 3  # the tile left unannotated


def pump(seconds: float = 0.4) -> None:
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def tiles(array: np.ndarray) -> np.ndarray:
    """[256, 256, ...] -> [4, 128, 128, ...] (row-major quadrants)."""
    return np.stack([array[r : r + 128, c : c + 128] for r in (0, 128) for c in (0, 128)])


def foreground_iou(predictor: Predictor, image: np.ndarray, truth: np.ndarray) -> float:
    from napari_clip_guided_sam.data.normalize import to_model_rgb

    labels = predictor.segment(to_model_rgb(image), ["nucleus"]).labels > 0
    union = np.logical_or(labels, truth).sum()
    return float(np.logical_and(labels, truth).sum() / union) if union else 1.0


def main(output: str) -> int:
    (image, _, _), (truth, _, _) = load_sample("fluorescence")
    stack, truth_stack = tiles(image), tiles(truth)
    annotated = truth_stack.copy()
    annotated[HELD_OUT] = 0
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM training")
    viewer.add_image(stack, name="nuclei", rgb=stack.ndim == 4)
    viewer.add_labels(annotated, name="nuclei annotations")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train (fine-tune)")
    widget.window().resize(*WINDOW)
    settings = widget.settings
    settings.preset_combo.setCurrentText("tiny")
    settings.device_combo.setCurrentText("cpu")
    settings.epochs_spin.setValue(12)
    settings.time_limit_spin.setValue(2.0)
    settings.val_spin.setValue(0.34)
    settings.output_edit.setText(output)
    widget.sources.class_name_edit.setText("nucleus")
    viewer.dims.set_point(0, HELD_OUT)
    pump()

    untrained = foreground_iou(
        Predictor.from_preset("tiny", device="cpu"), stack[HELD_OUT], truth_stack[HELD_OUT] > 0
    )
    started = time.time()
    widget.run_panel.train_button.click()
    shot_taken = False
    while widget.running:
        pump(0.1)
        steady = "left" in widget.run_panel.time_label.text()
        if not shot_taken and steady and len(widget.run_panel.plot.mious) >= 3:
            viewer.screenshot(str(HERE / "training_widget_running.png"), canvas_only=False)
            shot_taken = True
    pump()
    summary = widget.probe_summary
    print(f"training: {widget.run.result.steps} steps in {time.time() - started:.0f} s wall")
    print(summary.describe())

    viewer.layers.selection.active = viewer.layers["nuclei"]
    widget.preview_button.click()
    while widget.preview_jobs.running:
        pump(0.1)
    pump()
    viewer.layers["nuclei annotations"].visible = False
    viewer.screenshot(str(HERE / "training_widget_window.png"), canvas_only=False)
    widget.advanced.set_expanded(True)
    pump()
    widget.content.grab().save(str(HERE / "training_widget_panel.png"))
    widget.advanced.set_expanded(False)

    widget.load_button.click()
    pump(1.0)
    viewer.screenshot(str(HERE / "training_widget_loaded.png"), canvas_only=False)

    trained = Predictor.from_checkpoint(widget.checkpoint(), device="cpu")
    tuned = foreground_iou(trained, stack[HELD_OUT], truth_stack[HELD_OUT] > 0)
    print(
        f"foreground IoU on the unannotated tile: untrained {untrained:.3f}, fine-tuned {tuned:.3f}"
    )
    viewer.close()
    return 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, scratch)
        code = main(str(Path(scratch) / "run"))
    sys.exit(code)
