"""The CUDA kernels of kernels/*.cu against NumPy, run in the CPU emulator (and on the GPU too
when one is usable).

Every kernel is compared with two references on random inputs: a plain loop over kernel taps
written here from the definition, and the library's NumPy ops (im2col in minimenet/conv.py,
minimenet/losses.metric_loss_arrays). The shapes leave partial tiles at every edge of every GEMM.
"""
import dataclasses
import os
import shutil
import types

import numpy as np
import pytest

from minimenet import backend
from minimenet import conv_cpu as numpy_conv
from minimenet import cuda
from minimenet.backend import device as selected_device
from minimenet.cuda import conv as cuda_conv
from minimenet.cuda import emulator, sources
from minimenet.cuda import metric as cuda_metric
from minimenet.conv_geometry import ConvGeometry
from minimenet.losses import METRIC_GRADIENTS, metric_loss_arrays

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
        if not isinstance(result, tuple):
            return result.get()
        fetched = [None if r is None else r.get() for r in result]
        return type(result)(*fetched) if hasattr(result, "_fields") else tuple(fetched)  # keep a NamedTuple's fields
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


def loop_metric_terms(y, labels):
    """Per image and pixel in float64: (terms (B, P), centroids {(n, r): (C,)}, counts {(n, r): int}),
    region r = 1 salient, 0 background; an empty region's centroid is 0."""
    y = y.astype(np.float64)
    b, c = y.shape[:2]
    terms = np.zeros((b, labels[0].size))
    centroids, counts = {}, {}
    for n in range(b):
        features, regions = y[n].reshape(c, -1), (labels[n].reshape(-1) == 1).astype(int)
        for r in (0, 1):
            counts[n, r] = int((regions == r).sum())
            centroids[n, r] = features[:, regions == r].sum(axis=1) / max(counts[n, r], 1)
        for i, r in enumerate(regions):
            terms[n, i] = np.sum((features[:, i] - centroids[n, r]) ** 2) - np.sum((features[:, i] - centroids[n, 1 - r]) ** 2)
    return terms, centroids, counts


def loop_hard_negative_mask(terms, labels):
    """Section III-B's 1:1 mining, per image: the smaller region (salient when counts are equal)
    whole, plus that many pixels of the other with the largest terms, the earlier pixel first on a
    tie; nothing in a single-region image."""
    mask = np.zeros(terms.shape, dtype=bool)
    for n in range(terms.shape[0]):
        salient = labels[n].reshape(-1) == 1
        minority = salient if salient.sum() <= (~salient).sum() else ~salient
        quota = int(minority.sum())
        if quota == 0:
            continue
        majority = sorted(np.flatnonzero(~minority), key=lambda i: (-terms[n, i], i))
        mask[n, minority] = True
        mask[n, majority[:quota]] = True
    return mask


