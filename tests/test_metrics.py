import warnings

import numpy as np
import pytest
from PIL import Image

from minimenet import metrics, plot
from minimenet.metrics import SaliencyMetrics


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


def test_min_max_normalisation_and_uint8_input():
    mask = np.array([[1, 0]], bool)
    narrow = np.array([[0.6, 0.4]])
    assert metrics.mean_absolute_error(narrow, mask) == 0  # stretched to [1, 0]
    assert metrics.mean_absolute_error(narrow, mask, min_max_normalize=False) == pytest.approx(0.4)
    assert metrics.mean_absolute_error(np.array([[255, 0]], np.uint8), mask) == 0


def test_mask_conventions():
    grey = np.array([[0, 128, 129, 255]], np.uint8)
    np.testing.assert_array_equal(metrics.prepare_ground_truth(grey), [[False, False, True, True]])
    labels = np.array([[0, 1, 1, 0]], np.int32)  # minimenet.data's masks: 1 = salient
    np.testing.assert_array_equal(metrics.prepare_ground_truth(labels), [[False, True, True, False]])


def test_toolbox_convention_differs_from_the_mean_of_curves():
    # Above threshold 0, image 1 is perfect (P = R = 1) and image 2 finds one of its three salient
    # pixels (P = 1, R = 1/3).
    predictions = [np.array([[1.0, 0.0]]), np.array([[1.0, 0.0, 0.0, 0.0]])]
    masks = [np.array([[1, 0]], bool), np.array([[1, 1, 1, 0]], bool)]
    results = metrics.evaluate(predictions, masks)
    f_of_second = 1.3 * (1 / 3) / (0.3 + 1 / 3)
    assert results["max_f"] == pytest.approx((1 + f_of_second) / 2)  # mean of the two F values
    assert results["max_f_toolbox"] == pytest.approx(1.3 * (2 / 3) / (0.3 + 2 / 3))  # F of P = 1, R = 2/3


def test_invalid_inputs_are_named():
    with pytest.raises(ValueError, match="resize the map back"):
        metrics.mean_absolute_error(np.zeros((2, 3)), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="sigmoid"):
        metrics.mean_absolute_error(np.array([[1.5, 0.0]]), np.zeros((1, 2), bool))
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


def structured_pairs(rng, count):
    """Blurry disc-like maps over disc masks, plus edge cases: constant maps and empty or full masks."""
    pairs = []
    for number in range(count):
        height, width = rng.integers(12, 40, 2)
        y, x = np.mgrid[0:height, 0:width]
        distance = np.hypot(y - rng.uniform(0, height), x - rng.uniform(0, width))
        radius = rng.uniform(3, 10)
        mask = np.where(distance < radius, 255, 0).astype(np.uint8)
        prediction = np.clip(1.2 - distance / (2 * radius) + rng.normal(0, 0.15, distance.shape), 0, 1)
        prediction = np.round(prediction * 255).astype(np.uint8)
        if number % 7 == 3:
            prediction[:] = 90
        if number % 11 == 5:
            mask[:] = 0
        if number % 13 == 6:
            mask[:] = 255
        pairs.append((prediction, mask))
    return pairs


def random_pairs(rng, count):
    pairs = []
    for _ in range(count):
        height, width = rng.integers(5, 30, 2)
        grey_mask = rng.integers(0, 256, (height, width)).astype(np.uint8)
        pairs.append((rng.integers(0, 256, (height, width)).astype(np.uint8), grey_mask))
    return pairs


def pysod_results(pairs, normalize):
    py_sod_metrics = pytest.importorskip(
        "py_sod_metrics", reason="pysodmetrics is not installed (pip install pysodmetrics); the reference checks need it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its Fmeasure class warns that FmeasureV2 will replace it
        fmeasure, mae = py_sod_metrics.Fmeasure(), py_sod_metrics.MAE()
    fmeasure_v2 = py_sod_metrics.FmeasureV2(
        {"fm": py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)})
    for prediction, mask in pairs:
        fmeasure.step(prediction, mask, normalize=normalize)
        fmeasure_v2.step(prediction, mask, normalize=normalize)
        mae.step(prediction, mask, normalize=normalize)
    return fmeasure.get_results(), fmeasure_v2.get_results()["fm"], mae.get_results()["mae"]


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


