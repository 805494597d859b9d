"""Winograd's minimal filtering F(2x2, 3x3) for 3x3 stride-1 convolutions on the CPU (Lavin and
Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

In one dimension, two outputs of a 3-tap correlation y_r = sum_u g_u d_{r+u} (r = 0, 1) from four
inputs d_0..d_3 take four products instead of six:

    y = A^T [(G g) * (B^T d)],

    B^T = | 1  0 -1  0 |      G = | 1    0    0  |      A^T = | 1  1  1  0 |
          | 0  1  1  0 |          | 1/2  1/2  1/2|            | 0  1 -1 -1 |
          | 0 -1  1  0 |          | 1/2 -1/2  1/2|
          | 0  1  0 -1 |          | 0    0    1  |

Nested in two dimensions, a 4x4 input tile d gives a 2x2 output tile Y = A^T [U * V] A with
U = G g G^T and V = B^T d B (4x4 each, * elementwise). Over channels the elementwise products
become, for each of the 16 positions (xi, nu), one matrix product

    M[xi, nu] = U[xi, nu] (Co, Ci) @ V[xi, nu] (Ci, tiles),

so a convolution costs 16 Co Ci (B Ho Wo / 4) multiply-adds in products instead of 9 Co Ci B Ho Wo:
2.25 times fewer, plus the transforms (additions over 4x the input and output, each a NumPy pass
on one core), which is why it pays only where the channels are many beside the image but the
image not so small that half-empty tiles and the weight transform dominate (``suits``).

Gradients, by the same linear maps read backwards (T transposes):

* input gradient: the convolution of dy (padded by 2 - p) with the flipped, transposed weight
  (``conv.py`` computes it as that forward);
* weight gradient: with E = A dY A^T for each 2x2 tile dY of dy,
      dg = G^T [ sum over tiles of E * V ] G,
  where the sum over tiles (and images) at each (xi, nu) is one product E[xi, nu] (Co, tiles)
  @ V[xi, nu]^T (tiles, Ci).

Tiles start every 2 rows and columns; the output is cut to Ho x Wo and the input zero-padded as
far as the last tile reads. In float32, on a 28x28 layer of 128 channels against float64, the
largest error relative to the largest value was 4.3e-7 (forward) and 5.9e-7 (weight gradient),
beside 4.8e-7 and 4.8e-7 for the direct form: the transforms only add and halve, at most four
terms at a time (tests/test_conv.py bounds it by twice the direct form's).
"""
import numpy

from .backend import array_module
from .conv_geometry import ceil_div

# Measured against conv.py's chunked im2col form, 1 BLAS thread, batch 5, Ci = Co, forward and
# weight gradient in ms (direct / Winograd): 224x224x32 78/151 and 77/136, 112x112x64 58/59 and
# 57/64, 56x56x128 46/34 and 45/37, 28x28x256 41/31 and 41/33, 14x14x512 41/52 and 39/53,
# 7x7x1024 52/168 and 41/159. Hence: at least 128 channels each way and at least 28x28 outputs.
MIN_CHANNELS = 128
MIN_OUTPUT_SIZE = 28


def suits(geometry):
    """Whether F(2x2, 3x3) is the faster way for this convolution (3x3, stride 1, see above)."""
    g = geometry
    return ((g.kernel_height, g.kernel_width, g.stride_h, g.stride_w) == (3, 3, 1, 1)
            and min(g.in_channels, g.out_channels) >= MIN_CHANNELS
            and min(g.out_height, g.out_width) >= MIN_OUTPUT_SIZE)

B_T = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=numpy.float64)
G = numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=numpy.float64)
A_T = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=numpy.float64)


def _tiles(geometry):
    return ceil_div(geometry.out_height, 2), ceil_div(geometry.out_width, 2)


