"""The sizes of one 2-D convolution, validated once, for every backend.

For an input x (B, Ci, H, W), weight w (Co, Ci, kh, kw), stride (sh, sw) and zero padding
(ph, pw), the output y is (B, Co, Ho, Wo) with

    Ho = (H + 2 ph - kh) // sh + 1,    Wo = (W + 2 pw - kw) // sw + 1.

``ConvGeometry`` holds these thirteen numbers under their names; the CPU code reads the names and
``kernel_arguments()`` lays them out in the order every kernel of ``kernels/conv2d*.cu`` takes
them. Both ``minimenet.conv`` (the ops) and ``minimenet.cuda.conv`` (the kernel launchers) import
from here, so neither imports the other for its sizes.
"""
import dataclasses
import math
import numbers

INT32_ELEMENTS = 2**31  # the kernels index with 32-bit ints: no tensor may reach this many elements


def pair(value, name, op):
    """``value`` as (h, w): an int stands for both. Ints of any kind (NumPy's too) are accepted
    and returned as Python ints; negative ones are not."""
    pair_ = (value, value) if isinstance(value, numbers.Integral) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair_) != 2 or not all(isinstance(v, numbers.Integral) and v >= 0 for v in pair_):
        raise ValueError(f"{op}: {name} must be a non-negative int or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair_)


def ceil_div(count, size):
    """ceil(count / size) for non-negative ints, exactly (no float rounding)."""
    return -(-count // size)


def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """x (batch, in_channels, in_height, in_width) * w (out_channels, in_channels, kernel_height,
    kernel_width) -> y (batch, out_channels, out_height, out_width)."""
    batch: int
    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel_height: int
    kernel_width: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    out_height: int
    out_width: int

    @classmethod
    def of(cls, x_shape, w_shape, stride, padding, op):
        """The geometry of convolving an input of ``x_shape`` by a weight of ``w_shape``
        (Co, Ci, kh, kw); raises ValueError, its message starting with ``op``, when they do not
        make a convolution. A training step asks for the same few dozen geometries hundreds of
        times, so the valid ones are remembered."""
        if not (_plain_ints(stride) and _plain_ints(padding)):  # e.g. 1.0, which equals 1 but is refused
            return cls._validated(x_shape, w_shape, stride, padding, op)
        key = (tuple(x_shape), tuple(w_shape), stride, padding)
        geometry = _KNOWN.get(key)
        if geometry is None:
            geometry = _KNOWN[key] = cls._validated(x_shape, w_shape, stride, padding, op)
        return geometry

    @classmethod
    def _validated(cls, x_shape, w_shape, stride, padding, op):
        batch, in_channels, height, width = (int(s) for s in x_shape)
        out_channels, w_in_channels, kernel_h, kernel_w = (int(s) for s in w_shape)
        (stride_h, stride_w), (pad_h, pad_w) = pair(stride, "stride", op), pair(padding, "padding", op)
        if in_channels != w_in_channels:
            raise ValueError(f"{op}: input has {in_channels} channels but the weight (out_channels, in_channels, kh, kw) "
                             f"of shape {tuple(w_shape)} expects {w_in_channels}")
        if 0 in (stride_h, stride_w):
            raise ValueError(f"{op}: stride must be positive, got {stride!r}")
        out_h, out_w = output_size(height, kernel_h, stride_h, pad_h), output_size(width, kernel_w, stride_w, pad_w)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"{op}: kernel {(kernel_h, kernel_w)} with padding {(pad_h, pad_w)} does not fit the input "
                             f"of spatial size {(height, width)}")
        return cls(batch, in_channels, height, width, out_channels, kernel_h, kernel_w,
                   stride_h, stride_w, pad_h, pad_w, out_h, out_w)

    @property
    def x_shape(self):
        return (self.batch, self.in_channels, self.in_height, self.in_width)

    @property
    def w_shape(self):
        return (self.out_channels, self.in_channels, self.kernel_height, self.kernel_width)

    @property
    def y_shape(self):
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def stride(self):
        return (self.stride_h, self.stride_w)

    @property
    def padding(self):
        return (self.pad_h, self.pad_w)

    @property
    def multiply_adds(self):
        """Multiply-adds of the forward (and of each gradient): every output times Ci kh kw."""
        return math.prod(self.y_shape) * self.in_channels * self.kernel_height * self.kernel_width

    def check_output(self, dy_shape, op):
        """A gradient dy must have the output's shape."""
        if tuple(dy_shape) != self.y_shape:
            raise ValueError(f"{op}: dy has shape {tuple(dy_shape)}, but an input of shape {self.x_shape} and a weight "
                             f"of shape {self.w_shape} give outputs of shape {self.y_shape}")

    def check_int32_indexable(self, op):
        """The kernels index with 32-bit ints, so no tensor may reach 2^31 elements."""
        if max(math.prod(shape) for shape in (self.x_shape, self.y_shape, self.w_shape)) >= INT32_ELEMENTS:
            raise ValueError(f"{op}: a tensor has 2^31 elements or more; the kernels index with 32-bit ints, so split the batch")

    def kernel_arguments(self):
        """The 13 int arguments every conv kernel takes after its three arrays: the fields, which
        are named and ordered as the kernels' parameters (a test reads the signatures)."""
        return dataclasses.astuple(self)


_KNOWN = {}  # (x_shape, w_shape, stride, padding) -> its ConvGeometry, for ConvGeometry.of


def _plain_ints(value):
    """Whether ``value`` is a Python int or a pair of them: only those key ``_KNOWN``."""
    return type(value) is int or (type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int)
