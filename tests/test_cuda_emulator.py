"""The CUDA kernels of kernels/*.cu against NumPy, run in the CPU emulator (and on the GPU too
when one is usable).

Every kernel is compared with two references on random inputs: a plain loop over kernel taps
written here from the definition, and the library's NumPy ops (im2col in minimenet/conv.py,
minimenet/losses.metric_loss_arrays). The shapes leave partial tiles at every edge of every GEMM.
"""
import os
import shutil
import types

import numpy as np
import pytest

from minimenet import conv as numpy_conv
from minimenet import cuda
from minimenet.backend import device as selected_device
from minimenet.cuda import conv as cuda_conv
from minimenet.cuda import emulator, sources
from minimenet.losses import metric_loss_arrays

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="the CUDA emulator needs a C++ compiler with OpenMP (g++, or set CXX) and none was found")

# The emulator always runs; the GPU joins when minimenet selected one (as in conftest.py). On a
# CPU-only machine the GPU cases are not generated at all rather than skipped, so CI can insist
# on zero skips.
BACKENDS = [pytest.param("emulator", marks=[needs_compiler, pytest.mark.emulator])] + (["gpu"] if selected_device == "gpu" else [])


def guarded(a, band=4096):
    """A float32 array placed between two bands of NaN: a kernel that reads past either end of
    it reads NaN, which then shows in its result instead of depending on what memory held."""
    buffer = np.full(a.size + 2 * band, np.nan, dtype=np.float32)
    inside = buffer[band:band + a.size].reshape(a.shape)
    inside[...] = a
    return inside


def run(backend, function, *arguments, **keywords):
    """Call a minimenet.cuda function with NumPy arguments on the given backend; NumPy results.
    In the emulator, float32 inputs sit between NaN guard bands."""
    if backend == "gpu":
        import cupy
        arguments = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in arguments]
        result = function(*arguments, **keywords)
        return tuple(r.get() for r in result) if isinstance(result, tuple) else result.get()
    arguments = [guarded(a) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a for a in arguments]
    return function(*arguments, **keywords)


def assert_close(actual, expected):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# ---------------------------------------------------------------- plain-loop references (float64)

def padded_windows(x, kernel, stride, padding, out_hw):
    """For each kernel tap (r, s): the (B, Ci, Ho, Wo) slice of the zero-padded x it multiplies."""
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_hw
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return {(r, s): padded[:, :, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw]
            for r in range(kh) for s in range(kw)}


def loop_forward(x, w, stride, padding):
    (b, _, h, wd), (co, _, kh, kw) = x.shape, w.shape
    ho, wo = (h + 2 * padding[0] - kh) // stride[0] + 1, (wd + 2 * padding[1] - kw) // stride[1] + 1
    y = np.zeros((b, co, ho, wo))
    for (r, s), window in padded_windows(x, (kh, kw), stride, padding, (ho, wo)).items():
        y += np.einsum("bihw,oi->bohw", window, w[:, :, r, s])
    return y


def loop_input_grad(dy, w, x_shape, stride, padding):
    """Scatter every output pixel's gradient back through every tap, on the padded input."""
    (b, ci, h, wd), (_, _, kh, kw), (_, _, ho, wo) = x_shape, w.shape, dy.shape
    (sh, sw), (ph, pw) = stride, padding
    padded = np.zeros((b, ci, h + 2 * ph, wd + 2 * pw))
    for r in range(kh):
        for s in range(kw):
            padded[:, :, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw] += np.einsum("bohw,oi->bihw", dy, w[:, :, r, s])
    return padded[:, :, ph:ph + h, pw:pw + wd]


def loop_weight_grad(x, dy, w_shape, stride, padding):
    (_, _, kh, kw), (_, _, ho, wo) = w_shape, dy.shape
    dw = np.zeros(w_shape)
    for (r, s), window in padded_windows(x, (kh, kw), stride, padding, (ho, wo)).items():
        dw[:, :, r, s] = np.einsum("bohw,bihw->oi", dy, window)
    return dw


