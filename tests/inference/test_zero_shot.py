"""Zero-shot mode is the paper's "CLIP Surgery + SAM" baseline: segment-anything's own
SamPredictor, prompted with the project's similarity map, gives the same embedding and masks."""

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.model.attention import use_fused_attention
from napari_clip_guided_sam.model.checkpoint import save_checkpoint
from napari_clip_guided_sam.model.config import TINY_SAM
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.preprocess import prepare_image
from napari_clip_guided_sam.model.sam import build_sam

SIZE = TINY_SAM.image_size  # a square image of the input size: no resizing on either side


@pytest.fixture(scope="module")
def sam_file(tmp_path_factory):
    """Seeded random SAM weights in SAM's own checkpoint layout (a state-dict file)."""
    with torch.random.fork_rng():
        torch.manual_seed(11)
        sam = build_sam(TINY_SAM)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def reference(sam_file):
    """segment-anything's SamPredictor on a SAM loaded from the same file."""
    sam = build_sam(TINY_SAM)
    sam.load_state_dict(torch.load(sam_file, weights_only=True))
    return SamPredictor(sam.eval())


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)
    rgb[60:140, 80:200] = 210
    return rgb


def test_zero_shot_embedding_is_bit_identical_to_sam_predictor(sam_file, reference, image):
    model = build_model("tiny", sam_weights=sam_file, seed=0)
    assert model.zero_shot
    tensor, _ = prepare_image(image, SIZE)
    with torch.no_grad():
        guide = model.guidance(tensor[None], model.text_features(["nucleus", "cell"]))
        fused = model.encode_image(tensor[None], guide)
        use_fused_attention(model, False)  # segment-anything's own attention code
        ours = model.encode_image(tensor[None], guide)
    reference.set_image(image)
    assert torch.equal(ours[0], reference.features[0])
    assert torch.equal(ours[1], reference.features[0])  # every class: the same embedding
    # The default fused attention keeps the fidelity the model tests guarantee.
    torch.testing.assert_close(fused, ours, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("clicks", [False, True])
def test_zero_shot_masks_are_the_guide_composed_with_sam_predictor(
    sam_file, reference, image, clicks
):
    predictor = Predictor(build_model("tiny", sam_weights=sam_file), "cpu", "fp32")
    assert predictor.zero_shot
    points = np.array([[100.0, 90.0], [20.0, 230.0]]) if clicks else None
    labels = np.array([1, 0]) if clicks else None
    ours = predictor.segment(image, ["nucleus"], points, labels)

    model = predictor.model
    tensor, _ = prepare_image(image, SIZE)
    with torch.no_grad():
        maps = model.guidance(tensor[None], model.text_features(["nucleus"])).similarity_map[0]
        dense = model.dense_prompt(maps)
        coords, point_labels = model.sample_points(maps)
    if clicks:  # the user's clicks replace the sampled points (same frame: no resize)
        coords, point_labels = torch.from_numpy(points)[None], torch.from_numpy(labels)[None]
    reference.set_image(image)
    logits, _, _ = reference.predict(
        point_coords=coords[0].numpy(),
        point_labels=point_labels[0].numpy(),
        mask_input=dense[0].numpy(),
        multimask_output=False,
        return_logits=True,
    )
    expected = torch.sigmoid(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-5, rtol=0)
    assert (ours.probabilities > 0.5).any()


def test_provenance_says_zero_shot_or_fine_tuned(tmp_path):
    predictor = Predictor.from_preset("tiny", device="cpu")
    provenance = predictor.provenance()
    assert predictor.zero_shot
    assert provenance["adapters"] == "zero-shot (no fine-tuned adapters)"
    assert provenance["preset"] == "tiny" and provenance["checkpoint"] is None
    assert provenance["base_weights"]["sam"]["kind"] == "random"
    assert provenance["card"] is None and provenance["classes"] == []

    model = build_model("tiny")
    model.fine_tuned = True  # as after training
    features = model.text_features(["nucleus"])
    path = save_checkpoint(
        model, tmp_path / "m.safetensors", class_names=["nucleus"], text_features=features
    )
    loaded = Predictor.from_checkpoint(path, device="cpu")
    provenance = loaded.provenance()
    assert not loaded.zero_shot
    assert provenance["adapters"] == "fine-tuned adapters"
    assert provenance["checkpoint"] == str(path) and provenance["classes"] == ["nucleus"]
    assert provenance["card"]["classes"] == ["nucleus"] and provenance["card"]["preset"] == "tiny"


@pytest.mark.parametrize("text_guide", [False, True])
def test_zero_shot_box_prompts_are_sam_predictors(sam_file, reference, image, text_guide):
    from napari_clip_guided_sam.inference.objects import ObjectPrompt

    predictor = Predictor(build_model("tiny", sam_weights=sam_file), "cpu", "fp32")
    box, click = np.array([70.0, 50.0, 210.0, 150.0]), np.array([[100.0, 90.0]])
    prompt = ObjectPrompt(points=click, point_labels=[1], box=box)
    ours = predictor.segment_objects(
        image, "nucleus", [prompt], text_guide=text_guide, select=False
    )

    dense = None
    if text_guide:
        model = predictor.model
        tensor, _ = prepare_image(image, SIZE)
        with torch.no_grad():
            text = model.text_features(["nucleus"])
            dense = model.dense_prompt(model.guidance(tensor[None], text).similarity_map[0])[0]
    reference.set_image(image)
    logits, iou, _ = reference.predict(
        point_coords=click,
        point_labels=np.array([1]),
        box=box,
        mask_input=None if dense is None else dense.numpy(),
        multimask_output=False,
        return_logits=True,
    )
    expected = torch.sigmoid(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.iou_predictions, iou, atol=1e-5)
