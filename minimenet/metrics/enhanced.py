"""The E-measure (enhanced-alignment measure): adaptive, and its curve over the 256 thresholds.

Source: Fan, Gong, Cao, Ren, Cheng and Borji, "Enhanced-alignment measure for binary foreground map
evaluation", IJCAI 2018; the numbers are checked against PySODMetrics 1.6
(``py_sod_metrics.Emeasure``), which follows the authors' MATLAB code. ``EPS`` is MATLAB's eps,
added where the reference code adds it.

The map binarised at a threshold and the mask, each minus its mean, give the alignment
2 a b / (a^2 + b^2 + eps) per pixel, enhanced as (1 + alignment)^2 / 4 and summed over the image,
divided by (pixels - 1 + eps) (so a perfect map scores n / (n - 1)). ``max_e`` and ``mean_e`` are
the maximum and mean of the per-image curves' average over the 256 thresholds of
``minimenet.metrics.prepare`` (``e_curve``, index t = level >= t); ``adaptive_e`` binarises at
min(2 x mean, 1). An empty mask scores the fraction of pixels predicted background, a full one the
fraction predicted salient (over pixels - 1).
"""
import numpy as np

from .prepare import EPS, _positive_counts, _prepare_pair


def _e_measure_from_counts(true_positives, false_positives, salient_count, size):
    """Enhanced-alignment measure of a binarised map from its counts (arrays: one value per threshold).

    The alignment matrix takes only four values (the four combinations of predicted and true
    foreground or background), so the mean of the enhanced matrix is a weighted sum of four terms.
    """
    predicted_count = true_positives + false_positives
    predicted_background = size - predicted_count
    if salient_count == 0:
        enhanced_sum = predicted_background
    elif salient_count == size:
        enhanced_sum = predicted_count
    else:
        missed = salient_count - true_positives
        true_negatives = predicted_background - missed
        prediction_mean = predicted_count / size
        mask_mean = salient_count / size
        enhanced_sum = 0
        for part_count, a, b in ((true_positives, 1 - prediction_mean, 1 - mask_mean),
                                 (false_positives, 1 - prediction_mean, 0 - mask_mean),
                                 (missed, 0 - prediction_mean, 1 - mask_mean),
                                 (true_negatives, 0 - prediction_mean, 0 - mask_mean)):
            alignment = 2 * (a * b) / (a ** 2 + b ** 2 + EPS)
            enhanced_sum = enhanced_sum + (alignment + 1) ** 2 / 4 * part_count
    return enhanced_sum / (size - 1 + EPS)


def _adaptive_e(prediction, mask):
    predicted_salient = prediction >= min(2 * prediction.mean(), 1)
    true_positives = np.count_nonzero(predicted_salient & mask)
    false_positives = np.count_nonzero(predicted_salient) - true_positives
    return float(_e_measure_from_counts(true_positives, false_positives, np.count_nonzero(mask), mask.size))


def e_measure_curve(prediction, mask, min_max_normalize=True):
    """E-measure of one map at the 256 thresholds, index t predicting level >= t salient."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    true_positives, false_positives = _positive_counts(prediction, mask)
    return _e_measure_from_counts(true_positives, false_positives, np.count_nonzero(mask), mask.size)


def adaptive_e_measure(prediction, mask, min_max_normalize=True):
    """E-measure of one map binarised at min(2 x its mean, 1)."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _adaptive_e(prediction, mask)
