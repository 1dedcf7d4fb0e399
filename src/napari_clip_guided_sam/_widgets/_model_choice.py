"""Which model a widget uses: a preset, or a fine-tuned checkpoint that decides the preset.

Choosing a checkpoint reads its header (no tensor, no model built): the preset is set to the
checkpoint's and locked, and the widget says what the model is: zero-shot (no fine-tuned
adapters) without a checkpoint; with one, that its adapters are fine-tuned, its classes,
its validation scores per class and, on request, its whole model card. Used by the segment
widget and the batch panels; the model itself is loaded by the viewer's `PredictorSession`.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLineEdit, QPlainTextEdit, QToolButton

from ..model.card import ModelCard
from ..model.checkpoint import CheckpointHeader, read_checkpoint_header
from ..model.config import FROM_SCRATCH_PRESETS, PRESETS
from ._forms import WEIGHTS_FILTER, browse_row, choose_checkpoint, choose_file, combo, line_edit
from ._messages import ERROR_COLOR, error_message
from ._panels import text_label

TINY = "tiny"
ZERO_SHOT = "zero-shot (no fine-tuned adapters)"
PRESET_TIP = (
    "The model's architecture. 'paper' (SAM ViT-B + CLIP ViT-B/16) is the published model and "
    "needs the official weights (downloaded once). 'tiny' is a small model with random "
    "weights: it runs anywhere without downloads, to try the plugin (its masks are noise). "
    "'tiny_448' is 'tiny' at 448 px: the one to train from scratch on a CPU (minutes). "
    "'paper_cpu' is the CPU-friendly one: the paper model set up to fine-tune on a laptop "
    "CPU in hours (512 px, adapters in the last SAM blocks; the same official weights). "
    "A fine-tuned checkpoint sets this for you."
)
CHECKPOINT_TIP = (
    "Optional: a model you fine-tuned (a .safetensors file from the training widget or "
    "`clip-guided-sam train`). Empty: the base model, zero-shot."
)
LOCKED_TIP = (
    "Set by the checkpoint: a fine-tuned model works only with the preset it was trained "
    "with. Clear the checkpoint to choose another preset."
)
SAM_WEIGHTS_TIP = (
    "Optional: your own SAM ViT-B weights file (e.g. a microscopy generalist such as "
    "micro-sam's) instead of the official one. Empty: the official file."
)
SAM_WEIGHTS_NOTE = (
    "Not the official SAM file: the model is recorded as built on a custom base (by file "
    "name and sha256), and a model fine-tuned on it needs this same file again."
)


def sam_weights_field(parent) -> tuple[QLineEdit, object]:
    """A path field for the user's own SAM base weights, with its browse button."""
    edit = line_edit(SAM_WEIGHTS_TIP, "empty: the official SAM weights")
    row = browse_row(
        edit,
        lambda: choose_file(parent, edit, "Your own SAM weights", WEIGHTS_FILTER),
        "Choose your own SAM weights file",
    )
    return edit, row


