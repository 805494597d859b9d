"""Winograd's minimal filtering F(4 x 4, 3 x 3): the forward of the 3 x 3 stride-1
convolutions with many channels, so their input gradient (itself such a forward), and by the
adjoint of Eq. 1 their weight gradient (Eq. 3, ``weight_grad``), in 4 times fewer
multiplications (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).

A 4 x 4 tile of a 3 x 3 convolution's outputs reads a 6 x 6 tile d_i of each input channel's
zero-padded input, and with the interpolation points 0, +-1, +-2 and infinity

    Y_o = A^T [ sum_i (G g_oi G^T) * (B^T d_i B) ] A                                      (1)

for each output channel o, where g_oi is the 3 x 3 kernel and * multiplies elementwise. Each
of the 36 positions (a, b) of the transformed tiles is then one matrix product

    M[a, b] = U[a, b] @ V[a, b]:  (Co, Ci) @ (Ci, tiles),   U = G g G^T,  V = B^T d B     (2)

36 Ci multiply-adds per output channel and tile, where the direct form takes 16 x 9 Ci = 144 Ci. The
transforms are products too: in row-major order vec(P X Q^T) = (P kron Q) vec(X), so the input
transform is one (36, 36) @ (36, Ci tiles) product, the output transform one (16, 36) @
(36, Co tiles) and the weights' one (36, 9) @ (9, Co Ci).

The price is rounding: B^T and A^T hold entries up to 5 and 8, so in float32 the result is
within about 1e-5 of the largest output where the direct form is within 5e-7 (measured on the
paper's layers; tests/test_winograd.py), as cuDNN's and oneDNN's Winograd convolutions round in
training too. ``conv_cpu`` takes it on the layers that ``suits``, e1-e4's 3 x 3 layers: at
inference, and in training for the forward and both gradients. The weight gradient is within
about 1e-5 of the largest too (3-9e-6 on the paper's layers against the direct form's 3-4e-7).
"""
import numpy

from . import im2col, memory, threads
from .backend import array_module

B_T = numpy.array([[4, 0, -5, 0, 1, 0],
                   [0, -4, -4, 1, 1, 0],
                   [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0],
                   [0, 4, 0, -5, 0, 1]], dtype=numpy.float64)
G = numpy.array([[1 / 4, 0, 0],
                 [-1 / 6, -1 / 6, -1 / 6],
                 [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6],
                 [1 / 24, -1 / 12, 1 / 6],
                 [0, 0, 1]], dtype=numpy.float64)
A_T = numpy.array([[1, 1, 1, 1, 1, 0],
                   [0, 1, -1, 2, -2, 0],
                   [0, 1, 1, 4, 4, 0],
                   [0, 1, -1, 8, -8, 1]], dtype=numpy.float64)
TILE, WINDOW = 4, 6  # outputs and inputs along each side of a tile
# Column 1 of A^T is all ones, so M's position (1, 1) enters every output of its tile with weight
# 1: a bias added there is added to all 16, in a pass over 1/36 of M instead of one over the
# outputs (batch 5, one thread, with the BRC's batch norm and ReLU, alternating processes:
# 64 channels at 112 x 112 21.1 / 21.1 -> 20.8 / 20.2 ms, 128 at 56 x 56 16.1 / 15.7 -> 15.3 /
# 14.8, 256 at 28 x 28 14.2 / 14.0 -> 13.5 / 13.3; two threads within their noise).
BIAS_POSITION = WINDOW + 1

_TRANSFORMS = {dtype: (numpy.kron(B_T, B_T).astype(dtype), numpy.kron(A_T, A_T).astype(dtype), numpy.kron(G, G).astype(dtype))
               for dtype in (numpy.float32, numpy.float64)}

