"""minimenet/fused.py: the authors' BRC at inference as one op, against the three ops."""
import numpy as np
import pytest

from minimenet import Tensor, batch_norm, conv2d, no_grad, relu
from minimenet.fused import batch_norm_relu_conv2d
from minimenet.norm import eval_affine

from op_references import DTYPES, TOLERANCE, on


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,out_channels", [(3, 1, 1, 4), (3, 2, 1, 4), (1, 2, 0, 4), (3, 1, 1, 1)], ids=str)
def test_batch_norm_relu_conv2d_equals_the_three_ops_in_eval_mode(kernel, stride, padding, out_channels, dtype, xp, rng):
    """BRC at inference: an eval batch norm, ReLU and convolution (with bias) as one op. The
    last case (one output from three inputs) takes the forward's col2im path."""
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


def test_batch_norm_relu_conv2d_refuses_what_it_cannot_do(rng):
    x, w = Tensor(rng.standard_normal((1, 3, 4, 4))), Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    scale, shift = np.ones(3), np.zeros(3)
    with pytest.raises(RuntimeError, match="records no graph, so it gives no gradients: call it under no_grad()"):
        batch_norm_relu_conv2d(x, scale, shift, w)
    with no_grad(), pytest.raises(ValueError, match=r"input has 3 channels; scale and shift must have shape \(3,\), got \(2,\) and \(3,\)"):
        batch_norm_relu_conv2d(x, np.ones(2), shift, w)
    with no_grad(), pytest.raises(ValueError, match=r"batch_norm_relu_conv2d: input must be 4-D"):
        batch_norm_relu_conv2d(Tensor(np.zeros((3, 4, 4))), scale, shift, w)
