"""Instance scores: one-to-one matching at IoU thresholds, checked by hand, against an
independent brute-force matcher and against StarDist's `matching` (the field's reference)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from napari_clip_guided_sam.evaluation.instances import (
    IOU_THRESHOLDS,
    InstanceAccumulator,
    adjusted_rand_index,
    match_instances,
    score_instances,
    true_objects,
)


def disks(shape, centres_radii):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for value, (cy, cx, r) in enumerate(centres_radii, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = value
    return out


def hand_worked_pair():
    """Three true squares; predictions: one exact (IoU 1), one 10x8 inside a 10x10
    (IoU 0.8 exactly), one shifted by 5 of 10 columns (IoU 50/150), one in the background."""
    gt = np.zeros((40, 60), np.int32)
    gt[2:12, 2:12], gt[2:12, 20:30], gt[20:30, 2:12] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[2:12, 2:12] = 7  # ids need not match or be consecutive
    pred[2:12, 20:28] = 3
    pred[20:30, 7:17] = 9
    pred[30:38, 40:50] = 4
    return pred, gt


def test_hand_worked_counts_per_threshold():
    pred, gt = hand_worked_pair()
    scores = score_instances(pred, gt)
    assert (
        scores.thresholds
        == IOU_THRESHOLDS
        == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    )
    # IoUs 1.0, 0.8, 1/3: matched while IoU > t, so the 0.8 pair drops out at t = 0.8.
    expected_tp = [2, 2, 2, 2, 2, 2, 1, 1, 1, 1]
    assert scores.true_positives.tolist() == expected_tp
    assert scores.false_positives.tolist() == [4 - tp for tp in expected_tp]
    assert scores.false_negatives.tolist() == [3 - tp for tp in expected_tp]
    assert (scores.n_pred, scores.n_true) == (4, 3)
    # accuracy TP / (TP + FP + FN) = TP / (7 - TP): 2/5 six times, 1/6 four times
    assert scores.dsb_score == pytest.approx((6 * 2 / 5 + 4 * 1 / 6) / 10, abs=1e-12)
    headline = scores.headline()
    assert headline["f1@0.5"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert headline["precision@0.5"] == pytest.approx(2 / 4)
    assert headline["recall@0.5"] == pytest.approx(2 / 3)
    assert headline["pq@0.5"] == pytest.approx((1.0 + 0.8) / (2 + 2 / 2 + 1 / 2))
    assert headline["msa"] == headline["dsb_score"]


def test_empty_images():
    empty = np.zeros((8, 8), np.int32)
    one = empty.copy()
    one[2:5, 2:5] = 1
    nothing = score_instances(empty, empty)
    assert nothing.dsb_score == 1.0 and nothing.headline()["f1@0.5"] == 1.0
    missed = score_instances(empty, one)
    assert missed.dsb_score == 0.0 and missed.false_negatives.tolist() == [1] * 10
    spurious = score_instances(one, empty)
    assert spurious.headline()["precision@0.5"] == 0.0


def brute_force(pred, gt, threshold):
    """Independent reference: per-object masks in Python loops and an optimal assignment
    maximising the number of pairs with IoU > threshold."""
    pred_ids = [v for v in np.unique(pred) if v]
    gt_ids = [v for v in np.unique(gt) if v]
    iou = np.zeros((len(pred_ids), len(gt_ids)))
    for i, p in enumerate(pred_ids):
        for j, g in enumerate(gt_ids):
            a, b = pred == p, gt == g
            iou[i, j] = (a & b).sum() / (a | b).sum()
    if not pred_ids or not gt_ids:
        return 0, len(pred_ids), len(gt_ids), 0.0
    rows, cols = linear_sum_assignment(-(iou > threshold).astype(float))
    ok = iou[rows, cols] > threshold
    tp = int(ok.sum())
    return tp, len(pred_ids) - tp, len(gt_ids) - tp, float(iou[rows, cols][ok].sum())


def random_instances(rng, shape=(48, 48), n=8):
    out = np.zeros(shape, np.int32)
    for value in rng.permutation(np.arange(1, n + 1)):
        h, w = rng.integers(4, 14, size=2)
        y, x = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
        out[y : y + h, x : x + w] = value
    return out


def perturbed(rng, gt):
    """Predictions near the truth: objects shifted, grown or shrunk, some dropped, some new."""
    pred = np.zeros_like(gt)
    for value in np.unique(gt)[1:]:
        if rng.random() < 0.15:
            continue
        mask = np.roll(gt == value, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
        pred[mask] = value + 100
    pred[random_instances(rng, gt.shape, 2) > 0] = 500 + rng.integers(0, 2)
    return pred


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    gt = random_instances(rng)
    pred = perturbed(rng, gt)
    scores = score_instances(pred, gt)
    for k, threshold in enumerate(IOU_THRESHOLDS):
        tp, fp, fn, iou_sum = brute_force(pred, gt, threshold)
        assert (scores.true_positives[k], scores.false_positives[k], scores.false_negatives[k]) == (
            tp,
            fp,
            fn,
        )
        assert scores.matched_iou[k] == pytest.approx(iou_sum, abs=1e-9)


def strictly_above(threshold):
    """StarDist matches at IoU >= t, computed in float32. These objects' unions hold at most
    600 pixels, so an IoU a/b that is not t itself lies at least 1/(20 * 600) > 8e-5 away
    from t = k/20: ">= t + 1e-5" is ">", above float32's rounding of an IoU equal to t."""
    return threshold + 1e-5


