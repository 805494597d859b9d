"""The convolution's three primitives (``conv``) on the CPU, in NumPy: im2col and matrix products.

The forward and the weight gradient are im2col + matrix products (BLAS does the work), a block
of images or of rows at a time in reused buffers (``im2col.blocks``), the blocks spread over the
worker threads (``minimenet.threads``); the weight gradient rebuilds the columns it needs from
x, or takes the forward's where they are small (``KEEP_COLUMNS``). The input gradient is either
col2im or, per sub-pixel phase, a stride-1 forward of dy by the taps that reach that phase,
whichever moves less data (at stride 1, one forward); by the same adjointness a stride-1
forward with few outputs from many inputs is the col2im of the adjoint.
A stride-1 forward and weight gradient with few output channels take a kernel row's taps as
rows of their products (``_forward_by_shifted_taps``); such a forward reads its input rows in
place (``im2col.stacked_rows``), with no columns at all. A 3 x 3 stride-1 forward with many
channels (and so the input gradient of one), and its weight gradient, go by Winograd's
F(4 x 4, 3 x 3) instead (``winograd``). Outputs come from reused memory
(``minimenet.memory``).
"""
import itertools

import numpy

from . import im2col, memory, threads, winograd
from .backend import array_module
from .conv_geometry import ConvGeometry


# A stride-1 forward goes by the adjoint's col2im when Ci exceeds this many times Co: its copies
# then move Co kh kw planes instead of Ci kh kw. Measured, batch 5, one thread, im2col / col2im
# in ms: 32 -> 1 at 224 x 224 10.7 / 5.1, 13 -> 2 10.0 / 3.4, 128 -> 32 at 56 x 56 11.2 / 7.2,
# 64 -> 32 at 112 x 112 20.6 / 17.9 but 11.9 / 12.4 on two threads, 32 -> 16 30.7 / 34.4.
FORWARD_BY_COL2IM = 2.0

# A stride-1 forward with few output channels multiplies faster with the kw taps of a kernel row
# as extra rows of the product: Z = W' (kw Co, Ci kh) @ columns (Ci kh, rows x padded width),
# then y[o, r, c] = sum_v Z[v, o, r, c + v]. The columns shrink kw-fold, and on one core a
# (96, 96) @ (96, N) product ran at 195 GFLOP/s where (32, 288) @ (288, N) ran at 136. Measured
# side by side, 3 x 3, batch 5, one thread, im2col / shifted taps in ms: Ci = Co = 32 at
# 224 x 224 41.7 / 33.6, 64 at 112 29.2 / 26.2, 128 at 56 24.9 / 24.2, 256 at 28 23.5 / 25.1
# (so kw Co is at most SHIFTED_TAPS_MAX_ROWS). It pays where it copies less: per output row,
# Ci kh rows of columns and kw Co rows of product, both of the padded width, against Ci kh kw
# rows of im2col columns (``_by_shifted_taps``). Forward / weight gradient in ms, im2col against
# shifted taps: 13 -> 16 at 224 x 224 13.1 / 9.8 and 14.9 / 11.9; batch 8, 13 -> 16 at 64 x 64
# 2.1 / 1.4 and 2.5 / 1.7, 4 -> 4 at 64 x 64 0.47 / 0.32 and 0.58 / 0.29, 16 -> 16 at 16 x 16
# 0.21 / 0.16 and 0.24 / 0.15; but the stem 3 -> 32 6.7 / 22.5 and 128 -> 128 at 2 x 2
# 0.16 / 0.22 and 0.16 / 0.66, which copy more.
# The forward then needs no columns: with the padded input laid out (n, row, Ci, W + 2pw), the
# kh rows that an output row reads, all their channels, are one (kh Ci, W + 2pw) matrix in place
# (``im2col.stacked_rows``), and one stacked product makes every row's planes. Against the
# whole-width columns, batch 5, with the BRC's batch norm, bias and residual, ms, one / two
# threads: 32 -> 32 at 224 x 224 36.0 / 23.6 -> 35.2 / 20.4, and 31.0 / 18.1 with the stacked
# products in pieces (``threads.MIN_STACKED_PIECE``); 32 -> 64 level; the tiny preset's
# 16 -> 16 at 64 x 64, batch 8, 2.35 / 1.94 -> 1.45 / 1.30. Only a forward that keeps its
# columns for the weight gradient (``KEEP_COLUMNS``) still makes them.
SHIFTED_TAPS_MAX_ROWS = 384

