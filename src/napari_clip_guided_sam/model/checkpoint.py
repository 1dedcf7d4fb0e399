"""Our checkpoint format: what training changed, as safetensors plus JSON metadata.

A checkpoint holds the trainable tensors (adapters, decoder, prompt encoder, trained CLIP
attention, text positional embedding), optionally the guide text features of the classes
it was trained on (closed-set deployment needs no text tower), the model config, class
names, the base weights it needs (official files, the user's own files by sha256, or a
seeded random init for `tiny`) and a model card (`card.ModelCard`). Loading never unpickles
anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .._atomic import atomic_write
from . import base_weights
from .base_weights import BaseWeights
from .card import ModelCard, make_card
from .clip_guided_sam import CLIPGuidedSAM
from .config import ModelConfig
from .factory import build_model
from .trainable import trainable_parameter_names

FORMAT = "napari-clip-guided-sam"
FORMAT_VERSION = "1"
TEXT_FEATURES_KEY = "text_features"


class CheckpointError(ValueError):
    """A checkpoint is corrupt, of another format, or does not fit the model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint, not yet applied to a model."""

    config: ModelConfig
    tensors: dict[str, torch.Tensor]
    base: BaseWeights  # the base weights it must be applied to
    class_names: list[str] = field(default_factory=list)
    text_features: torch.Tensor | None = None  # [K, D] guide text features of class_names
    base_weights: str = "official"  # short tag of `base`
    metadata: dict[str, Any] = field(default_factory=dict)  # training info (step, metrics…)
    fine_tuned: bool = True  # False: saved from a zero-shot model (adapters bypassed)
    card: ModelCard | None = None  # None in checkpoints written before cards existed


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> Path:
    """Write a safetensors file atomically; a failure of the disk (full, read-only) is an
    OSError with its errno, as for any other file, and `path` keeps its earlier content."""

    def write(temp: Path) -> None:
        try:
            save_file(tensors, str(temp), metadata=header)
        except SafetensorError as error:  # safetensors reports I/O errors as its own type
            found = re.search(r"os error (\d+)", str(error))
            if found is None:
                raise
            number = int(found.group(1))
            raise OSError(number, os.strerror(number)) from error

    return atomic_write(path, write)


def save_checkpoint(
    model: CLIPGuidedSAM,
    path: str | Path,
    *,
    class_names: list[str] | None = None,
    text_features: torch.Tensor | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = True,
    card: ModelCard | None = None,
) -> Path:
    """Write the model's trainable tensors (and cached text features) atomically.

    card: the model card; by default one without training information.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or allow overwriting.")
    parameters = dict(model.named_parameters())
    tensors = {
        name: parameters[name].detach().to("cpu", torch.float32).contiguous()
        for name in trainable_parameter_names(model)
    }
    class_names = list(class_names or [])
    if text_features is not None:
        if text_features.shape[0] != len(class_names):
            raise ValueError(
                f"{text_features.shape[0]} text feature rows for {len(class_names)} class names."
            )
        tensors[TEXT_FEATURES_KEY] = text_features.detach().to("cpu", torch.float32).contiguous()
    if model.base is None:
        raise ValueError("The model does not record its base weights; build it with build_model.")
    if card is None:
        card = make_card(
            model.config, model.base, model.adapter_state, class_names, text_features is not None
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
        "class_names": json.dumps(class_names),
        "base_weights": model.base_weights,
        "base": json.dumps(model.base.to_dict()),
        "fine_tuned": json.dumps(model.fine_tuned),
        "card": card.to_json(),
        "metadata": json.dumps(metadata or {}),
    }
    return write_safetensors(path, tensors, header)


@dataclass
class CheckpointHeader:
    """What a checkpoint is, from its header alone (no tensor read): for showing a file."""

    config: ModelConfig
    base: BaseWeights
    class_names: list[str] = field(default_factory=list)
    base_weights: str = "official"
    metadata: dict[str, Any] = field(default_factory=dict)
    fine_tuned: bool = True
    card: ModelCard | None = None