@pytest.mark.parametrize("seed", range(6))
def test_matches_stardist(seed):
    matching = pytest.importorskip("stardist.matching")
    rng = np.random.default_rng(100 + seed)
    gt = random_instances(rng, (64, 64), 12)
    pred = perturbed(rng, gt)
    scores = score_instances(pred, gt)
    for k, threshold in enumerate(IOU_THRESHOLDS):
        reference = matching.matching(gt, pred, thresh=strictly_above(threshold))
        assert scores.true_positives[k] == reference.tp
        assert scores.false_positives[k] == reference.fp
        assert scores.false_negatives[k] == reference.fn
        for ours, theirs in (
            (scores.precision[k], reference.precision),
            (scores.recall[k], reference.recall),
            (scores.f1[k], reference.f1),
            (scores.accuracy[k], reference.accuracy),
            (scores.panoptic_quality[k], reference.panoptic_quality),
        ):
            assert ours == pytest.approx(theirs, abs=1e-6)


def test_dataset_summary_matches_stardist_pooled_and_per_image_mean():
    matching = pytest.importorskip("stardist.matching")
    rng = np.random.default_rng(7)
    truths = [random_instances(rng, (64, 64), 10) for _ in range(4)]
    preds = [perturbed(rng, gt) for gt in truths]
    accumulator = InstanceAccumulator()
    for index, (pred, gt) in enumerate(zip(preds, truths, strict=True)):
        accumulator.update(pred, gt, f"image {index}", "nucleus")
    summary = accumulator.summary()["overall"]
    for row in summary["per_threshold"]:
        reference = matching.matching_dataset(
            truths,
            preds,
            thresh=strictly_above(row["iou_threshold"]),
            by_image=False,
            show_progress=False,
        )
        assert (row["tp"], row["fp"], row["fn"]) == (reference.tp, reference.fp, reference.fn)
        assert row["f1"] == pytest.approx(reference.f1, abs=1e-6)
        assert row["pq"] == pytest.approx(reference.panoptic_quality, abs=1e-6)
    per_image = [
        np.mean(
            [matching.matching(gt, pred, thresh=strictly_above(t)).accuracy for t in IOU_THRESHOLDS]
        )
        for pred, gt in zip(preds, truths, strict=True)
    ]
    assert summary["dsb_score"] == pytest.approx(np.mean(per_image), abs=1e-6)
    assert len(accumulator.rows()) == 4 and "per_class" not in accumulator.summary()


def test_per_class_summary_and_pooled_image_rows():
    pred, gt = hand_worked_pair()
    accumulator = InstanceAccumulator()
    accumulator.update(pred, gt, "a", "nucleus")
    accumulator.update(gt, gt, "a", "cell")
    summary = accumulator.summary()
    assert summary["per_class"]["cell"]["dsb_score"] == 1.0
    assert summary["per_class"]["nucleus"]["dsb_score"] == pytest.approx(
        score_instances(pred, gt).dsb_score
    )
    # one image: its classes' counts pooled (2+3 TP at 0.5 of 4+3 predicted, 3+3 true)
    overall = summary["overall"]
    assert overall["n_images"] == 1 and overall["per_threshold"][0]["tp"] == 5
    assert overall["dsb_score"] == pytest.approx(
        np.mean([tp / (7 + 6 - tp) for tp in (5, 5, 5, 5, 5, 5, 4, 4, 4, 4)])
    )


def test_true_objects_ids_or_connected_regions():
    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 1:3], labels[1:3, 3:5], labels[6:8, 6:8] = 4, 5, 4
    as_ids = true_objects(labels, labels > 0, ids_are_objects=True)
    assert len(np.unique(as_ids)) - 1 == 2  # values 4 and 5
    regions = true_objects(labels, labels == 4, ids_are_objects=False)
    assert len(np.unique(regions)) - 1 == 2  # two separate regions of value 4


def test_match_instances_counts_and_ap():
    truth = disks((40, 40), [(10, 10, 5), (28, 28, 6)])
    assert match_instances(truth, truth).average_precision == 1.0
    merged = (truth > 0).astype(np.int32)  # both objects as one id: nothing matches well
    result = match_instances(merged, truth)
    assert (result.true_positives, result.false_positives, result.false_negatives) == (1, 0, 1)
    assert result.average_precision == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0.5"):
        match_instances(truth, truth, 0.3)


def test_adjusted_rand_index_ignores_id_values():
    truth = disks((40, 40), [(10, 10, 5), (28, 28, 6)])
    renumbered = np.where(truth > 0, 7 - truth, 0)
    assert adjusted_rand_index(renumbered, truth) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 3, truth.shape)
    assert abs(adjusted_rand_index(noise, truth)) < 0.05
