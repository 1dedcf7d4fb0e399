"""Instance splitting: one id per object, touching nuclei separated."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam.evaluation.instances import match_instances
from napari_clip_guided_sam.inference.instances import (
    InstanceConfig,
    labels_to_instances,
    split_instances,
)

DSB_LABELS = Path(__file__).parents[1] / "resources" / "dsb2018" / "labels"


def disks(shape, centres_radii):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for value, (cy, cx, r) in enumerate(centres_radii, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = value
    return out


def test_touching_disks_split_by_watershed_not_by_connectivity():
    truth = disks((60, 90), [(30, 28, 14), (30, 54, 14)])  # overlapping: one blob
    mask = truth > 0
    assert split_instances(mask, InstanceConfig("connected")).max() == 1
    instances = split_instances(mask, InstanceConfig("watershed"))
    assert instances.max() == 2
    assert match_instances(instances, truth).true_positives == 2


def test_every_foreground_pixel_gets_a_sequential_id():
    mask = disks((50, 50), [(10, 10, 4), (35, 35, 9), (10, 40, 1)]) > 0
    instances = split_instances(mask)
    assert ((instances > 0) == mask).all()
    assert sorted(np.unique(instances)) == [0, 1, 2, 3]
    assert instances.dtype == np.int32


def test_small_fragments_merge_into_their_neighbour():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    mask[9:11, 15:17] = True  # a 4-pixel nub, cut off by a strong h-maximum setting
    instances = split_instances(mask, InstanceConfig("watershed", h=0.0, sigma=0.0, min_size=6))
    assert instances.max() == 1
    assert ((instances > 0) == mask).all()


def test_classes_get_consecutive_instance_ids():
    labels = np.zeros((20, 40), np.int32)
    labels[2:8, 2:8] = 1
    labels[12:18, 2:8] = 1
    labels[5:15, 20:30] = 2
    instances = labels_to_instances(labels, 2, InstanceConfig("connected"))
    assert set(np.unique(instances[labels == 1])) == {1, 2}
    assert set(np.unique(instances[labels == 2])) == {3}


def test_empty_mask_and_bad_arguments():
    assert split_instances(np.zeros((8, 8), bool)).max() == 0
    with pytest.raises(ValueError, match="2D"):
        split_instances(np.zeros((2, 8, 8), bool))
    with pytest.raises(ValueError, match="instance method"):
        InstanceConfig("stardist")


def test_dsb_nuclei_get_one_id_each():
    """Splitting the union of the true nuclei recovers them (test images of DSB2018)."""
    scores = {"connected": [], "watershed": []}
    for path in sorted(DSB_LABELS.glob("*.tif")):
        truth = tifffile.imread(path)
        for method in scores:
            pred = split_instances(truth > 0, InstanceConfig(method))
            scores[method].append(match_instances(pred, truth).average_precision)
    assert np.mean(scores["watershed"]) >= 0.85
    assert np.mean(scores["watershed"]) >= np.mean(scores["connected"])