def loop_conv_transpose(x, w, stride, padding, output_padding):
    """Transposed convolution from its definition: input pixel (ih, iw) spreads x * w[ci, co] over
    output pixels (ih sh - ph + r, iw sw - pw + s); w is (Cin, Cout, kh, kw)."""
    (b, _, h, wd), (_, co, kh, kw) = x.shape, w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h = (h - 1) * sh - 2 * ph + kh + output_padding[0]
    out_w = (wd - 1) * sw - 2 * pw + kw + output_padding[1]
    # Spread into an output padded by (ph, pw) on every side plus room for output_padding.
    padded = np.zeros((b, co, out_h + 2 * ph, out_w + 2 * pw))
    for r in range(kh):
        for s in range(kw):
            padded[:, :, r:r + sh * (h - 1) + 1:sh, s:s + sw * (wd - 1) + 1:sw] += np.einsum("bihw,io->bohw", x, w[:, :, r, s])
    return padded[:, :, ph:ph + out_h, pw:pw + out_w]


def loop_metric_loss(f, labels):
    """Eq. 3 per image and pixel in float64: (loss, gradient) with the gradient's closed form."""
    f = f.astype(np.float64)
    b, c = f.shape[:2]
    loss, grad = 0.0, np.zeros_like(f)
    for n in range(b):
        features = f[n].reshape(c, -1)
        salient = labels[n].reshape(-1) == 1
        if salient.all() or not salient.any():
            continue
        centroids = {True: features[:, salient].mean(axis=1), False: features[:, ~salient].mean(axis=1)}
        counts = {True: salient.sum(), False: (~salient).sum()}
        for i, is_salient in enumerate(salient):
            own, other = centroids[is_salient], centroids[not is_salient]
            loss += np.sum((features[:, i] - own) ** 2) - np.sum((features[:, i] - other) ** 2)
            grad[n].reshape(c, -1)[:, i] = 2 * (other - own) / (b * counts[is_salient])
    return loss / (b * labels[0].size), grad


# ------------------------------------------------------------------------------ convolution

# (batch, in_ch, height, width, out_ch, (kh, kw), (sh, sw), (ph, pw)). Sizes are off the 16-wide
# tile everywhere: batch * output pixels, channels and in_ch * kh * kw all leave partial tiles.
CONV_CASES = [
    (1, 1, 5, 5, 1, (1, 1), (1, 1), (0, 0)),
    (2, 3, 9, 7, 5, (3, 3), (1, 1), (1, 1)),
    (2, 3, 9, 7, 5, (3, 3), (2, 2), (1, 1)),
    (3, 17, 11, 13, 19, (3, 3), (1, 1), (0, 0)),
    (2, 4, 10, 9, 6, (4, 4), (2, 2), (1, 1)),
    (1, 2, 15, 12, 3, (7, 7), (1, 1), (0, 0)),
    (2, 3, 8, 11, 4, (7, 7), (2, 2), (1, 1)),
    (2, 5, 10, 9, 6, (3, 5), (2, 1), (1, 0)),
    (2, 3, 7, 9, 4, (1, 4), (1, 2), (0, 1)),
    (1, 33, 7, 7, 18, (7, 7), (1, 1), (0, 0)),   # the global block's 7x7 -> 1x1, K = 1617
    (2, 6, 14, 14, 5, (3, 3), (1, 1), (1, 1)),   # weight grad split over K into 3 slices
    (2, 10, 12, 10, 37, (3, 3), (1, 1), (1, 1)),  # a full and a partial 32-row tile
    (2, 3, 23, 17, 4, (5, 3), (3, 2), (1, 1)),    # stride 3 with padding 1: phases where a + p and
                                                  # a - p differ; the first phase spans two 128-column tiles
]
CONV_IDS = ["b{}_ci{}_{}x{}_co{}_k{}_s{}_p{}".format(b, ci, h, w, co, "x".join(map(str, k)), "x".join(map(str, s)), "x".join(map(str, p)))
            for b, ci, h, w, co, k, s, p in CONV_CASES]


