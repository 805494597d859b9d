"""The weighted F-measure and the exact Euclidean feature transform it needs.

Source: Margolin, Zelnik-Manor and Tal, "How to evaluate foreground maps?", CVPR 2014; the numbers
are checked against PySODMetrics 1.6 (``py_sod_metrics.WeightedFmeasure``), which follows the
authors' MATLAB code. ``EPS`` is MATLAB's eps, added where the reference code adds it.

``weighted_f``: with E = |map - mask|, every background pixel takes the error of its nearest
foreground pixel (exact Euclidean feature transform, ``nearest_true_pixels``, ties resolved as
SciPy's ``distance_transform_edt`` resolves them), the result is smoothed by MATLAB's 7 x 7 Gaussian
of sigma 5 (zero padding), and a foreground pixel keeps the smaller of E and the smoothed error;
background errors are weighted 2 - 0.5^(d / 5) by their distance d to the foreground. Then
R = 1 - mean weighted error on the foreground, P = TPw / (TPw + FPw + eps) and the score is
2 R P / (R + P + eps) (beta = 1); an empty mask scores 0.

The feature transform is most of the cost: about 30 ms per 321 x 481 image on a loaded 2-core
machine.
"""
import numpy as np

from .prepare import EPS, _prepare_pair

WEIGHTED_F_BETA = 1.0  # enters as (1 + beta) R P / (R + beta P), i.e. it plays the role of beta^2
WEIGHTED_F_KERNEL_SIZE = 7
WEIGHTED_F_SIGMA = 5


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
