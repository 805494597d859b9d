"""How a convolution's input is copied for its matrix products (``conv_cpu``): cut into blocks
that fit the cache, and each block's windows copied into columns (im2col), in reused buffers.

A block is whole images, several at a time, or a band of output rows of one image
(``blocks``); its columns are rows (i, u, v) of input channel and tap, columns (b, r, c) of
pixel (``block_columns``), or with whole-width columns one tap per kernel row, for the shifted
taps of ``conv_cpu._forward_by_shifted_taps`` (``shifted_planes`` is the weight gradient's dy
for those), whose forward reads its padded input rows in place instead (``stacked_rows``). The
BRC's batch norm and ReLU are applied as the input rows are copied.
``plan`` and ``padded_rows`` serve ``winograd`` too, with rows of output tiles for rows of pixels.
"""
import math

from . import memory, threads
from .backend import array_module
from .norm import relu_affine

# The im2col matrix is built a block at a time in a reused buffer (a fresh 289 MB matrix for a
# 224 x 224 x 32 batch of 5 took 0.6 s to allocate and fill, 14 ms to fill once allocated), and
# nothing of its size is kept for the backward pass. An image whose columns exceed BAND_BUDGET
# elements (4 MB in float32) is cut into bands of output rows that stay in the CPU's cache
# between the copy that writes them and the product that reads them; smaller images go several
# to a block, up to COLUMNS_BUDGET elements (16 MB), one product for all. Measured on the
# paper's layers, batch 5, one thread, forward / weight gradient in ms (README Benchmarks):
# 224 x 224 x 32 41/45 in 4 MB bands against 59/56 in whole images; 56 x 56 x 128 25/25
# against 29/28 two images at a time; 7 x 7 x 1024 23/21 all five images in one block against
# 29/33 two at a time (a 32 MB budget: 23/20).
BAND_BUDGET = 2**20
COLUMNS_BUDGET = 2**22


def blocks(geometry, whole_width=False, shares=1):
    """(first image, images, first output row, rows) of each im2col block: whole images, as many
    at a time as ``COLUMNS_BUDGET`` holds, or where one image exceeds ``BAND_BUDGET``, bands of
    output rows of one image, as even as the rows allow (the longer ones first).
    ``whole_width``: sized for the columns of ``block_columns(..., whole_width=True)``.

    ``shares`` workers take the blocks in turn (``conv_cpu``: the forward hands them out as the
    workers come free, the weight gradient gives worker k blocks k, k + shares, ...), so where a
    batch takes several blocks of images, each worker's images are an even share of the batch,
    and the images left over are cut into bands, the same number for every worker: a 512-channel
    14 x 14 layer split 3 + 2 images over two workers in 14.8-14.9 ms, 2 + 2 and half an image
    each in 13.4-13.8 (its weight gradient 14.8-15.2 and 13.4). A batch in one block stays one,
    its product's rows split among the workers (7 x 7 x 1024: 13.6 ms against 15.4 as 3 + 2
    images). Bands of even length matter as much: a 56 x 56 x 128 weight gradient went in bands
    of 47 and 9 rows, and the weight gradient's turns gave one worker all the long ones
    (23.6 ms against 14.5 in bands of 28)."""
    return plan(geometry.batch, geometry.out_height, columns_per_row(geometry, whole_width), shares)