def conv_inputs(case, seed):
    batch, in_ch, height, width, out_ch, kernel, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, in_ch, height, width)).astype(np.float32)
    w = rng.standard_normal((out_ch, in_ch, *kernel)).astype(np.float32)
    out_hw = [(size + 2 * p - k) // s + 1 for size, k, s, p in zip((height, width), kernel, stride, padding)]
    dy = rng.standard_normal((batch, out_ch, *out_hw)).astype(np.float32)
    return x, w, dy, stride, padding


def assert_conv_close(actual, expected, kernels, magnitude):
    """float32 kernels agree with a float64 reference to float32 accuracy. TF32 kernels round
    both operands to 10 mantissa bits (relative error 2^-11 each), so each product may be off by
    2^-10 of its size: the bound is 2^-10 |A||B| (``magnitude``, the same computation on absolute
    values) plus float32 summation error."""
    if kernels != "tf32":
        assert_close(actual, expected)
        return
    k_terms = 2**12  # more than any case's K: the float32 summation error bound K 2^-24, generously
    bound = (2.0**-10 + k_terms * 2.0**-24) * np.asarray(magnitude, dtype=np.float64) + 1e-6
    excess = np.abs(actual - np.asarray(expected, dtype=np.float64)) - bound
    assert excess.max() <= 0, f"TF32 result off by more than its rounding bound, by up to {excess.max():.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.VARIANTS)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_forward(case, kernels, backend):
    x, w, _, stride, padding = conv_inputs(case, seed=1)
    y = run(backend, cuda.conv2d_forward, x, w, stride, padding, kernels=kernels)
    assert y.dtype == np.float32
    magnitude = loop_forward(np.abs(x), np.abs(w), stride, padding)
    assert_conv_close(y, loop_forward(x, w, stride, padding), kernels, magnitude)
    assert_conv_close(y, numpy_conv.conv2d_forward(x.astype(np.float64), w.astype(np.float64), stride, padding), kernels, magnitude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.VARIANTS)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_input_grad(case, kernels, backend):
    x, w, dy, stride, padding = conv_inputs(case, seed=2)
    dx = run(backend, cuda.conv2d_input_grad, dy, w, x.shape, stride, padding, kernels=kernels)
    assert dx.shape == x.shape
    magnitude = loop_input_grad(np.abs(dy), np.abs(w), x.shape, stride, padding)
    assert_conv_close(dx, loop_input_grad(dy, w, x.shape, stride, padding), kernels, magnitude)
    assert_conv_close(dx, numpy_conv.conv2d_input_grad(dy.astype(np.float64), w.astype(np.float64), x.shape, stride, padding), kernels, magnitude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.VARIANTS)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_weight_grad(case, kernels, backend):
    x, w, dy, stride, padding = conv_inputs(case, seed=3)
    dw = run(backend, cuda.conv2d_weight_grad, x, dy, w.shape, stride, padding, kernels=kernels)
    assert dw.shape == w.shape
    magnitude = loop_weight_grad(np.abs(x), np.abs(dy), w.shape, stride, padding)
    assert_conv_close(dw, loop_weight_grad(x, dy, w.shape, stride, padding), kernels, magnitude)
    assert_conv_close(dw, numpy_conv.conv2d_weight_grad(x.astype(np.float64), dy.astype(np.float64), w.shape, stride, padding), kernels, magnitude)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tf32_kernels_are_exact_where_tf32_is(backend):
    """Small integers are exact in TF32 and their sums exact in float32, so on them the tensor-core
    kernels must give the exact result: any element of a fragment taken from the wrong place in
    the tile would show. On ordinary floats they must round (else TF32 is not what ran)."""
    case = (2, 19, 9, 11, 37, (3, 3), (2, 1), (1, 1))  # partial tiles in M, N and K
    x, w, dy, stride, padding = conv_inputs(case, seed=13)
    integers = [np.round(4 * a).astype(np.float32) for a in (x, w, dy)]
    exact = {"forward": loop_forward(integers[0], integers[1], stride, padding),
             "input_grad": loop_input_grad(integers[2], integers[1], x.shape, stride, padding),
             "weight_grad": loop_weight_grad(integers[0], integers[2], w.shape, stride, padding)}

    def all_three(x, w, dy):
        return {"forward": run(backend, cuda.conv2d_forward, x, w, stride, padding, kernels="tf32"),
                "input_grad": run(backend, cuda.conv2d_input_grad, dy, w, x.shape, stride, padding, kernels="tf32"),
                "weight_grad": run(backend, cuda.conv2d_weight_grad, x, dy, w.shape, stride, padding, kernels="tf32")}

    for name, result in all_three(*integers).items():
        np.testing.assert_array_equal(result, exact[name], err_msg=name)
    float32_result = run(backend, cuda.conv2d_forward, x, w, stride, padding, kernels="tiled")
    tf32_result = all_three(x, w, dy)["forward"]
    assert np.abs(tf32_result - loop_forward(x, w, stride, padding)).max() > 10 * np.abs(float32_result - loop_forward(x, w, stride, padding)).max()


def test_tf32_is_refused_on_a_gpu_without_tensor_core_tf32(monkeypatch):
    """Before sm_80 the tf32 kernels would trap: the launcher names the problem and the fix. The
    GPU is faked (an array module called cupy, compute capability 7.5): no GPU is needed."""
    from minimenet.cuda import gpu

    fake_cupy = types.SimpleNamespace(__name__="cupy")
    monkeypatch.setattr(cuda_conv, "array_module", lambda a: fake_cupy)
    monkeypatch.setattr(gpu, "compute_capability", lambda: 75)
    x, w = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"tf32 convolution kernels need .* 8.0 or later, this one has 7.5; use kernels='tiled'"):
        cuda.conv2d_weight_grad(x, x, w.shape, 1, 0, kernels="tf32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tf32_rounding_is_to_nearest_with_ties_away_from_zero(backend):
    """cvt.rna.tf32.f32, the GPU instruction, and the emulator's tf32_round agree on halfway
    cases, which random data almost never hits: a 1x1 convolution by 1.0 returns each input
    rounded to TF32 (10 mantissa bits, so u = 2^-10 is one unit at 1.0)."""
    u = 2.0 ** -10
    values = np.array([1 + u / 2, -(1 + u / 2), 1 + 3 * u / 2, 1 + u / 2 - 2.0 ** -23, 2 - u / 2, 1 + u / 2 + 2.0 ** -23])
    expected = np.array([1 + u, -(1 + u), 1 + 2 * u, 1.0, 2.0, 1 + u])
    y = run(backend, cuda.conv2d_forward, values.astype(np.float32).reshape(1, 1, 1, -1),
            np.ones((1, 1, 1, 1), np.float32), 1, 0, kernels="tf32")
    np.testing.assert_array_equal(y.reshape(-1), expected.astype(np.float32))


def test_guard_bands_show_reads_past_the_end():
    """The NaN bands of ``guarded`` are where a kernel reading past its input would land."""
    a = guarded(np.arange(6, dtype=np.float32).reshape(2, 3))
    base = a.base if a.base is not None else a
    assert a.flags.c_contiguous and np.isnan(base[:4096]).all() and np.isnan(base[-4096:]).all()
    np.testing.assert_array_equal(a, np.arange(6).reshape(2, 3))


def test_unknown_kernel_variant_is_named(monkeypatch):
    x, w = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="unknown convolution kernels 'fast'.*simple, tiled, tf32"):
        cuda.conv2d_forward(x, w, 1, 0, kernels="fast")
    monkeypatch.setenv("MINIMENET_CONV_KERNELS", "tf16")
    with pytest.raises(ValueError, match=r"unknown convolution kernels 'tf16' \(from the argument or \$MINIMENET_CONV_KERNELS"):
        cuda.conv2d_forward(x, w, 1, 0)
    monkeypatch.setenv("MINIMENET_CONV_KERNELS", "simple")
    assert cuda_conv.variant().file_name == "conv2d.cu"
    monkeypatch.delenv("MINIMENET_CONV_KERNELS")
    assert cuda_conv.variant().name == cuda_conv.DEFAULT_VARIANT