# Measured side by side against the direct form (``conv_cpu``), batch 5, with the BRC's batch
# norm and ReLU, forward in ms on one thread / two, direct against Winograd: 64 channels at
# 112 x 112 26.2 / 16.4 against 23.0 / 13.0, 128 at 56 x 56 24.5 / 13.0 against 18.2 / 11.4,
# 256 at 28 x 28 22.0 / 12.1 against 14.1 / 8.3, 512 at 14 x 14 22.7 / 12.1 against 19.0 /
# 12.0; but 32 at 224 x 224 32.3 / 21.2 against 35.5 / 22.4 (with 32 channels the transforms
# cost as much as the products save), and 1024 at 7 x 7 21.9 against 20.8 before its 151 MB
# of transformed weights. The weight gradient, with the BRC's batch norm and ReLU, likewise:
# 64 at 112 27.5 / 15.8 against 23.2 / 13.6, 128 at 56 24.8 / 13.2 against 15.3 / 8.7, 256 at
# 28 23.1 / 12.5 against 14.3 / 9.9, 512 at 14 22.6 / 12.8 against 17.7 / 13.1 (level on two
# threads: a band of its (Co, tiles) @ (tiles, Ci) products is 80 tiles deep). Images are cut
# into bands of tile rows above BAND_BUDGET elements of transformed tiles (2^18: 64 channels at
# 112 x 112 25.5 / 14.7 ms, 2^20: 26.8 / 17.7).
MIN_CHANNELS = 64
MIN_SIZE = 14
BAND_BUDGET = 2**19


def suits(x, geometry):
    """Whether F(4 x 4, 3 x 3) pays for this convolution of x: a NumPy array of float32 or
    float64, 3 x 3, stride 1, padding 1, at least ``MIN_CHANNELS`` channels each way and images
    of at least ``MIN_SIZE`` each way."""
    g = geometry
    return (array_module(x) is numpy and x.dtype.type in _TRANSFORMS
            and (g.kernel_height, g.kernel_width, g.stride, g.padding) == (3, 3, (1, 1), (1, 1))
            and min(g.in_channels, g.out_channels) >= MIN_CHANNELS and min(g.in_height, g.in_width) >= MIN_SIZE)


def forward(x, w, geometry, bias=None, input_affine=None, residual=None):
    """y = conv(x, w) (+ bias) (+ residual) by Eq. 1, for the geometries that ``suits``; with
    ``input_affine`` = (scale, shift), of relu(x scale + shift). In blocks of whole images or
    bands of tile rows (``im2col.plan``, sized by their transformed tiles), on the workers
    (``threads.each_block``): each block's zero-padded input rows (``im2col.padded_rows``), its
    transformed tiles V, the 36 products and the output transform, the 4 x 4 tiles then written
    into their rows of y (+ residual) while they are in the cache; the bias enters before the
    output transform (``output_tiles``)."""
    xp, g = array_module(x), geometry
    tile, co, h, wd = TILE, g.out_channels, g.out_height, g.out_width
    tiles_wide, blocks = _plan(xp, g)
    y = memory.empty(g.y_shape, x.dtype, like=x)
    weights = {}  # U for a group of positions, made when a block first needs it (``output_tiles``)

    def convolve(block):
        first, n, row, rows = block
        tiles = output_tiles(w, weights, transformed_tiles(x, block, tiles_wide, input_affine), bias)
        tiles = tiles.reshape(tile, tile, co, n, rows, tiles_wide)
        top, bottom = tile * row, min(tile * (row + rows), h)
        out = y[first:first + n, :, top:bottom]
        whole = bottom - top == tile * rows and wd == tile * tiles_wide
        target = out if whole else memory.scratch("winograd out", (n, co, tile * rows, tile * tiles_wide), x.dtype, like=x)

        def write(channels):
            part = target[:, channels].reshape(n, -1, rows, tile, tiles_wide, tile)
            part.transpose(3, 5, 1, 0, 2, 4)[...] = tiles[:, :, channels]
            if not whole:
                out[:, channels] = target[:, channels, :bottom - top, :wd]
            if residual is not None:
                out[:, channels] += residual[first:first + n, channels, top:bottom]
        threads.parallel(write, threads.channel_slices(out))
    threads.each_block(xp, convolve, blocks, g)
    return y