# A forward whose whole batch is one block of at most this many column elements (4 MB in
# float32) makes its columns in memory of their own and leaves them in ``kept`` for its weight
# gradient, which would otherwise copy them from x again: those copies took 6.9 ms of the tiny
# preset's 83 ms step (one thread). Larger columns are rebuilt in the backward pass, as the
# paper preset's would hold gigabytes until then.
KEEP_COLUMNS = 2**20


def conv2d_forward(x, w, stride, padding, bias=None, input_affine=None, residual=None, kept=None, direct=False):
    """y = W columns (+ bias): (Co, Ci*kh*kw) @ (Ci*kh*kw, n*rows*Wo) for each block
    (``im2col.blocks``), the (Co, n) axes of a block of several images swapped into y (a block of one
    image is written straight into its rows of y). The blocks are independent, so they run on
    the worker threads (``minimenet.threads``).

    The extras are applied to a block while it is in the cache, not in passes of their own:
    the bias (Co,) and a ``residual`` of y's shape are added to each block's product, and
    ``input_affine`` = (scale, shift), each (Ci,), is applied to the input rows it reads, so
    that the convolution is of relu(x scale + shift) (see ``fused.batch_norm_relu_conv2d``).
    ``kept``: a dict in which to leave small columns for ``conv2d_weight_grad`` (``KEEP_COLUMNS``).
    The layers that ``winograd.suits`` go by Winograd's F(4 x 4, 3 x 3) (``winograd.forward``),
    rounded within about 1e-5 of the largest output in float32; ``direct``: by the direct form
    even so (the reference that tests and benchmarks compare it with)."""
    xp = array_module(x)
    g = ConvGeometry.of(x.shape, w.shape, stride, padding, "conv2d_forward")
    if not direct and winograd.suits(x, g):
        return winograd.forward(x, w, g, bias, input_affine, residual)
    (kh, kw), (ph, pw) = w.shape[2:], g.padding
    if g.stride == (1, 1) and ph < kh and pw < kw and FORWARD_BY_COL2IM * g.out_channels < g.in_channels:
        # Few outputs from many inputs (the scale maps' 32 -> 1): the forward is the input
        # gradient of the adjoint convolution, whose col2im copies Co kh kw planes, not Ci kh kw
        # (and applies an input_affine to each block of x as it copies it).
        return _input_grad_by_col2im(x, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), g.y_shape, (1, 1), (kh - 1 - ph, kw - 1 - pw),
                                     bias, residual, input_affine)
    if _by_shifted_taps(g):
        return _forward_by_shifted_taps(x, w, g, bias, input_affine, residual, kept)
    y = memory.empty(g.y_shape, x.dtype, like=x)
    bias_column = None if bias is None else bias.reshape(-1, 1)
    weight_rows = w.reshape(g.out_channels, -1)
    blocks = list(im2col.blocks(g, shares=threads.shares(xp, g)))
    keep = _keeps(kept, blocks, g, whole_width=False)

    def convolve(block):
        first, n, row, rows = block
        columns = im2col.block_columns(x[first:first + n], g, row, rows, input_affine, fresh=keep)
        if keep:
            kept.update(block=block, columns=columns)
        if n == 1:  # the product is these rows of y[first], already laid out: written in place
            out = y[first].reshape(g.out_channels, -1)[:, row * g.out_width:(row + rows) * g.out_width]
            _matmul(xp, weight_rows, columns, out)
            if bias is not None:
                out += bias_column
            if residual is not None:
                out += residual[first].reshape(g.out_channels, -1)[:, row * g.out_width:(row + rows) * g.out_width]
        else:  # one product for the images (22 % faster than one per image on 7 x 7 images), then (Co, n) swapped
            product = _matmul(xp, weight_rows, columns, memory.scratch("product", (g.out_channels, columns.shape[1]), x.dtype, like=x))
            if bias is not None:
                product += bias_column
            y[first:first + n] = product.reshape(g.out_channels, n, g.out_height, g.out_width).transpose(1, 0, 2, 3)
            if residual is not None:
                y[first:first + n] += residual[first:first + n]
    threads.each_block(xp, convolve, blocks, g)
    return y


