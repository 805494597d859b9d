"""conv2d and conv_transpose2d: shape and dtype mistakes raise errors that name the op, the shapes
received and what was expected. (The other ops' bad-input tests live in the module of the op.)
"""
import numpy as np
import pytest

from minimenet import Tensor, backend, conv2d, conv_transpose2d


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