def test_mask_rule_is_the_loaders_for_every_encoding():
    # One rule with minimenet.data.binarize_mask (tests/test_data.py checks mask files end to end).
    sixteen_bit = np.array([[0, 20000, 40000, 65535]], np.uint16)  # > 128 x 257 on the 16-bit scale
    np.testing.assert_array_equal(metrics.prepare_ground_truth(sixteen_bit), [[False, False, True, True]])
    dim_binary = np.array([[0, 100, 100, 0]], np.uint8)  # two values, one of them 0: the other is the object
    np.testing.assert_array_equal(metrics.prepare_ground_truth(dim_binary), [[False, True, True, False]])
    all_labels = np.ones((2, 2), np.int32)  # a fully salient 0/1 label mask
    assert metrics.prepare_ground_truth(all_labels).all()
    float_grey = np.array([[0.0, 0.3, 0.6, 1.0]])
    np.testing.assert_array_equal(metrics.prepare_ground_truth(float_grey), [[False, False, True, True]])
    assert metrics.mean_absolute_error(np.array([[0.0, 1.0, 1.0, 0.0]]), dim_binary) == 0
    with pytest.raises(TypeError, match="a mask must be bool, integer or float, got <U1"):
        metrics.prepare_ground_truth(np.array([["a", "b"]]))


# --- S-measure, E-measure and weighted F against PySODMetrics --------------------------------------


