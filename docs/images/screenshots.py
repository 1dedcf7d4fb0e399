"""Take the user guide's screenshots from the real plugin in a real napari window of
1280 x 800 pixels (a laptop screen).

Run under a virtual display from the project root:
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/images/screenshots.py

Uses the `tiny` preset (random weights, no download): the masks it draws are noise; the
screenshots show the user interface, not segmentation quality. With `--checkpoint`, a tiny
model fine-tuned on DSB2018 (see docs/training.md) also segments the sparse fluorescence
sample by class name alone, for `segment_widget_finetuned.png`:
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/images/screenshots.py \
        --checkpoint /tmp/dsb_tiny/best.safetensors

The widgets' remembered settings (the Advanced section) go to a temporary folder, so the
script neither reads nor changes yours.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
import tifffile
from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QApplication

HERE = Path(__file__).parent
PLUGIN = "napari-clip-guided-sam"
WINDOW = (1280, 800)
SEGMENT = "Segment (text + clicks)"


def pump(seconds: float = 0.4) -> None:
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_for(jobs, timeout: float = 300.0) -> None:
    """Process Qt events until the panel's job has finished."""
    start = time.time()
    while jobs.running and time.time() - start < timeout:
        pump(0.05)
    pump()


def window_with(viewer, widget_name: str):
    """Dock a widget of the plugin and size the window like a laptop screen."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, widget_name)
    widget.window().resize(*WINDOW)
    pump()
    return widget


def full_panel(widget, path: Path) -> None:
    """The whole content of a dock widget (also what is scrolled out of view)."""
    widget.content.grab().save(str(path))


def finetuned(checkpoint: str) -> None:
    """Text-only segmentation of an unseen sample with a fine-tuned tiny checkpoint."""
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM")
    viewer.open_sample(PLUGIN, "fluorescence_wide")
    widget = window_with(viewer, SEGMENT)
    for layer in viewer.layers:
        if "ground truth" in layer.name:
            layer.visible = False
    widget.device_combo.setCurrentText("cpu")
    widget.load_checkpoint(checkpoint)
    widget.segment_current_slice()
    wait_for(widget.jobs)
    viewer.reset_view()
    viewer.screenshot(str(HERE / "segment_widget_finetuned.png"), canvas_only=False)
    viewer.close()


def missing_weights() -> None:
    """The message panel when the paper preset's base weights are not there."""
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM")
    viewer.open_sample(PLUGIN, "tissue")
    widget = window_with(viewer, SEGMENT)
    widget.device_combo.setCurrentText("cpu")
    widget.classes_edit.setText("nucleus")
    widget.segment_button.click()
    wait_for(widget.jobs)
    viewer.screenshot(str(HERE / "segment_widget_error.png"), canvas_only=False)
    viewer.close()


def stack_panel(folder: Path) -> None:
    """The "Segment stack" panel (Layers > Segment) after a run on a small stack."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 300, size=(5, 96, 128)).astype(np.uint16)
    stack[:, 30:60, 40:90] += 2000
    path = folder / "cells.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM")
    viewer.open(str(path), plugin="napari")
    from napari_clip_guided_sam._widgets.batch_commands import segment_stack_command

    panel = segment_stack_command(viewer)
    panel.window().resize(*WINDOW)
    panel.preset.setCurrentText("tiny")
    panel.device.setCurrentText("cpu")
    panel.output_dir.setText(str(folder / "segmented"))
    panel.run()
    wait_for(panel.jobs)
    viewer.screenshot(str(HERE / "segment_stack_window.png"), canvas_only=False)
    viewer.close()


def main() -> None:
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM")
    viewer.open_sample(PLUGIN, "tissue")
    widget = window_with(viewer, SEGMENT)
    viewer.layers["DSB2018 stained tissue ground truth"].visible = False
    widget.preset_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.classes_edit.setText("nucleus")
    widget.similarity_check.setChecked(True)

    widget.segment_current_slice()
    wait_for(widget.jobs)
    viewer.layers["DSB2018 stained tissue similarity: nucleus"].visible = False

    points = widget.add_points_layer()
    points.add([[60, 80], [150, 200]])
    widget._toggle_click_label(points)
    points.add([[220, 40]])
    pump(0.3)
    wait_for(widget.jobs)
    viewer.reset_view()
    labels = viewer.layers["DSB2018 stained tissue labels"]
    viewer.layers.selection.active = labels
    rows, cols = labels.data.nonzero()
    viewer.cursor.position = (float(rows[len(rows) // 2]), float(cols[len(cols) // 2]))
    viewer.update_status_from_cursor()  # the status bar shows the class under the cursor
    pump()
    viewer.screenshot(str(HERE / "segment_widget_window.png"), canvas_only=False)
    widget.advanced.set_expanded(True)
    pump()
    full_panel(widget, HERE / "segment_widget_panel.png")
    widget.advanced.set_expanded(False)

    viewer.layers["DSB2018 stained tissue similarity: nucleus"].visible = True
    viewer.layers["DSB2018 stained tissue similarity: nucleus"].opacity = 1.0
    viewer.layers["DSB2018 stained tissue labels"].visible = False
    pump()
    viewer.screenshot(str(HERE / "similarity_map.png"), canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="a fine-tuned tiny checkpoint (optional)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, scratch)
        main()
        missing_weights()
        stack_panel(Path(scratch))
        if args.checkpoint:
            finetuned(args.checkpoint)
