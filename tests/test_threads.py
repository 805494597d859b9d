"""minimenet.threads: tasks on worker threads with OpenBLAS at one thread meanwhile, and the
convolutions that use them give the loops' results with any number of workers."""
import threading

import numpy as np
import pytest

from minimenet import conv_cpu, im2col, threads
from minimenet.conv_geometry import ConvGeometry

from test_conv_cpu import CASES, case_arrays, forward_loop, input_grad_loop, set_budget, weight_grad_loop


class FakeOpenBLAS:
    """Stands in for OpenBLAS's get/set_num_threads, recording every change."""

    def __init__(self, count):
        self.count, self.history = count, []

    def get(self):
        return self.count

    def set(self, count):
        self.count = count
        self.history.append(count)


@pytest.fixture
def two_workers(monkeypatch):
    blas = FakeOpenBLAS(2)
    monkeypatch.setattr(threads, "_openblas", (blas.get, blas.set))
    monkeypatch.setattr(threads, "_pools", {})
    monkeypatch.setattr(threads, "MIN_SPLIT_MULTIPLY_ADDS", 1)  # the tests' arrays are small
    return blas


def test_tasks_run_on_the_workers_with_blas_at_one_thread_and_results_in_order(two_workers):
    seen = []

    def task(item):
        seen.append((threading.current_thread().name, two_workers.count))
        return item * item
    assert threads.parallel(task, range(6)) == [0, 1, 4, 9, 16, 25]
    assert all(name.startswith("minimenet-worker") and blas == 1 for name, blas in seen)
    assert two_workers.history == [1, 2]  # one thread during the tasks, then restored


def test_a_single_task_and_one_worker_stay_on_the_calling_thread(two_workers, monkeypatch):
    caller = threading.current_thread().name
    assert threads.parallel(lambda _: threading.current_thread().name, [0]) == [caller]
    two_workers.count = 1
    assert threads.parallel(lambda _: threading.current_thread().name, [0, 1]) == [caller, caller]
    assert two_workers.history == []


def test_tasks_inside_a_task_run_in_place(two_workers):
    def outer(item):
        return threads.parallel(lambda inner: (threading.current_thread().name, item, inner), range(2))
    for inner in threads.parallel(outer, range(2)):
        assert inner[0][0] == inner[1][0]  # both inner tasks on the outer task's thread
    assert two_workers.history == [1, 2]


def test_blas_threads_are_restored_when_a_task_fails(two_workers):
    def task(item):
        raise ValueError(f"task {item}")
    with pytest.raises(ValueError, match="task"):
        threads.parallel(task, range(3))
    assert two_workers.count == 2


def test_no_workers_without_a_blas_whose_threads_can_be_set():
    """With the machine's real OpenBLAS, workers() is its thread count; without one, a single worker."""
    if threads._openblas is None:
        assert threads.workers() == 1
    else:
        assert threads.workers() == threads._openblas[0]() >= 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_convolutions_on_two_workers_match_the_loops(case, dtype, two_workers, monkeypatch):
    set_budget(monkeypatch, 1)  # one-row bands: many blocks to share out
    check_the_primitives_against_the_loops(*case_arrays(case, dtype))
    assert 1 in two_workers.history


def check_the_primitives_against_the_loops(x, w, dy, stride, padding):
    tolerance = dict(rtol=1e-10, atol=1e-10) if x.dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding), forward_loop(x, w, stride, padding), **tolerance)
    for method in ("phases", "col2im"):
        dx = conv_cpu.conv2d_input_grad(dy, w, x.shape, stride, padding, method=method)
        np.testing.assert_allclose(dx, input_grad_loop(dy, w, x.shape, stride, padding), **tolerance)
    dw = conv_cpu.conv2d_weight_grad(x, dy, w.shape, stride, padding)
    np.testing.assert_allclose(dw, weight_grad_loop(x, dy, w.shape, stride, padding), **tolerance)


