"""minimenet/conv.py and conv_cpu.py: conv2d and conv_transpose2d gradient-checked over a grid of shapes and against
plain loops (and PyTorch when it imports), and the CPU primitives against the direct form.

The primitives build the im2col matrix a block at a time (several images, or a band of output
rows of one, under ``conv_cpu.COLUMNS_BUDGET`` and ``conv_cpu.BAND_BUDGET`` elements) in reused scratch
buffers. These tests set both budgets to one value and vary it so that bands of one row, of several rows and a shorter last band, blocks of one image,
of several, and a shorter last block all occur, and compare the forward, the
input gradient (every sub-pixel phase is a stride-1 forward) and the weight gradient with plain
loops written from the definitions, in float64 and float32, on odd sizes, stride 2 and batch 1;
then check the autograd gradients by finite differences through ``minimenet.gradcheck``.
"""
import itertools

import numpy as np
import pytest

from minimenet import Tensor, batch_norm, conv2d, conv_transpose2d, gradcheck, no_grad, relu
from minimenet import backend, conv_cpu
from minimenet.fused import batch_norm_relu_conv2d
from minimenet.norm import eval_affine
from minimenet.backend import to_numpy
from minimenet.conv_geometry import ConvGeometry

from op_references import DTYPES, TOLERANCE, check, conv2d_loop, conv_transpose2d_loop, leaf, on, pair

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
    monkeypatch.setattr(conv_cpu, "COLUMNS_BUDGET", elements)
    monkeypatch.setattr(conv_cpu, "BAND_BUDGET", elements)


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
    monkeypatch.setattr(conv_cpu, "SHIFTED_TAPS_MAX_ROWS", 10**9 if shifted_taps else 0)
    monkeypatch.setattr(conv_cpu, "SHIFTED_TAPS_MIN_DEPTH", 0)
    x, w, dy, stride, padding = case_arrays(case, dtype)
    expected_y = forward_loop(x, w, stride, padding)
    expected_dx = input_grad_loop(dy, w, x.shape, stride, padding)
    expected_dw = weight_grad_loop(x, dy, w.shape, stride, padding)
    bias = np.linspace(-1, 1, w.shape[0]).astype(dtype)
    scale, shift = np.linspace(0.5, 2, x.shape[1]).astype(dtype), np.linspace(-0.3, 0.2, x.shape[1]).astype(dtype)
    expected_affine_y = forward_loop(np.maximum(x * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0), w, stride, padding)
    for budget in budgets(case):
        set_budget(monkeypatch, budget)
        y = conv_cpu.conv2d_forward(x, w, stride, padding)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, expected_y, **CHUNKED_TOLERANCE[dtype])
        # the bias is added block by block, or per image on the col2im path
        np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding, bias), expected_y + bias.reshape(-1, 1, 1),
                                   **CHUNKED_TOLERANCE[dtype])
        # relu(x scale + shift) is applied to the rows each block copies, or to all of x first on the col2im path
        np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding, None, (scale, shift)), expected_affine_y,
                                   **CHUNKED_TOLERANCE[dtype])
        for method in ("phases", "col2im"):
            dx = conv_cpu.conv2d_input_grad(dy, w, x.shape, stride, padding, method=method)
            np.testing.assert_allclose(dx, expected_dx, **CHUNKED_TOLERANCE[dtype])
        dw = conv_cpu.conv2d_weight_grad(x, dy, w.shape, stride, padding)
        assert dw.dtype == dtype
        np.testing.assert_allclose(dw, expected_dw, **CHUNKED_TOLERANCE[dtype])


def test_the_blocks_are_what_the_test_above_needs(monkeypatch):
    """Bands of one row and of several with a shorter last one, one image per block, a shorter
    last block, and the whole batch: all occur, and each budget's blocks cover every output row of
    every image once, in order."""
    kinds = set()
    for case in CASES:
        x, w, _, stride, padding = case_arrays(case, "float64")
        geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, "test")
        for budget in budgets(case):
            set_budget(monkeypatch, budget)
            blocks = list(conv_cpu._blocks(geometry))
            covered = [(first + i, row + r) for first, n, row, rows in blocks for i in range(n) for r in range(rows)]
            assert covered == [(i, r) for i in range(geometry.batch) for r in range(geometry.out_height)]
            for first, n, row, rows in blocks:
                if rows < geometry.out_height:
                    kinds.add("short band" if rows < blocks[0][3] else "one-row band" if rows == 1 else "band")
                else:
                    kinds.add("short block" if n < blocks[0][1] else "one image" if n == 1 else
                              "whole batch" if n == geometry.batch else "images")
    assert {"one-row band", "band", "short band", "one image", "images", "short block", "whole batch"} <= kinds


