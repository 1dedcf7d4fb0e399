import pytest
import torch
import torch.nn.functional as F

from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.guide import (
    feature_surgery_similarity,
    get_tokenizer,
    prompt_templates,
    resize_positional_embedding,
)

# A class name whose tokens reach further than any empty-prompt template's.
LONG_NAME = "a round nucleus of a large cell with many bright and dark spots"


def _vv_reference(block, x):
    """v-v attention written out with explicit softmax: softmax(v v^T / sqrt(d)) v."""
    attn = block.attn
    heads, width = attn.num_heads, x.shape[-1]
    v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)[..., 2 * width :]
    v = v.reshape(x.shape[0], x.shape[1], heads, width // heads).transpose(1, 2)
    weights = torch.softmax(v @ v.transpose(-1, -2) / (width // heads) ** 0.5, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(x.shape)
    return attn.out_proj(out)


def test_surgery_tokens_match_a_direct_recomputation(tiny_model):
    guide = tiny_model.guide
    visual = guide.clip.visual
    images = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = guide.encode_image_tokens(images)
        x = visual.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(2, 1, -1), x], 1) + visual.positional_embedding
        x = visual.ln_pre(x)
        blocks = visual.transformer.resblocks
        start = len(blocks) - guide.clip_config.surgery_depth
        for block in blocks[:start]:
            x = block(x)  # open_clip's own block: the original path
        x_ori, x_new = x, x.clone()
        for block in blocks[start:]:
            x_new = x_new + _vv_reference(block, x_ori)
            x_ori = block(x_ori)
        expected = torch.cat([x_ori[:, :1], x_new[:, 1:]], 1)
        expected = visual.ln_post(expected) @ visual.proj
    assert tokens.shape == (2, 1 + 8 * 8, 64)
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)


def test_cls_token_equals_plain_clip_image_feature(tiny_model):
    images = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        tokens = tiny_model.guide.encode_image_tokens(images)
        pooled = tiny_model.guide.clip.encode_image(images)
    torch.testing.assert_close(tokens[:, 0], pooled, atol=1e-5, rtol=1e-5)


