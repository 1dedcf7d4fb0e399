"""One path for a training run, shared by `clip-guided-sam train` and the training widget.

A run lives in an output folder: ``best.safetensors``, ``last.safetensors`` and the state
file next to the last one. :func:`plan_run` checks that folder (an earlier run is continued
with ``resume``, replaced with ``overwrite``, else refused), settles the settings (what the
user chose, else the resumed run's, else the preset's defaults) and returns a
:class:`RunPlan`. The plan builds the model (rebuilding the base weights a resumed run was
trained from), splits the data and starts the engine, so the CLI and the widget train the
same model on the same split with the same settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import remove_stale_temporaries
from .._locking import output_lock
from ..model import base_weights
from ..model.checkpoint import same_architecture
from ..model.clip_guided_sam import CLIPGuidedSAM
from ..model.config import ModelConfig, get_preset, with_compute_choices
from ..model.factory import build_model
from .config import TrainingConfig, default_learning_rates
from .distributed import Ranks
from .engine import check_writable, global_batch, train
from .events import Event, TrainingResult
from .inputs import Subset, split_dataset
from .recipe import LEGACY_SETTINGS, default_recipe
from .state import read_state_info, resolve_resume_path, state_path_for

__all__ = [
    "DEFAULT_PRESET",
    "RESUMED_SETTINGS",
    "ExistingRunError",
    "RunPlan",
    "has_run",
    "next_free_folder",
    "plan_run",
    "remove_run",
]

DEFAULT_PRESET = "paper"
# TrainingConfig fields a resumed run keeps from the interrupted one unless chosen anew.
RESUMED_SETTINGS = (
    "epochs",
    "mode",
    "val_fraction",
    "seed",
    "lr",
    "clip_lr",
    "batch_size",
    "grad_accumulation",
    "augment",
    "augment_intensity",
    "augment_scale",
    "augment_blur",
    "balance",
    "schedule",
    "warmup",
    "augment_variants",
)


class ExistingRunError(FileExistsError):
    """The output folder holds the checkpoints of another run."""


def _checkpoint_names() -> tuple[str, str]:
    return TrainingConfig.best_name, TrainingConfig.last_name


def has_run(folder: str | Path) -> bool:
    """Whether `folder` holds a checkpoint of a run."""
    return any((Path(folder) / name).exists() for name in _checkpoint_names())


def next_free_folder(folder: str | Path) -> Path:
    """`folder` with the first suffix -2, -3, ... that holds no run."""
    folder = Path(folder)
    number = 2
    while has_run(candidate := folder.with_name(f"{folder.name}-{number}")):
        number += 1
    return candidate


def remove_run(folder: str | Path) -> None:
    """Remove a run's checkpoints and training state from `folder` (its other files stay)."""
    for name in _checkpoint_names():
        for path in (Path(folder) / name, state_path_for(Path(folder) / name)):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class RunPlan:
    """A training run ready to start: the model to build and how to train it."""

    model_config: ModelConfig
    config: TrainingConfig
    resume: bool = False
    overwrite: bool = False  # remove the earlier run's files when training starts
    base: base_weights.BaseWeights | None = None  # the resumed run's base weights
    sam_weights: str | Path | None = None  # the user's own SAM base file
    clip_weights: str | Path | None = None  # the user's own CLIP base file

    @property
    def preset(self) -> str:
        return self.model_config.name

    @property
    def output(self) -> Path:
        return Path(str(self.config.output_dir))

    def build_model(self) -> CLIPGuidedSAM:
        """The model to train (slow; missing base weights fail here, before any data)."""
        files: dict[str, Any] = {"sam_weights": self.sam_weights, "clip_weights": self.clip_weights}
        if self.base is not None:  # a resumed run continues on the base it was trained on
            files = base_weights.rebuild_arguments(
                self.base, **files, config=self.model_config, what=f"The run in {self.output}"
            )
        return build_model(self.model_config, **files)

    def split(self, dataset: Sequence) -> tuple[Subset, Subset]:
        """The training and validation items of `dataset` (slices stay on one side)."""
        return split_dataset(dataset, self.config.val_fraction, self.config.seed)

    def validation_note(self, dataset: Sequence, val_data: Sequence) -> str | None:
        """Why this run has no validation, in words for the user (None when it has one).
        The CLI prints it; the widget shows it before training starts."""
        if len(val_data):
            return None
        keys = getattr(dataset, "slice_keys", None)
        n_slices = len(dict.fromkeys(keys)) if keys is not None else len(dataset)
        if self.config.val_fraction <= 0:
            why = "the validation fraction is 0"
        else:
            why = (
                f"{n_slices} annotated slice{'s' if n_slices != 1 else ''} "
                f"{'are' if n_slices != 1 else 'is'} too few (at least 2 are needed: one "
                "to train on, one to validate)"
            )
        return (
            f"No validation: {why}. No mIoU is measured and no best checkpoint is chosen; "
            "the result is the last checkpoint (last.safetensors)."
        )

    def train(
        self,
        model: CLIPGuidedSAM,
        train_data: Sequence,
        val_data: Sequence,
        ranks: Ranks = Ranks(),
    ) -> Generator[Event, None, TrainingResult]:
        """The engine's generator for this run (see `engine.train`), holding the output
        folder's lock: a second run into the same folder is refused, naming this one. The
        project's stale temporaries of a killed run in the folder are removed first. On
        several processes (`ranks`) rank 0 holds the folder and writes its files."""
        if not ranks.is_main:
            return (yield from self._train(model, train_data, val_data, ranks))
        check_writable(self.output)  # a clear message before anything else
        with output_lock(self.output, "a training run"):
            remove_stale_temporaries(self.output)
            if self.overwrite:
                remove_run(self.output)
            return (yield from self._train(model, train_data, val_data, ranks))

    def _train(self, model, train_data, val_data, ranks):
        return (
            yield from train(
                model,
                train_data,
                val_data if len(val_data) else None,
                self.config,
                resume_from=self.output if self.resume else None,
                ranks=ranks,
            )
        )


