"""minimenet/gradcheck.py: the gradient checker must itself be able to fail.

It runs in float64 with rtol 1e-6 and its absolute floor 1e-3.
"""
import numpy as np
import pytest

from minimenet import GradcheckError, Tensor, gradcheck


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
