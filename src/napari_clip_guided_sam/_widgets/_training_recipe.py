"""The training recipe's rows in the training widget's Advanced section: which random
changes the training images get, the learning-rate schedule and its warm-up, and balanced
sampling (the CLI's `--augment`, `--schedule`, `--warmup` and `--balance`).

The choices, the defaults of each preset and the ranges come from `training.recipe`,
`training.config.TrainingConfig` and `training.settings`, as on the command line. A row follows the
chosen preset's recipe until the user changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QWidget

from ..training.config import TrainingConfig
from ..training.recipe import (
    AUGMENTATIONS,
    SCHEDULES,
    augmentation_names,
    augmentation_settings,
    default_recipe,
)
from ..training.settings import LIMITS
from ._common import guarded
from ._forms import combo
from ._panels import AdvancedSection

# What each augmentation does to a training image, in the words of its check box's tooltip.
AUGMENTATION_TIPS = {
    "flips": "Mirror and rotate by quarter turns: right when the objects have no preferred "
    "orientation (most microscopy). The paper's choice.",
    "intensity": "Vary contrast, brightness and gamma: helps when staining or exposure "
    "differ between images.",
    "scale": "Zoom in and out a little: helps when object sizes vary (other magnification, "
    "other cell sizes).",
    "blur": "Blur now and then: helps when some images are slightly out of focus.",
}
SCHEDULE_TIP = (
    "How fast the model learns over the run. constant: the same learning rate throughout (the "
    "paper's choice). cosine: a short warm-up, then the rate falls smoothly to 0 at the end "
    "of the planned epochs or of the time limit (tiny's default). Follows the preset."
)
WARMUP_TIP = (
    "With the cosine schedule: the share of the run over which the learning rate rises from "
    "almost 0 to its full value (0.03: the first 3 % of the steps). Steadies the first steps."
)
BALANCE_TIP = (
    "Draw the training slices so that every class, and slices with few or small objects, come "
    "up about as often as the rest. Try it when a rare class or sparse slices are not learned. "
    "Off: every slice once per epoch, shuffled."
)


class RecipeInputs:
    """The recipe's inputs (augmentations, schedule, warm-up, balance) as `TrainingConfig`
    fields; they follow the preset's recipe until the user changes them."""

    def __init__(self) -> None:
        self.augment_checks = {name: QCheckBox(name) for name in AUGMENTATIONS}
        for name, check in self.augment_checks.items():
            check.setToolTip(AUGMENTATION_TIPS[name])
        self.schedule_combo: QComboBox = combo(list(SCHEDULES), SCHEDULE_TIP)
        self.schedule_combo.currentTextChanged.connect(guarded(self._on_schedule_changed))
        limit = LIMITS["warmup"]
        self.warmup_spin = QDoubleSpinBox()
        self.warmup_spin.setRange(limit.low, limit.high or 1.0)
        self.warmup_spin.setDecimals(3)
        self.warmup_spin.setSingleStep(0.01)
        self.warmup_spin.setValue(TrainingConfig().warmup)
        self.warmup_spin.setToolTip(WARMUP_TIP)
        self.balance_check = QCheckBox("Balanced sampling")
        self.balance_check.setToolTip(BALANCE_TIP)
        self._on_schedule_changed(self.schedule_combo.currentText())

    def add_rows(self, advanced: AdvancedSection) -> None:
        """The recipe's rows: augmentations two to a line, schedule, warm-up, balance."""
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for number, check in enumerate(self.augment_checks.values()):
            grid.addWidget(check, number // 2, number % 2)
        augment = QWidget()
        augment.setLayout(grid)
        augment.setToolTip("Random changes of the training images (none checked: none)")
        advanced.add_row("Augmentation", augment)
        advanced.add_row("LR schedule", self.schedule_combo)
        advanced.add_row("Warm-up share", self.warmup_spin)
        advanced.add_row("", self.balance_check)

    def values(self) -> dict[str, Any]:
        """The chosen recipe as `TrainingConfig` fields."""
        chosen = [name for name, check in self.augment_checks.items() if check.isChecked()]
        return {
            **augmentation_settings(chosen),
            "schedule": self.schedule_combo.currentText(),
            "warmup": self.warmup_spin.value(),
            "balance": self.balance_check.isChecked(),
        }

    def show(self, settings: Mapping[str, Any] | TrainingConfig) -> None:
        """Show a recipe: a preset's (`default_recipe`) or a run's `TrainingConfig`."""
        fields = settings if isinstance(settings, Mapping) else settings.to_dict()
        enabled = augmentation_names(fields)
        for name, check in self.augment_checks.items():
            check.setChecked(name in enabled)
        self.schedule_combo.setCurrentText(fields["schedule"])
        self.balance_check.setChecked(bool(fields["balance"]))
        if "warmup" in fields:
            self.warmup_spin.setValue(fields["warmup"])

    def follow_preset(self, old: str, new: str) -> None:
        """Show `new`'s recipe, keeping any row the user changed from `old`'s recipe."""
        recipe = {key: value for key, value in default_recipe(new).items() if key != "epochs"}
        if old:
            previous, current = default_recipe(old), self.values()
            recipe = {
                key: value if current[key] == previous[key] else current[key]
                for key, value in recipe.items()
            }
        self.show(recipe)

    def _on_schedule_changed(self, schedule: str) -> None:
        self.warmup_spin.setEnabled(schedule != "constant")
