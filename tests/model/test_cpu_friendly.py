"""Adapters in the last blocks, the frozen prefix and its cache, activation checkpointing
and smaller SAM inputs, on the `tiny` architecture."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from napari_clip_guided_sam.model.accounting import adapter_depth_table, count_parameters
from napari_clip_guided_sam.model.config import (
    ModelConfig,
    adapted_blocks,
    get_preset,
    with_compute_choices,
)
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.prefix_cache import PrefixStore
from napari_clip_guided_sam.model.sam import build_sam

# tiny: 4 SAM blocks (global: 1, 3), 4 CLIP blocks (surgery in the last 2).
LAST_TWO = with_compute_choices(get_preset("tiny"), adapter_blocks=2, clip_trainable_blocks=1)


def fine_tuned(config, seed=0):
    model = build_model(config, seed=seed)
    model.fine_tuned = True
    return model


def block_outputs_need_grad(model, images, text) -> list[bool]:
    """Whether each SAM encoder block's output is part of the autograd graph."""
    flags = []
    handles = [
        block.register_forward_hook(lambda _m, _i, out: flags.append(out.requires_grad))
        for block in model.sam.image_encoder.blocks
    ]
    model(images, text)
    for handle in handles:
        handle.remove()
    return flags


def trainable_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_adapters_sit_only_in_the_chosen_blocks_and_backward_stops_before_them(sam_input):
    model = fine_tuned(LAST_TWO)
    assert model.adapters.adapted_blocks == [2, 3]
    names = {name for name, _ in model.named_parameters()}
    assert not any(name.startswith(("adapters.0.", "adapters.1.")) for name in names)
    assert {"adapters.2.regular.fc1.weight", "adapters.3.semantic.fc2.bias"} <= names
    assert (model.encoder_prefix_depth(), model.clip_prefix_depth()) == (2, 3)
    text = model.text_features(["nucleus"])
    model.train()
    assert block_outputs_need_grad(model, sam_input[:1], text) == [False, False, True, True]
    # Every block of the full model is in the graph.
    full = fine_tuned(get_preset("tiny"))
    full.train()
    assert block_outputs_need_grad(full, sam_input[:1], text) == [True] * 4


def test_the_prefix_cache_changes_no_number_in_inference_or_training(sam_input):
    plain, cached = fine_tuned(LAST_TWO), fine_tuned(LAST_TWO)
    cached.prefix_cache = PrefixStore(2**30)
    text = plain.text_features(["nucleus", "cell"])
    with torch.no_grad():
        expected = plain(sam_input, text)
        for _ in range(2):  # filling the cache, then served from it
            got = cached(sam_input, text)
            assert torch.equal(got.low_res_logits, expected.low_res_logits)
            assert torch.equal(got.similarity_map, expected.similarity_map)
    stats = cached.prefix_cache.stats
    assert stats.misses == 4 and stats.hits == 4  # 2 images x (SAM, CLIP), then again

    for model in (plain, cached):  # a training step: same loss, same gradients
        model.train()
        for _ in range(2):
            model.zero_grad()
            model(sam_input, text).low_res_logits.square().mean().backward()
    expected_grads = trainable_grads(plain)
    assert expected_grads.keys() == trainable_grads(cached).keys()
    for name, grad in trainable_grads(cached).items():
        assert torch.equal(grad, expected_grads[name]), name


def test_the_clip_prefix_is_cached_per_image_and_gives_the_same_tokens(sam_input):
    model = fine_tuned(LAST_TWO)
    expected = model.clip_tokens(sam_input)
    expected_second = model.clip_tokens(sam_input[1:])  # (the same batch size as below)
    model.prefix_cache = PrefixStore(2**30, parts=("clip",))
    assert torch.equal(model.clip_tokens(sam_input), expected)
    assert torch.equal(model.clip_tokens(sam_input[1:]), expected_second)
    assert (model.prefix_cache.stats.misses, model.prefix_cache.stats.hits) == (2, 1)


def test_activation_checkpointing_gives_the_same_gradients(sam_input):
    text_names = ["nucleus", "cell"]
    for config in (get_preset("tiny"), LAST_TWO):
        plain, recomputed = fine_tuned(config), fine_tuned(config)
        recomputed.activation_checkpointing = True
        for model in (plain, recomputed):
            model.train()
            text = model.text_features(text_names)
            model(sam_input, text).low_res_logits.square().mean().backward()
        expected = trainable_grads(plain)
        got = trainable_grads(recomputed)
        assert got.keys() == expected.keys()
        for name, grad in got.items():
            torch.testing.assert_close(grad, expected[name], rtol=1e-6, atol=1e-6)


def test_semantic_adapters_must_sit_in_adapted_blocks():
    config = get_preset("tiny").replace(
        **{"adapters.blocks": (2, 3), "adapters.semantic_blocks": (1,)}
    )
    with pytest.raises(ValueError, match="semantic_blocks \\[1\\] carry no adapters"):
        build_model(config)
    with pytest.raises(ValueError, match="last 1 to 4"):
        with_compute_choices(get_preset("tiny"), adapter_blocks=5)