@pytest.mark.parametrize("images_a_block", [1, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] % 2 and c[0] > 1], ids=str)
def test_whole_images_and_the_bands_of_the_one_left_over_on_two_workers_match_the_loops(case, dtype, images_a_block, two_workers,
                                                                                        monkeypatch):
    """An odd batch in blocks of whole images: each worker takes an even share of the images and
    a band of the image left over (``im2col.blocks``); every primitive still gives the loops'
    result."""
    x, w, dy, stride, padding = case_arrays(case, dtype)
    geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, "test")
    per_image = geometry.in_channels * geometry.kernel_height * geometry.kernel_width * geometry.out_width * geometry.out_height
    monkeypatch.setattr(im2col, "BAND_BUDGET", per_image)
    monkeypatch.setattr(im2col, "COLUMNS_BUDGET", images_a_block * per_image)
    assert any(n == 1 and rows < geometry.out_height for _, n, _, rows in im2col.blocks(geometry, shares=2))
    check_the_primitives_against_the_loops(x, w, dy, stride, padding)
    assert 1 in two_workers.history


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_block_of_the_whole_batch_shares_out_its_copies_by_channels(case, two_workers, monkeypatch):
    """One block for the batch (the budgets hold it all): its im2col copies, with and without
    the inference BRC's batch norm and ReLU, run by channels on the two workers."""
    x, w, _, stride, padding = case_arrays(case, "float64")
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 1)
    shares = []
    original = threads.channel_slices
    monkeypatch.setattr(threads, "channel_slices", lambda out, axis=1: shares.append((axis, len(original(out, axis)))) or original(out, axis))
    scale, shift = np.linspace(0.5, 2, x.shape[1]), np.linspace(-0.3, 0.2, x.shape[1])
    np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding), forward_loop(x, w, stride, padding), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding, None, (scale, shift)),
                               forward_loop(np.maximum(x * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0), w, stride, padding),
                               rtol=1e-10, atol=1e-10)
    _, ci, _, _, co, kernel, _, _ = case
    if ci > conv_cpu.FORWARD_BY_COL2IM * co:  # by the adjoint's col2im: its copy of x (with the affine the
        scatter = (0, min(co, 2))             # second time), its scatter by channels of y (one channel: one share)
        assert shares == [(1, 2), scatter] * 2
    elif kernel == (1, 1):  # no padding: copied from x itself, with and without the affine
        assert shares == [(1, 2), (1, 2)]
    else:  # into the padded rows (axis 1 of x), then into the columns (axis 0)
        assert (1, 2) in shares and (0, 2) in shares


def test_copy_rows_shares_out_channels(two_workers, monkeypatch, rng):
    """The copies of im2col, plain and with the inference BRC's relu(x scale + shift), by groups
    of channels on two workers; all on the calling thread in a block run ``on_this_thread``."""
    from minimenet import im2col
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 1)
    source = rng.standard_normal((2, 5, 3, 4))
    scale, shift = np.linspace(0.5, 2, 5), np.linspace(-1, 1, 5)
    target = np.empty((5, 2, 3, 4)).transpose(1, 0, 2, 3)
    expected = np.maximum(source * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0)
    assert im2col.copy_rows(source, target) is target
    np.testing.assert_array_equal(target, source)
    callers = []
    original = im2col.relu_affine
    monkeypatch.setattr(im2col, "relu_affine", lambda *args, **kwargs: callers.append(threading.current_thread().name)
                        or original(*args, **kwargs))
    np.testing.assert_array_equal(im2col.copy_rows(source, np.empty_like(source), (scale, shift)), expected)
    assert len(callers) == 2 and all(name.startswith("minimenet-worker") for name in callers)  # two groups of channels
    callers.clear()
    with threads.on_this_thread():
        np.testing.assert_array_equal(im2col.copy_rows(source, np.empty_like(source), (scale, shift)), expected)
        assert two_workers.count == 1  # OpenBLAS at one thread meanwhile
    assert callers == [threading.current_thread().name] and two_workers.count == 2


