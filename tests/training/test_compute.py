"""CPU-friendly training: the prefix cache, activation checkpointing and augmentation
variants change what a run keeps and repeats, never its numbers; the estimate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from napari_clip_guided_sam.model.config import get_preset, with_compute_choices
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.prefix_cache import PrefixStore
from napari_clip_guided_sam.training import CheckpointEvent, StepEvent, TrainingConfig, train
from napari_clip_guided_sam.training.compute import (
    activation_bytes,
    has_frozen_prefix,
    resolve_augment_variants,
    uses_checkpointing,
    variant_generators,
)
from napari_clip_guided_sam.training.estimate import estimate_run
from napari_clip_guided_sam.training.inputs import Augmentation, PreparedCache, collate
from napari_clip_guided_sam.training.state import load_state

from .test_engine import FAST, run_to_end, trainable_state, without_times

LAST_TWO = with_compute_choices(get_preset("tiny"), adapter_blocks=2, clip_trainable_blocks=1)
NO_CACHE = dict(prefix_cache_mb=0, prefix_cache_disk_mb=0)


def assert_same_weights(a, b) -> None:
    expected = trainable_state(b)
    for name, tensor in trainable_state(a).items():
        assert torch.equal(tensor, expected[name]), name


def test_the_prefix_cache_trains_exactly_as_without_it(disks_train, disks_val):
    config = TrainingConfig(epochs=3, augment_variants=2, **FAST)
    plain, cached, on_disk = (build_model(LAST_TWO, seed=0) for _ in range(3))
    _, expected = run_to_end(
        train(plain, disks_train, disks_val, dataclasses.replace(config, **NO_CACHE))
    )
    stores: list[PrefixStore] = []
    folders: list[Path] = []
    for model, sizes in ((cached, {}), (on_disk, dict(prefix_cache_mb=0))):
        events = train(model, disks_train, disks_val, dataclasses.replace(config, **sizes))
        for event in events:
            if isinstance(event, StepEvent) and model.prefix_cache is not None:
                store = model.prefix_cache
                if store not in stores:
                    stores.append(store)
                    folders.append(store.folder)
        result = event.result
        assert without_times(result.history) == without_times(expected.history)
        assert_same_weights(model, plain)
        assert model.prefix_cache is None  # the run's cache goes with the run
    memory_stats, disk_stats = (store.stats for store in stores)
    # 3 epochs of 5 samples and 2 validation samples, each with a SAM and a CLIP prefix:
    # computed at most once per sample and variant (two variants may draw the same flips,
    # then the image and its entry are the same); the third epoch finds every one.
    assert memory_stats.hits + memory_stats.misses == 2 * (3 * 5 + 3 * 2)
    assert 2 * (5 + 2) <= memory_stats.misses <= 2 * (5 * 2 + 2)
    assert memory_stats.hits >= 2 * (5 + 2 * 2)
    assert disk_stats.disk_writes > 0 and disk_stats.disk_reads == disk_stats.hits
    assert not folders[1].exists()  # temporary files removed


def test_resume_with_the_prefix_cache_matches_an_uninterrupted_run(
    disks_train, disks_val, tmp_path
):
    config = TrainingConfig(epochs=3, checkpoint_every=3, **FAST)
    straight = build_model(LAST_TWO, seed=0)
    config_a = dataclasses.replace(config, output_dir=str(tmp_path / "a"))
    _, expected = run_to_end(train(straight, disks_train, disks_val, config_a))

    interrupted = build_model(LAST_TWO, seed=0)
    config_b = dataclasses.replace(config, output_dir=str(tmp_path / "b"))
    events = train(interrupted, disks_train, disks_val, config_b)
    for event in events:
        if isinstance(event, CheckpointEvent) and event.step == 6:
            break
    events.close()
    state = load_state(tmp_path / "b" / "last.state.safetensors")
    assert state.info["training_config"]["augment_variants"] == 2  # auto with a prefix

    resumed = build_model(LAST_TWO, seed=0)
    _, result = run_to_end(
        train(resumed, disks_train, disks_val, config_b, resume_from=tmp_path / "b")
    )
    assert without_times(result.history) == without_times(expected.history)
    assert_same_weights(resumed, straight)

    other = dataclasses.replace(config_b, augment_variants=3)
    with pytest.raises(ValueError, match="augment_variants=2 \\(now 3\\)"):
        next(train(build_model(LAST_TWO), disks_train, None, other, resume_from=tmp_path / "b"))


def test_activation_checkpointing_takes_the_same_step(disks_train):
    """The same loss, and the same weights after the step (the gradients agree to 1e-6,
    tests/model/test_cpu_friendly.py). Over several steps the runs drift apart as any two
    runs whose numbers differ in the last bits do: text-mode prompts come from a
    thresholded similarity map."""
    config = TrainingConfig(epochs=1, max_steps=1, **FAST)
    weights, losses = [], []
    for choice in ("off", "on"):
        model = build_model("tiny", seed=0)
        choice_config = dataclasses.replace(config, activation_checkpointing=choice)
        events, _ = run_to_end(train(model, disks_train, None, choice_config))
        losses.append(next(e.loss for e in events if isinstance(e, StepEvent)))
        weights.append(trainable_state(model))
    assert losses[0] == losses[1]
    for name, tensor in weights[1].items():
        torch.testing.assert_close(tensor, weights[0][name], rtol=1e-6, atol=1e-6)


def test_auto_checkpointing_follows_the_activation_estimate():
    models = {}
    for name in ("paper", "paper_cpu"):
        with torch.device("meta"):
            models[name] = build_model(name, base_weights="random")
        models[name].fine_tuned = True
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert activation_bytes(models["paper"]) > 8 * 2**30  # every block at 64 x 64 tokens
    assert activation_bytes(models["paper_cpu"]) < 2**30  # three blocks at 32 x 32
    assert uses_checkpointing("auto", models["paper"], cpu)
    assert not uses_checkpointing("auto", models["paper_cpu"], cpu)
    assert not uses_checkpointing("auto", models["paper"], cuda)
    assert uses_checkpointing("on", models["paper_cpu"], cpu)
    with pytest.raises(ValueError, match="activation_checkpointing"):
        TrainingConfig(activation_checkpointing="always")


def test_reference_and_paper_keep_every_adapter_and_no_frozen_prefix():
    for name in ("reference", "paper"):
        with torch.device("meta"):
            model = build_model(name, base_weights="random")
        model.fine_tuned = True
        depth = model.config.sam.encoder_depth
        assert model.adapters.adapted_blocks == list(range(depth))
        assert model.encoder_prefix_depth() == 0 and model.clip_prefix_depth() == 0
        assert not has_frozen_prefix(model)  # no prefix cache is made for them
        assert resolve_augment_variants(None, has_frozen_prefix(model)) == 0


def test_each_sample_cycles_through_its_fixed_augmentations():
    def draws(epoch, indices):
        return [g.random() for g in variant_generators(0, epoch, indices, 3)]

    per_epoch = [draws(epoch, [4, 7]) for epoch in range(6)]
    for sample in (0, 1):
        seen = [per_epoch[epoch][sample] for epoch in range(6)]
        assert len(set(seen[:3])) == 3 and seen[3:] == seen[:3]  # 3 variants, then again
    # A sample's augmentation does not depend on the batch it is drawn in.
    assert draws(2, [7])[0] == draws(2, [4, 7])[1]
    assert draws(0, [4])[0] == per_epoch[0][0]


def test_fixed_variants_are_draws_of_the_runs_chosen_augmentations(disks_train):
    cache = PreparedCache(disks_train, get_preset("tiny"), 2**26)
    samples = [cache[i] for i in range(3)]
    photometric = Augmentation(flips=False, intensity=True, blur=True)
    batch = collate(samples, variant_generators(0, 1, [0, 1, 2], 2), photometric)
    again = collate(samples, variant_generators(0, 3, [0, 1, 2], 2), photometric)
    assert torch.equal(batch.images, again.images)  # the same variant, the same numbers
    # Intensity and blur only: the masks stay where they were, every image changes.
    assert torch.equal(batch.masks, torch.stack([s.mask for s in samples]))
    for index, sample in enumerate(samples):
        assert not torch.equal(batch.images[index], sample.image)
        generator = variant_generators(0, 1, [index], 2)[0]
        expected, _, _ = photometric(sample.image, sample.mask, sample.valid, generator)
        assert torch.equal(batch.images[index], expected)  # one generator per sample

    # Flips only: each variant is a flip or quarter turn of the image and its mask.
    flipped = collate(samples, variant_generators(0, 0, [0, 1, 2], 4), Augmentation())
    for index, sample in enumerate(samples):
        turns = [sample.image.rot90(k, (-2, -1)) for k in range(4)]
        dihedral = turns + [t.flip(-1) for t in turns]
        assert any(torch.equal(flipped.images[index], d) for d in dihedral)


def test_photometric_variants_keep_the_prefix_cache_exact(disks_train):
    """An intensity-jittered variant is its own image: its prefix is computed from it, so a
    cached run and one without the cache take the same steps, and the variants recur."""
    config = TrainingConfig(
        epochs=4, augment_variants=2, augment=False, augment_intensity=True, **FAST
    )
    plain, cached = build_model(LAST_TWO, seed=0), build_model(LAST_TWO, seed=0)
    _, expected = run_to_end(
        train(plain, disks_train, None, dataclasses.replace(config, **NO_CACHE))
    )
    stats = []
    for event in train(cached, disks_train, None, config):
        if isinstance(event, StepEvent) and cached.prefix_cache is not None:
            stats = cached.prefix_cache.stats
    assert without_times(event.result.history) == without_times(expected.history)
    assert_same_weights(cached, plain)
    # 4 epochs of 5 samples, a SAM and a CLIP prefix each: 2 variants per sample computed
    # (intensity draws never repeat an image), the other 2 epochs found in the cache.
    assert (stats.misses, stats.hits) == (2 * 5 * 2, 2 * 5 * 2)


def test_no_augmentation_means_no_variants(disks_train, tmp_path):
    config = TrainingConfig(epochs=1, max_steps=1, augment=False, output_dir=str(tmp_path), **FAST)
    run_to_end(train(build_model(LAST_TWO, seed=0), disks_train, None, config))
    state = load_state(tmp_path / "last.state.safetensors")
    assert state.info["training_config"]["augment_variants"] == 0


def test_compute_settings_are_checked_with_the_other_settings():
    from napari_clip_guided_sam.training.settings import SettingError

    for field, value in [
        ("prefix_cache_mb", -1),
        ("prefix_cache_disk_mb", 1.5),
        ("augment_variants", -2),
        ("activation_checkpointing", "always"),
    ]:
        with pytest.raises(SettingError) as raised:
            TrainingConfig(**{field: value})
        assert raised.value.name == field and field in str(raised.value)
    assert TrainingConfig(augment_variants=None, prefix_cache_mb=0).augment_variants is None


def test_the_estimate_projects_a_run_from_a_few_steps():
    config = TrainingConfig(epochs=10, **FAST)
    estimate = estimate_run(LAST_TWO, config, n_train=40, n_val=10)
    assert estimate.steps_per_epoch == 40 and estimate.epochs == 10
    assert estimate.prefix_computations == 40 * 2  # two fixed augmentations each
    assert estimate.seconds_per_step > 0 and estimate.seconds_per_validation > 0
    floor = 10 * (40 * estimate.seconds_per_step + 10 * estimate.seconds_per_validation)
    assert estimate.total_seconds >= floor
    assert estimate.total_seconds == pytest.approx(10 * estimate.seconds_per_epoch)
    assert estimate.peak_bytes > estimate.measured_peak_bytes > 0
    assert not estimate.checkpointing and "per epoch" in estimate.summary()

    full = estimate_run(get_preset("tiny"), dataclasses.replace(config, epochs=2), 8)
    assert full.prefix_computations == 0 and full.seconds_per_prefix == 0
    assert full.steps_per_epoch == 8

    # Planned by the clock: the whole epochs that fit, never more time than the budget.
    budget = 1000 * full.seconds_per_epoch
    by_clock = dataclasses.replace(config, epochs=None, time_budget_s=budget)
    clocked = estimate_run(get_preset("tiny"), by_clock, 8)
    assert clocked.epochs >= 2 and clocked.total_seconds <= budget
    assert clocked.epochs * clocked.seconds_per_epoch <= budget