def test_a_smaller_input_loads_the_base_weights_with_interpolated_positions(tmp_path):
    base = build_sam(get_preset("tiny").sam)
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=generator) for k, v in base.state_dict().items()}
    save_file(state, str(tmp_path / "sam.safetensors"))
    small = with_compute_choices(get_preset("tiny"), image_size=128)
    assert (small.sam.image_size, small.sam.base_image_size) == (128, 256)

    model = build_model(small, sam_weights=tmp_path / "sam.safetensors")
    encoder = model.sam.image_encoder
    expected = F.interpolate(
        state["image_encoder.pos_embed"].permute(0, 3, 1, 2), size=(8, 8), mode="bilinear"
    ).permute(0, 2, 3, 1)
    assert torch.equal(encoder.pos_embed, expected)
    for index, block in enumerate(encoder.blocks):
        key = f"image_encoder.blocks.{index}.attn.rel_pos_h"
        if index in small.sam.global_attn_indexes:  # 2 * 16 - 1 rows -> 2 * 8 - 1
            rows = F.interpolate(state[key].T[None], size=15, mode="linear")[0].T
            assert torch.equal(block.attn.rel_pos_h, rows)
        else:  # windows keep their size and table
            assert torch.equal(block.attn.rel_pos_h, state[key])
    assert model.sam.prompt_encoder.get_dense_pe().shape[-2:] == (8, 8)
    images = torch.randn(1, 3, 128, 128, generator=generator)
    model.fine_tuned = True
    with torch.no_grad():
        output = model(images, model.text_features(["nucleus"]))
    assert output.low_res_logits.shape == (1, 1, 32, 32) and output.low_res_logits.isfinite().all()
    assert output.point_coords.max() < 128


def test_paper_cpu_is_the_paper_architecture_at_512_px_with_adapters_in_the_last_blocks():
    paper, cpu = get_preset("paper"), get_preset("paper_cpu")
    assert (cpu.sam.image_size, cpu.sam.base_image_size) == (512, 1024)
    assert adapted_blocks(cpu) == (9, 10, 11) and cpu.adapters.semantic_blocks is None
    assert cpu.trainable.clip_attention_blocks == 2
    assert cpu.clip == paper.clip and cpu.guide == paper.guide and cpu.loss == paper.loss
    assert with_compute_choices(paper) == paper
    with torch.device("meta"):
        model = build_model(cpu, base_weights="random")
    encoder = model.sam.image_encoder
    assert tuple(encoder.pos_embed.shape) == (1, 32, 32, 768)
    assert tuple(encoder.blocks[11].attn.rel_pos_h.shape) == (63, 64)
    assert tuple(encoder.blocks[10].attn.rel_pos_h.shape) == (27, 64)


def test_parameter_counts_follow_the_adapter_depth():
    regular, semantic = 295_872, 1_083_840  # per ViT-B block (docs/model.md)
    rows = {row.component: row for row in count_parameters("paper_cpu")}
    assert rows["  of which adapters"].trainable == 3 * (regular + semantic)
    depth = adapter_depth_table(get_preset("paper"))
    assert [row.blocks for row in depth] == list(range(1, 13))
    assert depth[-1].adapters == 12 * (regular + semantic) == 16_556_544
    assert depth[-1].trainable - depth[0].trainable == 11 * (regular + semantic)
    paper = {row.component: row for row in count_parameters("paper")}
    assert depth[-1].trainable == paper["System (SAM + CLIP)"].trainable


def test_configs_saved_before_adapter_blocks_and_input_sizes_read_as_before():
    for name in ("paper", "reference", "tiny"):
        data = get_preset(name).to_dict()
        del data["adapters"]["blocks"], data["sam"]["base_image_size"]
        assert ModelConfig.from_dict(data) == get_preset(name)


def test_the_prefix_store_keeps_the_newest_in_memory_then_on_disk(tmp_path):
    def entry(value):  # 4 KB, laid out channels-first as SAM's patch embedding leaves it
        return (torch.full((1, 4, 16, 16), float(value)).permute(0, 2, 3, 1),)

    store = PrefixStore(2 * 4096, tmp_path / "spill", max_disk_bytes=2 * 4096)
    for key in "abcde":
        store.put(key, entry(ord(key)))
    assert store.memory_bytes == store.disk_bytes == 2 * 4096 and len(store) == 4
    assert store.get("a") is None  # pushed out of memory, then off the disk
    back = store.get("b")  # from disk, back in memory (c goes to disk)
    assert torch.equal(back[0], entry(ord("b"))[0]) and back[0].stride() == (1024, 16, 1, 256)
    assert store.stats.disk_reads == 1 and store.stats.hits == 1
    assert torch.equal(store.get("e")[0], entry(ord("e"))[0])
    assert sorted(p.stem for p in (tmp_path / "spill").iterdir()) == ["c", "d"]
    store.clear()
    assert len(store) == 0 and not any((tmp_path / "spill").iterdir())
    memory_only = PrefixStore(4096)
    memory_only.put("a", entry(1))
    memory_only.put("b", entry(2))
    assert memory_only.get("a") is None and memory_only.get("b") is not None