@pytest.mark.parametrize("kernels", cuda_conv.VARIANTS)
def test_cases_cover_split_k_and_partial_tiles(kernels):
    """The case list really exercises what it claims for every variant: several K slices, and
    output channels filling one tile and part of the next."""
    geometry = cuda_conv.variant(kernels)
    slices = [cuda_conv.weight_grad_slices(conv_inputs(c, 0)[1].shape, conv_inputs(c, 0)[2].shape, kernels) for c in CONV_CASES]
    assert max(slices) > 1 and min(slices) == 1
    assert any(c[4] % geometry.tile_m and c[4] > geometry.tile_m for c in CONV_CASES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", ["simple", "tiled"])  # TF32 rounding is checked elementwise above
def test_conv2d_adjoint_identities(kernels, backend):
    """<conv(x), dy> = <x, input_grad(dy)> = <w, weight_grad(x, dy)>: the three kernels are one
    bilinear map read three ways."""
    x, w, dy, stride, padding = conv_inputs((2, 5, 10, 9, 6, (3, 5), (2, 1), (1, 0)), seed=4)
    y = run(backend, cuda.conv2d_forward, x, w, stride, padding, kernels=kernels)
    dx = run(backend, cuda.conv2d_input_grad, dy, w, x.shape, stride, padding, kernels=kernels)
    dw = run(backend, cuda.conv2d_weight_grad, x, dy, w.shape, stride, padding, kernels=kernels)
    reference = np.vdot(y.astype(np.float64), dy)
    assert np.vdot(x.astype(np.float64), dx) == pytest.approx(reference, rel=1e-4)
    assert np.vdot(w.astype(np.float64), dw) == pytest.approx(reference, rel=1e-4)


@needs_compiler
@pytest.mark.parametrize("kernels", ["simple", "tiled"])
def test_input_grad_for_a_larger_input(kernels):
    """x_shape one row and column beyond the smallest input that gives dy's size (ConvTranspose2d's
    output_padding). Without padding no window reaches the extra row and column, so their
    gradient is 0; with padding 1 windows do reach them and they get their proper values."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x_shape = (2, 2, 8, 8)
    dy = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)  # 7x7 already gives 3x3 at stride 2
    dx = cuda.conv2d_input_grad(dy, w, x_shape, (2, 2), (0, 0), kernels=kernels)
    assert_close(dx, loop_input_grad(dy, w, x_shape, (2, 2), (0, 0)))
    np.testing.assert_array_equal(dx[:, :, 7, :], 0)
    np.testing.assert_array_equal(dx[:, :, :, 7], 0)

    dy = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)  # 7x7 already gives 4x4 with padding 1
    dx = cuda.conv2d_input_grad(dy, w, x_shape, (2, 2), (1, 1), kernels=kernels)
    expected = loop_input_grad(dy, w, x_shape, (2, 2), (1, 1))
    assert np.abs(expected[:, :, 7, :]).min() > 0
    assert_close(dx, expected)


# (batch, Cin, H, W, Cout, kernel, stride, padding, output_padding): the decoder's deconvolutions.
TRANSPOSE_CASES = [
    (2, 5, 4, 3, 3, (4, 4), (2, 2), (1, 1), (0, 0)),   # 4x4 stride-2 pad-1: doubles the size
    (2, 4, 5, 4, 3, (3, 3), (2, 2), (1, 1), (1, 0)),   # output_padding in one dimension
    (1, 3, 3, 5, 2, (3, 2), (2, 3), (0, 1), (1, 2)),   # non-square everything
    (2, 20, 1, 1, 17, (7, 7), (1, 1), (0, 0), (0, 0)),  # the global block's 1x1 -> 7x7
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.VARIANTS)
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose_role_swap(case, kernels, backend):
    """ConvTranspose2d = (input grad, forward, weight grad) of a convolution with weight
    (Cin, Cout, kh, kw) read as (co=Cin, ci=Cout); its gradients satisfy the adjoint identities."""
    batch, cin, height, width, cout, kernel, stride, padding, output_padding = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, cin, height, width)).astype(np.float32)
    w = rng.standard_normal((cin, cout, *kernel)).astype(np.float32)
    expected = loop_conv_transpose(x, w, stride, padding, output_padding)

    y = run(backend, cuda.conv2d_input_grad, x, w, expected.shape, stride, padding, kernels=kernels)
    assert_conv_close(y, expected, kernels, loop_conv_transpose(np.abs(x), np.abs(w), stride, padding, output_padding))

    dy = rng.standard_normal(expected.shape).astype(np.float32)
    dx = run(backend, cuda.conv2d_forward, dy, w, stride, padding, kernels=kernels)
    dw = run(backend, cuda.conv2d_weight_grad, dy, x, w.shape, stride, padding, kernels=kernels)
    assert dx.shape == x.shape and dw.shape == w.shape
    if kernels == "tf32":  # rounding breaks the identities' 1e-4 agreement: check each bound instead
        assert_conv_close(dx, loop_forward(dy, w, stride, padding), kernels, loop_forward(np.abs(dy), np.abs(w), stride, padding))
        assert_conv_close(dw, loop_weight_grad(dy, x, w.shape, stride, padding), kernels, loop_weight_grad(np.abs(dy), np.abs(x), w.shape, stride, padding))
        return
    reference = np.vdot(expected, dy)
    assert np.vdot(x.astype(np.float64), dx) == pytest.approx(reference, rel=1e-4)
    # The transposed convolution is linear in w too: <T(x; w), dy> = <w, dW>.
    assert np.vdot(w.astype(np.float64), dw) == pytest.approx(reference, rel=1e-4)


@needs_compiler
def test_conv_accepts_other_dtypes_and_layouts():
    """float64 and non-contiguous inputs are converted to contiguous float32 first."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8))[:, :, :, ::-1]
    w = rng.standard_normal((4, 3, 3, 3))
    y = cuda.conv2d_forward(x, w, 1, 1)
    assert y.dtype == np.float32
    assert_close(y, loop_forward(x, w, (1, 1), (1, 1)))


def test_conv_shape_errors_name_the_problem():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="3 channels but the weight"):
        cuda.conv2d_forward(x, np.zeros((2, 4, 3, 3), np.float32), 1, 0)
    with pytest.raises(ValueError, match="does not fit"):
        cuda.conv2d_forward(x, np.zeros((2, 3, 7, 7), np.float32), 1, 0)
    with pytest.raises(ValueError, match="dy has shape"):
        cuda.conv2d_input_grad(np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 3, 3, 3), np.float32), x.shape, 1, 0)


