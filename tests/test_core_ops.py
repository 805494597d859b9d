"""The ops, gradient-checked over a grid of shapes and checked forward against plain loops.

Gradient checks: ``minimenet.gradcheck`` in float64 with central differences (eps 1e-5), passing
when every checked element has |analytic - numeric| <= rtol * max(|analytic|, |numeric|, floor)
with rtol = 1e-6 and the absolute floor 1e-3 (below it a gradient counts as zero and is judged by
absolute error, 1e-9). They run on NumPy only: float64 differences are backend-independent maths.

Forward values: convolution, transposed convolution, batch norm and resize are compared with
Python-loop implementations written here straight from the definitions (the loops are slow, so
the inputs are tiny), in float32 and float64 on every available backend. When PyTorch happens to
be importable they are also compared with it; that extra test skips when it is absent.
"""
import itertools
import math

import numpy as np
import pytest

from minimenet import (Tensor, add, batch_norm, concat, conv2d, conv_transpose2d, gradcheck, l2_normalize, mean,
                       mul, relu, reshape, resize)
from minimenet import conv
from minimenet import reduce_sum
from minimenet.backend import to_numpy
from minimenet.resize import upsample_nearest
from minimenet.tensor import tanh

RTOL, FLOOR = 1e-6, 1e-3


def leaf(rng, shape, requires_grad=True):
    return Tensor(rng.standard_normal(shape), requires_grad=requires_grad)


def check(fn, inputs, max_elements=120):
    """Gradient check with the tolerances stated in the module docstring; raises on failure."""
    return gradcheck(fn, inputs, rtol=RTOL, floor=FLOOR, max_elements=max_elements)


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


# ----------------------------------------------------------------------------------------------
# Loop references, straight from the definitions.

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


# ----------------------------------------------------------------------------------------------
# Gradient checks of the convolutions.

KERNELS = [1, 3, 4, 7, (2, 3)]
STRIDES = [1, 2, (2, 1)]
PADDINGS = [0, 1, (0, 1)]


def conv_input_hw(kernel):
    kh, kw = pair(kernel)
    return kh + 2, kw + 3  # non-square, and odd for even kernels (and even for odd ones)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_conv2d_gradcheck_grid(kernel, stride, padding, with_bias, rng):
    kh, kw = pair(kernel)
    x = leaf(rng, (2, 2, *conv_input_hw(kernel)))
    w = leaf(rng, (3, 2, kh, kw))
    b = leaf(rng, (3,)) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])
    report = check(lambda x, w, *b: conv2d(x, w, b[0] if b else None, stride=stride, padding=padding), inputs)
    assert len(report.rows) == len(inputs)


def test_conv2d_gradcheck_when_only_the_input_requires_grad(rng):
    x, w = leaf(rng, (2, 3, 5, 4)), leaf(rng, (2, 3, 3, 3), requires_grad=False)
    check(lambda x, w: conv2d(x, w, stride=2, padding=1), [x, w])


def test_conv2d_gradcheck_when_only_the_weight_requires_grad(rng):
    x, w = leaf(rng, (2, 3, 5, 4), requires_grad=False), leaf(rng, (2, 3, 3, 3))
    check(lambda x, w: conv2d(x, w, stride=1, padding=1), [x, w])


def conv_transpose_cases():
    for kernel, stride, padding in itertools.product(KERNELS, STRIDES, [0, 1]):
        (kh, kw), (sh, sw) = pair(kernel), pair(stride)
        for output_padding in {(0, 0), (sh - 1, sw - 1)}:
            h, w = 3, 2  # non-square input
            if (h - 1) * sh - 2 * padding + kh + output_padding[0] < 1 or (w - 1) * sw - 2 * padding + kw + output_padding[1] < 1:
                continue
            yield kernel, stride, padding, output_padding


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding", list(conv_transpose_cases()), ids=str)
def test_conv_transpose2d_gradcheck_grid(kernel, stride, padding, output_padding, with_bias, rng):
    kh, kw = pair(kernel)
    x = leaf(rng, (2, 2, 3, 2))
    w = leaf(rng, (2, 3, kh, kw))
    b = leaf(rng, (3,)) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])
    check(lambda x, w, *b: conv_transpose2d(x, w, b[0] if b else None, stride, padding, output_padding), inputs)


def test_conv_transpose2d_grid_covers_output_padding():
    assert any(case[3] != (0, 0) for case in conv_transpose_cases())


