"""minimenet/fused.py: the authors' BRC and BRD at inference as one op each, against the three ops."""
import numpy as np
import pytest

from minimenet import Tensor, batch_norm, conv2d, conv_transpose2d, no_grad, relu
from minimenet.fused import batch_norm_relu_conv2d, batch_norm_relu_conv_transpose2d
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
