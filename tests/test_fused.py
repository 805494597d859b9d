"""minimenet/fused.py: the authors' BRC and BRD as one op each, at inference and in training,
against the three ops."""
import numpy as np
import pytest

from minimenet import Tensor, batch_norm, conv2d, conv_transpose2d, gradcheck, no_grad, relu
from minimenet.backend import to_numpy as mm_numpy
from minimenet.fused import (batch_norm_relu_conv2d, batch_norm_relu_conv2d_training, batch_norm_relu_conv_transpose2d,
                             batch_norm_relu_conv_transpose2d_training)
from minimenet.norm import eval_affine

from op_references import DTYPES, TOLERANCE, on


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,out_channels", [(3, 1, 1, 4), (3, 2, 1, 4), (1, 2, 0, 4), (3, 1, 1, 2), (3, 1, 1, 1)], ids=str)
def test_batch_norm_relu_conv2d_equals_the_three_ops_in_eval_mode(kernel, stride, padding, out_channels, dtype, xp, rng):
    """BRC at inference: an eval batch norm, ReLU and convolution (with bias) as one op, and
    with a residual added. On the CPU the last two cases take the forward's shifted taps and its
    col2im path (one output from three inputs)."""
    x = on(xp, rng.standard_normal((2, 3, 7, 6)), dtype)
    w, b = on(xp, rng.standard_normal((out_channels, 3, kernel, kernel)), dtype), on(xp, rng.standard_normal(out_channels), dtype)
    gamma, beta = on(xp, rng.uniform(0.5, 2, 3), dtype), on(xp, rng.standard_normal(3), dtype)
    mean, var = xp.asarray(rng.standard_normal(3), dtype=dtype), xp.asarray(rng.uniform(0.5, 2, 3), dtype=dtype)
    expected = conv2d(relu(batch_norm(x, gamma, beta, mean, var, training=False)), w, b, stride, padding)
    scale, shift = eval_affine(gamma.data, beta.data, mean, var)
    with no_grad():
        y = batch_norm_relu_conv2d(x, scale, shift, w, b, stride, padding)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray) and not y.requires_grad
    np.testing.assert_allclose(y.numpy(), expected.numpy(), **TOLERANCE[dtype])
    residual = on(xp, rng.standard_normal(expected.shape), dtype)
    with no_grad():
        y = batch_norm_relu_conv2d(x, scale, shift, w, b, stride, padding, residual)
    np.testing.assert_allclose(y.numpy(), (expected + residual).numpy(), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding,method", [(4, 2, 1, 0, "col2im"), (2, 2, 0, 0, "col2im"),
                                                                         (3, 2, 1, 1, "phases"), (3, 1, 1, 0, "phases")], ids=str)
def test_batch_norm_relu_conv_transpose2d_equals_the_three_ops_in_eval_mode(kernel, stride, padding, output_padding, method, dtype, xp,
                                                                            rng, monkeypatch):
    """BRD at inference (the decoder's 4 x 4 / 2 and 2 x 2 / 2), with and without a residual, by
    each of the input gradient's two ways on the CPU."""
    from minimenet import conv_cpu
    original = conv_cpu.conv2d_input_grad
    monkeypatch.setattr(conv_cpu, "conv2d_input_grad", lambda *args, **kwargs: original(*args[:5], method, *args[6:], **kwargs)
                        if len(args) > 5 else original(*args, method=method, **kwargs))
    x = on(xp, rng.standard_normal((3, 5, 4, 3)), dtype)
    w = on(xp, rng.standard_normal((5, 2, kernel, kernel)), dtype)
    gamma, beta = on(xp, rng.uniform(0.5, 2, 5), dtype), on(xp, rng.standard_normal(5), dtype)
    mean, var = xp.asarray(rng.standard_normal(5), dtype=dtype), xp.asarray(rng.uniform(0.5, 2, 5), dtype=dtype)
    expected = conv_transpose2d(relu(batch_norm(x, gamma, beta, mean, var, training=False)), w, None, stride, padding, output_padding)
    scale, shift = eval_affine(gamma.data, beta.data, mean, var)
    residual = on(xp, rng.standard_normal(expected.shape), dtype)
    with no_grad():
        y = batch_norm_relu_conv_transpose2d(x, scale, shift, w, stride, padding, output_padding)
        with_residual = batch_norm_relu_conv_transpose2d(x, scale, shift, w, stride, padding, output_padding, residual)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray) and not y.requires_grad
    np.testing.assert_allclose(y.numpy(), expected.numpy(), **TOLERANCE[dtype])
    np.testing.assert_allclose(with_residual.numpy(), (expected + residual).numpy(), **TOLERANCE[dtype])


