"""minimenet/norm.py: batch_norm and l2_normalize, gradient-checked, against plain loops and
PyTorch, and rejecting inputs they cannot take with errors that name the op, the shapes received
and what was expected.
"""
import itertools
import math

import numpy as np
import pytest

from minimenet import Tensor, batch_norm, concat, l2_normalize

from op_references import DTYPES, TOLERANCE, batch_norm_loop, check, leaf, on


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


# --- From the op grid: gradient checks and forward values against plain loops (op_references) ---

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
def test_l2_normalize_forward_gives_unit_channel_vectors(dtype, xp, rng):
    x = rng.standard_normal((2, 4, 3, 2)) * 5
    y = l2_normalize(on(xp, x, dtype)).numpy()
    np.testing.assert_allclose(y, x / np.sqrt((x ** 2).sum(axis=1, keepdims=True)), **TOLERANCE[dtype])
    zero = l2_normalize(on(xp, np.zeros((1, 3, 1, 1)), dtype)).numpy()
    assert np.all(np.isfinite(zero)) and np.all(zero == 0)


def test_batch_norm_matches_pytorch_when_available(rng):
    """Only when PyTorch happens to be importable (not a dependency)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 3, 5, 6))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    rm, rv = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    ours = batch_norm(Tensor(x), Tensor(gamma), Tensor(beta), rm, rv, training=True).numpy()
    theirs = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(gamma), torch.tensor(beta), training=True).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
