"""Tests of minimenet.metrics.prepare: how maps and masks are read, normalised and checked."""
import numpy as np
import pytest

from minimenet import metrics


def test_min_max_normalisation_and_uint8_input():
    mask = np.array([[1, 0]], bool)
    narrow = np.array([[0.6, 0.4]])
    assert metrics.mean_absolute_error(narrow, mask) == 0  # stretched to [1, 0]
    assert metrics.mean_absolute_error(narrow, mask, min_max_normalize=False) == pytest.approx(0.4)
    assert metrics.mean_absolute_error(np.array([[255, 0]], np.uint8), mask) == 0


def test_mask_conventions():
    grey = np.array([[0, 128, 129, 255]], np.uint8)
    np.testing.assert_array_equal(metrics.prepare_ground_truth(grey), [[False, False, True, True]])
    labels = np.array([[0, 1, 1, 0]], np.int32)  # minimenet.data's masks: 1 = salient
    np.testing.assert_array_equal(metrics.prepare_ground_truth(labels), [[False, True, True, False]])


def test_mask_rule_is_the_loaders_for_every_encoding():
    # One rule with minimenet.data.binarize_mask (tests/test_data_reading.py checks mask files end to end).
    sixteen_bit = np.array([[0, 20000, 40000, 65535]], np.uint16)  # > 128 x 257 on the 16-bit scale
    np.testing.assert_array_equal(metrics.prepare_ground_truth(sixteen_bit), [[False, False, True, True]])
    dim_binary = np.array([[0, 100, 100, 0]], np.uint8)  # two values, one of them 0: the other is the object
    np.testing.assert_array_equal(metrics.prepare_ground_truth(dim_binary), [[False, True, True, False]])
    all_labels = np.ones((2, 2), np.int32)  # a fully salient 0/1 label mask
    assert metrics.prepare_ground_truth(all_labels).all()
    float_grey = np.array([[0.0, 0.3, 0.6, 1.0]])
    np.testing.assert_array_equal(metrics.prepare_ground_truth(float_grey), [[False, False, True, True]])
    assert metrics.mean_absolute_error(np.array([[0.0, 1.0, 1.0, 0.0]]), dim_binary) == 0
    with pytest.raises(TypeError, match="a mask must be bool, integer or float, got <U1"):
        metrics.prepare_ground_truth(np.array([["a", "b"]]))


def test_invalid_inputs_are_named():
    with pytest.raises(ValueError, match="resize the map back"):
        metrics.mean_absolute_error(np.zeros((2, 3)), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="sigmoid"):
        metrics.mean_absolute_error(np.array([[1.5, 0.0]]), np.zeros((1, 2), bool))