def test_batch_norm_relu_conv2d_refuses_what_it_cannot_do(rng):
    x, w = Tensor(rng.standard_normal((1, 3, 4, 4))), Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    scale, shift = np.ones(3), np.zeros(3)
    with pytest.raises(RuntimeError, match="records no graph, so it gives no gradients: call it under no_grad()"):
        batch_norm_relu_conv2d(x, scale, shift, w)
    with no_grad(), pytest.raises(ValueError, match=r"input has 3 channels; scale and shift must have shape \(3,\), got \(2,\) and \(3,\)"):
        batch_norm_relu_conv2d(x, np.ones(2), shift, w)
    with no_grad(), pytest.raises(ValueError, match=r"batch_norm_relu_conv2d: input must be 4-D"):
        batch_norm_relu_conv2d(Tensor(np.zeros((3, 4, 4))), scale, shift, w)
    with pytest.raises(RuntimeError, match="records no graph"):
        batch_norm_relu_conv2d(x, scale, shift, w.detach(), None, 1, 1, Tensor(np.zeros((1, 2, 4, 4)), requires_grad=True))
    with no_grad(), pytest.raises(ValueError, match=r"the residual must be a Tensor of the output's shape \(1, 2, 4, 4\), got Tensor of shape \(1, 2, 2, 2\)"):
        batch_norm_relu_conv2d(x, scale, shift, w, None, 1, 1, Tensor(np.zeros((1, 2, 2, 2))))
    with no_grad(), pytest.raises(ValueError, match=r"the residual must be a Tensor .* got ndarray"):
        batch_norm_relu_conv2d(x, scale, shift, w, None, 1, 1, np.zeros((1, 2, 4, 4)))
    with no_grad(), pytest.raises(TypeError, match=r"batch_norm_relu_conv2d: inputs have different dtypes"):
        batch_norm_relu_conv2d(x, scale, shift, w, None, 1, 1, Tensor(np.zeros((1, 2, 4, 4), dtype=np.float32)))


def test_batch_norm_relu_conv_transpose2d_refuses_what_it_cannot_do(rng):
    x, w = Tensor(rng.standard_normal((1, 3, 4, 4)), requires_grad=True), Tensor(rng.standard_normal((3, 2, 2, 2)))
    scale, shift = np.ones(3), np.zeros(3)
    with pytest.raises(RuntimeError, match="batch_norm_relu_conv_transpose2d records no graph"):
        batch_norm_relu_conv_transpose2d(x, scale, shift, w, 2)
    with no_grad(), pytest.raises(ValueError, match=r"batch_norm_relu_conv_transpose2d: input has 3 channels but the weight"):
        batch_norm_relu_conv_transpose2d(x, scale, shift, Tensor(np.zeros((2, 2, 2, 2))), 2)
    with no_grad(), pytest.raises(ValueError, match=r"scale and shift must have shape \(3,\), got \(3,\) and \(1,\)"):
        batch_norm_relu_conv_transpose2d(x, scale, np.zeros(1), w, 2)
    with no_grad(), pytest.raises(ValueError, match=r"the residual must be a Tensor of the output's shape \(1, 2, 8, 8\)"):
        batch_norm_relu_conv_transpose2d(x, scale, shift, w, 2, 0, 0, Tensor(np.zeros((1, 2, 4, 4))))


def leaf(xp, array, dtype):
    return Tensor(xp.asarray(array, dtype=dtype), requires_grad=True)


