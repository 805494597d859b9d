"""Shape and dtype mistakes raise errors that name the op, the shapes received and what was expected."""
import re

import numpy as np
import pytest

from minimenet import (Tensor, backend, batch_norm, concat, conv2d, conv_transpose2d, l2_normalize, metric_loss,
                       reshape, resize, softmax_cross_entropy)


def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


def shape_text(shape):
    return re.escape(str(tuple(shape)))


# conv2d -------------------------------------------------------------------------------------------

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


# conv_transpose2d ---------------------------------------------------------------------------------

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


# batch_norm ---------------------------------------------------------------------------------------

def bn(x, c=3, gamma=None, training=True):
    return batch_norm(x, gamma if gamma is not None else t(c), t(c), np.zeros(c), np.ones(c), training)


def test_batch_norm_input_not_4d():
    with pytest.raises(ValueError, match=r"batch_norm: input must be 4-D .*got shape \(2, 3, 4\)"):
        bn(t(2, 3, 4))


def test_batch_norm_parameter_shape_mismatch():
    with pytest.raises(ValueError, match=r"batch_norm: input has 3 channels; gamma, beta and the running statistics must all have "
                                         r"shape \(3,\), got \(4,\), \(3,\), \(3,\), \(3,\)"):
        bn(t(2, 3, 4, 4), gamma=t(4))


def test_batch_norm_dtype_mismatch():
    with pytest.raises(TypeError, match=r"batch_norm: inputs have different dtypes \['float64', 'float32', 'float64'\]"):
        bn(t(2, 3, 4, 4), gamma=t(3, dtype="float32"))


def test_batch_norm_training_on_a_single_value_per_channel():
    with pytest.raises(ValueError, match=r"batch_norm: training mode needs more than one value per channel.*\(1, 3, 1, 1\)"):
        bn(t(1, 3, 1, 1))
    assert bn(t(1, 3, 1, 1), training=False).shape == (1, 3, 1, 1)  # eval mode is fine


# elementwise ops, concat, reshape ---------------------------------------------------------------

@pytest.mark.parametrize("op_name", ["add", "mul"])
def test_binary_ops_that_cannot_broadcast(op_name):
    op = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b}[op_name]
    with pytest.raises(ValueError, match=rf"{op_name}: shapes \(2, 3\) and \(2, 2\) cannot be broadcast together"):
        op(t(2, 3), t(2, 2))


def test_add_dtype_mismatch():
    with pytest.raises(TypeError, match=r"add: inputs have different dtypes \['float64', 'float32'\]"):
        t(2, 3) + t(2, 3, dtype="float32")


def test_concat_shapes_that_differ_off_the_axis():
    with pytest.raises(ValueError, match=r"concat: all shapes must match except on axis 1; got \[\(2, 3, 4, 4\), \(2, 3, 5, 4\)\]"):
        concat([t(2, 3, 4, 4), t(2, 3, 5, 4)])


def test_concat_tensors_of_different_rank():
    with pytest.raises(ValueError, match=r"concat: all shapes must match except on axis 1; got \[\(2, 3, 4, 4\), \(2, 3, 4\)\]"):
        concat([t(2, 3, 4, 4), t(2, 3, 4)])


def test_concat_nothing():
    with pytest.raises(ValueError, match=r"concat: needs at least one tensor"):
        concat([])


def test_concat_dtype_mismatch():
    with pytest.raises(TypeError, match=r"concat: inputs have different dtypes"):
        concat([t(1, 2, 2, 2), t(1, 2, 2, 2, dtype="float32")])


def test_reshape_to_a_different_number_of_elements():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) to \(4, 2\)"):
        reshape(t(2, 3), (4, 2))


# resize, l2_normalize ---------------------------------------------------------------------------

def test_resize_input_not_4d():
    with pytest.raises(ValueError, match=r"resize: input must be 4-D .*got shape \(2, 3, 4\)"):
        resize(t(2, 3, 4), (2, 2))


