"""The authors' BRC (batch norm -> ReLU -> convolution) as one op, for inference.

In eval mode a batch norm's statistics are constants, so it is the per-channel affine map
x scale + shift (``norm.eval_affine``). Run as three ops it takes three passes over x, each
through main memory for the large early layers (batch norm two, ReLU one) before the
convolution reads x again for its im2col copies. Here the convolution applies
relu(x scale + shift) to the input rows of each of its blocks as it copies them
(``conv_cpu.conv2d_forward``'s ``input_affine``), while they are in the cache. Training needs the
three ops' graph, so ``model.BRC`` uses this only in eval mode without a graph.
"""
from . import conv
from .conv_geometry import ConvGeometry
from .tensor import Tensor, grad_enabled


def batch_norm_relu_conv2d(x, scale, shift, w, b=None, stride=1, padding=0):
    """conv2d(relu(x scale + shift), w, b, stride, padding), with scale and shift (Ci,) arrays of
    constants per input channel. Records no graph, so it refuses inputs that would need one."""
    conv._check("batch_norm_relu_conv2d", x, w, b, "(out_channels, in_channels, kh, kw)")
    if grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        raise RuntimeError("batch_norm_relu_conv2d records no graph, so it gives no gradients: call it under "
                           "no_grad(), or use batch_norm, relu and conv2d (the model does so in training mode)")
    if scale.shape != (x.shape[1],) or shift.shape != (x.shape[1],):
        raise ValueError(f"batch_norm_relu_conv2d: input has {x.shape[1]} channels; scale and shift must have shape "
                         f"({x.shape[1]},), got {scale.shape} and {shift.shape}")
    geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, "batch_norm_relu_conv2d")
    y = conv._forward(x.data, w.data, geometry, None if b is None else b.data, (scale, shift))
    return Tensor.from_op(y, (), None, "batch_norm_relu_conv2d")
