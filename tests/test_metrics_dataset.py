"""Tests of minimenet.metrics.dataset: SaliencyMetrics and evaluate over several images."""
import numpy as np
import pytest

from minimenet import metrics
from minimenet.metrics import SaliencyMetrics
from metrics_reference import FIELD_METRICS


def test_results_before_any_update_are_refused():
    with pytest.raises(ValueError, match="update"):
        SaliencyMetrics().results()


def test_accumulator_matches_the_functional_helpers():
    rng = np.random.default_rng(1)
    accumulator = SaliencyMetrics()
    maps = [rng.random((7, 9)) for _ in range(3)]
    masks = [rng.random((7, 9)) > 0.6 for _ in range(3)]
    for prediction, mask in zip(maps, masks):
        accumulator.update(prediction, mask)
    results = accumulator.results()
    assert results["count"] == 3 == len(accumulator)
    assert results["mae"] == pytest.approx(np.mean([metrics.mean_absolute_error(p, m) for p, m in zip(maps, masks)]))
    assert results["adaptive_f"] == pytest.approx(np.mean([metrics.adaptive_f_measure(p, m) for p, m in zip(maps, masks)]))
    curves = [metrics.precision_recall_curve(p, m) for p, m in zip(maps, masks)]
    np.testing.assert_allclose(results["precision"], np.mean([c[0] for c in curves], axis=0))


def test_results_list_every_metric():
    rng = np.random.default_rng(8)
    results = metrics.evaluate([rng.random((9, 11))], [rng.random((9, 11)) > 0.5])
    for key in ("max_f", "mean_f", "adaptive_f", "mae", "max_f_toolbox", "mean_f_toolbox", *FIELD_METRICS):
        assert isinstance(results[key], float) and 0 <= results[key] <= 1, key
    assert results["e_curve"].shape == (256,)
