"""minimenet/conv_cpu.py: the CPU primitives against the direct form.

The primitives build the im2col matrix a block at a time (several images, or a band of output
rows of one, under ``im2col.COLUMNS_BUDGET`` and ``im2col.BAND_BUDGET`` elements) in reused
scratch buffers. These tests set both budgets to one value and vary it so that bands of one
row, of several rows and a shorter last band, blocks of one image, of several, and a shorter
last block all occur, and compare the forward (by im2col and by shifted taps, with a bias and
with a batch norm and ReLU before it), the input gradient (every sub-pixel phase is a stride-1
forward) and the weight gradient with plain loops written from the definitions, in float64 and
float32, on odd sizes, stride 2 and batch 1; then check the autograd gradients by finite
differences through ``minimenet.gradcheck``.
"""
import numpy as np
import pytest

from minimenet import Tensor, conv2d, conv_transpose2d, conv_cpu, gradcheck, im2col


CHUNKED_TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-10), "float32": dict(rtol=2e-5, atol=2e-5)}

# (batch, Ci, H, W, Co, kernel, stride, padding)
CASES = [
    (3, 3, 7, 5, 4, (3, 3), (1, 1), (1, 1)),   # odd sizes, the 3x3 "same" convolution
    (1, 2, 9, 6, 3, (3, 3), (2, 2), (1, 1)),   # batch 1, stride 2
    (5, 4, 6, 7, 2, (1, 1), (2, 2), (0, 0)),   # the 1x1 stride-2 shortcut, odd batch
    (4, 2, 5, 5, 3, (3, 2), (2, 1), (0, 1)),   # non-square kernel, stride and padding
    (2, 3, 3, 3, 5, (3, 3), (1, 1), (2, 2)),   # padding wider than the kernel reaches
    (2, 2, 3, 4, 2, (2, 2), (1, 1), (3, 3)),   # padding past the kernel: bands of nothing but zeros
    (2, 5, 6, 7, 2, (3, 3), (1, 1), (1, 1)),   # few outputs from many inputs: the forward by col2im
    (3, 6, 5, 4, 1, (2, 3), (1, 1), (0, 2)),   # one output channel (a scale map), non-square kernel
    (1, 3, 5, 6, 4, (3, 3), (1, 1), (1, 1)),   # batch 1 at stride 1: one image's bands
]


def forward_loop(x, w, stride, padding):
    (b, _, h, wd), (co, _, kh, kw), (sh, sw), (ph, pw) = x.shape, w.shape, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((b, co, ho, wo))
    for r in range(ho):
        for c in range(wo):
            for u in range(kh):
                for v in range(kw):
                    p, q = r * sh - ph + u, c * sw - pw + v
                    if 0 <= p < h and 0 <= q < wd:
                        y[:, :, r, c] += x[:, :, p, q].astype(np.float64) @ w[:, :, u, v].T.astype(np.float64)
    return y


def input_grad_loop(dy, w, x_shape, stride, padding):
    (sh, sw), (ph, pw), (_, _, kh, kw) = stride, padding, w.shape
    dx = np.zeros(x_shape)
    for r in range(dy.shape[2]):
        for c in range(dy.shape[3]):
            for u in range(kh):
                for v in range(kw):
                    p, q = r * sh - ph + u, c * sw - pw + v
                    if 0 <= p < x_shape[2] and 0 <= q < x_shape[3]:
                        dx[:, :, p, q] += dy[:, :, r, c].astype(np.float64) @ w[:, :, u, v].astype(np.float64)
    return dx


def weight_grad_loop(x, dy, w_shape, stride, padding):
    (sh, sw), (ph, pw), (_, _, kh, kw) = stride, padding, w_shape
    dw = np.zeros(w_shape)
    for r in range(dy.shape[2]):
        for c in range(dy.shape[3]):
            for u in range(kh):
                for v in range(kw):
                    p, q = r * sh - ph + u, c * sw - pw + v
                    if 0 <= p < x.shape[2] and 0 <= q < x.shape[3]:
                        dw[:, :, u, v] += dy[:, :, r, c].T.astype(np.float64) @ x[:, :, p, q].astype(np.float64)
    return dw


