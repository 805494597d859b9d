"""The autograd engine: gradient accumulation, graph shapes, no_grad, detach, explicit gradients,
deep graphs, and the gradient checker itself.

Expected gradients here are derived by hand (d(x*x + x)/dx = 2x + 1, ...). Where ``gradcheck`` is
used it runs in float64 with rtol 1e-6 and its absolute floor 1e-3.
"""
import sys

import numpy as np
import pytest

from minimenet import GradcheckError, Tensor, gradcheck, no_grad, relu
from minimenet.backend import to_numpy


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


# ----------------------------------------------------------------------------------------------
# The gradient checker must itself be able to fail.

def _op_with_wrong_backward(x):
    """y = x^2 whose backward claims 2x + 0.01: a small but real error."""
    def backward(g):
        return (g * (2 * x.data + 0.01),)
    return Tensor.from_op(x.data ** 2, (x,), backward, "bad_square")


def test_gradcheck_catches_a_wrong_backward():
    x = Tensor(np.random.default_rng(0).standard_normal(5), requires_grad=True)
    with pytest.raises(GradcheckError, match="FAIL input 0"):
        gradcheck(_op_with_wrong_backward, [x])


def test_gradcheck_passes_a_correct_backward_and_reports_every_input():
    x = Tensor(np.random.default_rng(0).standard_normal(5), requires_grad=True)
    report = gradcheck(lambda x: x * x, [x])
    assert report.ok and report.rows[0]["checked"] == 5 and report.rows[0]["max_rel_error"] <= 1e-6


def test_gradcheck_catches_a_gradient_that_misses_a_parent():
    x, y = Tensor(np.ones(3), requires_grad=True), Tensor(np.full(3, 2.0), requires_grad=True)

    def forgets_y(x, y):
        return Tensor.from_op(x.data * y.data, (x, y), lambda g: (g * y.data, None), "forgets_y")
    with pytest.raises(GradcheckError, match="FAIL input 1"):
        gradcheck(forgets_y, [x, y])


def test_gradcheck_refuses_float32_inputs():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * x, [Tensor(np.ones(2, dtype=np.float32), requires_grad=True)])


def test_gradcheck_perturbs_a_non_contiguous_input_itself():
    # A transposed array: reshape(-1) of it is a copy, so a perturbation written into that copy
    # never reached the input and every numeric gradient read 0 (a false FAIL).
    base = np.random.default_rng(0).standard_normal((3, 4))
    x = Tensor(base.T, requires_grad=True)
    assert not x.data.flags["C_CONTIGUOUS"]
    report = gradcheck(lambda x: x * x * x, [x])
    assert report.ok and report.rows[0]["checked"] == 12
    np.testing.assert_array_equal(x.data, base.T)  # every perturbation was undone
    strided = Tensor(np.random.default_rng(1).standard_normal((4, 6))[:, ::2], requires_grad=True)
    assert gradcheck(lambda x: x * x, [strided]).ok
    with pytest.raises(GradcheckError, match="FAIL input 0"):  # and it still catches a wrong backward there
        gradcheck(_op_with_wrong_backward, [Tensor(base.T, requires_grad=True)])


# ----------------------------------------------------------------------------------------------
# Integer data and in-place changes.

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
