"""What a training run will cost, measured before it starts: time per step and per epoch,
total time and peak memory (docs/training.md, "Estimating a run").

`iter_estimate` builds the run's architecture with random weights (speed and memory do not
depend on their values, so no base weights are needed), runs a few real steps of the
training engine with the run's settings on synthetic images at the model's input size, a
validation pass after each epoch, and projects the measurements onto the real run: steps
per epoch, the frozen prefixes the run will compute (once per sample and augmentation
variant, fewer hits when the prefix cache is too small), validation, and the memory the
prepared inputs and the prefix cache will take for the whole data set.

Cost of the measurement itself (2-core CPU): `tiny` a few seconds, `paper_cpu` about half
a minute, `paper` at 1024 px two full steps, about two minutes and its full peak memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import math
import sys
import threading
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from ..model.config import ModelConfig
from ..model.factory import build_model
from ..model.runtime import resolve_device
from .compute import has_frozen_prefix, resolve_augment_variants
from .config import TrainingConfig
from .engine import train
from .events import EpochEvent, StepEvent

__all__ = ["Estimate", "EstimateProgress", "estimate_run", "iter_estimate"]

# A run planned by its time budget alone is projected over at most this many epochs.
_MAX_PROJECTED_EPOCHS = 10_000


@dataclass(frozen=True)
class Estimate:
    """The projected cost of a training run."""

    seconds_per_step: float  # an optimiser step whose frozen prefixes are cached
    seconds_per_prefix: float  # extra for each sample whose prefix is computed (0: none)
    seconds_per_validation: float  # one validation sample (prefix cached)
    steps_per_epoch: int
    epochs: int  # planned, or the whole epochs that fit in the time budget
    prefix_computations: int  # training samples x variants whose prefix the run computes
    seconds_per_epoch: float  # training and validation of one epoch, prefixes included
    total_seconds: float  # at most the time budget
    peak_bytes: int  # memory the run adds to the process at its peak
    measured_peak_bytes: int  # ... during the measurement (few samples, small caches)
    device: str
    checkpointing: bool  # whether the trained blocks are recomputed in the backward

    def summary(self) -> str:
        """One line for people, e.g. "about 2.4 h (14 min per epoch, 2.6 s per step),
        peak memory about 4.9 GB"."""
        per_step = f"{self.seconds_per_step:.2g} s per step"
        if self.seconds_per_prefix:
            per_step += f" + {self.seconds_per_prefix:.2g} s per new image"
        return (
            f"about {_duration(self.total_seconds)} ({_duration(self.seconds_per_epoch)} per "
            f"epoch, {per_step}), peak memory about {self.peak_bytes / 1e9:.1f} GB "
            f"on {self.device}"
        )


@dataclass(frozen=True)
class EstimateProgress:
    """The measurement is `done` of `total` steps in (`phase` in words; total 0 while the
    model is built)."""

    phase: str
    done: int
    total: int


def estimate_run(
    model_config: ModelConfig, config: TrainingConfig, n_train: int, n_val: int = 0
) -> Estimate:
    """`iter_estimate` run to its end."""
    steps = iter_estimate(model_config, config, n_train, n_val)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def iter_estimate(
    model_config: ModelConfig, config: TrainingConfig, n_train: int, n_val: int = 0
) -> Generator[EstimateProgress, None, Estimate]:
    """Measure a few training steps of `model_config` with `config` and project the run
    over `n_train` training and `n_val` validation samples (image x class pairs).

    Yields `EstimateProgress` while it builds and steps; returns the `Estimate`. Nothing is
    written to disk (besides the prefix cache's temporary files, removed at the end).
    """
    if n_train < 1:
        raise ValueError("An estimate needs at least one training sample.")
    device = resolve_device(config.device)
    per_step = config.batch_size * config.grad_accumulation
    memory = _PeakMemory(device)
    yield EstimateProgress("building the model", 0, 0)
    with memory:
        model = build_model(model_config, base_weights="random")
        model.fine_tuned = True  # as the engine sets it: the adapters in use
        caches = has_frozen_prefix(model)
        # Epoch 1: two optimiser steps fill the cache (the first also warms up); epoch 2
        # reuses it, its first step also recomputing the per-epoch text ensemble. Without a
        # frozen prefix every step costs the same and two suffice.
        steps = 4 if caches else 2
        measuring = dataclasses.replace(
            config,
            epochs=2,
            max_steps=steps,
            output_dir=None,
            time_budget_s=None,
            checkpoint_every=None,
            # Augmentation costs little; unaugmented samples hit the cache.
            augment=False,
            augment_intensity=False,
            augment_scale=False,
            augment_blur=False,
        )
        size = model_config.sam.image_size
        samples = _synthetic_samples(2 * per_step + 1, size)
        train_samples, val_samples = samples[:-1], samples[-1:]
        times: list[float] = []
        epoch_ends: list[float] = []
        store_bytes = 0
        checkpointing = False
        run = contextlib.closing(train(model, train_samples, val_samples, measuring))
        with run as events:  # closing the estimate closes the run (and its cache)
            for event in events:
                if model.prefix_cache is not None:
                    store_bytes = model.prefix_cache.memory_bytes
                checkpointing = model.activation_checkpointing or checkpointing
                if isinstance(event, StepEvent):
                    times.append(event.elapsed_s)
                    yield EstimateProgress(f"step {event.step} of {steps}", event.step, steps)
                elif isinstance(event, EpochEvent):
                    epoch_ends.append(event.elapsed_s)
        del model
    miss = times[1] - times[0]
    val_miss = epoch_ends[0] - times[1]
    hit, val_hit, epoch_start = miss, val_miss, 0.0
    if caches:
        hit, val_hit = times[3] - times[2], epoch_ends[1] - times[3]
        epoch_start = max(0.0, times[2] - epoch_ends[0] - hit)
    prefix = max(0.0, miss - hit) / per_step
    val_prefix = max(0.0, val_miss - val_hit)

    steps_per_epoch = math.ceil(math.ceil(n_train / config.batch_size) / config.grad_accumulation)
    cached_entries = len(train_samples) + len(val_samples)
    entry = store_bytes / cached_entries if caches else 0.0

    def project(epochs: int) -> tuple[float, int, float]:
        """(seconds, prefix computations, prefix bytes kept in memory) of `epochs` epochs."""
        computations, stored = _prefix_plan(config, caches, n_train, n_val, entry, epochs)
        seconds = (
            epochs * (steps_per_epoch * hit + epoch_start)
            + computations * prefix
            + epochs * n_val * val_hit
            + (n_val * val_prefix if caches else 0.0)
        )
        return seconds, computations, stored

    budget = config.time_budget_s
    epochs = config.epochs if config.epochs is not None else _epochs_within(project, budget)
    total, computations, stored = project(epochs)
    per_epoch = total / epochs
    if budget is not None:  # the run stops at its time budget
        total = min(total, budget)
    sample_bytes = _prepared_bytes(model_config)
    prepared = min(config.cache_mb * 2**20, (n_train + n_val) * sample_bytes)
    measured_extra = len(samples) * sample_bytes + store_bytes
    peak = memory.peak + max(0.0, prepared + stored - measured_extra)
    return Estimate(
        seconds_per_step=hit,
        seconds_per_prefix=prefix,
        seconds_per_validation=val_hit,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        prefix_computations=computations,
        seconds_per_epoch=per_epoch,
        total_seconds=total,
        peak_bytes=int(peak),
        measured_peak_bytes=int(memory.peak),
        device=str(device),
        checkpointing=checkpointing,
    )