def weight_grad(x, dy, geometry, input_affine=None):
    """dw of the convolution y = conv(x, w) by Eq. 1's adjoint, for the geometries that
    ``suits``; with ``input_affine`` = (scale, shift), of relu(x scale + shift). Eq. 1 is linear
    in U, so with dM = (A kron A) dY the transformed output gradient of each 4 x 4 tile,

        dU[a, b] = sum over tiles of dM[a, b] @ V[a, b]^T:  (Co, tiles) @ (tiles, Ci),        (3)
        dw[o, i] = G^T dU[., ., o, i] G,

    36 Ci multiply-adds per output channel and tile, as in the forward. The blocks are the
    forward's (``im2col.plan``); worker k sums blocks k, k + workers, ... and the partial sums
    are added in order, so a given number of workers always gives the same bits. A layer in one
    block shares its products out by positions instead."""
    xp, g = array_module(x), geometry
    co, ci = g.out_channels, g.in_channels
    tiles_wide, blocks = _plan(xp, g)
    shares = min(len(blocks), threads.shares(xp, g))
    to_dm = _TRANSFORMS[x.dtype.type][1].T

    def partial_sum(share):
        du = memory.empty((WINDOW * WINDOW, co, ci), x.dtype, like=x)
        for count, block in enumerate(blocks[share::shares]):
            first, n, row, rows = block
            v = transformed_tiles(x, block, tiles_wide, input_affine)
            dm = memory.scratch("winograd M", (WINDOW * WINDOW, co, v.shape[2]), x.dtype, like=x)
            threads.matmul(to_dm, gradient_tiles(dy[first:first + n], row, rows, tiles_wide).reshape(TILE * TILE, -1),
                           dm.reshape(WINDOW * WINDOW, -1))

            def multiply(positions):
                if count == 0:
                    numpy.matmul(dm[positions], v[positions].transpose(0, 2, 1), out=du[positions])
                else:
                    du[positions] += numpy.matmul(dm[positions], v[positions].transpose(0, 2, 1),
                                                  out=memory.scratch("winograd dU", du[positions].shape, x.dtype, like=x))
            threads.parallel(multiply, threads.parts(len(du), threads.workers()))
        return du
    du, *others = threads.each_block(xp, partial_sum, range(shares), g)
    for other in others:
        du += other
    dw = memory.empty((9, co * ci), x.dtype, like=x)
    threads.matmul(_TRANSFORMS[x.dtype.type][2].T, du.reshape(WINDOW * WINDOW, -1), dw)
    return xp.ascontiguousarray(dw.T).reshape(g.w_shape)