def loop_metric_loss(y, labels, gradient):
    """Eq. 3 with mining, per image and pixel in float64, from the definitions in
    losses.metric_loss_arrays: (loss, grad, terms, mask)."""
    terms, centroids, counts = loop_metric_terms(y, labels)
    mask = loop_hard_negative_mask(terms, labels)
    y = y.astype(np.float64)
    b, c = y.shape[:2]
    pixels = labels[0].size
    loss, grad = 0.0, np.zeros(y.shape)
    for n in range(b):
        features, regions = y[n].reshape(c, -1), (labels[n].reshape(-1) == 1).astype(int)
        # How y_j moves its own centroid c_r (by 1 / n_r): the mined pixels of the other region
        # are pushed away from c_r (-||y_i - c_r||^2), those of its own pulled towards it.
        via_centroid = {r: np.zeros(c) for r in (0, 1)}
        for r in (0, 1):
            for i, q in enumerate(regions):
                if mask[n, i]:
                    via_centroid[r] += (1 if q != r else -1) * 2 * (features[:, i] - centroids[n, r]) / max(counts[n, r], 1)
        image_grad = grad[n].reshape(c, -1)
        for j, r in enumerate(regions):
            own, other, m = centroids[n, r], centroids[n, 1 - r], float(mask[n, j])
            loss += m * terms[n, j] / pixels
            if gradient == "authors":
                image_grad[:, j] = m * (other - own) / (c * pixels)
            else:
                image_grad[:, j] = (2 * m * (other - own) + via_centroid[r]) / pixels
    return loss, grad, terms, mask


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
    (2, 3, 9, 7, 5, (1, 1), (2, 2), (0, 0)),      # the down levels' 1x1 stride-2 projection shortcut
    (3, 5, 2, 2, 6, (2, 2), (1, 1), (0, 0)),      # the squeeze at S = 64: 2x2 valid -> 1x1
    (2, 6, 1, 1, 5, (1, 1), (1, 1), (0, 0)),      # the squeeze at S = 32: 1x1 on 1x1
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
@pytest.mark.parametrize("kernels", cuda_conv.KERNEL_VARIANTS)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_forward(case, kernels, backend):
    x, w, _, stride, padding = conv_inputs(case, seed=1)
    y = run(backend, cuda.conv2d_forward, x, w, stride, padding, kernels=kernels)
    assert y.dtype == np.float32
    magnitude = loop_forward(np.abs(x), np.abs(w), stride, padding)
    assert_conv_close(y, loop_forward(x, w, stride, padding), kernels, magnitude)
    assert_conv_close(y, numpy_conv.conv2d_forward(x.astype(np.float64), w.astype(np.float64), stride, padding), kernels, magnitude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.KERNEL_VARIANTS)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_input_grad(case, kernels, backend):
    x, w, dy, stride, padding = conv_inputs(case, seed=2)
    dx = run(backend, cuda.conv2d_input_grad, dy, w, x.shape, stride, padding, kernels=kernels)
    assert dx.shape == x.shape
    magnitude = loop_input_grad(np.abs(dy), np.abs(w), x.shape, stride, padding)
    assert_conv_close(dx, loop_input_grad(dy, w, x.shape, stride, padding), kernels, magnitude)
    assert_conv_close(dx, numpy_conv.conv2d_input_grad(dy.astype(np.float64), w.astype(np.float64), x.shape, stride, padding), kernels, magnitude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.KERNEL_VARIANTS)
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


@pytest.mark.parametrize("kernels", cuda_conv.KERNEL_VARIANTS)
def test_cases_cover_split_k_and_partial_tiles(kernels):
    """The case list really exercises what it claims for every variant: several K slices, and
    output channels filling one tile and part of the next."""
    geometry = cuda_conv.variant(kernels)
    slices = [cuda_conv.weight_grad_slices(conv_inputs(c, 0)[1].shape, conv_inputs(c, 0)[2].shape, kernels) for c in CONV_CASES]
    assert max(slices) > 1 and min(slices) == 1
    assert any(c[4] % geometry.tile_m and c[4] > geometry.tile_m for c in CONV_CASES)


@pytest.mark.parametrize("file_name", ["conv2d.cu", "conv2d_tiled.cu", "metric_loss.cu"])
def test_no_kernel_adds_with_atomics(file_name):
    """The emulator runs blocks in one order, so the repeat test below can only fail on a GPU;
    this is its CPU half: atomicAdd, whose order varies on a GPU, appears in no kernel's code."""
    code = "\n".join(line.split("//")[0] for line in sources.read_source(file_name).splitlines())
    assert "atomicAdd" not in code


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.KERNEL_VARIANTS)
def test_split_k_and_the_metric_loss_give_the_same_bits_every_run(kernels, backend):
    """No float atomicAdd: the weight gradient's K slices and the metric loss's pixel blocks are
    added in a fixed order, so repeated runs agree bit for bit (a resumed training then matches
    an uninterrupted one exactly, on the GPU too)."""
    case = max(CONV_CASES, key=lambda c: cuda_conv.weight_grad_slices(conv_inputs(c, 0)[1].shape, conv_inputs(c, 0)[2].shape, kernels))
    x, w, dy, stride, padding = conv_inputs(case, 3)
    assert cuda_conv.weight_grad_slices(w.shape, dy.shape, kernels) > 1
    first, *again = [run(backend, cuda.conv2d_weight_grad, x, dy, w.shape, stride, padding, kernels=kernels) for _ in range(3)]
    for result in again:
        np.testing.assert_array_equal(result, first)
    f, labels = metric_inputs(max(METRIC_SHAPES.values(), key=lambda shape: shape[2] * shape[3]), seed=5)
    first, *again = [run(backend, cuda_metric.metric_loss_stages, f, labels, "exact") for _ in range(3)]
    for stages in again:
        for name in ("loss", "grad", "sums", "mined_sums"):
            np.testing.assert_array_equal(getattr(stages, name), getattr(first, name), err_msg=name)


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
    (2, 20, 1, 1, 17, (7, 7), (1, 1), (0, 0), (0, 0)),  # the expand at S = 224: 1x1 -> 7x7
    (3, 6, 1, 1, 5, (2, 2), (1, 1), (0, 0), (0, 0)),    # the expand at S = 64: 1x1 -> 2x2
    (2, 5, 3, 4, 3, (2, 2), (2, 2), (0, 0), (0, 0)),    # the up levels' 2x2 stride-2 shortcut
]

