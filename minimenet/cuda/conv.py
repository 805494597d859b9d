"""Launchers for the convolution kernels of ``kernels/conv2d.cu`` and ``kernels/conv2d_tiled.cu``.

All three take and return NCHW float32 arrays, NumPy (run in the CPU emulator) or CuPy (run on
the GPU); other dtypes and layouts are converted first. Each takes ``kernels=``, the variant
("simple", "tiled" or "tf32"; see ``variant``), defaulting to $MINIMENET_CONV_KERNELS or "tiled".

ConvTranspose2d with weight ``w`` of shape (Cin, Cout, kh, kw) runs on the same three functions
with the roles swapped, reading ``w`` as a convolution weight with co = Cin, ci = Cout:

* forward:      ``conv2d_input_grad(x, w, (B, Cout, Hout, Wout), stride, padding)``, where
                Hout = (H - 1) sh - 2 ph + kh + output_padding_h: the explicit output shape is
                what carries output_padding;
* input grad:   ``conv2d_forward(dy, w, stride, padding)``;
* weight grad:  ``conv2d_weight_grad(dy, x, w.shape, stride, padding)`` (x and dy swapped).
"""
import functools
import numbers
import os
from dataclasses import dataclass

from ..backend import array_module
from ..conv import output_size
from . import sources
from .launch import launch

# Split-K for the weight gradient (see conv2d_weight_grad in conv2d.cu): enough blocks to fill a
# large GPU several times over (an H100 has 132 SMs, each holding up to 8 blocks of 256
# threads), but never so thin a slice that writing and adding its partial sums outweighs its
# arithmetic. The slices' partial sums take at most about TARGET_BLOCKS tiles of memory.
TARGET_BLOCKS = 1024
MIN_SLABS_PER_SLICE = 8

_INT32_ELEMENTS = 2**31

VARIANTS = ("simple", "tiled", "tf32")
DEFAULT_VARIANT = "tiled"
VARIANT_VARIABLE = "MINIMENET_CONV_KERNELS"


@dataclass(frozen=True)
class Variant:
    """One implementation of the three convolution kernels and the launch geometry it expects:
    blocks of ``block`` threads, each computing a ``tile_m`` x ``tile_n`` tile of C while walking
    K ``tile_k`` at a time."""
    name: str
    file_name: str
    kernel_suffix: str
    block: tuple
    tile_m: int
    tile_n: int
    tile_k: int

    def kernel(self, operation):
        return f"conv2d_{operation}{self.kernel_suffix}"


def variant(name=None):
    """The kernels to use: ``name``, or else $MINIMENET_CONV_KERNELS, or else DEFAULT_VARIANT.

    simple  conv2d.cu: 16 x 16 tiles, one output per thread; the readable reference.
    tiled   conv2d_tiled.cu: 32 x 128 tiles, 4 x 4 float32 register tiles per thread.
    tf32    conv2d_tiled.cu on TF32 tensor cores (sm_80 and later; inputs rounded to 10-bit
            mantissas, as cuDNN does by default in PyTorch).
    """
    name = name or os.environ.get(VARIANT_VARIABLE) or DEFAULT_VARIANT
    if name not in VARIANTS:
        raise ValueError(f"unknown convolution kernels {name!r} (from the argument or ${VARIANT_VARIABLE}); "
                         f"choose one of {', '.join(VARIANTS)}")
    return _variant_named(name)


@functools.lru_cache(maxsize=None)
def _variant_named(name):
    if name == "simple":
        tile = sources.int_constant("conv2d.cu", "CONV_TILE")
        return Variant(name, "conv2d.cu", "", (tile, tile, 1), tile, tile, tile)
    constant = functools.partial(sources.int_constant, "conv2d_tiled.cu")
    return Variant(name, "conv2d_tiled.cu", f"_{name}", (constant("CONV_THREADS"), 1, 1),
                   constant("TILE_M"), constant("TILE_N"), constant("TILE_K"))


def _check_device_supports(kernels, array):
    """TF32 tensor cores exist from sm_80 (A100) on; on an older GPU those kernels would trap."""
    if kernels.name == "tf32" and array_module(array).__name__ == "cupy":
        from .gpu import compute_capability
        if compute_capability() < 80:
            raise ValueError(f"the tf32 convolution kernels need a GPU of compute capability 8.0 or later, "
                             f"this one has {compute_capability() / 10:.1f}; use kernels='tiled' "
                             f"(or ${VARIANT_VARIABLE}=tiled)")


def _pair(value, name):
    pair = (int(value),) * 2 if isinstance(value, numbers.Integral) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
    return pair


def _float32(a):
    xp = array_module(a)
    return xp.ascontiguousarray(a, dtype=xp.float32)