class ModelChoice(QGroupBox):
    """The "Model" box: preset, optional checkpoint, and what the chosen model is."""

    def __init__(self, parent=None):
        super().__init__("Model", parent)
        self.header: CheckpointHeader | None = None
        self.preset_combo = combo(list(PRESETS), PRESET_TIP)
        self.checkpoint_edit = line_edit(CHECKPOINT_TIP, "none: the base model, zero-shot")
        self.summary = text_label("", "What the chosen model is")
        self.card_button = QToolButton()
        self.card_button.setText("Model card")
        self.card_button.setCheckable(True)
        self.card_button.setToolTip(
            "Show the checkpoint's card: base weights, training data and settings, scores"
        )
        self.card_text = QPlainTextEdit()
        self.card_text.setReadOnly(True)
        self.card_text.setMaximumHeight(180)
        self.card_text.setToolTip("The model card stored in the checkpoint file")
        self.card_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.card_button.setArrowType(Qt.ArrowType.RightArrow)
        self.card_button.toggled.connect(self._show_card)
        form = QFormLayout(self)
        form.addRow("Preset", self.preset_combo)
        form.addRow(
            "Checkpoint",
            browse_row(self.checkpoint_edit, self._browse, "Choose a fine-tuned checkpoint"),
        )
        form.addRow(self.summary)
        form.addRow(self.card_button)
        form.addRow(self.card_text)
        self.checkpoint_edit.textChanged.connect(self.refresh)
        self.preset_combo.currentTextChanged.connect(self._describe_base)
        self.refresh()

    # ------------------------------------------------------------------ values
    @property
    def preset(self) -> str:
        return self.preset_combo.currentText()

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoint_edit.text().strip() or None

    def set_checkpoint(self, path: str | Path | None) -> None:
        self.checkpoint_edit.setText("" if path is None else str(path))

    def use_tiny(self) -> None:
        """The `tiny` preset without a checkpoint: try the workflow without downloads."""
        self.set_checkpoint(None)
        self.preset_combo.setCurrentText(TINY)

    # ------------------------------------------------------------------ display
    def refresh(self, *_) -> None:
        """Read the chosen checkpoint's header: lock the preset to it and describe it."""
        self.header = None
        path = self.checkpoint
        if path is None:
            self._lock_preset(None)
            self._describe_base()
            return
        try:
            self.header = read_checkpoint_header(path)
        except (OSError, ValueError) as error:
            self._lock_preset(None)
            self._show(f"Cannot use this checkpoint: {error_message(error)}", None, error=True)
            return
        self._lock_preset(self.header.config.name)
        self._show(describe_checkpoint(self.header), self.header.card)

    def _describe_base(self, *_) -> None:
        if self.checkpoint is not None:
            return
        text = f"{ZERO_SHOT.capitalize()}: SAM prompted by CLIP's similarity map."
        if self.preset in FROM_SCRATCH_PRESETS:
            text += (
                f" '{self.preset}' has random weights: for trying the plugin (its masks are "
                "noise) or training from scratch."
            )
        self._show(text, None)

    def _lock_preset(self, preset: str | None) -> None:
        combo_box = self.preset_combo
        if preset is None:
            combo_box.setEnabled(True)
            combo_box.setToolTip(PRESET_TIP)
            return
        if combo_box.findText(preset) < 0:
            combo_box.addItem(preset)  # a checkpoint of a custom configuration
        combo_box.setCurrentText(preset)
        combo_box.setEnabled(False)
        combo_box.setToolTip(LOCKED_TIP)

    def _show(self, text: str, card: ModelCard | None, error: bool = False) -> None:
        self.summary.setText(text)
        self.summary.setStyleSheet(f"color: {ERROR_COLOR};" if error else "")
        self.card_text.setPlainText(card.format() if card is not None else "")
        self.card_button.setVisible(card is not None)
        self._show_card(self.card_button.isChecked())

    def _show_card(self, shown: bool) -> None:
        self.card_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.card_text.setVisible(shown and bool(self.card_text.toPlainText()))

    def _browse(self) -> None:
        choose_checkpoint(self, self.checkpoint_edit)


def describe_checkpoint(header: CheckpointHeader) -> str:
    """One paragraph: adapters, preset, classes and validation scores per class."""
    card = header.card
    adapters = (
        card.adapters
        if card is not None
        else ("fine-tuned adapters" if header.fine_tuned else ZERO_SHOT)
    )
    classes = ", ".join(header.class_names) or "(none recorded)"
    lines = [
        f"{adapters.capitalize()}, preset '{header.config.name}' (set by the checkpoint).",
        f"Trained on: {classes}.",
    ]
    lines.append(validation_line(card))
    return " ".join(lines)


def validation_line(card: ModelCard | None) -> str:
    """Held-out scores per class, e.g. "Validation: nucleus mIoU 0.712."."""
    if card is None or not card.validation:
        return "Validation: none recorded."
    parts = []
    for name, scores in card.validation.get("per_class", {}).items():
        score = scores.get("miou", scores.get("fg_iou"))
        label = "mIoU" if "miou" in scores else "IoU"
        if score is not None:
            parts.append(f"{name} {label} {score:.3f}")
    if not parts:
        return "Validation: none recorded."
    return f"Validation ({card.validation.get('n_samples')} held-out): {', '.join(parts)}."