# What MEnet (minimenet/model.py) convolves with, each as (kernel, stride, padding, output 1x1?):
# the case lists must run every kernel on each; k = S / 32 for the squeeze and expand.
NETWORK_CONVOLUTIONS = [((3, 3), (1, 1), (1, 1), False), ((3, 3), (2, 2), (1, 1), False),
                        ((1, 1), (2, 2), (0, 0), False), ((2, 2), (1, 1), (0, 0), True),
                        ((7, 7), (1, 1), (0, 0), True), ((1, 1), (1, 1), (0, 0), True)]
NETWORK_TRANSPOSED = [((2, 2), (1, 1), (0, 0), True), ((7, 7), (1, 1), (0, 0), True),
                      ((4, 4), (2, 2), (1, 1), False), ((2, 2), (2, 2), (0, 0), False)]  # True: input 1x1


def test_cases_cover_the_networks_layers():
    conv = {(k, s, p, (h + 2 * p[0] - k[0]) // s[0] + 1 == 1 and (w + 2 * p[1] - k[1]) // s[1] + 1 == 1)
            for _, _, h, w, _, k, s, p in CONV_CASES}
    transposed = {(k, s, p, (h, w) == (1, 1)) for _, _, h, w, _, k, s, p, _ in TRANSPOSE_CASES}
    assert set(NETWORK_CONVOLUTIONS) <= conv, set(NETWORK_CONVOLUTIONS) - conv
    assert set(NETWORK_TRANSPOSED) <= transposed, set(NETWORK_TRANSPOSED) - transposed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernels", cuda_conv.KERNEL_VARIANTS)
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


def test_the_geometry_is_the_kernels_argument_list():
    """ConvGeometry's fields are the 13 ints every conv kernel takes after its arrays, by name and
    in order, so kernel_arguments() passes each size to its own parameter."""
    names = [field.name for field in dataclasses.fields(ConvGeometry)]
    for file_name in ("conv2d.cu", "conv2d_tiled.cu"):
        for signature in sources.kernel_signatures(file_name).values():
            assert [p.name for p in signature.parameters[3:]] == names, signature.name
    geometry = ConvGeometry.of((2, 3, 9, 8), (4, 3, 3, 2), (2, 1), (1, 0), "test")
    assert geometry.kernel_arguments() == (2, 3, 9, 8, 4, 3, 2, 2, 1, 1, 0, 5, 7)


def test_conv_shape_errors_name_the_problem():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="3 channels but the weight"):
        cuda.conv2d_forward(x, np.zeros((2, 4, 3, 3), np.float32), 1, 0)
    with pytest.raises(ValueError, match="does not fit"):
        cuda.conv2d_forward(x, np.zeros((2, 3, 7, 7), np.float32), 1, 0)
    with pytest.raises(ValueError, match="dy has shape"):
        cuda.conv2d_input_grad(np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 3, 3, 3), np.float32), x.shape, 1, 0)


# ------------------------------------------------------------------------------ metric loss

