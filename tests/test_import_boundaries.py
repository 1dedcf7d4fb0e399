"""The compute packages import no Qt and no napari (docs/architecture.md, "Package map")."""

import subprocess
import sys

COMPUTE_MODULES = [
    "napari_clip_guided_sam.model.factory",
    "napari_clip_guided_sam.model.checkpoint",
    "napari_clip_guided_sam.model.released",
    "napari_clip_guided_sam.model.accounting",
    "napari_clip_guided_sam.cli",
]
OPTIONAL = ["data", "training", "inference", "evaluation"]


def test_compute_packages_import_no_gui_modules():
    code = f"""
import importlib, pkgutil, sys
import napari_clip_guided_sam as root
names = {COMPUTE_MODULES!r}
for package in {OPTIONAL!r}:
    module = importlib.import_module("napari_clip_guided_sam." + package)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, module.__name__ + ".")]
for name in names:
    importlib.import_module(name)
gui = sorted(m for m in sys.modules if m.split(".")[0] in
             {{"napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt"}})
print("\\n".join(gui))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
