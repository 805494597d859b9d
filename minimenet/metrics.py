"""Salient-object detection metrics: MAE, the F-measure (adaptive, mean, max) and precision-recall curves.

The definitions are those of PySODMetrics (``py_sod_metrics.Fmeasure``/``FmeasureV2`` and ``MAE``),
reproduced step by step so that the numbers agree with it to floating-point rounding:

* Prediction: a uint8 map is divided by 255; a float map must already lie in [0, 1]. Then, by
  default, the map is min-max normalised (MATLAB's ``mapminmax``) unless it is constant.
* Ground truth: binarised by ``minimenet.data.binarize_mask``, the very rule the data loader uses,
  and a mask file path is read with ``minimenet.data.read_mask``: a bool mask is used as it is;
  values only 0 and 1 are labels (1 = salient, as ``minimenet.data`` produces); exactly two values,
  one of them 0 (0/255, 0/65535), make the other salient; anything else is a grey image, salient
  where > 128 as in PySODMetrics (> 32896 for 16-bit values, > 128/255 for floats within [0, 1]).
* Thresholds: the normalised map is scaled by 255 and truncated to an integer level v in 0..255;
  at threshold index t (t = 0..255) a pixel is predicted salient when v >= t. Index 0 therefore
  predicts everything salient; the curves here run from threshold 0 up to 255 (PySODMetrics stores
  them in the opposite order).
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
import os

import numpy as np

from .backend import to_numpy
from .data import binarize_mask, read_mask

BETA_SQUARED = 0.3
NUM_THRESHOLDS = 256


def prepare_prediction(prediction, min_max_normalize=True):
    """A saliency map as float64 in [0, 1], normalised the way PySODMetrics does (see module doc)."""
    prediction = to_numpy(prediction)  # a CuPy map too (np.asarray refuses those): metrics run on the host
    if prediction.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D (H, W), got shape {prediction.shape}; squeeze the channel axis first")
    if prediction.dtype == np.uint8:
        prediction = prediction / 255
    elif np.issubdtype(prediction.dtype, np.floating):
        prediction = prediction.astype(np.float64)
        if not np.all(np.isfinite(prediction)):
            raise ValueError("the saliency map contains NaN or infinite values")
        if prediction.min() < 0 or prediction.max() > 1:
            raise ValueError(
                f"a float saliency map must lie in [0, 1], got [{prediction.min():.4g}, {prediction.max():.4g}]; "
                "apply a sigmoid or softmax to network outputs first")
    else:
        raise TypeError(f"a saliency map must be uint8 or float, got {prediction.dtype}")
    if min_max_normalize and prediction.max() != prediction.min():
        # Written exactly as PySODMetrics writes it: the 255-level binning below truncates, so a
        # differently ordered but equivalent formula would move some pixels to a neighbouring bin.
        prediction = (prediction - prediction.min()) / (prediction.max() - prediction.min())
    return prediction


def prepare_ground_truth(mask):
    """A ground-truth mask as a bool array (True = salient); see the module doc for the rules.

    ``mask`` is an array, or the path of a mask file (read exactly as the data loader reads it).
    """
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask)
    mask = to_numpy(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
    return binarize_mask(mask)


def _prepare_pair(prediction, mask, min_max_normalize):
    prediction = prepare_prediction(prediction, min_max_normalize)
    mask = prepare_ground_truth(mask)
    if prediction.shape != mask.shape:
        raise ValueError(
            f"saliency map shape {prediction.shape} differs from mask shape {mask.shape}; resize the map back to "
            "the mask's size first (minimenet.data.resize_saliency_map)")
    return prediction, mask


def _safe_divide(numerator, denominator):
    """numerator / denominator, and 0 where the denominator is 0 (PySODMetrics' rule)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, dtype=np.float64),
                                                 np.asarray(denominator, dtype=np.float64))
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=denominator != 0)


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


