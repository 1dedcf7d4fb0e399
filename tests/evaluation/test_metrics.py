"""Tests for evaluation.metrics, with pysodmetrics as the oracle for the COD metrics."""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from napari_clip_guided_sam.evaluation import metrics as M

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import py_sod_metrics as sod

TOL = 1e-6


# ----------------------------------------------------------------------------- helpers


def blob_pair(shape, seed):
    """A uint8 saliency map and uint8 GT with blob-like structure, as a model would give."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=min(shape) / 8)
    gt = field > np.quantile(field, 0.7)
    noisy = ndimage.gaussian_filter(gt + 0.6 * rng.standard_normal(shape), sigma=1.5)
    prob = 1 / (1 + np.exp(-4 * (noisy - 0.5)))
    return np.round(prob * 255).astype(np.uint8), (gt * 255).astype(np.uint8)


def noise_pair(shape, seed):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 256, size=shape, dtype=np.uint8)
    gt = np.where(rng.random(shape) < 0.3, 255, 0).astype(np.uint8)
    return pred, gt


def oracle(pairs_u8):
    """pysodmetrics results for a sequence of (pred_u8, gt_u8)."""
    evaluators = {
        "mae": sod.MAE(),
        "sm": sod.Smeasure(),
        "em": sod.Emeasure(),
        "wfm": sod.WeightedFmeasure(),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty-slice warnings on the S-measure NaN case
        for pred, gt in pairs_u8:
            for evaluator in evaluators.values():
                evaluator.step(pred, gt)
    out = {}
    for evaluator in evaluators.values():
        out.update(evaluator.get_results())
    return out


def ours(pred_u8, gt_u8):
    """Our per-image metrics on the documented conversion of uint8 inputs."""
    pred, gt = pred_u8 / 255.0, gt_u8 > 128
    return {
        "mae": M.mae(pred, gt),
        "sm": M.s_measure(pred, gt),
        "em_curve": M.e_measure_curve(pred, gt),
        "em_mean": M.e_measure(pred, gt),
        "em_adp": M.adaptive_e_measure(pred, gt),
        "wfm": M.weighted_f_measure(pred, gt),
    }


def assert_matches_oracle(pred_u8, gt_u8):
    expected = oracle([(pred_u8, gt_u8)])
    got = ours(pred_u8, gt_u8)
    assert got["mae"] == pytest.approx(expected["mae"], abs=TOL)
    assert got["sm"] == pytest.approx(expected["sm"], abs=TOL)
    assert got["wfm"] == pytest.approx(expected["wfm"], abs=TOL)
    assert got["em_adp"] == pytest.approx(expected["em"]["adp"], abs=TOL)
    # The toolbox orders its curve by decreasing threshold; ours increases.
    np.testing.assert_allclose(got["em_curve"], expected["em"]["curve"][::-1], atol=TOL, rtol=0)
    assert got["em_mean"] == pytest.approx(expected["em"]["curve"].mean(), abs=TOL)


SHAPES = [(32, 32), (47, 61), (96, 40)]


# ------------------------------------------------------------- COD metrics vs oracle


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_blob_maps_match_pysodmetrics(shape, seed):
    assert_matches_oracle(*blob_pair(shape, seed))


@pytest.mark.parametrize("shape", SHAPES)
def test_noise_maps_match_pysodmetrics(shape):
    assert_matches_oracle(*noise_pair(shape, seed=7))


def test_float_maps_without_normalisation_match_toolbox_unnormalised_path():
    rng = np.random.default_rng(3)
    pred = rng.uniform(0.1, 0.7, size=(40, 50))
    gt = rng.random((40, 50)) < 0.4
    expected_sm, expected_wfm = sod.Smeasure(), sod.WeightedFmeasure()
    expected_sm.step(pred, gt, normalize=False)
    expected_wfm.step(pred, gt, normalize=False)
    assert M.s_measure(pred, gt, normalize=False) == pytest.approx(
        expected_sm.get_results()["sm"], abs=TOL
    )
    assert M.weighted_f_measure(pred, gt, normalize=False) == pytest.approx(
        expected_wfm.get_results()["wfm"], abs=TOL
    )
    assert M.mae(pred, gt, normalize=False) == pytest.approx(np.abs(pred - gt).mean())


def test_normalisation_rescales_a_non_constant_map():
    pred = np.array([[0.2, 0.4], [0.6, 0.2]])
    gt = np.array([[False, True], [True, False]])
    assert M.mae(pred, gt) == pytest.approx(np.mean([0, 0.5, 0, 0]))


# --------------------------------------------------------------------- COD edge cases


def edge_cases():
    shape = (24, 30)
    rng = np.random.default_rng(11)
    random_pred = rng.integers(0, 256, size=shape, dtype=np.uint8)
    empty = np.zeros(shape, np.uint8)
    full = np.full(shape, 255, np.uint8)
    blob_gt = blob_pair(shape, 5)[1]
    dot = empty.copy()
    dot[10, 12] = 255
    return {
        "empty_gt": (random_pred, empty),
        "full_gt": (random_pred, full),
        "empty_pred": (empty, blob_gt),
        "constant_pred": (np.full(shape, 77, np.uint8), blob_gt),
        "pred_equals_gt": (blob_gt, blob_gt),
        "one_pixel_gt": (random_pred, dot),
        "one_pixel_gt_and_pred": (dot, dot),
        "one_pixel_pred": (dot, blob_gt),
        "empty_pred_empty_gt": (empty, empty),
        "full_pred_full_gt": (full, full),
    }


@pytest.mark.parametrize("name", list(edge_cases()))
def test_edge_cases_match_pysodmetrics(name):
    assert_matches_oracle(*edge_cases()[name])


def test_perfect_prediction_scores_perfectly():
    _, gt_u8 = blob_pair((33, 45), 2)
    got = ours(gt_u8, gt_u8)
    assert got["mae"] == 0
    assert got["sm"] == pytest.approx(1.0, abs=1e-6)
    assert got["wfm"] == pytest.approx(1.0, abs=1e-6)
    assert got["em_adp"] == pytest.approx(1.0, abs=1e-3)


def test_one_pixel_object_in_last_row_stays_finite_where_toolbox_gives_nan():
    pred, gt = noise_pair((20, 25), seed=4)
    gt[:] = 0
    gt[19, 7] = 255
    assert np.isnan(oracle([(pred, gt)])["sm"])
    score = M.s_measure(pred / 255.0, gt > 128)
    assert np.isfinite(score) and 0.0 <= score <= 1.0


# ----------------------------------------------------------------- dataset aggregation


def test_accumulator_matches_pysodmetrics_get_results():
    pairs = [blob_pair((32, 32), 0), noise_pair((47, 61), 1), blob_pair((96, 40), 2)]
    pairs.append(edge_cases()["empty_gt"])
    expected = oracle(pairs)
    accumulator = M.MetricAccumulator()
    for pred_u8, gt_u8 in pairs:
        accumulator.update(pred_u8 / 255.0, gt_u8 > 128)
    summary = accumulator.summary()
    assert len(accumulator) == len(pairs)
    assert summary["mae"] == pytest.approx(expected["mae"], abs=TOL)
    assert summary["s_measure"] == pytest.approx(expected["sm"], abs=TOL)
    assert summary["weighted_f"] == pytest.approx(expected["wfm"], abs=TOL)
    assert summary["e_measure"] == pytest.approx(expected["em"]["curve"].mean(), abs=TOL)
    assert summary["e_measure_max"] == pytest.approx(expected["em"]["curve"].max(), abs=TOL)
    assert summary["e_measure_adaptive"] == pytest.approx(expected["em"]["adp"], abs=TOL)


def test_accumulator_iou_family_thresholds_raw_probability_at_half():
    prob = np.array([[0.9, 0.51], [0.5, 0.1]])  # normalisation must not move the threshold
    gt = np.array([[True, False], [True, False]])
    accumulator = M.MetricAccumulator()
    record = accumulator.update(prob, gt)
    binary = np.array([[True, True], [False, False]])
    assert record["fg_iou"] == pytest.approx(1 / 3)
    assert record["dice"] == pytest.approx(0.5)
    summary = accumulator.summary()
    assert summary["miou"] == pytest.approx(M.class_wise_miou(binary, gt))
    assert summary["miou"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert summary["iou"] == pytest.approx(1 / 3)  # pooled foreground IoU
    assert set(summary) == {
        "miou", "iou", "fg_iou", "dice", "mae", "s_measure",
        "e_measure", "e_measure_max", "e_measure_adaptive", "weighted_f",
    }  # fmt: skip


def test_accumulator_leaves_unannotated_pixels_out():
    prob = np.array([[0.9, 0.9], [0.1, 0.9]])
    gt = np.array([[True, False], [False, False]])
    valid = np.array([[True, False], [True, False]])  # the two wrong pixels are unannotated
    accumulator = M.MetricAccumulator()
    record = accumulator.update(prob, gt, valid)
    assert record["fg_iou"] == 1.0 and record["dice"] == 1.0
    assert set(record) == {"fg_iou", "dice", "mae"}  # whole-map scores need every pixel
    summary = accumulator.summary()
    assert summary["miou"] == 1.0 and summary["iou"] == 1.0
    accumulator.update(prob, gt)  # without left-out pixels: every score again
    assert accumulator.summary()["fg_iou"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert "s_measure" in accumulator.summary()


def test_accumulator_rejects_summary_before_update():
    with pytest.raises(ValueError, match="no images"):
        M.MetricAccumulator().summary()


# ------------------------------------------------------------- IoU, Dice and mIoU


def test_foreground_iou_and_dice_by_hand():
    pred = np.array([[1, 1, 0], [0, 1, 0]], bool)
    gt = np.array([[1, 0, 0], [0, 1, 1]], bool)
    assert M.foreground_iou(pred, gt) == pytest.approx(2 / 4)
    assert M.dice(pred, gt) == pytest.approx(2 * 2 / 6)


def test_iou_and_dice_edge_cases():
    empty, full = np.zeros((3, 5), bool), np.ones((3, 5), bool)
    assert M.foreground_iou(empty, empty) == 1.0 and M.dice(empty, empty) == 1.0
    assert M.foreground_iou(empty, full) == 0.0 and M.dice(full, empty) == 0.0
    assert M.foreground_iou(full, full) == 1.0 and M.dice(full, full) == 1.0
    dot = empty.copy()
    dot[2, 4] = True
    assert M.foreground_iou(dot, dot) == 1.0
    assert M.dice(dot, full) == pytest.approx(2 / 16)


def test_binary_miou_accumulates_over_the_dataset():
    # Image A: no object, one false-positive pixel. Image B: one object pixel, found.
    gt_a, pred_a = np.zeros((2, 2), bool), np.array([[0, 1], [0, 0]], bool)
    gt_b = pred_b = np.array([[0, 0], [1, 0]], bool)
    # Background: 6 correct of a union of 7; foreground: 1 of a union of 2.
    assert M.class_wise_miou([pred_a, pred_b], [gt_a, gt_b]) == pytest.approx((6 / 7 + 1 / 2) / 2)
    assert M.class_wise_miou(
        [pred_a, pred_b], [gt_a, gt_b], include_background=False
    ) == pytest.approx(1 / 2)


def test_multiclass_miou_by_hand():
    gt = np.array([[0, 1, 2], [2, 2, 1]])
    pred = np.array([[0, 1, 1], [2, 2, 2]])
    accumulator = M.ConfusionAccumulator(num_classes=3)
    accumulator.update(pred, gt)
    np.testing.assert_allclose(accumulator.iou_per_class(), [1.0, 1 / 3, 1 / 2])
    assert accumulator.miou() == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert accumulator.miou(include_background=False) == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert M.class_wise_miou(pred, gt) == pytest.approx(accumulator.miou())


def test_miou_skips_absent_classes_and_ignored_pixels():
    gt = np.array([[0, 1, 255], [0, 1, 1]])
    pred = np.array([[0, 1, 3], [0, 1, 0]])
    accumulator = M.ConfusionAccumulator(num_classes=4, ignore_index=255)
    accumulator.update(pred, gt)
    iou = accumulator.iou_per_class()
    np.testing.assert_allclose(iou[:2], [2 / 3, 2 / 3])
    assert np.isnan(iou[2]) and np.isnan(iou[3])  # never in gt nor (unignored) pred
    assert accumulator.miou() == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- errors


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        M.foreground_iou(np.zeros((4, 5), bool), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        M.s_measure(np.zeros((4, 5)), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        M.MetricAccumulator().update(np.zeros((4, 5)), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        M.ConfusionAccumulator().update(np.zeros((4, 5), int), np.zeros((5, 4), int))


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        M.dice(np.zeros((0, 3), bool), np.zeros((0, 3), bool))
    with pytest.raises(ValueError, match="empty"):
        M.mae(np.zeros((0, 3)), np.zeros((0, 3), bool))
    with pytest.raises(ValueError, match="empty"):
        M.class_wise_miou([], [])


def test_wrong_dtypes_and_ranges_raise():
    gt = np.zeros((4, 4), bool)
    with pytest.raises(TypeError, match="uint8"):
        M.mae(np.zeros((4, 4), np.uint8), gt)
    with pytest.raises(TypeError, match="bool"):
        M.s_measure(np.zeros((4, 4)), np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match="bool"):
        M.foreground_iou(np.zeros((4, 4)), gt)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.e_measure(np.full((4, 4), 1.5), gt)
    with pytest.raises(TypeError, match="integer"):
        M.ConfusionAccumulator().update(np.zeros((4, 4)), gt)
    with pytest.raises(ValueError, match="labels"):
        M.ConfusionAccumulator(num_classes=2).update(np.full((4, 4), 2), gt)
    with pytest.raises(ValueError, match="2-D"):
        M.weighted_f_measure(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool))
