"""The `reference` setting trains as the released code: one engine step against a
transcription of the released training step, the text gradient path, weight decay groups."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.guide import prompt_templates
from napari_clip_guided_sam.model.trainable import trainable_parameter_names
from napari_clip_guided_sam.training import TrainingConfig, train
from napari_clip_guided_sam.training.inputs import mask_to_logit_size, prepare_sample
from napari_clip_guided_sam.training.state import load_state

# The released hyper-parameters (the TrainingConfig defaults).
RELEASED = dict(lr=5e-5, clip_lr=1e-7, weight_decay=1e-3, clip_weight_decay=0.0)
CPU = dict(device="cpu", precision="fp32", augment=False)
TEMPLATE_ROWS = 11  # the empty-prompt templates' tokens reach positions 0-10


def run(events) -> None:
    for _ in events:
        pass


def trainable_tensors(model) -> dict[str, torch.Tensor]:
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach().clone() for name in trainable_parameter_names(model)}


def released_training_step(model, sample, points_seed: int) -> None:
    """One step as the released code takes it: AdamW in four groups, the class prompt's text
    feature without gradient, the redundant feature (85 templates of the empty prompt) with
    gradient, plain BCE on the low-resolution logits."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def group(prefix: str, lr: float, weight_decay: float) -> dict:
        params = [p for n, p in named if n.startswith(prefix)]
        return {"params": params, "lr": lr, "weight_decay": weight_decay}

    optimizer = torch.optim.AdamW(
        [
            group("adapters.", 5e-5, 1e-3),
            group("sam.mask_decoder.", 5e-5, 1e-3),
            group("sam.prompt_encoder.", 5e-5, 1e-3),
            group("guide.clip.", 1e-7, 0.0),
        ]
    )
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(named)
    prepared = prepare_sample(sample, model.config)
    guide = model.guide
    model.fine_tuned = True  # the adapters train from here on (the engine sets it too)
    model.train()
    with torch.no_grad():
        class_feature = guide.encode_text([sample.class_name])
    empty = guide.encode_text([template.format("") for template in prompt_templates()])
    redundant = F.normalize(F.normalize(empty, dim=-1).mean(dim=0), dim=-1)
    text = F.normalize(class_feature - redundant, dim=-1)[:, None]
    points = torch.Generator().manual_seed(points_seed)
    output = model(prepared.image[None], text, generator=points)
    target = mask_to_logit_size(prepared.mask[None], model.config.sam.low_res_size)
    F.binary_cross_entropy_with_logits(output.low_res_logits[:, 0], target).backward()
    optimizer.step()


def test_one_reference_step_equals_the_released_step(tiny_reference_config, disks_train):
    sample = disks_train[0]
    engine_model = build_model(tiny_reference_config, seed=0)
    before = trainable_tensors(engine_model)
    seeds = []
    engine_model.register_forward_pre_hook(  # the engine gives each example its generator
        lambda module, args, kwargs: seeds.append(kwargs["generator"][0].initial_seed()),
        with_kwargs=True,
    )
    run(train(engine_model, [sample], None, TrainingConfig(epochs=1, **RELEASED, **CPU)))

    released_model = build_model(tiny_reference_config, seed=0)
    released_training_step(released_model, sample, seeds[0])

    engine, released = trainable_tensors(engine_model), trainable_tensors(released_model)
    assert engine.keys() == released.keys()
    moved = [name for name in engine if not torch.equal(engine[name], before[name])]
    assert len(moved) > 0.9 * len(engine)  # (a few tensors, e.g. unused point embeddings, rest)
    for name, tensor in engine.items():
        # Equal to within one fp32 rounding step of the values.
        torch.testing.assert_close(tensor, released[name], rtol=1.2e-7, atol=1e-12, msg=name)
    moved = engine["guide.clip.positional_embedding"] != before["guide.clip.positional_embedding"]
    assert moved.any(-1).nonzero().flatten().tolist() == list(range(TEMPLATE_ROWS))