def _keeps(kept, blocks, geometry, whole_width):
    """Whether a forward leaves its columns in ``kept``: there is a ``kept``, the batch is one
    block and its columns are no more than ``KEEP_COLUMNS`` elements."""
    return (kept is not None and len(blocks) == 1
            and im2col.columns_per_row(geometry, whole_width) * geometry.out_height * geometry.batch <= KEEP_COLUMNS)


def _kept_columns(kept, block):
    """The columns that the forward left in ``kept`` for this block (taken out, so that they
    are freed with the weight gradient), or None."""
    return kept.pop("columns") if kept and kept.get("block") == block else None


def _by_shifted_taps(g):
    """Whether the forward and the weight gradient take a kernel row's taps as rows of their
    products: stride 1, at most ``SHIFTED_TAPS_MAX_ROWS`` rows, and fewer elements copied per
    output row (Ci kh rows of whole-width columns and kw Co rows of product, against Ci kh kw
    rows of im2col columns)."""
    if g.stride != (1, 1) or g.kernel_width == 1 or g.kernel_width * g.out_channels > SHIFTED_TAPS_MAX_ROWS:
        return False
    padded_width = g.in_width + 2 * g.padding[1]
    by_shifted_taps = (g.in_channels * g.kernel_height + g.kernel_width * g.out_channels) * padded_width
    return by_shifted_taps < g.in_channels * g.kernel_height * g.kernel_width * g.out_width


def _forward_by_shifted_taps(x, w, geometry, bias, input_affine, residual, kept=None):
    """The stride-1 forward as kw products in one (``SHIFTED_TAPS_MAX_ROWS``): for each block,
    Z = W' P with W' (kw*Co, kh*Ci) the weight's rows (v, o) and P the block's input rows, then
    y[b, o, r, c] = sum_v Z[v, o, b, r, c + v] (+ bias, + residual), the shifted planes added
    while they are in the cache. P is ``im2col.stacked_rows``, read in place, one product per
    output row; a forward that keeps its columns for the weight gradient (``KEEP_COLUMNS``)
    makes them instead (``im2col.block_columns``' whole-width columns) and multiplies them."""
    xp, g = array_module(x), geometry
    co, kw, wo = g.out_channels, g.kernel_width, g.out_width
    blocks = list(im2col.blocks(g, whole_width=True, shares=threads.shares(xp, g)))
    keep = _keeps(kept, blocks, g, whole_width=True)
    weight_rows = w.transpose(3, 0, 1, 2) if keep else w.transpose(3, 0, 2, 1)  # columns (i, u), or stacked rows (u, i)
    weight_rows = weight_rows.reshape(kw * co, -1)
    y = memory.empty(g.y_shape, x.dtype, like=x)

    def convolve(block):
        first, n, row, rows = block
        if keep:
            columns = im2col.block_columns(x[first:first + n], g, row, rows, input_affine, whole_width=True, fresh=True)
            kept.update(block=block, columns=columns)
            product = memory.scratch("product", (kw * co, columns.shape[1]), x.dtype, like=x)
            planes = _matmul(xp, weight_rows, columns, product).reshape(kw, co, n, rows, -1)
        else:
            stacked = im2col.stacked_rows(x[first:first + n], g, row, rows, input_affine)
            product = memory.scratch("product", stacked.shape[:2] + (kw * co, stacked.shape[3]), x.dtype, like=x)
            planes = _matmul(xp, weight_rows, stacked, product).reshape(n, rows, kw, co, -1).transpose(2, 3, 0, 1, 4)
        out = y[first:first + n, :, row:row + rows].transpose(1, 0, 2, 3)  # (Co, n, rows, Wo), as the planes
        xp.add(planes[0, ..., :wo], planes[1, ..., 1:1 + wo], out=out)
        for v in range(2, kw):
            out += planes[v, ..., v:v + wo]
        if bias is not None:
            out += bias.reshape(-1, 1, 1, 1)
        if residual is not None:
            out += residual[first:first + n, :, row:row + rows].transpose(1, 0, 2, 3)
    threads.each_block(xp, convolve, blocks, g)
    return y