def _plan(xp, geometry):
    """(tiles across, the blocks): whole images or bands of tile rows (``im2col.plan``), sized by
    their transformed tiles, shared by the workers (``threads.shares``)."""
    g = geometry
    tiles_high, tiles_wide = -(-g.out_height // TILE), -(-g.out_width // TILE)
    per_row = WINDOW * WINDOW * g.in_channels * tiles_wide
    return tiles_wide, list(im2col.plan(g.batch, tiles_high, per_row, threads.shares(xp, g), BAND_BUDGET))


def gradient_tiles(dy, row, rows, tiles_wide):
    """dy's 4 x 4 tiles in tile rows [row, row + rows), as (4, 4, Co, n, rows, tiles_wide),
    zero where a partial tile reaches past dy: the output tiles' layout in ``output_tiles``."""
    n, co, h, wd = dy.shape
    top, bottom = TILE * row, min(TILE * (row + rows), h)
    source = dy[:, :, top:bottom]
    if bottom - top < TILE * rows or wd < TILE * tiles_wide:
        padded = memory.scratch("winograd dY", (n, co, TILE * rows, TILE * tiles_wide), dy.dtype, like=dy)
        padded[:, :, bottom - top:] = 0
        padded[:, :, :bottom - top, wd:] = 0
        padded[:, :, :bottom - top, :wd] = source
        source = padded
    tiles = memory.scratch("winograd Y", (TILE, TILE, co, n, rows, tiles_wide), dy.dtype, like=dy)

    def gather(channels):
        tiles[:, :, channels] = source[:, channels].reshape(n, -1, rows, TILE, tiles_wide, TILE).transpose(3, 5, 1, 0, 2, 4)
    threads.parallel(gather, threads.channel_slices(tiles, axis=2))
    return tiles


def transformed_tiles(x, block, tiles_wide, input_affine=None):
    """V (36, Ci, n rows tiles_wide) of Eq. 2 for the tiles of a block (first image, n images,
    first tile row, rows) of x: its zero-padded input rows (``im2col.padded_rows``, with
    ``input_affine`` applied), the 6 x 6 windows at steps of 4 copied out (by channels on the
    workers), then B^T d B for all of them in one product."""
    first, n, row, tiles_high = block
    padded = im2col.padded_rows(x[first:first + n], TILE * row - 1, TILE * tiles_high + 2, 1, TILE * tiles_wide + 2, input_affine)
    ci = padded.shape[0]
    s0, s1, s2, s3 = padded.strides
    windows = numpy.lib.stride_tricks.as_strided(
        padded, (WINDOW, WINDOW, ci, n, tiles_high, tiles_wide), (s2, s3, s0, s1, TILE * s2, TILE * s3))
    tiles = memory.scratch("winograd tiles", windows.shape, padded.dtype, like=padded)

    def gather(channels):
        tiles[:, :, channels] = windows[:, :, channels]
    threads.parallel(gather, threads.channel_slices(tiles, axis=2))
    v = memory.scratch("winograd V", (WINDOW * WINDOW, ci, n * tiles_high * tiles_wide), padded.dtype, like=padded)
    threads.matmul(_TRANSFORMS[padded.dtype.type][0], tiles.reshape(WINDOW * WINDOW, -1), v.reshape(WINDOW * WINDOW, -1))
    return v


def output_tiles(w, weights, v, bias=None):
    """The 4 x 4 output tiles (4, 4, Co, tiles) of Eq. 1 for the kernels w (Co, Ci, 3, 3) and
    the transformed tiles v (+ bias, (Co,)): the 36 products of Eq. 2, shared out over the
    workers by positions, then A^T M A for all of them in one product. The bias is added to
    M at ``BIAS_POSITION``, 1/36 of M, instead of to every output. The transformed weights U of a
    group of positions are made the first time a block needs them and kept in ``weights`` for
    the forward's other blocks: a layer in one block has each worker transform its own
    positions' kernels just before their products (U made first for all positions, then the
    products: 8.0 -> 9.5 ms for 256 channels at 28 x 28, batch 5, two threads), and a layer in
    many blocks transforms them once (per block it cost 1.9 of the 128-channel 56 x 56
    layer's 18 ms, one thread)."""
    m = memory.scratch("winograd M", (WINDOW * WINDOW, w.shape[0], v.shape[2]), v.dtype, like=v)

    def multiply(positions):
        u = weights.get(positions.start)
        if u is None:  # two workers' first blocks may both make it; they make the same, one is kept
            u = weights.setdefault(positions.start, transformed_weights(w, positions))
        numpy.matmul(u, v[positions], out=m[positions])
    threads.parallel(multiply, threads.parts(len(m), threads.workers()))
    if bias is not None:
        m[BIAS_POSITION] += bias.reshape(-1, 1)
    y = memory.scratch("winograd Y", (TILE, TILE) + m.shape[1:], v.dtype, like=v)
    threads.matmul(_TRANSFORMS[v.dtype.type][1], m.reshape(WINDOW * WINDOW, -1), y.reshape(TILE * TILE, -1))
    return y


def transformed_weights(w, positions=slice(None)):
    """U[a, b] = (G g G^T)[a, b] of Eq. 2 for every kernel g = w[o, i], at the transformed
    ``positions`` (all 36 by default): (positions, Co, Ci), on the calling thread."""
    co, ci = w.shape[:2]
    to_u = _TRANSFORMS[w.dtype.type][2][positions]
    u = memory.empty((len(to_u), co, ci), w.dtype, like=w)
    numpy.matmul(to_u, w.reshape(co * ci, 9).T, out=u.reshape(len(to_u), -1))
    return u
