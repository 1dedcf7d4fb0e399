"""Fused attention computes what segment-anything and CLIP Surgery compute, hooks included."""

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, Block

from napari_clip_guided_sam.model.attention import (
    FusedSamAttention,
    relative_position_attention,
    use_fused_attention,
    uses_fused_attention,
)
from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.sam import build_sam

TINY_REFERENCE = get_preset("tiny").replace(
    name="tiny_reference", **{"guide.token_norm": "reference", "adapters.pad_before_norm": True}
)


def _vit_b_block(window_size: int) -> Block:
    """One ViT-B encoder block as SAM builds it, with a non-zero relative-position table."""
    torch.manual_seed(0)
    block = Block(768, 12, use_rel_pos=True, window_size=window_size, input_size=(64, 64)).eval()
    with torch.no_grad():
        block.attn.rel_pos_h.normal_(0, 0.5)
        block.attn.rel_pos_w.normal_(0, 0.5)
    return block


@pytest.mark.parametrize("window_size", [14, 0], ids=["windowed", "global"])
def test_fused_vit_b_block_matches_segment_anything(window_size):
    block = _vit_b_block(window_size)
    x = torch.randn(1, 20, 20, 768)  # 20 % 14 pads the windows; 20 != 64 resizes the table
    with torch.no_grad():
        expected = block(x)
        use_fused_attention(block)
        assert type(block.attn) is FusedSamAttention
        fused = block(x)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)


# One grid row of queries' mask for one image and head: 6 queries x 36 keys x 4 bytes.
ROW_BYTES = 6 * 36 * 4


@pytest.mark.parametrize(
    "max_mask_bytes",
    [2 * 3 * 6 * ROW_BYTES, 2 * 6 * ROW_BYTES, 4 * ROW_BYTES, 1],
    ids=["two-images", "two-heads", "four-rows", "one-row"],
)
def test_mask_built_in_pieces_equals_the_whole_mask(max_mask_bytes):
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 3, 3, 36, 8).unbind(0)  # 3 images, 3 heads, 6 x 6 grid
    rel_h, rel_w = torch.randn(11, 8), torch.randn(11, 8)
    with torch.no_grad():
        whole = relative_position_attention(query, key, value, rel_h, rel_w, (6, 6))
        pieces = relative_position_attention(
            query, key, value, rel_h, rel_w, (6, 6), max_mask_bytes=max_mask_bytes
        )
    # (a piece of few queries may take another kernel path: rounding differences only)
    torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=1e-5)


def test_adapters_off_equal_vanilla_sam_embedding(sam_input):
    config = get_preset("tiny").replace(**{"adapters.enabled": False})
    model = build_model(config, seed=0)
    assert uses_fused_attention(model)
    vanilla = build_sam(config.sam)  # segment-anything's own, unfused code
    vanilla.load_state_dict(model.sam.state_dict())
    with torch.no_grad():
        guide = model.guidance(sam_input, model.text_features(["cell"]))
        fused = model.encode_image(sam_input, guide)
        expected = vanilla.image_encoder(sam_input)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)


def test_switching_off_restores_segment_anything_bit_for_bit(sam_input):
    model = build_model("tiny", seed=0)
    use_fused_attention(model, False)
    assert not uses_fused_attention(model) and not model.guide.fused_attention
    assert all(type(b.attn) is Attention for b in model.sam.image_encoder.blocks)
    vanilla = build_sam(model.config.sam)
    vanilla.load_state_dict(model.sam.state_dict())
    model.adapters.detach()
    with torch.no_grad():
        assert torch.equal(model.sam.image_encoder(sam_input), vanilla.image_encoder(sam_input))


def _stages(model, images, text, guide=None):
    """The reference pipeline's stages: tokens, similarity map, embedding, mask logits."""
    points = torch.tensor([[[100.0, 120.0], [30.0, 20.0]]] * images.shape[0])
    labels = torch.tensor([[1, 0]] * images.shape[0])
    with torch.no_grad():
        own = model.guidance(images, text)
        guide = guide or own  # the same prompts for both models from here on
        embeddings = model.encode_image(images, guide)
        dense = model.dense_prompt(guide.similarity_map.flatten(0, 1))
        logits, _ = model.decode(embeddings, dense, points, labels)
    return {
        "tokens": own.tokens,
        "similarity_map": own.similarity_map,
        "embedding": embeddings,
        "logits": logits,
    }, guide


def test_reference_stages_agree_fused_and_unfused(sam_input):
    fused = build_model(TINY_REFERENCE, seed=3)
    unfused = build_model(TINY_REFERENCE, seed=3)
    use_fused_attention(unfused, False)
    text = unfused.text_features(["nucleus"])
    expected, guide = _stages(unfused, sam_input, text)
    actual, _ = _stages(fused, sam_input, text, guide)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, atol=1e-4, rtol=1e-4, msg=name)


def test_adapter_hooks_fire_on_fused_attention(sam_input):
    model = build_model(TINY_REFERENCE, seed=0)
    model.fine_tuned = True  # adapters in use (a zero-shot model bypasses them)
    calls = []
    block = model.sam.image_encoder.blocks[0]
    handle = block.attn.register_forward_hook(lambda *args: calls.append("attn"))
    with torch.no_grad():
        guide = model.guidance(sam_input[:1], model.text_features(["cell"]))
        adapted = model.encode_image(sam_input[:1], guide)
        model.adapters.detach()  # the regular adapter hooks and the padding pre-hooks go
        plain = model.encode_image(sam_input[:1], guide)
    handle.remove()
    assert calls == ["attn", "attn"]
    assert not torch.allclose(adapted, plain, atol=1e-3)


def test_gradients_agree_fused_and_unfused(sam_input):
    grads = []
    for fused in (True, False):
        model = build_model("tiny", seed=0).train()
        use_fused_attention(model, fused)
        output = model(sam_input, model.text_features(["cell"]))
        output.low_res_logits.square().mean().backward()
        grads.append(model.adapters[0].regular.fc1.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_fused_clip_blocks_match_open_clip_and_the_full_surgery_path():
    from open_clip.transformer import ResidualAttentionBlock

    from napari_clip_guided_sam.model.guide import plain_block, surgery_block

    torch.manual_seed(0)
    block = ResidualAttentionBlock(64, 4).eval()
    x_ori, x_new = torch.randn(2, 2, 17, 64).unbind(0)
    with torch.no_grad():
        torch.testing.assert_close(plain_block(block, x_ori, fused=True), block(x_ori))
        whole = surgery_block(block, x_ori, x_new, fused=True)
        class_only = surgery_block(block, x_ori, x_new, fused=True, class_token_only=True)
    assert class_only[0].shape == (2, 1, 64)
    torch.testing.assert_close(class_only[0], whole[0][:, :1])
    torch.testing.assert_close(class_only[1], whole[1])  # the v-v path keeps every token
