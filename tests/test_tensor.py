"""minimenet/tensor.py, the autograd engine and its ops (each gradient-checked): gradient accumulation, graph shapes, no_grad, detach,
explicit gradients, deep graphs, in-place changes, and the errors of the elementwise ops, concat and
reshape for shapes and dtypes they cannot take.

Expected gradients here are derived by hand (d(x*x + x)/dx = 2x + 1, ...).
"""
import sys

import numpy as np
import pytest

from minimenet import (Tensor, add, batch_norm, concat, conv2d, l2_normalize, mean, mul, no_grad, reduce_sum, relu,
                       reshape, resize)
from minimenet import tensor as tensor_module
from minimenet.backend import to_numpy
from minimenet.tensor import tanh

from op_references import DTYPES, away_from_zero, check, leaf


def grad_of(t):
    return to_numpy(t.grad)


def test_tensor_feeding_several_ops_accumulates_their_gradients(xp):
    x = Tensor(xp.asarray([1.0, -2.0, 3.0], dtype=xp.float32), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(grad_of(x), [3.0, -3.0, 7.0])  # 2x + 1
    assert x.grad.dtype == xp.float32 and isinstance(x.grad, xp.ndarray)


def test_diamond_graph_sums_both_paths(xp):
    x = Tensor(xp.asarray([0.5, 2.0]), requires_grad=True)
    a, b = x * 2.0, x * 3.0          # two branches from x ...
    (a * b).sum().backward()         # ... joined again: 6 x^2
    np.testing.assert_allclose(grad_of(x), [6.0, 24.0])  # 12 x


def test_shared_intermediate_is_back_propagated_once_with_the_summed_gradient():
    x = Tensor(np.array([1.5, -1.0]), requires_grad=True)
    y = x * x                        # used three times below
    z = y + y * y + relu(y)          # x^2 + x^4 + x^2
    z.sum().backward()
    np.testing.assert_allclose(x.grad, 4 * x.data + 4 * x.data ** 3)


def test_same_tensor_twice_in_one_op():
    x = Tensor(np.array([3.0]), requires_grad=True)
    (x + x).backward()
    np.testing.assert_allclose(x.grad, [2.0])


def test_backward_twice_accumulates_into_leaf_grad():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_leaves_without_requires_grad_get_no_gradient():
    x, c = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array([5.0, 7.0]))
    (x * c).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])
    assert c.grad is None


def test_no_grad_records_nothing(xp):
    x = Tensor(xp.ones(3, dtype=xp.float32), requires_grad=True)
    with no_grad():
        y = (x * 2.0 + x).sum()
    assert not y.requires_grad and y._parents == () and y._backward is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    # Recording is back on after the block, even when the block raised.
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    z = (x * 2.0).sum()
    assert z.requires_grad
    z.backward()
    np.testing.assert_allclose(grad_of(x), [2.0, 2.0, 2.0])


def test_nested_no_grad_restores_the_outer_state():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        with no_grad():
            pass
        assert not (x * 1.0).requires_grad
    assert (x * 1.0).requires_grad


def test_detach_cuts_the_graph_but_keeps_the_values():
    x = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    d = (x * x).detach()
    assert not d.requires_grad
    np.testing.assert_array_equal(d.data, [4.0, 9.0])
    (x * d).sum().backward()         # d is a constant: gradient is d, not 3 x^2
    np.testing.assert_allclose(x.grad, [4.0, 9.0])


def test_backward_on_a_non_scalar_without_a_gradient_raises_a_clear_error():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"non-scalar tensor of shape \(2, 3\).*explicit gradient"):
        (x * 2.0).backward()


def test_backward_with_an_explicit_gradient(xp):
    x = Tensor(xp.asarray(np.arange(6.0).reshape(2, 3), dtype=xp.float32), requires_grad=True)
    g = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 3.0]])
    (x * x).backward(xp.asarray(g))
    np.testing.assert_allclose(grad_of(x), 2 * np.arange(6.0).reshape(2, 3) * g)
    assert x.grad.dtype == xp.float32


def test_backward_with_a_gradient_of_the_wrong_shape_raises():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"gradient of shape \(3,\) given for a tensor of shape \(2, 3\)"):
        (x * 2.0).backward(np.ones(3))


def test_size_one_tensor_of_any_rank_is_a_scalar_for_backward_and_item(xp):
    x = Tensor(xp.asarray([[2.0]]), requires_grad=True)
    y = x * 3.0                      # shape (1, 1): backward() needs no explicit gradient ...
    y.backward()
    np.testing.assert_allclose(grad_of(x), [[3.0]])
    assert y.item() == 6.0           # ... and item() gives its value (float(array) rejects ndim > 0 in NumPy 2)
    with pytest.raises(ValueError):
        Tensor(xp.ones(2)).item()


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(1)).backward()


