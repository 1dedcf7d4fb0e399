"""The interactive predictor: caching, decoder-only refresh, multi-class labels, bad input."""

import threading
import time

import numpy as np
import pytest
import torch

from napari_clip_guided_sam.inference.predictions import InferenceMemoryError
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.model.checkpoint import CheckpointError, save_checkpoint
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.preprocess import prepare_image


@pytest.fixture(scope="module")
def shared_model():
    """One tiny model for the module (building is cheap, its text cache is not free)."""
    return build_model("tiny", seed=0)


@pytest.fixture
def predictor(shared_model):
    """A fresh fp32 predictor (empty caches) on the shared model; guide options restored."""
    config = shared_model.config
    yield Predictor(shared_model, device="cpu", precision="fp32")
    shared_model.config = config


@pytest.fixture
def encoder_runs(shared_model, monkeypatch):
    """Counts real forward passes of SAM's image encoder (independent of the stats)."""
    runs = []
    encoder = shared_model.sam.image_encoder
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda x: runs.append(x.shape[0]) or original(x))
    return runs


def test_text_only_prediction_matches_the_model_forward(predictor, shared_model, rgb_image):
    prediction = predictor.segment(rgb_image, ["nucleus"])
    tensor, frame = prepare_image(rgb_image, shared_model.config.sam.image_size)
    with torch.no_grad():
        text = shared_model.text_features(["nucleus"])
        output = shared_model(tensor[None], text)
    expected = torch.sigmoid(frame.logits_to_original(output.low_res_logits[0])).numpy()
    assert prediction.probabilities.shape == (1, 96, 128)
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)
    assert prediction.labels.dtype == np.int32
    np.testing.assert_array_equal(prediction.labels, (expected[0] > 0.5).astype(np.int32))


def test_multi_class_labels_take_the_most_probable_class_above_threshold(predictor, rgb_image):
    prediction = predictor.segment(rgb_image, ["nucleus", "cell", "membrane"])
    probabilities = prediction.probabilities
    assert probabilities.shape == prediction.similarity_maps.shape == (3, 96, 128)
    assert prediction.iou_predictions.shape == (3,)
    expected = np.where(probabilities.max(0) > 0.5, probabilities.argmax(0) + 1, 0)
    np.testing.assert_array_equal(prediction.labels, expected)
    assert prediction.similarity_maps.min() >= 0 and prediction.similarity_maps.max() <= 1


def test_a_click_reruns_only_the_decoder(predictor, rgb_image, encoder_runs):
    predictor.segment(rgb_image, ["nucleus", "cell"])
    assert predictor.stats.encoder_calls == 2 and sum(encoder_runs) == 2
    clicks = predictor.predict(["nucleus", "cell"], np.array([[60.0, 30.0]]), np.array([1]))
    moved = predictor.predict(["nucleus", "cell"], np.array([[10.0, 80.0]]), np.array([0]))
    assert sum(encoder_runs) == 2 and predictor.stats.encoder_calls == 2
    assert predictor.stats.clip_calls == 1 and predictor.stats.decoder_calls == 6
    assert not np.allclose(clicks.probabilities, moved.probabilities)


def test_caches_are_keyed_by_image_and_class(predictor, rgb_image, encoder_runs):
    predictor.segment(rgb_image, ["nucleus"])
    predictor.segment(rgb_image.copy(), ["nucleus", "cell"])  # same pixels: same key
    assert sum(encoder_runs) == 2 and predictor.stats.clip_calls == 1
    assert predictor.stats.text_calls == 2
    predictor.segment(255 - rgb_image, ["nucleus"])
    assert sum(encoder_runs) == 3 and predictor.stats.clip_calls == 2


def test_guide_options_change_prompts_not_embeddings(predictor, shared_model, rgb_image):
    predictor.segment(rgb_image, ["nucleus"])
    predictor.set_guide_options(threshold=0.6, n_points=2)
    assert shared_model.config.guide.threshold == 0.6
    assert shared_model.config.guide.n_points == 2
    assert predictor.has_embeddings(["nucleus"])
    predictor.predict(["nucleus"])
    assert predictor.stats.encoder_calls == 1
    with pytest.raises(ValueError, match="threshold"):
        predictor.set_guide_options(threshold=1.5)


def test_embedding_cache_is_bounded(shared_model, rgb_image):
    predictor = Predictor(shared_model, device="cpu", precision="fp32", cache_size=2)
    prediction = predictor.segment(rgb_image, ["a", "b", "c"])
    assert prediction.probabilities.shape[0] == 3
    assert len(predictor._embeddings) == 2


def test_closed_set_features_skip_the_text_tower_and_unknown_names_warn(shared_model, rgb_image):
    with torch.no_grad():
        feature = shared_model.text_features(["nucleus"])[0]
    predictor = Predictor(shared_model, "cpu", "fp32", class_text_features={"nucleus": feature})
    predictor.segment(rgb_image, ["nucleus"])
    assert predictor.stats.text_calls == 0
    with pytest.warns(UserWarning, match="'mitochondrion' not among the classes"):
        predictor.predict(["mitochondrion"])
    assert predictor.stats.text_calls == 1


