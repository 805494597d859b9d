"""Shared by the op tests (test_conv, test_norm, test_resize, test_tensor): the gradient-check
tolerances and plain-loop references written straight from the definitions.

Gradient checks: ``minimenet.gradcheck`` in float64 with central differences (eps 1e-5), passing
when every checked element has |analytic - numeric| <= rtol * max(|analytic|, |numeric|, floor)
with rtol = 1e-6 and the absolute floor 1e-3 (below it a gradient counts as zero and is judged by
absolute error, 1e-9). They run on NumPy only: float64 differences are backend-independent maths.

Forward values: convolution, transposed convolution, batch norm and resize are compared with the
Python loops below (slow, so the inputs are tiny), in float32 and float64 on every available
backend.
"""
import itertools
import math

import numpy as np

from minimenet import Tensor, gradcheck

RTOL, FLOOR = 1e-6, 1e-3


def leaf(rng, shape, requires_grad=True):
    return Tensor(rng.standard_normal(shape), requires_grad=requires_grad)


def check(fn, inputs, max_elements=120):
    """Gradient check with the tolerances stated in the module docstring; raises on failure."""
    return gradcheck(fn, inputs, rtol=RTOL, floor=FLOOR, max_elements=max_elements)


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def conv2d_loop(x, w, b, stride, padding):
    """y[n, o, r, c] = b[o] + sum_{i, u, v} w[o, i, u, v] x[n, i, r*sh - ph + u, c*sw - pw + v], zeros outside."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    n_batch, ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n_batch, co, ho, wo))
    for n, o, r, c in itertools.product(range(n_batch), range(co), range(ho), range(wo)):
        total = 0.0 if b is None else b[o]
        for i, u, v in itertools.product(range(ci), range(kh), range(kw)):
            p, q = r * sh - ph + u, c * sw - pw + v
            if 0 <= p < h and 0 <= q < wd:
                total += w[o, i, u, v] * x[n, i, p, q]
        y[n, o, r, c] = total
    return y


def conv_transpose2d_loop(x, w, b, stride, padding, output_padding):
    """Scatter: y[n, o, r*sh - ph + u, c*sw - pw + v] += x[n, i, r, c] w[i, o, u, v], kept where in range."""
    (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
    n_batch, ci, h, wd = x.shape
    _, co, kh, kw = w.shape
    ho, wo = (h - 1) * sh - 2 * ph + kh + oph, (wd - 1) * sw - 2 * pw + kw + opw
    y = np.zeros((n_batch, co, ho, wo))
    for n, i, r, c, o, u, v in itertools.product(range(n_batch), range(ci), range(h), range(wd), range(co),
                                                 range(kh), range(kw)):
        p, q = r * sh - ph + u, c * sw - pw + v
        if 0 <= p < ho and 0 <= q < wo:
            y[n, o, p, q] += x[n, i, r, c] * w[i, o, u, v]
    if b is not None:
        y += np.asarray(b).reshape(1, -1, 1, 1)
    return y


def batch_norm_loop(x, gamma, beta, eps):
    """Training-mode batch norm: per channel, the biased mean and variance of its N*H*W values."""
    y = np.zeros_like(x, dtype=np.float64)
    for ch in range(x.shape[1]):
        values = [float(v) for v in x[:, ch].ravel()]
        mu = math.fsum(values) / len(values)
        var = math.fsum((v - mu) ** 2 for v in values) / len(values)
        y[:, ch] = gamma[ch] * (x[:, ch] - mu) / math.sqrt(var + eps) + beta[ch]
    return y


def bilinear_source(o, n_in, n_out):
    """Half-pixel centres, as resize.py's docstring states: s = (o + 0.5) n_in / n_out - 0.5, clamped at 0."""
    s = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
    lo = int(math.floor(s))
    frac = s - lo
    return min(lo, n_in - 1), min(lo + 1, n_in - 1), frac


def resize_loop(x, size):
    n_batch, ch, h, wd = x.shape
    ho, wo = size
    y = np.zeros((n_batch, ch, ho, wo))
    for r in range(ho):
        r0, r1, fr = bilinear_source(r, h, ho)
        for c in range(wo):
            c0, c1, fc = bilinear_source(c, wd, wo)
            y[:, :, r, c] = ((1 - fr) * (1 - fc) * x[:, :, r0, c0] + (1 - fr) * fc * x[:, :, r0, c1]
                             + fr * (1 - fc) * x[:, :, r1, c0] + fr * fc * x[:, :, r1, c1])
    return y


def away_from_zero(rng, shape):
    return Tensor(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape), requires_grad=True)


DTYPES = [np.float32, np.float64]


TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def on(xp, array, dtype):
    return Tensor(xp.asarray(array, dtype=dtype))
