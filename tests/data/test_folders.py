"""Listing image folders and pairing images with label files by stem."""

import pytest

from napari_clip_guided_sam.data.folders import list_images, match_by_stem
from napari_clip_guided_sam.data.formats import image_stem


def test_list_images_sorted_supported_not_hidden(tmp_path):
    for name in ["b.png", "a.TIF", ".hidden.tif", "c.ome.tiff", "notes.txt", "d.jpeg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.tif").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.TIF", "b.png", "c.ome.tiff", "d.jpeg"]


def test_image_stem_ignores_ome():
    assert image_stem("x/a.ome.tif") == "a"
    assert image_stem("a.OME.TIFF") == "a"
    assert image_stem("a.b.png") == "a.b"


def test_match_by_stem_pairs_and_reports_unmatched(tmp_path):
    images, labels = tmp_path / "im", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    for name in ["a.png", "b.ome.tif", "c.png"]:
        (images / name).write_bytes(b"x")
    for name in ["a.tif", "b.tif", "z.tif"]:
        (labels / name).write_bytes(b"x")
    matches = match_by_stem(images, labels)
    assert [(i.name, lab.name) for i, lab in matches] == [
        ("a.png", "a.tif"),
        ("b.ome.tif", "b.tif"),
    ]
    assert [p.name for p in matches.unmatched_images] == ["c.png"]
    assert [p.name for p in matches.unmatched_labels] == ["z.tif"]


def test_match_by_stem_with_label_suffix(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "im" / "a.png").write_bytes(b"x")
    (tmp_path / "lab" / "a_labels.tif").write_bytes(b"x")
    assert len(match_by_stem(tmp_path / "im", tmp_path / "lab", label_suffix="_labels")) == 1


def test_match_by_stem_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "im" / "a.png").write_bytes(b"x")
    (tmp_path / "lab" / "b.tif").write_bytes(b"x")
    with pytest.raises(ValueError, match="no images in"):
        match_by_stem(tmp_path / "empty", tmp_path / "lab")
    with pytest.raises(ValueError, match="same name"):
        match_by_stem(tmp_path / "im", tmp_path / "lab")
    with pytest.raises(NotADirectoryError):
        match_by_stem(tmp_path / "nope", tmp_path / "lab")


def test_dsb_resources_pair_up(dsb_dir):
    matches = match_by_stem(dsb_dir / "images", dsb_dir / "labels")
    assert len(matches) == 3 and matches.unmatched == []
