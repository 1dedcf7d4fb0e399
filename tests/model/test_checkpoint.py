import json

import pytest
import torch
from safetensors.torch import save_file

from napari_clip_guided_sam.model.checkpoint import (
    CheckpointError,
    apply_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.factory import build_model


def _perturb_trainable(model):
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def test_save_load_round_trip_gives_identical_outputs(tmp_path, tiny_model, sam_input):
    _perturb_trainable(tiny_model)
    text = tiny_model.text_features(["nucleus"])
    path = save_checkpoint(
        tiny_model,
        tmp_path / "model.safetensors",
        class_names=["nucleus"],
        text_features=text,
        metadata={"epoch": 3},
    )
    loaded, checkpoint = load_model(path)
    assert checkpoint.class_names == ["nucleus"] and checkpoint.metadata == {"epoch": 3}
    torch.testing.assert_close(checkpoint.text_features, text.detach())
    with torch.no_grad():
        expected = tiny_model(sam_input, text)
        actual = loaded(sam_input, loaded.text_features(["nucleus"]))
    assert torch.equal(expected.low_res_logits, actual.low_res_logits)
    assert torch.equal(expected.similarity_map, actual.similarity_map)


def test_checkpoint_holds_only_trained_tensors(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    checkpoint = read_checkpoint(path)
    assert not any(k.startswith("sam.image_encoder.") for k in checkpoint.tensors)
    assert any(k.startswith("adapters.") for k in checkpoint.tensors)
    assert "guide.clip.token_embedding.weight" not in checkpoint.tensors


def test_existing_file_is_kept_unless_overwrite(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        save_checkpoint(tiny_model, path, overwrite=False)
    assert path.read_text() == "precious"


def test_failed_save_leaves_no_partial_file(tmp_path, tiny_model, monkeypatch):
    import napari_clip_guided_sam.model.checkpoint as module

    def exploding_save(tensors, filename, metadata):
        with open(filename, "wb") as handle:
            handle.write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(module, "save_file", exploding_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_foreign_files_are_refused(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        read_checkpoint(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a napari-clip-guided-sam checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_checkpoint_of_another_architecture_is_refused(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    other = build_model(get_preset("tiny").replace(name="tiny2", **{"adapters.mlp_ratio": 0.5}))
    with pytest.raises(CheckpointError, match="different architecture"):
        apply_checkpoint(other, read_checkpoint(path))


def test_missing_keys_are_reported(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    checkpoint = read_checkpoint(path)
    del checkpoint.tensors["adapters.0.regular.fc1.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        apply_checkpoint(build_model("tiny"), checkpoint)


def test_header_is_plain_json(tmp_path, tiny_model):
    from safetensors import safe_open

    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", class_names=["a", "b"])
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    assert json.loads(header["class_names"]) == ["a", "b"]
    assert json.loads(header["config"])["name"] == "tiny"


def test_checkpoint_from_before_the_text_gradient_field_loads(tmp_path, sam_input):
    # Before: `tiny` trained the text positional embedding (through the class feature) and
    # the config had no `text_gradient`.
    from safetensors import safe_open

    from napari_clip_guided_sam.model.checkpoint import same_architecture

    before = get_preset("tiny").replace(
        **{"trainable.text_positional_embedding": True, "guide.text_gradient": "class"}
    )
    trained = build_model(before)
    _perturb_trainable(trained)
    path = save_checkpoint(trained, tmp_path / "old.safetensors", class_names=["nucleus"])
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    config = json.loads(header["config"])
    del config["guide"]["text_gradient"]
    header["config"] = json.dumps(config)
    save_file(read_checkpoint(path).tensors, str(path), metadata=header)

    checkpoint = read_checkpoint(path)
    assert checkpoint.config == before
    assert same_architecture(checkpoint.config, get_preset("tiny"))  # segments as `tiny`
    loaded, _ = load_model(path)
    today = build_model("tiny")
    apply_checkpoint(today, checkpoint)
    with torch.no_grad():
        expected = trained(sam_input, trained.text_features(["nucleus"]))
        for model in (loaded, today):
            actual = model(sam_input, model.text_features(["nucleus"]))
            assert torch.equal(expected.low_res_logits, actual.low_res_logits)


@pytest.fixture
def custom_sam(tmp_path):
    """The user's own SAM base for `tiny`: seeded random weights in SAM's layout."""
    from napari_clip_guided_sam.model.config import TINY_SAM
    from napari_clip_guided_sam.model.sam import build_sam

    def write(name, seed):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            state = build_sam(TINY_SAM).state_dict()
        torch.save(state, tmp_path / name)
        return tmp_path / name

    return write


def test_a_checkpoint_on_a_custom_base_needs_that_file(tmp_path, custom_sam, sam_input):
    from napari_clip_guided_sam.model.base_weights import BaseMismatchError

    mine = custom_sam("microscopy_sam.pth", seed=1)
    model = build_model("tiny", sam_weights=mine)
    assert model.base.sam.kind == "custom" and model.base.sam.file == "microscopy_sam.pth"
    model.fine_tuned = True
    _perturb_trainable(model)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    checkpoint = read_checkpoint(path)
    assert checkpoint.base == model.base and checkpoint.base_weights == "custom"
    assert checkpoint.card.base_weights["sam"]["sha256"] == model.base.sam.sha256

    with pytest.raises(BaseMismatchError, match="microscopy_sam.pth") as error:
        load_model(path)  # the other base must never silently stand in
    assert model.base.sam.sha256 in str(error.value) and "--sam-weights" in str(error.value)
    with pytest.raises(BaseMismatchError, match="Give microscopy_sam.pth"):
        load_model(path, sam_weights=custom_sam("other.pth", seed=2))
    renamed = tmp_path / "copy.pth"
    renamed.write_bytes(mine.read_bytes())
    loaded, _ = load_model(path, sam_weights=renamed)  # same content, any name
    text = model.text_features(["nucleus"])
    with torch.no_grad():
        expected = model(sam_input, text).low_res_logits
        actual = loaded(sam_input, loaded.text_features(["nucleus"])).low_res_logits
    assert torch.equal(expected, actual)


def test_a_checkpoint_on_random_or_official_weights_refuses_a_base_file(
    tmp_path, tiny_model, custom_sam
):
    from napari_clip_guided_sam.model.base_weights import BaseMismatchError

    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    with pytest.raises(BaseMismatchError, match="Leave out --sam-weights"):
        load_model(path, sam_weights=custom_sam("sam.pth", seed=1))


def test_checkpoints_without_card_or_base_record_stay_readable(tmp_path, tiny_model):
    """A checkpoint written before cards, base records and the zero-shot flag existed."""
    from safetensors import safe_open

    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", class_names=["nucleus"])
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    kept = ("format", "format_version", "class_names", "base_weights", "metadata")
    old = {key: header[key] for key in kept}
    config = json.loads(header["config"])
    del config["adapters"]["init"]  # configs had no adapter init then
    old["config"] = json.dumps(config)
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    checkpoint = read_checkpoint(tmp_path / "old.safetensors")
    assert checkpoint.card is None and checkpoint.fine_tuned
    assert checkpoint.base == tiny_model.base  # from the "random:0" tag
    model, _ = load_model(tmp_path / "old.safetensors")
    assert model.fine_tuned and model.config.adapters.init == "released"


def test_the_zero_shot_state_survives_a_round_trip(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    assert not read_checkpoint(path).fine_tuned
    assert load_model(path)[0].zero_shot
    assert read_checkpoint(path).card.adapters == "zero-shot (no fine-tuned adapters)"