@pytest.mark.parametrize("method", ["col2im", "phases"])
@pytest.mark.parametrize("channels", [(2, 3), (3, 1)], ids=["co_lt_ci", "co_gt_ci"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding", list(conv_transpose_cases()) + [(2, 3, 0, (2, 1)), (2, 3, 2, (0, 0))], ids=str)
def test_both_input_gradient_methods_match_the_scatter_loop(kernel, stride, padding, output_padding, channels, method, xp, rng):
    """conv2d_input_grad is the transposed convolution: both its ways of computing it (the
    default picks by channel counts) against the scatter loop, over the whole grid above plus a
    stride larger than the kernel (phases no tap reaches) and padding as large as the kernel."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    co, ci = channels
    dy, w = rng.standard_normal((2, co, 3, 2)), rng.standard_normal((co, ci, kh, kw))
    expected = conv_transpose2d_loop(dy, w, None, stride, padding, output_padding)
    assert expected.size > 0
    dx = conv.conv2d_input_grad(xp.asarray(dy), xp.asarray(w), expected.shape, (sh, sw), (ph, pw), method=method)
    assert dx.shape == expected.shape
    np.testing.assert_allclose(to_numpy(dx), expected, rtol=1e-10, atol=1e-12)


def test_unknown_input_gradient_method_is_named():
    with pytest.raises(ValueError, match="method must be 'phases' or 'col2im', got 'fft'"):
        conv.conv2d_input_grad(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), (1, 1, 2, 2), (1, 1), (0, 0), method="fft")


# ----------------------------------------------------------------------------------------------
# Gradient checks of batch norm, l2_normalize, resize and the elementwise ops.

@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (2, 3, 1, 1), (1, 2, 3, 1)], ids=str)
def test_batch_norm_gradcheck_training_mode(shape, rng):
    c = shape[1]
    x = leaf(rng, shape)
    gamma = Tensor(rng.uniform(0.5, 1.5, c), requires_grad=True)
    beta = leaf(rng, (c,))
    running_mean, running_var = np.zeros(c), np.ones(c)
    check(lambda x, g, b: batch_norm(x, g, b, running_mean, running_var, training=True), [x, gamma, beta])


def test_batch_norm_gradcheck_beside_a_residual_branch(rng):
    """The incoming gradient is shared: add() hands one array to both its inputs, so batch norm's
    backward must not work in place in it, or the branch beside it gets a wrong gradient."""
    x, z = leaf(rng, (3, 2, 2, 3)), leaf(rng, (3, 2, 2, 3))
    gamma, beta = Tensor(rng.uniform(0.5, 1.5, 2), requires_grad=True), leaf(rng, (2,))
    stats = np.zeros(2), np.ones(2)
    check(lambda x, z, g, b: batch_norm(x, g, b, *stats, training=True) + z, [x, z, gamma, beta])


def test_batch_norm_float32_with_a_large_mean():
    """The variance is taken around the mean (two passes), not as E[x^2] - mean^2, which in
    float32 loses nearly every digit when the mean is 1000 times the spread."""
    x = (1000 + np.random.default_rng(0).standard_normal((4, 3, 5, 5))).astype(np.float32)
    y = batch_norm(Tensor(x), Tensor(np.ones(3, np.float32)), Tensor(np.zeros(3, np.float32)),
                   np.zeros(3, np.float32), np.ones(3, np.float32), training=True).numpy()
    np.testing.assert_allclose(y.var(axis=(0, 2, 3), dtype=np.float64), 1.0, rtol=1e-3)


def test_batch_norm_gradcheck_eval_mode(rng):
    x, gamma, beta = leaf(rng, (2, 3, 2, 3)), leaf(rng, (3,)), leaf(rng, (3,))
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    check(lambda x, g, b: batch_norm(x, g, b, running_mean, running_var, training=False), [x, gamma, beta])


def test_l2_normalize_gradcheck(rng):
    x = leaf(rng, (2, 3, 2, 3))
    check(l2_normalize, [x])


def test_l2_normalize_gradcheck_with_one_channel_and_small_features(rng):
    # Features stay well above the finite-difference step (eps 1e-5): the op's third derivative
    # grows like 1/|x|^3, so much smaller features would make the numeric estimate, not the op, wrong.
    x = leaf(rng, (2, 1, 2, 2))
    y = Tensor(rng.standard_normal((2, 4, 2, 2)) * 0.2, requires_grad=True)
    check(lambda x, y: concat([l2_normalize(x), l2_normalize(y)]), [x, y])


RESIZE_CASES = [
    ((2, 3), (5, 7)),   # up
    ((6, 5), (3, 2)),   # down
    ((1, 1), (3, 4)),   # from 1x1
    ((4, 5), (1, 1)),   # to 1x1
    ((2, 6), (5, 3)),   # up one side, down the other
    ((3, 3), (3, 3)),   # same size
    ((7, 4), (3, 4)),   # down by a non-integer factor
]


@pytest.mark.parametrize("size_in,size_out", RESIZE_CASES, ids=str)
def test_resize_gradcheck(size_in, size_out, rng):
    x = leaf(rng, (2, 2, *size_in))
    check(lambda x: resize(x, size_out), [x])


@pytest.mark.parametrize("factor", [1, 2, 3, 32])
def test_upsample_nearest_gradcheck(factor, rng):
    x = leaf(rng, (2, 3, 2, 3))
    check(lambda x: upsample_nearest(x, factor), [x])


def test_upsample_nearest_copies_blocks_and_sums_them_back(xp):
    x = Tensor(xp.arange(6.0).reshape(1, 1, 2, 3), requires_grad=True)
    y = upsample_nearest(x, 2)
    expected = np.repeat(np.repeat(np.arange(6.0).reshape(2, 3), 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(to_numpy(y.data)[0, 0], expected)
    y.backward(xp.arange(24.0).reshape(1, 1, 4, 6))
    g = np.arange(24.0).reshape(4, 6)
    np.testing.assert_array_equal(to_numpy(x.grad)[0, 0], g.reshape(2, 2, 3, 2).sum(axis=(1, 3)))


def test_upsample_nearest_bad_factor_is_named():
    with pytest.raises(ValueError, match="factor must be a positive int, got 1.5"):
        upsample_nearest(Tensor(np.zeros((1, 1, 2, 2))), 1.5)


def test_tanh_gradcheck_and_values(rng):
    x = leaf(rng, (2, 3, 4))
    check(tanh, [x])
    np.testing.assert_allclose(tanh(Tensor(np.array([-50.0, 0.0, 0.5]))).numpy(), [-1.0, 0.0, np.tanh(0.5)])


def away_from_zero(rng, shape):
    return Tensor(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape), requires_grad=True)


def test_relu_gradcheck_inputs_away_from_zero(rng):
    x = away_from_zero(rng, (2, 3, 4))
    check(relu, [x])


def test_relu_forward_and_gradient_values():
    x = Tensor(np.array([-2.0, -0.5, 0.0, 0.5, 3.0]), requires_grad=True)
    y = relu(x)
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 0.0, 0.5, 3.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("axis,shapes", [
    (1, [(2, 1, 2, 3), (2, 3, 2, 3)]),
    (1, [(2, 2, 2, 2), (2, 1, 2, 2), (2, 3, 2, 2)]),
    (0, [(1, 2, 3), (2, 2, 3)]),
    (-1, [(2, 3, 1), (2, 3, 2)]),
], ids=str)
def test_concat_gradcheck(axis, shapes, rng):
    tensors = [leaf(rng, s) for s in shapes]
    check(lambda *ts: concat(list(ts), axis=axis), tensors)


def test_concat_with_an_input_that_needs_no_grad(rng):
    a, b = leaf(rng, (2, 2, 2, 2)), leaf(rng, (2, 1, 2, 2), requires_grad=False)
    check(lambda a, b: concat([a, b]), [a, b])


BROADCAST_CASES = [
    ((2, 3), (2, 3)),
    ((2, 3, 4), (3, 1)),
    ((1, 4), (2, 3, 4)),
    ((2, 1, 4), (1, 3, 1)),
    ((2, 3), ()),
]


@pytest.mark.parametrize("shape_a,shape_b", BROADCAST_CASES, ids=str)
@pytest.mark.parametrize("op", [add, mul], ids=["add", "mul"])
def test_binary_op_gradcheck_with_broadcasting(op, shape_a, shape_b, rng):
    a, b = leaf(rng, shape_a), leaf(rng, shape_b)
    out = op(a, b)
    assert out.shape == np.broadcast_shapes(shape_a, shape_b)
    check(op, [a, b])


def test_operators_with_python_numbers_gradcheck(rng):
    a, b = leaf(rng, (2, 3)), leaf(rng, (3,))
    check(lambda a, b: (2.0 - a) * b + a * 3.0 - b + (-a) + 1.5, [a, b])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (None, True), (0, False), (-1, True), ((1, 2), False),
                                           ((0, -1), True)], ids=str)
@pytest.mark.parametrize("op, reference", [(reduce_sum, np.sum), (mean, np.mean)], ids=["sum", "mean"])
def test_reduction_gradcheck_with_axes(op, reference, axis, keepdims, rng):
    x = leaf(rng, (2, 3, 4))
    out = op(x, axis, keepdims)
    expected = reference(x.data, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    check(lambda x: op(x, axis, keepdims), [x])


@pytest.mark.parametrize("shape", [(4, 6), (-1,), (2, 1, 12), (3, -1, 2)], ids=str)
def test_reshape_gradcheck(shape, rng):
    x = leaf(rng, (2, 3, 4))
    np.testing.assert_array_equal(reshape(x, shape).numpy(), x.data.reshape(shape))
    check(lambda x: reshape(x, shape), [x])


def test_composite_graph_gradcheck(rng):
    """A small network-like graph: conv, bn, relu, resize, concat, l2_normalize, reductions."""
    x, w = leaf(rng, (2, 2, 4, 5)), leaf(rng, (3, 2, 3, 3))
    gamma, beta = Tensor(rng.uniform(0.5, 1.5, 3), requires_grad=True), leaf(rng, (3,))
    stats = np.zeros(3), np.ones(3)

    def net(x, w, gamma, beta):
        h = batch_norm(conv2d(x, w, padding=1), gamma, beta, *stats, training=True)
        h = relu(h + 0.3)
        up = resize(h, (6, 7))
        return mean(l2_normalize(concat([up, resize(x, (6, 7))])) * up.sum(axis=1, keepdims=True), axis=(2, 3))
    check(net, [x, w, gamma, beta], max_elements=40)


# ----------------------------------------------------------------------------------------------
# Forward values against the loops, float32 and float64, on every backend.

DTYPES = [np.float32, np.float64]
TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def on(xp, array, dtype):
    return Tensor(xp.asarray(array, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,with_bias", [
    (3, 1, 1, True), (1, 1, 0, False), (4, 2, 1, True), ((2, 3), (2, 1), (0, 1), True), (3, 2, 0, False),
], ids=str)
def test_conv2d_forward_matches_loop(kernel, stride, padding, with_bias, dtype, xp, rng):
    kh, kw = pair(kernel)
    x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, kh, kw))
    b = rng.standard_normal(4) if with_bias else None
    y = conv2d(on(xp, x, dtype), on(xp, w, dtype), None if b is None else on(xp, b, dtype), stride, padding)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray)
    np.testing.assert_allclose(y.numpy(), conv2d_loop(x, w, b, stride, padding), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding,with_bias", [
    (3, 1, 1, 0, True), (4, 2, 1, 0, False), (3, 2, 1, 1, True), ((2, 3), (2, 1), (1, 0), (1, 0), True),
    (1, 3, 0, 2, False),
], ids=str)
def test_conv_transpose2d_forward_matches_scatter_loop(kernel, stride, padding, output_padding, with_bias, dtype, xp, rng):
    kh, kw = pair(kernel)
    x, w = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 2, kh, kw))
    b = rng.standard_normal(2) if with_bias else None
    y = conv_transpose2d(on(xp, x, dtype), on(xp, w, dtype), None if b is None else on(xp, b, dtype),
                         stride, padding, output_padding)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray)
    np.testing.assert_allclose(y.numpy(), conv_transpose2d_loop(x, w, b, stride, padding, output_padding),
                               **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_conv_transpose2d_backward_equals_conv2d_forward_adjoint(dtype, xp, rng):
    """<conv_transpose(x), y> == <x, conv(y)>: the transposed convolution is the adjoint."""
    x, w, y = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 2, 6, 8))
    up = conv_transpose2d(on(xp, x, dtype), on(xp, w, dtype), stride=2, padding=1, output_padding=1).numpy()
    down = conv2d(on(xp, y, dtype), on(xp, w, dtype), stride=2, padding=1).numpy()
    assert up.shape == y.shape and down.shape == x.shape
    np.testing.assert_allclose((up * y).sum(), (x * down).sum(), rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (2, 3, 1, 1)], ids=str)
def test_batch_norm_training_forward_matches_loop(shape, dtype, xp, rng):
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1])
    y = batch_norm(on(xp, x, dtype), on(xp, gamma, dtype), on(xp, beta, dtype),
                   xp.zeros(shape[1], dtype), xp.ones(shape[1], dtype), training=True, eps=1e-5)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), batch_norm_loop(x, gamma, beta, 1e-5), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_batch_norm_eval_forward_uses_running_statistics(dtype, xp, rng):
    x = rng.standard_normal((2, 3, 2, 2))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    y = batch_norm(on(xp, x, dtype), on(xp, gamma, dtype), on(xp, beta, dtype), xp.asarray(running_mean, dtype),
                   xp.asarray(running_var, dtype), training=False, eps=1e-3)
    expected = np.empty_like(x)
    for n, ch, r, c in itertools.product(*map(range, x.shape)):
        expected[n, ch, r, c] = gamma[ch] * (x[n, ch, r, c] - running_mean[ch]) / math.sqrt(running_var[ch] + 1e-3) + beta[ch]
    np.testing.assert_allclose(y.numpy(), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size_in,size_out", RESIZE_CASES, ids=str)
def test_resize_forward_matches_per_pixel_formula(size_in, size_out, dtype, xp, rng):
    x = rng.standard_normal((2, 2, *size_in))
    y = resize(on(xp, x, dtype), size_out)
    assert y.dtype == dtype and y.shape == (2, 2, *size_out)
    np.testing.assert_allclose(y.numpy(), resize_loop(x, size_out), **TOLERANCE[dtype])


def test_resize_hand_derived_values():
    """1x2 -> 1x4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the edge: repeats pixel 1)."""
    x = Tensor(np.array([[[[0.0, 4.0]]]]))
    np.testing.assert_allclose(resize(x, (1, 4)).numpy().ravel(), [0.0, 1.0, 3.0, 4.0])
    # 1x4 -> 1x2: sources 0.5 and 2.5, the midpoints of pixel pairs (no anti-aliasing).
    x = Tensor(np.array([[[[0.0, 2.0, 4.0, 8.0]]]]))
    np.testing.assert_allclose(resize(x, (1, 2)).numpy().ravel(), [1.0, 6.0])
    # A 1x1 input spreads to a constant map.
    np.testing.assert_allclose(resize(Tensor(np.full((1, 1, 1, 1), 3.5)), (2, 3)).numpy(), np.full((1, 1, 2, 3), 3.5))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_l2_normalize_forward_gives_unit_channel_vectors(dtype, xp, rng):
    x = rng.standard_normal((2, 4, 3, 2)) * 5
    y = l2_normalize(on(xp, x, dtype)).numpy()
    np.testing.assert_allclose(y, x / np.sqrt((x ** 2).sum(axis=1, keepdims=True)), **TOLERANCE[dtype])
    zero = l2_normalize(on(xp, np.zeros((1, 3, 1, 1)), dtype)).numpy()
    assert np.all(np.isfinite(zero)) and np.all(zero == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_float32_ops_keep_dtype_and_backend_through_backward(dtype, xp, rng):
    x = Tensor(xp.asarray(rng.standard_normal((2, 2, 4, 4)), dtype=dtype), requires_grad=True)
    w = Tensor(xp.asarray(rng.standard_normal((3, 2, 3, 3)), dtype=dtype), requires_grad=True)
    y = l2_normalize(resize(relu(conv2d(x, w, padding=1)), (5, 3))) * 2.0
    y.sum().backward()
    for t in (y, x.grad, w.grad):
        array = t.data if isinstance(t, Tensor) else t
        assert array.dtype == dtype and isinstance(array, xp.ndarray)


# ----------------------------------------------------------------------------------------------
# Optional cross-check against PyTorch (not a dependency: skips when it is not installed).

def test_forward_values_match_pytorch_when_available(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    for stride, padding in [(1, 1), ((2, 1), (0, 1)), (2, 0)]:
        ours = conv2d(Tensor(x), Tensor(w), Tensor(b), stride, padding).numpy()
        theirs = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride, padding=padding).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    wt = rng.standard_normal((3, 2, 4, 3))
    for stride, padding, output_padding in [(2, 1, 0), (2, 1, 1), ((2, 1), (1, 0), (1, 0))]:
        ours = conv_transpose2d(Tensor(x), Tensor(wt), Tensor(b[:2]), stride, padding, output_padding).numpy()
        theirs = F.conv_transpose2d(torch.tensor(x), torch.tensor(wt), torch.tensor(b[:2]), stride=stride,
                                    padding=padding, output_padding=output_padding).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    rm, rv = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    ours = batch_norm(Tensor(x), Tensor(gamma), Tensor(beta), rm, rv, training=True).numpy()
    theirs = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(gamma), torch.tensor(beta), training=True).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    for size in [(9, 13), (2, 3), (1, 1), (7, 4)]:
        ours = resize(Tensor(x), size).numpy()
        theirs = F.interpolate(torch.tensor(x), size=size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