def plan(batch, height, per_row, shares=1, band_budget=None):
    """``blocks`` for ``batch`` images of ``height`` rows of ``per_row`` elements each (rows of
    output pixels for im2col, of output tiles for ``winograd``), images cut into bands above
    ``band_budget`` elements (by default ``BAND_BUDGET``)."""
    band_budget = BAND_BUDGET if band_budget is None else band_budget
    if per_row * height > band_budget:
        bands = -(-height // max(1, band_budget // per_row))
        for image in range(batch):
            yield from _bands(image, height, bands)
        return
    images = max(1, min(batch, COLUMNS_BUDGET // (per_row * height)))
    if images == batch or shares == 1:
        for first in range(0, batch, images):
            yield first, min(images, batch - first), 0, height
        return
    each, left = divmod(batch, shares)
    images = min(images, max(each, 1))
    for start in range(0, each, images):  # each worker's next block of its own images
        for share in range(shares):
            yield share * each + start, min(images, each - start), 0, height
    for image in range(shares * each, batch):
        yield from _bands(image, height, shares // math.gcd(left, shares))


def columns_per_row(geometry, whole_width=False):
    """Elements of ``block_columns`` per output row of one image."""
    g = geometry
    if whole_width:
        return g.in_channels * g.kernel_height * (g.in_width + 2 * g.padding[1])
    return g.in_channels * g.kernel_height * g.kernel_width * g.out_width


def _bands(image, height, count):
    """(image, 1, first row, rows) of ``count`` bands of ``height`` rows (at most one a row),
    as even as they can be, the longer ones first."""
    count = min(count, height)
    rows, longer = divmod(height, count)
    row = 0
    for band in range(count):
        length = rows + (band < longer)
        yield image, 1, row, length
        row += length


def block_columns(x, geometry, row, rows, input_affine=None, whole_width=False, fresh=False):
    """im2col of output rows [row, row + rows) of the images x (n, Ci, H, W), as a
    (Ci*kh*kw, n*rows*Wo) view of a reused buffer: row (i, u, v), column (b, r, c) holds
    x[b, i, (row + r)*sh - ph + u, c*sw - pw + v] (zero outside), copied from a strided view of
    the zero-padded input rows that the block reads (also a reused buffer; a 1 x 1 kernel
    without padding reads x itself). With ``input_affine`` = (scale, shift), those rows hold
    relu(x scale + shift) instead, computed as they are copied. ``whole_width`` (for stride 1
    across): one tap per kernel row, v = 0, and every column c of the padded width W + 2 pw, a
    (Ci*kh, n*rows*(W + 2pw)) matrix. Outside the worker threads (a block of the whole batch),
    the copies are shared out over them by channels. ``fresh``: the columns in memory of their
    own (that the caller may keep), not in the reused buffer."""
    xp, g = array_module(x), geometry
    n, (ph, pw) = x.shape[0], g.padding
    if (g.kernel_height, g.kernel_width, ph, pw) == (1, 1, 0, 0):
        # Only the pixels the strides land on, and no padding: 4 times fewer copied (and
        # normalised) at stride 2. The shortcuts' 32 -> 64 at 224 x 224 with the BRC's batch
        # norm and ReLU, batch 5: 10.0-10.5 -> 5.3-6.2 ms on one thread, 8.8-9.8 -> 3.7-3.8 on two.
        shape = (x.shape[1], n, rows, g.out_width)
        columns = memory.empty(shape, x.dtype, like=x) if fresh else memory.scratch("columns", shape, x.dtype, like=x)
        copy_rows(x[:, :, row * g.stride_h:(row + rows - 1) * g.stride_h + 1:g.stride_h, ::g.stride_w],
                  columns.transpose(1, 0, 2, 3), input_affine)
        return columns.reshape(x.shape[1], -1)
    padded = padded_rows(x, row * g.stride_h - ph, (rows - 1) * g.stride_h + g.kernel_height, pw,
                         g.in_width + 2 * pw, input_affine)
    s1, s0, s2, s3 = padded.strides
    taps_w, width = (1, padded.shape[3]) if whole_width else (g.kernel_width, g.out_width)
    windows = xp.lib.stride_tricks.as_strided(
        padded, (x.shape[1], g.kernel_height, taps_w, n, rows, width), (s1, s2, s3, s0, s2 * g.stride_h, s3 * g.stride_w))
    columns = memory.empty(windows.shape, x.dtype, like=x) if fresh else memory.scratch("columns", windows.shape, x.dtype, like=x)

    def gather(channels):
        columns[channels] = windows[channels]
    threads.parallel(gather, threads.channel_slices(columns, axis=0))
    return columns.reshape(-1, n * rows * width)


def padded_rows(x, top, height, left, width, input_affine=None, channels_inside=False):
    """Rows [top, top + height) of the images x (n, Ci, H, W), zero-padded, as a (Ci, n, height,
    width) view of a reused buffer: x's columns at [left, left + W), zeros around them and in
    the rows outside [0, H); with ``input_affine``, relu(x scale + shift) in place of x.
    ``channels_inside``: laid out (n, height, Ci, width) instead, each row's channels in turn."""
    n, ci, h, w = x.shape
    first_inside = min(max(-top, 0), height)  # rows of the block's padded input that hold x
    inside = slice(first_inside, max(min(h - top, height), first_inside))
    if channels_inside:
        padded = memory.scratch("padded", (n, height, ci, width), x.dtype, like=x)
        images = padded.transpose(0, 2, 1, 3)
    else:
        padded = memory.scratch("padded", (ci, n, height, width), x.dtype, like=x)
        images = padded.transpose(1, 0, 2, 3)
    images[:, :, :inside.start] = 0
    images[:, :, inside.stop:] = 0
    images[:, :, :, :left] = 0
    images[:, :, :, left + w:] = 0
    rows_of_x = x[:, :, top + inside.start:top + inside.stop]
    if input_affine is not None:  # into contiguous memory first: written into the padded rows, it ran slower on 7 to 28 wide images
        rows_of_x = copy_rows(rows_of_x, memory.scratch("affine", rows_of_x.shape, x.dtype, like=x), input_affine)
    copy_rows(rows_of_x, images[:, :, inside, left:left + w])
    return padded


def stacked_rows(x, geometry, row, rows, input_affine=None):
    """The input rows that output rows [row, row + rows) of a stride-1 convolution read, as an
    (n, rows, kh*Ci, W + 2pw) view of ``padded_rows(..., channels_inside=True)``: item (b, r)
    holds x[b, i, row + r - ph + u, c - pw] at row (u, i), column c (zero outside), read in place,
    since the kh input rows of an output row, all their channels, lie one after the other."""
    g = geometry
    padded = padded_rows(x, row - g.padding[0], rows + g.kernel_height - 1, g.padding[1], g.in_width + 2 * g.padding[1],
                         input_affine, channels_inside=True)
    n, _, ci, width = padded.shape
    return array_module(x).lib.stride_tricks.as_strided(padded, (n, rows, g.kernel_height * ci, width), padded.strides)


def copy_rows(source, target, input_affine=None):
    """target = source, or relu(source scale + shift) with ``input_affine`` = (scale, shift),
    both (n, Ci, ., .); by groups of channels on the worker threads outside them. Returns target."""
    def part(channels):
        if input_affine is None:
            target[:, channels] = source[:, channels]
        else:
            relu_affine(source[:, channels], input_affine[0][channels], input_affine[1][channels], out=target[:, channels])
    threads.parallel(part, threads.channel_slices(target))
    return target


def shifted_planes(dy, geometry):
    """dy (n, Co, rows, Wo) as a (kw*Co, n*rows*(W + 2pw)) view of a reused buffer: row (v, o),
    column (b, r, c') holds dy[b, o, r, c' - v] (zero where c' - v is outside [0, Wo))."""
    g, (n, co, rows, wo) = geometry, dy.shape
    planes = memory.scratch("shifted planes", (g.kernel_width, co, n, rows, g.in_width + 2 * g.padding[1]), dy.dtype, like=dy)
    for v, plane in enumerate(planes):
        plane[..., :v] = 0
        plane[..., v:v + wo] = dy.transpose(1, 0, 2, 3)
        plane[..., v + wo:] = 0
    return planes.reshape(g.kernel_width * co, -1)