def _batch_norm_arguments(xp, rng, channels, dtype):
    """gamma, beta (Tensors that require grad) and running statistics away from 0 and 1."""
    gamma = leaf(xp, rng.uniform(0.5, 2, channels) * rng.choice([-1, 1], channels), dtype)
    beta = leaf(xp, rng.standard_normal(channels), dtype)
    return gamma, beta, xp.asarray(rng.standard_normal(channels), dtype=dtype), xp.asarray(rng.uniform(0.5, 2, channels), dtype=dtype)


def _gradients(y, residual_gradient, tensors):
    y.backward(residual_gradient)
    return [t.grad for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("with_residual", [False, True], ids=["alone", "residual"])
@pytest.mark.parametrize("kernel,stride,padding,out_channels,bias", [(3, 1, 1, 4, True), (3, 2, 1, 4, True), (1, 2, 0, 4, True),
                                                                     (3, 1, 1, 2, False), (3, 1, 1, 1, True)], ids=str)
def test_batch_norm_relu_conv2d_training_equals_the_three_ops(kernel, stride, padding, out_channels, bias, with_residual, dtype, xp, rng):
    """BRC in training: the output, the gradients of x, gamma, beta, w, b and the residual, and
    the running statistics' update, against batch_norm(training=True), relu and conv2d (and an
    add). x has a mean away from 0 and gamma mixed signs, so that the ReLU cuts on both sides;
    an odd image size, stride 2, a 1 x 1 kernel, no bias, and on the CPU the forward's shifted
    taps and its col2im path (the last two cases)."""
    x = leaf(xp, 1.5 + rng.standard_normal((2, 3, 7, 6)), dtype)
    w = leaf(xp, rng.standard_normal((out_channels, 3, kernel, kernel)), dtype)
    b = leaf(xp, rng.standard_normal(out_channels), dtype) if bias else None
    gamma, beta, mean, var = _batch_norm_arguments(xp, rng, 3, dtype)
    expected_statistics = (mean.copy(), var.copy())
    expected = conv2d(relu(batch_norm(x, gamma, beta, *expected_statistics, training=True, momentum=0.2)), w, b, stride, padding)
    residual = leaf(xp, rng.standard_normal(expected.shape), dtype) if with_residual else None
    if residual is not None:
        expected = expected + residual
    leaves = [t for t in (x, gamma, beta, w, b, residual) if t is not None]
    g = xp.asarray(rng.standard_normal(expected.shape), dtype=dtype)
    expected_grads = _gradients(expected, g, leaves)
    for t in leaves:
        t.grad = None

    y = batch_norm_relu_conv2d_training(x, gamma, beta, mean, var, w, b, stride, padding, residual, momentum=0.2)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray) and y.requires_grad
    np.testing.assert_allclose(y.numpy(), expected.numpy(), **TOLERANCE[dtype])
    for got, want in zip((mean, var), expected_statistics):
        np.testing.assert_allclose(mm_numpy(got), mm_numpy(want), **TOLERANCE[dtype])
    for got, want in zip(_gradients(y, g, leaves), expected_grads):
        np.testing.assert_allclose(mm_numpy(got), mm_numpy(want), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding,method", [(4, 2, 1, 0, "col2im"), (2, 2, 0, 0, "col2im"),
                                                                         (3, 2, 1, 1, "phases"), (3, 1, 1, 0, "phases")], ids=str)
