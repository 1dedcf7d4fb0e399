"""A predictor session for a GUI: one loaded model, reloaded only when it would differ.

The plugin's widgets share one `PredictorSession` per napari viewer, so a viewer holds at
most one model. A different preset, checkpoint, base weights file, device or precision loads
a new model, and so does a checkpoint file rewritten since it was loaded (training writes one
every epoch). A checkpoint decides the preset: it is loaded with `Predictor.from_checkpoint`.
Loading is slow, so it is meant to be called from a worker thread; the predictor it returns
is thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from .predictor import Predictor

__all__ = ["PredictorSession", "PredictorSettings"]


@dataclass(frozen=True)
class PredictorSettings:
    """What decides which model is loaded, and how it runs."""

    preset: str = "paper"  # used without a checkpoint (a checkpoint brings its own)
    checkpoint: str | None = None  # a fine-tuned checkpoint file, or None for the base model
    device: str = "auto"  # auto | cuda | mps | cpu
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    sam_weights: str | None = None  # the user's own SAM base file instead of the official one

    def __post_init__(self) -> None:
        for name in ("checkpoint", "sam_weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value).strip() or None)

    def describe(self) -> str:
        name = Path(self.checkpoint).name if self.checkpoint else "base weights"
        return f"{self.preset} ({name}) on {self.device}, {self.precision}"

    def load(self) -> Predictor:
        """Build the predictor these settings describe (slow)."""
        if self.checkpoint is not None:
            return Predictor.from_checkpoint(
                self.checkpoint, self.device, self.precision, sam_weights=self.sam_weights
            )
        return Predictor.from_preset(
            self.preset, None, self.device, self.precision, sam_weights=self.sam_weights
        )

    def checkpoint_stamp(self) -> tuple[int, int] | None:
        """When and how large the checkpoint file was written (None: no checkpoint, or no
        file, which loading then reports)."""
        if self.checkpoint is None:
            return None
        try:
            stat = Path(self.checkpoint).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


class PredictorSession:
    """Holds the predictor of the current settings; a change of settings (or of the
    checkpoint file) loads a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[PredictorSettings, tuple[int, int] | None] | None = None
        self._predictor: Predictor | None = None

    def is_loaded(self, settings: PredictorSettings) -> bool:
        """Whether `predictor(settings)` returns at once."""
        return self._predictor is not None and self._loaded == (
            settings,
            settings.checkpoint_stamp(),
        )

    @property
    def current(self) -> Predictor | None:
        """The loaded predictor, if any."""
        return self._predictor

    def predictor(self, settings: PredictorSettings) -> Predictor:
        """The predictor for `settings`, loading it (slow) when the settings changed."""
        with self._lock:
            if not self.is_loaded(settings):
                self._predictor = None  # free the old model before loading the new one
                self._loaded = None
                stamp = settings.checkpoint_stamp()
                self._predictor = settings.load()
                self._loaded = (settings, stamp)
            assert self._predictor is not None
            return self._predictor
