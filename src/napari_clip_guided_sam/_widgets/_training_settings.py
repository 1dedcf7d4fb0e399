"""The training settings: the primary "Training" box (preset, length, time limit, output
folder) and the rows of the Advanced section (prompt mode, learning rates, the recipe's
augmentation, schedule and sampling, validation, seed, device, precision, step limits, own
SAM weights), as `TrainingConfig` fields for `training.run.plan_run`.

Defaults are the engine's (the CLI's); the epochs, learning rates and recipe follow the
preset until the user changes them. Another Advanced row is one more entry in
`add_advanced_rows` and one more field in `values`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QWidget

from ..model.config import PRESETS
from ..model.runtime import DEVICE_CHOICES, PRECISION_CHOICES
from ..training.config import TrainingConfig, default_learning_rates
from ..training.recipe import default_recipe
from ._common import guarded
from ._forms import (
    browse_row,
    choose_folder,
    combo,
    double_spin,
    int_spin,
    line_edit,
    non_negative_number,
)
from ._model_choice import PRESET_TIP, SAM_WEIGHTS_NOTE, sam_weights_field
from ._panels import AdvancedSection
from ._training_job import default_output_dir
from ._training_recipe import RecipeInputs

MODES = {"class name": "text", "points on labels": "manual"}


class TrainingSettings(QGroupBox):
    """The "Training" box of the training widget, and its Advanced rows."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Training", parent)
        self._lr_preset = ""
        defaults = TrainingConfig()
        self.preset_combo = combo(list(PRESETS), PRESET_TIP)
        self.preset_combo.currentTextChanged.connect(guarded(self._on_preset_changed))
        self.epochs_spin = int_spin(
            defaults.epochs,
            1,
            100_000,
            "How many times training goes over all annotated slices (10 by default). More "
            "epochs: longer training, usually better up to a point.",
        )
        self.time_limit_spin = QDoubleSpinBox()
        self.time_limit_spin.setRange(0.0, 100_000.0)
        self.time_limit_spin.setDecimals(1)
        self.time_limit_spin.setSingleStep(1.0)
        self.time_limit_spin.setSuffix(" min")
        self.time_limit_spin.setSpecialValueText("no limit")
        self.time_limit_spin.setToolTip(
            "Stop training after this many minutes of training (a checkpoint is written); "
            "'no limit' runs all epochs. Data preparation before the first step is not "
            "counted. Same as `--time-budget` on the command line."
        )
        self.output_edit = line_edit(
            "The folder the checkpoints go to (best.safetensors, last.safetensors and what "
            "Resume needs). A new, dated folder by default.",
            "checkpoint folder",
            str(default_output_dir()),
        )
        output_row = browse_row(
            self.output_edit,
            lambda: choose_folder(self, self.output_edit, "Folder for the checkpoints"),
            "Choose the folder for the checkpoints",
        )
        form = QFormLayout(self)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Time limit", self.time_limit_spin)
        form.addRow("Save to", output_row)
        self._build_advanced_inputs(defaults)
        self._on_preset_changed(self.preset_combo.currentText())

    def _build_advanced_inputs(self, defaults: TrainingConfig) -> None:
        self.mode_combo = combo(
            list(MODES),
            "How prompt points are made while training. From the class name: as when you "
            "segment by name (the paper's choice; use it unless you segment by clicks). "
            "From points on the labels: for a model used mostly with clicks.",
        )
        self.lr_edit = line_edit(
            "How fast the adapters and SAM's mask decoder learn (follows the preset: 5e-5 "
            "for paper, 1e-3 for tiny and tiny_448). Lower it if the loss jumps around.",
        )
        self.clip_lr_edit = line_edit(
            "How fast CLIP's attention learns (follows the preset: 1e-7 for paper, 1e-4 "
            "for tiny and tiny_448). Rarely changed.",
        )
        self.val_spin = double_spin(
            defaults.val_fraction,
            0.0,
            0.9,
            "Share of the annotated slices kept aside to measure the model after each epoch "
            "(mIoU); the best one is saved as best.safetensors. 0: no validation.",
        )
        self.seed_spin = int_spin(
            defaults.seed,
            0,
            2**31 - 1,
            "Random seed: the same data and seed give the same model, in the GUI and the CLI.",
        )
        self.device_combo = combo(
            list(DEVICE_CHOICES),
            "Where training runs: auto picks a CUDA GPU, then Apple's GPU (MPS), then the CPU.",
        )
        self.precision_combo = combo(
            list(PRECISION_CHOICES),
            "Number format of the computation: auto uses 16-bit (bf16) where supported "
            "(faster), else 32-bit (fp32). fp32 repeats exactly across machines.",
        )
        self.max_steps_spin = int_spin(
            0, 0, 10_000_000, "Stop after this many training steps (0: no limit)."
        )
        self.checkpoint_every_spin = int_spin(
            0,
            0,
            1_000_000,
            "Also save the last checkpoint every N steps, not only at the end of each "
            "epoch (0: epoch ends only). Useful for long epochs.",
        )
        self.sam_weights_edit, self._sam_row = sam_weights_field(self)
        self.recipe = RecipeInputs()

    def add_advanced_rows(self, advanced: AdvancedSection) -> None:
        """Put this box's advanced inputs into the widget's Advanced section."""
        advanced.add_row("Prompts from", self.mode_combo)
        advanced.add_row("Learning rate", self.lr_edit)
        advanced.add_row("CLIP learning rate", self.clip_lr_edit)
        self.recipe.add_rows(advanced)
        advanced.add_row("Validation share", self.val_spin)
        advanced.add_row("Seed", self.seed_spin)
        advanced.add_row("Device", self.device_combo)
        advanced.add_row("Precision", self.precision_combo)
        advanced.add_row("Max steps", self.max_steps_spin)
        advanced.add_row("Save every (steps)", self.checkpoint_every_spin)
        advanced.add_row("Own SAM weights", self._sam_row)
        advanced.add_note(SAM_WEIGHTS_NOTE)

    def _on_preset_changed(self, preset: str) -> None:
        """Fill the epochs, learning rates and recipe with the preset's defaults unless the
        user changed them."""
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
        self.recipe.follow_preset(self._lr_preset, preset)
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

    @property
    def sam_weights(self) -> str | None:
        """The user's own SAM base file (ValueError if it does not exist), or None."""
        text = self.sam_weights_edit.text().strip()
        if text and not Path(text).expanduser().is_file():
            raise ValueError(f"SAM weights file not found: {text}")
        return str(Path(text).expanduser()) if text else None

    def values(self) -> dict[str, Any]:
        """The `TrainingConfig` fields chosen here (the engine's defaults elsewhere)."""
        minutes = self.time_limit_spin.value()
        return {
            "epochs": self.epochs_spin.value(),
            "lr": non_negative_number(self.lr_edit.text(), "Learning rate"),
            "clip_lr": non_negative_number(self.clip_lr_edit.text(), "CLIP learning rate"),
            "mode": MODES[self.mode_combo.currentText()],
            **self.recipe.values(),
            "val_fraction": round(self.val_spin.value(), 4),
            "seed": self.seed_spin.value(),
            "device": self.device_combo.currentText(),
            "precision": self.precision_combo.currentText(),
            "max_steps": self.max_steps_spin.value() or None,
            "time_budget_s": minutes * 60.0 if minutes > 0 else None,
            "checkpoint_every": self.checkpoint_every_spin.value() or None,
        }

    def show_resumed(self, preset: str, config: TrainingConfig) -> None:
        """Show the settings a resumed run keeps (preset, seed, mode, rates, recipe,
        validation): resuming trains with them, as `--resume` does without options."""
        self.preset_combo.setCurrentText(preset)
        self.seed_spin.setValue(config.seed)
        self.mode_combo.setCurrentText(next(k for k, v in MODES.items() if v == config.mode))
        self.lr_edit.setText(f"{config.lr:g}")
        self.clip_lr_edit.setText(f"{config.clip_lr:g}")
        self.recipe.show(config)
        self.val_spin.setValue(config.val_fraction)