# ------------------------------------------------------------------------------ metric loss

def metric_inputs(shape, seed):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(shape)
    f /= np.linalg.norm(f, axis=1, keepdims=True)  # the loss is applied to L2-normalised features
    labels = (rng.random((shape[0], *shape[2:])) < 0.4).astype(np.int32)
    return f.astype(np.float32), labels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (3, 5, 9, 11), (2, 7, 20, 17), (2, 3, 16, 16)],
                         ids=["tiny", "one_block", "several_blocks", "exact_block"])
def test_metric_loss_matches_references(shape, backend):
    f, labels = metric_inputs(shape, seed=8)
    labels[0].flat[:2] = (0, 1)  # every image has both regions
    loss, grad = run(backend, cuda.metric_loss, f, labels)
    assert loss.shape == () and grad.shape == f.shape and grad.dtype == np.float32
    expected_loss, expected_grad = loop_metric_loss(f, labels)
    assert float(loss) == pytest.approx(expected_loss, rel=1e-4, abs=1e-6)
    assert_close(grad, expected_grad)
    library_loss, library_grad = metric_loss_arrays(f.astype(np.float64), labels)
    assert float(loss) == pytest.approx(float(library_loss), rel=1e-4, abs=1e-6)
    assert_close(grad, library_grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_metric_loss_single_region_images_contribute_nothing(backend):
    """An all-salient and an all-background image beside a normal one: they add 0 to the loss and
    get exactly 0 gradient, with no NaN from their empty region's 0/0 centroid."""
    f, labels = metric_inputs((3, 4, 10, 10), seed=9)
    labels[0] = 1
    labels[1] = 0
    loss, grad = run(backend, cuda.metric_loss, f, labels)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[:2], 0)
    expected_loss, expected_grad = loop_metric_loss(f, labels)
    assert float(loss) == pytest.approx(expected_loss, rel=1e-4)
    assert_close(grad, expected_grad)

    loss, grad = run(backend, cuda.metric_loss, f[:2], labels[:2])
    assert float(loss) == 0.0
    np.testing.assert_array_equal(grad, 0)


