"""Tests of minimenet.metrics.fmeasure: precision-recall, the F-measure and MAE, by hand and against PySODMetrics."""
import numpy as np
import pytest
from PIL import Image

from minimenet import metrics, plot
from minimenet.metrics import SaliencyMetrics
from metrics_reference import pysod_results, random_pairs, structured_pairs


# --- Hand-computed cases (no reference library needed) --------------------------------------------


def test_perfect_map():
    mask = np.zeros((6, 6), bool)
    mask[1:4, 2:5] = True
    results = metrics.evaluate([mask.astype(np.float64)], [mask])
    assert results["max_f"] == 1 and results["adaptive_f"] == 1 and results["mae"] == 0
    assert results["max_f_toolbox"] == 1


def test_all_zero_map():
    mask = np.zeros((4, 4), bool)
    mask[:2] = True  # half the pixels salient
    results = metrics.evaluate([np.zeros((4, 4))], [mask])
    assert results["mae"] == 0.5
    # The constant map stays 0: only threshold 0 predicts anything, and it predicts everything:
    # precision 1/2, recall 1, F = 1.3 * 0.5 / (0.3 * 0.5 + 1).
    everything = 1.3 * 0.5 / 1.15
    assert results["f_curve"][0] == pytest.approx(everything) and not results["f_curve"][1:].any()
    assert results["max_f"] == pytest.approx(everything)
    assert results["adaptive_f"] == pytest.approx(everything)  # threshold 2 * 0 = 0 also keeps everything


def test_two_by_two_case():
    prediction = np.array([[1.0, 0.6], [0.3, 0.0]])
    mask = np.array([[1, 0], [1, 0]], bool)
    results = metrics.evaluate([prediction], [mask])
    # Already spanning [0, 1], so min-max leaves it; the levels are 255, 153, 76 (76.5 truncated) and 0.
    assert results["mae"] == pytest.approx((0.0 + 0.6 + 0.7 + 0.0) / 4)
    precision, recall = results["precision"], results["recall"]
    assert (precision[255], recall[255]) == (1, 0.5)  # only the 1.0 pixel predicted
    assert (precision[153], recall[153]) == (0.5, 0.5)  # 1.0 and 0.6
    assert precision[76] == pytest.approx(2 / 3) and recall[76] == 1
    assert (precision[0], recall[0]) == (0.5, 1)  # everything predicted
    assert results["max_f"] == pytest.approx(1.3 * 0.5 / (0.3 + 0.5))  # P = 1, R = 1/2
    # Adaptive threshold 2 x mean 0.475 = 0.95 keeps only the top pixel: the same P and R.
    assert results["adaptive_f"] == pytest.approx(1.3 * 0.5 / 0.8)


def test_toolbox_convention_differs_from_the_mean_of_curves():
    # Above threshold 0, image 1 is perfect (P = R = 1) and image 2 finds one of its three salient
    # pixels (P = 1, R = 1/3).
    predictions = [np.array([[1.0, 0.0]]), np.array([[1.0, 0.0, 0.0, 0.0]])]
    masks = [np.array([[1, 0]], bool), np.array([[1, 1, 1, 0]], bool)]
    results = metrics.evaluate(predictions, masks)
    f_of_second = 1.3 * (1 / 3) / (0.3 + 1 / 3)
    assert results["max_f"] == pytest.approx((1 + f_of_second) / 2)  # mean of the two F values
    assert results["max_f_toolbox"] == pytest.approx(1.3 * (2 / 3) / (0.3 + 2 / 3))  # F of P = 1, R = 2/3


def test_plot_pr_curve_writes_a_png(tmp_path):
    path = tmp_path / "pr.png"
    recall = np.linspace(0, 1, 256)
    plot.plot_pr_curve({"a": (1 - 0.5 * recall, recall), "b": (1 - 0.7 * recall ** 2, recall)}, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 520)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    for curve_colour in [(0, 114, 178), (213, 94, 0)]:  # both curves drawn, in their colours
        assert (np.abs(pixels - curve_colour).sum(axis=-1) < 30).sum() > 200


# --- Agreement with PySODMetrics -------------------------------------------------------------------


def assert_matches_pysod(pairs, ours, normalize=True):
    reference, reference_v2, reference_mae = pysod_results(pairs, normalize)
    accumulator = SaliencyMetrics()
    for prediction, mask in ours:
        accumulator.update(prediction, mask)
    results = accumulator.results()
    curve = reference["fm"]["curve"]
    assert results["max_f"] == pytest.approx(curve.max(), abs=1e-6)
    assert results["mean_f"] == pytest.approx(curve.mean(), abs=1e-6)
    assert results["adaptive_f"] == pytest.approx(reference["fm"]["adp"], abs=1e-6)
    assert results["mae"] == pytest.approx(reference_mae, abs=1e-6)
    # PySODMetrics orders its curves from threshold 255 down to 0, ours from 0 up to 255.
    np.testing.assert_allclose(results["f_curve"], curve[::-1], atol=1e-6)
    np.testing.assert_allclose(results["precision"], reference["pr"]["p"][::-1], atol=1e-6)
    np.testing.assert_allclose(results["recall"], reference["pr"]["r"][::-1], atol=1e-6)
    np.testing.assert_allclose(results["f_curve"], reference_v2["dynamic"][::-1], atol=1e-6)
    assert results["adaptive_f"] == pytest.approx(reference_v2["adaptive"], abs=1e-6)
    toolbox = metrics.f_measure(reference["pr"]["p"], reference["pr"]["r"])
    assert results["max_f_toolbox"] == pytest.approx(toolbox.max(), abs=1e-6)


def test_matches_pysodmetrics_on_random_uint8_maps():
    pairs = random_pairs(np.random.default_rng(0), 25)
    assert_matches_pysod(pairs, pairs)


def test_matches_pysodmetrics_on_structured_maps():
    pairs = structured_pairs(np.random.default_rng(1), 40)
    assert_matches_pysod(pairs, pairs)


def test_matches_pysodmetrics_on_float_maps_and_bool_masks():
    # PySODMetrics with normalize=False takes float maps in [0, 1] and bool masks as they are;
    # ours does the same with min-max normalisation off.
    rng = np.random.default_rng(2)
    pairs = [(rng.random((15, 20)), rng.random((15, 20)) > 0.7) for _ in range(10)]
    pairs += [(prediction / 255.0, mask > 128) for prediction, mask in structured_pairs(rng, 10)]
    reference, _, reference_mae = pysod_results(pairs, normalize=False)
    results = metrics.evaluate(*zip(*pairs), min_max_normalize=False)
    assert results["max_f"] == pytest.approx(reference["fm"]["curve"].max(), abs=1e-6)
    assert results["adaptive_f"] == pytest.approx(reference["fm"]["adp"], abs=1e-6)
    assert results["mae"] == pytest.approx(reference_mae, abs=1e-6)