def _matmul(xp, a, b, out):
    """out = a @ b, its rows over the worker threads for NumPy arrays (a single product when
    already on one)."""
    return threads.matmul(a, b, out) if xp is numpy else xp.matmul(a, b, out=out)


def conv2d_input_grad(dy, w, x_shape, stride, padding, method=None, input_affine=None, residual=None):
    """dx = w^T dy (+ residual, of dx's shape), computed one of two ways with the same result:

    * "col2im": the columns w^T dy (Ci*kh*kw rows) scattered back onto the padded image;
    * "phases": dx's sub-pixel phases (rows p = a mod sh, columns q = b mod sw) each gathered as
      an ordinary stride-1 convolution of dy with the taps that reach that phase, flipped. No
      scatter-add, and no product with the zeros between a strided convolution's outputs.

    Their work goes as Ci Ho Wo (col2im) against Co H W / (sh sw) (phases), so the default picks
    by those, with a margin for col2im's read-modify-write scatter.

    ``x_shape`` may exceed the smallest input that gives dy's size (rows that no window reads
    get zero gradient): the transposed convolution's output_padding relies on this. With
    ``input_affine`` = (scale, shift), of relu(dy scale + shift) instead of dy, applied as dy is
    copied (the transposed convolution's forward in the inference BRD).
    """
    (co, ci, _, _), (sh, sw) = w.shape, stride
    _, _, ho, wo = dy.shape
    _, _, h, wd = x_shape
    if method is None:
        method = "phases" if co * h * wd < 1.5 * ci * ho * wo * sh * sw else "col2im"
    if method == "phases":
        return _input_grad_by_phases(dy, w, x_shape, stride, padding, input_affine, residual)
    if method == "col2im":
        return _input_grad_by_col2im(dy, w, x_shape, stride, padding, None, residual, input_affine)
    raise ValueError(f"conv2d_input_grad: method must be 'phases' or 'col2im', got {method!r}")


