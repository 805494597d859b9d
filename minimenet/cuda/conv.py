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
import os
from dataclasses import dataclass

from ..backend import array_module
from ..conv_geometry import ConvGeometry, ceil_div
from . import sources
from .launch import launch

# Split-K for the weight gradient (see conv2d_weight_grad in conv2d.cu): enough blocks to fill a
# large GPU several times over (an H100 has 132 SMs, each holding up to 8 blocks of 256
# threads), but never so thin a slice that writing and adding its partial sums outweighs its
# arithmetic. The slices' partial sums take at most about TARGET_BLOCKS tiles of memory.
TARGET_BLOCKS = 1024
MIN_SLABS_PER_SLICE = 8

KERNEL_VARIANTS = ("simple", "tiled", "tf32")
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
    if name not in KERNEL_VARIANTS:
        raise ValueError(f"unknown convolution kernels {name!r} (from the argument or ${VARIANT_VARIABLE}); "
                         f"choose one of {', '.join(KERNEL_VARIANTS)}")
    return _variant_named(name)


@functools.lru_cache(maxsize=None)
def _variant_named(name):
    if name == "simple":
        tile = sources.int_constant("conv2d.cu", "CONV_TILE")
        return Variant(name, "conv2d.cu", "", (tile, tile, 1), tile, tile, tile)
    constant = functools.partial(sources.int_constant, "conv2d_tiled.cu")
    return Variant(name, "conv2d_tiled.cu", f"_{name}", (constant("CONV_THREADS"), 1, 1),
                   constant("TILE_M"), constant("TILE_N"), constant("TILE_K"))


def _check_device_supports(chosen, array):
    """TF32 tensor cores exist from sm_80 (A100) on; on an older GPU those kernels would trap."""
    if chosen.name == "tf32" and array_module(array).__name__ == "cupy":
        from .gpu import compute_capability
        if compute_capability() < 80:
            raise ValueError(f"the tf32 convolution kernels need a GPU of compute capability 8.0 or later, "
                             f"this one has {compute_capability() / 10:.1f}; use kernels='tiled' "
                             f"(or ${VARIANT_VARIABLE}=tiled)")


def _float32(a):
    xp = array_module(a)
    return xp.ascontiguousarray(a, dtype=xp.float32)


def _geometry(x_shape, w_shape, stride, padding, op):
    geometry = ConvGeometry.of(x_shape, w_shape, stride, padding, op)
    geometry.check_int32_indexable(op)
    return geometry


def conv2d_forward(x, w, stride, padding, kernels=None):
    """y (B, Co, Ho, Wo) = conv(x (B, Ci, H, W), w (Co, Ci, kh, kw)), zero padding, no bias.
    ``kernels`` names the variant (see ``variant``); every launcher takes it."""
    chosen = variant(kernels)
    _check_device_supports(chosen, x)
    x, w = _float32(x), _float32(w)
    g = _geometry(x.shape, w.shape, stride, padding, "conv2d_forward")
    y = array_module(x).empty(g.y_shape, dtype=x.dtype)
    grid = (ceil_div(g.batch * g.out_height * g.out_width, chosen.tile_n), ceil_div(g.out_channels, chosen.tile_m), 1)
    launch(chosen.file_name, chosen.kernel("forward"), grid, chosen.block, (x, w, y, *g.kernel_arguments()))
    return y


def conv2d_input_grad(dy, w, x_shape, stride, padding, kernels=None):
    """dx of shape ``x_shape`` from dy (B, Co, Ho, Wo). ``x_shape`` may exceed the smallest input
    giving Ho x Wo (by less than the stride): the extra rows and columns touch no output, dx = 0."""
    chosen = variant(kernels)
    _check_device_supports(chosen, dy)
    dy, w = _float32(dy), _float32(w)
    g = _geometry(x_shape, w.shape, stride, padding, "conv2d_input_grad")
    g.check_output(dy.shape, "conv2d_input_grad")
    dx = array_module(dy).empty(g.x_shape, dtype=dy.dtype)
    if chosen.name == "simple":
        grid = (ceil_div(g.batch * g.in_height * g.in_width, chosen.tile_n), ceil_div(g.in_channels, chosen.tile_m), 1)
    else:  # one grid.z layer per sub-pixel phase; phase (0, 0) has the most pixels
        phase_pixels = ceil_div(g.in_height, g.stride_h) * ceil_div(g.in_width, g.stride_w)
        grid = (ceil_div(g.batch * phase_pixels, chosen.tile_n), ceil_div(g.in_channels, chosen.tile_m), g.stride_h * g.stride_w)
    launch(chosen.file_name, chosen.kernel("input_grad"), grid, chosen.block, (dy, w, dx, *g.kernel_arguments()))
    return dx


def weight_grad_slices(w_shape, dy_shape, kernels=None):
    """How many slices (grid.z) the weight gradient splits its K = B Ho Wo sum into."""
    chosen = variant(kernels)
    out_channels, in_channels, kernel_h, kernel_w = w_shape
    batch, _, out_h, out_w = dy_shape
    tiles = ceil_div(out_channels, chosen.tile_m) * ceil_div(in_channels * kernel_h * kernel_w, chosen.tile_n)
    slabs = ceil_div(batch * out_h * out_w, chosen.tile_k)
    return max(1, min(ceil_div(TARGET_BLOCKS, tiles), slabs // MIN_SLABS_PER_SLICE))


def conv2d_weight_grad(x, dy, w_shape, stride, padding, kernels=None):
    """dw of shape ``w_shape`` (Co, Ci, kh, kw) from x (B, Ci, H, W) and dy (B, Co, Ho, Wo)."""
    chosen = variant(kernels)
    _check_device_supports(chosen, x)
    x, dy = _float32(x), _float32(dy)
    g = _geometry(x.shape, w_shape, stride, padding, "conv2d_weight_grad")
    g.check_output(dy.shape, "conv2d_weight_grad")
    slices = weight_grad_slices(g.w_shape, g.y_shape, chosen.name)
    dw_slices = array_module(x).empty((slices, *g.w_shape), dtype=x.dtype)  # every block writes its part
    grid = (ceil_div(g.in_channels * g.kernel_height * g.kernel_width, chosen.tile_n), ceil_div(g.out_channels, chosen.tile_m), slices)
    launch(chosen.file_name, chosen.kernel("weight_grad"), grid, chosen.block, (x, dy, dw_slices, *g.kernel_arguments()))
    # Added in a fixed order rather than by atomicAdd in the kernel: the same sum on every run.
    return dw_slices[0] if slices == 1 else dw_slices.sum(axis=0)
