"""Bad images through `clip-guided-sam segment` and the Python API.

Defects of issue 9 pinned here: 4 (a file name that is not UTF-8 stopped a folder run and no
report was written), 10 (an unreadable TIFF's message omitted the path), 11 (a 1x1 or
2-pixel-wide image was "Done." with an empty mask).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_clip_guided_sam.data.reader import read_image_lazy
from napari_clip_guided_sam.model.preprocess import MIN_IMAGE_SIDE

from .helpers import (
    assert_unchanged,
    run_cli,
    run_cli_process,
    segment_args,
    snapshot,
    write_png,
)


def segment(source: Path, output: Path, *extra: str):
    return run_cli(*segment_args(source, output, *extra))


def report_rows(output: Path) -> list[dict]:
    with open(output / "segment_report.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("shape", [(1, 1), (40, 2), (2, 40), (MIN_IMAGE_SIDE - 1, 40)])
def test_an_image_below_the_minimum_side_is_refused(tmp_path, shape):
    path = tmp_path / "small.png"
    Image.fromarray(np.full((*shape, 3), 200, np.uint8)).save(path)
    before = snapshot(tmp_path)
    result = segment(path, tmp_path / "out")
    assert result.code == 1 and "Traceback" not in result.err
    (row,) = report_rows(tmp_path / "out")
    assert row["status"] == "failed"
    assert f"at least {MIN_IMAGE_SIDE} pixels" in row["reason"] and "too small" in row["reason"]
    assert not list((tmp_path / "out").glob("*.tif"))
    assert_unchanged(before)


def test_the_minimum_side_itself_is_segmented(tmp_path):
    path = write_png(tmp_path / "edge.png", MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)
    assert segment(path, tmp_path / "out").code == 0
    assert (tmp_path / "out" / "edge_labels.tif").is_file()


def _truncated_tiff(path: Path, compression: str | None, keep: float | int) -> Path:
    """A 3-page TIFF cut short: to a fraction `keep` of its bytes, or by `keep` bytes."""
    data = np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)] if isinstance(keep, float) else raw[:-keep])
    return path


@pytest.mark.parametrize(
    "compression, keep", [(None, 0.5), ("zlib", 0.5), ("zlib", 100)], ids=["raw", "zlib", "tail"]
)
def test_a_truncated_tiff_fails_with_its_path_and_the_others_finish(tmp_path, compression, keep):
    """Defect 10: the message named no path. A cut page table (which tifffile reads around,
    opening a truncated stack as its first pages) and pixels that fail later, lazily, are
    both refused with the path and the fix."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(
        folder / "good.tif", np.full((3, 48, 48), 9, np.uint8), photometric="minisblack"
    )
    broken = _truncated_tiff(folder / "broken.tif", compression, keep)
    before = snapshot(folder)
    result = segment(folder, tmp_path / "out")
    assert result.code == 1 and "Traceback" not in result.err
    rows = {Path(r["input"]).name: r for r in report_rows(tmp_path / "out")}
    assert rows["good.tif"]["status"] == "done"
    reason = rows["broken.tif"]["reason"]
    assert str(broken) in reason and "truncated" in reason and "again" in reason
    assert_unchanged(before)


def test_pixels_that_fail_lazily_name_the_file(tmp_path):
    broken = _truncated_tiff(tmp_path / "broken.tif", "zlib", 100)
    image = read_image_lazy(broken)  # the page table is intact
    np.asarray(image.array[0])
    with pytest.raises(ValueError, match="broken.tif") as raised:
        np.asarray(image.array[2])
    assert "corrupt or truncated" in str(raised.value)