def test_deep_chain_does_not_hit_the_recursion_limit():
    depth = 3000
    assert depth > sys.getrecursionlimit() / 2
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(depth):
        y = y + x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [depth + 1.0, depth + 1.0])


def test_deep_chain_of_muls_has_the_product_rule_gradient():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(2999):
        y = y * 1.0001               # y = x * 1.0001^2999
    y.backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 2999], rtol=1e-10)


def test_backward_releases_the_graph():
    x = Tensor(np.ones(2), requires_grad=True)
    h = x * 2.0
    y = (h * h).sum()
    y.backward()
    assert h._parents == () and h._backward is None and y._parents == ()


def test_results_of_ops_on_constants_only_need_no_grad():
    a, b = Tensor(np.ones(2)), Tensor(np.ones(2))
    c = a * b + 1.0
    assert not c.requires_grad and c._parents == ()


def test_operators_keep_float32(xp):
    x = Tensor(xp.ones((2, 2), dtype=xp.float32), requires_grad=True)
    y = ((2.0 - x) * 3.0 + 1.0 - (-x)).mean()
    assert y.dtype == xp.float32
    y.backward()
    np.testing.assert_allclose(grad_of(x), np.full((2, 2), (-3.0 + 1.0) / 4))
    assert x.grad.dtype == xp.float32


def test_integer_and_bool_data_become_float32(xp):
    scaled = Tensor(xp.arange(3)) * 2.5  # an int64 tensor used to cast 2.5 to 2 and give [0, 2, 4]
    assert scaled.dtype == xp.float32
    np.testing.assert_array_equal(to_numpy(scaled.data), [0.0, 2.5, 5.0])
    assert Tensor(xp.asarray([True, False])).dtype == xp.float32
    assert Tensor([1, 2, 3]).dtype == np.float32 and Tensor(7).dtype == np.float32
    assert Tensor(xp.arange(3.0)).dtype == xp.float64  # floats keep their precision
    assert Tensor(xp.arange(3), dtype="int64").dtype == xp.int64  # an explicit dtype is obeyed


def test_integer_input_gets_a_float_gradient():
    x = Tensor(np.arange(3), requires_grad=True)
    (x * x * 0.5).sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 1.0, 2.0])


@pytest.mark.parametrize("change", ["augmented", "assigned", "through_detach"])
def test_changing_an_input_in_place_after_the_forward_pass_raises_at_backward(xp, change):
    x = Tensor(xp.asarray([1.0, 2.0, 3.0]), requires_grad=True)
    w = Tensor(xp.asarray([4.0, 5.0, 6.0]), requires_grad=True)
    loss = (x * w).sum()
    if change == "augmented":
        w.data += 1.0  # d loss / dx would silently read the new w
    elif change == "assigned":
        w.data = w.data * 2.0
    else:
        w.detach().data *= 3.0  # the same array, through another Tensor
    with pytest.raises(RuntimeError, match=r"input 1 of op mul .* was changed in place after the forward pass "
                                           r"\(version 1, expected 0\).*recompute the forward pass"):
        loss.backward()
    assert x.grad is None and w.grad is None  # checked before any gradient was accumulated
    assert w.version == 1


def test_changing_a_constant_operand_or_an_op_output_in_place_raises():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    constant = Tensor(np.array([3.0, 4.0]))
    loss = (x * constant).sum()
    constant.data -= 1.0  # needs no gradient itself, but x's gradient is made of it
    with pytest.raises(RuntimeError, match="input 1 of op mul"):
        loss.backward()
    hidden = x * x
    loss = (hidden * 2.0).sum()
    hidden.data += 5.0
    with pytest.raises(RuntimeError, match=r"input 0 of op mul \(a mul tensor"):
        loss.backward()


def test_in_place_updates_between_iterations_still_work():
    # SGD changes p.data in place after backward, and batch norm works on its own temporaries in
    # place: neither may trip the version check.
    from minimenet import SGD, batch_norm
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 2, 3, 3)), requires_grad=True)
    gamma, beta = Tensor(np.ones(2), requires_grad=True), Tensor(np.zeros(2), requires_grad=True)
    running_mean, running_var = np.zeros(2), np.ones(2)
    optimiser = SGD([gamma, beta], lr=0.1, momentum=0.9)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        out = batch_norm(x, gamma, beta, running_mean, running_var, training=True)
        loss = ((out - 0.5) * (out - 0.5)).mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert gamma.version == 3 and losses[-1] < losses[0]