def test_batch_norm_relu_conv_transpose2d_training_equals_the_three_ops(kernel, stride, padding, output_padding, method, dtype, xp,
                                                                        rng, monkeypatch):
    """BRD in training (the decoder's 4 x 4 / 2 and 2 x 2 / 2), with a residual, by each of the
    input gradient's two ways on the CPU: output, every gradient and the running statistics."""
    from minimenet import conv_cpu
    original = conv_cpu.conv2d_input_grad
    monkeypatch.setattr(conv_cpu, "conv2d_input_grad", lambda *args, **kwargs: original(*args[:5], method, *args[6:], **kwargs)
                        if len(args) > 5 else original(*args, method=method, **kwargs))
    x = leaf(xp, -0.5 + rng.standard_normal((3, 5, 4, 3)), dtype)
    w = leaf(xp, rng.standard_normal((5, 2, kernel, kernel)), dtype)
    gamma, beta, mean, var = _batch_norm_arguments(xp, rng, 5, dtype)
    expected_statistics = (mean.copy(), var.copy())
    expected = conv_transpose2d(relu(batch_norm(x, gamma, beta, *expected_statistics, training=True)), w, None, stride, padding,
                                output_padding)
    residual = leaf(xp, rng.standard_normal(expected.shape), dtype)
    expected = expected + residual
    g = xp.asarray(rng.standard_normal(expected.shape), dtype=dtype)
    leaves = [x, gamma, beta, w, residual]
    expected_grads = _gradients(expected, g, leaves)
    for t in leaves:
        t.grad = None

    y = batch_norm_relu_conv_transpose2d_training(x, gamma, beta, mean, var, w, stride, padding, output_padding, residual)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), **TOLERANCE[dtype])
    for got, want in zip((mean, var), expected_statistics):
        np.testing.assert_allclose(mm_numpy(got), mm_numpy(want), **TOLERANCE[dtype])
    for got, want in zip(_gradients(y, g, leaves), expected_grads):
        np.testing.assert_allclose(mm_numpy(got), mm_numpy(want), **TOLERANCE[dtype])


@pytest.mark.parametrize("transposed", [False, True], ids=["BRC", "BRD"])
def test_training_brc_and_brd_gradients_match_finite_differences(transposed, rng):
    """Every input's gradient (x, gamma, beta, w, b, residual) against central differences,
    float64; the running statistics are copied for each evaluation, so the differences see the
    same function."""
    x = Tensor(0.5 + rng.standard_normal((2, 3, 5, 4)), requires_grad=True)
    gamma, beta = Tensor(rng.uniform(0.5, 2, 3), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True)
    mean, var = np.zeros(3), np.ones(3)
    if transposed:
        w, residual = Tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True), Tensor(rng.standard_normal((2, 2, 10, 8)), requires_grad=True)
        assert gradcheck(lambda *t: batch_norm_relu_conv_transpose2d_training(*t[:3], mean.copy(), var.copy(), t[3], 2, 1, 0, t[4]),
                         [x, gamma, beta, w, residual])
    else:
        w, b = Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True), Tensor(rng.standard_normal(2), requires_grad=True)
        residual = Tensor(rng.standard_normal((2, 2, 3, 2)), requires_grad=True)
        assert gradcheck(lambda *t: batch_norm_relu_conv2d_training(*t[:3], mean.copy(), var.copy(), *t[3:5], 2, 1, t[5]),
                         [x, gamma, beta, w, b, residual])


