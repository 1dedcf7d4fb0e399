"""Take the user guide's screenshots from the real plugin in a real napari window.

Run under a virtual display from the project root:
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/images/screenshots.py

Uses the `tiny` preset (random weights, no download): the masks it draws are noise; the
screenshots show the user interface, not segmentation quality. With `--checkpoint`, a tiny
model fine-tuned on DSB2018 (see docs/training.md) also segments the sparse fluorescence
sample by class name alone, for `segment_widget_finetuned.png`:
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/images/screenshots.py \
        --checkpoint /tmp/dsb_tiny/best.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

HERE = Path(__file__).parent
PLUGIN = "napari-clip-guided-sam"


def wait_for(widget, timeout: float = 300.0) -> None:
    """Process Qt events until the widget's job has finished."""
    start = time.time()
    while widget.jobs.running and time.time() - start < timeout:
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def finetuned(checkpoint: str) -> None:
    """Text-only segmentation of an unseen sample with a fine-tuned tiny checkpoint."""
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM")
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample(PLUGIN, "fluorescence_wide")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment (text + clicks)")
    for layer in viewer.layers:
        if "ground truth" in layer.name:
            layer.visible = False
    widget.device_combo.setCurrentText("cpu")
    widget.classes_edit.setText("nucleus")
    widget.load_checkpoint(checkpoint)
    widget.segment_current_slice()
    wait_for(widget)
    viewer.reset_view()
    viewer.screenshot(str(HERE / "segment_widget_finetuned.png"), canvas_only=False)
    viewer.close()


def main() -> None:
    viewer = napari.Viewer(show=True, title="napari: CLIP-Guided SAM")
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample(PLUGIN, "tissue")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment (text + clicks)")
    viewer.layers["DSB2018 stained tissue ground truth"].visible = False
    widget.preset_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.classes_edit.setText("nucleus")
    widget.similarity_check.setChecked(True)

    widget.segment_current_slice()
    wait_for(widget)
    viewer.layers["DSB2018 stained tissue similarity: nucleus"].visible = False

    points = widget.add_points_layer()
    points.add([[60, 80], [150, 200]])
    widget._toggle_click_label(points)
    points.add([[220, 40]])
    time.sleep(0.3)
    QApplication.processEvents()
    wait_for(widget)
    viewer.reset_view()
    labels = viewer.layers["DSB2018 stained tissue labels"]
    viewer.layers.selection.active = labels
    rows, cols = labels.data.nonzero()
    viewer.cursor.position = (float(rows[len(rows) // 2]), float(cols[len(cols) // 2]))
    viewer.update_status_from_cursor()  # the status bar shows the class under the cursor
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    viewer.screenshot(str(HERE / "segment_widget_window.png"), canvas_only=False)
    widget.grab().save(str(HERE / "segment_widget_panel.png"))

    viewer.layers["DSB2018 stained tissue similarity: nucleus"].visible = True
    viewer.layers["DSB2018 stained tissue similarity: nucleus"].opacity = 1.0
    viewer.layers["DSB2018 stained tissue labels"].visible = False
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    viewer.screenshot(str(HERE / "similarity_map.png"), canvas_only=True)
    viewer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="a fine-tuned tiny checkpoint (optional)")
    args = parser.parse_args()
    main()
    if args.checkpoint:
        finetuned(args.checkpoint)
