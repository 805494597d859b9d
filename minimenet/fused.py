"""The authors' BRC and BRD (batch norm -> ReLU -> convolution or transposed convolution) as one
op each: for inference, and for training.

In eval mode a batch norm's statistics are constants, so it is the per-channel affine map
x scale + shift (``norm.eval_affine``). Run as three ops it takes three passes over x, each
through main memory for the large early layers (batch norm two, ReLU one) before the
convolution reads x again for its copies. Here the convolution applies relu(x scale + shift)
to the input rows of each of its blocks as it copies them (``conv_cpu.conv2d_forward``'s
``input_affine``; a transposed convolution as it copies x for its product), while they are in
the cache. A residual unit's sum (x + BRC(BRC(x)), and a level's main path + shortcut) is added
to the convolution's blocks the same way, instead of in a pass of its own.

In training the batch's statistics are computed first (the mean, then x - mu into a scratch
buffer and the sum of its squares), and then the batch norm is the same affine map for this batch, with
scale = gamma / sqrt(var + eps) and shift = beta - mu scale: the convolution applies it as
above, so neither the batch norm's output nor the ReLU's is ever written, nor kept for the
backward pass (two activations of x's size per BRC). The backward pass applies it again as the
weight gradient copies x (the BRD's, whose x is the adjoint's output gradient, writes
relu(x scale + shift) once), and ``norm.relu_batch_norm_grad`` recomputes the ReLU's mask from
x before the batch norm's own backward. The result and every gradient equal those of the three
ops, up to rounding (tests/test_fused.py).
"""
from . import conv, norm
from .conv_geometry import ConvGeometry
from .tensor import Tensor, check_dtypes, grad_enabled


def batch_norm_relu_conv2d(x, scale, shift, w, b=None, stride=1, padding=0, residual=None):
    """conv2d(relu(x scale + shift), w, b, stride, padding) (+ residual), with scale and shift
    (Ci,) arrays of constants per input channel and ``residual`` a Tensor of the output's
    shape. Records no graph, so it refuses inputs that would need one."""
    op = "batch_norm_relu_conv2d"
    conv._check(op, x, w, b, "(out_channels, in_channels, kh, kw)")
    geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, op)
    _check(op, x, scale, shift, (w, b, residual), residual, geometry.y_shape)
    y = conv._forward(x.data, w.data, geometry, None if b is None else b.data, (scale, shift), _data(residual))
    return Tensor.from_op(y, (), None, op)


def batch_norm_relu_conv_transpose2d(x, scale, shift, w, stride=1, padding=0, output_padding=0, residual=None):
    """conv_transpose2d(relu(x scale + shift), w, None, stride, padding, output_padding)
    (+ residual), as ``batch_norm_relu_conv2d`` (the BRD has no bias)."""
    op = "batch_norm_relu_conv_transpose2d"
    geometry = conv.transposed_geometry(op, x, w, None, stride, padding, output_padding)
    _check(op, x, scale, shift, (w, residual), residual, geometry.x_shape)
    y = conv._input_grad(x.data, w.data, geometry, (scale, shift), _data(residual))
    return Tensor.from_op(y, (), None, op)


def batch_norm_relu_conv2d_training(x, gamma, beta, running_mean, running_var, w, b=None, stride=1, padding=0,
                                    residual=None, momentum=0.1, eps=1e-5):
    """conv2d(relu(batch_norm(x, gamma, beta, running_mean, running_var, training=True, momentum,
    eps)), w, b, stride, padding) (+ residual), with its graph; updates the running statistics
    as ``norm.batch_norm`` does."""
    op = "batch_norm_relu_conv2d_training"
    conv._check(op, x, w, b, "(out_channels, in_channels, kh, kw)")
    geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, op)
    kept = {} if w.requires_grad and grad_enabled() else None  # what the forward leaves to the weight gradient
    return _training(op, x, gamma, beta, running_mean, running_var, momentum, eps, w, b, residual, geometry.y_shape,
                     lambda affine, r: conv._forward(x.data, w.data, geometry, None if b is None else b.data, affine, r, kept),
                     lambda g: conv._input_grad(g, w.data, geometry),
                     lambda g, affine: conv._weight_grad(x.data, g, geometry, affine, kept))