def test_a_convolution_too_small_to_share_out_keeps_its_copies_on_the_calling_thread(two_workers, monkeypatch):
    x, w, _, stride, padding = case_arrays(CASES[0], "float64")
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 1)
    shares = []
    original = threads.channel_slices
    monkeypatch.setattr(threads, "channel_slices", lambda out, axis=1: shares.append(len(original(out, axis))) or original(out, axis))
    monkeypatch.setattr(threads, "MIN_SPLIT_MULTIPLY_ADDS", 10**9)
    np.testing.assert_allclose(conv_cpu.conv2d_forward(x, w, stride, padding), forward_loop(x, w, stride, padding), rtol=1e-10)
    assert shares and set(shares) == {1} and two_workers.history == [1, 2]  # OpenBLAS at one thread for the while
    shares.clear()
    monkeypatch.setattr(threads, "MIN_SPLIT_MULTIPLY_ADDS", 1)
    conv_cpu.conv2d_forward(x, w, stride, padding)
    assert 2 in shares


def test_the_weight_gradient_on_two_workers_is_the_same_bits_every_time(two_workers, monkeypatch):
    x, _, dy, stride, padding = case_arrays(CASES[0], "float32")
    set_budget(monkeypatch, 1)
    first = conv_cpu.conv2d_weight_grad(x, dy, (dy.shape[1], x.shape[1], 3, 3), stride, padding)
    for _ in range(5):
        again = conv_cpu.conv2d_weight_grad(x, dy, (dy.shape[1], x.shape[1], 3, 3), stride, padding)
        np.testing.assert_array_equal(again, first)


def test_matmul_shares_out_the_longer_side_on_the_calling_thread_and_is_one_product_on_a_worker(two_workers, monkeypatch, rng):
    """A tall product is split by a's rows, a wide one by b's columns."""
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 3))
    products = []
    original = np.matmul

    def counted(x, y, out):
        products.append((threading.current_thread().name, x.shape[0], y.shape[1]))
        return original(x, y, out=out)
    monkeypatch.setattr(threads.numpy, "matmul", counted)
    out = threads.matmul(a, b, np.empty((7, 3)))
    np.testing.assert_allclose(out, a @ b, rtol=1e-14)
    assert sorted(shape for _, *shape in products) == [[3, 3], [4, 3]] and all(n.startswith("minimenet-worker") for n, *_ in products)
    products.clear()
    out = threads.matmul(b.T, a.T, np.empty((3, 7)))
    np.testing.assert_allclose(out, b.T @ a.T, rtol=1e-14)
    assert sorted(shape for _, *shape in products) == [[3, 3], [3, 4]]
    products.clear()
    threads.parallel(lambda _: threads.matmul(a, b, np.empty((7, 3))), range(2))
    assert sorted(shape for _, *shape in products) == [[7, 3], [7, 3]]


def test_apply_shares_out_channels_and_broadcasts_the_rest(two_workers, monkeypatch, rng):
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 1)
    x, bias = rng.standard_normal((3, 5, 4, 2)), rng.standard_normal((1, 5, 1, 1))
    assert threads.channel_slices(x) == [slice(0, 3), slice(3, 6)]
    np.testing.assert_array_equal(threads.apply(np.add, x, bias, out=np.empty_like(x)), x + bias)
    np.testing.assert_array_equal(threads.apply(np.multiply, x, 2.0, out=np.empty_like(x)), 2 * x)
    assert two_workers.history == [1, 2, 1, 2]
    assert threads.channel_slices(x[:, :1]) == [slice(None)]  # fewer channels than workers


def test_channel_groups_are_cache_sized_and_at_least_the_workers_shares(two_workers, monkeypatch, rng):
    x = rng.standard_normal((2, 10, 4, 4))  # 32 elements a channel, 320 in all
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 10**9)  # not shared out: groups by size only
    assert threads.channel_groups(x, 100) == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]  # 4 groups of <= 3 channels
    assert threads.channel_groups(x, 10) == [slice(c, c + 1) for c in range(10)]  # at least one channel a group
    assert threads.channel_groups(x, 320) == [slice(None)]
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 1)  # shared out: at least the workers' slices
    assert threads.channel_groups(x, 320) == threads.channel_slices(x) == [slice(0, 5), slice(5, 10)]
    assert threads.channel_groups(x, 100) == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]


