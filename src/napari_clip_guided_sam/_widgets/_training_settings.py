"""The training settings box: preset, epochs, learning rates, device... as `TrainingConfig`
fields for `training.run.plan_run`.

Defaults are the engine's (the CLI's); the learning rates follow the preset until the user
types other ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLineEdit, QWidget

from ..model.config import PRESETS
from ..model.runtime import DEVICE_CHOICES, PRECISION_CHOICES
from ..training.engine import TrainingConfig, default_learning_rates
from ..training.recipe import default_recipe
from ._common import guarded
from ._forms import browse_row, choose_folder, double_spin, int_spin, non_negative_number
from ._training_job import default_output_dir

MODES = {"text only (CLIP-sampled prompts)": "text", "manual (ground-truth points)": "manual"}


class TrainingSettings(QGroupBox):
    """The "Settings" box of the training widget."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Settings", parent)
        self._lr_preset = ""
        defaults = TrainingConfig()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip(
            "Text only: train with prompt points sampled from CLIP's similarity map, as the "
            "model is used when you segment by class name. Manual: points from the labels."
        )
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.currentTextChanged.connect(guarded(self._on_preset_changed))
        self.epochs_spin = int_spin(defaults.epochs, 1, 100_000, "Passes over the training data")
        self.lr_edit = QLineEdit()
        self.lr_edit.setToolTip("Learning rate of adapters, mask decoder, prompt encoder")
        self.clip_lr_edit = QLineEdit()
        self.clip_lr_edit.setToolTip("Learning rate of CLIP's trainable attention")
        self.val_spin = double_spin(
            defaults.val_fraction,
            0.0,
            0.9,
            "Fraction of annotated slices held out to validate each epoch",
        )
        self.seed_spin = int_spin(defaults.seed, 0, 2**31 - 1, "Random seed (same seed, same run)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISION_CHOICES))
        self.max_steps_spin = int_spin(0, 0, 10_000_000, "Stop after this many steps (0: no limit)")
        self.checkpoint_every_spin = int_spin(
            0, 0, 1_000_000, "Also save the last checkpoint every N steps (0: at epoch ends)"
        )
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("checkpoint folder")
        self.output_edit.setText(str(default_output_dir()))
        output_row = browse_row(
            self.output_edit,
            lambda: choose_folder(self, self.output_edit, "Folder for the checkpoints"),
        )
        form = QFormLayout(self)
        for label, widget in (
            ("Mode", self.mode_combo),
            ("Preset", self.preset_combo),
            ("Epochs", self.epochs_spin),
            ("Learning rate", self.lr_edit),
            ("CLIP learning rate", self.clip_lr_edit),
            ("Validation fraction", self.val_spin),
            ("Seed", self.seed_spin),
            ("Device", self.device_combo),
            ("Precision", self.precision_combo),
            ("Max steps", self.max_steps_spin),
            ("Save every (steps)", self.checkpoint_every_spin),
            ("Output folder", output_row),
        ):
            form.addRow(label, widget)
        self._on_preset_changed(self.preset_combo.currentText())

    def _on_preset_changed(self, preset: str) -> None:
        """Fill the epochs and learning rates with the preset's defaults unless the user
        changed them."""
        if not preset:
            return
        old_epochs = default_recipe(self._lr_preset)["epochs"] if self._lr_preset else None
        if old_epochs is None or self.epochs_spin.value() == old_epochs:
            self.epochs_spin.setValue(default_recipe(preset)["epochs"])
        old = default_learning_rates(self._lr_preset) if self._lr_preset else None
        current = (self.lr_edit.text(), self.clip_lr_edit.text())
        if old is None or current == (f"{old[0]:g}", f"{old[1]:g}"):
            lr, clip_lr = default_learning_rates(preset)
            self.lr_edit.setText(f"{lr:g}")
            self.clip_lr_edit.setText(f"{clip_lr:g}")
        self._lr_preset = preset

    def output(self) -> Path:
        """The checkpoint folder (ValueError if none is given)."""
        text = self.output_edit.text().strip()
        if not text:
            raise ValueError("Choose an output folder for the checkpoints.")
        return Path(text).expanduser()

    @property
    def preset(self) -> str:
        return self.preset_combo.currentText()

    def values(self) -> dict[str, Any]:
        """The `TrainingConfig` fields chosen here (the engine's defaults elsewhere)."""
        return {
            "epochs": self.epochs_spin.value(),
            "lr": non_negative_number(self.lr_edit.text(), "Learning rate"),
            "clip_lr": non_negative_number(self.clip_lr_edit.text(), "CLIP learning rate"),
            "mode": MODES[self.mode_combo.currentText()],
            "val_fraction": round(self.val_spin.value(), 4),
            "seed": self.seed_spin.value(),
            "device": self.device_combo.currentText(),
            "precision": self.precision_combo.currentText(),
            "max_steps": self.max_steps_spin.value() or None,
            "checkpoint_every": self.checkpoint_every_spin.value() or None,
        }

    def show_resumed(self, preset: str, config: TrainingConfig) -> None:
        """Show the settings a resumed run keeps (preset, seed, mode, rates, validation)."""
        self.preset_combo.setCurrentText(preset)
        self.seed_spin.setValue(config.seed)
        self.mode_combo.setCurrentText(next(k for k, v in MODES.items() if v == config.mode))
        self.lr_edit.setText(f"{config.lr:g}")
        self.clip_lr_edit.setText(f"{config.clip_lr:g}")
        self.val_spin.setValue(config.val_fraction)
