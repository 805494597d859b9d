"""Every metric of ``minimenet.metrics`` over a dataset: ``SaliencyMetrics`` and ``evaluate``.

Per-image scores come from the metric modules (``fmeasure``: Achanta et al., CVPR 2009, and
Perazzi et al., CVPR 2012; ``structure``: Fan et al., ICCV 2017; ``enhanced``: Fan et al., IJCAI
2018; ``weighted``: Margolin et al., CVPR 2014) and are averaged over images, as PySODMetrics 1.6
averages them; ``max_f_toolbox``/``mean_f_toolbox`` follow the MATLAB SOD toolbox instead (see
``minimenet.metrics.fmeasure`` for the two conventions).
"""
import numpy as np

from .enhanced import _adaptive_e, _e_measure_from_counts
from .fmeasure import BETA_SQUARED, _adaptive_f, _precision_recall, f_measure
from .prepare import NUM_THRESHOLDS, _positive_counts, _prepare_pair
from .structure import _s_measure
from .weighted import _weighted_f


class SaliencyMetrics:
    """Accumulates every metric of ``minimenet.metrics`` over a set of (map, mask) pairs.

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