def test_the_ops_on_two_workers_match_one_worker(two_workers, monkeypatch, rng):
    """Batch norm (train and eval, forward and backward), relu, add and SGD, their work shared
    out by channels (or parameters) on two workers, against the same on one."""
    import minimenet as mm
    monkeypatch.setattr(threads, "MIN_SPLIT_ELEMENTS", 1)  # also makes SGD's two parameters "large"
    monkeypatch.setattr(mm.tensor, "RELU_CHUNK", 4)  # relu's chunks against zeros, on each worker
    x0, g0 = rng.standard_normal((3, 5, 4, 6)), rng.standard_normal((3, 5, 4, 6))
    gamma0, beta0 = rng.standard_normal(5), rng.standard_normal(5)

    def run():
        x = mm.Tensor(x0, requires_grad=True)
        gamma, beta = mm.Tensor(gamma0.copy(), requires_grad=True), mm.Tensor(beta0.copy(), requires_grad=True)
        stats = [np.zeros(5), np.ones(5)]
        out = mm.relu(mm.add(mm.batch_norm(x, gamma, beta, *stats, training=True), x))
        evaluated = mm.batch_norm(out, gamma, beta, *stats, training=False)
        evaluated.backward(g0)
        sgd = mm.SGD([gamma, beta], lr=0.1, momentum=0.9, weight_decay=0.01)
        sgd.step()
        return [evaluated.data, x.grad, gamma.grad, beta.grad, *stats, gamma.data, beta.data]
    shared = run()
    assert two_workers.history  # the work was shared out
    two_workers.count = 1
    for got, expected in zip(shared, run()):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_small_work_stays_on_the_calling_thread_with_openblas_at_one_thread(two_workers, monkeypatch, rng):
    """Each small product runs on the calling thread, OpenBLAS set to one thread for it (for the
    whole of a convolution too small to share out) and back to two after, so that OpenBLAS's own
    threads never wake to spin."""
    monkeypatch.setattr(threads, "MIN_SPLIT_MULTIPLY_ADDS", 10**9)
    products = []
    original = np.matmul

    def recorded(a, b, out):
        products.append((threading.current_thread() is threading.main_thread(), two_workers.count))
        return original(a, b, out=out)
    monkeypatch.setattr(threads.numpy, "matmul", recorded)
    x, w, dy, stride, padding = case_arrays(CASES[0], "float64")
    conv_cpu.conv2d_forward(x, w, stride, padding)
    conv_cpu.conv2d_weight_grad(x, dy, w.shape, stride, padding)
    threads.matmul(rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), np.empty((4, 2)))
    assert len(products) >= 3 and set(products) == {(True, 1)}
    assert two_workers.history == [1, 2] * 3 and two_workers.count == 2  # the two convolutions, the product
    assert threads.channel_slices(rng.standard_normal((2, 4, 8, 8))) == [slice(None)]  # under MIN_SPLIT_ELEMENTS


@pytest.mark.parametrize("shape,pieces", [((12, 12, 33792), 5), ((12, 33792, 12), 5), ((4, 36, 32768), 5),
                                          ((96, 96, 6780), 1), ((12, 12, 5000), 1)],
                         ids=["few rows", "few outputs", "stem-like", "neither", "small already"])
def test_products_in_pieces_for_the_small_matrix_kernels_match_one_product(shape, pieces, monkeypatch, rng):
    """On OpenBLAS's SkylakeX kernels a float32 product of few rows is cut by columns, one of few
    outputs by its inner dimension, into pieces of at most 100^3 multiply-adds (33792 columns
    of (12, 12): five pieces of 6944); others, float64 ones and other kernels' stay one product."""
    m, k, n = shape
    a, b = rng.standard_normal((m, k)).astype("float32"), rng.standard_normal((k, n)).astype("float32")
    expected = a.astype("float64") @ b.astype("float64")
    calls = []
    original = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    for small_kernels, dtype, count in [(True, "float32", pieces), (True, "float64", 1), (False, "float32", 1)]:
        monkeypatch.setattr(threads, "SMALL_KERNELS", small_kernels)
        calls.clear()
        out = threads._product(a.astype(dtype), b.astype(dtype), np.empty((m, n), dtype))
        assert len(calls) == count
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("rows,columns,pieces", [(96, 226, [76, 76, 74]), (192, 226, [226]), (96, 100, [100])],
                         ids=["three pieces of 76", "pieces under 64", "small already"])