def test_positional_embedding_is_resized_bilinearly_with_cls_kept(tiny_model):
    from napari_clip_guided_sam.model.guide import build_clip

    clip = build_clip(tiny_model.config.clip)
    before = clip.visual.positional_embedding.detach().clone()  # 1 + 4x4
    resize_positional_embedding(clip.visual, 128)
    after = clip.visual.positional_embedding.detach()
    assert after.shape == (1 + 8 * 8, 64)
    torch.testing.assert_close(after[0], before[0])
    grid = before[1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, (8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(after[1:], expected.permute(0, 2, 3, 1).reshape(64, 64))
    assert clip.visual.grid_size == (8, 8)


def test_resize_rejects_sizes_off_the_patch_grid(tiny_model):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        resize_positional_embedding(tiny_model.guide.clip.visual, 100)


def test_text_features_remove_the_redundant_feature_and_are_unit_norm(tiny_model):
    guide = tiny_model.guide
    with torch.no_grad():
        features = guide.text_features(["nucleus", "mitochondrion"])
        raw = guide.encode_text(["nucleus"])[0]
        templates = prompt_templates()
        empty = F.normalize(guide.encode_text([t.format("") for t in templates]), dim=-1)
        redundant = F.normalize(empty.mean(0), dim=-1)
    assert len(templates) == 85
    assert features.shape == (2, 64)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(features[0], F.normalize(raw - redundant, dim=-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [[], [""], ["  "], "nucleus", [3]])
def test_bad_class_names_are_refused(tiny_model, bad):
    with pytest.raises((ValueError, TypeError), match="class name|Class names|No class"):
        tiny_model.text_features(bad)


def test_token_normalisation_switch(tiny_model):
    tokens = torch.randn(2, 5, 64)
    per_token = tiny_model.guide.normalize_tokens(tokens)
    torch.testing.assert_close(per_token.norm(dim=-1), torch.ones(2, 5))
    reference = tiny_model.config.replace(**{"guide.token_norm": "reference"})
    tiny_model.guide.guide_config = reference.guide
    over_tokens = tiny_model.guide.normalize_tokens(tokens)
    torch.testing.assert_close(over_tokens.norm(dim=1), torch.ones(2, 64))


def test_similarity_map_is_min_max_normalised_in_the_sam_frame(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus", "cell"])
    with torch.no_grad():
        out = tiny_model.guidance(sam_input, text)
    assert out.similarity.shape == (2, 2, 65)
    assert out.similarity_map.shape == (2, 2, 256, 256)
    # Bilinear resizing stays within the min-max range of the 8x8 patch similarities.
    assert out.similarity_map.min() >= 0 and out.similarity_map.max() <= 1
    patches = out.similarity[..., 1:]
    arg = patches.argmax(-1)[0, 0]
    row, col = divmod(int(arg), 8)
    # The patch with the highest similarity is 1.0 at its centre region after resizing.
    assert out.similarity_map[0, 0, row * 32 + 16, col * 32 + 16] > 0.9


def test_feature_surgery_shapes_and_class_mean_removal():
    tokens = F.normalize(torch.randn(1, 5, 8), dim=-1)
    text = F.normalize(torch.randn(1, 3, 8), dim=-1)
    similarity = feature_surgery_similarity(tokens, text)
    assert similarity.shape == (1, 3, 5)
    torch.testing.assert_close(similarity.sum(dim=1), torch.zeros(1, 5), atol=1e-6, rtol=0)


def _reach(texts: list[str]) -> int:
    """The last token position (end of text, the highest token id) over `texts`."""
    return int(get_tokenizer("tiny")(texts).argmax(-1).max())


def _template_reach() -> int:
    return _reach([template.format("") for template in prompt_templates()])


def _gradient_rows(model, class_name: str) -> set[int]:
    """Rows of the text positional embedding that a training forward's gradient reaches."""
    model.train()
    features = model.text_features([class_name])
    weights = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
    (features * weights).sum().backward()
    grad = model.guide.clip.positional_embedding.grad
    return set(grad.abs().sum(-1).nonzero().flatten().tolist())


def test_reference_text_gradient_reaches_only_the_empty_template_rows(tiny_reference_model):
    # The released code: the class feature has no gradient, the redundant feature r (85
    # empty-prompt templates) has. So rows 0-10 (the longest template's end) learn, not the
    # rows only the class name's tokens reach.
    assert _template_reach() == 10 and _reach([LONG_NAME]) > 10
    assert _gradient_rows(tiny_reference_model, LONG_NAME) == set(range(11))


def test_class_text_gradient_reaches_only_the_class_name_rows(tiny_reference_config):
    model = build_model(tiny_reference_config.replace(**{"guide.text_gradient": "class"}))
    assert _gradient_rows(model, LONG_NAME) == set(range(_reach([LONG_NAME]) + 1))


def test_frozen_text_positional_embedding_gets_no_gradient(tiny_model):
    assert not tiny_model.guide.clip.positional_embedding.requires_grad
    tiny_model.train()
    assert not tiny_model.text_features(["nucleus"]).requires_grad


def _nudge_template_only_row(model) -> None:
    """An optimiser-like in-place change of a row the templates reach but "cell" does not."""
    assert _reach(["cell"]) < _template_reach()
    embedding = model.guide.clip.positional_embedding
    step = torch.randn(embedding.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embedding[_template_reach()] += 0.1 * step


def test_reference_recomputes_the_redundant_feature_at_every_training_forward(
    tiny_reference_model,
):
    model = tiny_reference_model.train()
    with torch.no_grad():
        cached = model.text_features(["cell"])  # fills the no-grad cache
    first = model.text_features(["cell"])
    assert first.requires_grad
    torch.testing.assert_close(first.detach(), cached)
    _nudge_template_only_row(model)
    second = model.text_features(["cell"])
    with torch.no_grad():
        after_step = model.text_features(["cell"])  # the training forward dropped the cache
    model.guide.reset_text_cache()
    with torch.no_grad():
        fresh = model.text_features(["cell"])
    assert not torch.allclose(first.detach(), second.detach())
    torch.testing.assert_close(second.detach(), fresh, atol=1e-6, rtol=0)
    torch.testing.assert_close(after_step, fresh, atol=1e-6, rtol=0)


def test_class_path_keeps_the_redundant_feature_until_the_cache_is_reset(tiny_reference_config):
    model = build_model(tiny_reference_config.replace(**{"guide.text_gradient": "class"})).train()
    first = model.text_features(["cell"])
    _nudge_template_only_row(model)
    assert torch.equal(model.text_features(["cell"]), first)
    model.guide.reset_text_cache()
    assert not torch.allclose(model.text_features(["cell"]), first)


def test_unknown_text_gradient_path_is_refused(tiny_reference_config):
    with pytest.raises(ValueError, match="text_gradient"):
        build_model(tiny_reference_config.replace(**{"guide.text_gradient": "both"}))
