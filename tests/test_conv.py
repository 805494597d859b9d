"""minimenet/conv.py: conv2d and conv_transpose2d gradient-checked over a grid of shapes and against
plain loops (and PyTorch when it imports), both input-gradient methods against the scatter loop,
and the errors for bad input. The CPU primitives in every chunking are test_conv_cpu.py's.
"""
import itertools

import numpy as np
import pytest

from minimenet import Tensor, conv2d, conv_transpose2d
from minimenet import backend, conv_cpu
from minimenet.backend import to_numpy

from op_references import DTYPES, TOLERANCE, check, conv2d_loop, conv_transpose2d_loop, leaf, on, pair


# --- From the op grid: gradient checks and forward values against plain loops (op_references) ---

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
    dx = conv_cpu.conv2d_input_grad(xp.asarray(dy), xp.asarray(w), expected.shape, (sh, sw), (ph, pw), method=method)
    assert dx.shape == expected.shape
    np.testing.assert_allclose(to_numpy(dx), expected, rtol=1e-10, atol=1e-12)


def test_unknown_input_gradient_method_is_named():
    with pytest.raises(ValueError, match="method must be 'phases' or 'col2im', got 'fft'"):
        conv_cpu.conv2d_input_grad(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), (1, 1, 2, 2), (1, 1), (0, 0), method="fft")


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


def test_forward_values_match_pytorch_when_available(rng):
    """Only when PyTorch happens to be importable (not a dependency)."""
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


# --- Bad input: errors that name the op, the shapes received and what was expected ---

def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


def test_conv2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but the weight .* of shape \(4, 2, 3, 3\) expects 2"):
        conv2d(t(1, 3, 5, 5), t(4, 2, 3, 3))


def test_conv2d_input_not_4d():
    with pytest.raises(ValueError, match=r"conv2d: input must be 4-D \(batch, channels, height, width\), got shape \(3, 5, 5\)"):
        conv2d(t(3, 5, 5), t(4, 3, 3, 3))


def test_conv2d_weight_not_4d():
    with pytest.raises(ValueError, match=r"conv2d: weight must be 4-D \(out_channels, in_channels, kh, kw\), got shape \(3, 3, 3\)"):
        conv2d(t(1, 3, 5, 5), t(3, 3, 3))


def test_conv2d_kernel_bigger_than_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel \(3, 3\) with padding \(0, 0\) does not fit the input of spatial size \(2, 5\)"):
        conv2d(t(1, 3, 2, 5), t(4, 3, 3, 3))


def test_conv2d_kernel_that_fits_only_thanks_to_padding_is_accepted():
    assert conv2d(t(1, 3, 2, 5), t(4, 3, 3, 3), padding=1).shape == (1, 4, 2, 5)


def test_conv2d_bias_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\) to match the weight \(4, 3, 3, 3\), got \(3,\)"):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), t(3))


def test_conv2d_dtype_mismatch():
    with pytest.raises(TypeError, match=r"conv2d: inputs have different dtypes \['float64', 'float32'\]"):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3, dtype="float32"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=0), r"conv2d: stride must be positive"),
    (dict(padding=-1), r"conv2d: padding must be a non-negative int or a pair of them, got -1"),
    (dict(stride=(1, 2, 3)), r"conv2d: stride must be a non-negative int or a pair of them, got \(1, 2, 3\)"),
], ids=["zero_stride", "negative_padding", "triple_stride"])
def test_conv2d_bad_stride_or_padding(kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), **kwargs)


