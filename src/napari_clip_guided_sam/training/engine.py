"""The training engine: a generator that trains a model and yields progress events.

`train(...)` yields `PreparingEvent` while it prepares the samples (once per run, before
the first step), `StepEvent` after every optimiser step, `EpochEvent` with validation
metrics after every epoch, `CheckpointEvent` for every file written, and finally
`FinishedEvent`; the generator's return value is the same `TrainingResult`. A consumer
cancels by no longer iterating (`generator.close()`): checkpoints are written atomically at
epoch ends (and every `checkpoint_every` steps), so the last one on disk stays valid.

Reproducibility: the shuffle order (or the balanced draw) is a function of (seed, epoch),
every random draw of an example (augmentation, prompt points) of (seed, epoch, its position
in the epoch's order) and torch's global RNG of (seed, epoch, batch), so a run resumed from
its training state gives the same weights and metrics as an uninterrupted one, and W
processes of batch B (`training.distributed`, under torchrun) train as one process of batch
W B. The learning-rate schedule follows the planned steps; under a time budget it follows
the training time instead (see `lr_factor`), which no run repeats exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import ensure_folder, os_error, temporary_file
from ..data.class_map import LabelTable
from ..evaluation.scoring import evaluate_model
from ..model.base_weights import BaseWeights
from ..model.checkpoint import same_architecture, save_checkpoint
from ..model.config import ModelConfig
from ..model.guide import validate_class_names
from ..model.runtime import resolve_device, resolve_precision
from ..model.threads import work_unit
from ..model.trainable import parameter_groups
from .compute import (
    has_frozen_prefix,
    resolve_augment_variants,
    training_compute,
    variant_generators,
)
from .config import TrainingConfig
from .distributed import Ranks
from .events import (
    CheckpointEvent,
    CheckpointSaveError,
    EpochEvent,
    Event,
    FinishedEvent,
    PreparingEvent,
    StepEvent,
    TrainingDivergedError,
    TrainingResult,
)
from .inputs import PreparedCache, collate
from .model_card import summarize_data, training_card
from .recipe import LEGACY_SETTINGS, lr_factor
from .sampling import balanced_order, epoch_order, sampling_weights
from .state import (
    TrainingState,
    load_state,
    resolve_resume_path,
    restore,
    save_state,
    state_path_for,
)
from .step import StepForward, training_loss

# Settings a resumed run must share with the interrupted one to continue it exactly (and the
# batch of all processes together, `global_batch`). A run saved before a setting existed
# used the value in LEGACY_SETTINGS.
_RESUME_KEYS = (
    "seed", "grad_accumulation", "mode", "augment", "augment_intensity",
    "augment_scale", "augment_blur", "balance", "schedule", "warmup", "augment_variants",
)  # fmt: skip


# --------------------------------------------------------------------------- helpers
def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that depends only on (seed, *keys): independent streams per batch."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


_STREAM_TORCH, _STREAM_AUGMENT, _STREAM_POINTS = 0, 1, 2


@contextlib.contextmanager
def _seeded_global_rng(device: torch.device, seed: int):
    """Seed torch's global RNG for one batch without leaking the change to the caller."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _Clock:
    """Training time: runs only while the generator runs, not while a consumer holds it."""

    def __init__(self, offset: float = 0.0):
        self._offset = offset
        self._since: float | None = time.perf_counter()

    def elapsed(self) -> float:
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._offset + running

    def pause(self) -> None:
        self._offset, self._since = self.elapsed(), None

    def resume(self) -> None:
        self._since = time.perf_counter()


def _emit(clock: _Clock, event):
    clock.pause()
    yield event
    clock.resume()


def check_writable(folder: Path) -> None:
    """Fail early (before any training) when checkpoints cannot be written to `folder`."""
    try:
        ensure_folder(folder)
    except OSError as error:
        raise os_error(error.errno, f"Cannot write checkpoints: {error}") from error
    try:
        handle, probe = temporary_file(folder, "write-test")
        try:
            os.write(handle, b"ok")
        finally:
            os.close(handle)
            probe.unlink()
    except OSError as error:
        raise os_error(
            error.errno,
            f"Cannot write checkpoints to {folder}: {error.strerror or error}. "
            "Choose a writable output folder with free space.",
        ) from error


