"""The training engine on bright disks: events, checkpoints, cancel, resume, frozen weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_clip_guided_sam.model.checkpoint import load_model, read_checkpoint
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.trainable import trainable_parameter_names
from napari_clip_guided_sam.training import (
    CheckpointEvent,
    EpochEvent,
    FinishedEvent,
    PreparingEvent,
    StepEvent,
    TrainingConfig,
    train,
)
from napari_clip_guided_sam.training.inputs import Augmentation, PreparedCache, collate
from napari_clip_guided_sam.training.recipe import lr_factor
from napari_clip_guided_sam.training.sampling import sampling_weights
from napari_clip_guided_sam.training.state import load_state
from napari_clip_guided_sam.training.step import training_loss

FAST = dict(lr=1e-3, clip_lr=1e-4, device="cpu", precision="fp32")


def run_to_end(events):
    """All events and the generator's return value."""
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


def without_times(history) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "elapsed_s"} for record in history]


def trainable_state(model) -> dict[str, torch.Tensor]:
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach().clone() for name in trainable_parameter_names(model)}


def test_events_come_in_order_and_loss_decreases(tiny_model, disks_train, disks_val, tmp_path):
    config = TrainingConfig(epochs=3, output_dir=str(tmp_path), **FAST)
    events, result = run_to_end(train(tiny_model, disks_train, disks_val, config))

    kinds = [type(e).__name__ for e in events]
    first_epoch = kinds[: kinds.index("EpochEvent") + 1]
    n_samples = len(disks_train) + len(disks_val)
    assert first_epoch == ["PreparingEvent"] * n_samples + ["StepEvent"] * len(disks_train) + [
        "EpochEvent"
    ]
    preparing = [e for e in events if isinstance(e, PreparingEvent)]
    assert [(e.done, e.total) for e in preparing] == [
        (k, n_samples) for k in range(1, n_samples + 1)
    ]
    assert isinstance(events[-1], FinishedEvent) and events[-1].result == result
    steps = [e for e in events if isinstance(e, StepEvent)]
    total = 3 * len(disks_train)
    assert [e.step for e in steps] == list(range(1, total + 1))
    assert all(e.total_steps == total for e in steps) and steps[-1].eta_s == 0
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].train_loss < epochs[0].train_loss
    assert {"miou", "fg_iou"} <= set(epochs[0].val_metrics)
    assert result.stopped == "completed" and result.steps == total
    assert result.epochs_completed == 3


def test_checkpoints_load_with_load_model(tiny_model, disks_train, disks_val, tmp_path):
    config = TrainingConfig(epochs=2, output_dir=str(tmp_path), **FAST)
    events, result = run_to_end(train(tiny_model, disks_train, disks_val, config))

    written = [e for e in events if isinstance(e, CheckpointEvent)]
    assert {e.kind for e in written} == {"best", "last"}
    assert result.last_path == tmp_path / "last.safetensors" and result.best_path.is_file()
    loaded, checkpoint = load_model(result.last_path)
    expected = trainable_state(tiny_model)
    for name, tensor in trainable_state(loaded).items():
        torch.testing.assert_close(tensor, expected[name])
    assert checkpoint.class_names == ["disk"] and checkpoint.text_features.shape[0] == 1
    assert checkpoint.metadata["step"] == 2 * len(disks_train) and checkpoint.metadata["epoch"] == 2
    assert checkpoint.metadata["metrics"]["miou"] == result.history[-1]["val_miou"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.safetensors",
        "last.safetensors",
        "last.state.safetensors",
    ]