@needs_compiler
def test_metric_loss_closed_form():
    """Summed over an image the terms collapse to -P ||c_s - c_b||^2, so the loss is
    -(1/B) sum_n ||c_s - c_b||^2: a check independent of any per-pixel loop."""
    f, labels = metric_inputs((2, 6, 13, 9), seed=10)
    loss, _ = cuda.metric_loss(f, labels)
    expected = 0.0
    for n in range(2):
        features, salient = f[n].reshape(6, -1).astype(np.float64), labels[n].reshape(-1) == 1
        gap = features[:, salient].mean(axis=1) - features[:, ~salient].mean(axis=1)
        expected -= gap @ gap / 2
    assert float(loss) == pytest.approx(expected, rel=1e-4)


@needs_compiler
def test_metric_loss_gradient_is_the_derivative():
    """Central differences of the float64 per-pixel loss agree with the closed-form gradient the
    kernel computes (which moves the centroids too)."""
    f, labels = metric_inputs((2, 3, 4, 5), seed=11)
    _, grad = cuda.metric_loss(f, labels)
    f64, step = f.astype(np.float64), 1e-6
    for index in [(0, 0, 0, 0), (0, 2, 3, 4), (1, 1, 2, 1), (1, 0, 1, 3)]:
        plus, minus = f64.copy(), f64.copy()
        plus[index] += step
        minus[index] -= step
        numeric = (loop_metric_loss(plus, labels)[0] - loop_metric_loss(minus, labels)[0]) / (2 * step)
        assert grad[index] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_metric_loss_label_shape_error():
    with pytest.raises(ValueError, match="labels have shape"):
        cuda.metric_loss(np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 4, 5), np.int32))