def _prepared(data: Sequence, model_config: ModelConfig, cache_mb: int) -> PreparedCache:
    """Data as a PreparedCache (a ready one, e.g. shared between runs, is used as is)."""
    if isinstance(data, PreparedCache):
        if data.config.sam.image_size != model_config.sam.image_size or (
            data.config.resize != model_config.resize
        ):
            raise ValueError("The prepared data were made for another input frame.")
        return data
    return PreparedCache(data, model_config, cache_mb * 2**20)


def _prepare_samples(*caches: PreparedCache | None) -> Generator[PreparingEvent, None, None]:
    """Prepare the samples up front (before the training clock starts), saying how far."""
    ready = [cache for cache in caches if cache is not None]
    total, done = sum(len(cache) for cache in ready), 0
    for cache in ready:
        for count in cache.fill():
            yield PreparingEvent(done + count, total)
        done += len(cache)


def label_table(data: Sequence, names: Sequence[str]) -> LabelTable:
    """The output label value of each class: the data's class map's, else by position."""
    class_map = getattr(data, "class_map", None)
    if class_map is not None:
        table = class_map.label_table().subset(names)
        if table is not None:
            return table
    return LabelTable.positional(names)


def _class_names(data: Sequence, cache: PreparedCache, given: Sequence[str] | None) -> list[str]:
    names = given if given is not None else getattr(data, "class_names", None)
    if names is None:
        names = dict.fromkeys(cache[i].class_name for i in range(len(cache)))
    return list(names)


# --------------------------------------------------------------------------- engine
def train(
    model,
    train_data: Sequence,
    val_data: Sequence | None,
    config: TrainingConfig,
    resume_from: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    ranks: Ranks = Ranks(),
) -> Generator[Event, None, TrainingResult]:
    """Train `model` in place on `train_data`, validating on `val_data` after each epoch.

    Data items are `data.datasets.Sample`-like (image uint8 [H, W, 3], mask bool [H, W],
    class_name, source). `resume_from`: an output folder, its last checkpoint or the state
    file next to it. `class_names` (default: the dataset's) are stored with each checkpoint
    together with their text features, for closed-set use. `ranks`: this process's place
    in a run of several (`training.distributed.process_group`; each rank trains on its share
    of every batch and only rank 0 writes files); by default the run has one process.
    """
    if len(train_data) == 0:
        raise ValueError("No training samples: the training set is empty.")
    device = ranks.place(resolve_device(config.device))
    dtype = resolve_precision(config.precision, device)
    if config.output_dir is not None and ranks.is_main:
        check_writable(Path(config.output_dir))
    model.to(device)
    model.fine_tuned = True  # from here on the adapters are in use (and trained)
    caches = has_frozen_prefix(model) and (config.prefix_cache_mb or config.prefix_cache_disk_mb)
    variants = resolve_augment_variants(config.augment_variants, bool(caches))
    # Variants of the run's chosen augmentations (none when nothing is augmented).
    variants = variants if config.augmentation.enabled else 0
    config = dataclasses.replace(config, augment_variants=variants)
    optimizer = torch.optim.AdamW(
        parameter_groups(
            model, config.lr, config.clip_lr, config.weight_decay, config.clip_weight_decay
        )
    )
    train_cache = _prepared(train_data, model.config, config.cache_mb)
    val_cache = _prepared(val_data, model.config, config.cache_mb) if val_data else None
    names = _class_names(train_data, train_cache, class_names)
    validate_class_names(names)
    info = {
        "label_table": label_table(train_data, names).to_config(),
        "model_config": model.config.to_dict(),
        "base_weights": model.base_weights,
        "base": model.base.to_dict(),
        "training_config": config.to_dict(),
        "n_train": len(train_data),
        "world_size": ranks.world_size,
        "class_names": names,
        "training_data": summarize_data(train_data, val_data),
    }
    state = TrainingState()
    if resume_from is not None:
        loaded = load_state(resolve_resume_path(resume_from, config.last_name))
        _check_resumable(loaded.info, info)
        restore(loaded, model, optimizer)
        for group in optimizer.param_groups:
            group["lr"] = config.clip_lr if group.get("name") == "clip" else config.lr
        config = _with_restored_weight_decays(config, optimizer)
        info["training_config"] = config.to_dict()
        state = loaded.state
    yield from _prepare_samples(train_cache, val_cache)
    run = _Run(
        model, optimizer, config, device, dtype, train_cache, val_cache, names, info, state, ranks
    )
    run.saved_step = state.step if resume_from is not None else None
    with training_compute(model, config, device):
        return (yield from run.loop())


