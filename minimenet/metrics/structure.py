"""The S-measure (structure measure), averaged over images by ``minimenet.metrics.dataset``.

Source: Fan, Cheng, Liu, Li and Borji, "Structure-measure: a new way to evaluate foreground maps",
ICCV 2017; the numbers are checked against PySODMetrics 1.6 (``py_sod_metrics.Smeasure``), which
follows the authors' MATLAB code. ``EPS`` is MATLAB's eps, added where the reference code adds it.

``s_measure``: 0.5 x object similarity + 0.5 x region similarity, clipped at 0. Object: for the
foreground values x and the background values 1 - x, 2 mean / (mean^2 + 1 + std + eps) (std with
n - 1), weighted by the two areas. Region: the image is cut into four quadrants at the mask's
centroid (rounded half to even, as NumPy rounds, plus one), and each quadrant's SSIM-like score
4 mu_x mu_y s_xy / ((mu_x^2 + mu_y^2)(s_x + s_y) + eps) is weighted by its area (1 when both the
numerator and the denominator are 0). An empty mask gives 1 - mean(map), a full one mean(map).
Where the centroid falls on the last row or column a quadrant is empty: PySODMetrics and the MATLAB
code give NaN there; here that quadrant (whose weight is 0) adds 0.
"""
import numpy as np

from .prepare import EPS, _prepare_pair

S_MEASURE_ALPHA = 0.5


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
