"""Salient-object detection metrics: MAE, the F-measure (adaptive, mean, max), precision-recall
curves, the S-measure, the E-measure (adaptive, mean, max) and the weighted F-measure.

The definitions are those of PySODMetrics 1.6 (``py_sod_metrics.Fmeasure``/``FmeasureV2``, ``MAE``,
``Smeasure``, ``Emeasure``, ``WeightedFmeasure``), the reference implementation the numbers are
checked against, which follows the authors' MATLAB code, reproduced step by step in NumPy (no SciPy
or OpenCV) so that the numbers agree with it to floating-point rounding (the tests check 1e-6; the
differences measured are about 1e-16). One module per metric family, each citing its paper:

* ``metrics.prepare``: how a map and a mask are read, binarised and quantised to the 256
  thresholds, shared by all the metrics.
* ``metrics.fmeasure``: precision-recall, the F-measure (mean, max, adaptive; Achanta et al., CVPR
  2009) and MAE (Perazzi et al., CVPR 2012).
* ``metrics.structure``: the S-measure (Fan et al., ICCV 2017).
* ``metrics.enhanced``: the E-measure (Fan et al., IJCAI 2018).
* ``metrics.weighted``: the weighted F-measure (Margolin et al., CVPR 2014) and its exact Euclidean
  feature transform.
* ``metrics.dataset``: ``SaliencyMetrics`` and ``evaluate``, every metric above over a dataset.

General conventions: every metric is computed per image and averaged over images (the F and E
curves too, except the toolbox F below); ``EPS`` is MATLAB's eps, added where the reference code
adds it and nowhere else.

Cost: about 30 ms more per 321 x 481 image than MAE and F alone on a loaded 2-core machine, mostly
the feature transform of the weighted F-measure.
"""
from .prepare import EPS, NUM_THRESHOLDS, prepare_ground_truth, prepare_prediction
from .fmeasure import BETA_SQUARED, adaptive_f_measure, f_measure, mean_absolute_error, precision_recall_curve
from .structure import S_MEASURE_ALPHA, s_measure
from .enhanced import adaptive_e_measure, e_measure_curve
from .weighted import WEIGHTED_F_BETA, WEIGHTED_F_KERNEL_SIZE, WEIGHTED_F_SIGMA, nearest_true_pixels, weighted_f_measure
from .dataset import SaliencyMetrics, evaluate

__all__ = [
    "EPS", "NUM_THRESHOLDS", "prepare_ground_truth", "prepare_prediction",
    "BETA_SQUARED", "adaptive_f_measure", "f_measure", "mean_absolute_error", "precision_recall_curve",
    "S_MEASURE_ALPHA", "s_measure",
    "adaptive_e_measure", "e_measure_curve",
    "WEIGHTED_F_BETA", "WEIGHTED_F_KERNEL_SIZE", "WEIGHTED_F_SIGMA", "nearest_true_pixels", "weighted_f_measure",
    "SaliencyMetrics", "evaluate",
]
