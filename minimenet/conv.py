"""Convolution and transposed convolution (NCHW), built on three primitives.

For an input x (B, Ci, H, W), weight w (Co, Ci, kh, kw), stride (sh, sw) and padding (ph, pw):

    forward       y[b, o, r, c]  = sum_{i, u, v} w[o, i, u, v] * x[b, i, r*sh - ph + u, c*sw - pw + v]
    input grad    dx[b, i, p, q] = sum_{o, u, v : (p + ph - u) = r*sh, (q + pw - v) = c*sw} w[o, i, u, v] * dy[b, o, r, c]
    weight grad   dw[o, i, u, v] = sum_{b, r, c} dy[b, o, r, c] * x[b, i, r*sh - ph + u, c*sw - pw + v]

with out-of-range x read as zero, Ho = (H + 2ph - kh) // sh + 1 and Wo likewise.

The transposed convolution (deconvolution) is the adjoint of the convolution: its forward is
the convolution's input gradient and its input gradient is the convolution's forward, so it
runs on the very same three primitives with the roles of x and dy swapped.

On the CPU the forward and the weight gradient are im2col + one matrix product each (BLAS does
the work), and the input gradient is either col2im or a gather per sub-pixel phase, whichever
moves less data; where ``backend.runs_on_cuda_kernels`` says so (float32 on the GPU), all three
are our CUDA kernels (``kernels/*.cu``, launched by ``minimenet.cuda``). Shapes are checked once,
by ``conv_geometry.ConvGeometry``, which both paths read.
"""
from . import backend, cuda
from .backend import array_module
from .conv_geometry import ConvGeometry, output_size, pair
from .tensor import Tensor, add, check_dtypes