def test_only_trainable_parameters_change(tiny_model, disks_train):
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    trainable = set(trainable_parameter_names(tiny_model))
    run_to_end(train(tiny_model, disks_train, None, TrainingConfig(epochs=1, **FAST)))

    changed = {n for n, p in tiny_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable
    assert any(n.startswith("adapters.") for n in changed)
    assert any(n.startswith("sam.mask_decoder.") for n in changed)
    assert any(n.startswith("guide.clip.visual") for n in changed)  # through the adapters


def test_close_keeps_the_last_checkpoint_valid(tiny_model, disks_train, disks_val, tmp_path):
    config = TrainingConfig(epochs=3, output_dir=str(tmp_path), **FAST)
    events = train(tiny_model, disks_train, disks_val, config)
    for event in events:
        if isinstance(event, StepEvent) and event.epoch == 2:
            break
    events.close()

    assert read_checkpoint(tmp_path / "last.safetensors").metadata["step"] == len(disks_train)
    assert load_state(tmp_path / "last.state.safetensors").state.step == len(disks_train)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files


@pytest.mark.parametrize(
    "stop_after, checkpoint_every",
    [("epoch", None), ("mid-epoch", 2)],
    ids=["after-epoch-1", "mid-epoch-1"],
)
def test_resume_matches_an_uninterrupted_run(
    disks_train, disks_val, tmp_path, stop_after, checkpoint_every
):
    # Every part of the recipe: cosine schedule, all augmentations, balanced sampling.
    recipe = dict(schedule="cosine", augment_intensity=True, augment_scale=True, balance=True)
    config = TrainingConfig(
        epochs=2, checkpoint_every=checkpoint_every, augment_blur=True, **recipe, **FAST
    )
    straight = build_model("tiny", seed=0)
    config_a = dataclasses.replace(config, output_dir=str(tmp_path / "a"))
    _, expected = run_to_end(train(straight, disks_train, disks_val, config_a))

    interrupted = build_model("tiny", seed=0)
    config_b = dataclasses.replace(config, output_dir=str(tmp_path / "b"))
    events = train(interrupted, disks_train, disks_val, config_b)
    for event in events:
        if isinstance(event, CheckpointEvent) and event.kind == "last":
            break
    events.close()
    saved_step = load_state(tmp_path / "b" / "last.state.safetensors").state.step
    assert saved_step == (len(disks_train) if stop_after == "epoch" else 2)

    resumed = build_model("tiny", seed=0)
    events, result = run_to_end(
        train(resumed, disks_train, disks_val, config_b, resume_from=tmp_path / "b")
    )
    first_step = next(e for e in events if isinstance(e, StepEvent))
    assert first_step.step == saved_step + 1
    assert without_times(result.history) == without_times(expected.history)
    assert result.history[-1]["val_fg_iou"] == expected.history[-1]["val_fg_iou"]
    straight_tensors = trainable_state(straight)
    for name, tensor in trainable_state(resumed).items():
        assert torch.equal(tensor, straight_tensors[name]), name


def test_limits_stop_early_and_resume_continues(tiny_model, disks_train, disks_val, tmp_path):
    config = TrainingConfig(epochs=2, max_steps=3, output_dir=str(tmp_path), **FAST)
    events, result = run_to_end(train(tiny_model, disks_train, disks_val, config))
    assert result.stopped == "max_steps" and result.steps == 3
    partial = [e for e in events if isinstance(e, EpochEvent)]
    assert len(partial) == 1 and not partial[0].complete

    more = dataclasses.replace(config, max_steps=None)
    model = build_model("tiny", seed=0)
    _, result = run_to_end(train(model, disks_train, disks_val, more, resume_from=tmp_path))
    assert result.stopped == "completed" and result.steps == 2 * len(disks_train)


def test_text_mode_samples_points_manual_mode_uses_ground_truth(tiny_model, disks_train):
    seen = []

    def record(module, args, kwargs):
        seen.append((kwargs.get("point_coords"), kwargs.get("point_labels")))

    handle = tiny_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run_to_end(train(tiny_model, disks_train[:2], None, TrainingConfig(epochs=1, **FAST)))
        assert all(coords is None for coords, _ in seen)  # the model samples from its map
        seen.clear()
        manual = TrainingConfig(epochs=1, mode="manual", augment=False, **FAST)
        run_to_end(train(tiny_model, disks_train[:2], None, manual))
    finally:
        handle.remove()
    image_size = tiny_model.config.sam.image_size
    for (coords, labels), sample in zip(seen, disks_train[:2], strict=False):
        assert coords is not None and (labels == 1).all()
        assert coords.shape == (1, tiny_model.config.guide.n_points, 2)
        # Every point lies on the ground truth, mapped into the squashed SAM frame.
        height, width = sample.mask.shape
        xs = (coords[0, :, 0].long() + 0.5) * width / image_size
        ys = (coords[0, :, 1].long() + 0.5) * height / image_size
        assert sample.mask[ys.long(), xs.long()].all()


def test_a_batch_may_hold_several_examples_of_one_class(tiny_model, disks_train):
    config = TrainingConfig(epochs=1, batch_size=2, **FAST)
    events, result = run_to_end(train(tiny_model, disks_train, None, config))

    assert result.steps == 3  # 5 examples of one class in batches of 2
    assert all(np.isfinite(e.loss) for e in events if isinstance(e, StepEvent))


def test_bad_inputs_are_clear_errors(tiny_model, disks_train, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        next(train(tiny_model, [], None, TrainingConfig(**FAST)))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="Cannot write checkpoints"):
        next(train(tiny_model, disks_train, None, TrainingConfig(output_dir=str(blocker), **FAST)))
    with pytest.raises(ValueError, match="mode"):
        TrainingConfig(mode="points")


def test_resume_refuses_other_settings(tiny_model, disks_train, tmp_path):
    config = TrainingConfig(epochs=1, output_dir=str(tmp_path), **FAST)
    run_to_end(train(tiny_model, disks_train, None, config))
    other_seed = dataclasses.replace(config, seed=1)
    with pytest.raises(ValueError, match="seed"):
        next(train(build_model("tiny"), disks_train, None, other_seed, resume_from=tmp_path))
    with pytest.raises(FileNotFoundError, match="Cannot resume"):
        next(train(build_model("tiny"), disks_train, None, config, resume_from=tmp_path / "x"))


def test_identity_init_fine_tuning_starts_exactly_at_zero_shot(disks_train, tmp_path):
    """A run that changes nothing (learning rates 0) writes the zero-shot model itself:
    with `identity` the adapters in use equal vanilla SAM."""
    from napari_clip_guided_sam.model.config import get_preset

    identity = get_preset("tiny").replace(**{"adapters.init": "identity"})
    zero_shot = build_model(identity, seed=0)
    model = build_model(identity, seed=0)
    config = TrainingConfig(
        epochs=1, max_steps=1, lr=0.0, clip_lr=0.0, device="cpu", precision="fp32",
        output_dir=str(tmp_path),
    )  # fmt: skip
    run_to_end(train(model, disks_train, None, config))
    loaded, checkpoint = load_model(tmp_path / "last.safetensors")
    assert loaded.fine_tuned and checkpoint.card.adapter_init == "identity"
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = zero_shot(images, zero_shot.text_features(["disk"]))
        actual = loaded(images, loaded.text_features(["disk"]))
    assert torch.equal(actual.low_res_logits, expected.low_res_logits)
    assert torch.equal(actual.iou_predictions, expected.iou_predictions)


def test_checkpoints_carry_a_complete_model_card(tiny_model, disks_train, disks_val, tmp_path):
    config = TrainingConfig(epochs=2, output_dir=str(tmp_path), **FAST)
    run_to_end(train(tiny_model, disks_train, disks_val, config))
    best = read_checkpoint(tmp_path / "best.safetensors")
    card = best.card
    assert card.preset == "tiny" and card.adapters == "fine-tuned adapters"
    assert card.adapter_init == "released"  # tiny's own init (model.config)
    assert card.classes == ["disk"] and card.text_features
    assert card.base_weights["sam"]["kind"] == "random" and card.base_weights["seed"] == 0
    assert card.training_data == {"training_samples": 5, "validation_samples": 2,
                                  "source": "prepared samples (no dataset record)"}  # fmt: skip
    assert card.training["settings"]["lr"] == 1e-3 and card.training["checkpoint"] == "best"
    assert card.training["steps"] == best.metadata["step"]
    validation = card.validation
    assert validation["step"] == best.metadata["step"]
    assert validation["n_samples"] == 2 and set(validation["per_class"]) == {"disk"}
    assert validation["per_class"]["disk"]["miou"] == validation["overall"]["miou"]
    assert card.project_version and card.created


def test_the_card_summarises_a_dataset_read_from_files(tmp_path, write_stack):
    import numpy as np
    import tifffile

    from napari_clip_guided_sam.data.datasets import ClassMap, SliceDataset
    from napari_clip_guided_sam.training.inputs import split_dataset
    from napari_clip_guided_sam.training.model_card import summarize_data

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_stack(tmp_path / "images" / "a.tif", n_slices=3)
    labels = np.zeros((3, 40, 48), np.uint16)
    labels[:, 10:22, 12:26] = 1
    tifffile.imwrite(tmp_path / "labels" / "a.tif", labels, imagej=True, metadata={"axes": "ZYX"})
    dataset = SliceDataset.from_folders(
        tmp_path / "images", tmp_path / "labels", ClassMap.single_class("cell")
    )
    train_data, val_data = split_dataset(dataset, 0.34, 0)
    summary = summarize_data(train_data, val_data)
    assert summary["images"] == 1 and summary["slices"] == 3
    assert summary["training_samples"] + summary["validation_samples"] == 3
    assert summary["pixel_size"] == "0.25 µm"
    assert summary["labels"].endswith("image files in images")


def test_cosine_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0.5, "constant", 0.03) == 1.0
    assert lr_factor(0.0, "cosine", 0.1) == pytest.approx(0.01)
    assert lr_factor(0.05, "cosine", 0.1) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(0.1, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, "cosine", 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, "cosine", 0.1) == pytest.approx(0.0, abs=1e-12)