@pytest.mark.parametrize("stride", [1.0, (1.0, 1)], ids=["float", "float_in_pair"])
def test_a_remembered_geometry_does_not_let_a_refused_stride_through(stride):
    """ConvGeometry.of remembers valid geometries, but a stride that equals a remembered one
    without being an int (1.0 == 1) is still refused."""
    from minimenet.conv_geometry import ConvGeometry
    first = ConvGeometry.of((1, 3, 5, 5), (4, 3, 3, 3), 1, 1, "conv2d")
    assert ConvGeometry.of((1, 3, 5, 5), (4, 3, 3, 3), 1, 1, "conv2d") is first
    assert ConvGeometry.of((1, 3, 5, 5), (4, 3, 3, 3), (1, 1), [1, 1], "conv2d") == first
    with pytest.raises(ValueError, match="conv2d: stride must be a non-negative int or a pair of them"):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), stride=stride, padding=1)


def test_conv_transpose2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"conv_transpose2d: input has 3 channels but the weight \(in_channels, out_channels, kh, kw\) "
                                         r"of shape \(4, 2, 3, 3\) expects 4"):
        conv_transpose2d(t(1, 3, 5, 5), t(4, 2, 3, 3))


def test_conv_transpose2d_input_not_4d():
    with pytest.raises(ValueError, match=r"conv_transpose2d: input must be 4-D .*got shape \(3, 5, 5\)"):
        conv_transpose2d(t(3, 5, 5), t(3, 2, 3, 3))


def test_conv_transpose2d_bias_shape_follows_the_output_channels():
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(2,\) to match the weight \(3, 2, 3, 3\), got \(3,\)"):
        conv_transpose2d(t(1, 3, 5, 5), t(3, 2, 3, 3), t(3))


def test_conv_transpose2d_output_padding_must_be_smaller_than_stride():
    with pytest.raises(ValueError, match=r"conv_transpose2d: .*output_padding \(2, 2\) smaller than stride \(2, 2\)"):
        conv_transpose2d(t(1, 3, 5, 5), t(3, 2, 3, 3), stride=2, output_padding=2)


def test_conv_transpose2d_padding_that_leaves_no_output():
    with pytest.raises(ValueError, match=r"conv_transpose2d: padding \(1, 1\) leaves no output for input \(1, 1\) and kernel \(1, 1\)"):
        conv_transpose2d(t(1, 3, 1, 1), t(3, 2, 1, 1), padding=1)


def test_conv_transpose2d_dtype_mismatch():
    with pytest.raises(TypeError, match=r"conv_transpose2d: inputs have different dtypes"):
        conv_transpose2d(t(1, 3, 5, 5, dtype="float32"), t(3, 2, 3, 3))


if backend.device == "gpu":  # defined only where CuPy runs, like the cupy cases of the xp fixture
    def test_mixing_numpy_and_cupy_inputs_is_named():
        import cupy
        on_gpu = Tensor(cupy.zeros((4, 3, 3, 3)))
        with pytest.raises(TypeError, match=r"conv2d: inputs mix NumPy and CuPy arrays; move them to one device"):
            conv2d(t(1, 3, 5, 5), on_gpu)
        with pytest.raises(TypeError, match=r"add: inputs mix NumPy and CuPy arrays"):
            t(4, 3, 3, 3) + on_gpu


@pytest.mark.parametrize("op", [conv2d, conv_transpose2d])
def test_conv_given_a_numpy_array_is_a_clear_type_error(op):
    # It used to fail deep inside with "AttributeError: 'numpy.ndarray' object has no attribute 'xp'".
    name = op.__name__
    with pytest.raises(TypeError, match=rf"{name}: input must be a minimenet Tensor, got numpy.ndarray; "
                                        r"wrap it first: Tensor\(array\)"):
        op(np.zeros((1, 3, 5, 5)), t(3, 3, 3, 3))
    with pytest.raises(TypeError, match=rf"{name}: weight must be a minimenet Tensor, got numpy.ndarray"):
        op(t(1, 3, 5, 5), np.zeros((3, 3, 3, 3)))
    with pytest.raises(TypeError, match=rf"{name}: bias must be a minimenet Tensor, got numpy.ndarray"):
        op(t(1, 3, 5, 5), t(3, 3, 3, 3), np.zeros(3))