# (batch, channels, height, width): P = H W below, at and above one 256-pixel block, with
# partial blocks, and 16 channels as the feature head has.
METRIC_SHAPES = {"tiny": (1, 2, 2, 3), "one_block": (3, 5, 9, 11), "several_blocks": (2, 7, 20, 17),
                 "exact_block": (2, 3, 16, 16), "feature_head": (1, 16, 23, 29)}


def metric_inputs(shape, seed, salient_fraction=0.4):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(shape)
    f /= np.linalg.norm(f, axis=1, keepdims=True)  # the loss is applied to L2-normalised features
    labels = (rng.random((shape[0], *shape[2:])) < salient_fraction).astype(np.int32)
    return f.astype(np.float32), labels


def mining_margin(terms, mask, labels):
    """Per image, the gap between the smallest mined and the largest unmined majority term
    (inf where nothing is left unmined): float32 terms mine the same pixels as float64 ones when
    this is far above float32 rounding."""
    margin = np.inf
    for n in range(terms.shape[0]):
        if mask[n].all() or not mask[n].any():
            continue
        salient = labels[n].reshape(-1) == 1
        majority = ~salient if salient.sum() <= (~salient).sum() else salient
        margin = min(margin, terms[n, majority & mask[n]].min() - terms[n, majority & ~mask[n]].max())
    return margin


def check_metric_stages(stages, y, labels, gradient):
    """Every stage the kernels computed against the loop reference, and loss and gradient
    against losses.metric_loss_arrays too (both float64)."""
    loss, grad, terms, mask = loop_metric_loss(y, labels, gradient)
    _, centroids, counts = loop_metric_terms(y, labels)
    assert stages.loss.shape == () and stages.loss.dtype == np.float32
    assert stages.grad.shape == y.shape and stages.grad.dtype == np.float32
    b, c = y.shape[:2]
    np.testing.assert_array_equal(stages.counts, [[counts[n, 0], counts[n, 1]] for n in range(b)])
    assert_close(stages.sums, [[centroids[n, r] * max(counts[n, r], 1) for r in (0, 1)] for n in range(b)])
    assert_close(stages.terms, terms)
    np.testing.assert_array_equal(stages.mask, mask)
    if gradient == "exact":
        mined = mask[:, None, :] * y.reshape(b, c, -1).astype(np.float64)
        salient = (labels.reshape(b, 1, -1) == 1)
        assert_close(stages.mined_sums, np.stack([(mined * ~salient).sum(axis=2), (mined * salient).sum(axis=2)], axis=1))
        np.testing.assert_array_equal(stages.mined_counts, np.stack([(mask * ~salient[:, 0]).sum(1), (mask * salient[:, 0]).sum(1)], axis=1))
    else:
        assert stages.mined_sums is None and stages.mined_counts is None
    # The loss is a sum of terms of either sign: its error is relative to their absolute sum.
    scale = max(1e-3, float((np.abs(terms) * mask).sum()) / labels[0].size)
    assert float(stages.loss) == pytest.approx(loss, rel=0, abs=1e-5 * scale)
    assert_close(stages.grad, grad)
    library_loss, library_grad = metric_loss_arrays(y.astype(np.float64), labels, gradient)
    assert float(stages.loss) == pytest.approx(float(library_loss), rel=0, abs=1e-5 * scale)
    assert_close(stages.grad, library_grad)
    return loss, grad, terms, mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gradient", METRIC_GRADIENTS)