def test_the_engine_follows_the_schedule_over_the_planned_steps(tiny_model, disks_train):
    config = TrainingConfig(epochs=2, schedule="cosine", warmup=0.2, **FAST)
    events, result = run_to_end(train(tiny_model, disks_train, None, config))
    steps = [e for e in events if isinstance(e, StepEvent)]
    planned = 2 * len(disks_train)
    assert [e.lr for e in steps] == pytest.approx(
        [1e-3 * lr_factor(k / planned, "cosine", 0.2) for k in range(planned)]
    )
    constant = TrainingConfig(epochs=1, **FAST)
    events, _ = run_to_end(train(build_model("tiny", seed=0), disks_train, None, constant))
    assert {e.lr for e in events if isinstance(e, StepEvent)} == {1e-3}


def test_a_time_budget_alone_sets_the_length_of_the_run(tiny_model, disks_train):
    with pytest.raises(ValueError, match="time budget"):
        TrainingConfig(epochs=None, **FAST)
    config = TrainingConfig(epochs=None, time_budget_s=0.5, schedule="cosine", **FAST)
    events, result = run_to_end(train(tiny_model, disks_train, None, config))
    assert result.stopped == "time_budget"
    last = [e for e in events if isinstance(e, StepEvent)][-1]
    assert last.total_steps >= last.step  # an estimate from the step rate