def test_subtracting_a_plain_number(xp):
    # x - 0.5 used to negate 0.5 as a "tensor" with no backend and fail with AttributeError.
    x = Tensor(xp.asarray([1.0, 2.0], dtype=xp.float32), requires_grad=True)
    y = x - 0.5
    assert y.dtype == xp.float32
    np.testing.assert_array_equal(to_numpy(y.data), [0.5, 1.5])
    (y * y).sum().backward()
    np.testing.assert_allclose(grad_of(x), [1.0, 3.0])


# Shape and dtype mistakes: the errors name the op, the shapes received and what was expected.

def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("op_name", ["add", "mul"])
def test_binary_ops_that_cannot_broadcast(op_name):
    op = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b}[op_name]
    with pytest.raises(ValueError, match=rf"{op_name}: shapes \(2, 3\) and \(2, 2\) cannot be broadcast together"):
        op(t(2, 3), t(2, 2))


def test_add_dtype_mismatch():
    with pytest.raises(TypeError, match=r"add: inputs have different dtypes \['float64', 'float32'\]"):
        t(2, 3) + t(2, 3, dtype="float32")


@pytest.mark.parametrize("shapes, dtypes, error, message", [
    pytest.param([(2, 3, 4, 4), (2, 3, 5, 4)], ["float64"] * 2, ValueError,
                 r"concat: all shapes must match except on axis 1; got \[\(2, 3, 4, 4\), \(2, 3, 5, 4\)\]",
                 id="shapes_that_differ_off_the_axis"),
    pytest.param([(2, 3, 4, 4), (2, 3, 4)], ["float64"] * 2, ValueError,
                 r"concat: all shapes must match except on axis 1; got \[\(2, 3, 4, 4\), \(2, 3, 4\)\]",
                 id="tensors_of_different_rank"),
    pytest.param([], [], ValueError, r"concat: needs at least one tensor", id="nothing"),
    pytest.param([(1, 2, 2, 2), (1, 2, 2, 2)], ["float64", "float32"], TypeError, r"concat: inputs have different dtypes",
                 id="dtype_mismatch"),
])
def test_concat_refuses(shapes, dtypes, error, message):
    with pytest.raises(error, match=message):
        concat([t(*shape, dtype=dtype) for shape, dtype in zip(shapes, dtypes)])


def test_reshape_to_a_different_number_of_elements():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) to \(4, 2\)"):
        reshape(t(2, 3), (4, 2))


def test_a_second_backward_through_a_freed_graph_is_an_error():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    shared = x * x
    first, second = shared.sum(), (shared * 2.0).sum()
    first.backward()
    with pytest.raises(RuntimeError, match="already freed: recompute the forward pass"):
        second.backward()


# --- From the op grid: gradient checks and forward values against plain loops (op_references) ---

def test_tanh_gradcheck_and_values(rng):
    x = leaf(rng, (2, 3, 4))
    check(tanh, [x])
    np.testing.assert_allclose(tanh(Tensor(np.array([-50.0, 0.0, 0.5]))).numpy(), [-1.0, 0.0, np.tanh(0.5)])


def test_relu_gradcheck_inputs_away_from_zero(rng):
    x = away_from_zero(rng, (2, 3, 4))
    check(relu, [x])


def test_relu_forward_and_gradient_values():
    x = Tensor(np.array([-2.0, -0.5, 0.0, 0.5, 3.0]), requires_grad=True)
    y = relu(x)
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 0.0, 0.5, 3.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_in_chunks_against_reused_zeros_equals_maximum(dtype, monkeypatch, rng):
    """The chunked maximum against a buffer of zeros: several chunks and a short last one, in a
    4-D array (per image and channel group) and a flat one, into new memory and in place; NaN
    stays NaN as in numpy.maximum; a non-contiguous view against a row of zeros, or, with rows
    longer than a chunk, numpy.maximum with the scalar."""
    monkeypatch.setattr(tensor_module, "RELU_CHUNK", 7)
    x = rng.standard_normal((3, 4, 5, 2)).astype(dtype)
    x[1, 2, 3, 1] = np.nan
    expected = np.maximum(x, 0)
    np.testing.assert_array_equal(relu(Tensor(x)).numpy(), expected)
    flat = x.reshape(-1)[:-3].copy()
    np.testing.assert_array_equal(tensor_module.maximum_zero(flat, np.empty_like(flat)), np.maximum(flat, 0))
    in_place = x.copy()
    assert tensor_module.maximum_zero(in_place, in_place) is in_place
    np.testing.assert_array_equal(in_place, expected)
    for view in (x[:, ::2], x.reshape(3, -1)[:, ::2][:, :8]):  # rows of 2, rows of 8 (over a chunk)
        np.testing.assert_array_equal(tensor_module.maximum_zero(view, np.empty(view.shape, dtype)), np.maximum(view, 0))


