"""One model per napari viewer: the plugin's widgets share the viewer's `PredictorSession`.

The segment widget, the batch panels and the training preview each ask for the same
session, so a viewer holds at most one model in memory (a widget asking for other settings
replaces it). The map is weak: a closed viewer takes its session, and its model, with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator

from ..inference.predictor import Predictor
from ..inference.session import PredictorSession, PredictorSettings
from ._common import Progress

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def viewer_session(viewer) -> PredictorSession:
    """The model session of `viewer`, created on first use."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = PredictorSession()
    return session


def loaded_predictor(
    session: PredictorSession,
    settings: PredictorSettings,
    guide_threshold: float,
    n_points: int,
) -> Generator[Progress, None, Predictor]:
    """A job's first step: the session's predictor for `settings` (a `Progress` event is
    yielded first when it must be loaded, which is slow), with the widget's guide options."""
    if not session.is_loaded(settings):
        yield Progress(f"Loading model {settings.describe()}…")
    predictor = session.predictor(settings)
    predictor.set_guide_options(threshold=guide_threshold, n_points=n_points)
    return predictor