def _with_restored_weight_decays(
    config: TrainingConfig, optimizer: torch.optim.Optimizer
) -> TrainingConfig:
    """`config` with the weight decays the optimiser state brought back (per group)."""
    decays = {group.get("name"): group["weight_decay"] for group in optimizer.param_groups}
    return dataclasses.replace(
        config,
        weight_decay=decays.get("sam_and_adapters", config.weight_decay),
        clip_weight_decay=decays.get("clip", config.clip_weight_decay),
    )


def _text_training(config: ModelConfig) -> str:
    """How the text positional embedding learns, in words."""
    if not config.trainable.text_positional_embedding:
        return "a frozen text positional embedding"
    return f"text gradient through the {config.guide.text_gradient!r} feature"


def global_batch(info: Mapping[str, Any]) -> int:
    """The examples one optimiser step's batch holds over all processes of a run (its
    training state's `info`): a run of W processes of batch B resumes as one of W' x B'
    with W' B' = W B, e.g. on one process with batch W B."""
    return int(info["training_config"]["batch_size"]) * int(info.get("world_size", 1))


def _describe_batch(info: Mapping[str, Any]) -> str:
    size, world = info["training_config"]["batch_size"], info.get("world_size", 1)
    return f"{size}" if world == 1 else f"{world} processes x {size}"


def _check_resumable(saved: dict[str, Any], current: dict[str, Any]) -> None:
    saved_config = ModelConfig.from_dict(saved["model_config"])
    current_config = ModelConfig.from_dict(current["model_config"])
    problems = []
    if not same_architecture(saved_config, current_config):
        problems.append(f"preset {saved_config.name!r} (now {current_config.name!r})")
    was, now = _text_training(saved_config), _text_training(current_config)
    if was != now:
        problems.append(f"{was} (now {now})")
    saved_base = BaseWeights.recorded(saved.get("base"), saved["base_weights"], saved_config)
    if not saved_base.same_weights(BaseWeights.from_dict(current["base"])):
        problems.append(f"base weights {saved['base_weights']} (now {current['base_weights']})")
    for key in _RESUME_KEYS:
        was = saved["training_config"].get(key, LEGACY_SETTINGS.get(key))
        now = current["training_config"][key]
        if was != now:
            problems.append(f"{key}={was!r} (now {now!r})")
    if global_batch(saved) != global_batch(current):
        problems.append(f"a batch of {_describe_batch(saved)} (now {_describe_batch(current)})")
    if saved["n_train"] != current["n_train"]:
        problems.append(f"{saved['n_train']} training samples (now {current['n_train']})")
    if problems:
        raise ValueError(
            "Cannot resume: the interrupted run used " + ", ".join(problems) + ". Resume with "
            "the same data and settings, or start a new run in another output folder."
        )


