"""Convolution and transposed convolution (NCHW): the ops, on three primitives.

For an input x (B, Ci, H, W), weight w (Co, Ci, kh, kw), stride (sh, sw) and padding (ph, pw):

    forward       y[b, o, r, c]  = sum_{i, u, v} w[o, i, u, v] * x[b, i, r*sh - ph + u, c*sw - pw + v]
    input grad    dx[b, i, p, q] = sum_{o, u, v : (p + ph - u) = r*sh, (q + pw - v) = c*sw} w[o, i, u, v] * dy[b, o, r, c]
    weight grad   dw[o, i, u, v] = sum_{b, r, c} dy[b, o, r, c] * x[b, i, r*sh - ph + u, c*sw - pw + v]

with out-of-range x read as zero, Ho = (H + 2ph - kh) // sh + 1 and Wo likewise.

The transposed convolution (deconvolution) is the adjoint of the convolution: its forward is
the convolution's input gradient and its input gradient is the convolution's forward, so it
runs on the very same three primitives with the roles of x and dy swapped.

The primitives are NumPy's in ``conv_cpu`` (im2col and matrix products), or, where
``backend.runs_on_cuda_kernels`` says so (float32 on the GPU), our CUDA kernels
(``kernels/*.cu``, launched by ``minimenet.cuda``). Only x is kept for the backward pass. The
bias is added inside the forward primitive (to each block while it is in the cache), and its
gradient is the output gradient summed over batch and pixels. Shapes are checked once, by
``conv_geometry.ConvGeometry``, which both paths read.
"""
from . import backend, conv_cpu, cuda, norm, threads
from .backend import array_module
from .conv_geometry import ConvGeometry, pair
from .tensor import Tensor, check_dtypes, grad_enabled


def _forward(x, w, geometry, bias=None, input_affine=None, residual=None, kept=None):
    """y = conv(x, w) (+ bias, one value per output channel) (+ residual, of y's shape) on x's
    backend; with ``input_affine`` = (scale, shift), of relu(x scale + shift) instead of x.
    ``kept``: a dict for what the forward leaves to the weight gradient (``_weight_grad``)."""
    if backend.runs_on_cuda_kernels(x):
        y = cuda.conv2d_forward(x if input_affine is None else norm.relu_affine(x, *input_affine), w, geometry.stride, geometry.padding)
        if bias is not None:
            _add_bias_in_place(y, bias)
        return y if residual is None else array_module(y).add(y, residual, out=y)
    return conv_cpu.conv2d_forward(x, w, geometry.stride, geometry.padding, bias, input_affine, residual, kept)


def _weight_grad(x, dy, geometry, input_affine=None, kept=None):
    """dw from x and dy on x's backend; with ``input_affine`` = (scale, shift), from
    relu(x scale + shift) instead of x (the training BRC's, ``fused``); ``kept``: the forward's."""
    if backend.runs_on_cuda_kernels(x):
        return cuda.conv2d_weight_grad(x if input_affine is None else norm.relu_affine(x, *input_affine), dy, geometry.w_shape,
                                       geometry.stride, geometry.padding)
    return conv_cpu.conv2d_weight_grad(x, dy, geometry.w_shape, geometry.stride, geometry.padding, input_affine, kept)


def _input_grad(dy, w, geometry, input_affine=None, residual=None):
    """dx (of shape ``geometry.x_shape``) from dy on dy's backend (+ residual, of dx's shape);
    with ``input_affine`` = (scale, shift), from relu(dy scale + shift) instead of dy (the
    transposed convolution's forward, at inference)."""
    if backend.runs_on_cuda_kernels(dy):
        dx = cuda.conv2d_input_grad(dy if input_affine is None else norm.relu_affine(dy, *input_affine), w, geometry.x_shape,
                                    geometry.stride, geometry.padding)
        return dx if residual is None else array_module(dx).add(dx, residual, out=dx)
    return conv_cpu.conv2d_input_grad(dy, w, geometry.x_shape, geometry.stride, geometry.padding,
                                      input_affine=input_affine, residual=residual)


