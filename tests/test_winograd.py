"""minimenet/winograd.py and conv_cpu's forward by it: Eq. 1 on one tile, then the forward
against the loops written from the convolution's definition (float64 and float32, odd sizes
that leave partial tiles, batch 1, bias, the BRC's batch norm and ReLU, a residual), in every
kind of block (bands of tile rows, one image, several, the leftover image's bands on two
workers), its float32 error against the direct form's, where it is and is not used, and the
gradients of the ops that run it (conv2d, the training BRC: forward and input gradient) against
finite differences."""
import numpy as np
import pytest

import minimenet as mm
from minimenet import conv_cpu, im2col, winograd
from minimenet.conv_geometry import ConvGeometry
from minimenet.fused import batch_norm_relu_conv2d, batch_norm_relu_conv2d_training

from test_conv_cpu import forward_loop, weight_grad_loop
from test_threads import two_workers  # noqa: F401  (a fixture)


def relu_affine_loop(x, scale, shift):
    return np.maximum(x * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0)


@pytest.fixture
def everywhere(monkeypatch):
    """Winograd for every 3 x 3 stride-1 padding-1 convolution, however small (the tests' are)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_SIZE", 1)


def tolerance(dtype, y):
    """float64: rounding only; float32: Winograd's, about 1e-5 of the largest output."""
    return dict(rtol=0, atol=(1e-10 if dtype == "float64" else 1e-4) * float(np.abs(y).max()))


def test_eq_1_gives_the_3x3_correlation_of_a_6x6_tile(rng):
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    direct = np.array([[np.sum(d[r:r + 3, c:c + 3] * g) for c in range(4)] for r in range(4)])
    by_eq_1 = winograd.A_T @ ((winograd.G @ g @ winograd.G.T) * (winograd.B_T @ d @ winograd.B_T.T)) @ winograd.A_T.T
    np.testing.assert_allclose(by_eq_1, direct, rtol=0, atol=1e-12)


def test_the_bias_position_enters_every_output_of_its_tile_with_weight_1():
    to_outputs = np.kron(winograd.A_T, winograd.A_T)  # (16, 36): M's positions to a tile's outputs
    np.testing.assert_array_equal(to_outputs[:, winograd.BIAS_POSITION], np.ones(16))


# (batch, Ci, H, W, Co): partial tiles both ways, batch 1, tiles exactly, a 1 x 1 image
CASES = [(2, 3, 7, 9, 5), (1, 4, 13, 10, 3), (3, 2, 8, 8, 4), (2, 3, 1, 1, 2), (1, 2, 5, 17, 2)]


def case_arrays(case, dtype, seed=0):
    b, ci, h, wd, co = case
    r = np.random.default_rng(seed)
    x, w = r.standard_normal((b, ci, h, wd)).astype(dtype), r.standard_normal((co, ci, 3, 3)).astype(dtype)
    bias, residual = r.standard_normal(co).astype(dtype), r.standard_normal((b, co, h, wd)).astype(dtype)
    scale, shift = r.uniform(0.5, 2, ci).astype(dtype), r.uniform(-0.5, 0.5, ci).astype(dtype)
    return x, w, bias, residual, (scale, shift)


def tile_budgets(case):
    """Budgets (elements of transformed tiles) for bands of one tile row, one image a block,
    two images a block, and the whole batch in one block."""
    b, ci, h, wd, _ = case
    per_row = 36 * ci * -(-wd // 4)
    per_image = per_row * -(-h // 4)
    return [1, per_image, 2 * per_image, b * per_image]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_forward_matches_the_loops_in_every_kind_of_block(case, dtype, everywhere, monkeypatch):
    x, w, bias, residual, affine = case_arrays(case, dtype)
    expected = forward_loop(relu_affine_loop(x.astype(np.float64), *affine), w, (1, 1), (1, 1)) + bias.reshape(-1, 1, 1) + residual
    plain = forward_loop(x, w, (1, 1), (1, 1))
    for budget in tile_budgets(case):
        monkeypatch.setattr(im2col, "COLUMNS_BUDGET", budget)
        monkeypatch.setattr(winograd, "BAND_BUDGET", budget)
        y = conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1), bias, affine, residual)
        assert y.dtype == x.dtype and y.shape == expected.shape
        np.testing.assert_allclose(y, expected, **tolerance(dtype, expected))
        np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1)), plain, **tolerance(dtype, plain))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_weight_gradient_matches_the_loops_in_every_kind_of_block(case, dtype, everywhere, monkeypatch):
    x, w, _, dy, affine = case_arrays(case, dtype)
    expected = weight_grad_loop(relu_affine_loop(x.astype(np.float64), *affine), dy, w.shape, (1, 1), (1, 1))
    plain = weight_grad_loop(x, dy, w.shape, (1, 1), (1, 1))
    for budget in tile_budgets(case):
        monkeypatch.setattr(im2col, "COLUMNS_BUDGET", budget)
        monkeypatch.setattr(winograd, "BAND_BUDGET", budget)
        dw = conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1), affine)
        assert dw.dtype == x.dtype and dw.shape == w.shape
        np.testing.assert_allclose(dw, expected, **tolerance(dtype, expected))
        np.testing.assert_allclose(conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1)), plain, **tolerance(dtype, plain))