@pytest.mark.parametrize(
    "name, content",
    [("empty.png", b""), ("text.png", b"this is not an image"), ("zeros.tif", bytes(4096))],
)
def test_a_file_that_is_not_an_image_fails_alone(images, tmp_path, name, content):
    (images / name).write_bytes(content)
    before = snapshot(images)
    result = segment(images, tmp_path / "out")
    assert result.code == 1 and "Traceback" not in result.err
    rows = {Path(r["input"]).name: r for r in report_rows(tmp_path / "out")}
    assert rows[name]["status"] == "failed" and "cannot read" in rows[name]["reason"]
    assert rows["a.png"]["status"] == "done"
    assert_unchanged(before)


def test_a_folder_named_like_an_image_is_not_an_input(images, tmp_path):
    (images / "folder.tif").mkdir()
    assert segment(images, tmp_path / "out").code == 0
    assert {Path(r["input"]).name for r in report_rows(tmp_path / "out")} == {"a.png", "b.png"}


def test_five_channels_without_a_choice_say_which_option_to_use(tmp_path):
    path = tmp_path / "five.tif"
    tifffile.imwrite(path, np.zeros((5, 40, 48), np.uint16), metadata={"axes": "CYX"})
    result = segment(path, tmp_path / "out")
    assert result.code == 1 and "Traceback" not in result.err
    (row,) = report_rows(tmp_path / "out")
    assert "has 5 channels" in row["reason"] and "--channels" in row["reason"]
    out_of_range = segment(path, tmp_path / "out2", "--channels", "0", "7")
    (row,) = report_rows(tmp_path / "out2")
    assert out_of_range.code == 1 and "channel indices [7] out of range" in row["reason"]


@pytest.mark.parametrize(
    "array",
    [
        np.full((40, 48), np.nan, np.float32),
        np.full((40, 48), np.inf, np.float64),
        np.zeros((40, 48), np.uint8),
    ],
    ids=["all-nan", "all-inf", "all-zero"],
)
def test_a_degenerate_image_never_gives_a_traceback(tmp_path, array):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, array)
    result = segment(path, tmp_path / "out")
    assert "Traceback" not in result.err and result.code in (0, 1)
    (row,) = report_rows(tmp_path / "out")
    if row["status"] == "done":
        assert tifffile.imread(tmp_path / "out" / "flat_labels.tif").shape == (40, 48)
    else:
        assert row["reason"]


NON_UTF8 = os.fsdecode(b"b\xff\xfe.png")


@pytest.mark.skipif(os.name == "nt", reason="Windows file names are always Unicode")
def test_a_non_utf8_file_name_is_processed_and_reported_escaped(images, tmp_path):
    """Defect 4: the folder run stopped at the name and wrote no report."""
    write_png(images / NON_UTF8, seed=3)
    before = snapshot(images)
    result = run_cli_process(*segment_args(images, tmp_path / "out"))  # the real stdout
    assert result.code == 0, result.err
    rows = report_rows(tmp_path / "out")
    assert [Path(r["input"]).name for r in rows] == ["a.png", "b.png", "b\\xff\\xfe.png"]
    assert all(r["status"] == "done" for r in rows)
    document = json.loads((tmp_path / "out" / "segment_report.json").read_text("utf-8"))
    assert document["files"][2]["output"].endswith("b\\xff\\xfe_labels.tif")
    assert (tmp_path / "out" / os.fsdecode(b"b\xff\xfe_labels.tif")).is_file()
    assert "b\\xff\\xfe.png" in result.out
    assert_unchanged(before)


@pytest.mark.parametrize(
    "name",
    [
        "café noyau.png",
        "a" * 240 + ".png",
        "-starts-with-dash.png",
        "two  spaces .png",
        'semi;colon,comma"quote.png',
        "new\nline.png",
    ],
    ids=["unicode", "long", "dash", "spaces", "csv-characters", "newline"],
)
def test_odd_but_valid_file_names_are_processed(tmp_path, name):
    folder = tmp_path / "in"
    write_png(folder / name)
    result = segment(folder, tmp_path / "out")
    assert result.code == 0, result.err
    (row,) = report_rows(tmp_path / "out")
    assert row["status"] == "done" and row["input"] == str(folder / name)
    assert Path(row["output"]).is_file()