def _input_tiles(x, geometry):
    """V = B^T d B for every 4x4 input tile d: (4, 4, Ci, B, tiles_h, tiles_w), from the input
    transposed to (Ci, B, ., .) and zero-padded; B^T applied to rows, then to columns, each as
    four sums of strided slices (B^T's entries are 0 and +-1)."""
    xp, g = array_module(x), geometry
    th, tw = _tiles(g)
    padded = xp.zeros((g.in_channels, g.batch, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)
    padded[:, :, g.pad_h:g.pad_h + g.in_height, g.pad_w:g.pad_w + g.in_width] = x.transpose(1, 0, 2, 3)
    rows = [padded[:, :, i:i + 2 * th:2] for i in range(4)]  # rows 2t + i of every tile
    by_rows = _apply_b_t(rows)
    v = xp.empty((4, 4, g.in_channels, g.batch, th, tw), dtype=x.dtype)
    for xi in range(4):
        columns = [by_rows[xi][..., j:j + 2 * tw:2] for j in range(4)]
        for nu, value in enumerate(_apply_b_t(columns)):
            v[xi, nu] = value
    return v


def _apply_b_t(d):
    """B^T d for four slices d_0..d_3: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)."""
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def weight_transform(w):
    """U = G g G^T: (4, 4, Co, Ci) for a (Co, Ci, 3, 3) weight."""
    xp = array_module(w)
    g = xp.asarray(G, dtype=w.dtype)
    u = g @ w.reshape(-1, 3, 3) @ g.T  # (Co Ci, 4, 4)
    return xp.ascontiguousarray(u.reshape(*w.shape[:2], 16).transpose(2, 0, 1)).reshape(4, 4, *w.shape[:2])


def forward(x, w, geometry):
    """y (B, Co, Ho, Wo) = conv(x, w) for a 3x3 stride-1 geometry, by F(2x2, 3x3)."""
    xp, g = array_module(x), geometry
    th, tw = _tiles(g)
    v = _input_tiles(x, g).reshape(16, g.in_channels, -1)
    m = xp.matmul(weight_transform(w).reshape(16, g.out_channels, g.in_channels), v)
    m = m.reshape(4, 4, g.out_channels, g.batch, th, tw)
    # Y = A^T M A: rows (m0 + m1 + m2, m1 - m2 - m3), then the same over columns.
    rows = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
    y = xp.empty(g.y_shape, dtype=x.dtype)
    for a, row in enumerate(rows):
        for c, tile in enumerate((row[0] + row[1] + row[2], row[1] - row[2] - row[3])):
            target = y[:, :, a::2, c::2]
            target[...] = tile[:, :, :target.shape[2], :target.shape[3]].transpose(1, 0, 2, 3)
    return y


def weight_grad(x, dy, geometry):
    """dw (Co, Ci, 3, 3) for a 3x3 stride-1 geometry: G^T [sum over tiles of E * V] G."""
    xp, g = array_module(x), geometry
    th, tw = _tiles(g)
    v = _input_tiles(x, g).reshape(16, g.in_channels, -1)
    padded = xp.zeros((g.out_channels, g.batch, 2 * th, 2 * tw), dtype=dy.dtype)
    padded[:, :, :g.out_height, :g.out_width] = dy.transpose(1, 0, 2, 3)
    # E = A e A^T for each 2x2 tile e, where A e = (e0, e0 + e1, e0 - e1, -e1).
    rows = _apply_a(padded[:, :, 0::2], padded[:, :, 1::2])
    e = xp.empty((4, 4, g.out_channels, g.batch, th, tw), dtype=dy.dtype)
    for xi, row in enumerate(rows):
        for nu, value in enumerate(_apply_a(row[..., 0::2], row[..., 1::2])):
            e[xi, nu] = value
    s = xp.matmul(e.reshape(16, g.out_channels, -1), v.transpose(0, 2, 1))  # (16, Co, Ci)
    gm = xp.asarray(G, dtype=dy.dtype)
    s = xp.ascontiguousarray(s.reshape(4, 4, -1).transpose(2, 0, 1))  # (Co Ci, 4, 4)
    return (gm.T @ s @ gm).reshape(g.w_shape)


def _apply_a(e0, e1):
    """A e for the two halves e0, e1 of 2-tall (or 2-wide) tiles."""
    return [e0, e0 + e1, e0 - e1, -e1]
