"""Preparing a saliency map and its mask for every metric, the way PySODMetrics 1.6 does (see
the package's docstring for the rules), and the constants the metrics share."""
import os

import numpy as np

from ..backend import to_numpy
from ..data import binarize_mask, read_mask

BETA_SQUARED = 0.3
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
