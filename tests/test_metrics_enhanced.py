"""Tests of minimenet.metrics.enhanced: the E-measure (adaptive, curve, mean, max) against PySODMetrics."""
import numpy as np
import pytest

from minimenet import metrics
from metrics_reference import FIELD_PAIR_SETS, assert_field_metrics_match


@pytest.mark.parametrize("pair_set", FIELD_PAIR_SETS)
def test_e_measure_matches_pysodmetrics(pair_set):
    pairs, normalize = FIELD_PAIR_SETS[pair_set]()
    assert_field_metrics_match(pairs, ("max_e", "mean_e", "adaptive_e"), normalize, e_curve=True)


def test_e_measure_of_a_perfect_map():
    mask = np.zeros((20, 30), bool)
    mask[5:12, 8:20] = True
    perfect = metrics.evaluate([mask.astype(np.float64)], [mask])
    # The enhanced matrix is all ones; its sum is divided by (pixels - 1), as in the MATLAB code.
    assert perfect["max_e"] == pytest.approx(600 / 599) and perfect["adaptive_e"] == pytest.approx(600 / 599)
