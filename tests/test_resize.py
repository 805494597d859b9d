"""minimenet/resize.py: bilinear resize and block upsampling, gradient-checked, against plain loops
and PyTorch, and rejecting inputs and sizes they cannot take, with errors that name the shapes
received and what was expected.
"""
import numpy as np
import pytest

from minimenet import Tensor, resize
from minimenet.backend import to_numpy
from minimenet.resize import upsample_nearest

from op_references import DTYPES, TOLERANCE, check, leaf, on, resize_loop


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


# --- From the op grid: gradient checks and forward values against plain loops (op_references) ---

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


def test_resize_matches_pytorch_when_available(rng):
    """Only when PyTorch happens to be importable (not a dependency)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 3, 5, 6))
    for size in [(9, 13), (2, 3), (1, 1), (7, 4)]:
        ours = resize(Tensor(x), size).numpy()
        theirs = F.interpolate(torch.tensor(x), size=size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
