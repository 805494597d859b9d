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

The structure and alignment measures (all averaged over images; ``EPS`` is MATLAB's eps, added where
the reference code adds it):

* S-measure (Fan, Cheng, Liu, Li and Borji, "Structure-measure: a new way to evaluate foreground
  maps", ICCV 2017), ``s_measure``: 0.5 x object similarity + 0.5 x region similarity, clipped at 0.
  Object: for the foreground values x and the background values 1 - x, 2 mean / (mean^2 + 1 + std +
  eps) (std with n - 1), weighted by the two areas. Region: the image is cut into four quadrants at
  the mask's centroid (rounded half to even, as NumPy rounds, plus one), and each quadrant's SSIM-like
  score 4 mu_x mu_y s_xy / ((mu_x^2 + mu_y^2)(s_x + s_y) + eps) is weighted by its area (1 when
  both the numerator and the denominator are 0). An empty mask gives 1 - mean(map), a full one
  mean(map). Where the centroid falls on the last row or column a quadrant is empty: PySODMetrics
  and the MATLAB code give NaN there; here that quadrant (whose weight is 0) adds 0.
* E-measure (Fan, Gong, Cao, Ren, Cheng and Borji, "Enhanced-alignment measure for binary
  foreground map evaluation", IJCAI 2018): the map binarised at a threshold and the mask, each minus
  its mean, give the alignment 2 a b / (a^2 + b^2 + eps) per pixel, enhanced as (1 + alignment)^2 / 4
  and summed over the image, divided by (pixels - 1 + eps) (so a perfect map scores n / (n - 1)).
  ``max_e`` and ``mean_e`` are the maximum and mean of the per-image curves' average over the 256
  thresholds above (``e_curve``, index t = level >= t); ``adaptive_e`` binarises at
  min(2 x mean, 1). An empty mask scores the fraction of pixels predicted background, a full one
  the fraction predicted salient (over pixels - 1).
* Weighted F-measure (Margolin, Zelnik-Manor and Tal, "How to evaluate foreground maps?", CVPR
  2014), ``weighted_f``: with E = |map - mask|, every background pixel takes the error of its nearest
  foreground pixel (exact Euclidean feature transform, ``nearest_true_pixels``, ties resolved as
  SciPy's ``distance_transform_edt`` resolves them), the result is smoothed by MATLAB's 7 x 7
  Gaussian of sigma 5 (zero padding), and a foreground pixel keeps the smaller of E and the smoothed
  error; background errors are weighted 2 - 0.5^(d / 5) by their distance d to the foreground. Then
  R = 1 - mean weighted error on the foreground, P = TPw / (TPw + FPw + eps) and the score is
  2 R P / (R + P + eps) (beta = 1); an empty mask scores 0.

Cost: about 30 ms more per 321 x 481 image than MAE and F alone on a loaded 2-core machine, mostly
the feature transform.
"""
import os

import numpy as np

from .backend import to_numpy
from .data import binarize_mask, read_mask

BETA_SQUARED = 0.3
NUM_THRESHOLDS = 256
EPS = np.spacing(1)  # MATLAB's eps, which the reference implementations add to denominators
S_MEASURE_ALPHA = 0.5
WEIGHTED_F_BETA = 1.0  # enters as (1 + beta) R P / (R + beta P), i.e. it plays the role of beta^2
WEIGHTED_F_KERNEL_SIZE = 7
WEIGHTED_F_SIGMA = 5


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


# --- S-measure (Fan et al. 2017) ------------------------------------------------------------------


def _object_similarity(values):
    """2 mean / (mean^2 + 1 + std + eps) of a region's values (std with n - 1, 0 for a single pixel)."""
    mean = np.mean(values)
    deviation = np.std(values, ddof=1) if values.size > 1 else 0
    return 2 * mean / (mean ** 2 + 1 + deviation + EPS)


def _region_ssim(prediction, mask):
    """The S-measure's SSIM of one quadrant, as PySODMetrics (and the authors' MATLAB code) write it."""
    count = prediction.size
    x = np.mean(prediction)
    y = np.mean(mask)
    sigma_x = np.sum((prediction - x) ** 2) / (count - 1 + EPS)
    sigma_y = np.sum((mask - y) ** 2) / (count - 1 + EPS)
    sigma_xy = np.sum((prediction - x) * (mask - y)) / (count - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x ** 2 + y ** 2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _s_measure(prediction, mask, alpha=S_MEASURE_ALPHA):
    foreground_share = np.mean(mask)
    if foreground_share == 0:
        return float(1 - np.mean(prediction))
    if foreground_share == 1:
        return float(np.mean(prediction))
    # Object-aware part: foreground and background similarity weighted by their areas.
    object_score = (_object_similarity(prediction[mask]) * foreground_share
                    + _object_similarity((1 - prediction)[~mask]) * (1 - foreground_share))
    # Region-aware part: four quadrants around the mask's centroid, rounded half to even as NumPy
    # (hence PySODMetrics) rounds, plus one so that the top-left quadrant includes the centroid.
    height, width = mask.shape
    row_counts, column_counts = mask.sum(axis=1), mask.sum(axis=0)
    count = np.count_nonzero(mask)
    cy = int(np.round(np.dot(np.arange(height), row_counts) / count)) + 1
    cx = int(np.round(np.dot(np.arange(width), column_counts) / count)) + 1
    area = height * width
    weights = [cx * cy / area, cy * (width - cx) / area, (height - cy) * cx / area]
    weights.append(1 - weights[0] - weights[1] - weights[2])
    region_score = 0.0
    mask_values = mask.astype(np.float64)
    for weight, rows, columns in zip(weights, (slice(0, cy), slice(0, cy), slice(cy, height), slice(cy, height)),
                                     (slice(0, cx), slice(cx, width), slice(0, cx), slice(cx, width))):
        quadrant = prediction[rows, columns]
        if quadrant.size:  # an empty quadrant has weight 0 (PySODMetrics gives NaN there)
            region_score += _region_ssim(quadrant, mask_values[rows, columns]) * weight
    return float(max(0.0, alpha * object_score + (1 - alpha) * region_score))


def s_measure(prediction, mask, alpha=S_MEASURE_ALPHA, min_max_normalize=True):
    """Structure measure of one map: alpha x object similarity + (1 - alpha) x region similarity."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _s_measure(prediction, mask, alpha)


# --- E-measure (Fan et al. 2018) ------------------------------------------------------------------


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


# --- Weighted F-measure (Margolin et al. 2014) ----------------------------------------------------


def nearest_true_pixels(mask):
    """Exact Euclidean feature transform: for every pixel, the nearest True pixel of ``mask``.

    Returns ``(squared_distance, row, column)``, three integer (H, W) arrays; ``mask`` must hold a
    True pixel. Among equally near True pixels the one with the smallest column, then the smallest
    row, is chosen, which is what ``scipy.ndimage.distance_transform_edt(~mask, return_indices=True)``
    returns (the weighted F-measure depends on that choice).

    Two separable passes (Saito and Toriwaki; Maurer et al.): the nearest True pixel within each
    column, then along each row the lower envelope of the parabolas g_j + (x - j)^2 over the
    columns j that hold a True pixel. The envelope is the lower convex hull of the points
    (j, g_j + j^2), found for all rows at once by repeatedly dropping every point that is not below
    the segment joining its surviving neighbours (only the neighbours of dropped points are tested
    again); integer arithmetic throughout, so the distances are exact.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    columns = np.flatnonzero(mask.any(axis=0))
    if columns.size == 0:
        raise ValueError("the mask has no True pixel: no nearest one to find")
    n = columns.size
    in_columns = mask[:, columns]
    # int32 is exact while the hull test's products, (squared distance) x (column difference), fit.
    integer = np.int32 if (height * height + width * width) * 2 * width < 2 ** 31 else np.int64
    rows = np.arange(height, dtype=integer)[:, None]
    far = 2 * (height + width) + 2
    above = np.maximum.accumulate(np.where(in_columns, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(in_columns, rows, far)[::-1], axis=0)[::-1]
    nearest_row = np.where(rows - above <= below - rows, above, below)  # ties go to the row above
    column_values = columns.astype(integer)
    cost = (nearest_row - rows) ** 2 + column_values ** 2  # (height, n): the hull's points
    removed = np.zeros((height, n), bool)
    if n > 2:  # the first round on whole rows, by slicing
        left, middle, right = cost[:, :-2], cost[:, 1:-1], cost[:, 2:]
        removed[:, 1:-1] = ((middle - left) * (column_values[2:] - column_values[1:-1])
                            >= (right - middle) * (column_values[1:-1] - column_values[:-2]))
    removed = removed.ravel()
    cost = cost.ravel()
    column_of = np.broadcast_to(column_values, (height, n)).ravel()
    alive = np.flatnonzero(~removed)
    previous = np.empty(height * n, np.intp)
    following = np.empty(height * n, np.intp)
    previous[alive[1:]] = alive[:-1]  # a row's first and last points are never dropped, so these
    following[alive[:-1]] = alive[1:]  # links never cross rows for the points that are tested
    gap = np.diff(alive) > 1
    touched = np.zeros(alive.size, bool)
    touched[:-1] |= gap
    touched[1:] |= gap
    to_test = alive[touched]
    slot = np.empty(height * n, np.intp)
    while to_test.size:
        position = to_test % n
        to_test = to_test[(position > 0) & (position < n - 1)]
        before, after = previous[to_test], following[to_test]
        own_cost, own_column = cost[to_test], column_of[to_test]
        drop = ((own_cost - cost[before]) * (column_of[after] - own_column)
                >= (cost[after] - own_cost) * (own_column - column_of[before]))
        dropped = to_test[drop]
        if not dropped.size:
            break
        removed[dropped] = True
        before, after = previous[dropped], following[dropped]
        while True:  # walk past runs of dropped points to the surviving neighbours
            inside = removed[before]
            if not inside.any():
                break
            before[inside] = previous[before[inside]]
        while True:
            inside = removed[after]
            if not inside.any():
                break
            after[inside] = following[after[inside]]
        following[before] = after
        previous[after] = before
        to_test = np.concatenate([before, after])
        order = np.arange(to_test.size)
        slot[to_test] = order  # keeps one copy of each point: the last write wins
        to_test = to_test[slot[to_test] == order]
    alive = np.flatnonzero(~removed)
    row_of = alive // n
    hull_column = column_of[alive]
    hull_cost = cost[alive]
    # Hull point k + 1 takes over from point k for x > (c_k+1 - c_k) / (2 (j_k+1 - j_k)); at a tie
    # the smaller column keeps it.
    pairs = np.flatnonzero(row_of[1:] == row_of[:-1])
    takeover = np.floor_divide(hull_cost[pairs + 1] - hull_cost[pairs],
                               2 * (hull_column[pairs + 1] - hull_column[pairs])) + 1
    np.clip(takeover, 0, width, out=takeover)
    steps = np.bincount(row_of[pairs] * (width + 1) + takeover, minlength=height * (width + 1))
    hull_index = np.cumsum(steps.reshape(height, width + 1)[:, :width], axis=1)
    hull_index += np.searchsorted(row_of, np.arange(height))[:, None]
    chosen = alive[hull_index]
    best_row = nearest_row.ravel()[chosen]
    best_column = column_of[chosen]
    squared_distance = (best_row - rows) ** 2 + (best_column - np.arange(width)) ** 2
    return squared_distance, best_row, best_column


def _gaussian_kernel_1d(size=WEIGHTED_F_KERNEL_SIZE, sigma=WEIGHTED_F_SIGMA):
    """MATLAB's fspecial('gaussian', [size size], sigma) is the outer product of this with itself."""
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets * offsets) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def _filter_zero_padded(values, kernel):
    """Separable 2-D correlation with zero padding (the kernel is symmetric, so also convolution)."""
    radius = kernel.size // 2
    padded = np.pad(values, radius)
    height, width = values.shape
    across = np.zeros((height + 2 * radius, width))
    for offset, weight in enumerate(kernel):
        across += weight * padded[:, offset:offset + width]
    result = np.zeros((height, width))
    for offset, weight in enumerate(kernel):
        result += weight * across[offset:offset + height]
    return result


def _weighted_f(prediction, mask, beta=WEIGHTED_F_BETA):
    if not mask.any():
        return 0.0
    error = np.abs(prediction - mask)
    background = ~mask
    squared_distance, nearest_row, nearest_column = nearest_true_pixels(mask)
    # Pixel dependency: a background pixel takes the error of its nearest foreground pixel, then the
    # errors are smoothed by a 7 x 7 Gaussian (sigma 5), and a foreground pixel keeps the smaller
    # of its error and the smoothed one. Only the smoothed values on the foreground are used, so
    # the filter runs on the foreground's bounding box widened by the kernel's radius.
    spread_error = np.where(background, error[nearest_row, nearest_column], error)
    radius = WEIGHTED_F_KERNEL_SIZE // 2
    salient_rows, salient_columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom = max(salient_rows[0] - radius, 0), min(salient_rows[-1] + radius + 1, mask.shape[0])
    left, right = max(salient_columns[0] - radius, 0), min(salient_columns[-1] + radius + 1, mask.shape[1])
    smoothed = np.zeros_like(error)
    smoothed[top:bottom, left:right] = _filter_zero_padded(spread_error[top:bottom, left:right], _gaussian_kernel_1d())
    # (Zero padding at the box's edge is right: the box reaches the image border or lies more than
    # the radius away from every foreground pixel, where the filtered values are not used.)
    min_error = np.where(mask & (smoothed < error), smoothed, error)
    # Pixel importance: background errors weigh 2 - 0.5^(distance / 5), more far from the object.
    importance = np.where(background, 2 - np.exp(np.log(0.5) / 5 * np.sqrt(squared_distance)), 1.0)
    weighted_error = min_error * importance
    true_positives = np.count_nonzero(mask) - np.sum(weighted_error[mask])
    false_positives = np.sum(weighted_error[background])
    recall = 1 - np.mean(weighted_error[mask])
    precision = true_positives / (true_positives + false_positives + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


def weighted_f_measure(prediction, mask, beta=WEIGHTED_F_BETA, min_max_normalize=True):
    """Weighted F-measure of one map (0 when the mask is empty, as in PySODMetrics)."""
    prediction, mask = _prepare_pair(prediction, mask, min_max_normalize)
    return _weighted_f(prediction, mask, beta)


class SaliencyMetrics:
    """Accumulates every metric of the module doc over a set of (map, mask) pairs.

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
