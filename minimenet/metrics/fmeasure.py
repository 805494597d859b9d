"""The F-measure, its precision-recall curve, the adaptive F-measure and MAE.

The F-measure with beta^2 = 0.3 and the adaptive threshold of 2 x the map's mean are Achanta,
Hemami, Estrada and Süsstrunk's ("Frequency-tuned salient region detection", CVPR 2009); MAE as a
saliency metric is Perazzi, Krähenbühl, Pritch and Hornung's ("Saliency filters: contrast based
filtering for salient region detection", CVPR 2012). The thresholds, the normalisation and the
zero-denominator rules are PySODMetrics 1.6's (package docstring).
"""
import numpy as np

from .maps import BETA_SQUARED, NUM_THRESHOLDS, _prepare_pair, _safe_divide


def f_measure(precision, recall, beta_squared=BETA_SQUARED):
    """(1 + b2) P R / (b2 P + R), elementwise, 0 where P = R = 0."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    return _safe_divide((beta_squared + 1) * precision * recall, beta_squared * precision + recall)


def mean_absolute_error(prediction, mask, min_max_normalize=True):
    """MAE of one map against its mask."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return float(np.mean(np.abs(prediction - mask)))


def _adaptive_f(prediction, mask, beta_squared):
    threshold = min(2 * prediction.mean(), 1)
    predicted_salient = prediction >= threshold
    true_positives = np.count_nonzero(predicted_salient[mask])
    precision = _safe_divide(true_positives, np.count_nonzero(predicted_salient))
    recall = _safe_divide(true_positives, np.count_nonzero(mask))
    return float(f_measure(precision, recall, beta_squared))


def adaptive_f_measure(prediction, mask, beta_squared=BETA_SQUARED, min_max_normalize=True):
    """F-measure of one map binarised at min(2 x its mean, 1)."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _adaptive_f(prediction, mask, beta_squared)


def _positive_counts(prediction, mask):
    """True and false positives at the 256 thresholds (index t: level >= t predicted salient)."""
    levels = (prediction * 255).astype(np.uint8)
    salient_histogram = np.bincount(levels[mask], minlength=NUM_THRESHOLDS)
    all_histogram = np.bincount(levels.ravel(), minlength=NUM_THRESHOLDS)
    # A reversed cumulative sum counts, for every threshold t at once, the pixels with level >= t.
    true_positives = np.cumsum(salient_histogram[::-1])[::-1]
    false_positives = np.cumsum((all_histogram - salient_histogram)[::-1])[::-1]
    return true_positives, false_positives


def _precision_recall(prediction, mask, counts=None):
    true_positives, false_positives = _positive_counts(prediction, mask) if counts is None else counts
    precision = _safe_divide(true_positives, true_positives + false_positives)
    recall = _safe_divide(true_positives, np.count_nonzero(mask))
    return precision, recall


def precision_recall_curve(prediction, mask, min_max_normalize=True):
    """Precision and recall of one map at the 256 thresholds, index t predicting level >= t salient."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _precision_recall(prediction, mask)
