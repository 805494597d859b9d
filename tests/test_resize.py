"""minimenet/resize.py: resize rejects inputs and sizes it cannot take, with errors that name the
shapes received and what was expected.
"""
import numpy as np
import pytest

from minimenet import Tensor, resize


def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


def test_resize_input_not_4d():
    with pytest.raises(ValueError, match=r"resize: input must be 4-D .*got shape \(2, 3, 4\)"):
        resize(t(2, 3, 4), (2, 2))


def test_resize_to_an_empty_size():
    with pytest.raises(ValueError, match=r"resize: size must be a pair of positive ints \(height, width\), got \(0, 2\)"):
        resize(t(1, 2, 3, 4), (0, 2))


def test_resize_needs_a_pair_of_sizes():
    with pytest.raises(ValueError, match=r"resize: size must be a pair of positive ints \(height, width\), got 5"):
        resize(Tensor(np.zeros((1, 1, 2, 2))), 5)