def _epochs_within(project, budget: float | None) -> int:
    """The whole epochs whose projected time fits in `budget` (at least 1): the length of a
    run planned by its time budget alone."""
    assert budget is not None  # TrainingConfig: open epochs only with a time budget
    epochs = 1
    while epochs < _MAX_PROJECTED_EPOCHS and project(epochs + 1)[0] <= budget:
        epochs += 1
    return epochs


def _prefix_plan(
    config: TrainingConfig,
    caches: bool,
    n_train: int,
    n_val: int,
    entry_bytes: float,
    epochs: int,
) -> tuple[int, float]:
    """(training samples whose prefix the run computes, bytes the cache keeps in memory).

    Each sample is computed once per augmentation variant it uses; when the cache cannot
    hold every sample's variants (and the validation samples), a visit finds its entry with
    the probability capacity / needed.
    """
    if not caches:
        return 0, 0.0
    memory = config.prefix_cache_mb * 2**20
    if not (memory or config.prefix_cache_disk_mb):
        return n_train * epochs, 0.0
    augments = config.augmentation.enabled
    variants = resolve_augment_variants(config.augment_variants, True) if augments else 1
    first_visits = min(variants, epochs) if variants else epochs
    needed = (n_train * max(variants, 1) + n_val) * entry_bytes
    capacity = memory + config.prefix_cache_disk_mb * 2**20
    found = 1.0 if needed <= capacity else capacity / needed
    repeats = n_train * (epochs - first_visits) * (1.0 - found)
    return round(n_train * first_visits + repeats), min(memory, needed)


def _prepared_bytes(config: ModelConfig) -> int:
    """Memory of one prepared sample (float image and mask in the SAM frame)."""
    size = config.sam.image_size
    return 3 * size * size * 4 + size * size


def _synthetic_samples(count: int, size: int) -> list:
    """Bright disks on noise, one class, at the model's input size."""
    from ..data.datasets import Sample

    rows, cols = np.mgrid[:size, :size]
    samples = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(8):
            cy, cx = rng.integers(0, size, 2)
            radius = int(rng.integers(max(2, size // 60), max(3, size // 20)))
            mask |= (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2
        image[mask] = 200
        samples.append(Sample(image, mask, "object", f"synthetic {seed}"))
    return samples


class _PeakMemory:
    """Peak memory added inside the block: resident memory sampled every 10 ms on the CPU,
    the allocator's peak on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _PeakMemory:
        _release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        process = psutil.Process()
        self._base = process.memory_info().rss
        self._highest = self._base

        def sample() -> None:
            while not self._stop.wait(0.01):
                self._highest = max(self._highest, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, name="estimate-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            self.peak = float(torch.cuda.max_memory_allocated(self.device) - self._base)
            return
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = float(self._highest - self._base)


def _release_free_memory() -> None:
    """Hand memory freed earlier back to the system, so that the resident size grows with
    what the measurement allocates (glibc keeps freed blocks otherwise)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