def _input_grad_by_col2im(dy, w, x_shape, stride, padding, bias=None, residual=None, input_affine=None):
    """The columns w^T dy (of relu(dy scale + shift) with ``input_affine``) added onto the padded
    images, then ``bias`` (one value per channel of the result) and ``residual`` (of the
    result's shape), for the forward that runs as this, added while they are in the cache.

    A block of dy (``im2col.blocks``: several small images, as in the forward, so that the
    1 x 1 -> 7 x 7 expand layer reads its 205 MB weight once, or a band of one image's rows)
    owns the rows of the result that its rows' taps start, sh per row of dy, and writes each
    once: it takes the (kh - 1) // sh rows of dy above it as well, whose taps reach its rows.
    The taps that land on one sub-pixel phase are summed in a plane of their own, then written
    into the phase. Bands keep the columns in the cache (whole, a 4 x 4 / 2 layer at 112 x 112
    wrote 25 MB of them an image) and share an image between workers: that layer, 128 -> 32,
    batch 5, took 52-54 ms against 62 image by image on one thread, 29 against 38 on two.
    Outside the workers, a block's scatter goes by groups of channels."""
    xp = array_module(dy)
    (co, ci, kh, kw), (sh, sw), (ph, pw) = w.shape, stride, padding
    b, _, ho, wo = dy.shape
    _, _, h, wd = x_shape
    geometry = ConvGeometry.of(x_shape, w.shape, stride, padding, "conv2d_input_grad")
    weight_columns = w.reshape(co, -1).T
    padded = memory.empty((b, ci, h + 2 * ph, wd + 2 * pw), dy.dtype, like=dy)
    reach = (kh - 1) // sh  # rows of dy above a band whose taps reach the band's own rows

    def col2im(block):
        first, n, row, rows = block
        top, last = max(0, row - reach), row + rows == ho
        dy_rows = memory.scratch("affine", (co, n, row + rows - top, wo), dy.dtype, like=dy)
        im2col.copy_rows(dy[first:first + n, :, top:row + rows], dy_rows.transpose(1, 0, 2, 3), input_affine)
        columns = _matmul(xp, weight_columns, dy_rows.reshape(co, -1),
                          memory.scratch("col2im", (ci * kh * kw, dy_rows[0].size), dy.dtype, like=dy)).reshape(ci, kh, kw, *dy_rows.shape[1:])
        target = padded[first:first + n].transpose(1, 0, 2, 3)  # (Ci, n, H + 2ph, W + 2pw), as the columns

        def scatter(channels):
            height = dy_rows.shape[2]
            for a, c in itertools.product(range(sh), range(sw)):
                # The taps u = a + sh t, v = c + sw s land on rows and columns of this phase, the
                # sh-th and sw-th ones from a, c: summed into one plane (unless there is one), of
                # which the block's rows [row, stop) of the phase are written.
                phase, taps_u, taps_v = target[channels, :, a::sh, c::sw], range(a, kh, sh), range(c, kw, sw)
                stop = phase.shape[2] if last else row + rows
                taps = list(itertools.product(enumerate(taps_u), enumerate(taps_v)))
                if not taps:
                    phase[..., row:stop, :] = 0
                    continue
                summed = columns[channels, taps_u[0], taps_v[0]]
                if len(taps) > 1:  # the first tap (t = s = 0) is written, not added to zeros
                    summed = memory.scratch("phase plane", (phase.shape[0], n, height + len(taps_u) - 1, wo + len(taps_v) - 1),
                                            dy.dtype, like=dy)
                    summed[..., height:, :] = 0
                    summed[..., :height, wo:] = 0
                    summed[..., :height, :wo] = columns[channels, taps_u[0], taps_v[0]]
                    for (t, u), (s, v) in taps[1:]:
                        summed[..., t:t + height, s:s + wo] += columns[channels, u, v]
                reached, cols = min(stop, top + summed.shape[2]), min(summed.shape[3], phase.shape[3])
                phase[..., row:reached, :cols] = summed[..., row - top:reached - top, :cols]
                phase[..., row:reached, cols:] = 0
                phase[..., reached:stop, :] = 0
        threads.parallel(scatter, threads.channel_slices(columns, axis=0))
        owned = range(max(row * sh, ph), min(padded.shape[2] if last else (row + rows) * sh, ph + h))  # rows of the result
        if bias is not None and owned:
            target[..., owned.start:owned.stop, pw:pw + wd] += bias.reshape(-1, 1, 1, 1)
        if residual is not None and owned:
            target[..., owned.start:owned.stop, pw:pw + wd] += residual[first:first + n, :, owned.start - ph:owned.stop - ph].transpose(1, 0, 2, 3)
    threads.each_block(xp, col2im, list(im2col.blocks(geometry, shares=threads.shares(xp, geometry))), geometry)
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


