"""Tests of minimenet.metrics.weighted: the weighted F-measure and its exact Euclidean feature transform."""
import numpy as np
import pytest

from minimenet import metrics
from metrics_reference import FIELD_PAIR_SETS, assert_field_metrics_match


@pytest.mark.parametrize("pair_set", FIELD_PAIR_SETS)
def test_weighted_f_matches_pysodmetrics(pair_set):
    pairs, normalize = FIELD_PAIR_SETS[pair_set]()
    assert_field_metrics_match(pairs, ("weighted_f",), normalize, e_curve=False)


def test_weighted_f_of_perfect_inverted_and_empty_masks():
    mask = np.zeros((20, 30), bool)
    mask[5:12, 8:20] = True
    assert metrics.evaluate([mask.astype(np.float64)], [mask])["weighted_f"] == pytest.approx(1)
    assert metrics.evaluate([(~mask).astype(np.float64)], [mask])["weighted_f"] < 0.01
    assert metrics.weighted_f_measure(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 0  # empty mask: 0, as PySODMetrics


def test_nearest_true_pixels_is_scipys_feature_transform():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (a pysodmetrics dependency) is not installed")
    rng = np.random.default_rng(7)
    for number in range(120):
        height, width = rng.integers(1, 45, 2)
        if number % 3 == 0:
            mask = rng.random((height, width)) < rng.uniform(0.01, 0.3)
        elif number % 3 == 1:  # sparse grids: many equally near pixels, where the choice matters
            mask = np.zeros((height, width), bool)
            mask[rng.integers(0, 3)::rng.integers(2, 6), rng.integers(0, 3)::rng.integers(2, 6)] = True
        else:
            y, x = np.mgrid[0:height, 0:width]
            mask = np.hypot(y - rng.uniform(0, height), x - rng.uniform(0, width)) < rng.uniform(1, 12)
        if not mask.any():
            continue
        distance, (rows, columns) = ndimage.distance_transform_edt(~mask, return_indices=True)
        squared, our_rows, our_columns = metrics.nearest_true_pixels(mask)
        np.testing.assert_array_equal(np.sqrt(squared), distance)
        np.testing.assert_array_equal(our_rows, rows)
        np.testing.assert_array_equal(our_columns, columns)
