"""minimenet/resize.py: resize rejects inputs and sizes it cannot take, with errors that name the
shapes received and what was expected.
"""
import numpy as np
import pytest

from minimenet import Tensor, resize


def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("shape, size, message", [
    pytest.param((2, 3, 4), (2, 2), r"resize: input must be 4-D .*got shape \(2, 3, 4\)", id="input_not_4d"),
    pytest.param((1, 2, 3, 4), (0, 2), r"resize: size must be a pair of positive ints \(height, width\), got \(0, 2\)",
                 id="an_empty_size"),
    pytest.param((1, 1, 2, 2), 5, r"resize: size must be a pair of positive ints \(height, width\), got 5",
                 id="a_single_int_size"),
])
def test_resize_refuses(shape, size, message):
    with pytest.raises(ValueError, match=message):
        resize(t(*shape), size)
