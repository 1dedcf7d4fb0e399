"""One model per napari viewer: the plugin's widgets share the viewer's `PredictorSession`.

The segment widget, the batch panels and the training preview each ask for the same
session, so a viewer holds at most one model in memory (a widget asking for other settings
replaces it). The map is weak: a closed viewer takes its session, and its model, with it.
"""

from __future__ import annotations

import weakref

from ..inference.session import PredictorSession

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def viewer_session(viewer) -> PredictorSession:
    """The model session of `viewer`, created on first use."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = PredictorSession()
    return session