def case_arrays(case, dtype, seed=0):
    b, ci, h, wd, co, (kh, kw), (sh, sw), (ph, pw) = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, ci, h, wd)).astype(dtype)
    w = rng.standard_normal((co, ci, kh, kw)).astype(dtype)
    dy = rng.standard_normal((b, co, (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1)).astype(dtype)
    return x, w, dy, (sh, sw), (ph, pw)


def set_budget(monkeypatch, elements):
    """Blocks of at most ``elements``: several images where they fit, else bands of rows."""
    monkeypatch.setattr(im2col, "COLUMNS_BUDGET", elements)
    monkeypatch.setattr(im2col, "BAND_BUDGET", elements)


def budgets(case):
    """Column budgets giving bands of one output row and of two (a shorter last band when the
    rows are odd), one image per block, two (a shorter last block when the batch is odd), and
    the whole batch in one block."""
    b, ci, h, wd, co, (kh, kw), (sh, sw), (ph, pw) = case
    per_row = ci * kh * kw * ((wd + 2 * pw - kw) // sw + 1)
    per_image = per_row * ((h + 2 * ph - kh) // sh + 1)
    return [1, 2 * per_row, per_image, 2 * per_image, b * per_image]


@pytest.mark.parametrize("shifted_taps", [False, True], ids=["im2col", "shifted_taps"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_primitives_match_the_loops_in_every_chunking(case, dtype, shifted_taps, monkeypatch):
    """Stride-1 forwards (and the stride-1 phases of input gradients) by plain im2col, or with
    the kernel rows' taps as rows of the product wherever it applies."""
    force_shifted_taps(monkeypatch, shifted_taps)
    x, w, dy, stride, padding = case_arrays(case, dtype)
    expected_y = forward_loop(x, w, stride, padding)
    expected_dx = input_grad_loop(dy, w, x.shape, stride, padding)
    expected_dw = weight_grad_loop(x, dy, w.shape, stride, padding)
    bias = np.linspace(-1, 1, w.shape[0]).astype(dtype)
    scale, shift = np.linspace(0.5, 2, x.shape[1]).astype(dtype), np.linspace(-0.3, 0.2, x.shape[1]).astype(dtype)
    expected_affine_y = forward_loop(np.maximum(x * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0), w, stride, padding)
    dy_scale, dy_shift = np.linspace(2, 0.5, dy.shape[1]).astype(dtype), np.linspace(0.2, -0.3, dy.shape[1]).astype(dtype)
    x_residual = np.sin(np.arange(x.size)).reshape(x.shape).astype(dtype)
    expected_affine_dx = input_grad_loop(np.maximum(dy * dy_scale.reshape(-1, 1, 1) + dy_shift.reshape(-1, 1, 1), 0), w, x.shape,
                                         stride, padding) + x_residual
    for budget in budgets(case):
        set_budget(monkeypatch, budget)
        y = conv_cpu.conv2d_forward(x, w, stride, padding)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, expected_y, **CHUNKED_TOLERANCE[dtype])
        # the bias and a residual are added block by block, or per image on the col2im path
        np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding, bias), expected_y + bias.reshape(-1, 1, 1),
                                   **CHUNKED_TOLERANCE[dtype])
        residual = np.cos(np.arange(expected_y.size)).reshape(expected_y.shape).astype(dtype)
        np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding, bias, None, residual),
                                   expected_y + bias.reshape(-1, 1, 1) + residual, **CHUNKED_TOLERANCE[dtype])
        # relu(x scale + shift) is applied to the rows each block copies, or to all of x first on the col2im path
        np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding, None, (scale, shift)), expected_affine_y,
                                   **CHUNKED_TOLERANCE[dtype])
        for method in ("phases", "col2im"):
            dx = conv_cpu.conv2d_input_grad(dy, w, x.shape, stride, padding, method=method)
            np.testing.assert_allclose(dx, expected_dx, **CHUNKED_TOLERANCE[dtype])
            # the transposed convolution in the inference BRD: relu(dy scale + shift) as dy is copied, plus a residual
            dx = conv_cpu.conv2d_input_grad(dy, w, x.shape, stride, padding, method, (dy_scale, dy_shift), x_residual)
            np.testing.assert_allclose(dx, expected_affine_dx, **CHUNKED_TOLERANCE[dtype])
        dw = conv_cpu.conv2d_weight_grad(x, dy, w.shape, stride, padding)
        assert dw.dtype == dtype
        np.testing.assert_allclose(dw, expected_dw, **CHUNKED_TOLERANCE[dtype])


