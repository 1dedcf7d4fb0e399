"""Widget tests keep the plugin's remembered settings (QSettings) in a temporary folder."""

import pytest
from qtpy.QtCore import QSettings


@pytest.fixture(autouse=True)
def _isolated_widget_settings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    return folder