def _input_grad_by_phases(dy, w, x_shape, stride, padding, input_affine=None, residual=None):
    (co, ci, kh, kw), (sh, sw), (ph, pw) = w.shape, stride, padding
    if (sh, sw) == (1, 1) and ph < kh and pw < kw:
        # One phase, every tap, dy padded evenly by k - 1 - p: the forward pads it itself.
        return conv2d_forward(dy, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), (1, 1), (kh - 1 - ph, kw - 1 - pw), None,
                              input_affine, residual)
    b, _, ho, wo = dy.shape
    _, _, h, wd = x_shape
    rows, low_h, high_h = _phase_plan(h, ho, w.shape[2], sh, ph)
    cols, low_w, high_w = _phase_plan(wd, wo, w.shape[3], sw, pw)
    padded = memory.scratch("phases", (b, co, low_h + ho + high_h, low_w + wo + high_w), dy.dtype, like=dy)
    padded[...] = 0
    im2col.copy_rows(dy, padded[:, :, low_h:low_h + ho, low_w:low_w + wo], input_affine)
    dx = memory.empty((b, ci, h, wd), dy.dtype, like=dy)
    for a, tap_h, taps_h, d_h, count_h in rows:
        for c, tap_w, taps_w, d_w, count_w in cols:
            if not (count_h and count_w):
                continue
            phase_residual = None if residual is None else residual[:, :, a::sh, c::sw]
            if not (taps_h and taps_w):
                dx[:, :, a::sh, c::sw] = 0 if residual is None else phase_residual
                continue
            # Tap t' = taps - 1 - t (flipped) meets dy row P + d - taps + 1 + t': a stride-1
            # convolution of that region of dy by the phase's flipped taps, read as (ci, co, ., .).
            top, left = low_h + d_h - taps_h + 1, low_w + d_w - taps_w + 1
            region = padded[:, :, top:top + count_h + taps_h - 1, left:left + count_w + taps_w - 1]
            taps = w[:, :, tap_h::sh, tap_w::sw][:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
            dx[:, :, a::sh, c::sw] = conv2d_forward(region, taps, (1, 1), (0, 0), None, None, phase_residual)
    return dx


def conv2d_weight_grad(x, dy, w_shape, stride, padding, input_affine=None, kept=None, direct=False):
    """dw = sum over blocks (``im2col.blocks``) of dy_rows columns^T: (Co, n*rows*Wo) @ (n*rows*Wo,
    Ci*kh*kw), where dy_rows is the block's dy (its (n, Co) axes swapped when n > 1); summing over
    batch and pixels. Where the forward takes a kernel row's taps as rows of its product
    (``_by_shifted_taps``), so does this: with whole-width columns (Ci*kh rows), dy_rows holds kw
    copies of dy, copy v shifted right by v columns (``im2col.shifted_planes``), and the product's row
    (v, o) is dw[o, :, :, v]. With several worker threads (``minimenet.threads``), worker k
    sums blocks k, k + workers, ... and the partial sums are added in order, so a given number of
    workers always gives the same bits. With ``input_affine`` = (scale, shift), of
    relu(x scale + shift) instead of x, applied as the columns are copied (the training BRC).
    ``kept``: the forward's (``conv2d_forward``), whose columns, if it left them, are used as they are.
    The layers that ``winograd.suits`` go by Winograd (``winograd.weight_grad``), as their
    forward does, unless ``direct``."""
    xp = array_module(x)
    g = ConvGeometry.of(x.shape, w_shape, stride, padding, "conv2d_weight_grad")
    g.check_output(dy.shape, "conv2d_weight_grad")
    if not direct and winograd.suits(x, g):
        return winograd.weight_grad(x, dy, g, input_affine)
    shifted = _by_shifted_taps(g)
    blocks = list(im2col.blocks(g, whole_width=shifted, shares=threads.shares(xp, g)))
    shares = min(len(blocks), threads.shares(xp, g))

    def partial_sum(share):
        total = None
        for first, n, row, rows in blocks[share::shares]:
            columns = _kept_columns(kept, (first, n, row, rows))
            if columns is None:
                columns = im2col.block_columns(x[first:first + n], g, row, rows, input_affine, shifted)
            if shifted:
                dy_rows = im2col.shifted_planes(dy[first:first + n, :, row:row + rows], g)
            elif n == 1:
                dy_rows = dy[first].reshape(g.out_channels, -1)[:, row * g.out_width:(row + rows) * g.out_width]
            else:
                dy_rows = dy[first:first + n].reshape(n, g.out_channels, -1).transpose(1, 0, 2).reshape(g.out_channels, -1)
            if total is None:  # the result (or a worker's share of it), in memory that outlives this call
                total = _matmul(xp, dy_rows, columns.T, memory.empty((dy_rows.shape[0], columns.shape[0]), dy.dtype, like=dy))
            else:
                total += _matmul(xp, dy_rows, columns.T, memory.scratch("product", total.shape, dy.dtype, like=dy))
        return total
    dw, *others = threads.each_block(xp, partial_sum, range(shares), g)
    for other in others:
        dw += other
    if shifted:  # rows (v, o), columns (i, u)
        return xp.ascontiguousarray(dw.reshape(g.kernel_width, g.out_channels, g.in_channels, g.kernel_height).transpose(1, 2, 3, 0))
    return dw.reshape(g.w_shape)