def test_reference_training_recomputes_the_redundant_feature_every_step(
    tiny_reference_config, disks_train
):
    model = build_model(tiny_reference_config, seed=0)
    text_passes = []  # (prompts, output requires grad, output) per text-tower call

    def record(module, args, output):
        text_passes.append((output.shape[0], output.requires_grad, output.detach().clone()))

    model.guide.clip.transformer.register_forward_hook(record)
    config = TrainingConfig(epochs=1, max_steps=2, lr=1e-3, clip_lr=1e-4, **CPU)
    run(train(model, disks_train, None, config))

    templates = len(prompt_templates())
    # Per step: the class prompt without gradient, then the 85 templates with gradient.
    assert [(n, grad) for n, grad, _ in text_passes] == [(1, False), (templates, True)] * 2
    first, second = text_passes[1][2], text_passes[3][2]
    assert not torch.allclose(first, second)  # step 2 sees the moved positional embedding


def test_released_weight_decays_are_the_defaults_and_saved(tiny_reference_config, disks_train):
    assert (TrainingConfig().weight_decay, TrainingConfig().clip_weight_decay) == (1e-3, 0.0)
    model = build_model(tiny_reference_config, seed=0)
    before = model.guide.clip.positional_embedding.detach().clone()
    config = TrainingConfig(epochs=1, max_steps=2, lr=1e-3, clip_lr=1e-4, **CPU)
    run(train(model, disks_train, None, config))
    # Rows beyond the templates get no gradient, and without weight decay do not move.
    after = model.guide.clip.positional_embedding.detach()
    assert torch.equal(after[TEMPLATE_ROWS:], before[TEMPLATE_ROWS:])
    assert not torch.equal(after[:TEMPLATE_ROWS], before[:TEMPLATE_ROWS])


def _saved_weight_decays(folder) -> dict[str, float]:
    groups = load_state(folder / "last.state.safetensors").optimizer_state["param_groups"]
    return {group["name"]: group["weight_decay"] for group in groups}


def test_weight_decay_per_group_is_settable_and_kept_on_resume(
    tiny_reference_config, disks_train, tmp_path
):
    samples = disks_train[:2]
    fast = dict(lr=1e-3, clip_lr=1e-4, output_dir=str(tmp_path), **CPU)
    decays = dict(weight_decay=0.01, clip_weight_decay=0.5)
    model = build_model(tiny_reference_config, seed=0)
    before = model.guide.clip.positional_embedding.detach().clone()
    run(train(model, samples, None, TrainingConfig(epochs=1, **decays, **fast)))
    # The CLIP group's decay shrinks even the rows no gradient reaches: 1 - lr * wd per step.
    after = model.guide.clip.positional_embedding.detach()
    shrink = (1 - 1e-4 * 0.5) ** len(samples)
    torch.testing.assert_close(after[TEMPLATE_ROWS:], before[TEMPLATE_ROWS:] * shrink)
    assert _saved_weight_decays(tmp_path) == {"sam_and_adapters": 0.01, "clip": 0.5}

    # Resumed with the defaults (as the CLI and widget do), the run keeps its own decays.
    resumed = build_model(tiny_reference_config, seed=0)
    more = TrainingConfig(epochs=2, **fast)
    run(train(resumed, samples, None, more, resume_from=tmp_path))
    assert _saved_weight_decays(tmp_path) == {"sam_and_adapters": 0.01, "clip": 0.5}
    info = load_state(tmp_path / "last.state.safetensors").info["training_config"]
    assert (info["weight_decay"], info["clip_weight_decay"]) == (0.01, 0.5)


def test_resume_refuses_another_text_training(tiny_reference_config, disks_train, tmp_path):
    config = TrainingConfig(epochs=1, max_steps=1, output_dir=str(tmp_path), **CPU)
    run(train(build_model(tiny_reference_config, seed=0), disks_train, None, config))
    more = dataclasses.replace(config, max_steps=None)
    class_path = tiny_reference_config.replace(**{"guide.text_gradient": "class"})
    with pytest.raises(ValueError, match="through the 'redundant' feature"):
        next(train(build_model(class_path, seed=0), disks_train, None, more, resume_from=tmp_path))


def test_negative_weight_decay_is_refused():
    with pytest.raises(ValueError, match="clip_weight_decay"):
        TrainingConfig(clip_weight_decay=-1.0)