@pytest.mark.parametrize("shape", METRIC_SHAPES.values(), ids=METRIC_SHAPES.keys())
def test_metric_loss_matches_references(shape, gradient, backend):
    f, labels = metric_inputs(shape, seed=8)
    labels[0].flat[:2] = (0, 1)  # every image has both regions
    stages = run(backend, cuda_metric.metric_loss_stages, f, labels, gradient)
    _, grad, terms, mask = check_metric_stages(stages, f, labels, gradient)
    assert mining_margin(terms, mask, labels) > 1e-6, "near-tie at the mining boundary: pick another seed"
    assert mask.any() and not mask.all() and np.abs(grad).max() > 0  # the case mines, and has gradients


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gradient", METRIC_GRADIENTS)
def test_metric_loss_single_region_images_contribute_nothing(gradient, backend):
    """An all-salient and an all-background image beside normal ones: nothing of them is mined,
    so they add 0 to the loss and get exactly 0 gradient, with no NaN from the empty region
    (whose centroid counts as 0: the terms still come out, as the reference defines them)."""
    f, labels = metric_inputs((4, 4, 10, 30), seed=9)
    labels[0] = 1
    labels[1] = 0
    stages = run(backend, cuda_metric.metric_loss_stages, f, labels, gradient)
    assert np.isfinite(stages.loss) and np.isfinite(stages.grad).all()
    np.testing.assert_array_equal(stages.grad[:2], 0)
    np.testing.assert_array_equal(stages.mask[:2], 0)
    check_metric_stages(stages, f, labels, gradient)
    assert np.abs(stages.grad[2:]).max() > 0 and stages.mask[2:].any()

    loss, grad = run(backend, cuda.metric_loss, f[:2], labels[:2], gradient)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gradient", METRIC_GRADIENTS)
def test_metric_loss_balanced_images_mine_every_pixel(gradient, backend):
    """With equal counts every pixel is mined, and the terms of an image sum to
    -P ||c_s - c_b||^2: the loss is -sum_n ||c_s - c_b||^2, and (differentiating that, each
    centroid moving by 1 / (P / 2)) the exact gradient is 4 (c_other - c_own) / P, the authors'
    (c_other - c_own) / (C P). A check independent of any per-pixel loop."""
    b, c, h, w = 3, 6, 13, 22  # P = 286: one block and part of another
    f, _ = metric_inputs((b, c, h, w), seed=10)
    rng = np.random.default_rng(10)
    labels = np.stack([rng.permutation(np.arange(h * w) % 2) for _ in range(b)]).reshape(b, h, w).astype(np.int32)
    stages = run(backend, cuda_metric.metric_loss_stages, f, labels, gradient)
    np.testing.assert_array_equal(stages.mask, 1)
    check_metric_stages(stages, f, labels, gradient)
    expected_loss, expected_grad = 0.0, np.zeros(f.shape)
    for n in range(b):
        features, salient = f[n].reshape(c, -1).astype(np.float64), labels[n].reshape(-1) == 1
        gap = features[:, salient].mean(axis=1) - features[:, ~salient].mean(axis=1)  # c_s - c_b
        expected_loss -= gap @ gap
        factor = 4 / (h * w) if gradient == "exact" else 1 / (c * h * w)
        expected_grad[n].reshape(c, -1)[:] = np.where(salient, -gap[:, None], gap[:, None]) * factor
    assert float(stages.loss) == pytest.approx(expected_loss, rel=1e-5)
    assert_close(stages.grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_metric_loss_ties_break_by_pixel_order(backend):
    """Background features drawn from two unit vectors, so its terms come in two groups of
    exactly equal values, and the mining quota (the 100 salient pixels) ends inside the larger
    group whichever group ranks first: the mined pixels there must be its first ones in pixel
    order (a stable sort), across block boundaries."""
    b, c, h, w = 2, 3, 17, 19  # P = 323
    rng = np.random.default_rng(15)
    f, labels = np.zeros((b, c, h * w), np.float32), np.zeros((b, h * w), np.int32)
    for n in range(b):
        prototypes = rng.standard_normal((2, c))
        prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
        order = rng.permutation(h * w)
        labels[n, order[:100]] = 1
        f[n][:, order[100:250]] = prototypes[0][:, None]  # 150 pixels, more than the quota
        f[n][:, order[250:]] = prototypes[1][:, None]     # 73, fewer
        salient = rng.standard_normal((c, 100))
        f[n][:, order[:100]] = salient / np.linalg.norm(salient, axis=0)
    f, labels = f.reshape(b, c, h, w), labels.reshape(b, h, w)
    stages = run(backend, cuda_metric.metric_loss_stages, f, labels, "exact")
    _, _, terms, mask = check_metric_stages(stages, f, labels, "exact")
    for n in range(b):
        background = labels[n].reshape(-1) == 0
        assert mask[n, background].sum() == 100
        tied = background & (terms[n] == terms[n, background & ~mask[n]].max())  # the group the quota ends in
        assert mask[n, tied].any() and not mask[n, tied].all()
        assert len(set(stages.terms[n, tied].tolist())) == 1  # exact ties in float32 too
        chosen = np.flatnonzero(tied & mask[n])
        assert chosen.max() < np.flatnonzero(tied & ~mask[n]).min()  # the first ones in pixel order


@needs_compiler
def test_metric_exact_gradient_is_the_derivative():
    """Central differences of the float64 loss agree with the kernels' exact gradient, at
    minority pixels, mined majority pixels and unmined majority pixels (these move the loss
    only through the centroids); the mask does not change within the small step."""
    f, labels = metric_inputs((2, 3, 6, 7), seed=11)
    stages = cuda_metric.metric_loss_stages(f, labels, "exact")
    f64, step = f.astype(np.float64), 1e-6
    mask = stages.mask.reshape(labels.shape).astype(bool)
    salient = labels == 1
    kinds = {"mined_salient": mask & salient, "mined_background": mask & ~salient, "unmined": ~mask}
    for kind, where in kinds.items():
        for n, i, j in np.argwhere(where)[:2]:
            for channel in range(3):
                index = (n, channel, i, j)
                plus, minus = f64.copy(), f64.copy()
                plus[index] += step
                minus[index] -= step
                numeric = (metric_loss_arrays(plus, labels, "exact")[0] - metric_loss_arrays(minus, labels, "exact")[0]) / (2 * step)
                assert abs(numeric) > 1e-5, kind
                assert stages.grad[index] == pytest.approx(numeric, rel=1e-3, abs=1e-6), (kind, index)


def test_metric_loss_argument_errors():
    f = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="labels must have shape"):
        cuda.metric_loss(f, np.zeros((2, 4, 5), np.int32))
    with pytest.raises(ValueError, match="gradient must be one of"):
        cuda.metric_loss(f, np.zeros((2, 4, 4), np.int32), "approximate")
    with pytest.raises(ValueError, match=r"y must have shape \(B, C, H, W\)"):
        cuda.metric_loss(f[0], np.zeros((3, 4, 4), np.int32))
    with pytest.raises(ValueError, match="is empty"):
        cuda.metric_loss(f[:, :, :0], np.zeros((2, 0, 4), np.int32))


