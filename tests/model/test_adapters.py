import functools

import pytest
import torch
import torch.nn.functional as F

from napari_clip_guided_sam.model.adapters import Guidance
from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.factory import build_model


def fine_tuned(model):
    """The model as after fine-tuning starts: adapters in use (here with their init)."""
    model.fine_tuned = True
    return model


def test_adapters_off_give_vanilla_sam_embeddings(sam_input):
    vanilla = build_model(get_preset("tiny").replace(**{"adapters.enabled": False}), seed=0)
    adapted = fine_tuned(build_model("tiny", seed=0))
    text = adapted.text_features(["nucleus"])
    with torch.no_grad():
        guide = adapted.guidance(sam_input, text)
        expected = vanilla.sam.image_encoder(sam_input)
        off = vanilla.encode_image(sam_input, guide)
        on = adapted.encode_image(sam_input, guide)
        adapted.adapters.detach()
        detached = adapted.sam.image_encoder(sam_input)
    torch.testing.assert_close(off, expected)
    torch.testing.assert_close(detached, expected)
    assert not torch.allclose(on, expected)


def test_zero_shot_bypasses_the_adapters_and_fine_tuning_uses_them(sam_input):
    """A fresh model is the training-free baseline: vanilla SAM embeddings, every class
    alike; the same model marked fine-tuned runs its (released-init) adapters."""
    model = build_model(get_preset("tiny").replace(**{"adapters.pad_before_norm": True}), seed=0)
    assert model.zero_shot and model.adapter_state == "zero-shot (no fine-tuned adapters)"
    text = model.text_features(["nucleus", "cell"])
    with torch.no_grad():
        guide = model.guidance(sam_input, text)
        zero_shot = model.encode_image(sam_input, guide)
        model.adapters.detach()
        vanilla = model.sam.image_encoder(sam_input)
    assert torch.equal(zero_shot[0::2], vanilla) and torch.equal(zero_shot[1::2], vanilla)

    model = fine_tuned(build_model("tiny", seed=0))
    assert model.adapter_state == "fine-tuned adapters"
    with torch.no_grad():
        adapted = model.encode_image(sam_input, model.guidance(sam_input, text))
    assert not torch.allclose(adapted[0::2], vanilla)
    assert not torch.allclose(adapted[0::2], adapted[1::2])  # the class now matters


def test_identity_init_starts_fine_tuning_exactly_at_vanilla_sam(sam_input):
    identity = get_preset("tiny").replace(**{"adapters.init": "identity"})
    model = build_model(identity, seed=0)
    for block in model.adapters:
        assert not block.regular.inner_skip
        assert not block.regular.fc2.weight.any() and not block.semantic.fc2.bias.any()
        assert block.regular.fc1.weight.any()  # inner layers keep their random init
    text = model.text_features(["nucleus"])
    with torch.no_grad():
        zero_shot = model(sam_input, text)
        fine_tuned(model)
        started = model(sam_input, text)
    assert torch.equal(started.low_res_logits, zero_shot.low_res_logits)
    assert torch.equal(started.iou_predictions, zero_shot.iou_predictions)


def test_identity_regular_adapter_has_no_inner_skip():
    model = build_model(get_preset("tiny").replace(**{"adapters.init": "identity"}), seed=0)
    adapter = model.adapters[0].regular
    with torch.no_grad():
        adapter.fc2.weight.normal_()
    a = torch.randn(3, 64)
    expected = a + 0.5 * adapter.fc2(torch.nn.functional.gelu(adapter.fc1(a)))
    torch.testing.assert_close(adapter(a), expected)


def test_base_state_dict_keys_are_unchanged(tiny_model):
    vanilla = build_model(get_preset("tiny").replace(**{"adapters.enabled": False}), seed=0)
    assert tiny_model.sam.state_dict().keys() == vanilla.sam.state_dict().keys()
    adapter_keys = [k for k in tiny_model.state_dict() if k.startswith("adapters.")]
    assert "adapters.0.regular.fc1.weight" in adapter_keys
    assert "adapters.3.semantic.vision_projection.weight" in adapter_keys


def test_regular_adapter_formula(tiny_model):
    adapter = tiny_model.adapters[0].regular
    a = torch.randn(3, 64)
    expected = a + 0.5 * (a + adapter.fc2(torch.nn.functional.gelu(adapter.fc1(a))))
    torch.testing.assert_close(adapter(a), expected)