def test_stride_1_forwards_with_few_outputs_take_the_kernel_rows_taps_as_product_rows(monkeypatch):
    taken = []
    original = conv_cpu._forward_by_shifted_taps
    monkeypatch.setattr(conv_cpu, "_forward_by_shifted_taps", lambda *args: taken.append(args[1].shape) or original(*args))
    x = np.zeros((1, 16, 6, 6))
    for w_shape, stride in [((128, 16, 3, 3), 1), ((129, 16, 3, 3), 1), ((4, 16, 3, 1), 1), ((4, 16, 3, 3), 2)]:
        conv_cpu.conv2d_forward(x, np.zeros(w_shape), (stride, stride), (1, 1))
    conv_cpu.conv2d_forward(x[:, :15], np.zeros((4, 15, 3, 3)), (1, 1), (1, 1))
    # kw Co <= 384 and Ci kh >= 48; not 3 x 129 rows, a 1-wide kernel, stride 2 or 15 x 3 deep
    assert taken == [(128, 16, 3, 3)]


def test_images_go_several_to_a_block_only_under_the_band_budget(monkeypatch):
    """An image over BAND_BUDGET is cut into bands even when COLUMNS_BUDGET would hold several."""
    geometry = ConvGeometry.of((5, 2, 6, 6), (3, 2, 3, 3), 1, 1, "test")  # 18 x 36 = 648 elements an image
    monkeypatch.setattr(conv_cpu, "COLUMNS_BUDGET", 3 * 648)
    monkeypatch.setattr(conv_cpu, "BAND_BUDGET", 648)
    assert [(n, rows) for _, n, _, rows in conv_cpu._blocks(geometry)] == [(3, 6), (2, 6)]
    monkeypatch.setattr(conv_cpu, "BAND_BUDGET", 647)
    assert [(n, rows) for _, n, _, rows in conv_cpu._blocks(geometry)] == [(1, 5), (1, 1)] * 5


@pytest.mark.parametrize("fitting,shares,expected", [(4, 1, [4, 1]), (4, 2, [3, 2]), (4, 3, [2, 2, 1]), (5, 2, [5]), (9, 2, [5])])
def test_several_blocks_of_images_are_shared_evenly_among_the_workers(fitting, shares, expected, monkeypatch):
    """A batch of 5 that takes several blocks is cut into blocks of at most an even share per
    worker; one that fits in one block stays one."""
    geometry = ConvGeometry.of((5, 2, 6, 6), (3, 2, 3, 3), 1, 1, "test")  # 648 elements an image
    monkeypatch.setattr(conv_cpu, "COLUMNS_BUDGET", fitting * 648)
    assert [n for _, n, _, _ in conv_cpu._blocks(geometry, shares=shares)] == expected


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


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradcheck_with_one_row_bands(case, monkeypatch):
    set_budget(monkeypatch, 1)
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


# --- From the op grid: gradient checks and forward values against plain loops (op_references) ---

KERNELS = [1, 3, 4, 7, (2, 3)]


STRIDES = [1, 2, (2, 1)]


PADDINGS = [0, 1, (0, 1)]


def conv_input_hw(kernel):
    kh, kw = pair(kernel)
    return kh + 2, kw + 3  # non-square, and odd for even kernels (and even for odd ones)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_conv2d_gradcheck_grid(kernel, stride, padding, with_bias, rng):
    kh, kw = pair(kernel)
    x = leaf(rng, (2, 2, *conv_input_hw(kernel)))
    w = leaf(rng, (3, 2, kh, kw))
    b = leaf(rng, (3,)) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])
    report = check(lambda x, w, *b: conv2d(x, w, b[0] if b else None, stride=stride, padding=padding), inputs)
    assert len(report.rows) == len(inputs)


def test_conv2d_gradcheck_when_only_the_input_requires_grad(rng):
    x, w = leaf(rng, (2, 3, 5, 4)), leaf(rng, (2, 3, 3, 3), requires_grad=False)
    check(lambda x, w: conv2d(x, w, stride=2, padding=1), [x, w])


def test_conv2d_gradcheck_when_only_the_weight_requires_grad(rng):
    x, w = leaf(rng, (2, 3, 5, 4), requires_grad=False), leaf(rng, (2, 3, 3, 3))
    check(lambda x, w: conv2d(x, w, stride=1, padding=1), [x, w])


