"""Launcher for the centroid metric loss of ``kernels/metric_loss.cu`` (MEnet, Eq. 3, with hard
mining); ``minimenet.losses.metric_loss_arrays`` is its NumPy reference."""
import functools
from typing import NamedTuple

from ..backend import array_module
from ..conv_geometry import INT32_ELEMENTS, ceil_div
from ..mining import METRIC_GRADIENTS, check_label_shape, hard_negative_mask
from . import sources
from .launch import launch

KERNEL_FILE = "metric_loss.cu"
_GRID_LIMIT = 65535  # CUDA's limit on gridDim.y and gridDim.z (channels and batch ride on them)


@functools.lru_cache(maxsize=None)
def _block():
    return sources.int_constant(KERNEL_FILE, "METRIC_BLOCK")


class MetricStages(NamedTuple):
    """Everything the kernels computed, for tests and debugging. Region r = 1 is salient, 0
    background; ``mined_sums``/``mined_counts`` are None for the "authors" gradient."""
    loss: object          # 0-d float32: sum_n sum_i m_i term_i / P
    grad: object          # (B, C, H, W) float32
    terms: object         # (B, P) float32: ||y_i - c_own||^2 - ||y_i - c_other||^2
    mask: object          # (B, P) int32: the hard-mining mask m
    sums: object          # (B, 2, C) float32: sum of y over each region
    counts: object        # (B, 2) int32: pixels in each region
    mined_sums: object    # (B, 2, C) float32: sum of m y over each region
    mined_counts: object  # (B, 2) int32: mined pixels in each region


def metric_loss(y, labels, gradient="authors"):
    """``(loss, grad)`` for unit features y (B, C, H, W) and labels (B, H, W) with 1 = salient,
    0 = background: ``losses.metric_loss_arrays(y, labels, gradient)`` in float32 on the
    kernels. ``loss`` is a 0-d float32 array, ``grad`` has y's shape."""
    stages = metric_loss_stages(y, labels, gradient)
    return stages.loss, stages.grad


def metric_loss_stages(y, labels, gradient="authors"):
    """``metric_loss`` keeping every intermediate result (a ``MetricStages``)."""
    if gradient not in METRIC_GRADIENTS:
        raise ValueError(f"metric_loss: gradient must be one of {METRIC_GRADIENTS}, got {gradient!r}")
    xp = array_module(y)
    if y.ndim != 4:
        raise ValueError(f"metric_loss: y must have shape (B, C, H, W), got {tuple(y.shape)}")
    y = xp.ascontiguousarray(y, dtype=xp.float32)
    labels = xp.ascontiguousarray(labels, dtype=xp.int32)
    batch, channels, height, width = y.shape
    check_label_shape("metric_loss", y, labels)
    if y.size == 0:
        raise ValueError(f"metric_loss: y {tuple(y.shape)} is empty; the loss needs at least one image, channel and pixel")
    if y.size >= INT32_ELEMENTS:
        raise ValueError("metric_loss: y has 2^31 elements or more; the kernels index with 32-bit ints, so split the batch")
    if channels > _GRID_LIMIT or batch > _GRID_LIMIT:
        raise ValueError(f"metric_loss: {channels} channels and batch {batch}: the kernels' grid takes at most {_GRID_LIMIT} of each")
    pixels = height * width
    block = (_block(), 1, 1)
    pixel_blocks = ceil_div(pixels, _block())

    def region_sums(weights):
        block_sums = xp.empty((pixel_blocks, batch, 2, channels), dtype=xp.float32)
        block_counts = xp.empty((pixel_blocks, batch, 2), dtype=xp.int32)
        launch(KERNEL_FILE, "metric_region_sums", (pixel_blocks, channels, batch), block,
               (y, labels, weights, block_sums, block_counts, channels, pixels))
        return block_sums.sum(axis=0), block_counts.sum(axis=0, dtype=xp.int32)

    sums, counts = region_sums(xp.ones((batch, pixels), dtype=xp.int32))
    terms = xp.empty((batch, pixels), dtype=xp.float32)
    launch(KERNEL_FILE, "metric_terms", (pixel_blocks, batch, 1), block,
           (y, labels, sums, counts, terms, channels, pixels))
    mask = xp.ascontiguousarray(hard_negative_mask(terms, labels.reshape(batch, pixels)), dtype=xp.int32)
    exact = gradient == "exact"
    if exact:
        mined_sums, mined_counts = region_sums(mask)
        mined = (mined_sums, mined_counts)
    else:  # not read by the kernel; it still needs arrays to point at
        mined = (xp.zeros(1, dtype=xp.float32), xp.zeros(1, dtype=xp.int32))
    grad = xp.empty_like(y)
    block_losses = xp.empty((batch, pixel_blocks), dtype=xp.float32)
    launch(KERNEL_FILE, "metric_loss_and_grad", (pixel_blocks, batch, 1), block,
           (y, labels, terms, mask, sums, counts, *mined, grad, block_losses, channels, pixels, int(exact)))
    return MetricStages(block_losses.sum(), grad, terms, mask, sums, counts,
                        *(mined if exact else (None, None)))