def batch_norm_relu_conv_transpose2d_training(x, gamma, beta, running_mean, running_var, w, stride=1, padding=0,
                                              output_padding=0, residual=None, momentum=0.1, eps=1e-5):
    """conv_transpose2d(relu(batch_norm(x, ..., training=True)), w, None, stride, padding,
    output_padding) (+ residual), as ``batch_norm_relu_conv2d_training``."""
    op = "batch_norm_relu_conv_transpose2d_training"
    geometry = conv.transposed_geometry(op, x, w, None, stride, padding, output_padding)
    return _training(op, x, gamma, beta, running_mean, running_var, momentum, eps, w, None, residual, geometry.x_shape,
                     lambda affine, r: conv._input_grad(x.data, w.data, geometry, affine, r),
                     lambda g: conv._forward(g, w.data, geometry),
                     lambda g, affine: conv._weight_grad(g, norm.relu_affine(x.data, *affine), geometry))


def _training(op, x, gamma, beta, running_mean, running_var, momentum, eps, w, b, residual, y_shape,
              forward, input_grad, weight_grad):
    """The training BRC or BRD: ``forward(affine, residual)`` is its convolution of
    relu(x scale + shift), ``input_grad(g)`` and ``weight_grad(g, affine)`` that convolution's
    gradients with respect to its input and weight."""
    norm.check_batch_norm(op, x, gamma, beta, running_mean, running_var, training=True)
    if residual is not None:
        _check_residual(op, x, residual, y_shape)
    mu, var, inv_std = norm.batch_statistics(x.data, eps)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    norm.update_running(running_mean, running_var, mu, var, count, momentum)
    scale = gamma.data * inv_std
    affine = (scale, beta.data - mu * scale)
    y = forward(affine, _data(residual))
    parents = [t for t in (x, gamma, beta, w, b, residual) if t is not None]

    def backward(g):
        wants_x = x.requires_grad or gamma.requires_grad or beta.requires_grad
        d_x = d_gamma = d_beta = None
        if wants_x:
            d_x, d_gamma, d_beta = norm.relu_batch_norm_grad(x.data, input_grad(g), mu, inv_std, gamma.data, *affine)
        grads = [d_x, d_gamma, d_beta, weight_grad(g, affine) if w.requires_grad else None]
        if b is not None:
            grads.append(conv._bias_grad(g, b))
        if residual is not None:
            grads.append(g)
        return tuple(grads)
    return Tensor.from_op(y, parents, backward, op)


def _check(op, x, scale, shift, others, residual, y_shape):
    if grad_enabled() and any(t is not None and t.requires_grad for t in (x, *others)):
        raise RuntimeError(f"{op} records no graph, so it gives no gradients: call it under no_grad(), or use "
                           f"{op}_training (batch statistics, as the model does in training mode) or batch_norm, relu "
                           f"and the convolution")
    if scale.shape != (x.shape[1],) or shift.shape != (x.shape[1],):
        raise ValueError(f"{op}: input has {x.shape[1]} channels; scale and shift must have shape "
                         f"({x.shape[1]},), got {scale.shape} and {shift.shape}")
    if residual is not None:
        _check_residual(op, x, residual, y_shape)


def _check_residual(op, x, residual, y_shape):
    if not isinstance(residual, Tensor) or residual.shape != tuple(y_shape):
        raise ValueError(f"{op}: the residual must be a Tensor of the output's shape {tuple(y_shape)}, got "
                         f"{type(residual).__name__} of shape {getattr(residual, 'shape', None)}")
    check_dtypes(op, x, residual)


def _data(tensor):
    return None if tensor is None else tensor.data
