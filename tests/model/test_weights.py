import dataclasses
import time

import pytest
import torch

from napari_clip_guided_sam.model import weights
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.guide import build_clip
from napari_clip_guided_sam.model.sam import build_sam


def test_official_format_vit_b_loads_through_the_users_path(tmp_path, monkeypatch):
    """Random vit_b SAM and ViT-B/16 CLIP saved as the official files, found in the cache."""
    from napari_clip_guided_sam.model.config import get_preset

    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    config = get_preset("paper")
    with torch.random.fork_rng():
        torch.manual_seed(123)
        sam, clip = build_sam(config.sam), build_clip(config.clip)
    torch.save(sam.state_dict(), tmp_path / "sam_vit_b_01ec64.pth")
    openai_state = dict(clip.state_dict())
    openai_state.update(
        input_resolution=torch.tensor(224),
        context_length=torch.tensor(77),
        vocab_size=torch.tensor(49408),
    )
    torch.save(openai_state, tmp_path / "ViT-B-16.pt")
    del clip

    model = build_model("paper")  # seed 0: differs from the saved weights unless they load

    assert model.base_weights == "official"
    for key in ("image_encoder.blocks.3.attn.qkv.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(model.sam.state_dict()[key], sam.state_dict()[key])
    loaded_pos = model.guide.clip.visual.positional_embedding
    assert loaded_pos.shape == (1 + 32 * 32, 768)  # resized after the strict load
    assert torch.equal(
        model.guide.clip.token_embedding.weight, openai_state["token_embedding.weight"]
    )


def test_missing_weights_offline_fail_fast_naming_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(weights, "network_available", lambda url, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(weights.WeightsError) as error:
        weights.fetch(weights.SAM_WEIGHTS["vit_b"])
    assert time.perf_counter() - start < 1
    message = str(error.value)
    assert "sam_vit_b_01ec64.pth" in message and str(tmp_path) in message
    assert weights.SAM_WEIGHTS["vit_b"].url in message


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
