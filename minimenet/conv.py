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
moves less data; on the GPU, for float32, all three are our CUDA kernels (``kernels/*.cu``).
"""
from .backend import array_module, is_gpu_array
from .tensor import Tensor, add, check_dtypes


def _pair(value, name, op):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 0 for v in pair):
        raise ValueError(f"{op}: {name} must be a non-negative int or a pair of them, got {value!r}")
    return pair


def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


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


def _uses_kernels(a):
    return is_gpu_array(a) and a.dtype == "float32"


def _input_grad(dy, w, x_shape, stride, padding):
    """conv2d_input_grad on dy's backend: our CUDA kernel for float32 on the GPU, col2im otherwise."""
    if _uses_kernels(dy):
        from . import cuda
        return cuda.conv2d_input_grad(dy, w, x_shape, stride, padding)
    return conv2d_input_grad(dy, w, x_shape, stride, padding)


def _bound_to_input(x, w_shape, stride, padding):
    """(forward(w) -> y, weight_grad(dy) -> dw) for the input x: our CUDA kernels for float32 on
    the GPU; otherwise im2col + BLAS, where both share one im2col of x, built at most once."""
    if _uses_kernels(x):
        from . import cuda
        return (lambda w: cuda.conv2d_forward(x, w, stride, padding),
                lambda dy: cuda.conv2d_weight_grad(x, dy, w_shape, stride, padding))
    cache = []

    def columns():
        if not cache:
            cache.append(im2col(x, w_shape[2:], stride, padding))
        return cache[0]
    return (lambda w: conv2d_forward(x, w, stride, padding, columns()),
            lambda dy: conv2d_weight_grad(x, dy, w_shape, stride, padding, columns()))


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
    if x.shape[1] != w.shape[0 if op == "conv_transpose2d" else 1]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but the weight {weight_layout} of shape {w.shape} "
                         f"expects {w.shape[0 if op == 'conv_transpose2d' else 1]}")
    out_channels = w.shape[1 if op == "conv_transpose2d" else 0]
    if b is not None and b.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) to match the weight {w.shape}, got {b.shape}")
    check_dtypes(op, *(t for t in (x, w, b) if t is not None))


def _add_bias(y, b):
    return y if b is None else add(y, b.reshape(1, -1, 1, 1))


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep-learning library) of x by w, plus b."""
    stride, padding = _pair(stride, "stride", "conv2d"), _pair(padding, "padding", "conv2d")
    _check("conv2d", x, w, b, "(out_channels, in_channels, kh, kw)")
    if 0 in stride:
        raise ValueError("conv2d: stride must be positive")
    if any(output_size(x.shape[2 + i], w.shape[2 + i], stride[i], padding[i]) < 1 for i in range(2)):
        raise ValueError(f"conv2d: kernel {w.shape[2:]} with padding {padding} does not fit the input of spatial size {x.shape[2:]}")
    forward, weight_grad = _bound_to_input(x.data, w.shape, stride, padding)

    def backward(g):
        dx = _input_grad(g, w.data, x.shape, stride, padding) if x.requires_grad else None
        dw = weight_grad(g) if w.requires_grad else None
        return dx, dw
    return _add_bias(Tensor.from_op(forward(w.data), (x, w), backward, "conv2d"), b)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution: x (B, Ci, H, W), w (Ci, Co, kh, kw) as in PyTorch.

    Output size: (H - 1) * sh - 2 ph + kh + output_padding_h, likewise for the width;
    output_padding (smaller than the stride) picks among the sizes that a stride-s convolution
    maps to the same H.
    """
    stride, padding = _pair(stride, "stride", "conv_transpose2d"), _pair(padding, "padding", "conv_transpose2d")
    output_padding = _pair(output_padding, "output_padding", "conv_transpose2d")
    _check("conv_transpose2d", x, w, b, "(in_channels, out_channels, kh, kw)")
    if 0 in stride or any(op >= s for op, s in zip(output_padding, stride)):
        raise ValueError(f"conv_transpose2d: stride must be positive and output_padding {output_padding} smaller than stride {stride}")
    out_hw = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + w.shape[2 + i] + output_padding[i] for i in range(2)]
    if min(out_hw) < 1:
        raise ValueError(f"conv_transpose2d: padding {padding} leaves no output for input {x.shape[2:]} and kernel {w.shape[2:]}")
    out_shape = (x.shape[0], w.shape[1], *out_hw)
    y = _input_grad(x.data, w.data, out_shape, stride, padding)

    def backward(g):
        # Both gradients read windows of g, the input of the adjoint convolution.
        forward, weight_grad = _bound_to_input(g, w.shape, stride, padding)
        dx = forward(w.data) if x.requires_grad else None
        dw = weight_grad(x.data) if w.requires_grad else None
        return dx, dw
    return _add_bias(Tensor.from_op(y, (x, w), backward, "conv_transpose2d"), b)