@pytest.mark.parametrize("shifted_taps", [False, True], ids=["im2col", "shifted_taps"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_weight_gradient_from_the_forwards_kept_columns_matches_the_loops(case, dtype, shifted_taps, monkeypatch):
    """A forward of one small block leaves its columns (of relu(x scale + shift) too) for the
    weight gradient, which takes them instead of copying x again; a larger one leaves none."""
    force_shifted_taps(monkeypatch, shifted_taps)
    x, w, dy, stride, padding = case_arrays(case, dtype)
    scale, shift = np.linspace(0.5, 2, x.shape[1]).astype(dtype), np.linspace(-0.3, 0.2, x.shape[1]).astype(dtype)
    relu_x = np.maximum(x * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0)
    expected_dw = weight_grad_loop(relu_x, dy, w.shape, stride, padding)
    tolerance = CHUNKED_TOLERANCE[dtype]
    original, copies = im2col.block_columns, []
    monkeypatch.setattr(im2col, "block_columns", lambda *args, **kwargs: copies.append(kwargs.get("fresh", False)) or original(*args, **kwargs))
    for keep_columns in (10**9, 0):
        monkeypatch.setattr(conv_cpu, "KEEP_COLUMNS", keep_columns)
        kept = {}
        y = conv_cpu.conv2d_forward(x, w, stride, padding, None, (scale, shift), None, kept)
        np.testing.assert_allclose(y, forward_loop(relu_x, w, stride, padding), **tolerance)
        forward_copies = copies[:]
        copies.clear()
        dw = conv_cpu.conv2d_weight_grad(x, dy, w.shape, stride, padding, (scale, shift), kept)
        assert dw.dtype == dtype
        np.testing.assert_allclose(dw, expected_dw, **tolerance)
        assert "columns" not in kept  # freed with the weight gradient
        if not forward_copies:  # the forward went by the adjoint's col2im or by stacked rows, which make no columns
            assert copies == [False]
        else:
            assert (forward_copies, copies) == (([True], []) if keep_columns else ([False], [False]))
        copies.clear()


def force_shifted_taps(monkeypatch, shifted_taps):
    """Every stride-1 forward and weight gradient with kw > 1 by shifted taps, or none."""
    monkeypatch.setattr(conv_cpu, "_by_shifted_taps", lambda g: shifted_taps and g.stride == (1, 1) and g.kernel_width > 1)


def test_stride_1_forwards_with_few_outputs_take_the_kernel_rows_taps_as_product_rows(monkeypatch):
    taken = []
    original = conv_cpu._forward_by_shifted_taps
    monkeypatch.setattr(conv_cpu, "_forward_by_shifted_taps", lambda *args: taken.append(args[1].shape) or original(*args))
    for shape, w_shape, stride in [((16, 62), (8, 16, 3, 3), 1), ((16, 62), (30, 16, 3, 3), 1), ((16, 62), (31, 16, 3, 3), 1),
                                   ((130, 62), (128, 130, 3, 3), 1), ((130, 62), (129, 130, 3, 3), 1), ((16, 2), (8, 16, 3, 3), 1),
                                   ((16, 62), (4, 16, 3, 1), 1), ((16, 62), (4, 16, 3, 3), 2), ((3, 62), (32, 3, 3, 3), 1)]:
        channels, size = shape
        conv_cpu.conv2d_forward(np.zeros((1, channels, size, size)), np.zeros(w_shape), (stride, stride), (1, 1), direct=True)
    # where (Ci kh + kw Co) (W + 2 pw) < Ci kh kw Wo and kw Co <= 384: not (48 + 93) 64 > 144 x 62 or
    # (48 + 24) 4 = 144 x 2 copied, 3 x 129 product rows, a 1-wide kernel, stride 2, or the stem
    assert taken == [(8, 16, 3, 3), (30, 16, 3, 3), (128, 130, 3, 3)]


def test_col2im_takes_small_images_in_one_product_and_a_large_one_in_bands_with_the_rows_above(monkeypatch, rng):
    """The expand layer's 1 x 1 -> 7 x 7 reads its weight once for the batch; with one-row bands, a
    4 x 4 / 2 input gradient multiplies each band's row and the (4 - 1) // 2 = 1 row above it."""
    products = []
    monkeypatch.setattr(conv_cpu, "_matmul", lambda xp, a, b, out: products.append(b.shape[1]) or np.matmul(a, b, out=out))
    dy, w = rng.standard_normal((5, 4, 1, 1)), rng.standard_normal((4, 3, 7, 7))
    dx = conv_cpu.conv2d_input_grad(dy, w, (5, 3, 7, 7), (1, 1), (0, 0), method="col2im")
    np.testing.assert_allclose(dx, input_grad_loop(dy, w, (5, 3, 7, 7), (1, 1), (0, 0)), rtol=1e-12)
    assert products == [5]
    products.clear()
    dy, w = rng.standard_normal((1, 4, 3, 5)), rng.standard_normal((4, 3, 4, 4))
    monkeypatch.setattr(im2col, "BAND_BUDGET", 1)
    dx = conv_cpu.conv2d_input_grad(dy, w, (1, 3, 6, 10), (2, 2), (1, 1), method="col2im")
    np.testing.assert_allclose(dx, input_grad_loop(dy, w, (1, 3, 6, 10), (2, 2), (1, 1)), rtol=1e-12)
    assert products == [5, 10, 10]  # rows 0, 0-1, 1-2 of dy


def test_scratch_buffers_left_dirty_by_a_larger_convolution_do_not_leak():
    """A convolution after a larger one reuses its buffers: the zero border and the columns must
    be rewritten, not inherited."""
    rng = np.random.default_rng(3)
    big_x, big_w = 1e3 * (1 + rng.random((2, 6, 11, 9))), rng.standard_normal((3, 6, 3, 3))
    conv_cpu.conv2d_forward(big_x, big_w, (1, 1), (0, 0))
    x, w = rng.standard_normal((2, 2, 4, 5)), rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, (1, 1), (2, 2)), forward_loop(x, w, (1, 1), (2, 2)), rtol=1e-12, atol=1e-12)