def test_the_weight_gradient_on_two_workers_sums_their_shares_in_order(everywhere, two_workers, monkeypatch):  # noqa: F811
    """Bands of one tile row (12 blocks): worker k sums blocks k, k + 2, ..., the same bits on
    every run; the whole batch in one block: its products shared out by positions."""
    x, w, _, dy, affine = case_arrays((3, 3, 13, 10, 4), "float32")
    expected = weight_grad_loop(relu_affine_loop(x.astype(np.float64), *affine), dy, w.shape, (1, 1), (1, 1))
    monkeypatch.setattr(winograd, "BAND_BUDGET", 1)
    runs = [conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1), affine) for _ in range(3)]
    for dw in runs[1:]:
        np.testing.assert_array_equal(dw, runs[0])
    np.testing.assert_allclose(runs[0], expected, **tolerance("float32", expected))
    assert 1 in two_workers.history  # the blocks ran on the workers, OpenBLAS at one thread
    monkeypatch.setattr(winograd, "BAND_BUDGET", 2**19)
    shares = []
    original = winograd.threads.parallel
    monkeypatch.setattr(winograd.threads, "parallel",
                        lambda task, items: shares.append((task.__name__, list(items))) or original(task, items))
    np.testing.assert_allclose(conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1), affine), expected,
                               **tolerance("float32", expected))
    assert ("multiply", [slice(0, 18), slice(18, 36)]) in shares


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_whole_images_and_the_leftover_images_bands_on_two_workers(dtype, everywhere, two_workers, monkeypatch):  # noqa: F811
    case = (3, 3, 13, 10, 4)
    x, w, bias, residual, affine = case_arrays(case, dtype)
    per_image = tile_budgets(case)[1]
    monkeypatch.setattr(winograd, "BAND_BUDGET", per_image)
    monkeypatch.setattr(im2col, "COLUMNS_BUDGET", per_image)
    plan = list(im2col.plan(3, 4, per_image // 4, 2, per_image))
    assert plan[:2] == [(0, 1, 0, 4), (1, 1, 0, 4)] and [n for _, n, _, _ in plan[2:]] == [1, 1]  # the third image in two bands
    y = conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1), bias, affine, residual)
    expected = forward_loop(relu_affine_loop(x.astype(np.float64), *affine), w, (1, 1), (1, 1)) + bias.reshape(-1, 1, 1) + residual
    np.testing.assert_allclose(y, expected, **tolerance(dtype, expected))
    assert 1 in two_workers.history  # the blocks ran on the workers, OpenBLAS at one thread


def test_a_block_of_the_whole_batch_shares_its_products_out_by_positions(everywhere, two_workers, monkeypatch):  # noqa: F811
    x, w, bias, residual, affine = case_arrays((2, 3, 8, 8, 4), "float64")
    shares = []
    original = winograd.threads.parallel
    monkeypatch.setattr(winograd.threads, "parallel",
                        lambda task, items: shares.append((task.__name__, list(items))) or original(task, items))
    y = conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1), bias, affine, residual)
    assert ("multiply", [slice(0, 18), slice(18, 36)]) in shares
    expected = forward_loop(relu_affine_loop(x, *affine), w, (1, 1), (1, 1)) + bias.reshape(-1, 1, 1) + residual
    np.testing.assert_allclose(y, expected, **tolerance("float64", expected))