def im2col(x, kernel, stride, padding):
    """The input's windows as one contiguous (Ci*kh*kw, B*Ho*Wo) matrix: row (i, u, v), column
    (b, r, c) holds x[b, i, r*sh - ph + u, c*sw - pw + v] (zero outside). One copy from a strided
    view of the zero-padded input; with this layout both the forward and the weight gradient are
    a single matrix product."""
    xp = array_module(x)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    b, ci, h, w = x.shape
    ho, wo = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    padded = xp.zeros((b, ci, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    s0, s1, s2, s3 = padded.strides
    windows = xp.lib.stride_tricks.as_strided(padded, (ci, kh, kw, b, ho, wo), (s1, s2, s3, s0, s2 * sh, s3 * sw))
    return windows.reshape(ci * kh * kw, b * ho * wo)


def conv2d_forward(x, w, stride, padding, columns=None):
    """y = W columns: (Co, Ci*kh*kw) @ (Ci*kh*kw, B*Ho*Wo), then the (Co, B) axes swapped back.

    ``columns``, when given, is ``im2col(x, ...)`` already built (the weight gradient reuses it).
    """
    xp = array_module(x)
    co, ci, kh, kw = w.shape
    ho, wo = output_size(x.shape[2], kh, stride[0], padding[0]), output_size(x.shape[3], kw, stride[1], padding[1])
    if columns is None:
        columns = im2col(x, (kh, kw), stride, padding)
    y = (w.reshape(co, -1) @ columns).reshape(co, x.shape[0], ho, wo)
    return xp.ascontiguousarray(y.transpose(1, 0, 2, 3))


def conv2d_input_grad(dy, w, x_shape, stride, padding, method=None):
    """dx = w^T dy, computed one of two ways with the same result:

    * "col2im": the columns w^T dy (Ci*kh*kw rows) scattered back onto the padded image;
    * "phases": dx's sub-pixel phases (rows p = a mod sh, columns q = b mod sw) each gathered as
      an ordinary stride-1 convolution of dy with the taps that reach that phase, flipped. No
      scatter-add, and no product with the zeros between a strided convolution's outputs.

    Their work goes as Ci Ho Wo (col2im) against Co H W / (sh sw) (phases), so the default picks
    by those, with a margin for col2im's read-modify-write scatter.

    ``x_shape`` may exceed the smallest input that gives dy's size (rows that no window reads
    get zero gradient): the transposed convolution's output_padding relies on this.
    """
    (co, ci, _, _), (sh, sw) = w.shape, stride
    _, _, ho, wo = dy.shape
    _, _, h, wd = x_shape
    if method is None:
        method = "phases" if co * h * wd < 1.5 * ci * ho * wo * sh * sw else "col2im"
    if method == "phases":
        return _input_grad_by_phases(dy, w, x_shape, stride, padding)
    if method == "col2im":
        return _input_grad_by_col2im(dy, w, x_shape, stride, padding)
    raise ValueError(f"conv2d_input_grad: method must be 'phases' or 'col2im', got {method!r}")


def _input_grad_by_col2im(dy, w, x_shape, stride, padding):
    xp = array_module(dy)
    (co, ci, kh, kw), (sh, sw), (ph, pw) = w.shape, stride, padding
    b, _, ho, wo = dy.shape
    _, _, h, wd = x_shape
    columns = xp.matmul(w.reshape(co, -1).T, dy.reshape(b, co, ho * wo)).reshape(b, ci, kh, kw, ho, wo)
    padded = xp.zeros((b, ci, h + 2 * ph, wd + 2 * pw), dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            padded[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw] += columns[:, :, u, v]
    return padded[:, :, ph:ph + h, pw:pw + wd]


def _phase_plan(size, out_size, kernel, stride, padding):
    """Along one axis, for each phase a of the input (positions p = a + stride P, P < count): the
    first tap u0 that reaches it, how many taps (u0, u0 + stride, ... < kernel), and the offset d
    with which dy row P + d - t meets tap u0 + stride t. Plus the zero padding of dy (low, high)
    that keeps every such row index in range."""
    plans = []
    for a in range(stride):
        first_tap = (a + padding) % stride
        plans.append((a, first_tap, len(range(first_tap, kernel, stride)), (a + padding) // stride,
                      len(range(a, size, stride))))
    low = max([taps - 1 - d for _, _, taps, d, count in plans if taps and count] + [0])
    high = max([count - 1 + d - (out_size - 1) for _, _, taps, d, count in plans if taps and count] + [0])
    return plans, low, high


def _input_grad_by_phases(dy, w, x_shape, stride, padding):
    xp = array_module(dy)
    (co, ci, _, _), (sh, sw), (ph, pw) = w.shape, stride, padding
    b, _, ho, wo = dy.shape
    _, _, h, wd = x_shape
    rows, low_h, high_h = _phase_plan(h, ho, w.shape[2], sh, ph)
    cols, low_w, high_w = _phase_plan(wd, wo, w.shape[3], sw, pw)
    padded = xp.zeros((b, co, low_h + ho + high_h, low_w + wo + high_w), dtype=dy.dtype)
    padded[:, :, low_h:low_h + ho, low_w:low_w + wo] = dy
    s0, s1, s2, s3 = padded.strides
    dx = xp.empty((b, ci, h, wd), dtype=dy.dtype)
    for a, tap_h, taps_h, d_h, count_h in rows:
        for c, tap_w, taps_w, d_w, count_w in cols:
            if not (count_h and count_w):
                continue
            if not (taps_h and taps_w):
                dx[:, :, a::sh, c::sw] = 0
                continue
            # Tap t' = taps - 1 - t (flipped) meets dy row P + d - taps + 1 + t': a stride-1 window.
            top, left = low_h + d_h - taps_h + 1, low_w + d_w - taps_w + 1
            start = padded[:, :, top:, left:]
            windows = xp.lib.stride_tricks.as_strided(
                start, (co, taps_h, taps_w, b, count_h, count_w), (s1, s2, s3, s0, s2, s3))
            taps = w[:, :, tap_h::sh, tap_w::sw][:, :, ::-1, ::-1]  # (co, ci, taps_h, taps_w)
            phase = taps.transpose(1, 0, 2, 3).reshape(ci, -1) @ windows.reshape(-1, b * count_h * count_w)
            dx[:, :, a::sh, c::sw] = phase.reshape(ci, b, count_h, count_w).transpose(1, 0, 2, 3)
    return dx


def conv2d_weight_grad(x, dy, w_shape, stride, padding, columns=None):
    """dw = dy columns^T: (Co, B*Ho*Wo) @ (B*Ho*Wo, Ci*kh*kw), summing over batch and pixels."""
    co, ci, kh, kw = w_shape
    b, _, ho, wo = dy.shape
    if columns is None:
        columns = im2col(x, (kh, kw), stride, padding)
    dy_rows = dy.reshape(b, co, ho * wo).transpose(1, 0, 2).reshape(co, b * ho * wo)
    return (dy_rows @ columns.T).reshape(w_shape)


def _columns(x, geometry):
    """im2col of x for the CPU path, built once and shared by the forward and the weight
    gradient; None when x runs on the CUDA kernels, which read x in place."""
    if backend.runs_on_cuda_kernels(x):
        return None
    return im2col(x, (geometry.kernel_height, geometry.kernel_width), geometry.stride, geometry.padding)


def _forward(x, w, geometry, columns):
    """y = conv(x, w) on x's backend; ``columns`` is ``_columns(x, geometry)``."""
    if columns is None:
        return cuda.conv2d_forward(x, w, geometry.stride, geometry.padding)
    return conv2d_forward(x, w, geometry.stride, geometry.padding, columns)


def _weight_grad(x, dy, geometry, columns):
    """dw from x and dy on x's backend; ``columns`` is ``_columns(x, geometry)``."""
    if columns is None:
        return cuda.conv2d_weight_grad(x, dy, geometry.w_shape, geometry.stride, geometry.padding)
    return conv2d_weight_grad(x, dy, geometry.w_shape, geometry.stride, geometry.padding, columns)


def _input_grad(dy, w, geometry):
    """dx (of shape ``geometry.x_shape``) from dy on dy's backend."""
    if backend.runs_on_cuda_kernels(dy):
        return cuda.conv2d_input_grad(dy, w, geometry.x_shape, geometry.stride, geometry.padding)
    return conv2d_input_grad(dy, w, geometry.x_shape, geometry.stride, geometry.padding)


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


def _add_bias(y, b):
    return y if b is None else add(y, b.reshape(1, -1, 1, 1))


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep-learning library) of x by w, plus b."""
    _check("conv2d", x, w, b, "(out_channels, in_channels, kh, kw)")
    geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, "conv2d")
    columns = _columns(x.data, geometry)

    def backward(g):
        dx = _input_grad(g, w.data, geometry) if x.requires_grad else None
        dw = _weight_grad(x.data, g, geometry, columns) if w.requires_grad else None
        return dx, dw
    return _add_bias(Tensor.from_op(_forward(x.data, w.data, geometry, columns), (x, w), backward, "conv2d"), b)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution: x (B, Ci, H, W), w (Ci, Co, kh, kw) as in PyTorch.

    Output size: (H - 1) * sh - 2 ph + kh + output_padding_h, likewise for the width;
    output_padding (smaller than the stride) picks among the sizes that a stride-s convolution
    maps to the same H.
    """
    op = "conv_transpose2d"
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
    # The adjoint convolution: input y (B, Co, Hout, Wout), weight w read as (Co_conv = Ci, Ci_conv = Co), output x.
    geometry = ConvGeometry.of((x.shape[0], w.shape[1], *out_hw), w.shape, stride, padding, op)
    y = _input_grad(x.data, w.data, geometry)

    def backward(g):
        # Both gradients read windows of g, the input of the adjoint convolution.
        columns = _columns(g, geometry)
        dx = _forward(g, w.data, geometry, columns) if x.requires_grad else None
        dw = _weight_grad(g, x.data, geometry, columns) if w.requires_grad else None
        return dx, dw
    return _add_bias(Tensor.from_op(y, (x, w), backward, op), b)
