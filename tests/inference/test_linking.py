"""Instances linked across slices keep one id per object; default on along Z, off along T."""

import numpy as np
import pytest

from napari_clip_guided_sam.data.axes import links_slices_by_default
from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.evaluation.tracking import count_id_switches
from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_stack_to_array
from napari_clip_guided_sam.inference.instances import InstanceConfig
from napari_clip_guided_sam.inference.linking import SliceLinker, link_stack
from napari_clip_guided_sam.inference.predictor import Predictor

from .conftest import DISK_SLICES


def disks(centres, shape=(30, 60), radius=5):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=np.int32)
    for value, (cy, cx) in centres.items():
        out[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = value
    return out


def test_objects_keep_their_id_and_new_objects_get_new_ones():
    # Per-slice numbering differs from slice to slice; the linker undoes that.
    slices = [
        disks({1: (10, 10), 2: (10, 40)}),
        disks({1: (10, 42), 2: (11, 12), 3: (24, 25)}),  # swapped numbers, one new object
        disks({1: (24, 27)}),  # only the new one goes on
        disks({1: (10, 10)}),  # something at a place left two slices ago: a new object
    ]
    linked = link_stack(np.stack(slices))
    assert linked.dtype == np.uint32
    assert linked[0, 10, 10] == linked[1, 11, 12] == 1
    assert linked[0, 10, 40] == linked[1, 10, 42] == 2
    assert linked[1, 24, 25] == linked[2, 24, 27] == 3
    assert linked[3, 10, 10] == 4
    for z in range(4):  # the pixels of each object are untouched, only renumbered
        np.testing.assert_array_equal(linked[z] > 0, slices[z] > 0)


def test_only_objects_of_one_class_link_and_weak_overlaps_do_not():
    first, second = disks({1: (10, 10)}), disks({1: (10, 11)})
    linker = SliceLinker(min_iou=0.25)
    linker.link(first, classes=(first > 0) * 1)
    assert linker.link(second, classes=(second > 0) * 2)[10, 11] == 2  # another class
    linker = SliceLinker(min_iou=0.9)
    linker.link(first)
    assert linker.link(second)[10, 11] == 2  # IoU ~0.75 < 0.9
    linker = SliceLinker()
    linker.link(first)
    linker.restart()
    assert linker.link(second)[10, 11] == 2  # a new chain links to nothing


def test_a_4d_stack_links_along_z_within_each_time_point():
    slices = np.stack([disks({1: (10, 10)}), disks({1: (10, 11)})])
    linked = link_stack(np.stack([slices, slices]))  # [T, Z, H, W]
    assert linked[0, 0, 10, 10] == linked[0, 1, 10, 11] == 1
    assert linked[1, 0, 10, 10] == linked[1, 1, 10, 11] == 2


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="in .0, 1."):
        SliceLinker(min_iou=0)
    with pytest.raises(ValueError, match="differ in shape"):
        linker = SliceLinker()
        linker.link(disks({1: (10, 10)}))
        linker.link(np.zeros((5, 5), int))
    with pytest.raises(ValueError, match=r"\[..., Z, H, W\]"):
        link_stack(np.zeros((5, 5), int))


def test_default_is_on_along_z_and_off_along_time():
    assert links_slices_by_default("ZYX") and links_slices_by_default("TZYX")
    assert links_slices_by_default("ZCYX")
    assert not links_slices_by_default("TYX") and not links_slices_by_default("YX")
    assert not links_slices_by_default("QYX")


def test_text_instances_of_a_stack_keep_their_ids(disk_model, drifting_disk):
    images, masks = drifting_disk
    predictor = Predictor(disk_model, device="cpu", precision="fp32")
    image = ImageData(images, "ZYXC")
    options = SegmentOptions(("disk",), instances=InstanceConfig("connected"))
    events = segment_stack_to_array(predictor, image, options)
    while True:
        try:
            next(events)
        except StopIteration as stop:
            labels = stop.value
            break
    assert labels.shape == masks.shape
    assert set(np.unique(labels[list(DISK_SLICES)])) == {0, 1}
    score = count_id_switches(labels, masks.astype(np.int32))
    assert score.switches == 0 and score.coverage == 1.0

    with pytest.raises(ValueError, match="needs instances"):
        SegmentOptions(("disk",), link_slices=True)