@needs_compiler
def ops_on_the_emulated_kernels(monkeypatch):
    """Make the ops believe NumPy arrays are on the GPU, so that they call minimenet.cuda and the
    kernels run in the emulator; returns the list the names of the launched kernels go into."""
    launched = []
    real_launch = emulator.launch
    monkeypatch.setattr(emulator, "launch", lambda file, kernel, *a: (launched.append(kernel), real_launch(file, kernel, *a)))
    monkeypatch.setattr(backend, "runs_on_cuda_kernels", lambda a: True)
    return launched


@pytest.mark.parametrize("gradient", METRIC_GRADIENTS)
def test_losses_metric_loss_runs_the_kernels(gradient, monkeypatch):
    """losses.metric_loss on a "GPU" array (NumPy, the dispatch fooled) goes through
    cuda.metric_loss, whose (0-d loss, grad) it turns into the same value and the same gradient
    through the normalisation as its NumPy path."""
    from minimenet import losses as loss_dispatch
    from minimenet import Tensor

    rng = np.random.default_rng(16)
    features = rng.standard_normal((2, 5, 9, 8)).astype(np.float32)
    labels = (rng.random((2, 9, 8)) < 0.3).astype(np.int32)

    def value_and_gradient():
        x = Tensor(features.copy(), requires_grad=True)
        loss = loss_dispatch.metric_loss(x, labels, gradient)
        loss.backward()
        return loss.item(), x.grad

    expected_loss, expected_grad = value_and_gradient()
    launched = ops_on_the_emulated_kernels(monkeypatch)
    loss, grad = value_and_gradient()
    assert launched == ["metric_region_sums", "metric_terms"] + ["metric_region_sums"] * (gradient == "exact") + ["metric_loss_and_grad"]
    assert loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-7)
    assert_close(grad, expected_grad)

    y = features / np.linalg.norm(features, axis=1, keepdims=True)
    public, stages = cuda.metric_loss(y, labels, gradient), cuda_metric.metric_loss_stages(y, labels, gradient)
    np.testing.assert_array_equal(public[0], stages.loss)
    np.testing.assert_array_equal(public[1], stages.grad)


