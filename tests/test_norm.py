"""minimenet/norm.py: batch_norm and l2_normalize reject inputs they cannot take, with errors that name
the op, the shapes received and what was expected.
"""
import numpy as np
import pytest

from minimenet import Tensor, batch_norm, l2_normalize


def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


def bn(x, c=3, gamma=None, training=True):
    return batch_norm(x, gamma if gamma is not None else t(c), t(c), np.zeros(c), np.ones(c), training)


@pytest.mark.parametrize("shape, gamma, error, message", [
    pytest.param((2, 3, 4), None, ValueError, r"batch_norm: input must be 4-D .*got shape \(2, 3, 4\)", id="input_not_4d"),
    pytest.param((2, 3, 4, 4), ((4,), "float64"), ValueError,
                 r"batch_norm: input has 3 channels; gamma, beta and the running statistics must all have "
                 r"shape \(3,\), got \(4,\), \(3,\), \(3,\), \(3,\)", id="parameter_shape_mismatch"),
    pytest.param((2, 3, 4, 4), ((3,), "float32"), TypeError,
                 r"batch_norm: inputs have different dtypes \['float64', 'float32', 'float64'\]", id="dtype_mismatch"),
])
def test_batch_norm_refuses(shape, gamma, error, message):
    with pytest.raises(error, match=message):
        bn(t(*shape), gamma=None if gamma is None else t(*gamma[0], dtype=gamma[1]))


def test_batch_norm_training_on_a_single_value_per_channel():
    with pytest.raises(ValueError, match=r"batch_norm: training mode needs more than one value per channel.*\(1, 3, 1, 1\)"):
        bn(t(1, 3, 1, 1))
    assert bn(t(1, 3, 1, 1), training=False).shape == (1, 3, 1, 1)  # eval mode is fine


def test_l2_normalize_without_a_channel_axis():
    with pytest.raises(ValueError, match=r"l2_normalize: input must have a channel axis \(N, C, ...\), got shape \(5,\)"):
        l2_normalize(t(5))
