"""Tests of minimenet.metrics.structure: the S-measure, against PySODMetrics and in its edge cases."""
import numpy as np
import pytest

from minimenet import metrics
from metrics_reference import FIELD_PAIR_SETS, assert_field_metrics_match


@pytest.mark.parametrize("pair_set", FIELD_PAIR_SETS)
def test_s_measure_matches_pysodmetrics(pair_set):
    pairs, normalize = FIELD_PAIR_SETS[pair_set]()
    assert_field_metrics_match(pairs, ("s_measure",), normalize, e_curve=False)


def test_s_measure_of_perfect_and_inverted_maps():
    mask = np.zeros((20, 30), bool)
    mask[5:12, 8:20] = True
    assert metrics.evaluate([mask.astype(np.float64)], [mask])["s_measure"] == pytest.approx(1)
    assert metrics.evaluate([(~mask).astype(np.float64)], [mask])["s_measure"] < 0.1


def test_s_measure_is_finite_where_a_quadrant_is_empty():
    # The mask's centroid rounds onto the last column, so the right-hand quadrants are empty:
    # PySODMetrics (and the MATLAB code) give NaN there; those quadrants have weight 0 here.
    mask = np.zeros((6, 5), bool)
    mask[2:4, 4] = True
    prediction = np.linspace(0, 1, 30).reshape(6, 5)
    value = metrics.s_measure(prediction, mask)
    assert np.isfinite(value) and 0 <= value <= 1