def _precision_recall(prediction, mask):
    levels = (prediction * 255).astype(np.uint8)
    salient_histogram = np.bincount(levels[mask], minlength=NUM_THRESHOLDS)
    background_histogram = np.bincount(levels[~mask], minlength=NUM_THRESHOLDS)
    # A reversed cumulative sum counts, for every threshold t at once, the pixels with level >= t.
    true_positives = np.cumsum(salient_histogram[::-1])[::-1]
    false_positives = np.cumsum(background_histogram[::-1])[::-1]
    precision = _safe_divide(true_positives, true_positives + false_positives)
    recall = _safe_divide(true_positives, np.count_nonzero(mask))
    return precision, recall


def precision_recall_curve(prediction, mask, min_max_normalize=True):
    """Precision and recall of one map at the 256 thresholds, index t predicting level >= t salient."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _precision_recall(prediction, mask)


class SaliencyMetrics:
    """Accumulates MAE, adaptive / mean / max F and the PR curve over a set of (map, mask) pairs.

    Per-image results are folded into running sums, so memory does not grow with the number of
    images. ``results()`` can be called at any time, and again after more ``update`` calls.
    """

    def __init__(self, beta_squared=BETA_SQUARED, min_max_normalize=True):
        self.beta_squared = beta_squared
        self.min_max_normalize = min_max_normalize
        self.count = 0
        self._precision_sum = np.zeros(NUM_THRESHOLDS)
        self._recall_sum = np.zeros(NUM_THRESHOLDS)
        self._f_curve_sum = np.zeros(NUM_THRESHOLDS)
        self._adaptive_f_sum = 0.0
        self._absolute_error_sum = 0.0

    def update(self, prediction, mask):
        """Add one image: ``prediction`` (H, W) float in [0, 1] or uint8, ``mask`` (H, W) array or a mask file path."""
        prediction, mask = _prepare_pair(prediction, mask, self.min_max_normalize)
        precision, recall = _precision_recall(prediction, mask)
        self._precision_sum += precision
        self._recall_sum += recall
        self._f_curve_sum += f_measure(precision, recall, self.beta_squared)
        self._adaptive_f_sum += _adaptive_f(prediction, mask, self.beta_squared)
        self._absolute_error_sum += np.mean(np.abs(prediction - mask))
        self.count += 1

    def __len__(self):
        return self.count

    def results(self):
        """A dict of the dataset metrics (floats) and curves (arrays of 256, thresholds 0..255).

        Keys: ``max_f``, ``mean_f``, ``adaptive_f``, ``mae``, ``max_f_toolbox``, ``mean_f_toolbox``,
        ``count``, and the curves ``precision``, ``recall`` (means over images) and ``f_curve``
        (mean of the per-image F curves).
        """
        if self.count == 0:
            raise ValueError("no images were added: call update(prediction, mask) before results()")
        precision = self._precision_sum / self.count
        recall = self._recall_sum / self.count
        f_curve = self._f_curve_sum / self.count
        toolbox_f_curve = f_measure(precision, recall, self.beta_squared)
        return {
            "max_f": float(f_curve.max()),
            "mean_f": float(f_curve.mean()),
            "adaptive_f": self._adaptive_f_sum / self.count,
            "mae": float(self._absolute_error_sum / self.count),
            "max_f_toolbox": float(toolbox_f_curve.max()),
            "mean_f_toolbox": float(toolbox_f_curve.mean()),
            "count": self.count,
            "precision": precision,
            "recall": recall,
            "f_curve": f_curve,
        }


def evaluate(predictions, masks, beta_squared=BETA_SQUARED, min_max_normalize=True):
    """``SaliencyMetrics.results()`` over paired iterables of maps and masks."""
    metrics = SaliencyMetrics(beta_squared, min_max_normalize)
    for prediction, mask in zip(predictions, masks, strict=True):
        metrics.update(prediction, mask)
    return metrics.results()
