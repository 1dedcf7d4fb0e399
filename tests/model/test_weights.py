import dataclasses
import json

import pytest
import torch

from napari_clip_guided_sam.model import weights
from napari_clip_guided_sam.model.base_weights import BaseSource
from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.file_hashes import sha256_file
from napari_clip_guided_sam.model.guide import build_clip
from napari_clip_guided_sam.model.sam import build_sam


@pytest.fixture(scope="module")
def random_official_format(tmp_path_factory):
    """Seeded random vit_b SAM and ViT-B/16 CLIP saved in the official files' layouts
    (SAM's state dict; OpenAI's CLIP keys and extras, as plain tensors) and names."""
    config = get_preset("paper")
    with torch.random.fork_rng():
        torch.manual_seed(123)
        sam, clip = build_sam(config.sam), build_clip(config.clip)
    folder = tmp_path_factory.mktemp("stand_ins")
    torch.save(sam.state_dict(), folder / "sam_vit_b_01ec64.pth")
    openai_state = dict(clip.state_dict())
    openai_state.update(
        input_resolution=torch.tensor(224),
        context_length=torch.tensor(77),
        vocab_size=torch.tensor(49408),
    )
    torch.save(openai_state, folder / "ViT-B-16.pt")
    return folder, sam.state_dict(), openai_state


def test_stand_ins_in_the_weights_folder_are_refused_naming_both_hashes(
    random_official_format, monkeypatch
):
    folder, _, _ = random_official_format
    monkeypatch.setenv(weights.CACHE_ENV, str(folder))
    with pytest.raises(weights.WeightsError, match="not the official sam_vit_b_01ec64.pth") as e:
        build_model("paper")
    message = str(e.value)
    assert weights.SAM_WEIGHTS["vit_b"].sha256 in message
    assert sha256_file(folder / "sam_vit_b_01ec64.pth") in message
    assert "--sam-weights" in message


def test_stand_ins_load_as_custom_base_weights(random_official_format):
    folder, sam_state, openai_state = random_official_format
    sam_file, clip_file = folder / "sam_vit_b_01ec64.pth", folder / "ViT-B-16.pt"
    model = build_model("paper", sam_weights=sam_file, clip_weights=clip_file)

    assert model.base_weights == "custom"
    assert model.base.sam == BaseSource("custom", sam_file.name, sha256_file(sam_file))
    assert model.base.clip == BaseSource("custom", clip_file.name, sha256_file(clip_file))
    assert model.zero_shot
    for key in ("image_encoder.blocks.3.attn.qkv.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(model.sam.state_dict()[key], sam_state[key])
    loaded_pos = model.guide.clip.visual.positional_embedding
    assert loaded_pos.shape == (1 + 32 * 32, 768)  # resized after the strict load
    assert torch.equal(
        model.guide.clip.token_embedding.weight, openai_state["token_embedding.weight"]
    )


def test_missing_weights_offline_list_every_file_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    probes = []
    monkeypatch.setattr(
        weights, "network_available", lambda url, timeout=3.0: probes.append(url) or False
    )
    with pytest.raises(weights.MissingWeightsError) as error:
        build_model("paper")
    assert len(probes) <= 1  # one look at the network, not one timeout per file
    assert [file.filename for file in error.value.missing] == [
        "sam_vit_b_01ec64.pth",
        "ViT-B-16.pt",
    ]
    assert error.value.directory == tmp_path
    message = str(error.value)
    for file in (weights.SAM_WEIGHTS["vit_b"], weights.CLIP_WEIGHTS["ViT-B-16"]):
        assert file.filename in message and file.url in message and file.sha256 in message
    assert str(tmp_path) in message and "clip-guided-sam weights fetch" in message
    assert "tiny" in message


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path):
    from napari_clip_guided_sam.model.file_hashes import remembered_sha256

    path, record = tmp_path / "w.pth", tmp_path / ".record.json"
    path.write_bytes(b"weights")
    assert remembered_sha256(path, record) == sha256_file(path)
    # The record is trusted while size and modification time are unchanged...
    entries = json.loads(record.read_text())
    entries[str(path.resolve())]["sha256"] = "remembered"
    record.write_text(json.dumps(entries))
    assert remembered_sha256(path, record) == "remembered"
    assert remembered_sha256(path, record, rehash=True) == sha256_file(path)
    # ...and a changed file is hashed again.
    record.write_text(json.dumps(entries))
    path.write_bytes(b"other weights")
    assert remembered_sha256(path, record) == sha256_file(path)


def test_verify_sorts_the_folder_into_official_wrong_unknown_and_missing(tmp_path, monkeypatch):
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"the official bytes")
    (tmp_path / "ViT-B-16.pt").write_bytes(b"something else")
    (tmp_path / "notes.txt").write_text("mine")
    official = dataclasses.replace(
        weights.SAM_WEIGHTS["vit_b"], sha256=sha256_file(tmp_path / "sam_vit_b_01ec64.pth")
    )
    monkeypatch.setitem(weights.SAM_WEIGHTS, "vit_b", official)
    status = {result.name: result.status for result in weights.verify_directory(tmp_path)}
    assert status["sam_vit_b_01ec64.pth"] == "official"
    assert status["ViT-B-16.pt"] == "WRONG HASH"
    assert status["notes.txt"] == "not in the registry"
    assert status["sam_vit_h_4b8939.pth"] == "missing"


def test_wrong_architecture_weights_are_refused(tmp_path):
    from napari_clip_guided_sam.model.config import TINY_SAM

    path = tmp_path / "tiny.pth"
    torch.save(build_sam(TINY_SAM).state_dict(), path)
    target = build_sam(dataclasses.replace(TINY_SAM, encoder_embed_dim=32))
    with pytest.raises(weights.WeightsError, match="shape mismatch"):
        weights.load_sam_weights(target, "x", path)


def test_corrupt_and_pickled_files_are_refused(tmp_path):
    from napari_clip_guided_sam.model.config import TINY_SAM

    sam = build_sam(TINY_SAM)
    good = tmp_path / "good.pth"
    torch.save(sam.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(weights.WeightsError, match="corrupt or truncated"):
        weights.load_sam_weights(sam, "tiny", truncated)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": _Arbitrary()}, pickled)
    with pytest.raises(weights.WeightsError, match="safely|corrupt"):
        weights.load_sam_weights(sam, "tiny", pickled)
    with pytest.raises(FileNotFoundError):
        weights.load_sam_weights(sam, "tiny", tmp_path / "nope.pth")


class _Arbitrary:
    """Not a tensor: `torch.load(weights_only=True)` must refuse to build it."""