# ------------------------------------------------------------------------------ the GPU wiring

@needs_compiler
@pytest.mark.emulator  # its model is built on NumPy arrays, so on a GPU backend it has nothing to check
def test_the_model_on_the_kernels_matches_the_model_on_numpy(monkeypatch):
    """What a GPU runs, minus CuPy: every convolution, transposed convolution and metric loss of a
    small MEnet goes through minimenet.cuda (the dispatch in conv.py and losses.py believes the
    NumPy arrays are on the GPU), so the kernels run in the emulator. The loss agrees with the
    NumPy path to float32 rounding, and so do the gradients, but for what a ReLU decides: a
    value within rounding of zero can fall on either side in the two paths, and one such value
    moves the gradient of every layer below it (this small model's gradients jump as much when
    its float64 input moves by 1e-6 of itself). Measured on seeds 10-19: 2e-5 to 1.3e-4 of the
    whole gradient's norm, and 1.0-1.5 % on the one or two seeds where a ReLU went the other
    way (as often for the three separate ops as for the fused BRC); no parameter's gradient then
    moved by more than 23 % of its norm. A wrong kernel or wiring changes a layer's gradients by
    about 100 %."""
    from minimenet import manual_seed, Tensor
    from minimenet.model import MEnet, MEnetConfig

    def loss_and_gradients():
        manual_seed(0)
        model = MEnet(MEnetConfig(image_size=32, width=2, metric_gradient="exact"))
        rng = np.random.default_rng(14)
        # Batch 4: at batch 2 the 1 x 1 deepest level's batch norms see 2 values per channel, and
        # their gradient turns float32 rounding (summation order) into differences of 0.5 %.
        images = Tensor(rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
        masks = (rng.random((4, 32, 32)) < 0.3).astype(np.int32)
        loss, _ = model.loss(model(images), masks)
        loss.backward()
        return loss.item(), [p.grad.copy() for p in model.parameters()]

    expected_loss, expected_grads = loss_and_gradients()
    launched = ops_on_the_emulated_kernels(monkeypatch)
    loss, grads = loss_and_gradients()

    default = cuda_conv.variant().kernel
    assert {default("forward"), default("input_grad"), default("weight_grad"), "metric_loss_and_grad"} <= set(launched)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    whole = np.sqrt(sum(np.sum((got - expected) ** 2) for got, expected in zip(grads, expected_grads))
                    / sum(np.sum(expected ** 2) for expected in expected_grads))
    assert whole < 3e-2
    # A convolution bias right before a batch norm has a gradient of exactly 0 up to rounding
    # noise, whose size follows the network's gradients, not its own: hence the floor.
    floor = 2e-6 * max(np.abs(g).max() for g in expected_grads)
    for got, expected in zip(grads, expected_grads):
        assert np.linalg.norm(got - expected) <= 0.4 * np.linalg.norm(expected) + floor * np.sqrt(expected.size)


@needs_compiler
@pytest.mark.emulator
@pytest.mark.parametrize("transposed,stride", [(False, 1), (False, 2), (True, 2)], ids=["BRC 3x3/1", "BRC 3x3/2", "BRD 4x4/2"])
def test_training_brc_and_brd_on_the_kernels_match_numpy(transposed, stride, monkeypatch):
    """The training BRC and BRD as a GPU runs them: relu(x scale + shift) written out for the
    forward and the weight gradient's kernels, the batch norm's statistics and backward as
    array code. Output and every gradient against the NumPy path, to float32 rounding."""
    from minimenet import Tensor
    from minimenet.fused import batch_norm_relu_conv2d_training, batch_norm_relu_conv_transpose2d_training

    rng = np.random.default_rng(21)
    x = Tensor((0.5 + rng.standard_normal((2, 4, 8, 8))).astype(np.float32), requires_grad=True)
    gamma = Tensor(rng.uniform(0.5, 2, 4).astype(np.float32), requires_grad=True)
    beta = Tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 4, 4) if transposed else (3, 4, 3, 3)).astype(np.float32), requires_grad=True)
    leaves = [x, gamma, beta, w]

    def output_and_gradients():
        for t in leaves:
            t.grad = None
        statistics = (np.zeros(4, np.float32), np.ones(4, np.float32))
        if transposed:
            y = batch_norm_relu_conv_transpose2d_training(x, gamma, beta, *statistics, w, stride, 1)
        else:
            y = batch_norm_relu_conv2d_training(x, gamma, beta, *statistics, w, None, stride, 1)
        y.backward(np.random.default_rng(22).standard_normal(y.shape).astype(np.float32))
        return [y.data] + [t.grad for t in leaves] + list(statistics)

    expected = output_and_gradients()
    launched = ops_on_the_emulated_kernels(monkeypatch)
    got = output_and_gradients()
    default = cuda_conv.variant().kernel
    assert {default("forward"), default("input_grad"), default("weight_grad")} <= set(launched)
    for value, want in zip(got, expected):
        assert_close(value, want)


