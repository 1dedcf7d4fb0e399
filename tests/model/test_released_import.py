"""The authors' released layout imports into the `reference` preset's model."""

import torch

from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.released import import_released_checkpoint

TINY_REFERENCE = get_preset("tiny").replace(
    name="tiny_reference",
    loss="bce",
    **{"guide.token_norm": "reference", "adapters.pad_before_norm": True},
)

_THEIR_ADAPTER_NAMES = {
    "regular": "Space_Adapter",
    "semantic": "MLP_Adapter",
    "fc1": "D_fc1",
    "fc2": "D_fc2",
    "text_projection": "text_projection",
    "vision_projection": "vis_projection",
}


def _released_layout(model):
    """Write `model` the way the released code stores its checkpoints."""
    sam_state = {k: v.clone() for k, v in model.sam.state_dict().items()}
    for key, value in model.adapters.state_dict().items():
        block, group, layer, leaf = key.split(".")
        their = f"image_encoder.blocks.{block}.{_THEIR_ADAPTER_NAMES[group]}."
        sam_state[their + f"{_THEIR_ADAPTER_NAMES[layer]}.{leaf}"] = value.clone()
    clip_state = {}
    depth = len(model.guide.clip.visual.transformer.resblocks)
    surgery = range(depth - model.config.clip.surgery_depth, depth)
    for key, value in model.guide.clip.state_dict().items():
        for index in surgery:
            prefix = f"visual.transformer.resblocks.{index}.attn."
            key = key.replace(prefix + "in_proj_", prefix + "qkv.")
            key = key.replace(prefix + "out_proj.", prefix + "proj.")
        clip_state[key] = value.clone()
    first = f"visual.transformer.resblocks.{surgery[0]}.attn."
    for key in [k for k in clip_state if k.startswith(first)]:
        clip_state["visual.attn." + key[len(first) :]] = clip_state[key].clone()
    clip_state.update(
        input_resolution=torch.tensor(128),
        context_length=torch.tensor(77),
        vocab_size=torch.tensor(49408),
    )
    return {"model_state_dict": sam_state, "clip_model": clip_state, "epoch": 10}


def test_released_checkpoint_reproduces_the_source_model(tmp_path, sam_input):
    source = build_model(TINY_REFERENCE, seed=7)
    source.fine_tuned = True
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = tmp_path / "released.pth"
    torch.save(_released_layout(source), path)
    imported = import_released_checkpoint(path, TINY_REFERENCE)
    assert imported.fine_tuned  # the authors' trained adapters are in use
    points = torch.tensor([[[100.0, 120.0], [30.0, 20.0]]] * 2)
    labels = torch.tensor([[1, 0]] * 2)
    with torch.no_grad():
        expected = source(sam_input, source.text_features(["nucleus"]), points, labels)
        actual = imported(sam_input, imported.text_features(["nucleus"]), points, labels)
    assert torch.equal(expected.similarity_map, actual.similarity_map)
    assert torch.equal(expected.low_res_logits, actual.low_res_logits)


def test_a_file_of_another_layout_is_refused(tmp_path):
    import pytest

    from napari_clip_guided_sam.model.weights import WeightsError

    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, path)
    with pytest.raises(WeightsError, match="model_state_dict"):
        import_released_checkpoint(path, TINY_REFERENCE)
