"""Launcher for the centroid metric loss of ``kernels/metric_loss.cu`` (MEnet, Eq. 3)."""
import functools

from ..backend import array_module
from . import sources
from .launch import launch

KERNEL_FILE = "metric_loss.cu"


@functools.lru_cache(maxsize=None)
def _block():
    return sources.int_constant(KERNEL_FILE, "METRIC_BLOCK")


def metric_loss(f, labels):
    """``(loss, grad)`` for L2-normalised features f (B, C, H, W) and labels (B, H, W) with
    1 = salient, 0 = background. ``loss`` is a 0-d float32 array, ``grad`` has f's shape. An image
    that is all salient or all background contributes 0 to both."""
    xp = array_module(f)
    f = xp.ascontiguousarray(f, dtype=xp.float32)
    labels = xp.ascontiguousarray(labels, dtype=xp.int32)
    batch, channels, height, width = f.shape
    if tuple(labels.shape) != (batch, height, width):
        raise ValueError(f"metric_loss: labels have shape {tuple(labels.shape)}, expected (B, H, W) = {(batch, height, width)} to match f {tuple(f.shape)}")
    pixels = height * width
    if f.size >= 2**31:
        raise ValueError("metric_loss: f has 2^31 elements or more; the kernels index with 32-bit ints, so split the batch")

    region_sums = xp.zeros((batch, 2, channels), dtype=xp.float32)  # [n, 1] salient, [n, 0] background
    salient_counts = xp.zeros(batch, dtype=xp.int32)
    grad = xp.empty_like(f)
    loss = xp.zeros(1, dtype=xp.float32)
    block = (_block(), 1, 1)
    pixel_blocks = -(-pixels // _block())
    launch(KERNEL_FILE, "metric_region_sums", (pixel_blocks, channels, batch), block,
           (f, labels, region_sums, salient_counts, channels, pixels))
    launch(KERNEL_FILE, "metric_terms_and_grad", (pixel_blocks, batch, 1), block,
           (f, labels, region_sums, salient_counts, grad, loss, batch, channels, pixels))
    return loss.reshape(()), grad
