"""Instance scores: one-to-one matching (DSB average precision) and the adjusted Rand index."""

import numpy as np
import pytest

from napari_clip_guided_sam.evaluation.instances import adjusted_rand_index, match_instances


def disks(shape, centres_radii):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for value, (cy, cx, r) in enumerate(centres_radii, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = value
    return out


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
