"""The shared training-run path: output folder checks, settings, resume (tiny preset)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clip_guided_sam._locking import LOCK_NAME
from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset
from napari_clip_guided_sam.training.run import (
    ExistingRunError,
    has_run,
    next_free_folder,
    plan_run,
)

CPU = {"device": "cpu", "precision": "fp32"}


def _run_to_end(plan, samples) -> None:
    pairs = [(sample.image, sample.mask.astype(np.uint8)) for sample in samples]
    model = plan.build_model()
    train_data, val_data = plan.split(SliceDataset(pairs, ClassMap.single_class("disk")))
    for _ in plan.train(model, train_data, val_data):
        pass


def test_settings_are_chosen_else_resumed_else_the_presets(tmp_path, disks_train):
    output = tmp_path / "run"
    fresh = plan_run(output, preset="tiny", settings={**CPU, "seed": 5, "max_steps": 1})
    assert (fresh.config.seed, fresh.config.lr, fresh.config.epochs) == (5, 1e-3, 30)
    assert (fresh.config.schedule, fresh.config.balance, fresh.config.augment_scale) == (
        "cosine", False, False,
    )  # fmt: skip
    assert fresh.config.output_dir == str(output) and not has_run(output)
    _run_to_end(fresh, disks_train)
    assert has_run(output)

    with pytest.raises(ExistingRunError):
        plan_run(output, preset="tiny")
    resumed = plan_run(output, settings={**CPU, "epochs": 3, "seed": None}, resume=True)
    assert resumed.preset == "tiny" and resumed.base is not None and resumed.base.tag == "random:0"
    assert (resumed.config.seed, resumed.config.epochs, resumed.config.max_steps) == (5, 3, None)
    with pytest.raises(ValueError, match="resumed run's preset 'tiny'"):
        plan_run(output, preset="paper", resume=True)
    assert next_free_folder(output) == tmp_path / "run-2"


def test_overwrite_removes_the_earlier_run_when_training_starts(tmp_path, disks_train):
    output = tmp_path / "run"
    output.mkdir()
    (output / "best.safetensors").write_bytes(b"an earlier run")
    (output / "notes.txt").write_text("kept")
    plan = plan_run(
        output, preset="tiny", settings={**CPU, "max_steps": 1, "val_fraction": 0}, overwrite=True
    )
    assert (output / "best.safetensors").exists()  # nothing is removed before training
    _run_to_end(plan, disks_train)
    assert not (output / "best.safetensors").exists()  # no validation: no best checkpoint
    assert {p.name for p in output.iterdir()} == {
        "last.safetensors",
        "last.state.safetensors",
        "notes.txt",
        LOCK_NAME,
    }


def test_the_no_validation_note_says_why(tmp_path):
    """One rule for CLI and widget: one annotated slice, or a zero validation share."""
    images = [np.zeros((32, 32, 3), np.uint8)] * 3
    labels = [np.ones((32, 32), np.uint8)] * 3
    one = SliceDataset(list(zip(images[:1], labels[:1], strict=True)), ClassMap.single_class("a"))
    three = SliceDataset(list(zip(images, labels, strict=True)), ClassMap.single_class("a"))
    plan = plan_run(tmp_path / "run", preset="tiny", settings=CPU)
    _, val_data = plan.split(one)
    assert len(val_data) == 0
    assert "1 annotated slice is too few" in plan.validation_note(one, val_data)
    _, val_data = plan.split(three)
    assert len(val_data) == 1 and plan.validation_note(three, val_data) is None
    no_share = plan_run(tmp_path / "run", preset="tiny", settings={**CPU, "val_fraction": 0.0})
    _, val_data = no_share.split(three)
    assert "the validation fraction is 0" in no_share.validation_note(three, val_data)


def test_a_time_budget_without_epochs_leaves_the_epochs_open(tmp_path):
    budget = plan_run(tmp_path / "a", preset="tiny", settings={**CPU, "time_budget_s": 900})
    assert budget.config.epochs is None and budget.config.time_budget_s == 900
    both = plan_run(tmp_path / "b", preset="tiny", settings={"time_budget_s": 9, "epochs": 2})
    assert both.config.epochs == 2
    paper = plan_run(tmp_path / "c", preset="paper")
    assert (paper.config.epochs, paper.config.schedule, paper.config.balance) == (
        10, "constant", False,
    )  # fmt: skip


def test_a_run_saved_before_the_recipe_resumes_with_its_old_settings(tmp_path, disks_train):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from napari_clip_guided_sam.training.state import state_path_for

    output = tmp_path / "run"
    chosen = {**CPU, "max_steps": 1, "epochs": 2, "balance": True, "augment_scale": True}
    plan = plan_run(output, preset="tiny", settings=chosen)
    _run_to_end(plan, disks_train)
    # rewrite the state as an older version wrote it: no recipe fields
    state_file = str(state_path_for(output / "last.safetensors"))
    with safe_open(state_file, framework="pt") as handle:
        header = handle.metadata()
    info = json.loads(header["info"])
    for key in ("schedule", "warmup", "balance", "augment_intensity", "augment_scale"):
        info["training_config"].pop(key)
    save_file(load_file(state_file), state_file, metadata={**header, "info": json.dumps(info)})
    resumed = plan_run(output, settings=CPU, resume=True)
    assert (resumed.config.schedule, resumed.config.balance) == ("constant", False)
    assert not resumed.config.augment_scale
    kept = plan_run(tmp_path / "other", preset="tiny", settings=chosen)
    _run_to_end(kept, disks_train)
    again = plan_run(tmp_path / "other", settings=CPU, resume=True)  # saved with the recipe
    assert (again.config.schedule, again.config.balance, again.config.augment_scale) == (
        "cosine", True, True,
    )  # fmt: skip