def test_from_preset_loads_a_checkpoint_and_refuses_another_architecture(tmp_path, shared_model):
    features = torch.randn(1, shared_model.guide.embed_dim)
    path = save_checkpoint(
        shared_model, tmp_path / "tiny.safetensors", class_names=["nucleus"], text_features=features
    )
    predictor = Predictor.from_preset("tiny", checkpoint=path, device="cpu")
    assert predictor.closed_set_classes == ["nucleus"]
    with pytest.raises(CheckpointError, match="choose preset 'tiny'"):
        Predictor.from_preset("paper", checkpoint=path, device="cpu")


@pytest.mark.parametrize(
    ("names", "error"),
    [([], "No class name"), (["  "], "whitespace"), (["cell", "cell "], "given twice")],
)
def test_bad_class_names_are_clear_errors(predictor, rgb_image, names, error):
    predictor.set_image(rgb_image)
    with pytest.raises(ValueError, match=error):
        predictor.predict(names)


def test_bad_points_and_missing_image_are_clear_errors(predictor, rgb_image):
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(["nucleus"])
    predictor.set_image(rgb_image)
    with pytest.raises(ValueError, match="outside the image"):
        predictor.predict(["nucleus"], np.array([[500.0, 10.0]]), np.array([1]))
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict(["nucleus"], np.array([[5.0, 10.0]]))
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(rgb_image.astype(np.float32))


def test_out_of_memory_becomes_an_actionable_error(predictor, shared_model, rgb_image, monkeypatch):
    def exhausted(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(shared_model, "encode_image", exhausted)
    predictor.set_image(rgb_image)
    with pytest.raises(InferenceMemoryError, match="fewer classes"):
        predictor.predict(["nucleus", "cell"])


def test_batched_encoding_gives_the_same_masks(shared_model, rgb_image):
    names = ["nucleus", "cell", "membrane"]
    one = Predictor(shared_model, "cpu", "fp32", encoder_batch_size=1).segment(rgb_image, names)
    batched = Predictor(shared_model, "cpu", "fp32", encoder_batch_size=2)
    threads = torch.get_num_threads()
    two = batched.segment(rgb_image, names)
    assert torch.get_num_threads() == threads  # the decoder's thread setting is restored
    np.testing.assert_allclose(one.probabilities, two.probabilities, atol=1e-4)


def test_a_new_class_on_a_cached_image_runs_only_the_adapted_blocks(rgb_image):
    """With adapters in the last blocks, the frozen ones run once per image."""
    from napari_clip_guided_sam.model.config import get_preset, with_compute_choices

    config = with_compute_choices(get_preset("tiny"), adapter_blocks=2)
    model = build_model(config, seed=0)
    model.fine_tuned = True
    predictor = Predictor(model, device="cpu", precision="fp32")
    runs = [0] * 4
    for index, block in enumerate(model.sam.image_encoder.blocks):
        block.register_forward_hook(lambda *_, i=index: runs.__setitem__(i, runs[i] + 1))
    first = predictor.segment(rgb_image, ["nucleus"])
    assert runs == [1, 1, 1, 1]
    second = predictor.predict(["nucleus", "cell"])
    assert runs == [1, 1, 2, 2]  # the new class: blocks 2 and 3 only
    np.testing.assert_array_equal(second.probabilities[0], first.probabilities[0])

    uncached = build_model(config, seed=0)
    uncached.fine_tuned = True
    tensor, frame = prepare_image(rgb_image, config.sam.image_size)
    for index, name in enumerate(["nucleus", "cell"]):  # the predictor's points: per class
        with torch.no_grad():
            output = uncached(tensor[None], uncached.text_features([name]))
        expected = torch.sigmoid(frame.logits_to_original(output.low_res_logits[0, 0]))
        np.testing.assert_allclose(second.probabilities[index], expected.numpy(), atol=1e-6)
    predictor.clear_cache()
    assert len(model.prefix_cache) == 0


def test_a_segmentation_waits_for_the_unit_of_work_running_in_another_thread(
    predictor, rgb_image, encoder_runs
):
    # Inside napari a preview must not fight a training step for the cores: it waits for
    # the step (any holder of the process's compute lane) and then runs.
    from napari_clip_guided_sam.model.compute_lane import COMPUTE_LANE

    holding, release, results = threading.Event(), threading.Event(), []

    def training_step():
        with COMPUTE_LANE.unit():
            holding.set()
            release.wait()

    step = threading.Thread(target=training_step)
    step.start()
    holding.wait()
    preview = threading.Thread(
        target=lambda: results.append(predictor.segment(rgb_image, ["nucleus"]))
    )
    preview.start()
    deadline = time.monotonic() + 30
    while COMPUTE_LANE.waiting < 1:
        assert time.monotonic() < deadline, "the preview never asked for the lane"
        time.sleep(0.005)
    assert encoder_runs == [] and results == []
    release.set()
    step.join()
    preview.join()
    assert encoder_runs and results[0].labels.shape == (96, 128)
    assert not COMPUTE_LANE.busy
