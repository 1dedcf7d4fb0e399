import pytest
import torch

from napari_clip_guided_sam.model.trainable import trainable_parameter_names


def test_text_only_forward_shapes_and_ranges(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus", "cell", "membrane"])
    with torch.no_grad():
        out = tiny_model(sam_input, text)
    assert out.low_res_logits.shape == (2, 3, 64, 64)
    assert out.iou_predictions.shape == (2, 3)
    assert out.similarity_map.shape == (2, 3, 256, 256)
    assert out.point_coords.shape == (2, 3, 5, 2) and (out.point_labels == 1).all()
    assert torch.isfinite(out.low_res_logits).all()
    assert out.point_coords.min() >= 0 and out.point_coords.max() < 256


def test_text_only_inference_repeats_exactly(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus"])
    with torch.no_grad():
        first, second = tiny_model(sam_input, text), tiny_model(sam_input, text)
    assert torch.equal(first.point_coords, second.point_coords)
    assert torch.equal(first.low_res_logits, second.low_res_logits)


def test_batched_images_and_classes_equal_single_runs(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus", "cell"])
    points = torch.tensor([[[30.0, 40.0], [200.0, 100.0]]]).repeat(2, 1, 1)
    labels = torch.tensor([[1, 0]]).repeat(2, 1)
    with torch.no_grad():
        batched = tiny_model(sam_input, text, points, labels)
        single = tiny_model(sam_input[1:], text[1:], points[1:], labels[1:])
    torch.testing.assert_close(
        batched.low_res_logits[1, 1], single.low_res_logits[0, 0], atol=1e-4, rtol=1e-4
    )


def test_manual_points_steer_the_mask(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus"])
    labels = torch.ones(2, 1, dtype=torch.long)
    with torch.no_grad():
        left = tiny_model(sam_input, text, torch.tensor([[[10.0, 10.0]]] * 2), labels)
        right = tiny_model(sam_input, text, torch.tensor([[[240.0, 240.0]]] * 2), labels)
    assert left.point_coords[0, 0].tolist() == [[10.0, 10.0]]
    assert not torch.allclose(left.low_res_logits, right.low_res_logits)


def test_mismatched_points_are_refused(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus"])
    with pytest.raises(ValueError, match="point_labels"):
        tiny_model(sam_input, text, torch.zeros(2, 3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="images"):
        tiny_model(sam_input, text, torch.zeros(3, 1, 2), torch.zeros(3, 1))


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_reference_model"])
def test_gradients_reach_exactly_the_trainable_set(fixture, request, sam_input):
    model = request.getfixturevalue(fixture)
    model.fine_tuned = True  # as the training engine sets it
    model.train()
    text = model.text_features(["nucleus"])
    out = model(sam_input[:1], text)
    (out.low_res_logits.sigmoid().mean() + out.iou_predictions.mean()).backward()
    with_grad = {
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    trainable = set(trainable_parameter_names(model))
    requires = {n for n, p in model.named_parameters() if p.requires_grad}
    assert requires == trainable
    assert with_grad <= trainable
    # Every trainable group receives gradient, CLIP included (through the injected features).
    # The text positional embedding trains only in the reference setting (the paper freezes
    # the text encoder).
    text_trains = fixture == "tiny_reference_model"
    assert ("guide.clip.positional_embedding" in trainable) == text_trains
    groups = ["adapters.", "sam.mask_decoder.", "guide.clip.visual.transformer.resblocks."]
    for prefix in groups + ["guide.clip.positional_embedding"] * text_trains:
        assert any(n.startswith(prefix) for n in with_grad), prefix
    frozen = ("sam.image_encoder.", "guide.clip.transformer.", "guide.clip.token_embedding")
    assert not any(n.startswith(frozen) for n in trainable)
    assert not any(".mlp." in n for n in trainable if n.startswith("guide.clip"))


def test_trainable_clip_blocks_are_configurable():
    from napari_clip_guided_sam.model.config import get_preset
    from napari_clip_guided_sam.model.factory import build_model

    model = build_model(get_preset("tiny").replace(**{"trainable.clip_attention_blocks": 1}))
    clip_attention = {n for n in trainable_parameter_names(model) if ".attn." in n}
    assert clip_attention and all(".resblocks.3." in n for n in clip_attention)


def test_wrong_image_tensors_and_points_outside_the_frame_are_refused(tiny_model, sam_input):
    text = tiny_model.text_features(["nucleus"])
    with pytest.raises(ValueError, match=r"\[B, 3, 256, 256\]"):
        tiny_model(torch.zeros(1, 3, 100, 100), text)
    with pytest.raises(ValueError, match="float"):
        tiny_model(torch.zeros(1, 3, 256, 256, dtype=torch.uint8), text)
    with pytest.raises(ValueError, match="inside the 256x256"):
        tiny_model(sam_input, text, torch.full((2, 1, 2), 300.0), torch.ones(2, 1))


def test_boxes_and_no_dense_prompt_reach_the_decoder(tiny_model, sam_input):
    with torch.no_grad():
        guide = tiny_model.guidance(sam_input[:1], tiny_model.text_features(["cell"]))
        embeddings = tiny_model.encode_image(sam_input[:1], guide)
        dense = tiny_model.dense_prompt(guide.similarity_map[0])
        plain, _ = tiny_model.decode(embeddings, dense, None, None)
        boxed, _ = tiny_model.decode(
            embeddings, dense, None, None, torch.tensor([[8.0, 8, 90, 60]])
        )
        bare, _ = tiny_model.decode(embeddings, None, None, None, torch.tensor([[8.0, 8, 90, 60]]))
    assert not torch.allclose(plain, boxed) and not torch.allclose(boxed, bare)
    size = tiny_model.config.sam.image_size
    for box, message in (
        ([[0.0, 0.0, size + 1.0, 10.0]], "inside"),
        ([[5.0, 0.0, 5.0, 10.0]], "x0 < x1"),
        ([[0.0, 0.0, float("nan"), 10.0]], "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_model.decode(embeddings, dense, None, None, torch.tensor(box))


def test_a_mask_prompt_has_the_form_of_the_text_prompt(tiny_model):
    size = tiny_model.config.sam.image_size
    masks = torch.zeros(1, size, size)
    masks[:, : size // 2] = 1.0
    prompt = tiny_model.mask_prompt(masks)
    low = tiny_model.config.sam.low_res_size
    assert prompt.shape == (1, 1, low, low)
    assert set(prompt.unique().tolist()) == {0.0, tiny_model.config.guide.dense_prompt_scale}
    assert prompt[0, 0, : low // 2].min() > 0 and prompt[0, 0, low // 2 :].max() == 0
