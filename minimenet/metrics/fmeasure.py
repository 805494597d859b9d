"""Precision-recall, the F-measure (mean, max, adaptive) and the mean absolute error (MAE).

Sources: the F-measure with beta^2 = 0.3 and its adaptive threshold, twice the map's mean, are
those of Achanta, Hemami, Estrada and Süsstrunk, "Frequency-tuned salient region detection", CVPR
2009; the MAE is that of Perazzi, Krähenbühl, Pritch and Hornung, "Saliency filters: contrast based
filtering for salient region detection", CVPR 2012. The numbers are checked against PySODMetrics
1.6 (``py_sod_metrics.Fmeasure``/``FmeasureV2``, ``MAE``); maps and masks are prepared and
quantised as ``minimenet.metrics.prepare`` describes.

* Precision TP / (TP + FP) is 0 when nothing is predicted salient, recall TP / (TP + FN) is 0 when
  the mask is empty, and F = (1 + b2) P R / (b2 P + R) with b2 = beta^2 = 0.3 is 0 when P = R = 0.
  No epsilon is added anywhere.
* Adaptive F: the threshold is min(2 x mean of the map, 1), a pixel is salient when its value is
  >= the threshold (no 255-level quantisation here), averaged over images.
* MAE: mean |map - mask| per image, averaged over images.

Two conventions for the mean and max F over a dataset, which differ by a few points on real data:

* PySODMetrics (``max_f``, ``mean_f``, the default): the F curve of every image is computed and
  the curves are averaged over images; max F and mean F are the maximum and mean of that average
  curve over the 256 thresholds.
* MATLAB SOD toolbox (``max_f_toolbox``, ``mean_f_toolbox``): precision and recall are averaged over
  images at each threshold first, and F is taken of those averages.

Adaptive F and MAE are the same under both. Report which max F you quote.
"""
import numpy as np

from .prepare import _positive_counts, _prepare_pair, _safe_divide

BETA_SQUARED = 0.3


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


def _precision_recall(prediction, mask, counts=None):
    true_positives, false_positives = _positive_counts(prediction, mask) if counts is None else counts
    precision = _safe_divide(true_positives, true_positives + false_positives)
    recall = _safe_divide(true_positives, np.count_nonzero(mask))
    return precision, recall


def precision_recall_curve(prediction, mask, min_max_normalize=True):
    """Precision and recall of one map at the 256 thresholds, index t predicting level >= t salient."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _precision_recall(prediction, mask)