def conv_transpose_cases():
    for kernel, stride, padding in itertools.product(KERNELS, STRIDES, [0, 1]):
        (kh, kw), (sh, sw) = pair(kernel), pair(stride)
        for output_padding in {(0, 0), (sh - 1, sw - 1)}:
            h, w = 3, 2  # non-square input
            if (h - 1) * sh - 2 * padding + kh + output_padding[0] < 1 or (w - 1) * sw - 2 * padding + kw + output_padding[1] < 1:
                continue
            yield kernel, stride, padding, output_padding


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding", list(conv_transpose_cases()), ids=str)
def test_conv_transpose2d_gradcheck_grid(kernel, stride, padding, output_padding, with_bias, rng):
    kh, kw = pair(kernel)
    x = leaf(rng, (2, 2, 3, 2))
    w = leaf(rng, (2, 3, kh, kw))
    b = leaf(rng, (3,)) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])
    check(lambda x, w, *b: conv_transpose2d(x, w, b[0] if b else None, stride, padding, output_padding), inputs)


def test_conv_transpose2d_grid_covers_output_padding():
    assert any(case[3] != (0, 0) for case in conv_transpose_cases())


@pytest.mark.parametrize("method", ["col2im", "phases"])
@pytest.mark.parametrize("channels", [(2, 3), (3, 1)], ids=["co_lt_ci", "co_gt_ci"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding", list(conv_transpose_cases()) + [(2, 3, 0, (2, 1)), (2, 3, 2, (0, 0))], ids=str)
def test_both_input_gradient_methods_match_the_scatter_loop(kernel, stride, padding, output_padding, channels, method, xp, rng):
    """conv2d_input_grad is the transposed convolution: both its ways of computing it (the
    default picks by channel counts) against the scatter loop, over the whole grid above plus a
    stride larger than the kernel (phases no tap reaches) and padding as large as the kernel."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    co, ci = channels
    dy, w = rng.standard_normal((2, co, 3, 2)), rng.standard_normal((co, ci, kh, kw))
    expected = conv_transpose2d_loop(dy, w, None, stride, padding, output_padding)
    assert expected.size > 0
    dx = conv_cpu.conv2d_input_grad(xp.asarray(dy), xp.asarray(w), expected.shape, (sh, sw), (ph, pw), method=method)
    assert dx.shape == expected.shape
    np.testing.assert_allclose(to_numpy(dx), expected, rtol=1e-10, atol=1e-12)


def test_unknown_input_gradient_method_is_named():
    with pytest.raises(ValueError, match="method must be 'phases' or 'col2im', got 'fft'"):
        conv_cpu.conv2d_input_grad(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), (1, 1, 2, 2), (1, 1), (0, 0), method="fft")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,with_bias", [
    (3, 1, 1, True), (1, 1, 0, False), (4, 2, 1, True), ((2, 3), (2, 1), (0, 1), True), (3, 2, 0, False),
], ids=str)
def test_conv2d_forward_matches_loop(kernel, stride, padding, with_bias, dtype, xp, rng):
    kh, kw = pair(kernel)
    x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, kh, kw))
    b = rng.standard_normal(4) if with_bias else None
    y = conv2d(on(xp, x, dtype), on(xp, w, dtype), None if b is None else on(xp, b, dtype), stride, padding)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray)
    np.testing.assert_allclose(y.numpy(), conv2d_loop(x, w, b, stride, padding), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding,with_bias", [
    (3, 1, 1, 0, True), (4, 2, 1, 0, False), (3, 2, 1, 1, True), ((2, 3), (2, 1), (1, 0), (1, 0), True),
    (1, 3, 0, 2, False),
], ids=str)
def test_conv_transpose2d_forward_matches_scatter_loop(kernel, stride, padding, output_padding, with_bias, dtype, xp, rng):
    kh, kw = pair(kernel)
    x, w = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 2, kh, kw))
    b = rng.standard_normal(2) if with_bias else None
    y = conv_transpose2d(on(xp, x, dtype), on(xp, w, dtype), None if b is None else on(xp, b, dtype),
                         stride, padding, output_padding)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray)
    np.testing.assert_allclose(y.numpy(), conv_transpose2d_loop(x, w, b, stride, padding, output_padding),
                               **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,stride,padding,out_channels", [(3, 1, 1, 4), (3, 2, 1, 4), (1, 2, 0, 4), (3, 1, 1, 1)], ids=str)
def test_batch_norm_relu_conv2d_equals_the_three_ops_in_eval_mode(kernel, stride, padding, out_channels, dtype, xp, rng):
    """BRC at inference: an eval batch norm, ReLU and convolution (with bias) as one op. The
    last case (one output from three inputs) takes the forward's col2im path."""
    x = on(xp, rng.standard_normal((2, 3, 7, 6)), dtype)
    w, b = on(xp, rng.standard_normal((out_channels, 3, kernel, kernel)), dtype), on(xp, rng.standard_normal(out_channels), dtype)
    gamma, beta = on(xp, rng.uniform(0.5, 2, 3), dtype), on(xp, rng.standard_normal(3), dtype)
    mean, var = xp.asarray(rng.standard_normal(3), dtype=dtype), xp.asarray(rng.uniform(0.5, 2, 3), dtype=dtype)
    expected = conv2d(relu(batch_norm(x, gamma, beta, mean, var, training=False)), w, b, stride, padding)
    scale, shift = eval_affine(gamma.data, beta.data, mean, var)
    with no_grad():
        y = batch_norm_relu_conv2d(x, scale, shift, w, b, stride, padding)
    assert y.dtype == dtype and isinstance(y.data, xp.ndarray) and not y.requires_grad
    np.testing.assert_allclose(y.numpy(), expected.numpy(), **TOLERANCE[dtype])


def test_batch_norm_relu_conv2d_refuses_what_it_cannot_do(rng):
    x, w = Tensor(rng.standard_normal((1, 3, 4, 4))), Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    scale, shift = np.ones(3), np.zeros(3)
    with pytest.raises(RuntimeError, match="records no graph, so it gives no gradients: call it under no_grad()"):
        batch_norm_relu_conv2d(x, scale, shift, w)
    with no_grad(), pytest.raises(ValueError, match=r"input has 3 channels; scale and shift must have shape \(3,\), got \(2,\) and \(3,\)"):
        batch_norm_relu_conv2d(x, np.ones(2), shift, w)
    with no_grad(), pytest.raises(ValueError, match=r"batch_norm_relu_conv2d: input must be 4-D"):
        batch_norm_relu_conv2d(Tensor(np.zeros((3, 4, 4))), scale, shift, w)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_conv_transpose2d_backward_equals_conv2d_forward_adjoint(dtype, xp, rng):
    """<conv_transpose(x), y> == <x, conv(y)>: the transposed convolution is the adjoint."""
    x, w, y = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 2, 6, 8))
    up = conv_transpose2d(on(xp, x, dtype), on(xp, w, dtype), stride=2, padding=1, output_padding=1).numpy()
    down = conv2d(on(xp, y, dtype), on(xp, w, dtype), stride=2, padding=1).numpy()
    assert up.shape == y.shape and down.shape == x.shape
    np.testing.assert_allclose((up * y).sum(), (x * down).sum(), rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_forward_values_match_pytorch_when_available(rng):
    """Only when PyTorch happens to be importable (not a dependency)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    for stride, padding in [(1, 1), ((2, 1), (0, 1)), (2, 0)]:
        ours = conv2d(Tensor(x), Tensor(w), Tensor(b), stride, padding).numpy()
        theirs = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride, padding=padding).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    wt = rng.standard_normal((3, 2, 4, 3))
    for stride, padding, output_padding in [(2, 1, 0), (2, 1, 1), ((2, 1), (1, 0), (1, 0))]:
        ours = conv_transpose2d(Tensor(x), Tensor(wt), Tensor(b[:2]), stride, padding, output_padding).numpy()
        theirs = F.conv_transpose2d(torch.tensor(x), torch.tensor(wt), torch.tensor(b[:2]), stride=stride,
                                    padding=padding, output_padding=output_padding).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


# --- Bad input: errors that name the op, the shapes received and what was expected ---

def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


def test_conv2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but the weight .* of shape \(4, 2, 3, 3\) expects 2"):
        conv2d(t(1, 3, 5, 5), t(4, 2, 3, 3))


def test_conv2d_input_not_4d():
    with pytest.raises(ValueError, match=r"conv2d: input must be 4-D \(batch, channels, height, width\), got shape \(3, 5, 5\)"):
        conv2d(t(3, 5, 5), t(4, 3, 3, 3))


def test_conv2d_weight_not_4d():
    with pytest.raises(ValueError, match=r"conv2d: weight must be 4-D \(out_channels, in_channels, kh, kw\), got shape \(3, 3, 3\)"):
        conv2d(t(1, 3, 5, 5), t(3, 3, 3))


def test_conv2d_kernel_bigger_than_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel \(3, 3\) with padding \(0, 0\) does not fit the input of spatial size \(2, 5\)"):
        conv2d(t(1, 3, 2, 5), t(4, 3, 3, 3))


def test_conv2d_kernel_that_fits_only_thanks_to_padding_is_accepted():
    assert conv2d(t(1, 3, 2, 5), t(4, 3, 3, 3), padding=1).shape == (1, 4, 2, 5)


def test_conv2d_bias_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\) to match the weight \(4, 3, 3, 3\), got \(3,\)"):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), t(3))


def test_conv2d_dtype_mismatch():
    with pytest.raises(TypeError, match=r"conv2d: inputs have different dtypes \['float64', 'float32'\]"):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3, dtype="float32"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=0), r"conv2d: stride must be positive"),
    (dict(padding=-1), r"conv2d: padding must be a non-negative int or a pair of them, got -1"),
    (dict(stride=(1, 2, 3)), r"conv2d: stride must be a non-negative int or a pair of them, got \(1, 2, 3\)"),
], ids=["zero_stride", "negative_padding", "triple_stride"])
def test_conv2d_bad_stride_or_padding(kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), **kwargs)


def test_conv_transpose2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"conv_transpose2d: input has 3 channels but the weight \(in_channels, out_channels, kh, kw\) "
                                         r"of shape \(4, 2, 3, 3\) expects 4"):
        conv_transpose2d(t(1, 3, 5, 5), t(4, 2, 3, 3))


def test_conv_transpose2d_input_not_4d():
    with pytest.raises(ValueError, match=r"conv_transpose2d: input must be 4-D .*got shape \(3, 5, 5\)"):
        conv_transpose2d(t(3, 5, 5), t(3, 2, 3, 3))


def test_conv_transpose2d_bias_shape_follows_the_output_channels():
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(2,\) to match the weight \(3, 2, 3, 3\), got \(3,\)"):
        conv_transpose2d(t(1, 3, 5, 5), t(3, 2, 3, 3), t(3))


def test_conv_transpose2d_output_padding_must_be_smaller_than_stride():
    with pytest.raises(ValueError, match=r"conv_transpose2d: .*output_padding \(2, 2\) smaller than stride \(2, 2\)"):
        conv_transpose2d(t(1, 3, 5, 5), t(3, 2, 3, 3), stride=2, output_padding=2)


def test_conv_transpose2d_padding_that_leaves_no_output():
    with pytest.raises(ValueError, match=r"conv_transpose2d: padding \(1, 1\) leaves no output for input \(1, 1\) and kernel \(1, 1\)"):
        conv_transpose2d(t(1, 3, 1, 1), t(3, 2, 1, 1), padding=1)


def test_conv_transpose2d_dtype_mismatch():
    with pytest.raises(TypeError, match=r"conv_transpose2d: inputs have different dtypes"):
        conv_transpose2d(t(1, 3, 5, 5, dtype="float32"), t(3, 2, 3, 3))


if backend.device == "gpu":  # defined only where CuPy runs, like the cupy cases of the xp fixture
    def test_mixing_numpy_and_cupy_inputs_is_named():
        import cupy
        on_gpu = Tensor(cupy.zeros((4, 3, 3, 3)))
        with pytest.raises(TypeError, match=r"conv2d: inputs mix NumPy and CuPy arrays; move them to one device"):
            conv2d(t(1, 3, 5, 5), on_gpu)
        with pytest.raises(TypeError, match=r"add: inputs mix NumPy and CuPy arrays"):
            t(4, 3, 3, 3) + on_gpu


@pytest.mark.parametrize("op", [conv2d, conv_transpose2d])
def test_conv_given_a_numpy_array_is_a_clear_type_error(op):
    # It used to fail deep inside with "AttributeError: 'numpy.ndarray' object has no attribute 'xp'".
    name = op.__name__
    with pytest.raises(TypeError, match=rf"{name}: input must be a minimenet Tensor, got numpy.ndarray; "
                                        r"wrap it first: Tensor\(array\)"):
        op(np.zeros((1, 3, 5, 5)), t(3, 3, 3, 3))
    with pytest.raises(TypeError, match=rf"{name}: weight must be a minimenet Tensor, got numpy.ndarray"):
        op(t(1, 3, 5, 5), np.zeros((3, 3, 3, 3)))
    with pytest.raises(TypeError, match=rf"{name}: bias must be a minimenet Tensor, got numpy.ndarray"):
        op(t(1, 3, 5, 5), t(3, 3, 3, 3), np.zeros(3))
