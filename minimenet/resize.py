"""Resizing feature maps: nearest-neighbour block replication (MEnet's scale maps) and bilinear.

``upsample_nearest`` copies each pixel into an f x f block, the authors' resize layer for the
13 scale maps; its backward sums each block.

``resize`` is bilinear, as two small matrix products (kept for saliency maps and images).

Sampling convention: half-pixel centres (``align_corners=False``, as PyTorch's and OpenCV's
default). Output pixel o of a side resized from n_in to n_out samples the input at

    s = (o + 0.5) * n_in / n_out - 0.5,   clamped below at 0,

and blends pixels floor(s) and floor(s) + 1 (the last pixel repeats past the edge) with
weights 1 - (s - floor(s)) and s - floor(s). No anti-aliasing when shrinking, as in PyTorch's
``interpolate(mode="bilinear", align_corners=False)``. A 1 x 1 input spreads to a constant map.

Separable, so y = A_h x A_w^T with interpolation matrices A_h (H_out, H_in), A_w (W_out, W_in),
and the backward pass is the transpose: dx = A_h^T dy A_w.
"""
import numpy

from .tensor import Tensor


def interpolation_matrix(n_out, n_in, dtype=numpy.float64):
    """A (n_out, n_in) matrix whose row o holds the bilinear weights of output pixel o."""
    source = numpy.maximum((numpy.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    lower = numpy.minimum(numpy.floor(source).astype(int), n_in - 1)
    upper = numpy.minimum(lower + 1, n_in - 1)
    frac = source - lower
    matrix = numpy.zeros((n_out, n_in))
    numpy.add.at(matrix, (numpy.arange(n_out), lower), 1.0 - frac)
    numpy.add.at(matrix, (numpy.arange(n_out), upper), frac)
    return matrix.astype(dtype)


_device_matrices = {}


def _matrix_on(xp, n_out, n_in, dtype):
    """``interpolation_matrix`` as an array of ``xp``. On the GPU each one is built and copied to
    the device once and kept: otherwise every MEnet forward would build 26 of them on the host
    (13 scale maps, two matrices each) and send each through a pinned staging buffer, for only a
    few distinct sizes."""
    if xp is numpy:
        return interpolation_matrix(n_out, n_in, dtype)
    key = (n_out, n_in, numpy.dtype(dtype).str, xp.cuda.Device().id)
    if key not in _device_matrices:
        _device_matrices[key] = xp.asarray(interpolation_matrix(n_out, n_in, dtype))
    return _device_matrices[key]


def upsample_nearest(x, factor):
    """y[n, c, i, j] = x[n, c, i // f, j // f] for x (N, C, H, W) and an integer factor f >= 1.

    Backward: each input pixel fed the f x f block it was copied to, so dx sums that block of dy.
    """
    if x.ndim != 4:
        raise ValueError(f"upsample_nearest: input must be 4-D (batch, channels, height, width), got shape {x.shape}")
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"upsample_nearest: factor must be a positive int, got {factor!r}")
    n, c, h, w = x.shape
    if factor == 1:
        return x
    xp = x.xp
    y = xp.broadcast_to(x.data[:, :, :, None, :, None], (n, c, h, factor, w, factor)).reshape(n, c, h * factor, w * factor)

    def backward(g):
        return (g.reshape(n, c, h, factor, w, factor).sum(axis=(3, 5)),)
    return Tensor.from_op(y, (x,), backward, "upsample_nearest")


def resize(x, size):
    """Bilinear resize of x (N, C, H, W) to size = (H_out, W_out)."""
    if x.ndim != 4:
        raise ValueError(f"resize: input must be 4-D (batch, channels, height, width), got shape {x.shape}")
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(n, int) and n >= 1 for n in size)):
        raise ValueError(f"resize: size must be a pair of positive ints (height, width), got {size!r}")
    h_out, w_out = size
    xp = x.xp
    a_h = _matrix_on(xp, h_out, x.shape[2], x.dtype)
    a_w = _matrix_on(xp, w_out, x.shape[3], x.dtype)

    def backward(g):
        return (a_h.T @ g @ a_w,)
    return Tensor.from_op(a_h @ x.data @ a_w.T, (x,), backward, "resize")