class _Run:
    """The state of one training run; `loop` is the generator behind `train`."""

    saved_step: int | None = None  # step of the training state on disk, if any

    def __init__(
        self, model, optimizer, config, device, dtype, train, val, names, info, state, ranks
    ):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.ranks = ranks  # this process's place in a run of several
        # What a step calls: the model's training forward, on several processes wrapped by
        # DistributedDataParallel (which copies rank 0's weights to every rank here).
        self.forward = ranks.wrap(StepForward(model))
        self.device, self.dtype = device, dtype
        self.train_cache, self.val_cache = train, val
        self.class_names, self.info, self.state = names, info, state
        count = len(train)
        # W processes of batch B take W B examples per batch (ceil(ceil(n / W) / B) =
        # ceil(n / (W B))): the same number of batches on every process.
        self.batches_per_epoch = math.ceil(count / (config.batch_size * ranks.world_size))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accumulation)
        # Steps planned by epochs and max_steps (None: only the time budget limits the run).
        planned = None if config.epochs is None else config.epochs * self.steps_per_epoch
        if config.max_steps:
            planned = config.max_steps if planned is None else min(planned, config.max_steps)
        self.planned_steps = planned
        self.total_steps = planned or 0  # an estimate from the step rate when None
        self.epochs = math.inf if config.epochs is None else config.epochs
        self.weights = sampling_weights(train) if config.balance else None
        self.clock = _Clock(state.elapsed_s)
        self.stopped = "completed"
        self.variants = config.augment_variants

    # ------------------------------------------------------------------ loop
    def loop(self) -> Generator[Event, None, TrainingResult]:
        config, state = self.config, self.state
        start_step, start_time = state.step, self.clock.elapsed()
        self.stopped = self._limit_reason()
        while self.stopped == "completed" and state.epoch < self.epochs:
            epoch = state.epoch
            if state.batch == 0:
                state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
                self.model.guide.reset_text_cache()
            batches = self._epoch_batches(epoch)
            while state.batch < len(batches):
                with work_unit(self.device):  # the thread policy's count, chosen per step
                    loss = self._optimizer_step(epoch, batches)
                state.epoch_loss_sum += loss
                state.epoch_loss_count += 1
                yield from _emit(self.clock, self._step_event(epoch, loss, start_step, start_time))
                self.stopped = self._limit_reason()
                if self.stopped != "completed":
                    break
                every = config.checkpoint_every
                if every and state.step % every == 0 and state.batch < len(batches):
                    yield from self._save_last(metrics=None)
            if state.batch >= len(batches):
                state.epoch, state.batch = epoch + 1, 0
            yield from self._end_epoch(epoch, complete=state.batch == 0)
        result = self._result()
        yield from _emit(self.clock, FinishedEvent(result))
        return result

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This process's batches of the epoch: positions in the epoch's order (the same on
        every process), which `_optimizer_step` turns into sample indices."""
        positions = self.ranks.positions(len(self.train_cache))
        size = self.config.batch_size
        return [positions[start : start + size] for start in range(0, len(positions), size)]

    def _order(self, epoch: int) -> np.ndarray:
        if self.weights is None:
            return epoch_order(self.config.seed, epoch, len(self.train_cache))
        return balanced_order(self.config.seed, epoch, self.weights)

    def _optimizer_step(self, epoch: int, batches: list[np.ndarray]) -> float:
        """Accumulate gradients over the next group of batches and step; returns the loss
        (the mean over the examples of every process)."""
        config, state, model = self.config, self.state, self.model
        model.train()
        group = range(state.batch, min(state.batch + config.grad_accumulation, len(batches)))
        order = self._order(epoch)
        total = 0.0
        self._set_learning_rates()
        for index in group:
            positions = batches[index]
            # Every draw of an example is seeded by its position in the epoch's order, not by
            # its place in a batch: the same example gets the same augmentation and points
            # whichever batch, and whichever process, trains on it.
            with _seeded_global_rng(
                self.device, derived_seed(config.seed, epoch, index, _STREAM_TORCH)
            ):
                samples = [self.train_cache[int(order[p])] for p in positions]
                batch = collate(samples, self._augment(epoch, order[positions], positions),
                                config.augmentation)  # fmt: skip
                points = [
                    torch.Generator().manual_seed(
                        derived_seed(config.seed, epoch, int(p), _STREAM_POINTS)
                    )
                    for p in positions
                ]
                with self.ranks.accumulating(self.forward, last=index == group[-1]):
                    loss = training_loss(
                        self.forward, batch, config.mode, points, self.device, self.dtype
                    )
                    if not torch.isfinite(loss):
                        self.optimizer.zero_grad(set_to_none=True)
                        raise self._diverged(f"the loss became {loss.item()}", state.step + 1)
                    (loss / len(group)).backward()
            total += loss.item()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batch = group[-1] + 1
        return self.ranks.mean(total / len(group))

    def _augment(
        self, epoch: int, samples: np.ndarray, positions: np.ndarray
    ) -> list[np.random.Generator] | None:
        """One augmentation generator per example (None: nothing is augmented)."""
        if self.variants:  # fixed augmentations per sample: cached prefixes are reused
            return variant_generators(self.config.seed, epoch, samples, self.variants)
        if not self.config.augmentation.enabled:
            return None
        return [
            np.random.default_rng(derived_seed(self.config.seed, epoch, int(p), _STREAM_AUGMENT))
            for p in positions
        ]

    def _diverged(self, what: str, step: int) -> TrainingDivergedError:
        """The error that stops a run whose numbers are no longer finite at `step`."""
        config = self.config
        kept = (
            f"the last checkpoint and training state (step {self.saved_step}) are kept"
            if self.saved_step is not None
            else "no checkpoint of this run was saved"
        )
        return TrainingDivergedError(
            f"Training stopped at step {step}: {what}, so the model stopped learning "
            f"(diverged). The learning rate is probably too high (lr {config.lr:g}, CLIP lr "
            f"{config.clip_lr:g}): start again with a lower one, e.g. lr {config.lr / 10:g}; "
            f"{kept}, nothing was saved from the diverged weights."
        )

    def _check_finite_weights(self) -> None:
        """Never save weights that are not finite numbers (a diverged step made them)."""
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad and not torch.isfinite(parameter).all():
                raise self._diverged(
                    f"the weights of {name} are no longer finite numbers", self.state.step
                )

    def progress(self) -> float:
        """How far the run is, 0 to 1: by steps of the planned steps, or by training time of
        the time budget, whichever limit is nearer."""
        config, fractions = self.config, []
        if self.planned_steps:
            fractions.append(self.state.step / self.planned_steps)
        if config.time_budget_s is not None:
            fractions.append(self._training_time() / config.time_budget_s)
        return max(fractions, default=0.0)

    def _training_time(self) -> float:
        """The training time so far; on several processes rank 0's, so that the time budget
        and the schedule agree on every process (all of them call this at the same point)."""
        return self.ranks.from_main(self.clock.elapsed())

    def _set_learning_rates(self) -> None:
        config = self.config
        if config.schedule == "constant":
            return  # the rates set at the start (or on resume) stay
        factor = lr_factor(self.progress(), config.schedule, config.warmup)
        for group in self.optimizer.param_groups:
            base = config.clip_lr if group.get("name") == "clip" else config.lr
            group["lr"] = base * factor

    def _limit_reason(self) -> str:
        config = self.config
        if config.max_steps is not None and self.state.step >= config.max_steps:
            return "max_steps"
        if config.time_budget_s is not None and self._training_time() >= config.time_budget_s:
            return "time_budget"
        return "completed"

    def _step_event(self, epoch: int, loss: float, start_step: int, start_time: float):
        elapsed = self.clock.elapsed()
        done_here = self.state.step - start_step
        seconds_per_step = (elapsed - start_time) / done_here
        budget = self.config.time_budget_s
        if self.planned_steps is None and budget is not None:  # the budget sets the length
            remaining = max(0.0, budget - elapsed)
            self.total_steps = self.state.step + round(remaining / max(seconds_per_step, 1e-9))
        eta = seconds_per_step * (self.total_steps - self.state.step)
        if budget is not None:
            eta = min(eta, max(0.0, budget - elapsed))
        lr = next(g["lr"] for g in self.optimizer.param_groups if g.get("name") != "clip")
        return StepEvent(epoch + 1, self.state.step, self.total_steps, loss, elapsed, eta, lr)

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self, epoch: int, complete: bool):
        state = self.state
        metrics: dict[str, Any] = {}
        if self.val_cache is not None:
            metrics = self._validate()
            self.model.train()
        count = state.epoch_loss_count
        train_loss = state.epoch_loss_sum / count if count else None
        record = {
            "epoch": epoch + 1,
            "step": state.step,
            "complete": complete,
            "train_loss": train_loss,
            "elapsed_s": self.clock.elapsed(),
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        state.history.append(record)
        improved = self._update_best(metrics, epoch)
        yield from _emit(
            self.clock,
            EpochEvent(epoch + 1, state.step, train_loss, metrics, complete, self.clock.elapsed()),
        )
        if improved and self.config.best_path is not None and self.ranks.is_main:
            event = self._write_checkpoint(self.config.best_path, "best", metrics)
            yield from _emit(self.clock, event)
        yield from self._save_last(metrics)

    def _update_best(self, metrics: Mapping[str, Any], epoch: int) -> bool:
        value = metrics.get(self.config.best_metric)
        state = self.state
        if value is None or (state.best_metric is not None and value <= state.best_metric):
            return False
        state.best_metric, state.best_epoch = float(value), epoch + 1
        return True

    def _validate(self) -> dict[str, Any]:
        """Validation metrics; the clock keeps running (it is part of training time). On
        several processes rank 0 validates (every rank holds the same weights) and the
        others receive its metrics, so every rank chooses the same best epoch."""
        metrics = None
        if self.ranks.is_main:
            metrics = evaluate_model(self.model, self.val_cache, self.config.mode, dtype=self.dtype)
        return self.ranks.from_main(metrics)

    # ------------------------------------------------------------------ files
    def _save_last(self, metrics: Mapping[str, Any] | None):
        """Write the last checkpoint and the training state (when there is an output; on
        several processes rank 0 writes them).

        Both files are complete before the event is yielded, so a consumer that stops at
        the event can always resume.
        """
        path = self.config.last_path
        event = None
        if path is not None and self.ranks.is_main:
            event = self._write_checkpoint(path, "last", metrics)
            self.state.elapsed_s = self.clock.elapsed()
            state_path = state_path_for(path)
            try:
                save_state(state_path, self.model, self.optimizer, self.state, self.info)
            except OSError as error:
                raise CheckpointSaveError.after(state_path, error, self.saved_step) from error
            self.saved_step = self.state.step
        # A checkpoint moment refreshes the cached redundant text feature whether or not a
        # file is written, so a resumed run (fresh cache) computes exactly the same values,
        # and every process of a run holds the same one (the same weights, the same moments).
        self.model.guide.reset_text_cache()
        if event is not None:
            yield from _emit(self.clock, event)

    def _write_checkpoint(
        self, path: Path, kind: str, metrics: Mapping[str, Any] | None
    ) -> CheckpointEvent:
        self._check_finite_weights()
        model = self.model
        model.eval()
        with torch.no_grad():
            features = model.text_features(self.class_names) if self.class_names else None
        metadata = {
            "kind": kind,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "metrics": dict(metrics or {}),
            "training": self.config.to_dict(),
            "label_table": self.info["label_table"],
        }
        progress = {
            "checkpoint": kind,
            "steps": self.state.step,
            "epochs_completed": self.state.epoch,
            "training_time_s": round(self.clock.elapsed(), 1),
        }
        card = training_card(
            model,
            self.class_names,
            features is not None,
            self.info["training_data"],
            self.config.to_dict(),
            progress,
            self.state.history,
        )
        try:
            save_checkpoint(
                model,
                path,
                class_names=self.class_names,
                text_features=features,
                metadata=metadata,
                overwrite=True,
                card=card,
            )
        except OSError as error:
            raise CheckpointSaveError.after(path, error, self.saved_step) from error
        model.train()
        return CheckpointEvent(path, kind, self.state.step, self.state.epoch)

    def _result(self) -> TrainingResult:
        config, state = self.config, self.state
        best = config.best_path if state.best_metric is not None else None
        return TrainingResult(
            last_path=config.last_path,
            best_path=best,
            best_metric=state.best_metric,
            epochs_completed=state.epoch,
            steps=state.step,
            stopped=self.stopped,
            elapsed_s=self.clock.elapsed(),
            history=tuple(state.history),
        )