def _ceil_div(count, size):
    return -(-count // size)


def _geometry(x_shape, w_shape, stride, padding, what):
    """The 13 size arguments every conv kernel takes, validated."""
    batch, in_channels, height, width = (int(s) for s in x_shape)
    out_channels, w_in_channels, kernel_h, kernel_w = (int(s) for s in w_shape)
    (stride_h, stride_w), (pad_h, pad_w) = _pair(stride, "stride"), _pair(padding, "padding")
    if in_channels != w_in_channels:
        raise ValueError(f"{what}: input has {in_channels} channels but the weight {tuple(w_shape)} expects {w_in_channels}")
    if min(stride_h, stride_w) < 1 or min(pad_h, pad_w) < 0:
        raise ValueError(f"{what}: stride must be >= 1 and padding >= 0, got stride {stride}, padding {padding}")
    out_h = output_size(height, kernel_h, stride_h, pad_h)
    out_w = output_size(width, kernel_w, stride_w, pad_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{what}: a {kernel_h}x{kernel_w} kernel does not fit a {height}x{width} input padded by {padding}")
    sizes = (batch * in_channels * height * width, batch * out_channels * out_h * out_w, out_channels * in_channels * kernel_h * kernel_w)
    if max(sizes) >= _INT32_ELEMENTS:
        raise ValueError(f"{what}: a tensor has 2^31 elements or more; the kernels index with 32-bit ints, so split the batch")
    return (batch, in_channels, height, width, out_channels, kernel_h, kernel_w,
            stride_h, stride_w, pad_h, pad_w, out_h, out_w)


def conv2d_forward(x, w, stride, padding, kernels=None):
    """y (B, Co, Ho, Wo) = conv(x (B, Ci, H, W), w (Co, Ci, kh, kw)), zero padding, no bias.
    ``kernels`` names the variant (see ``variant``); every launcher takes it."""
    kernels = variant(kernels)
    _check_device_supports(kernels, x)
    x, w = _float32(x), _float32(w)
    geometry = _geometry(x.shape, w.shape, stride, padding, "conv2d_forward")
    batch, out_channels, out_h, out_w = geometry[0], geometry[4], geometry[11], geometry[12]
    y = array_module(x).empty((batch, out_channels, out_h, out_w), dtype=x.dtype)
    grid = (_ceil_div(batch * out_h * out_w, kernels.tile_n), _ceil_div(out_channels, kernels.tile_m), 1)
    launch(kernels.file_name, kernels.kernel("forward"), grid, kernels.block, (x, w, y, *geometry))
    return y


def conv2d_input_grad(dy, w, x_shape, stride, padding, kernels=None):
    """dx of shape ``x_shape`` from dy (B, Co, Ho, Wo). ``x_shape`` may exceed the smallest input
    giving Ho x Wo (by less than the stride): the extra rows and columns touch no output, dx = 0."""
    kernels = variant(kernels)
    _check_device_supports(kernels, dy)
    dy, w = _float32(dy), _float32(w)
    geometry = _geometry(x_shape, w.shape, stride, padding, "conv2d_input_grad")
    batch, in_channels, height, width = geometry[:4]
    expected_dy = (batch, geometry[4], geometry[11], geometry[12])
    if tuple(dy.shape) != expected_dy:
        raise ValueError(f"conv2d_input_grad: dy has shape {tuple(dy.shape)}, but an input of shape {tuple(x_shape)} gives outputs of shape {expected_dy}")
    dx = array_module(dy).empty((batch, in_channels, height, width), dtype=dy.dtype)
    stride_h, stride_w = geometry[7:9]
    if kernels.name == "simple":
        grid = (_ceil_div(batch * height * width, kernels.tile_n), _ceil_div(in_channels, kernels.tile_m), 1)
    else:  # one grid.z layer per sub-pixel phase; phase (0, 0) has the most pixels
        phase_pixels = _ceil_div(height, stride_h) * _ceil_div(width, stride_w)
        grid = (_ceil_div(batch * phase_pixels, kernels.tile_n), _ceil_div(in_channels, kernels.tile_m), stride_h * stride_w)
    launch(kernels.file_name, kernels.kernel("input_grad"), grid, kernels.block, (dy, w, dx, *geometry))
    return dx


def weight_grad_slices(w_shape, dy_shape, kernels=None):
    """How many slices (grid.z) the weight gradient splits its K = B Ho Wo sum into."""
    kernels = variant(kernels)
    out_channels, in_channels, kernel_h, kernel_w = w_shape
    batch, _, out_h, out_w = dy_shape
    tiles = _ceil_div(out_channels, kernels.tile_m) * _ceil_div(in_channels * kernel_h * kernel_w, kernels.tile_n)
    slabs = _ceil_div(batch * out_h * out_w, kernels.tile_k)
    return max(1, min(_ceil_div(TARGET_BLOCKS, tiles), slabs // MIN_SLABS_PER_SLICE))


def conv2d_weight_grad(x, dy, w_shape, stride, padding, kernels=None):
    """dw of shape ``w_shape`` (Co, Ci, kh, kw) from x (B, Ci, H, W) and dy (B, Co, Ho, Wo)."""
    kernels = variant(kernels)
    _check_device_supports(kernels, x)
    x, dy = _float32(x), _float32(dy)
    geometry = _geometry(x.shape, w_shape, stride, padding, "conv2d_weight_grad")
    expected_dy = (geometry[0], geometry[4], geometry[11], geometry[12])
    if tuple(dy.shape) != expected_dy:
        raise ValueError(f"conv2d_weight_grad: dy has shape {tuple(dy.shape)}, but x {tuple(x.shape)} and w {tuple(w_shape)} give outputs of shape {expected_dy}")
    w_shape = tuple(int(s) for s in w_shape)
    out_channels, in_channels, kernel_h, kernel_w = w_shape
    slices = weight_grad_slices(w_shape, dy.shape, kernels.name)
    dw_slices = array_module(x).empty((slices, *w_shape), dtype=x.dtype)  # every block writes its part
    grid = (_ceil_div(in_channels * kernel_h * kernel_w, kernels.tile_n), _ceil_div(out_channels, kernels.tile_m), slices)
    launch(kernels.file_name, kernels.kernel("weight_grad"), grid, kernels.block, (x, dy, dw_slices, *geometry))
    # Added in a fixed order rather than by atomicAdd in the kernel: the same sum on every run.
    return dw_slices[0] if slices == 1 else dw_slices.sum(axis=0)
