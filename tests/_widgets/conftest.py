"""Widget tests keep the plugin's remembered settings (QSettings) in a temporary folder;
shared fixtures: a viewer, and the error notifications the plugin shows."""

import pytest
from qtpy.QtCore import QSettings

from napari_clip_guided_sam._widgets import _common


@pytest.fixture(autouse=True)
def _isolated_widget_settings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    return folder


@pytest.fixture
def errors(monkeypatch):
    """Error notifications shown by the plugin."""
    shown = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    return shown


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()