def test_the_weights_are_transformed_once_for_all_of_a_forwards_blocks(everywhere, monkeypatch):
    case = (3, 3, 13, 10, 4)
    x, w, bias, residual, affine = case_arrays(case, "float64")
    monkeypatch.setattr(winograd, "BAND_BUDGET", 1)  # a band a tile row: 12 blocks
    calls = []
    original = winograd.transformed_weights
    monkeypatch.setattr(winograd, "transformed_weights", lambda w, positions: calls.append(positions) or original(w, positions))
    y = conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1), bias, affine, residual)
    assert calls == [slice(0, 36)]
    expected = forward_loop(relu_affine_loop(x, *affine), w, (1, 1), (1, 1)) + bias.reshape(-1, 1, 1) + residual
    np.testing.assert_allclose(y, expected, **tolerance("float64", expected))


def test_its_float32_error_on_a_paper_like_layer_is_about_1e_5(rng):
    """128 channels at 14 x 14 (suits as it is): within 3e-5 of the largest output, while the
    direct form is within 1e-6; float64 to rounding. The weight gradient likewise."""
    x = rng.standard_normal((2, 128, 14, 14))
    w = rng.standard_normal((128, 128, 3, 3)) / np.sqrt(9 * 128)
    assert winograd.suits(x, ConvGeometry.of(x.shape, w.shape, 1, 1, "test"))
    exact = conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1), direct=True)
    largest = np.abs(exact).max()
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    error = np.abs(conv_cpu.conv2d_forward(x32, w32, (1, 1), (1, 1)) - exact).max() / largest
    direct_error = np.abs(conv_cpu.conv2d_forward(x32, w32, (1, 1), (1, 1), direct=True) - exact).max() / largest
    assert direct_error < 1e-6 and 1e-7 < error < 3e-5
    assert np.abs(conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1)) - exact).max() / largest < 1e-13
    dy = rng.standard_normal(exact.shape)
    exact = conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1), direct=True)
    largest, dy32 = np.abs(exact).max(), dy.astype(np.float32)
    error = np.abs(conv_cpu.conv2d_weight_grad(x32, dy32, w.shape, (1, 1), (1, 1)) - exact).max() / largest
    direct_error = np.abs(conv_cpu.conv2d_weight_grad(x32, dy32, w.shape, (1, 1), (1, 1), direct=True) - exact).max() / largest
    assert direct_error < 1e-6 and 1e-7 < error < 3e-5
    assert np.abs(conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1)) - exact).max() / largest < 1e-13


@pytest.mark.parametrize("change, suits", [
    ({}, True),
    ({"stride": 2}, False),
    ({"padding": 0}, False),
    ({"kernel": 5, "padding": 2}, False),
    ({"channels": 64, "out_channels": 64}, True),
    ({"channels": 32}, False),
    ({"out_channels": 32}, False),
    ({"size": 7}, False),
    ({"dtype": "float16"}, False),
])
def test_it_suits_the_3x3_stride_1_layers_with_many_channels_on_images_not_too_small(change, suits):
    settings = dict(stride=1, padding=1, kernel=3, channels=128, out_channels=128, size=14, dtype="float32") | change
    x = np.zeros((1, settings["channels"], settings["size"], settings["size"]), settings["dtype"])
    w_shape = (settings["out_channels"], settings["channels"], settings["kernel"], settings["kernel"])
    assert winograd.suits(x, ConvGeometry.of(x.shape, w_shape, settings["stride"], settings["padding"], "test")) is suits