def _semantic_formula(adapter, normed, guidance):
    """The semantic adapter as docs/architecture.md writes it, summed at C channels."""
    inputs = normed
    if adapter.text_projection is not None:
        inputs = inputs + F.gelu(adapter.text_projection(guidance.text))[:, None, None, :]
    if adapter.vision_projection is not None:
        patches = adapter.vision_projection(guidance.vision)[:, 1:]  # [P, N, C]
        side = int(patches.shape[1] ** 0.5)
        grid = patches.transpose(1, 2).reshape(patches.shape[0], -1, side, side)
        grid = F.interpolate(grid, size=normed.shape[1:3], mode="bilinear", align_corners=False)
        inputs = inputs + grid.permute(0, 2, 3, 1)
    return adapter.alpha * adapter.fc2(F.gelu(adapter.fc1(inputs)))


@pytest.mark.parametrize("grid", [7, 13], ids=["downsized", "upsized"])
@pytest.mark.parametrize("ablation", ["none", "use_text", "use_vision"])
def test_semantic_adapter_formula_and_gradients(grid, ablation):
    overrides = {} if ablation == "none" else {f"adapters.{ablation}": False}
    if ablation == "use_vision":
        overrides["adapters.use_similarity"] = False
    model = build_model(get_preset("tiny").replace(**overrides), seed=0)
    adapter = model.adapters[0].semantic
    torch.manual_seed(1)
    with torch.no_grad():
        adapter.fc2.weight.normal_()  # (a released init's fc2 may start at zero)
    pairs, guide_dim = 2, model.guide.embed_dim
    normed = torch.randn(pairs, grid, grid, adapter.fc1.in_features)
    guidance = Guidance(torch.randn(pairs, guide_dim), torch.randn(pairs, 1 + 10 * 10, guide_dim))
    results = []
    for compute in (adapter, functools.partial(_semantic_formula, adapter)):
        adapter.zero_grad()
        output = compute(normed, guidance)
        output.square().sum().backward()
        results.append((output, {n: p.grad.clone() for n, p in adapter.named_parameters()}))
    (output, grads), (expected, expected_grads) = results
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        scale = expected_grads[name].abs().max().item()  # (rounding grows with the sums)
        torch.testing.assert_close(grad, expected_grads[name], atol=1e-5 * scale, rtol=1e-4)


def test_ablations_change_the_embedding_and_the_parameter_set(sam_input):
    base = get_preset("tiny")
    full = fine_tuned(build_model(base, seed=0))
    no_text = fine_tuned(build_model(base.replace(**{"adapters.use_text": False}), seed=0))
    no_vision = fine_tuned(
        build_model(
            base.replace(**{"adapters.use_vision": False, "adapters.use_similarity": False}),
            seed=0,
        )
    )
    assert no_text.adapters[0].semantic.text_projection is None
    assert no_vision.adapters[0].semantic.vision_projection is None
    text = full.text_features(["cell"])
    with torch.no_grad():
        guide = full.guidance(sam_input, text)
        embeddings = [m.encode_image(sam_input, guide) for m in (full, no_text, no_vision)]
    assert not torch.allclose(embeddings[0], embeddings[1])
    assert not torch.allclose(embeddings[0], embeddings[2])


def test_semantic_blocks_select_where_semantic_adapters_go():
    model = build_model(get_preset("tiny").replace(**{"adapters.semantic_blocks": (1, 3)}), seed=0)
    assert [a.semantic is not None for a in model.adapters] == [False, True, False, True]


def test_pad_before_norm_feeds_norm1_bias_into_window_padding(sam_input):
    config = get_preset("tiny").replace(**{"adapters.pad_before_norm": True})
    model = fine_tuned(build_model(config, seed=0))
    block = model.sam.image_encoder.blocks[0]  # windowed: 16x16 grid padded to 28x28
    with torch.no_grad():
        block.norm1.bias.normal_()
    seen = {}
    handle = block.attn.register_forward_pre_hook(lambda m, inputs: seen.setdefault("x", inputs[0]))
    with torch.no_grad():
        model(sam_input[:1], model.text_features(["cell"]))
    handle.remove()
    windows = seen["x"]  # [4 windows, 14, 14, C] after our fill hook ran first
    bias = block.norm1.bias
    padded = windows.reshape(2, 2, 14, 14, -1).permute(0, 2, 1, 3, 4).reshape(28, 28, -1)
    torch.testing.assert_close(padded[16:, :], bias.expand(12, 28, -1))
    torch.testing.assert_close(padded[:, 16:], bias.expand(28, 12, -1))
    assert not torch.allclose(padded[:16, :16], bias.expand(16, 16, -1))


def test_paper_adapter_parameter_counts():
    with torch.device("meta"):
        model = build_model("paper", base_weights="random")
    regular = sum(p.numel() for p in model.adapters[0].regular.parameters())
    semantic = sum(p.numel() for p in model.adapters[0].semantic.parameters())
    total = sum(p.numel() for p in model.adapters.parameters())
    assert (regular, semantic, total) == (295_872, 1_083_840, 16_556_544)
