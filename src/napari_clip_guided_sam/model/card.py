"""The model card a checkpoint carries in its header: what the model is, which base it needs,
what it was trained on, with which settings, and how well it scored.

It travels inside the one `.safetensors` file, so a colleague who receives the file knows
everything about it (`clip-guided-sam info MODEL.safetensors`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .base_weights import ROLE_NAMES, ROLES, BaseWeights
from .config import ModelConfig

# Scores shown first, in this order, by `ModelCard.format`.
_HEADLINE_SCORES = ("miou", "fg_iou", "dice")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelCard:
    """Everything a user needs to know about a checkpoint (JSON in its header)."""

    preset: str
    architecture: dict[str, Any]  # SAM variant, CLIP architecture and input size
    base_weights: dict[str, Any]  # `BaseWeights.to_dict()`: per backbone, file and sha256
    adapter_init: str  # "released" or "identity"
    adapters: str  # "fine-tuned adapters" or "zero-shot (no fine-tuned adapters)"
    classes: list[str]
    text_features: bool  # the classes' guide text features are stored in the file
    training_data: dict[str, Any] | None = None  # images, slices, labels, pixel sizes
    training: dict[str, Any] | None = None  # settings and progress (steps, epochs, time)
    validation: dict[str, Any] | None = None  # held-out scores, overall and per class
    project_version: str = __version__
    created: str = field(default_factory=_now)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card; fields a newer version added are ignored, so old code reads it."""
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    @property
    def base(self) -> BaseWeights:
        return BaseWeights.from_dict(self.base_weights)

    def format(self) -> str:
        """The card as indented text (CLI `info`, widgets)."""
        lines = [
            f"preset:          {self.preset} (SAM {self.architecture.get('sam')}, CLIP "
            f"{self.architecture.get('clip')} at {self.architecture.get('clip_size')} px)",
            f"adapters:        {self.adapters}, initialised '{self.adapter_init}'",
            f"classes:         {', '.join(self.classes) or '(none)'}"
            + ("  (text features stored)" if self.text_features else ""),
            "base weights:",
        ]
        base = self.base
        lines += [f"  {ROLE_NAMES[role]}: {getattr(base, role).describe()}" for role in ROLES]
        if "random" in {base.sam.kind, base.clip.kind}:
            lines.append(f"  seed: {base.seed}")
        lines.append("training data:" + ("" if self.training_data else " (not recorded)"))
        lines += _indented(self.training_data or {})
        lines.append("training:" + ("" if self.training else " (not recorded)"))
        lines += _indented(self.training or {})
        lines += _format_validation(self.validation)
        lines.append(
            f"written by:      napari-clip-guided-sam {self.project_version}, {self.created}"
        )
        return "\n".join(lines)


def _indented(values: Mapping[str, Any], depth: int = 1) -> list[str]:
    lines = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            lines.append(f"{'  ' * depth}{key}:")
            lines += _indented(value, depth + 1)
        else:
            lines.append(f"{'  ' * depth}{key}: {_format_value(value)}")
    return lines


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_format_value(v) for v in value)
    return "n/a" if value is None else str(value)


def _format_validation(validation: Mapping[str, Any] | None) -> list[str]:
    if not validation:
        return ["validation:      none (no held-out data)"]
    lines = [
        f"validation:      {validation.get('n_samples')} held-out sample(s), epoch "
        f"{validation.get('epoch')}, step {validation.get('step')}"
    ]
    for name, scores in validation.get("per_class", {}).items():
        ordered = [k for k in _HEADLINE_SCORES if k in scores]
        ordered += [k for k in scores if k not in _HEADLINE_SCORES]
        text = ", ".join(f"{k} {_format_value(scores[k])}" for k in ordered)
        lines.append(f"  {name}: {text}")
    return lines


def validation_summary(
    metrics: Mapping[str, Any], class_names: Sequence[str], epoch: int, step: int
) -> dict[str, Any]:
    """Validation metrics (`training.validation.evaluate_model`) as the card keeps them:
    overall scores and, per class, that class's scores."""
    overall = {k: v for k, v in metrics.items() if "/" not in k and k != "n_samples"}
    per_class: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        score, slash, name = key.partition("/")
        if slash:
            per_class.setdefault(name, {})[score] = value
    if not per_class and len(class_names) == 1:
        per_class = {class_names[0]: overall}
    return {
        "epoch": epoch,
        "step": step,
        "n_samples": metrics.get("n_samples"),
        "overall": overall,
        "per_class": per_class,
    }


def make_card(
    config: ModelConfig,
    base: BaseWeights,
    adapters: str,
    class_names: Sequence[str],
    text_features: bool,
    **training: Any,
) -> ModelCard:
    """A card for a model; `training` gives training_data, training and validation."""
    return ModelCard(
        preset=config.name,
        architecture={
            "sam": config.sam.variant,
            "clip": config.clip.arch,
            "clip_size": config.clip.clip_size,
        },
        base_weights=base.to_dict(),
        adapter_init=config.adapters.init,
        adapters=adapters,
        classes=list(class_names),
        text_features=text_features,
        **training,
    )