# ------------------------------------------------------------------------------ the GPU wiring

@needs_compiler
def test_the_model_on_the_kernels_matches_the_model_on_numpy(monkeypatch):
    """What a GPU runs, minus CuPy: every convolution, transposed convolution and metric loss of a
    small MEnet goes through minimenet.cuda (the dispatch in conv.py and losses.py believes the
    NumPy arrays are on the GPU), so the kernels run in the emulator. Loss and every parameter's
    gradient agree with the NumPy path to float32 rounding."""
    from minimenet import conv as conv_dispatch
    from minimenet import losses as loss_dispatch
    from minimenet import manual_seed, Tensor
    from minimenet.model import MEnet, MEnetConfig

    def loss_and_gradients():
        manual_seed(0)
        model = MEnet(MEnetConfig(image_size=32, width=4, max_width=8, layers_per_block=2))
        rng = np.random.default_rng(14)
        images = Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
        masks = (rng.random((2, 32, 32)) < 0.3).astype(np.int32)
        loss, _ = model.loss(model(images), masks)
        loss.backward()
        return loss.item(), [p.grad.copy() for p in model.parameters()]

    expected_loss, expected_grads = loss_and_gradients()
    launched = []
    real_launch = emulator.launch
    monkeypatch.setattr(emulator, "launch", lambda file, kernel, *a: (launched.append(kernel), real_launch(file, kernel, *a)))
    monkeypatch.setattr(conv_dispatch, "is_gpu_array", lambda a: True)
    monkeypatch.setattr(loss_dispatch, "is_gpu_array", lambda a: True)
    loss, grads = loss_and_gradients()

    default = cuda_conv.variant().kernel
    assert {default("forward"), default("input_grad"), default("weight_grad"), "metric_terms_and_grad"} <= set(launched)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=5e-3 * np.abs(expected).max() + 1e-7)


