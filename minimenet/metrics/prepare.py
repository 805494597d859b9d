"""Preparing a saliency map and its mask for the metrics, as PySODMetrics 1.6 prepares them.

PySODMetrics 1.6 (the reference implementation the numbers are checked against) follows the MATLAB
code of the metrics' authors; these are its rules, shared by every metric of ``minimenet.metrics``:

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
  them in the opposite order). ``_positive_counts`` gives the true and false positives at all 256
  thresholds at once, for the F-measure's and the E-measure's curves.
* A ratio with a zero denominator is 0 (``_safe_divide``); no epsilon is added there.
"""
import os

import numpy as np

from ..backend import to_numpy
from ..data import binarize_mask, read_mask

NUM_THRESHOLDS = 256
EPS = np.spacing(1)  # MATLAB's eps, which the reference implementations add to denominators


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


def _positive_counts(prediction, mask):
    """True and false positives at the 256 thresholds (index t: level >= t predicted salient)."""
    levels = (prediction * 255).astype(np.uint8)
    salient_histogram = np.bincount(levels[mask], minlength=NUM_THRESHOLDS)
    all_histogram = np.bincount(levels.ravel(), minlength=NUM_THRESHOLDS)
    # A reversed cumulative sum counts, for every threshold t at once, the pixels with level >= t.
    true_positives = np.cumsum(salient_histogram[::-1])[::-1]
    false_positives = np.cumsum((all_histogram - salient_histogram)[::-1])[::-1]
    return true_positives, false_positives