def test_balanced_sampling_gives_classes_and_foreground_sizes_their_share(tiny_model):
    from napari_clip_guided_sam.data.datasets import Sample

    def sample(name, fraction_rows):
        mask = torch.zeros(20, 20, dtype=torch.bool)
        mask[:fraction_rows] = True
        image = (mask.numpy()[..., None] * 200).repeat(3, -1).astype("uint8")
        return Sample(image, mask.numpy(), name, name)

    # class "a": 8 large masks and 1 empty; class "b": a single large mask
    data = [sample("a", 10) for _ in range(8)] + [sample("a", 0), sample("b", 10)]
    weights = sampling_weights(PreparedCache(data, tiny_model.config, 2**26))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[9] == pytest.approx(0.5)  # each class half of the draws
    # within "a": group mass grows with the square root of its size (sqrt 8 vs sqrt 1)
    assert weights[:8].sum() / weights[8] == pytest.approx(8**0.5)


def test_augmentation_moves_mask_and_unannotated_pixels_with_the_image(tiny_model):
    size = tiny_model.config.sam.image_size
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[40:120, 60:200] = True
    valid = torch.ones(size, size, dtype=torch.bool)
    valid[:, :30] = False
    image = torch.stack([mask.float() * 4 - 2, valid.float() * 4 - 2, torch.zeros(size, size)])
    augmentation = Augmentation(flips=True, intensity=False, scale=True, blur=True)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        new_image, new_mask, new_valid = augmentation(image, mask, valid, rng)
        again = augmentation(image, mask, valid, np.random.default_rng(seed))
        assert torch.equal(new_image, again[0])  # a function of the generator alone
        for channel, target in ((0, new_mask), (1, new_valid)):
            drawn = new_image[channel] > 0
            overlap = (drawn & target).sum() / (drawn | target).sum()
            assert overlap > 0.95, (seed, channel, float(overlap))
    jittered, same_mask, _ = Augmentation(flips=False, intensity=True)(
        image, mask, None, np.random.default_rng(0)
    )
    assert torch.equal(same_mask, mask) and not torch.equal(jittered, image)


def test_ignored_pixels_add_nothing_to_the_training_loss(tiny_model):
    from napari_clip_guided_sam.data.class_map import ClassMap
    from napari_clip_guided_sam.data.datasets import SliceDataset

    labels = np.zeros((32, 32), np.uint8)
    labels[:, 16:], labels[16:, :16], labels[20:26, 20:26] = 1, 2, 3
    labels[:4] = 255
    image = (labels.astype(np.float32) * 60).astype(np.uint8)
    class_map = ClassMap({0: "a", 1: "b", 2: "c", 3: "d"}, background=False, ignore_index=255)
    dataset = SliceDataset([(image, labels)], class_map)
    assert [dataset[i].class_name for i in range(len(dataset))] == ["a", "b", "c", "d"]
    assert all(dataset[i].mask.any() for i in range(4))  # every class has a target
    cache = PreparedCache(dataset, tiny_model.config, 2**26)
    batch = collate([cache[i] for i in range(4)])
    assert batch.valid is not None and not batch.valid[:, :8].any()

    def loss(masks):
        batch.masks = masks
        generator = torch.Generator().manual_seed(0)
        return training_loss(tiny_model, batch, "text", generator, torch.device("cpu"), None)

    original = batch.masks.clone()
    flipped = original.clone()
    flipped[:, :8] = ~flipped[:, :8]  # the truth of unannotated rows does not matter
    assert loss(flipped).item() == pytest.approx(loss(original).item(), rel=1e-6)