def test_a_stack_of_short_products_goes_in_the_fewest_pieces_that_fit(rows, columns, pieces, monkeypatch, rng):
    """(rows, 96) @ (4, 96, columns), the stride-1 forward's stacked rows: on the small-matrix
    kernels a float32 stack is cut into the fewest even pieces of columns within 100^3
    multiply-adds, where they are 64 columns or more (96 rows of 226: three of 76; 192 rows
    would need five of 46); float64 and other kernels' stay one product."""
    a = rng.standard_normal((rows, 96)).astype("float32")
    b = rng.standard_normal((4, 96, columns)).astype("float32")
    expected = a.astype("float64") @ b.astype("float64")
    calls = []
    original = np.matmul
    monkeypatch.setattr(np, "matmul", lambda x, y, out: calls.append(y.shape[-1]) or original(x, y, out=out))
    for small_kernels, dtype, widths in [(True, "float32", pieces), (True, "float64", [columns]), (False, "float32", [columns])]:
        monkeypatch.setattr(threads, "SMALL_KERNELS", small_kernels)
        calls.clear()
        out = threads._product(a.astype(dtype), b.astype(dtype), np.empty((4, rows, columns), dtype))
        assert calls == widths
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_matmul_shares_out_a_stack_of_products_by_columns_or_rows(two_workers, monkeypatch, rng):
    """A stacked b (..., K, N) is split like a matrix: by its columns, or by a's rows."""
    b = rng.standard_normal((3, 5, 8))
    products = []
    original = np.matmul
    monkeypatch.setattr(threads.numpy, "matmul", lambda x, y, out: products.append((x.shape[0], y.shape[-1])) or original(x, y, out=out))
    for a, parts in [(rng.standard_normal((4, 5)), [(4, 4), (4, 4)]), (rng.standard_normal((9, 5)), [(4, 8), (5, 8)])]:
        products.clear()
        out = threads.matmul(a, b, np.empty((3, a.shape[0], 8)))
        np.testing.assert_allclose(out, a @ b, rtol=1e-14)
        assert sorted(products) == parts


def test_the_tiny_presets_convolutions_on_the_small_matrix_kernels_match_the_packed_ones(monkeypatch, rng):
    """The 4 -> 4 channel 3 x 3 layer at 64 x 64, batch 8, float32 (shifted taps, its products
    in pieces): forward, input gradient and weight gradient as with one product each."""
    x, w = rng.standard_normal((8, 4, 64, 64)).astype("float32"), rng.standard_normal((4, 4, 3, 3)).astype("float32")
    dy = rng.standard_normal((8, 4, 64, 64)).astype("float32")
    results, calls = {}, []
    original = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: calls.append(small_kernels) or original(*args, **kwargs))
    for small_kernels in (False, True):
        monkeypatch.setattr(threads, "SMALL_KERNELS", small_kernels)
        results[small_kernels] = (conv_cpu.conv2d_forward(x, w, (1, 1), (1, 1)).copy(),
                                  conv_cpu.conv2d_input_grad(dy, w, x.shape, (1, 1), (1, 1)).copy(),
                                  conv_cpu.conv2d_weight_grad(x, dy, w.shape, (1, 1), (1, 1)).copy())
    assert calls.count(True) > calls.count(False) >= 3  # the products went in pieces
    for one, pieces in zip(results[False], results[True]):
        np.testing.assert_allclose(pieces, one, rtol=1e-5, atol=1e-5 * np.abs(one).max())


def test_the_openblas_found_names_its_kernels():
    """The core name decides ``SMALL_KERNELS``: where NumPy's OpenBLAS is found, it has one."""
    if threads._found is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS whose functions can be found")
    assert isinstance(threads._found[2], str) and threads._found[2]