@needs_compiler
@pytest.mark.emulator
def test_inference_on_the_kernels_matches_inference_on_numpy(monkeypatch):
    """Eval mode without a graph, as a GPU runs it: each BRC is one batch_norm_relu_conv2d, whose
    GPU path applies the batch norm and ReLU to x before the forward kernel; the output agrees
    with the NumPy path to float32 rounding."""
    from minimenet import manual_seed, no_grad, Tensor
    from minimenet.model import MEnet, MEnetConfig

    manual_seed(0)
    model = MEnet(MEnetConfig(image_size=32, width=2))
    images = Tensor(np.random.default_rng(15).uniform(0, 255, (2, 3, 32, 32)).astype(np.float32))
    model(images)  # training mode: the running statistics move
    model.eval()
    with no_grad():
        expected = model(images)
        launched = ops_on_the_emulated_kernels(monkeypatch)
        out = model(images)
    assert cuda_conv.variant().kernel("forward") in launched
    for got, want in ((out.logits, expected.logits), (out.features, expected.features)):
        np.testing.assert_allclose(got.data, want.data, rtol=0, atol=1e-4 * np.abs(want.data).max())


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
    assert list(metric) == ["metric_region_sums", "metric_terms", "metric_loss_and_grad"]
    assert [(p.c_type, p.dtype) for p in metric["metric_region_sums"].parameters[:3]] == [
        ("const float*", "float32"), ("const int*", "int32"), ("const int*", "int32")]
    assert sources.int_constant("metric_loss.cu", "METRIC_BLOCK") == 256
    assert sources.int_constant("conv2d.cu", "CONV_TILE") == 16


def test_unsupported_parameter_type_is_reported():
    with pytest.raises(sources.KernelSourceError, match="double"):
        sources.parse_kernels('extern "C" __global__ void k(double* a) {}')


def test_wrong_argument_dtype_is_reported():
    f = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(cuda.KernelArgumentError, match="'labels' must be a C-contiguous int32"):
        cuda.launch("metric_loss.cu", "metric_region_sums", (1, 1, 1), (256, 1, 1),
                    (f, f, np.ones(16, np.int32), np.zeros(2, np.float32), np.zeros(2, np.int32), 1, 16))


@needs_compiler
def test_oversized_block_is_reported():
    f, labels = metric_inputs((1, 1, 4, 4), seed=12)
    with pytest.raises(cuda.EmulatorError, match="more than 1024 threads"):
        cuda.launch("metric_loss.cu", "metric_region_sums", (1, 1, 1), (2048, 1, 1),
                    (f, labels, np.ones(16, np.int32), np.zeros(2, np.float32), np.zeros(2, np.int32), 1, 16))


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