def test_outputs_do_not_alias_the_scratch_buffers():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    first = conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1))
    kept = first.copy()
    conv_cpu.conv2d_forward(2 * x, w, (1, 1), (1, 1))
    conv_cpu.conv2d_input_grad(first, w, x.shape, (1, 1), (1, 1))
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("shifted_taps", [False, True], ids=["im2col", "shifted_taps"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradcheck_with_one_row_bands(case, shifted_taps, monkeypatch):
    set_budget(monkeypatch, 1)
    force_shifted_taps(monkeypatch, shifted_taps)
    x, w, _, stride, padding = case_arrays(case, "float64", seed=5)
    inputs = [Tensor(x[:2], requires_grad=True), Tensor(w, requires_grad=True)]
    gradcheck(lambda x, w: conv2d(x, w, stride=stride, padding=padding), inputs, max_elements=60)


def test_transposed_convolution_gradcheck_with_one_row_bands(monkeypatch):
    """The decoder's 4x4 stride-2 upsampling, with output_padding: its forward is the phase-wise
    input gradient, its backward the forward and weight-gradient primitives."""
    set_budget(monkeypatch, 1)
    rng = np.random.default_rng(6)
    x, w = Tensor(rng.standard_normal((3, 2, 3, 4)), requires_grad=True), Tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    gradcheck(lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), [x, w], max_elements=60)