def test_resize_to_an_empty_size():
    with pytest.raises(ValueError, match=r"resize: size must be a pair of positive ints \(height, width\), got \(0, 2\)"):
        resize(t(1, 2, 3, 4), (0, 2))


def test_l2_normalize_without_a_channel_axis():
    with pytest.raises(ValueError, match=r"l2_normalize: input must have a channel axis \(N, C, ...\), got shape \(5,\)"):
        l2_normalize(t(5))


# losses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("label_shape", [(2, 3, 3), (2, 1, 3, 4), (3, 4), (1, 3, 4)], ids=str)
def test_cross_entropy_label_shape(label_shape):
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must have shape \(2, 3, 4\) \(batch, height, width\) to match "
                                         rf"input \(2, 2, 3, 4\), got {shape_text(label_shape)}"):
        softmax_cross_entropy(t(2, 2, 3, 4), np.zeros(label_shape, int))


@pytest.mark.parametrize("logits_shape", [(2, 3, 3, 4), (2, 1, 3, 4), (2, 2, 12)], ids=str)
def test_cross_entropy_needs_two_logit_channels(logits_shape):
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits must have shape \(batch, 2, height, width\), "
                                         rf"got {shape_text(logits_shape)}"):
        softmax_cross_entropy(t(*logits_shape), np.zeros((2, 3, 4), int))


@pytest.mark.parametrize("label_shape", [(2, 4, 3), (2, 12), (2, 5, 3, 4)], ids=str)
def test_metric_loss_label_shape(label_shape):
    with pytest.raises(ValueError, match=r"metric_loss: labels must have shape \(2, 3, 4\) \(batch, height, width\) to match "
                                         rf"input \(2, 5, 3, 4\), got {shape_text(label_shape)}"):
        metric_loss(t(2, 5, 3, 4), np.zeros(label_shape, int))


def test_metric_loss_features_not_4d():
    with pytest.raises(ValueError, match=r"metric_loss: features must have shape \(batch, channels, height, width\), got \(2, 5, 3\)"):
        metric_loss(t(2, 5, 3), np.zeros((2, 5, 3), int))


def test_labels_other_than_zero_and_one_are_named():
    logits = Tensor(np.zeros((1, 2, 2, 2)))
    labels = np.array([[[0, 1], [2, 255]]])
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be 0 \(background\) or 1.*\[0, 1, 2, 255\]"):
        softmax_cross_entropy(logits, labels)
    with pytest.raises(ValueError, match=r"metric_loss: labels must be 0 \(background\) or 1"):
        metric_loss(Tensor(np.zeros((1, 3, 2, 2))), labels)


def test_resize_needs_a_pair_of_sizes():
    with pytest.raises(ValueError, match=r"resize: size must be a pair of positive ints \(height, width\), got 5"):
        resize(Tensor(np.zeros((1, 1, 2, 2))), 5)


def test_a_second_backward_through_a_freed_graph_is_an_error():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    shared = x * x
    first, second = shared.sum(), (shared * 2.0).sum()
    first.backward()
    with pytest.raises(RuntimeError, match="already freed: recompute the forward pass"):
        second.backward()


if backend.device == "gpu":  # defined only where CuPy runs, like the cupy cases of the xp fixture
    def test_mixing_numpy_and_cupy_inputs_is_named():
        import cupy
        on_gpu = Tensor(cupy.zeros((4, 3, 3, 3)))
        with pytest.raises(TypeError, match=r"conv2d: inputs mix NumPy and CuPy arrays; move them to one device"):
            conv2d(t(1, 3, 5, 5), on_gpu)
        with pytest.raises(TypeError, match=r"add: inputs mix NumPy and CuPy arrays"):
            t(4, 3, 3, 3) + on_gpu


# Arrays where Tensors are expected --------------------------------------------------------------

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
