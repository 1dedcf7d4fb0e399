"""TorchScript archives: tensors are read without running code; unknown archives are refused."""

import warnings

import pytest
import torch
from conftest import write_marker_archive

from napari_clip_guided_sam.model import weights
from napari_clip_guided_sam.model.config import TINY_CLIP
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.file_hashes import sha256_file
from napari_clip_guided_sam.model.guide import build_clip
from napari_clip_guided_sam.model.torchscript import TorchScriptError, read_torchscript_tensors


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.block = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
        self.register_buffer("steps", torch.arange(4))
        self.scale = torch.nn.Parameter(torch.randn(3).half())
        self.shared = self.linear.weight  # one storage, two names

    def forward(self, x):
        return self.block(self.linear(x)) + self.steps[:2] + self.scale[:2]


def _quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script/trace are deprecated
        return function(*args, **kwargs)


def _assert_state_equal(tensors, module):
    state = module.state_dict()
    assert set(state) <= set(tensors)
    for key, value in state.items():
        assert tensors[key].dtype == value.dtype, key
        assert torch.equal(tensors[key], value), key


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_reader_gives_the_state_dict_of_scripted_and_traced_modules(tmp_path, kind):
    module = Small()
    if kind == "script":
        compiled = _quietly(torch.jit.script, module)
    else:
        compiled = _quietly(torch.jit.trace, module, torch.randn(1, 3))
    compiled.save(str(tmp_path / "m.pt"))
    tensors = read_torchscript_tensors(tmp_path / "m.pt")
    _assert_state_equal(tensors, module)
    assert torch.equal(tensors["shared"], tensors["linear.weight"])


def _traced_tiny_clip(path):
    with torch.random.fork_rng():
        torch.manual_seed(3)
        clip = build_clip(TINY_CLIP).eval()
    image, text = torch.randn(1, 3, 64, 64), torch.randint(0, 49408, (1, 77))
    # OpenAI's files are traced models; the trace's own re-run check is not the point here.
    _quietly(torch.jit.trace, clip, (image, text), check_trace=False).save(str(path))
    return clip


def test_reader_takes_the_tiny_clip_apart_like_its_state_dict(tmp_path):
    clip = _traced_tiny_clip(tmp_path / "clip.pt")
    _assert_state_equal(read_torchscript_tensors(tmp_path / "clip.pt"), clip)


def test_an_official_clip_archive_loads_by_its_sha256(tmp_path, monkeypatch):
    """An archive whose sha256 is registered as an official CLIP file goes through the
    code-free reader into the model; the same archive unregistered is refused."""
    archive = tmp_path / "clip.pt"
    source = _traced_tiny_clip(archive)
    target = build_clip(TINY_CLIP)
    with pytest.raises(weights.WeightsError, match="TorchScript archive"):
        weights.load_clip_weights(target, "tiny", archive)
    registered = weights.WeightFile("clip.pt", "https://example.org/clip.pt", sha256_file(archive))
    monkeypatch.setitem(weights.CLIP_WEIGHTS, "tiny", registered)
    weights.load_clip_weights(target, "tiny", archive)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_a_damaged_archive_is_a_clear_error(tmp_path):
    module = _quietly(torch.jit.script, Small())
    module.save(str(tmp_path / "m.pt"))
    import zipfile

    with (
        zipfile.ZipFile(tmp_path / "m.pt") as source,
        zipfile.ZipFile(tmp_path / "cut.pt", "w") as cut,
    ):
        for item in source.infolist():
            if not item.filename.endswith("data/0"):  # a storage goes missing
                cut.writestr(item, source.read(item.filename))
    with pytest.raises(TorchScriptError, match="missing"):
        read_torchscript_tensors(tmp_path / "cut.pt")


def test_the_marker_archive_runs_code_under_torch_jit_load(tmp_path):
    """The malicious test file is live: torch.jit.load creates its marker (so the tests
    that assert the marker never appears can fail)."""
    archive, marker = write_marker_archive(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(archive))
    assert marker.exists()


def test_reading_the_marker_archive_runs_nothing(marker_archive):
    archive, marker = marker_archive
    tensors = read_torchscript_tensors(archive)
    assert set(tensors) == {"linear.weight", "linear.bias"}
    assert not marker.exists()


def test_torch_load_weights_only_never_dispatches_to_jit(marker_archive):
    archive, marker = marker_archive
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="weights_only"):
            torch.load(archive, weights_only=True)
    assert not marker.exists()


def test_unknown_archives_are_refused_with_what_to_convert_to(marker_archive, tmp_path):
    archive, marker = marker_archive
    with pytest.raises(weights.WeightsError, match="TorchScript") as error:
        weights.load_tensor_file(archive)
    assert "safetensors" in str(error.value)
    for role in ("sam_weights", "clip_weights"):  # the user's own base weights
        with pytest.raises(weights.WeightsError, match="TorchScript"):
            build_model("tiny", **{role: archive})
    assert not marker.exists()


def test_an_archive_placed_in_the_cache_is_checked_before_use(marker_archive, tmp_path):
    archive, marker = marker_archive
    cached = tmp_path / "ViT-B-16.pt"
    cached.write_bytes(archive.read_bytes())
    with pytest.raises(weights.WeightsError, match="not the official ViT-B-16.pt") as error:
        weights.fetch(weights.CLIP_WEIGHTS["ViT-B-16"], tmp_path)
    assert sha256_file(cached) in str(error.value)
    assert weights.CLIP_WEIGHTS["ViT-B-16"].sha256 in str(error.value)
    assert not marker.exists()