@pytest.mark.parametrize("axis,shapes", [
    (1, [(2, 1, 2, 3), (2, 3, 2, 3)]),
    (1, [(2, 2, 2, 2), (2, 1, 2, 2), (2, 3, 2, 2)]),
    (0, [(1, 2, 3), (2, 2, 3)]),
    (-1, [(2, 3, 1), (2, 3, 2)]),
], ids=str)
def test_concat_gradcheck(axis, shapes, rng):
    tensors = [leaf(rng, s) for s in shapes]
    check(lambda *ts: concat(list(ts), axis=axis), tensors)


def test_concat_with_an_input_that_needs_no_grad(rng):
    a, b = leaf(rng, (2, 2, 2, 2)), leaf(rng, (2, 1, 2, 2), requires_grad=False)
    check(lambda a, b: concat([a, b]), [a, b])


BROADCAST_CASES = [
    ((2, 3), (2, 3)),
    ((2, 3, 4), (3, 1)),
    ((1, 4), (2, 3, 4)),
    ((2, 1, 4), (1, 3, 1)),
    ((2, 3), ()),
]


@pytest.mark.parametrize("shape_a,shape_b", BROADCAST_CASES, ids=str)
@pytest.mark.parametrize("op", [add, mul], ids=["add", "mul"])
def test_binary_op_gradcheck_with_broadcasting(op, shape_a, shape_b, rng):
    a, b = leaf(rng, shape_a), leaf(rng, shape_b)
    out = op(a, b)
    assert out.shape == np.broadcast_shapes(shape_a, shape_b)
    check(op, [a, b])


def test_operators_with_python_numbers_gradcheck(rng):
    a, b = leaf(rng, (2, 3)), leaf(rng, (3,))
    check(lambda a, b: (2.0 - a) * b + a * 3.0 - b + (-a) + 1.5, [a, b])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (None, True), (0, False), (-1, True), ((1, 2), False),
                                           ((0, -1), True)], ids=str)
@pytest.mark.parametrize("op, reference", [(reduce_sum, np.sum), (mean, np.mean)], ids=["sum", "mean"])
def test_reduction_gradcheck_with_axes(op, reference, axis, keepdims, rng):
    x = leaf(rng, (2, 3, 4))
    out = op(x, axis, keepdims)
    expected = reference(x.data, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    check(lambda x: op(x, axis, keepdims), [x])


@pytest.mark.parametrize("shape", [(4, 6), (-1,), (2, 1, 12), (3, -1, 2)], ids=str)
def test_reshape_gradcheck(shape, rng):
    x = leaf(rng, (2, 3, 4))
    np.testing.assert_array_equal(reshape(x, shape).numpy(), x.data.reshape(shape))
    check(lambda x: reshape(x, shape), [x])


def test_composite_graph_gradcheck(rng):
    """A small network-like graph: conv, bn, relu, resize, concat, l2_normalize, reductions."""
    x, w = leaf(rng, (2, 2, 4, 5)), leaf(rng, (3, 2, 3, 3))
    gamma, beta = Tensor(rng.uniform(0.5, 1.5, 3), requires_grad=True), leaf(rng, (3,))
    stats = np.zeros(3), np.ones(3)

    def net(x, w, gamma, beta):
        h = batch_norm(conv2d(x, w, padding=1), gamma, beta, *stats, training=True)
        h = relu(h + 0.3)
        up = resize(h, (6, 7))
        return mean(l2_normalize(concat([up, resize(x, (6, 7))])) * up.sum(axis=1, keepdims=True), axis=(2, 3))
    check(net, [x, w, gamma, beta], max_elements=40)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_float32_ops_keep_dtype_and_backend_through_backward(dtype, xp, rng):
    x = Tensor(xp.asarray(rng.standard_normal((2, 2, 4, 4)), dtype=dtype), requires_grad=True)
    w = Tensor(xp.asarray(rng.standard_normal((3, 2, 3, 3)), dtype=dtype), requires_grad=True)
    y = l2_normalize(resize(relu(conv2d(x, w, padding=1)), (5, 3))) * 2.0
    y.sum().backward()
    for t in (y, x.grad, w.grad):
        array = t.data if isinstance(t, Tensor) else t
        assert array.dtype == dtype and isinstance(array, xp.ndarray)