# ------------------------------------------------------------------------------ the emulator itself

def test_signatures_are_read_from_the_sources():
    conv = sources.kernel_signatures("conv2d.cu")
    assert list(conv) == ["conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad"]
    tiled = sources.kernel_signatures("conv2d_tiled.cu")
    assert sorted(tiled) == sorted(f"conv2d_{op}_{v}" for op in ("forward", "input_grad", "weight_grad") for v in ("tiled", "tf32"))
    assert all(tiled[name].parameters == conv[name.rsplit("_", 1)[0]].parameters for name in tiled)
    forward = conv["conv2d_forward"].parameters
    assert [(p.c_type, p.dtype) for p in forward[:4]] == [
        ("const float*", "float32"), ("const float*", "float32"), ("float*", "float32"), ("int", "int32")]
    metric = sources.kernel_signatures("metric_loss.cu")
    assert list(metric) == ["metric_region_sums", "metric_terms_and_grad"]
    assert sources.int_constant("conv2d.cu", "CONV_TILE") == 16


def test_unsupported_parameter_type_is_reported():
    with pytest.raises(sources.KernelSourceError, match="double"):
        sources.parse_kernels('extern "C" __global__ void k(double* a) {}')


def test_wrong_argument_dtype_is_reported():
    f = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(cuda.KernelArgumentError, match="'labels' must be a C-contiguous int32"):
        cuda.launch("metric_loss.cu", "metric_region_sums", (1, 1, 1), (256, 1, 1),
                    (f, f, np.zeros(2, np.float32), np.zeros(1, np.int32), 1, 16))


@needs_compiler
def test_oversized_block_is_reported():
    f, labels = metric_inputs((1, 1, 4, 4), seed=12)
    with pytest.raises(cuda.EmulatorError, match="more than 1024 threads"):
        cuda.launch("metric_loss.cu", "metric_region_sums", (1, 1, 1), (2048, 1, 1),
                    (f, labels, np.zeros(2, np.float32), np.zeros(1, np.int32), 1, 16))


@needs_compiler
def test_build_is_cached_by_content_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMENET_CACHE", str(tmp_path))
    first = emulator.build("metric_loss.cu")
    assert first.parent == tmp_path / "emulator"
    assert emulator.build("metric_loss.cu") == first
    monkeypatch.setenv("MINIMENET_EMULATOR_CFLAGS", "-O0 -g")
    assert emulator.build("metric_loss.cu") != first


def test_missing_compiler_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMENET_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(cuda.EmulatorError, match="needs a C.. compiler with OpenMP"):
        emulator.build("conv2d.cu")