def read_checkpoint_header(path: str | Path) -> CheckpointHeader:
    """Read and validate a checkpoint's header (config, classes, base, card); fast, because
    no tensor is loaded."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file; choose the file in it, e.g. "
            f"{path / 'best.safetensors'}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, truncated or another format): {error}"
        ) from error
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a {FORMAT} checkpoint (no format tag). "
            "Released checkpoints of the original code are imported with "
            "`clip-guided-sam weights import`."
        )
    try:
        config = ModelConfig.from_dict(json.loads(header["config"]))
        tag = header.get("base_weights", "official")
        record = json.loads(header["base"]) if "base" in header else None
        return CheckpointHeader(
            config=config,
            base=BaseWeights.recorded(record, tag, config),
            class_names=json.loads(header.get("class_names", "[]")),
            base_weights=tag,
            metadata=json.loads(header.get("metadata", "{}")),
            fine_tuned=bool(json.loads(header.get("fine_tuned", "true"))),
            card=ModelCard.from_json(header["card"]) if "card" in header else None,
        )
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        detail = f"missing entry {error}" if isinstance(error, KeyError) else str(error)
        raise CheckpointError(
            f"{path} has a damaged header ({detail}); the file was changed after training "
            "wrote it: use the original file, or export the model again."
        ) from error


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint file without building a model."""
    header = read_checkpoint_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, truncated or another format): {error}"
        ) from error
    text_features = tensors.pop(TEXT_FEATURES_KEY, None)
    return Checkpoint(
        config=header.config,
        tensors=tensors,
        class_names=header.class_names,
        text_features=text_features,
        base_weights=header.base_weights,
        metadata=header.metadata,
        base=header.base,
        fine_tuned=header.fine_tuned,
        card=header.card,
    )


def same_architecture(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether tensors trained with config `a` fit a model built with config `b`.

    Whether CLIP's text positional embedding trained does not count: every model has it
    (checkpoints of `paper`/`tiny` from before it was frozen there carry a trained copy).
    """

    def layout(config: ModelConfig) -> tuple:
        trainable = dataclasses.replace(config.trainable, text_positional_embedding=False)
        return (config.sam, config.clip, config.adapters, trainable)

    return layout(a) == layout(b)


def apply_checkpoint(model: CLIPGuidedSAM, checkpoint: Checkpoint) -> None:
    """Copy a checkpoint's tensors into a model of the same architecture."""
    if not same_architecture(checkpoint.config, model.config):
        raise CheckpointError(
            f"This checkpoint was trained for preset {checkpoint.config.name!r}, which has a "
            f"different architecture from the model's preset {model.config.name!r}; choose "
            f"preset {checkpoint.config.name!r} (or build the model from the checkpoint)."
        )
    parameters = dict(model.named_parameters())
    expected = set(trainable_parameter_names(model))
    missing = sorted(expected - set(checkpoint.tensors))
    unknown = sorted(set(checkpoint.tensors) - set(parameters))
    if missing or unknown:
        raise CheckpointError(
            f"Checkpoint tensors do not match the model: missing {missing[:3]}"
            f"{'…' if len(missing) > 3 else ''}, unknown {unknown[:3]}."
        )
    diverged = [name for name, tensor in checkpoint.tensors.items() if not tensor.isfinite().all()]
    if diverged:
        raise CheckpointError(
            f"This checkpoint holds weights that are not finite numbers (NaN or infinite, in "
            f"{diverged[0]}{' and others' if len(diverged) > 1 else ''}): the training that "
            "wrote it diverged. Use an earlier checkpoint, or train again with a lower "
            "learning rate."
        )
    with torch.no_grad():
        for name, tensor in checkpoint.tensors.items():
            target = parameters[name]
            if target.shape != tensor.shape:
                raise CheckpointError(
                    f"{name}: checkpoint shape {tuple(tensor.shape)} "
                    f"!= model {tuple(target.shape)}."
                )
            target.copy_(tensor.to(target.dtype))
    model.fine_tuned = checkpoint.fine_tuned
    model.guide.reset_text_cache()


def load_model(
    path: str | Path,
    *,
    sam_weights: str | Path | None = None,
    clip_weights: str | Path | None = None,
) -> tuple[CLIPGuidedSAM, Checkpoint]:
    """Build the base model a checkpoint needs and apply the checkpoint to it.

    sam_weights / clip_weights: the custom base files the checkpoint was fine-tuned on
    (required then, and compared by sha256; refused for a checkpoint of the official base).
    """
    checkpoint = read_checkpoint(path)
    arguments = base_weights.rebuild_arguments(
        checkpoint.base,
        sam_weights,
        clip_weights,
        config=checkpoint.config,
        what=Path(path).name,
    )
    model = build_model(checkpoint.config, **arguments)
    apply_checkpoint(model, checkpoint)
    return model, checkpoint