def test_every_forward_that_suits_takes_it_at_inference_and_in_training(monkeypatch, rng):
    """A layer that suits goes by Winograd unless the caller asks for the direct form: a plain
    forward, the fused inference BRC (whose result is Eq. 1's, within float32 Winograd's error
    of the three ops), and in training the forward, the input gradient (a forward with the
    flipped weights, w read as (Ci, Co)) and the weight gradient (Eq. 3)."""
    calls = []
    original = winograd.transformed_weights
    monkeypatch.setattr(winograd, "transformed_weights", lambda w, positions: calls.append(w.shape) or original(w, positions))
    x = rng.standard_normal((1, 64, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((80, 64, 3, 3)) / 24).astype(np.float32)  # Co < 1.5 Ci: the input gradient is a forward
    conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1), direct=True)
    assert calls == []
    conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1))
    assert calls == [(80, 64, 3, 3)]  # one worker: all positions in one group, made once
    calls.clear()
    scale, shift = np.full(64, 1.5, np.float32), np.full(64, -0.1, np.float32)
    with mm.no_grad():
        y = batch_norm_relu_conv2d(mm.Tensor(x), scale, shift, mm.Tensor(w), padding=1)
    three_ops = conv_cpu.conv2d_forward(np.maximum(x * 1.5 - 0.1, 0), w, (1, 1), (1, 1), direct=True)
    assert calls == [(80, 64, 3, 3)]
    np.testing.assert_allclose(y.data, three_ops, rtol=0, atol=3e-5 * float(np.abs(three_ops).max()))
    calls.clear()
    gradients = []
    original_weight_grad = winograd.weight_grad
    monkeypatch.setattr(winograd, "weight_grad", lambda x, dy, g, affine: gradients.append(g.w_shape) or original_weight_grad(x, dy, g, affine))
    xt, wt = mm.Tensor(x, requires_grad=True), mm.Tensor(w, requires_grad=True)
    mm.conv2d(xt, wt, padding=1).sum().backward()
    assert calls == [(80, 64, 3, 3), (64, 80, 3, 3)] and gradients == [(80, 64, 3, 3)]
    ones = np.ones((1, 80, 14, 14), np.float32)
    direct_dx = conv_cpu.conv2d_forward(ones, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), (1, 1), (1, 1), direct=True)
    np.testing.assert_allclose(xt.grad, direct_dx, rtol=0, atol=3e-5 * float(np.abs(direct_dx).max()))
    direct_dw = conv_cpu.conv2d_weight_grad(x, ones, w.shape, (1, 1), (1, 1), direct=True)
    np.testing.assert_allclose(wt.grad, direct_dw, rtol=0, atol=3e-5 * float(np.abs(direct_dw).max()))


@pytest.mark.parametrize("fused", [False, True], ids=["conv2d", "training BRC"])
def test_the_gradients_through_it_match_finite_differences(fused, everywhere, monkeypatch, rng):
    """float64, with Winograd on every 3 x 3 layer: the forward and both gradients go by it
    (counted), and every input's gradient agrees with central differences. Their step is 1e-4,
    not gradcheck's 1e-5: Winograd's float64 rounding (1e-14 of the largest output, about 10
    times the direct form's) over 2e-5 failed x's gradient at 1.9e-6 where the direct form
    passes; 10 times the step, 10 times less of it."""
    calls = []
    original, original_weight_grad = winograd.forward, winograd.weight_grad
    monkeypatch.setattr(winograd, "forward", lambda *args: calls.append(args[1].shape) or original(*args))
    monkeypatch.setattr(winograd, "weight_grad", lambda *args: calls.append(args[2].w_shape) or original_weight_grad(*args))
    x = mm.Tensor(0.5 + rng.standard_normal((2, 3, 6, 5)), requires_grad=True)
    w, b = mm.Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True), mm.Tensor(rng.standard_normal(4), requires_grad=True)
    residual = mm.Tensor(rng.standard_normal((2, 4, 6, 5)), requires_grad=True)
    if fused:
        gamma, beta = mm.Tensor(rng.uniform(0.5, 2, 3), requires_grad=True), mm.Tensor(rng.standard_normal(3), requires_grad=True)
        mean, var = np.zeros(3), np.ones(3)
        assert mm.gradcheck(lambda *t: batch_norm_relu_conv2d_training(*t[:3], mean.copy(), var.copy(), *t[3:5], 1, 1, t[5]),
                            [x, gamma, beta, w, b, residual], eps=1e-4)
    else:
        assert mm.gradcheck(lambda x, w, b, residual: mm.conv2d(x, w, b, padding=1) + residual, [x, w, b, residual], eps=1e-4)
    assert (4, 3, 3, 3) in calls and (3, 4, 3, 3) in calls  # the forward's and weight gradient's weights, the input gradient's
    assert calls.count((4, 3, 3, 3)) >= 2