def plan_run(
    output: str | Path,
    *,
    preset: str | None = None,
    settings: Mapping[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    adapter_init: str | None = None,
    sam_weights: str | Path | None = None,
    clip_weights: str | Path | None = None,
    architecture: Mapping[str, int | None] | None = None,
    world_size: int = 1,
) -> RunPlan:
    """Settle a run in `output`.

    Args:
        preset: the model preset; None: the resumed run's, else `DEFAULT_PRESET`.
        settings: `TrainingConfig` fields the user chose (None values count as not chosen);
            the others are the resumed run's (`RESUMED_SETTINGS`), else the preset's
            learning rates and recipe (`engine.default_recipe`). A time budget without a
            chosen epoch count leaves the epochs open: the budget sets the run's length.
        resume: continue the interrupted run saved in `output`.
        overwrite: replace a run in `output` (its files are removed when training starts).
        adapter_init: "released" or "identity"; None: the preset's (a resumed run's own).
        sam_weights, clip_weights: the user's own base files instead of the official ones
            (a resumed run trained on such files needs the same files again).
        architecture: `model.config.with_compute_choices` arguments (image_size,
            adapter_blocks, clip_trainable_blocks; None values: the preset's); a resumed
            run must be given its own.
        world_size: the processes that will train the run together (torchrun's); a resumed
            run keeps its batch over all processes (`engine.global_batch`): each process
            takes its share unless `settings` choose a batch size.

    Raises:
        ExistingRunError: `output` holds a run and neither `resume` nor `overwrite` is set.
        FileNotFoundError, ValueError: nothing to resume, or `preset` is not the resumed
            run's architecture.
    """
    output = Path(output)
    saved = None
    if resume:
        saved = read_state_info(resolve_resume_path(output, TrainingConfig.last_name))
    elif has_run(output) and not overwrite:
        raise ExistingRunError(f"{output} already holds checkpoints of a run.")
    if saved is not None:
        model_config = ModelConfig.from_dict(saved["model_config"])
        # The run's own preset (its compute choices may differ from the preset's defaults).
        own = preset == model_config.name
        if preset and not own and not same_architecture(model_config, get_preset(preset)):
            raise ValueError(
                f"preset {preset!r} differs from the resumed run's preset "
                f"{model_config.name!r}; resume with that preset."
            )
        if adapter_init and adapter_init != model_config.adapters.init:
            raise ValueError(
                f"adapter initialisation {adapter_init!r} differs from the resumed run's "
                f"{model_config.adapters.init!r}; leave it out to resume."
            )
        if with_compute_choices(model_config, **(architecture or {})) != model_config:
            raise ValueError(
                "the image size, adapted blocks or trained CLIP blocks differ from the "
                "resumed run's; leave them out to resume."
            )
    else:
        model_config = get_preset(preset or DEFAULT_PRESET)
        if adapter_init:
            model_config = model_config.replace(**{"adapters.init": adapter_init})
        model_config = with_compute_choices(model_config, **(architecture or {}))
    config = _training_config(model_config.name, settings or {}, saved, output, world_size)
    base = None
    if saved is not None:
        base = base_weights.BaseWeights.recorded(
            saved.get("base"), saved["base_weights"], model_config
        )
    return RunPlan(
        model_config,
        config,
        resume,
        overwrite and not resume,
        base,
        sam_weights,
        clip_weights,
    )


def _training_config(
    preset: str,
    chosen: Mapping[str, Any],
    saved: Mapping[str, Any] | None,
    output: Path,
    world_size: int,
) -> TrainingConfig:
    lr, clip_lr = default_learning_rates(preset)
    values: dict[str, Any] = {"lr": lr, "clip_lr": clip_lr, **default_recipe(preset)}
    if saved is not None:
        resumed = saved["training_config"]
        for key in RESUMED_SETTINGS:  # a run saved before a setting existed: its old value
            if key in resumed or key in LEGACY_SETTINGS:
                values[key] = resumed.get(key, LEGACY_SETTINGS.get(key))
        if global_batch(saved) % world_size == 0:  # this process's share of the batch
            values["batch_size"] = global_batch(saved) // world_size
    elif chosen.get("time_budget_s") is not None and chosen.get("epochs") is None:
        values["epochs"] = None  # the budget sets the length of the run
    values.update({key: value for key, value in chosen.items() if value is not None})
    if values["epochs"] is None and values.get("time_budget_s") is None:
        raise ValueError(
            f"the run in {output} was planned by its time budget: give the whole run's time "
            "budget again, or a number of epochs"
        )
    return dataclasses.replace(TrainingConfig(), **values, output_dir=str(output))
