"""Salient-object detection metrics: MAE, the F-measure (adaptive, mean, max), precision-recall
curves, the S-measure, the E-measure (adaptive, mean, max) and the weighted F-measure.

The definitions are those of PySODMetrics 1.6 (``py_sod_metrics.Fmeasure``/``FmeasureV2``, ``MAE``,
``Smeasure``, ``Emeasure``, ``WeightedFmeasure``), which follow the authors' MATLAB code, reproduced
step by step in NumPy (no SciPy or OpenCV) so that the numbers agree with it to floating-point
rounding (the tests check 1e-6; the differences measured are about 1e-16):

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

One module per family, each citing its source: ``fmeasure`` (F-measure, precision-recall,
adaptive F, MAE), ``structure`` (S-measure), ``enhanced`` (E-measure), ``weighted`` (weighted
F-measure), and ``maps`` (preparing a map and a mask by the rules above). All are averaged over
images by ``SaliencyMetrics`` below; ``EPS`` is MATLAB's eps, added where the reference code adds it.
"""
import numpy as np

from .enhanced import _adaptive_e, _e_measure_from_counts, adaptive_e_measure, e_measure_curve
from .fmeasure import (_adaptive_f, _positive_counts, _precision_recall, adaptive_f_measure, f_measure,
                       mean_absolute_error, precision_recall_curve)
from .maps import BETA_SQUARED, NUM_THRESHOLDS, _prepare_pair, prepare_ground_truth, prepare_prediction
from .structure import _s_measure, s_measure
from .weighted import _weighted_f, nearest_true_pixels, weighted_f_measure


class SaliencyMetrics:
    """Accumulates every metric of the package over a set of (map, mask) pairs.

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
        self._s_measure_sum = 0.0
        self._e_curve_sum = np.zeros(NUM_THRESHOLDS)
        self._adaptive_e_sum = 0.0
        self._weighted_f_sum = 0.0

    def update(self, prediction, mask):
        """Add one image: ``prediction`` (H, W) float in [0, 1] or uint8, ``mask`` (H, W) array or a mask file path."""
        prediction, mask = _prepare_pair(prediction, mask, self.min_max_normalize)
        counts = _positive_counts(prediction, mask)
        precision, recall = _precision_recall(prediction, mask, counts)
        self._precision_sum += precision
        self._recall_sum += recall
        self._f_curve_sum += f_measure(precision, recall, self.beta_squared)
        self._adaptive_f_sum += _adaptive_f(prediction, mask, self.beta_squared)
        self._absolute_error_sum += np.mean(np.abs(prediction - mask))
        self._s_measure_sum += _s_measure(prediction, mask)
        self._e_curve_sum += _e_measure_from_counts(*counts, np.count_nonzero(mask), mask.size)
        self._adaptive_e_sum += _adaptive_e(prediction, mask)
        self._weighted_f_sum += _weighted_f(prediction, mask)
        self.count += 1

    def __len__(self):
        return self.count

    def results(self):
        """A dict of the dataset metrics (floats) and curves (arrays of 256, thresholds 0..255).

        Keys: ``max_f``, ``mean_f``, ``adaptive_f``, ``mae``, ``max_f_toolbox``, ``mean_f_toolbox``,
        ``s_measure``, ``max_e``, ``mean_e``, ``adaptive_e``, ``weighted_f``, ``count``, and the
        curves ``precision``, ``recall`` (means over images), ``f_curve`` and ``e_curve`` (means of
        the per-image F and E curves).
        """
        if self.count == 0:
            raise ValueError("no images were added: call update(prediction, mask) before results()")
        precision = self._precision_sum / self.count
        recall = self._recall_sum / self.count
        f_curve = self._f_curve_sum / self.count
        toolbox_f_curve = f_measure(precision, recall, self.beta_squared)
        e_curve = self._e_curve_sum / self.count
        return {
            "max_f": float(f_curve.max()),
            "mean_f": float(f_curve.mean()),
            "adaptive_f": self._adaptive_f_sum / self.count,
            "mae": float(self._absolute_error_sum / self.count),
            "max_f_toolbox": float(toolbox_f_curve.max()),
            "mean_f_toolbox": float(toolbox_f_curve.mean()),
            "s_measure": self._s_measure_sum / self.count,
            "max_e": float(e_curve.max()),
            "mean_e": float(e_curve.mean()),
            "adaptive_e": self._adaptive_e_sum / self.count,
            "weighted_f": self._weighted_f_sum / self.count,
            "count": self.count,
            "precision": precision,
            "recall": recall,
            "f_curve": f_curve,
            "e_curve": e_curve,
        }


def evaluate(predictions, masks, beta_squared=BETA_SQUARED, min_max_normalize=True):
    """``SaliencyMetrics.results()`` over paired iterables of maps and masks."""
    metrics = SaliencyMetrics(beta_squared, min_max_normalize)
    for prediction, mask in zip(predictions, masks, strict=True):
        metrics.update(prediction, mask)
    return metrics.results()
