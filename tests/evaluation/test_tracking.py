"""Scores of objects through a stack: slice success of one object, id switches."""

import numpy as np
import pytest

from napari_clip_guided_sam.evaluation.tracking import count_id_switches, slice_success


def test_slice_success_counts_slices_of_the_object_or_of_the_prediction():
    gt = np.zeros((4, 10, 10), bool)
    gt[0:3, 2:6, 2:6] = True
    pred = np.zeros_like(gt)
    pred[0, 2:6, 2:6] = True  # IoU 1
    pred[1, 2:6, 2:4] = True  # IoU 0.5: counts (>=)
    pred[3, 0:2, 0:2] = True  # a mask where the object is not: a failure
    assert slice_success(pred, gt) == pytest.approx(2 / 4)
    assert slice_success(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_id_switches_count_changes_of_the_matched_id():
    gt = np.zeros((5, 10, 20), np.int32)
    gt[:, 2:6, 2:6] = 7
    gt[:, 2:6, 12:16] = 9
    pred = np.zeros_like(gt)
    pred[:, 2:6, 2:6] = [[[1]], [[1]], [[2]], [[2]], [[1]]]  # two switches
    pred[:2, 2:6, 12:16] = 5
    pred[3:, 2:6, 12:16] = 5  # missed on slice 2: no switch, no reset
    score = count_id_switches(pred, gt)
    assert (score.objects, score.switches, score.matched, score.present) == (2, 2, 9, 10)
    assert score.per_100_objects == 100.0
    assert score.coverage == pytest.approx(0.9)
    with pytest.raises(ValueError, match=">= 0.5"):
        count_id_switches(pred, gt, 0.3)
