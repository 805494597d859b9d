"""Test data and PySODMetrics 1.6 wrappers shared by the metric tests (tests/test_metrics_*.py).

No tests here: the pair generators (random, structured disc-like, realistic blobs) and the calls
into the reference implementation that the F-measure, S-measure, E-measure and weighted F-measure
tests compare against.
"""
import warnings

import numpy as np
import pytest

from minimenet import metrics


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


def assert_field_metrics_match(pairs, keys=FIELD_METRICS, normalize=True, e_curve=True):
    """Image by image and over the whole set, to 1e-6 (the differences measured are ~1e-16)."""
    for prediction, mask in pairs:
        reference = pysod_field_metrics([(prediction, mask)], normalize)
        ours = metrics.evaluate([prediction], [mask], min_max_normalize=normalize)
        for key in keys:
            assert ours[key] == pytest.approx(reference[key], abs=1e-6), key
        if e_curve:
            np.testing.assert_allclose(ours["e_curve"], reference["e_curve"], atol=1e-6)
    reference = pysod_field_metrics(pairs, normalize)
    ours = metrics.evaluate(*zip(*pairs), min_max_normalize=normalize)
    for key in keys:
        assert ours[key] == pytest.approx(reference[key], abs=1e-6), key


def _random_field_pairs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # PySODMetrics' S-measure meets empty quadrants here
        pairs = [pair for pair in random_pairs(np.random.default_rng(3), 60)
                 if np.isfinite(pysod_field_metrics([pair])["s_measure"])]
    assert len(pairs) > 50
    return pairs, True


def _float_field_pairs():
    rng = np.random.default_rng(6)
    return [(prediction / 255.0, mask > 128) for prediction, mask in blob_pairs(rng, 15)], False


# The pair sets the S-measure, E-measure and weighted F tests check, each against PySODMetrics:
# name -> a function returning (pairs, normalize). Random maps, structured disc-like maps,
# realistic blobs, and float maps with bool masks (PySODMetrics with normalize=False takes those).
FIELD_PAIR_SETS = {
    "random": _random_field_pairs,
    "structured": lambda: (structured_pairs(np.random.default_rng(4), 30), True),
    "blobs": lambda: (blob_pairs(np.random.default_rng(5), 40), True),
    "float-maps-bool-masks": _float_field_pairs,
}
