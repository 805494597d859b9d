"""The authors' BRC and BRD (batch norm -> ReLU -> convolution or transposed convolution) as one
op each, for inference.

In eval mode a batch norm's statistics are constants, so it is the per-channel affine map
x scale + shift (``norm.eval_affine``). Run as three ops it takes three passes over x, each
through main memory for the large early layers (batch norm two, ReLU one) before the
convolution reads x again for its copies. Here the convolution applies relu(x scale + shift)
to the input rows of each of its blocks as it copies them (``conv_cpu.conv2d_forward``'s
``input_affine``; a transposed convolution as it copies x for its product), while they are in
the cache. A residual unit's sum (x + BRC(BRC(x)), and a level's main path + shortcut) is added
to the convolution's blocks the same way, instead of in a pass of its own. Training needs the
ops' graph, so ``model.BRC`` and ``model.BRD`` use these only in eval mode without a graph.
"""
from . import conv
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


def _check(op, x, scale, shift, others, residual, y_shape):
    if grad_enabled() and any(t is not None and t.requires_grad for t in (x, *others)):
        raise RuntimeError(f"{op} records no graph, so it gives no gradients: call it under no_grad(), or use "
                           f"batch_norm, relu and the convolution (the model does so in training mode)")
    if scale.shape != (x.shape[1],) or shift.shape != (x.shape[1],):
        raise ValueError(f"{op}: input has {x.shape[1]} channels; scale and shift must have shape "
                         f"({x.shape[1]},), got {scale.shape} and {shift.shape}")
    if residual is not None:
        if not isinstance(residual, Tensor) or residual.shape != tuple(y_shape):
            raise ValueError(f"{op}: the residual must be a Tensor of the output's shape {tuple(y_shape)}, got "
                             f"{type(residual).__name__} of shape {getattr(residual, 'shape', None)}")
        check_dtypes(op, x, residual)


def _data(tensor):
    return None if tensor is None else tensor.data