def blob_pairs(rng, count):
    """Realistic-looking pairs: masks of several blobs (holes, border contact, thin parts) and maps
    that are blurred, shifted, noisy versions of them or unrelated blobs; a few degenerate cases."""
    pairs = []
    for number in range(count):
        height, width = rng.integers(20, 90, 2)
        y, x = np.mgrid[0:height, 0:width]
        mask = np.zeros((height, width), bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(-5, height + 5), rng.uniform(-5, width + 5)
            ry, rx = rng.uniform(2, height / 2), rng.uniform(2, width / 2)
            mask |= ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        if number % 3 == 0:  # a hole and a thin bar
            mask &= np.hypot(y - height / 2, x - width / 2) > rng.uniform(1, 6)
            mask[rng.integers(0, height), :] = True
        shifted = np.roll(mask, (rng.integers(-4, 5), rng.integers(-4, 5)), (0, 1)).astype(float)
        blob = np.exp(-(((y - rng.uniform(0, height)) / 8) ** 2 + ((x - rng.uniform(0, width)) / 8) ** 2))
        prediction = np.clip(0.7 * shifted + 0.4 * blob + rng.normal(0, 0.15, mask.shape), 0, 1)
        prediction = (prediction * 255).astype(np.uint8)
        mask = np.where(mask, 255, 0).astype(np.uint8)
        if number % 9 == 4:
            prediction[:] = 77
        if number % 10 == 5:
            mask[:] = 0
        if number % 11 == 6:
            mask[:] = 255
        pairs.append((prediction, mask))
    return pairs


def pysod_field_metrics(pairs, normalize=True):
    py_sod_metrics = pytest.importorskip(
        "py_sod_metrics", reason="pysodmetrics is not installed (pip install pysodmetrics); the reference checks need it")
    s_measure, e_measure, weighted_f = py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure(), py_sod_metrics.WeightedFmeasure()
    for prediction, mask in pairs:
        for metric in (s_measure, e_measure, weighted_f):
            metric.step(prediction, mask, normalize=normalize)
    e = e_measure.get_results()["em"]
    return {"s_measure": s_measure.get_results()["sm"], "max_e": e["curve"].max(), "mean_e": e["curve"].mean(),
            "adaptive_e": e["adp"], "weighted_f": weighted_f.get_results()["wfm"], "e_curve": e["curve"][::-1]}


FIELD_METRICS = ("s_measure", "max_e", "mean_e", "adaptive_e", "weighted_f")


def assert_field_metrics_match(pairs, normalize=True):
    """Image by image and over the whole set, to 1e-6 (the differences measured are ~1e-16)."""
    for prediction, mask in pairs:
        reference = pysod_field_metrics([(prediction, mask)], normalize)
        ours = metrics.evaluate([prediction], [mask], min_max_normalize=normalize)
        for key in FIELD_METRICS:
            assert ours[key] == pytest.approx(reference[key], abs=1e-6), key
        np.testing.assert_allclose(ours["e_curve"], reference["e_curve"], atol=1e-6)
    reference = pysod_field_metrics(pairs, normalize)
    ours = metrics.evaluate(*zip(*pairs), min_max_normalize=normalize)
    for key in FIELD_METRICS:
        assert ours[key] == pytest.approx(reference[key], abs=1e-6), key


def test_field_metrics_match_pysodmetrics_on_random_maps():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # PySODMetrics' S-measure meets empty quadrants here
        pairs = [pair for pair in random_pairs(np.random.default_rng(3), 60)
                 if np.isfinite(pysod_field_metrics([pair])["s_measure"])]
    assert len(pairs) > 50
    assert_field_metrics_match(pairs)


def test_field_metrics_match_pysodmetrics_on_structured_maps():
    assert_field_metrics_match(structured_pairs(np.random.default_rng(4), 30))
    assert_field_metrics_match(blob_pairs(np.random.default_rng(5), 40))


def test_field_metrics_match_pysodmetrics_on_float_maps_and_bool_masks():
    rng = np.random.default_rng(6)
    pairs = [(prediction / 255.0, mask > 128) for prediction, mask in blob_pairs(rng, 15)]
    assert_field_metrics_match(pairs, normalize=False)


def test_field_metrics_of_perfect_and_inverted_maps():
    mask = np.zeros((20, 30), bool)
    mask[5:12, 8:20] = True
    perfect = metrics.evaluate([mask.astype(np.float64)], [mask])
    assert perfect["s_measure"] == pytest.approx(1) and perfect["weighted_f"] == pytest.approx(1)
    # The enhanced matrix is all ones; its sum is divided by (pixels - 1), as in the MATLAB code.
    assert perfect["max_e"] == pytest.approx(600 / 599) and perfect["adaptive_e"] == pytest.approx(600 / 599)
    inverted = metrics.evaluate([(~mask).astype(np.float64)], [mask])
    assert inverted["s_measure"] < 0.1 and inverted["weighted_f"] < 0.01
    assert metrics.weighted_f_measure(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 0  # empty mask: 0, as PySODMetrics


def test_s_measure_is_finite_where_a_quadrant_is_empty():
    # The mask's centroid rounds onto the last column, so the right-hand quadrants are empty:
    # PySODMetrics (and the MATLAB code) give NaN there; those quadrants have weight 0 here.
    mask = np.zeros((6, 5), bool)
    mask[2:4, 4] = True
    prediction = np.linspace(0, 1, 30).reshape(6, 5)
    value = metrics.s_measure(prediction, mask)
    assert np.isfinite(value) and 0 <= value <= 1


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


def test_results_list_every_metric():
    rng = np.random.default_rng(8)
    results = metrics.evaluate([rng.random((9, 11))], [rng.random((9, 11)) > 0.5])
    for key in ("max_f", "mean_f", "adaptive_f", "mae", "max_f_toolbox", "mean_f_toolbox", *FIELD_METRICS):
        assert isinstance(results[key], float) and 0 <= results[key] <= 1, key
    assert results["e_curve"].shape == (256,)