@pytest.mark.parametrize("one_channel_a_group", [False, True], ids=["whole", "one channel a group"])
def test_the_training_brcs_relu_mask_is_the_forwards_bit_for_bit(one_channel_a_group, monkeypatch, rng):
    """The backward recomputes the ReLU's mask as x scale > -shift, which must be exactly where
    the forward's relu(x scale + shift), rounded, passed a value: checked in float32 on values
    within a few roundings of the kink, where x scale + shift rounds to 0, to +-tiny, or not.
    Its passes and the batch statistics' run over cache-sized groups of channels
    (``norm.CACHED_PASSES``): with one channel a group, the statistics are the same bits as
    over the whole array, and the gradients within a rounding of the sums (NumPy's einsum sums
    a channel in another order beside others): a wrong mask would move one by a whole term."""
    from minimenet import norm
    if one_channel_a_group:
        monkeypatch.setattr(norm, "CACHED_PASSES", 1)
    scale = np.array([0.37, -1.3, 3.1], dtype=np.float32)
    shift = np.array([0.11, 0.7, -2.9], dtype=np.float32)
    kink = -shift / scale
    steps = np.arange(-40, 41, dtype=np.float32).reshape(1, 1, -1)
    x = np.ascontiguousarray(np.broadcast_to(kink.reshape(1, 3, 1) * (1 + steps * np.finfo(np.float32).eps), (2, 3, 81))
                             .reshape(2, 3, 9, 9)).astype(np.float32)
    passed = norm.relu_affine(x, scale, shift) > 0
    assert 0 < passed.sum() < passed.size
    d_relu = rng.standard_normal(x.shape).astype(np.float32)
    mu, var, inv_std = norm.batch_statistics(x, 1e-5)
    with monkeypatch.context() as whole:
        whole.setattr(norm, "CACHED_PASSES", x.size)
        for got, want in zip((mu, var, inv_std), norm.batch_statistics(x, 1e-5)):
            np.testing.assert_array_equal(got, want)
    gamma = scale / inv_std
    d_x, d_gamma, d_beta = norm.relu_batch_norm_grad(x, d_relu.copy(), mu, inv_std, gamma, scale, shift)  # it may overwrite d_relu
    expected = batch_norm(Tensor(x, requires_grad=True), Tensor(gamma, requires_grad=True), Tensor(np.zeros(3, np.float32)),
                          mu.copy(), var.copy(), training=True)
    # batch_norm's own backward from the gradient masked by the forward's ReLU: the same arithmetic
    want = expected._backward(d_relu * passed)
    for got, w in zip((d_x, d_gamma, d_beta), want):
        if one_channel_a_group:
            np.testing.assert_allclose(got, w, rtol=0, atol=1e-6 * float(np.abs(w).max()))
        else:
            np.testing.assert_array_equal(got, w)


def test_training_brc_and_brd_refuse_what_they_cannot_do(rng):
    x, w = Tensor(rng.standard_normal((1, 3, 4, 4))), Tensor(rng.standard_normal((2, 3, 3, 3)))
    gamma, beta, mean, var = Tensor(np.ones(3)), Tensor(np.zeros(3)), np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm_relu_conv2d_training: training mode needs more than one value per channel"):
        batch_norm_relu_conv2d_training(Tensor(np.zeros((1, 3, 1, 1))), gamma, beta, mean, var, Tensor(np.zeros((2, 3, 1, 1))))
    with pytest.raises(ValueError, match=r"batch_norm_relu_conv2d_training: input has 3 channels; gamma, beta and the running "
                                         r"statistics must all have shape \(3,\)"):
        batch_norm_relu_conv2d_training(x, Tensor(np.ones(2)), beta, mean, var, w)
    with pytest.raises(ValueError, match=r"batch_norm_relu_conv2d_training: the residual must be a Tensor of the output's shape "
                                         r"\(1, 2, 4, 4\), got Tensor of shape \(1, 2, 2, 2\)"):
        batch_norm_relu_conv2d_training(x, gamma, beta, mean, var, w, None, 1, 1, Tensor(np.zeros((1, 2, 2, 2))))
    with pytest.raises(TypeError, match=r"batch_norm_relu_conv2d_training: inputs have different dtypes"):
        batch_norm_relu_conv2d_training(x, gamma, beta, mean, var, w, None, 1, 1, Tensor(np.zeros((1, 2, 4, 4), np.float32)))
    with pytest.raises(TypeError, match=r"batch_norm_relu_conv2d_training: weight must be a minimenet Tensor"):
        batch_norm_relu_conv2d_training(x, gamma, beta, mean, var, np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"batch_norm_relu_conv_transpose2d_training: input has 3 channels but the weight"):
        batch_norm_relu_conv_transpose2d_training(x, gamma, beta, mean, var, Tensor(np.zeros((2, 2, 2, 2))), 2)
    with pytest.raises(ValueError, match=r"batch_norm_relu_conv_transpose2d_training: the residual must be a Tensor of the "
                                         r"output's shape \(1, 2, 8, 8\)"):
        batch_norm_relu_conv_transpose2d_training(x, gamma, beta, mean, var, Tensor(np.zeros((3, 2, 2, 2))), 2, 0, 0,
                                                  Tensor(np.zeros((1, 2, 4, 4))))
