"""What the training engine writes into a checkpoint's model card: a summary of the data, the
settings and progress of the run, and the held-out scores per class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model.card import ModelCard, make_card, validation_summary


def _source_dataset(data: Any) -> Any:
    """The `SliceDataset` behind training data (through Subset / PreparedCache views)."""
    for _ in range(8):
        if data is None or hasattr(data, "n_pairs"):
            return data
        data = getattr(data, "data", None)
    return None


def _pixel_sizes(dataset: Any) -> tuple[list[float], set[str]]:
    """In-plane (Y, X) pixel sizes and units of the dataset's calibrated images."""
    sizes, units = [], set()
    for image in dataset.images:
        if image.pixel_size is None:
            continue
        calibrated = dict(zip(image.spatial_axes, image.pixel_size, strict=True))
        sizes += [calibrated[axis] for axis in "YX" if axis in calibrated]
        units.add(image.unit or "unknown unit")
    return sizes, units


def _label_source(dataset: Any) -> str:
    # Folder names only: a card travels with the model, the user's paths need not.
    folders = sorted(
        {Path(image.path).parent.name for image in dataset.images if image.path is not None}
    )
    if folders:
        return "label images paired by name with the image files in " + ", ".join(folders)
    return "label arrays (napari layers or arrays in memory)"


# Training settings that describe the run itself (not where files went or memory use).
CARD_SETTINGS = (
    "epochs", "lr", "clip_lr", "weight_decay", "batch_size", "grad_accumulation", "mode",
    "val_fraction", "seed", "precision", "augment", "augment_intensity", "augment_scale",
    "augment_blur", "balance", "schedule", "warmup", "max_steps", "time_budget_s",
    "best_metric",
)  # fmt: skip


def summarize_data(train_data: Sequence, val_data: Sequence | None) -> dict[str, Any]:
    """Counts, label source and pixel-size range of a run's training and validation data."""
    summary: dict[str, Any] = {
        "training_samples": len(train_data),
        "validation_samples": len(val_data) if val_data else 0,
    }
    dataset = _source_dataset(train_data)
    if dataset is None:
        summary["source"] = "prepared samples (no dataset record)"
        return summary
    summary["images"] = dataset.n_pairs
    summary["slices"] = dataset.n_slices
    summary["labels"] = _label_source(dataset)
    sizes, units = _pixel_sizes(dataset)
    if sizes:
        unit = ", ".join(sorted(units))
        low, high = min(sizes), max(sizes)
        summary["pixel_size"] = f"{low:g} {unit}" if low == high else f"{low:g}-{high:g} {unit}"
        if len(sizes) < 2 * dataset.n_pairs:
            summary["pixel_size"] += " (some images uncalibrated)"
    else:
        summary["pixel_size"] = "unknown (no calibrated image)"
    return summary


def latest_validation(history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """(metrics, epoch, step) of the most recent validation in a run's history."""
    for record in reversed(history):
        metrics = {k.removeprefix("val_"): v for k, v in record.items() if k.startswith("val_")}
        if metrics:
            return {"metrics": metrics, "epoch": record["epoch"], "step": record["step"]}
    return None


def training_card(
    model,
    class_names: Sequence[str],
    text_features: bool,
    training_data: Mapping[str, Any],
    settings: Mapping[str, Any],
    progress: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
) -> ModelCard:
    """The card of a checkpoint written during training.

    progress: steps, epochs and training time so far; history: the run's epoch records,
    whose latest held-out scores become the card's validation (None without validation).
    """
    latest = latest_validation(history)
    validation = None
    if latest is not None:
        validation = validation_summary(
            latest["metrics"], class_names, latest["epoch"], latest["step"]
        )
    return make_card(
        model.config,
        model.base,
        model.adapter_state,
        class_names,
        text_features,
        training_data=dict(training_data),
        training={
            "settings": {k: settings[k] for k in CARD_SETTINGS if k in settings},
            **progress,
        },
        validation=validation,
    )