def _check(op, x, w, b, weight_layout):
    for name, value in (("input", x), ("weight", w), ("bias", b)):
        if value is not None and not isinstance(value, Tensor):
            # Without this, a NumPy array fails deep inside with "AttributeError ... 'xp'".
            raise TypeError(f"{op}: {name} must be a minimenet Tensor, got {type(value).__module__}."
                            f"{type(value).__qualname__}; wrap it first: Tensor(array)")
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (batch, channels, height, width), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D {weight_layout}, got shape {w.shape}")
    out_channels = w.shape[1 if op == "conv_transpose2d" else 0]
    if b is not None and b.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) to match the weight {w.shape}, got {b.shape}")
    check_dtypes(op, *(t for t in (x, w, b) if t is not None))


def _add_bias_in_place(y, bias):
    """y (B, C, H, W) += bias (C,), y being a fresh result that nothing else holds."""
    return threads.apply(array_module(y).add, y, bias.reshape(1, -1, 1, 1), out=y)


def _bias_grad(g, b):
    """d(loss)/d(bias): the output gradient summed over batch and pixels (None without a bias)."""
    return norm.channel_sum(g) if b is not None and b.requires_grad else None


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep-learning library) of x by w, plus b."""
    _check("conv2d", x, w, b, "(out_channels, in_channels, kh, kw)")
    geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, "conv2d")

    kept = {} if w.requires_grad and grad_enabled() else None  # what the forward leaves to the weight gradient

    def backward(g):
        dx = _input_grad(g, w.data, geometry) if x.requires_grad else None
        dw = _weight_grad(x.data, g, geometry, kept=kept) if w.requires_grad else None
        return dx, dw, _bias_grad(g, b)
    y = _forward(x.data, w.data, geometry, None if b is None else b.data, kept=kept)
    return Tensor.from_op(y, (x, w) if b is None else (x, w, b), backward, "conv2d")


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution: x (B, Ci, H, W), w (Ci, Co, kh, kw) as in PyTorch.

    Output size: (H - 1) * sh - 2 ph + kh + output_padding_h, likewise for the width;
    output_padding (smaller than the stride) picks among the sizes that a stride-s convolution
    maps to the same H.
    """
    geometry = transposed_geometry("conv_transpose2d", x, w, b, stride, padding, output_padding)
    y = _input_grad(x.data, w.data, geometry)
    if b is not None:
        _add_bias_in_place(y, b.data)

    def backward(g):
        # Both gradients read windows of g, the input of the adjoint convolution.
        dx = _forward(g, w.data, geometry) if x.requires_grad else None
        dw = _weight_grad(g, x.data, geometry) if w.requires_grad else None
        return dx, dw, _bias_grad(g, b)
    return Tensor.from_op(y, (x, w) if b is None else (x, w, b), backward, "conv_transpose2d")


def transposed_geometry(op, x, w, b, stride, padding, output_padding):
    """The checks of a transposed convolution's arguments, and the geometry of its adjoint
    convolution: input y (B, Co, Hout, Wout), weight w read as (Co_conv = Ci, Ci_conv = Co),
    output x, so that the transposed convolution's output has the shape ``x_shape``."""
    stride, padding, output_padding = pair(stride, "stride", op), pair(padding, "padding", op), pair(output_padding, "output_padding", op)
    _check(op, x, w, b, "(in_channels, out_channels, kh, kw)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but the weight (in_channels, out_channels, kh, kw) "
                         f"of shape {w.shape} expects {w.shape[0]}")
    if 0 in stride or any(extra >= s for extra, s in zip(output_padding, stride)):
        raise ValueError(f"{op}: stride must be positive and output_padding {output_padding} smaller than stride {stride}")
    out_hw = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + w.shape[2 + i] + output_padding[i] for i in range(2)]
    if min(out_hw) < 1:
        raise ValueError(f"{op}: padding {padding} leaves no output for input {x.shape[2:]} and kernel {w.shape[2:]}")
    return ConvGeometry.of((x.shape[0], w.shape[1], *out_hw), w.shape, stride, padding, op)
